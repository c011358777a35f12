//! Keys and state every check and seed shares: fixed, so that a seed made
//! today still reaches the same code tomorrow, and so that a run replays.

use std::time::Duration;

use mixnode_core::{Mixer, MixerConfig, MixerRole, SphinxCodec};
use protocol::epoch::Epoch;
use protocol::keys::{IdentityKeyPair, NodeId, SphinxKeyPair};
use protocol::packet::RouteHop;
use protocol::replay::ReplayFilterConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// A seeded random source.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// The identity of fixture node `n`.
pub fn identity(n: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(&[n; 32])
}

/// The Sphinx key of fixture node `n` (epoch 0).
pub fn sphinx_key(n: u8) -> SphinxKeyPair {
    SphinxKeyPair::from_secret_bytes([n; 32])
}

/// The route hop of fixture node `n`.
pub fn hop(n: u8) -> RouteHop {
    RouteHop {
        id: identity(n).node_id(),
        sphinx_key: sphinx_key(n).public(),
    }
}

/// The node every mixer check runs as: fixture node 1.
pub const MIXER_NODE: u8 = 1;
/// The exit gateway of the fixture network: fixture node 4.
pub const GATEWAY_NODE: u8 = 4;
/// The Sphinx key of the fixture client (its address key).
pub const CLIENT_KEY: u8 = 9;

/// A mixer for fixture node 1 in `role`, with its key for epoch 0.
pub fn mixer(role: MixerRole) -> Mixer {
    let mixer = Mixer::new(
        identity(MIXER_NODE).node_id(),
        SphinxCodec,
        MixerConfig {
            role,
            max_delay: Duration::from_secs(10),
            replay: ReplayFilterConfig {
                min_tags_per_epoch: 1_000,
                false_positive_rate: 1e-6,
            },
            ..MixerConfig::default()
        },
    );
    mixer.install_key(Epoch(0), sphinx_key(MIXER_NODE));
    mixer.rotate(Epoch(0));
    mixer
}

/// The fixture gateway's id.
pub fn gateway_id() -> NodeId {
    identity(GATEWAY_NODE).node_id()
}
