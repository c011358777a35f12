//! The directory client that nodes and clients use.
//!
//! It pins the directory authorities (keys, URLs, threshold: one authority is
//! the set of one), fetches the signed topology from any of them, verifies
//! that `k` pinned authorities signed it (a document that fails is refused
//! and counted, never used), and keeps the
//! last good one in memory and on disk. The disk copy is written atomically
//! (temporary file, fsync, rename) and read back, and verified again, when the
//! client starts, so a node restarted while the directory is down still knows
//! the network. [`DirectoryClient::topology`] falls back to that copy whenever
//! the directory cannot be reached or serves something bad: the network keeps
//! running on the last good topology.
//!
//! A document older (by epoch, then revision) than the one held is refused
//! as well: an attacker who recorded old signed documents cannot roll a
//! client back to them. A different document for the epoch and revision
//! held is refused and counted as a conflict (it would take `k` authorities
//! signing two documents): the first one stays.
//!
//! Mirrors ([`DirectoryClient::with_mirrors`], e.g. a gateway's
//! `GET /v1/topology`) are asked before the authorities; their answers are
//! verified the same way, so a mirror can withhold or delay but not forge.
//!
//! When an accepted document names another authority set (a key added,
//! replaced or retired by a consensus the old set signed), the client holds
//! that set from then on, and keeps it next to its cache across restarts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{Epoch, NodeId};
use thiserror::Error;

