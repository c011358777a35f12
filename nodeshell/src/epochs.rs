//! Following the directory from epoch to epoch.
//!
//! Every refresh period the node fetches the topology. When a new epoch has
//! begun it rotates its Sphinx keys (the new epoch's becomes current, the
//! next one's is created and announced, keys older than the previous epoch
//! are deleted with their replay tags) and registers again. Whatever the
//! epoch, the links are pinned to exactly the nodes of the topology, and the
//! topology is published to the node's tasks. A directory that does not
//! answer costs nothing: the node keeps working on the topology it has.
//!
//! Until that topology expires ([`Topology::valid_until`]): from then on the
//! node still forwards the packets senders keyed for it (they were built on
//! the same document), but says so once in the log (an error) and in its
//! metrics (`topology_expired` 1), so that an operator sees that the
//! authorities have published nothing for too long.

use std::sync::Arc;
use std::time::Duration;

use crate::node::NodeMixer;
use anyhow::Result;
use audit::{AuditEvent, KeyFingerprint, KeyKind, SharedAuditLog};
use protocol::epoch::Epoch;
use rand_chacha::ChaCha20Rng;
use tokio::sync::watch;
use topology::{NetworkParams, Topology};

use crate::auditing;
use crate::keystore::KeyStore;
use crate::links::Links;
use crate::metrics::{NodeMetrics, catch_up, to_i64};
use crate::registration::Registration;
use crate::shutdown::ShutdownSignal;

/// Installs the keys of `epoch` and the next, makes `epoch` current and
/// deletes the key files older than the previous epoch; returns the
/// fingerprint of the key made current.
pub fn install_keys(
    mixer: &NodeMixer,
    keys: &KeyStore,
    epoch: Epoch,
    rng: &mut ChaCha20Rng,
) -> Result<KeyFingerprint> {
    let current = keys.sphinx_key(epoch, rng)?;
    let fingerprint = KeyFingerprint::of_public_key(current.public().as_bytes());
    mixer.install_key(epoch, current);
    mixer.install_key(epoch.next(), keys.sphinx_key(epoch.next(), rng)?);
    mixer.rotate(epoch);
    keys.retire_before(epoch.previous().unwrap_or(epoch))?;
    Ok(fingerprint)
}

/// How often to fetch the topology: as configured, but at least every
/// eighth of an epoch (a rotation is noticed early) and at most every 100 ms.
pub fn refresh_period(params: &NetworkParams, configured: Duration) -> Duration {
    configured
        .min(params.epoch_length / 8)
        .max(Duration::from_millis(100))
}

/// Publishes `topology` in the metrics: its epoch's key is the current one.
pub fn show_topology(metrics: &NodeMetrics, topology: &Topology) {
    metrics
        .topology_nodes
        .set(to_i64(topology.all_peer_ids().len()));
}

/// Publishes whether `topology` has expired at `now` and returns it; logs
/// an error when it has just expired (`was_expired` false), and a notice
/// when a newer document ends that.
pub fn show_expiry(
    metrics: &NodeMetrics,
    topology: &Topology,
    now: std::time::SystemTime,
    was_expired: bool,
) -> bool {
    let until = topology.valid_until();
    let until_secs = until
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    metrics.topology_valid_until.set(to_i64(until_secs));
    let expired = topology.is_expired(now);
    metrics.topology_expired.set(i64::from(expired));
    if expired && !was_expired {
        tracing::error!(
            "the topology of epoch {} revision {} expired at unix {until_secs} and no newer consensus came: still forwarding packets keyed for it",
            topology.epoch,
            topology.serial
        );
    } else if !expired && was_expired {
        tracing::info!(
            "a valid topology again: epoch {} revision {}",
            topology.epoch,
            topology.serial
        );
    }
    expired
}

/// The epoch task.
pub struct EpochFollower {
    /// Registers the node again at each new epoch; holds the directory client and the key files.
    pub registration: Registration,
    /// The node's mixer, whose keys rotate.
    pub mixer: Arc<NodeMixer>,
    /// The node's links, re-pinned at each refresh.
    pub links: Arc<Links>,
    /// The node's metrics.
    pub metrics: Arc<NodeMetrics>,
    /// Where the node's tasks read the current topology.
    pub topology: watch::Sender<Arc<Topology>>,
    /// How often to refresh.
    pub period: Duration,
    /// Randomness for new keys.
    pub rng: ChaCha20Rng,
    /// Epochs the topology was behind the clock at the last refresh.
    pub stale_epochs: u64,
    /// Whether the topology had expired at the last refresh.
    pub expired: bool,
    /// Where each rotation is recorded.
    pub audit: SharedAuditLog,
}

