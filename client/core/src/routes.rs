//! Where routes come from.
//!
//! The core does not know the topology: the caller (the async client, the
//! simulator, a test) implements [`RouteSource`] over whatever topology it
//! holds, and swaps it through
//! [`ClientCore::routes_mut`](super::ClientCore::routes_mut) when a new epoch
//! begins.

use protocol::NodeId;
use protocol::packet::RouteHop;
use rand::CryptoRng;

/// Picks routes and gateways from the current topology.
pub trait RouteSource {
    /// A fresh random route ending at `exit_gateway`: the full Sphinx route
    /// `[L1, L2, L3, exit_gateway]`, one mix per layer, each hop with its Sphinx
    /// key for the current epoch. `None` when the topology does not know the
    /// gateway or has an empty layer.
    fn route_to(&self, rng: &mut dyn CryptoRng, exit_gateway: NodeId) -> Option<Vec<RouteHop>>;

    /// A random gateway of the topology, the destination of drop cover.
    fn random_gateway(&self, rng: &mut dyn CryptoRng) -> Option<NodeId>;
}