use topology::authority::AuthoritySet;
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
    /// Another document for the epoch and revision held.
    #[error("a different topology of epoch {epoch} revision {serial} than the one held")]
    Conflict {
        /// Epoch of the refused document.
        epoch: Epoch,
        /// Revision of the refused document.
        serial: u64,
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

/// What the client holds: the last good topology and the envelope it came in.
struct Held {
    topology: Arc<Topology>,
    signed: SignedTopology,
}

/// Fetches, verifies and caches topologies; registers descriptors.
pub struct DirectoryClient {
    http: reqwest::Client,
    authorities: Mutex<AuthoritySet>,
    /// Which authority to ask first next time (they take turns).
    next: AtomicUsize,
    /// Mirrors (e.g. the client's gateway) asked before the authorities.
    mirrors: Vec<String>,
    cache_path: Option<PathBuf>,
    current: Mutex<Option<Held>>,
    bad_signature: AtomicU64,
    conflicts: AtomicU64,
    set_changes: AtomicU64,
}

impl DirectoryClient {
    /// A client of the one directory at `base_url` (e.g. `http://127.0.0.1:8080`)
    /// whose key is `pinned`, caching in `cache_path` (loaded now, if present).
    pub fn new(
        base_url: &str,
        pinned: NodeId,
        cache_path: Option<PathBuf>,
    ) -> Result<Self, DirectoryClientError> {
        Self::with_authorities(AuthoritySet::single(pinned, base_url), cache_path)
    }

    /// A client of the directory authorities `pinned`, caching in
    /// `cache_path` (loaded now, if present, with the set followed since).
    pub fn with_authorities(
        pinned: AuthoritySet,
        cache_path: Option<PathBuf>,
    ) -> Result<Self, DirectoryClientError> {
        pinned.check_shape()?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(DirectoryClientError::Unreachable)?;
        let followed = cache_path
            .as_deref()
            .and_then(load_followed_set)
            .unwrap_or_else(|| pinned.clone());
        let current = cache_path
            .as_deref()
            .and_then(|path| load_cache(path, &followed).or_else(|| load_cache(path, &pinned)));
        let authorities = if current.is_some() { followed } else { pinned };
        Ok(DirectoryClient {
            http,
            authorities: Mutex::new(authorities),
            next: AtomicUsize::new(0),
            mirrors: Vec::new(),
            cache_path,
            current: Mutex::new(current),
            bad_signature: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            set_changes: AtomicU64::new(0),
        })
    }

    /// Asks these mirrors (base URLs serving `GET /v1/topology`, such as a
    /// gateway's) for the current topology before the authorities. A mirror
    /// cannot forge: what it serves is verified like an authority's answer.
    pub fn with_mirrors(mut self, mirrors: Vec<String>) -> Self {
        self.mirrors = mirrors
            .into_iter()
            .map(|m| m.trim_end_matches('/').to_string())
            .collect();
        self
    }

    /// The envelope of the last good topology, exactly as verified (what a
    /// mirror serves).
    pub fn cached_signed(&self) -> Option<SignedTopology> {
        self.current
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|h| h.signed.clone()))
    }

    /// The authority set held now (the pinned one, or the one followed since).
    pub fn authorities(&self) -> AuthoritySet {
        match self.authorities.lock() {
            Ok(set) => set.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The last good topology (fetched or loaded from the cache), if any.
    pub fn cached(&self) -> Option<Arc<Topology>> {
        self.current
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|h| h.topology.clone()))
    }

    /// How many documents were refused for a bad signature or too few of them.
    pub fn bad_signatures(&self) -> u64 {
        self.bad_signature.load(Ordering::Relaxed)
    }

    /// How many documents conflicted with the one held (same epoch and
    /// revision, other content).
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// How many times the held authority set changed through a consensus.
    pub fn authority_set_changes(&self) -> u64 {
        self.set_changes.load(Ordering::Relaxed)
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

    /// The authorities' URLs, starting with a different one each call.
    fn urls(&self) -> Vec<String> {
        let set = self.authorities();
        let n = set.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut urls: Vec<String> = set
            .authorities
            .iter()
            .map(|a| a.url.trim_end_matches('/').to_string())
            .collect();
        let len = urls.len();
        urls.rotate_left(start.min(len));
        urls
    }

    /// Fetches the current epoch's topology from the first authority that
    /// serves a good one; on success it becomes the cached one.
    pub async fn refresh(&self) -> Result<Arc<Topology>, DirectoryClientError> {
        let mut last = DirectoryClientError::NoTopology;
        let sources = self.mirrors.iter().cloned().chain(self.urls());
        for url in sources {
            match self.refresh_from(&url).await {
                Ok(topology) => return Ok(topology),
                Err(e) => {
                    tracing::debug!("{url}: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn refresh_from(&self, url: &str) -> Result<Arc<Topology>, DirectoryClientError> {
        let signed = self.fetch_signed(url, "/v1/topology").await?;
        let topology = Arc::new(self.verify(&signed)?);
        if let Ok(current) = self.current.lock()
            && let Some(held) = current.as_ref()
        {
            let (t, h) = (&topology, &held.topology);
            if (t.epoch, t.serial) < (h.epoch, h.serial) {
                return Err(DirectoryClientError::Stale {
                    got_epoch: t.epoch,
                    got_serial: t.serial,
                });
            }
            if (t.epoch, t.serial) == (h.epoch, h.serial) {
                if held.signed.body != signed.body {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        "{url} serves a different topology of epoch {} revision {} than the one held; keeping the first",
                        t.epoch,
                        t.serial
                    );
                    return Err(DirectoryClientError::Conflict {
                        epoch: t.epoch,
                        serial: t.serial,
                    });
                }
                return Ok(held.topology.clone());
            }
        }
        if let Some(path) = &self.cache_path {
            write_cache(path, &signed.to_json()).await?;
        }
        self.follow(&topology).await;
        if let Ok(mut current) = self.current.lock() {
            *current = Some(Held {
                topology: topology.clone(),
                signed,
            });
        }
        Ok(topology)
    }

    /// Holds the authority set `topology` names, if it names another one.
    async fn follow(&self, topology: &Topology) {
        let Some(next) = &topology.authorities else {
            return;
        };
        let changed = match self.authorities.lock() {
            Ok(mut held) if *held != *next => {
                *held = next.clone();
                true
            }
            _ => false,
        };
        if !changed {
            return;
        }
        self.set_changes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "following the authority set of epoch {} revision {}: {} authorities, {} needed",
            topology.epoch,
            topology.serial,
            next.len(),
            next.threshold
        );
        if let Some(path) = &self.cache_path {
            let text = serde_json::to_string(next).unwrap_or_default();
            if let Err(e) = write_cache(&followed_set_path(path), &text).await {
                tracing::warn!("{e}");
            }
        }
    }

    /// Fetches and verifies the topology of `epoch` (e.g. the next one, ahead
    /// of a key rotation) from the first authority that has it, without
    /// touching the cache.
    pub async fn fetch_epoch(&self, epoch: Epoch) -> Result<Topology, DirectoryClientError> {
        let mut last = DirectoryClientError::NoTopology;
        for url in self.urls() {
            let result = async {
                let signed = self
                    .fetch_signed(&url, &format!("/v1/topology/{}", epoch.0))
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
            .await;
            match result {
                Ok(topology) => return Ok(topology),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Posts a signed descriptor to every authority at once; succeeds if
    /// one of them recorded it (the others' failures are logged).
    pub async fn register(
        &self,
        descriptor: &SignedDescriptor,
    ) -> Result<(), DirectoryClientError> {
        let mut posts = tokio::task::JoinSet::new();
        for url in self.urls() {
            let http = self.http.clone();
            let body = descriptor.to_json();
            posts.spawn(async move {
                let result = post_descriptor(&http, &url, body).await;
                (url, result)
            });
        }
        let mut outcome = Err(DirectoryClientError::NoTopology);
        while let Some(joined) = posts.join_next().await {
            let Ok((url, result)) = joined else { continue };
            match result {
                Ok(()) => outcome = Ok(()),
                Err(e) => {
                    tracing::debug!("{url}: registration failed: {e}");
                    if outcome.is_err() {
                        outcome = Err(e);
                    }
                }
            }
        }
        outcome
    }

    fn verify(&self, signed: &SignedTopology) -> Result<Topology, DirectoryClientError> {
        signed.verify(&self.authorities()).map_err(|e| {
            if matches!(
                e,
                TopologyError::BadSignature { .. } | TopologyError::TooFewSignatures { .. }
            ) {
                self.bad_signature.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("topology refused: {e}");
            }
            DirectoryClientError::Refused(e)
        })
    }

    async fn fetch_signed(
        &self,
        base_url: &str,
        path: &str,
    ) -> Result<SignedTopology, DirectoryClientError> {
        let unreachable = DirectoryClientError::Unreachable;
        let mut response = self
            .http
            .get(format!("{base_url}{path}"))
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_TOPOLOGY_BYTES + 64 * 1024 {
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

async fn post_descriptor(
    http: &reqwest::Client,
    base_url: &str,
    body: String,
) -> Result<(), DirectoryClientError> {
    let response = http
        .post(format!("{base_url}/v1/descriptors"))
        .header("content-type", "application/json")
        .body(body)
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

/// Where the authority set followed since the pin is kept, next to the cache.
fn followed_set_path(cache: &Path) -> PathBuf {
    cache.with_extension("authorities.json")
}

/// Reads the followed authority set, if one was written and still makes sense.
fn load_followed_set(cache: &Path) -> Option<AuthoritySet> {
    let text = std::fs::read_to_string(followed_set_path(cache)).ok()?;
    let set: AuthoritySet = serde_json::from_str(&text).ok()?;
    set.check_shape().ok().map(|()| set)
}

/// Reads and verifies the cache; anything unreadable is ignored (and logged).
fn load_cache(path: &Path, pinned: &AuthoritySet) -> Option<Held> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("{}: cannot read topology cache: {e}", path.display());
            return None;
        }
    };
    let signed = SignedTopology::from_json(&text);
    match signed.and_then(|s| s.verify(pinned).map(|t| (t, s))) {
        Ok((topology, signed)) => Some(Held {
            topology: Arc::new(topology),
            signed,
        }),
        Err(e) => {
            tracing::warn!("{}: cached topology ignored: {e}", path.display());
            None
        }
    }
}

/// Writes the cache atomically: temporary file, fsync, rename.
async fn write_cache(path: &Path, text: &str) -> Result<(), DirectoryClientError> {
    use tokio::io::AsyncWriteExt;
    let fail = |e: std::io::Error| DirectoryClientError::Cache {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    let mut file = tokio::fs::File::create(&tmp).await.map_err(fail)?;
    file.write_all(text.as_bytes()).await.map_err(fail)?;
    file.sync_all().await.map_err(fail)?;
    drop(file);
    tokio::fs::rename(&tmp, path).await.map_err(fail)
}
