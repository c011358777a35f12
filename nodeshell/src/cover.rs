//! The node's own loop cover (Loopix λ_M).
//!
//! Every node — mix node or gateway — sends loop cover at the topology's
//! λ_M: a loop cover packet over one random node of each layer and back to
//! the node itself as the final hop. An observer then cannot tell a quiet
//! node from a busy one, and a node whose loops stop coming back sees that
//! packets are being dropped on their way (an active, n−1 style attack). The
//! `Mixer` keeps the Poisson clock, builds the packets, and recognises them
//! when they return (`Action::LoopReturned`, counted by the workers).

use std::sync::Arc;

use crate::node::NodeMixer;
use rand_chacha::ChaCha20Rng;
use tokio::sync::watch;
use topology::Topology;

use crate::clock::Clock;
use crate::links::Links;
use crate::metrics::NodeMetrics;
use crate::shutdown::ShutdownSignal;

/// The cover task.
pub struct LoopCover {
    /// The node's mixer: the cover clock, the node's key, the packet builder.
    pub mixer: Arc<NodeMixer>,
    /// Where the packets leave.
    pub links: Arc<Links>,
    /// The current topology, for routes and links.
    pub topology: watch::Receiver<Arc<Topology>>,
    /// The node's metrics.
    pub metrics: Arc<NodeMetrics>,
    /// The clock the mixer runs on.
    pub clock: Clock,
    /// Randomness for routes, delays and packets.
    pub rng: ChaCha20Rng,
}

impl LoopCover {
    /// Sends loop cover until the stop is requested (returns at once if λ_M is zero).
    pub async fn run(mut self, mut shutdown: ShutdownSignal) {
        let me = self.mixer.id();
        self.mixer.start_cover(self.clock.now(), &mut self.rng);
        while let Some(due) = self.mixer.next_cover_at() {
            tokio::select! {
                _ = tokio::time::sleep_until(self.clock.to_tokio(due)) => {}
                _ = shutdown.requested() => break,
            }
            let topology = self.topology.borrow().clone();
            let route = match topology.loop_route(&me, &mut self.rng) {
                Ok(route) => route,
                Err(e) => {
                    tracing::debug!("loop cover: {e}");
                    self.mixer.skip_cover(due, &mut self.rng);
                    continue;
                }
            };
            let Some(t) = self.mixer.poll_cover(due, &mut self.rng, &route) else {
                continue;
            };
            self.metrics.cover_sent.inc();
            if let Err(reason) = self.links.send(&topology, t.next_hop, t.packet) {
                self.metrics.count_drop(reason);
            }
        }
    }
}
