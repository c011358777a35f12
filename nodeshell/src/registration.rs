//! The node and the directory: the client, the signed descriptor, the first
//! topology.
//!
//! A node announces itself with a descriptor signed by its identity key: its
//! role, the addresses it bound, and its Sphinx keys for the current epoch
//! and the next (announced one epoch ahead, so that senders can build
//! packets for the next epoch before it starts). It registers at start and
//! again at every new epoch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use directory::DirectoryClient;
use protocol::epoch::Epoch;
use protocol::keys::IdentityKeyPair;
use rand_chacha::ChaCha20Rng;
use topology::{EpochKey, NodeDescriptor, Topology};

use crate::clock::unix_secs;
use crate::config::NodeConfig;
use crate::keystore::KeyStore;
use crate::node::NodeKind;

/// How often, and how many times, a node that has just registered asks for
/// a topology that lists it before it starts on the one it has.
const LISTED_POLL: Duration = Duration::from_millis(100);
const LISTED_TRIES: usize = 100;

/// The directory client of `config`, with its topology cache in the data folder.
pub fn directory_client(config: &NodeConfig) -> Result<Arc<DirectoryClient>> {
    let set = config.directory.authority_set()?;
    let client =
        DirectoryClient::with_authorities(set, Some(config.node.data_dir.join("topology.json")))
            .map_err(|e| anyhow::anyhow!("directory: {e}"))?;
    Ok(Arc::new(client))
}

/// The topology to bind with: fetched if an authority answers, else the
/// cached one. Several authorities publish their first consensus only at
/// the end of their first voting round, so a node started with them asks
/// again for a while before it gives up.
pub async fn current_topology(
    directory: &DirectoryClient,
    config: &NodeConfig,
) -> Result<Arc<Topology>> {
    let tries = if directory.authorities().len() > 1 {
        FIRST_TOPOLOGY_TRIES
    } else {
        1
    };
    for attempt in 0..tries {
        if attempt > 0 {
            tokio::time::sleep(FIRST_TOPOLOGY_POLL).await;
        }
        if let Some(topology) = directory
            .topology()
            .await
            .ok()
            .or_else(|| directory.cached())
        {
            return Ok(topology);
        }
    }
    anyhow::bail!(
        "directory.url = {}: no topology from the directory and none cached",
        config.directory.first_url()
    )
}

/// How often, and how many times, a node with no topology at all asks again.
const FIRST_TOPOLOGY_POLL: Duration = Duration::from_millis(250);
const FIRST_TOPOLOGY_TRIES: usize = 80;

/// Where the node can be reached, as its descriptor announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// The node-side QUIC address (`node.public_address`, or the one bound).
    pub node: SocketAddr,
    /// A gateway's client-side address; None for a mix node.
    pub clients: Option<SocketAddr>,
}

/// What the node announces to the directory: who it is, where, and with which keys.
pub struct Registration {
    directory: Arc<DirectoryClient>,
    keys: KeyStore,
    identity: IdentityKeyPair,
    kind: NodeKind,
    addresses: Addresses,
    region: Option<String>,
    metrics_url: String,
}

impl Registration {
    /// The registration of a node of `kind` reachable at `addresses`.
    pub fn new(
        directory: Arc<DirectoryClient>,
        keys: KeyStore,
        identity: IdentityKeyPair,
        kind: NodeKind,
        addresses: Addresses,
        config: &NodeConfig,
    ) -> Self {
        Registration {
            directory,
            keys,
            identity,
            kind,
            addresses,
            region: config.node.region.clone(),
            metrics_url: format!("http://{}/metrics", config.metrics.listen),
        }
    }

    /// The directory client.
    pub fn directory(&self) -> &Arc<DirectoryClient> {
        &self.directory
    }

    /// The node's key files.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// Signs and posts the descriptor with the Sphinx keys of `epoch` and the
    /// next (created now if they do not exist yet).
    pub async fn register(&self, epoch: Epoch, rng: &mut ChaCha20Rng) -> Result<()> {
        let sphinx_keys = [epoch, epoch.next()]
            .into_iter()
            .map(|e| {
                self.keys.sphinx_key(e, rng).map(|k| EpochKey {
                    epoch: e,
                    key: k.public(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let descriptor = NodeDescriptor {
            id: self.identity.node_id(),
            role: self.kind.descriptor_role(),
            address: self.addresses.node,
            client_address: self.addresses.clients,
            sphinx_keys,
            region: self.region.clone(),
            metrics_url: Some(self.metrics_url.clone()),
            issued_at: unix_secs(),
        };
        let signed = descriptor
            .sign(&self.identity)
            .map_err(|e| anyhow::anyhow!("signing the descriptor: {e}"))?;
        self.directory
            .register(&signed)
            .await
            .with_context(|| "registering with the directory")
    }

    /// Registers under the epoch of `first`, then waits (a few seconds at
    /// most) for a topology that lists this node; starts on the freshest
    /// topology it has if none does yet.
    pub async fn first_topology(
        &self,
        first: Arc<Topology>,
        rng: &mut ChaCha20Rng,
    ) -> Arc<Topology> {
        if let Err(e) = self.register(first.epoch, rng).await {
            tracing::warn!("registration: {e:#}");
        }
        let me = self.identity.node_id();
        for _ in 0..LISTED_TRIES {
            if let Ok(t) = self.directory.refresh().await
                && t.entry(&me).is_some()
            {
                return t;
            }
            tokio::time::sleep(LISTED_POLL).await;
        }
        tracing::warn!("not listed by the directory yet; starting on the topology we have");
        self.directory.cached().unwrap_or(first)
    }
}
