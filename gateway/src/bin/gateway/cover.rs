//! The gateway's own loop cover (Loopix λ_M).
//!
//! Like every mix node, the gateway sends loop cover at the topology's λ_M:
//! a `LoopCover` packet over one random node of each layer [L1, L2, L3] and
//! back to the gateway itself as the final hop. An observer then cannot tell
//! a quiet gateway from a busy one, and a gateway whose loops stop coming
//! back sees that packets are being dropped on their way (an active, n−1
//! style attack). The exit `Mixer` builds the packets and recognises them
//! when they return (`Action::LoopReturned`); they leave through the same
//! link path as client packets and SURB-acks.

use std::sync::Arc;

use mixnode_core::Mixer;
use nodeshell::clock::Clock;
use rand_chacha::ChaCha20Rng;
use tokio::sync::watch;
use topology::Topology;
use transport::Endpoint;

use crate::core_loop::send_into_mixnet;
use crate::metrics::GatewayMetrics;

/// What the cover task needs.
pub struct CoverTask {
    /// The exit mixer: the cover clock, the gateway's key, the packet builder.
    pub mixer: Arc<Mixer>,
    /// The node-side endpoint (packets into layer 1).
    pub endpoint: Arc<Endpoint>,
    /// The current topology, for the route and the links.
    pub topology: watch::Receiver<Arc<Topology>>,
    /// Metrics.
    pub metrics: Arc<GatewayMetrics>,
    /// The clock the mixer runs on.
    pub clock: Clock,
    /// Randomness for routes, delays and packets.
    pub rng: ChaCha20Rng,
}

impl CoverTask {
    /// Sends loop cover until `shutdown` turns true (at once if λ_M is zero).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let me = self.mixer.id();
        self.mixer.start_cover(self.clock.now(), &mut self.rng);
        while let Some(due) = self.mixer.next_cover_at() {
            tokio::select! {
                _ = tokio::time::sleep_until(self.clock.to_tokio(due)) => {}
                _ = shutdown.changed() => break,
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
            self.metrics.loop_cover_sent.inc();
            send_into_mixnet(
                &self.endpoint,
                &topology,
                &self.metrics,
                t.next_hop,
                t.packet,
            );
        }
    }
}
