//! The directory's HTTP API (axum).
//!
//! - `POST /v1/descriptors`: a signed descriptor envelope. 200 when recorded;
//!   400 when malformed, 403 when the signature does not verify under the id
//!   it names or the node is not on the allow list, 422 when well-signed but refused (stale, older, directory full).
//! - `GET /v1/topology`: the signed topology of the current epoch.
//! - `GET /v1/topology/{epoch}`: that epoch's, if published (or the next one).
//! - `POST /v1/votes`: another authority's signed vote for the round under
//!   way. 200 when recorded (or already held); 400 malformed, 403 bad
//!   signature or not an authority, 409 for another round, late, or a second
//!   vote of the same authority, 413 oversize, 422 other parameters.
//! - `GET /v1/votes`: the votes this authority holds for the round under
//!   way (its own included), as a JSON array of vote envelopes, so that an
//!   authority that missed them (it restarted) fetches them.
//! - `POST /v1/signatures`: another authority's signature over the round's
//!   consensus. 200 when added (or held until this authority computed its
//!   own), 400 malformed, 403 not an authority, 409 for another round or
//!   over another body.
//! - `GET /metrics`: Prometheus metrics (refusals by reason, nodes, epoch,
//!   votes and signatures by outcome, consensus published or failed).
//!
//! Plain HTTP is enough: every document is signed, and readers verify it with
//! the pinned directory key. Bodies are size-capped, and the database work
//! runs on the blocking pool so a slow disk never stalls the reactor.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use audit::SharedAuditLog;
use axum::Router;
use axum::body::{Body, Bytes};
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
use topology::vote::{MAX_VOTE_BYTES, RoundSignature, SignedVote};
use topology::voting::{SignatureOutcome, SignatureRefusal, VoteOutcome, VoteRefusal, VotingRound};

/// Source of the current wall-clock time (the real clock, or a test's).
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What the handlers share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<DirectoryState>,
    pub(crate) clock: EpochClock,
    pub(crate) now: WallClock,
    pub(crate) metrics: DirectoryMetrics,
    /// The voting round under way (several authorities only).
    pub(crate) round: Mutex<Option<VotingRound>>,
    /// Where votes published and consensus signatures are recorded.
    pub(crate) audit: Option<SharedAuditLog>,
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
        .route("/v1/votes", post(post_vote).get(get_votes))
        .route("/v1/signatures", post(post_signature))
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
                | TopologyError::NotAllowed(_)
                | TopologyError::NotAnAuthority(_)
                | TopologyError::TooFewSignatures { .. } => StatusCode::FORBIDDEN,
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

/// Reads at most `limit` bytes of UTF-8 text; `Err` says why not.
async fn read_text(body: Body, limit: usize) -> Result<String, (&'static str, StatusCode, String)> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        (
            "oversize",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("larger than {limit} bytes"),
        )
    })?;
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        (
            "malformed",
            StatusCode::BAD_REQUEST,
            format!("not UTF-8: {e}"),
        )
    })
}

async fn post_vote(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    let refuse = |reason: &'static str, status: StatusCode, message: String| {
        DirectoryMetrics::count(&shared.metrics.votes_refused, reason);
        tracing::debug!("vote refused: {message}");
        text(status, format!("vote refused: {message}\n"))
    };
    // The envelope's JSON quoting may grow the body a little beyond the vote.
    let text_body = match read_text(body, MAX_VOTE_BYTES + MAX_VOTE_BYTES / 4).await {
        Ok(t) => t,
        Err((reason, status, message)) => return refuse(reason, status, message),
    };
    let signed = match SignedVote::from_json(&text_body) {
        Ok(s) => s,
        Err(e) => return refuse("malformed", StatusCode::BAD_REQUEST, e.to_string()),
    };
    // Signature checks cost a few tens of microseconds per vote: fine under the lock.
    let outcome = match shared.round.lock() {
        Ok(mut round) => match round.as_mut() {
            Some(round) => round.receive_vote(&signed),
            None => VoteOutcome::Refused(VoteRefusal::Late),
        },
        Err(_) => return internal("voting round lock poisoned"),
    };
    match outcome {
        VoteOutcome::Accepted(id) => {
            shared.metrics.votes_accepted.inc();
            tracing::debug!("vote of {id} recorded");
            text(StatusCode::OK, "vote recorded\n".into())
        }
        VoteOutcome::Duplicate => text(StatusCode::OK, "vote already held\n".into()),
        VoteOutcome::Refused(refusal) => {
            let status = match refusal {
                VoteRefusal::Malformed(_) => StatusCode::BAD_REQUEST,
                VoteRefusal::BadSignature | VoteRefusal::NotAnAuthority(_) => StatusCode::FORBIDDEN,
                VoteRefusal::OtherRound(_) | VoteRefusal::Late | VoteRefusal::Conflicting(_) => {
                    StatusCode::CONFLICT
                }
                VoteRefusal::Disagrees(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            if !matches!(refusal, VoteRefusal::OtherRound(_) | VoteRefusal::Late) {
                tracing::warn!("vote refused: {refusal}");
            }
            refuse(refusal.label(), status, refusal.to_string())
        }
    }
}

async fn get_votes(State(shared): State<Arc<Shared>>) -> Response {
    let votes: Vec<SignedVote> = match shared.round.lock() {
        Ok(round) => round
            .as_ref()
            .map(|r| r.signed_votes().cloned().collect())
            .unwrap_or_default(),
        Err(_) => return internal("voting round lock poisoned"),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&votes).unwrap_or_else(|_| "[]".into()),
    )
        .into_response()
}

async fn post_signature(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    let refuse = |reason: &'static str, status: StatusCode, message: String| {
        DirectoryMetrics::count(&shared.metrics.signatures_refused, reason);
        tracing::debug!("signature refused: {message}");
        text(status, format!("signature refused: {message}\n"))
    };
    let text_body = match read_text(body, RoundSignature::MAX_BYTES).await {
        Ok(t) => t,
        Err((reason, status, message)) => return refuse(reason, status, message),
    };
    let signature = match RoundSignature::from_json(&text_body) {
        Ok(s) => s,
        Err(e) => return refuse("malformed", StatusCode::BAD_REQUEST, e.to_string()),
    };
    let outcome = match shared.round.lock() {
        Ok(mut round) => match round.as_mut() {
            Some(round) => round.receive_signature(&signature),
            None => SignatureOutcome::Refused(SignatureRefusal::OtherRound(signature.round)),
        },
        Err(_) => return internal("voting round lock poisoned"),
    };
    match outcome {
        SignatureOutcome::Accepted { valid } => {
            shared.metrics.signatures_accepted.inc();
            text(StatusCode::OK, format!("signature added ({valid} valid)\n"))
        }
        SignatureOutcome::Held => text(StatusCode::OK, "signature held\n".into()),
        SignatureOutcome::Duplicate => text(StatusCode::OK, "signature already held\n".into()),
        SignatureOutcome::Refused(refusal) => {
            let status = match refusal {
                SignatureRefusal::NotAnAuthority(_) => StatusCode::FORBIDDEN,
                SignatureRefusal::OtherRound(_)
                | SignatureRefusal::Mismatch(_)
                | SignatureRefusal::Early => StatusCode::CONFLICT,
            };
            if matches!(refusal, SignatureRefusal::Mismatch(_)) {
                tracing::warn!("signature refused: {refusal}");
            }
            refuse(refusal.label(), status, refusal.to_string())
        }
    }
}
