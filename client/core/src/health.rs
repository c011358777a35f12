//! What the client learns about mix nodes from its own acks, and route
//! choice that steers around the nodes that keep failing.
//!
//! Every copy of a fragment crosses the mix nodes of its forward route and
//! of its SURB-ack route. When its ack comes back, every one of those nodes
//! worked: their failures are forgotten. When its ack deadline passes, each
//! of them gets one failure. A node is *suspect* while more than
//! `suspect_threshold` copies through it failed since the last one that
//! worked, and forgets its failures `node_failure_memory` after the latest
//! one, so a node that healed is tried again. Nothing here is sent to anyone
//! and nothing is probed: the client learns only from acks of what it sends
//! anyway.
//!
//! Route choice draws up to `route_candidates` routes from the
//! [`RouteSource`](super::RouteSource) and takes the first without a suspect
//! node, else the one whose nodes have the fewest failures in total: there is
//! always a route, even when every node of a layer is suspect.

use std::collections::HashMap;
use std::time::Duration;

use protocol::NodeId;
use protocol::packet::RouteHop;
use protocol::time::Timestamp;

use super::config::ClientConfig;

/// Failures of one node since the last copy through it that worked.
#[derive(Clone, Copy, Debug)]
struct NodeRecord {
    failures: u32,
    last_failure: Timestamp,
}

/// How a route was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteChoice {
    /// The first route drawn had no suspect node.
    Clear,
    /// Routes through suspect nodes were set aside for one without.
    AvoidedSuspects,
    /// Every route drawn crossed a suspect node: the one with the fewest
    /// failures was taken.
    ThroughSuspects,
}

/// Failure scores of the mix nodes this client's copies crossed: a bounded,
/// time-decayed map, updated from acks and ack deadlines only.
#[derive(Clone, Debug)]
pub struct NodeHealth {
    nodes: HashMap<NodeId, NodeRecord>,
    threshold: u32,
    memory: Duration,
    max_nodes: usize,
}

impl NodeHealth {
    /// An empty record with `config`'s threshold, memory and bound.
    pub fn new(config: &ClientConfig) -> Self {
        NodeHealth {
            nodes: HashMap::new(),
            threshold: config.suspect_threshold,
            memory: config.node_failure_memory,
            max_nodes: config.max_tracked_nodes,
        }
    }

    /// Every node of a copy whose ack came back worked: forgets their failures.
    pub fn record_success(&mut self, nodes: &[NodeId]) {
        for node in nodes {
            self.nodes.remove(node);
        }
    }

    /// A copy's ack deadline passed at `now`: one more failure for each of
    /// its nodes. Failures older than the memory are forgotten first; when the
    /// map is full, the node whose latest failure is the oldest makes room.
    pub fn record_failure(&mut self, now: Timestamp, nodes: &[NodeId]) {
        for node in nodes {
            if !self.nodes.contains_key(node) && !self.make_room(now) {
                continue;
            }
            let memory = self.memory;
            let record = self.nodes.entry(*node).or_insert(NodeRecord {
                failures: 0,
                last_failure: now,
            });
            if now.saturating_duration_since(record.last_failure) >= memory {
                record.failures = 0;
            }
            record.failures = record.failures.saturating_add(1);
            record.last_failure = record.last_failure.max(now);
        }
    }

