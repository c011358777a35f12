//! The directory client that nodes and clients use.
//!
//! It fetches the signed topology, verifies it with the pinned directory key
//! (a document that fails is refused and counted, never used), and keeps the
//! last good one in memory and on disk. The disk copy is written atomically
//! (temporary file, fsync, rename) and read back, and verified again, when the
//! client starts, so a node restarted while the directory is down still knows
//! the network. [`DirectoryClient::topology`] falls back to that copy whenever
//! the directory cannot be reached or serves something bad: the network keeps
//! running on the last good topology.
//!
//! A document older (by epoch, then revision) than the one held is refused
//! as well: an attacker who recorded old signed documents cannot roll a
//! client back to them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{Epoch, NodeId};
use thiserror::Error;

use topology::descriptor::SignedDescriptor;
use topology::document::{MAX_TOPOLOGY_BYTES, SignedTopology, Topology};
use topology::error::TopologyError;

/// How long one request to the directory may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the client has no (new) topology or could not register.
#[derive(Debug, Error)]
pub enum DirectoryClientError {
    /// The directory could not be reached or the transfer failed.
    #[error("directory unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// The directory answered with an error status.
    #[error("directory answered {status}: {message}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The directory's explanation.
        message: String,
    },
    /// The document was refused (bad signature, malformed, too large).
    #[error("topology refused: {0}")]
    Refused(#[from] TopologyError),
    /// The document is older than the one already held.
    #[error("topology of epoch {got_epoch} revision {got_serial} is older than the one held")]
    Stale {
        /// Epoch of the refused document.
        got_epoch: Epoch,
        /// Revision of the refused document.
        got_serial: u64,
    },
    /// No topology has ever been fetched and none is cached.
    #[error("no topology: the directory is unreachable and nothing is cached")]
    NoTopology,
    /// The cache file could not be written.
    #[error("{}: cannot write topology cache: {reason}", path.display())]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
}

/// Fetches, verifies and caches topologies; registers descriptors.
pub struct DirectoryClient {
    http: reqwest::Client,
    base_url: String,
    pinned: NodeId,
    cache_path: Option<PathBuf>,
    current: Mutex<Option<Arc<Topology>>>,
    bad_signature: AtomicU64,
}

impl DirectoryClient {
    /// A client of the directory at `base_url` (e.g. `http://127.0.0.1:8080`)
    /// whose key is `pinned`, caching in `cache_path` (loaded now, if present).
    pub fn new(
        base_url: &str,
        pinned: NodeId,
        cache_path: Option<PathBuf>,
    ) -> Result<Self, DirectoryClientError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(DirectoryClientError::Unreachable)?;
        let current = cache_path
            .as_deref()
            .and_then(|path| load_cache(path, &pinned))
            .map(Arc::new);
        Ok(DirectoryClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            pinned,
            cache_path,
            current: Mutex::new(current),
            bad_signature: AtomicU64::new(0),
        })
    }

    /// The last good topology (fetched or loaded from the cache), if any.
    pub fn cached(&self) -> Option<Arc<Topology>> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// How many documents were refused for a bad signature.
    pub fn bad_signatures(&self) -> u64 {
        self.bad_signature.load(Ordering::Relaxed)
    }

    /// The current topology: fetched fresh if possible, else the last good one.
    pub async fn topology(&self) -> Result<Arc<Topology>, DirectoryClientError> {
        match self.refresh().await {
            Ok(topology) => Ok(topology),
            Err(e) => {
                tracing::warn!("using the cached topology: {e}");
                self.cached().ok_or(DirectoryClientError::NoTopology)
            }
        }
    }

    /// Fetches the current epoch's topology; on success it becomes the cached one.
    pub async fn refresh(&self) -> Result<Arc<Topology>, DirectoryClientError> {
        let signed = self.fetch_signed("/v1/topology").await?;
        let topology = Arc::new(self.verify(&signed)?);
        if let Some(held) = self.cached()
            && (topology.epoch, topology.serial) < (held.epoch, held.serial)
        {
            return Err(DirectoryClientError::Stale {
                got_epoch: topology.epoch,
                got_serial: topology.serial,
            });
        }
        if let Some(path) = &self.cache_path {
            write_cache(path, &signed).await?;
        }
        if let Ok(mut current) = self.current.lock() {
            *current = Some(topology.clone());
        }
        Ok(topology)
    }

    /// Fetches and verifies the topology of `epoch` (e.g. the next one, ahead
    /// of a key rotation) without touching the cache.
    pub async fn fetch_epoch(&self, epoch: Epoch) -> Result<Topology, DirectoryClientError> {
        let signed = self
            .fetch_signed(&format!("/v1/topology/{}", epoch.0))
            .await?;
        let topology = self.verify(&signed)?;
        if topology.epoch != epoch {
            return Err(TopologyError::Malformed {
                what: "topology",
                reason: format!("asked for epoch {epoch}, got {}", topology.epoch),
            }
            .into());
        }
        Ok(topology)
    }

    /// Posts a signed descriptor to the directory.
    pub async fn register(
        &self,
        descriptor: &SignedDescriptor,
    ) -> Result<(), DirectoryClientError> {
        let response = self
            .http
            .post(format!("{}/v1/descriptors", self.base_url))
            .header("content-type", "application/json")
            .body(descriptor.to_json())
            .send()
            .await
            .map_err(DirectoryClientError::Unreachable)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = response.text().await.unwrap_or_default();
        Err(DirectoryClientError::Status {
            status: status.as_u16(),
            message: message.trim().chars().take(512).collect(),
        })
    }

    fn verify(&self, signed: &SignedTopology) -> Result<Topology, DirectoryClientError> {
        signed.verify(&self.pinned).map_err(|e| {
            if matches!(e, TopologyError::BadSignature { .. }) {
                self.bad_signature.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("topology with a bad signature refused");
            }
            DirectoryClientError::Refused(e)
        })
    }

    async fn fetch_signed(&self, path: &str) -> Result<SignedTopology, DirectoryClientError> {
        let unreachable = DirectoryClientError::Unreachable;
        let mut response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_TOPOLOGY_BYTES + 1024 {
                return Err(TopologyError::Malformed {
                    what: "topology",
                    reason: format!("larger than {MAX_TOPOLOGY_BYTES} bytes"),
                }
                .into());
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(DirectoryClientError::Status {
                status: status.as_u16(),
                message: text.trim().chars().take(512).collect(),
            });
        }
        Ok(SignedTopology::from_json(&text)?)
    }
}

/// Reads and verifies the cache; anything unreadable is ignored (and logged).
fn load_cache(path: &Path, pinned: &NodeId) -> Option<Topology> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("{}: cannot read topology cache: {e}", path.display());
            return None;
        }
    };
    match SignedTopology::from_json(&text).and_then(|s| s.verify(pinned)) {
        Ok(topology) => Some(topology),
        Err(e) => {
            tracing::warn!("{}: cached topology ignored: {e}", path.display());
            None
        }
    }
}

/// Writes the cache atomically: temporary file, fsync, rename.
async fn write_cache(path: &Path, signed: &SignedTopology) -> Result<(), DirectoryClientError> {
    use tokio::io::AsyncWriteExt;
    let fail = |e: std::io::Error| DirectoryClientError::Cache {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    let mut file = tokio::fs::File::create(&tmp).await.map_err(fail)?;
    file.write_all(signed.to_json().as_bytes())
        .await
        .map_err(fail)?;
    file.sync_all().await.map_err(fail)?;
    drop(file);
    tokio::fs::rename(&tmp, path).await.map_err(fail)
}
