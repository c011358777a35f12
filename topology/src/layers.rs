//! Assignment of mix nodes to the three layers (directory side).
//!
//! The rule, for epoch `e`, a set of live mix nodes and the previous
//! assignment (the last topology published, if any):
//!
//! 1. Every node of the set that was in layer `i` before stays in layer `i`.
//! 2. New nodes, in order of their rank `SHA-256(tag ‖ id ‖ e)`, each go to
//!    the layer that is then smallest (the lowest index on a tie).
//! 3. While the largest layer has two nodes more than the smallest, the node
//!    of highest rank in the largest layer moves to the smallest.
//!
//! Why: layers stay balanced (sizes differ by at most one), the result is a
//! pure function of its inputs (anyone can recompute it), and a node keeps its
//! layer as long as it stays, so its links and the clients' view change little
//! from one epoch to the next. A node joining moves nobody; a node leaving
//! moves at most one other. The rank mixes in the epoch so that which node
//! moves is not predictable from its id alone.

use std::collections::BTreeSet;

use protocol::{Epoch, NodeId};
use sha2::{Digest, Sha256};

/// Number of mix layers in every route.
pub const MIX_LAYERS: usize = 3;

/// The rank that orders nodes in [`assign_layers`].
pub fn layer_rank(id: &NodeId, epoch: Epoch) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"mixnet/layer-rank/v1\0");
    hash.update(id.as_bytes());
    hash.update(epoch.0.to_be_bytes());
    hash.finalize().into()
}

/// Places `nodes` in [`MIX_LAYERS`] layers, keeping each node of `previous` in its layer.
///
/// Each returned layer is sorted by id. Duplicates in `nodes` count once.
pub fn assign_layers(
    nodes: &[NodeId],
    previous: &[Vec<NodeId>],
    epoch: Epoch,
) -> [Vec<NodeId>; MIX_LAYERS] {
    let live: BTreeSet<NodeId> = nodes.iter().copied().collect();
    let mut placed = BTreeSet::new();
    let mut layers: [Vec<NodeId>; MIX_LAYERS] = Default::default();
    for (layer, before) in layers.iter_mut().zip(previous) {
        for id in before {
            if live.contains(id) && placed.insert(*id) {
                layer.push(*id);
            }
        }
    }
    let mut newcomers: Vec<NodeId> = live.difference(&placed).copied().collect();
    newcomers.sort_by_key(|id| layer_rank(id, epoch));
    for id in newcomers {
        if let Some(layer) = smallest(&mut layers) {
            layer.push(id);
        }
    }
    rebalance(&mut layers, epoch);
    for layer in &mut layers {
        layer.sort();
    }
    layers
}

fn smallest(layers: &mut [Vec<NodeId>; MIX_LAYERS]) -> Option<&mut Vec<NodeId>> {
    let mut best: Option<&mut Vec<NodeId>> = None;
    for layer in layers.iter_mut() {
        if best.as_ref().is_none_or(|b| layer.len() < b.len()) {
            best = Some(layer);
        }
    }
    best
}

fn rebalance(layers: &mut [Vec<NodeId>; MIX_LAYERS], epoch: Epoch) {
    loop {
        let sizes = layers.each_ref().map(Vec::len);
        let (mut big, mut small) = (0, 0);
        for (i, &len) in sizes.iter().enumerate() {
            if len > sizes.get(big).copied().unwrap_or(0) {
                big = i;
            }
            if len < sizes.get(small).copied().unwrap_or(0) {
                small = i;
            }
        }
        let (Some(&big_len), Some(&small_len)) = (sizes.get(big), sizes.get(small)) else {
            return;
        };
        if big_len <= small_len + 1 {
            return;
        }
        let Some(from) = layers.get_mut(big) else {
            return;
        };
        let Some(pos) =
            (0..from.len()).max_by_key(|&i| from.get(i).map(|id| layer_rank(id, epoch)))
        else {
            return;
        };
        let moved = from.swap_remove(pos);
        if let Some(to) = layers.get_mut(small) {
            to.push(moved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize, salt: u8) -> Vec<NodeId> {
        (0..n)
            .map(|i| {
                let mut b = [salt; 32];
                b[..8].copy_from_slice(&(i as u64).to_le_bytes());
                NodeId(b)
            })
            .collect()
    }

    fn sizes(l: &[Vec<NodeId>; MIX_LAYERS]) -> [usize; MIX_LAYERS] {
        l.each_ref().map(Vec::len)
    }

    fn moved(a: &[Vec<NodeId>; MIX_LAYERS], b: &[Vec<NodeId>; MIX_LAYERS]) -> usize {
        let layer_of =
            |l: &[Vec<NodeId>; MIX_LAYERS], id: &NodeId| l.iter().position(|x| x.contains(id));
        a.iter()
            .flatten()
            .filter(|id| layer_of(b, id).is_some_and(|j| Some(j) != layer_of(a, id)))
            .count()
    }

    #[test]
    fn six_nodes_make_three_layers_of_two() {
        let layers = assign_layers(&ids(6, 1), &[], Epoch(3));
        assert_eq!(sizes(&layers), [2, 2, 2]);
        assert_eq!(
            assign_layers(&ids(6, 1), &[], Epoch(3)),
            layers,
            "deterministic"
        );
    }

    proptest! {
        #[test]
        fn balanced_complete_and_deterministic(n in 0usize..60, salt: u8, epoch: u64) {
            let nodes = ids(n, salt);
            let layers = assign_layers(&nodes, &[], Epoch(epoch));
            let s = sizes(&layers);
            prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
            let mut all: Vec<NodeId> = layers.iter().flatten().copied().collect();
            all.sort();
            let mut want = nodes.clone();
            want.sort();
            prop_assert_eq!(all, want);
            prop_assert_eq!(assign_layers(&nodes, &[], Epoch(epoch)), layers);
        }

        #[test]
        fn stable_when_nodes_stay_join_or_leave(n in 1usize..40, salt: u8, epoch: u64, leave in 0usize..40) {
            let nodes = ids(n, salt);
            let before = assign_layers(&nodes, &[], Epoch(epoch));
            let next = Epoch(epoch.wrapping_add(1));
            // Same set, next epoch: nobody moves.
            prop_assert_eq!(&assign_layers(&nodes, &before, next), &before);
            // One node joins: nobody moves, layers stay balanced.
            let mut joined = nodes.clone();
            joined.push(NodeId([salt.wrapping_add(1); 32]));
            let after_join = assign_layers(&joined, &before, next);
            prop_assert_eq!(moved(&before, &after_join), 0);
            let s = sizes(&after_join);
            prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
            // One node leaves: at most one other node moves.
            let mut left = nodes.clone();
            left.remove(leave % n);
            let after_leave = assign_layers(&left, &before, next);
            prop_assert!(moved(&before, &after_leave) <= 1);
            let s = sizes(&after_leave);
            prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        }
    }
}