    /// Whether a new node fits, after dropping forgotten ones and, if still
    /// full, the one with the oldest latest failure.
    fn make_room(&mut self, now: Timestamp) -> bool {
        if self.max_nodes == 0 {
            return false;
        }
        if self.nodes.len() >= self.max_nodes {
            self.prune(now);
        }
        if self.nodes.len() >= self.max_nodes {
            let oldest = self
                .nodes
                .iter()
                .min_by_key(|(_, r)| (r.last_failure, r.failures))
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.nodes.remove(&id);
            }
        }
        true
    }

    /// Failures of `node` that still count at `now` (since its last success,
    /// and not yet forgotten).
    pub fn failures(&self, node: &NodeId, now: Timestamp) -> u32 {
        match self.nodes.get(node) {
            Some(r) if now.saturating_duration_since(r.last_failure) < self.memory => r.failures,
            _ => 0,
        }
    }

    /// Whether routes should avoid `node` at `now`.
    pub fn is_suspect(&self, node: &NodeId, now: Timestamp) -> bool {
        self.failures(node, now) > self.threshold
    }

    /// The suspect nodes at `now`, in order.
    pub fn suspects(&self, now: Timestamp) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self
            .nodes
            .keys()
            .filter(|id| self.is_suspect(id, now))
            .copied()
            .collect();
        out.sort();
        out
    }

    /// Nodes with failures on record (forgotten ones included until pruned).
    pub fn tracked(&self) -> usize {
        self.nodes.len()
    }

    /// Drops the records whose failures are forgotten by `now`.
    pub fn prune(&mut self, now: Timestamp) {
        let memory = self.memory;
        self.nodes
            .retain(|_, r| now.saturating_duration_since(r.last_failure) < memory);
    }

    /// The first of up to `candidates` routes from `draw` whose mix nodes
    /// are all healthy at `now`, else the drawn route with the fewest
    /// failures in total (the first of equals). `None` only when `draw`
    /// gives no route at all.
    pub(crate) fn choose(
        &self,
        now: Timestamp,
        candidates: usize,
        mut draw: impl FnMut() -> Option<Vec<RouteHop>>,
    ) -> Option<(Vec<RouteHop>, RouteChoice)> {
        let mut best: Option<(u64, Vec<RouteHop>)> = None;
        for i in 0..candidates.max(1) {
            let Some(route) = draw() else {
                break;
            };
            let mixes = mixes_of(&route);
            if !mixes.iter().any(|hop| self.is_suspect(&hop.id, now)) {
                let choice = if i == 0 {
                    RouteChoice::Clear
                } else {
                    RouteChoice::AvoidedSuspects
                };
                return Some((route, choice));
            }
            let score: u64 = mixes
                .iter()
                .map(|hop| u64::from(self.failures(&hop.id, now)))
                .sum();
            if best.as_ref().is_none_or(|(s, _)| score < *s) {
                best = Some((score, route));
            }
        }
        best.map(|(_, route)| (route, RouteChoice::ThroughSuspects))
    }
}

