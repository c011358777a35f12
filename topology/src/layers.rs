//! Assignment of mix nodes to the three layers (directory side).
//!
//! The rule, for epoch `e`, a set of live mix nodes and the previous
//! assignment (the last topology published, if any):
//!
//! 1. Every node of the set that was in layer `i` before stays in layer `i`.
//! 2. New nodes, region by region (in the order of their labels, nodes
//!    without a label first) and within a region in order of their rank
//!    `SHA-256(tag ‖ id ‖ e)`, each go to one of the layers that are then
//!    smallest: the one with the fewest nodes of its region, the lowest
//!    index on a tie.
//! 3. While the largest layer has two nodes more than the smallest, the node
//!    of highest rank in the largest layer moves to the smallest.
//!
//! Why: layers stay balanced (sizes differ by at most one), the result is a
//! pure function of its inputs (anyone can recompute it), and a node keeps its
//! layer as long as it stays, so its links and the clients' view change little
//! from one epoch to the next. A node joining moves nobody; a node leaving
//! moves at most one other. The rank mixes in the epoch so that which node
//! moves is not predictable from its id alone. Spreading each region over
//! the layers lets a client that keeps its routes inside some regions (data
//! residency, docs/client.md) find a mix of those regions in every layer.

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

/// Places `nodes` in [`MIX_LAYERS`] layers, keeping each node of `previous`
/// in its layer and spreading each region (`region_of`) over the layers.
///
/// Each returned layer is sorted by id. Duplicates in `nodes` count once.
pub fn assign_layers<'r>(
    nodes: &[NodeId],
    previous: &[Vec<NodeId>],
    epoch: Epoch,
    region_of: impl Fn(&NodeId) -> Option<&'r str>,
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
    newcomers.sort_by_cached_key(|id| (region_of(id), layer_rank(id, epoch)));
    for id in newcomers {
        let region = region_of(&id);
        let smallest = layers.iter().map(Vec::len).min().unwrap_or(0);
        let same_region = |layer: &Vec<NodeId>| {
            layer
                .iter()
                .filter(|other| region_of(other) == region)
                .count()
        };
        if let Some(layer) = layers
            .iter_mut()
            .filter(|layer| layer.len() == smallest)
            .min_by_key(|layer| same_region(layer))
        {
            layer.push(id);
        }
    }
    rebalance(&mut layers, epoch);
    for layer in &mut layers {
        layer.sort();
    }
    layers
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

    fn no_region(_: &NodeId) -> Option<&'static str> {
        None
    }

    #[test]
    fn each_region_is_spread_over_the_layers() {
        for (salt, epoch) in [(1u8, 3u64), (2, 9), (3, 1), (4, 77)] {
            let nodes = ids(9, salt);
            // Three regions of three nodes, and their ranks in any order.
            let region = |id: &NodeId| {
                let i = nodes.iter().position(|n| n == id).unwrap_or(0);
                Some(["eu", "us", "ch"][i % 3])
            };
            let layers = assign_layers(&nodes, &[], Epoch(epoch), region);
            assert_eq!(sizes(&layers), [3, 3, 3]);
            for layer in &layers {
                let mut labels: Vec<_> = layer.iter().filter_map(region).collect();
                labels.sort_unstable();
                assert_eq!(labels, ["ch", "eu", "us"], "salt {salt}, epoch {epoch}");
            }
        }
    }

    #[test]
    fn six_nodes_make_three_layers_of_two() {
        let layers = assign_layers(&ids(6, 1), &[], Epoch(3), no_region);
        assert_eq!(sizes(&layers), [2, 2, 2]);
        assert_eq!(
            assign_layers(&ids(6, 1), &[], Epoch(3), no_region),
            layers,
            "deterministic"
        );
    }

    proptest! {
        #[test]
        fn balanced_complete_and_deterministic(n in 0usize..60, salt: u8, epoch: u64) {
            let nodes = ids(n, salt);
            let layers = assign_layers(&nodes, &[], Epoch(epoch), no_region);
            let s = sizes(&layers);
            prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
            let mut all: Vec<NodeId> = layers.iter().flatten().copied().collect();
            all.sort();
            let mut want = nodes.clone();
            want.sort();
            prop_assert_eq!(all, want);
            prop_assert_eq!(assign_layers(&nodes, &[], Epoch(epoch), no_region), layers);
        }

        #[test]
        fn every_region_of_three_or_more_reaches_every_layer(
            counts in proptest::collection::vec(3usize..7, 1..5), salt: u8, epoch: u64,
        ) {
            const LABELS: [&str; 4] = ["a", "b", "c", "d"];
            let nodes = ids(counts.iter().sum(), salt);
            let mut label_of = Vec::new();
            for (r, &count) in counts.iter().enumerate() {
                label_of.extend(std::iter::repeat_n(LABELS[r], count));
            }
            let region = |id: &NodeId| {
                nodes.iter().position(|n| n == id).map(|i| label_of[i])
            };
            let layers = assign_layers(&nodes, &[], Epoch(epoch), region);
            let s = sizes(&layers);
            prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
            for layer in &layers {
                for label in &LABELS[..counts.len()] {
                    prop_assert!(layer.iter().any(|id| region(id) == Some(*label)));
                }
            }
        }

        #[test]
        fn stable_when_nodes_stay_join_or_leave(n in 1usize..40, salt: u8, epoch: u64, leave in 0usize..40) {
            let nodes = ids(n, salt);
            let before = assign_layers(&nodes, &[], Epoch(epoch), no_region);
            let next = Epoch(epoch.wrapping_add(1));
            // Same set, next epoch: nobody moves.
            prop_assert_eq!(&assign_layers(&nodes, &before, next, no_region), &before);
            // One node joins: nobody moves, layers stay balanced.
            let mut joined = nodes.clone();
            joined.push(NodeId([salt.wrapping_add(1); 32]));
            let after_join = assign_layers(&joined, &before, next, no_region);
            prop_assert_eq!(moved(&before, &after_join), 0);
            let s = sizes(&after_join);
            prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
            // One node leaves: at most one other node moves.
            let mut left = nodes.clone();
            left.remove(leave % n);
            let after_leave = assign_layers(&left, &before, next, no_region);
            prop_assert!(moved(&before, &after_leave) <= 1);
            let s = sizes(&after_leave);
            prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        }
    }
}
