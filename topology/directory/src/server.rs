//! The directory service: an HTTP server in front of `state::DirectoryState`.
//!
//! [`DirectoryServer::start`] opens the database, binds the listener and
//! serves until [`DirectoryServer::stop`], which shuts down gracefully and
//! waits until the database is closed, so a new server can open it at once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use audit::{AuditEvent, SharedAuditLog};
use protocol::{IdentityKeyPair, NodeId};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::registry::Registry;
use crate::voting::Voter;
use topology::authority::AuthoritySet;
use topology::voting::VotingSchedule;

use crate::config::DirectoryConfig;
use crate::http::{self, WallClock};
use crate::metrics;
use crate::state::DirectoryState;
use crate::store::{DirectoryStore, StoreError};

/// Why the directory could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum DirectoryError {
    /// The database could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("`listen`: cannot listen on {addr}: {reason}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        reason: std::io::Error,
    },
    /// The config names an impossible authority set.
    #[error("{0}")]
    Config(String),
    /// The server failed while running.
    #[error("directory server failed: {0}")]
    Serve(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Records `event` in the directory's audit log while it runs: a failure is
/// logged as an error, and the directory goes on.
pub(crate) fn record(audit: &SharedAuditLog, event: &AuditEvent) {
    if let Err(e) = audit.record(event) {
        tracing::error!("audit log: cannot record `{}`: {e}", event.kind());
    }
}

/// A running directory.
pub struct DirectoryServer {
    local_addr: SocketAddr,
    id: NodeId,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl DirectoryServer {
    /// Starts the directory of `config`, signing with `key`, on the system clock.
    #[allow(clippy::disallowed_methods)] // the service's shell owns the real clock
    pub async fn start(
        config: &DirectoryConfig,
        key: IdentityKeyPair,
    ) -> Result<Self, DirectoryError> {
        Self::start_with_clock(config, key, Arc::new(SystemTime::now)).await
    }

    /// Starts the directory of `config` on the system clock, recording the
    /// votes it publishes and the documents it signs in `audit`.
    #[allow(clippy::disallowed_methods)] // the service's shell owns the real clock
    pub async fn start_audited(
        config: &DirectoryConfig,
        key: IdentityKeyPair,
        audit: SharedAuditLog,
    ) -> Result<Self, DirectoryError> {
        Self::launch(config, key, Arc::new(SystemTime::now), Some(audit)).await
    }

    /// Starts the directory with the wall clock `now` (tests move it by hand).
    pub async fn start_with_clock(
        config: &DirectoryConfig,
        key: IdentityKeyPair,
        now: WallClock,
    ) -> Result<Self, DirectoryError> {
        Self::launch(config, key, now, None).await
    }

    async fn launch(
        config: &DirectoryConfig,
        key: IdentityKeyPair,
        now: WallClock,
        audit: Option<SharedAuditLog>,
    ) -> Result<Self, DirectoryError> {
        let id = key.node_id();
        let db_path = config.db_path.clone();
        let params = config.network.clone();
        let registry = Registry::new(config.max_nodes, config.max_absent_epochs)
            .with_allow_list(config.allowed_nodes.iter().copied());
        let voting = config.votes();
        let set = if voting {
            let set = config
                .authority_set()
                .map_err(|e| DirectoryError::Config(format!("[[authorities]]: {e}")))?;
            if !set.contains(&id) {
                return Err(DirectoryError::Config(format!(
                    "[[authorities]] does not list this directory's own key {id}"
                )));
            }
            set
        } else {
            AuthoritySet::single(id, format!("http://{}", config.listen))
        };
        let voter = voting.then(|| Voter {
            key: IdentityKeyPair::from_secret_bytes(&key.secret_bytes()),
            set: set.clone(),
            schedule: VotingSchedule::new(config.epoch_clock(), config.round_secs),
            round_secs: config.round_secs,
            params: config.network.clone(),
        });
        let state_audit = audit.clone();
        let state = tokio::task::spawn_blocking(move || {
            let store = DirectoryStore::open(&db_path)?;
            DirectoryState::load(store, key, params, registry, set, voting)
                .map(|state| state.with_audit(state_audit))
        })
        .await
        .map_err(|e| DirectoryError::Serve(Box::new(e)))??;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|reason| DirectoryError::Bind {
                addr: config.listen,
                reason,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|reason| DirectoryError::Bind {
                addr: config.listen,
                reason,
            })?;
        tracing::info!(
            "directory {id} listening on http://{local_addr}, {} nodes registered",
            state.node_count()
        );
        let metrics = metrics::DirectoryMetrics::new();
        metrics
            .nodes
            .set(i64::try_from(state.node_count()).unwrap_or(i64::MAX));
        let shared = Arc::new(http::Shared {
            state: Mutex::new(state),
            clock: config.epoch_clock(),
            now,
            metrics,
            round: Mutex::new(None),
            audit,
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = http::router(shared.clone());
        let (stop_voting, voting_stopped) = tokio::sync::watch::channel(false);
        let voting_task = voter.map(|voter| tokio::spawn(voter.run(shared, voting_stopped)));
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            let _ = stop_voting.send(true);
            if let Some(task) = voting_task {
                let _ = task.await;
            }
            served
        });
        Ok(DirectoryServer {
            local_addr,
            id,
            shutdown,
            task,
        })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The directory's public key, which clients pin.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Base URL of the API, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops serving and waits until the database is closed.
    pub async fn stop(self) -> Result<(), DirectoryError> {
        let _ = self.shutdown.send(());
        self.task
            .await
            .map_err(|e| DirectoryError::Serve(Box::new(e)))?
            .map_err(|e| DirectoryError::Serve(Box::new(e)))
    }

    /// Serves until the server fails (for the binary, which stops by signal).
    pub async fn wait(&mut self) -> Result<(), DirectoryError> {
        (&mut self.task)
            .await
            .map_err(|e| DirectoryError::Serve(Box::new(e)))?
            .map_err(|e| DirectoryError::Serve(Box::new(e)))
    }
}