impl EpochFollower {
    /// Follows the directory until the stop is requested; a refresh or a
    /// registration in flight is abandoned then.
    pub async fn run(mut self, mut shutdown: ShutdownSignal) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.period) => {}
                _ = shutdown.requested() => break,
            }
            tokio::select! {
                _ = self.refresh() => {}
                _ = shutdown.requested() => break,
            }
        }
    }

    async fn refresh(&mut self) {
        let directory = self.registration.directory();
        catch_up(
            &self.metrics.topology_bad_signature,
            directory.bad_signatures(),
        );
        let Ok(topology) = directory.refresh().await else {
            // Keep running on the topology we have, and say how old it is.
            if let Some(held) = directory.cached() {
                self.show_staleness(&held);
            }
            return;
        };
        self.show_staleness(&topology);
        if topology.epoch > self.mixer.current_epoch() {
            self.rotate(topology.epoch).await;
        }
        self.links.set_pins(&topology);
        show_topology(&self.metrics, &topology);
        let _ = self.topology.send(topology);
    }

    /// Publishes how many epochs old `topology` is and whether it expired;
    /// warns when the first grows, logs an error when it expires.
    fn show_staleness(&mut self, topology: &Topology) {
        let wall = std::time::UNIX_EPOCH + Duration::from_secs(crate::clock::unix_secs());
        self.expired = show_expiry(&self.metrics, topology, wall, self.expired);
        let now = topology.params.epoch_clock().epoch_at(wall);
        let stale = now.0.saturating_sub(topology.epoch.0);
        if stale > self.stale_epochs {
            tracing::warn!(
                "no topology newer than epoch {} (now {now}): running on it, keys not rotated",
                topology.epoch
            );
        }
        self.stale_epochs = stale;
        self.metrics.topology_stale_epochs.set(to_i64(stale));
    }

    async fn rotate(&mut self, epoch: Epoch) {
        match install_keys(&self.mixer, self.registration.keys(), epoch, &mut self.rng) {
            Ok(fingerprint) => auditing::record(
                &self.audit,
                &AuditEvent::KeyRotated {
                    key: KeyKind::Sphinx,
                    epoch: epoch.0,
                    fingerprint,
                },
            ),
            Err(e) => tracing::error!("key rotation: {e:#}"),
        }
        self.metrics.epoch.set(to_i64(epoch.0));
        if let Err(e) = self.registration.register(epoch, &mut self.rng).await {
            tracing::warn!("registration: {e:#}");
        }
        tracing::info!(%epoch, "rotated keys");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_topology_shows_in_the_metrics_until_a_newer_one_comes() {
        use crate::node::NodeKind;
        use prometheus_client::registry::Registry;
        let mut registry = Registry::default();
        let metrics = NodeMetrics::register(&mut registry, NodeKind::Mix);
        let topology = Topology {
            epoch: Epoch(3),
            serial: 0,
            params: NetworkParams {
                genesis_unix_secs: 100,
                epoch_length: Duration::from_secs(10),
                ..NetworkParams::default()
            },
            layers: vec![Vec::new(); 3],
            gateways: Vec::new(),
            authorities: None,
        };
        let at = |s: u64| std::time::UNIX_EPOCH + Duration::from_secs(s);
        // Epoch 3 is [130, 140); the document is good until 150.
        assert!(!show_expiry(&metrics, &topology, at(149), false));
        assert_eq!(metrics.topology_expired.get(), 0);
        assert_eq!(metrics.topology_valid_until.get(), 150);
        assert!(show_expiry(&metrics, &topology, at(150), false));
        assert_eq!(metrics.topology_expired.get(), 1);
        let newer = Topology {
            epoch: Epoch(5),
            ..topology
        };
        assert!(!show_expiry(&metrics, &newer, at(150), true));
        assert_eq!(metrics.topology_expired.get(), 0);
    }

    #[test]
    fn the_refresh_period_notices_a_rotation_early_and_never_spins() {
        let params = NetworkParams {
            epoch_length: Duration::from_secs(80),
            ..NetworkParams::default()
        };
        assert_eq!(
            refresh_period(&params, Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            refresh_period(&params, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
        assert_eq!(
            refresh_period(&params, Duration::ZERO),
            Duration::from_millis(100)
        );
    }
}
