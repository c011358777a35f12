//! The directory's HTTP API (axum).
//!
//! - `POST /v1/descriptors`: a signed descriptor envelope. 200 when recorded;
//!   400 when malformed, 403 when the signature does not verify under the id
//!   it names or the node is not on the allow list, 422 when well-signed but refused (stale, older, directory full).
//! - `GET /v1/topology`: the signed topology of the current epoch.
//! - `GET /v1/topology/{epoch}`: that epoch's, if published (or the next one).
//! - `GET /metrics`: Prometheus metrics (refusals by reason, nodes, epoch).
//!
//! Plain HTTP is enough: every document is signed, and readers verify it with
//! the pinned directory key. Bodies are size-capped, and the database work
//! runs on the blocking pool so a slow disk never stalls the reactor.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use protocol::Epoch;

use crate::metrics::DirectoryMetrics;
use crate::state::{DirectoryState, RegisterError};
use topology::descriptor::{MAX_DESCRIPTOR_BYTES, SignedDescriptor};
use topology::error::TopologyError;
use topology::params::EpochClock;

/// Source of the current wall-clock time (the real clock, or a test's).
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What the handlers share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<DirectoryState>,
    pub(crate) clock: EpochClock,
    pub(crate) now: WallClock,
    pub(crate) metrics: DirectoryMetrics,
}

impl Shared {
    fn epoch(&self) -> Epoch {
        let epoch = self.clock.epoch_at((self.now)());
        self.metrics
            .epoch
            .set(i64::try_from(epoch.0).unwrap_or(i64::MAX));
        epoch
    }

    /// Runs `f` on the state, on the blocking pool (it may write the database).
    async fn with_state<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut DirectoryState) -> T + Send + 'static,
    ) -> Result<T, String> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = shared
                .state
                .lock()
                .map_err(|_| "directory state lock poisoned".to_string())?;
            Ok(f(&mut state))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// The API's routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/descriptors", post(post_descriptor))
        .route("/v1/topology", get(get_current))
        .route("/v1/topology/{epoch}", get(get_epoch))
        .route("/metrics", get(get_metrics))
        .layer(DefaultBodyLimit::max(MAX_DESCRIPTOR_BYTES * 2))
        .with_state(shared)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("{e}");
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into())
}

async fn post_descriptor(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let signed = match std::str::from_utf8(&body)
        .map_err(|e| TopologyError::Malformed {
            what: "descriptor envelope",
            reason: e.to_string(),
        })
        .and_then(SignedDescriptor::from_json)
    {
        Ok(signed) => signed,
        Err(e) => {
            shared.metrics.refused(&e);
            return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
    };
    let now = shared.epoch();
    let result = shared
        .with_state(move |state| state.register(signed, now).map(|()| state.node_count()))
        .await;
    match result {
        Ok(Ok(nodes)) => {
            shared.metrics.descriptors_accepted.inc();
            shared
                .metrics
                .nodes
                .set(i64::try_from(nodes).unwrap_or(i64::MAX));
            text(StatusCode::OK, format!("registered in epoch {now}\n"))
        }
        Ok(Err(RegisterError::Refused(e))) => {
            shared.metrics.refused(&e);
            let status = match e {
                TopologyError::Malformed { .. } => StatusCode::BAD_REQUEST,
                TopologyError::BadSignature { .. }
                | TopologyError::WrongSigner { .. }
                | TopologyError::NotAllowed(_) => StatusCode::FORBIDDEN,
                TopologyError::Refused(_) | TopologyError::InvalidParams(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
            };
            tracing::debug!("descriptor refused: {e}");
            text(status, format!("{e}\n"))
        }
        Ok(Err(RegisterError::Store(e))) => internal(e),
        Err(e) => internal(e),
    }
}

async fn get_current(State(shared): State<Arc<Shared>>) -> Response {
    let now = shared.epoch();
    serve_topology(shared, now, now).await
}

async fn get_epoch(State(shared): State<Arc<Shared>>, Path(epoch): Path<String>) -> Response {
    let Ok(epoch) = epoch.parse::<u64>() else {
        return text(StatusCode::BAD_REQUEST, "the epoch is a number\n".into());
    };
    let now = shared.epoch();
    serve_topology(shared, Epoch(epoch), now).await
}

async fn serve_topology(shared: Arc<Shared>, epoch: Epoch, now: Epoch) -> Response {
    match shared
        .with_state(move |state| state.topology(epoch, now))
        .await
    {
        Ok(Ok(Some(signed))) => {
            shared.metrics.topologies_served.inc();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                signed.to_json(),
            )
                .into_response()
        }
        Ok(Ok(None)) => text(
            StatusCode::NOT_FOUND,
            format!("no topology for epoch {epoch} (now {now})\n"),
        ),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn get_metrics(State(shared): State<Arc<Shared>>) -> Response {
    shared.epoch();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        shared.metrics.encode(),
    )
        .into_response()
}