/// The mix nodes of a Sphinx route: every hop but the last (a gateway, the
/// same for every candidate route, so not something to steer around).
pub(crate) fn mixes_of(route: &[RouteHop]) -> &[RouteHop] {
    route.split_last().map_or(&[], |(_, mixes)| mixes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::keys::SphinxKeyPair;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn config() -> ClientConfig {
        ClientConfig {
            suspect_threshold: 2,
            node_failure_memory: Duration::from_secs(60),
            max_tracked_nodes: 4,
            ..ClientConfig::default()
        }
    }

    fn node(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    fn route(ids: &[u8]) -> Vec<RouteHop> {
        let key = SphinxKeyPair::generate(&mut ChaCha20Rng::seed_from_u64(1)).public();
        ids.iter()
            .map(|i| RouteHop {
                id: node(*i),
                sphinx_key: key,
            })
            .collect()
    }

    #[test]
    fn failures_past_the_threshold_make_a_node_suspect_and_an_ack_clears_it() {
        let mut h = NodeHealth::new(&config());
        let copy = [node(1), node(2)];
        h.record_failure(at(1), &copy);
        h.record_failure(at(2), &copy);
        assert_eq!(h.failures(&node(1), at(2)), 2);
        assert!(!h.is_suspect(&node(1), at(2)), "2 failures: not above 2");
        h.record_failure(at(3), &[node(1)]);
        assert!(h.is_suspect(&node(1), at(3)));
        assert!(!h.is_suspect(&node(2), at(3)));
        assert_eq!(h.suspects(at(3)), vec![node(1)]);
        // An ack through node 1 (and 3): every failure of node 1 is forgotten.
        h.record_success(&[node(1), node(3)]);
        assert_eq!(h.failures(&node(1), at(3)), 0);
        assert!(h.suspects(at(3)).is_empty());
        assert_eq!(h.failures(&node(2), at(3)), 2, "node 2 was not on it");
    }

    #[test]
    fn failures_are_forgotten_after_the_memory_unless_they_go_on() {
        let mut h = NodeHealth::new(&config());
        for s in 0..5 {
            h.record_failure(at(s), &[node(1)]);
        }
        assert!(
            h.is_suspect(&node(1), at(63)),
            "59 s after the last failure"
        );
        assert!(!h.is_suspect(&node(1), at(64)), "60 s after it");
        assert_eq!(h.failures(&node(1), at(64)), 0);
        // A failure after the memory starts the count again.
        h.record_failure(at(70), &[node(1)]);
        assert_eq!(h.failures(&node(1), at(70)), 1);
        // A node that keeps failing stays suspect however long it lasts.
        for s in (100..400).step_by(30) {
            h.record_failure(at(s), &[node(2)]);
            assert_eq!(h.is_suspect(&node(2), at(s)), s >= 160);
        }
        h.prune(at(1000));
        assert_eq!(h.tracked(), 0);
    }

    #[test]
    fn the_map_is_bounded_and_evicts_the_stalest_node() {
        let mut h = NodeHealth::new(&config());
        for i in 0..10u8 {
            h.record_failure(at(u64::from(i)), &[node(i)]);
            assert!(h.tracked() <= 4);
        }
        assert_eq!(h.tracked(), 4);
        for i in 6..10u8 {
            assert_eq!(h.failures(&node(i), at(10)), 1, "the newest are kept");
        }
        let mut none = NodeHealth::new(&ClientConfig {
            max_tracked_nodes: 0,
            ..config()
        });
        none.record_failure(at(1), &[node(1)]);
        assert_eq!(none.tracked(), 0);
    }

    #[test]
    fn choice_takes_the_first_clear_route_else_the_least_failing() {
        let mut h = NodeHealth::new(&config());
        let routes = [
            route(&[1, 2, 3, 9]),
            route(&[4, 5, 6, 9]),
            route(&[7, 5, 6, 9]),
        ];
        let drawn = |h: &NodeHealth, n| {
            let mut it = routes.iter().cloned();
            h.choose(at(0), n, || it.next())
        };
        // Nothing suspect: the first drawn.
        assert_eq!(drawn(&h, 8), Some((routes[0].clone(), RouteChoice::Clear)));
        // Node 2 suspect: the second drawn.
        h.record_failure(at(0), &[node(2), node(2), node(2)]);
        assert_eq!(
            drawn(&h, 8),
            Some((routes[1].clone(), RouteChoice::AvoidedSuspects))
        );
        // Only one candidate allowed: the first, through the suspect.
        assert_eq!(
            drawn(&h, 1),
            Some((routes[0].clone(), RouteChoice::ThroughSuspects))
        );
        // Nodes 4 and 7 suspect too, 7 less than 2 and 4: the third drawn.
        h.record_failure(at(0), &[node(4), node(4), node(4), node(4), node(2)]);
        h.record_failure(at(0), &[node(7), node(7), node(7)]);
        assert_eq!(
            drawn(&h, 8),
            Some((routes[2].clone(), RouteChoice::ThroughSuspects))
        );
        // The gateway (last hop) never counts.
        h.record_failure(at(0), &[node(9), node(9), node(9), node(9)]);
        h.record_success(&[node(2)]);
        assert_eq!(drawn(&h, 8), Some((routes[0].clone(), RouteChoice::Clear)));
        // No route at all.
        assert_eq!(h.choose(at(0), 8, || None), None);
    }
}
