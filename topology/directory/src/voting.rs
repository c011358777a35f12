//! The voting shell: drives [`topology::voting::VotingRound`] with the real
//! clock and HTTP.
//!
//! At the start of each round the authority opens a round with its own vote
//! and posts the vote to every other authority (retrying until the vote half
//! ends). When the vote half ends it closes the round (computes and signs the
//! consensus) and posts its signature the same way. Whatever arrives is
//! handled by the HTTP handlers on the shared round. As soon as the round's
//! consensus carries `k` valid signatures it is published. All the decisions
//! are the round's; this file only moves bytes and waits.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use audit::AuditEvent;
use protocol::IdentityKeyPair;
use tokio::sync::watch;
use topology::authority::AuthoritySet;
use topology::params::NetworkParams;
use topology::vote::{MAX_VOTE_BYTES, RoundId, SignedVote, Vote};
use topology::voting::{Phase, VoteOutcome, VoteRefusal, VotingRound, VotingSchedule};

use crate::client::REQUEST_TIMEOUT;
use crate::http::Shared;
use crate::metrics::DirectoryMetrics;

/// How often the shell looks at the clock and the round.
const TICK: Duration = Duration::from_millis(50);
/// Pause between two attempts to deliver a vote or a signature.
const RETRY: Duration = Duration::from_millis(150);

/// What an authority needs to vote.
pub(crate) struct Voter {
    pub(crate) key: IdentityKeyPair,
    pub(crate) set: AuthoritySet,
    pub(crate) schedule: VotingSchedule,
    pub(crate) round_secs: u64,
    pub(crate) params: NetworkParams,
}

impl Voter {
    /// Votes round after round until `stop` turns true.
    pub(crate) async fn run(self, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
        let http = match reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
        {
            Ok(http) => http,
            Err(e) => {
                tracing::error!("voting disabled: cannot build an HTTP client: {e}");
                return;
            }
        };
        let mut opened: Option<RoundId> = None;
        let mut closed: Option<RoundId> = None;
        // The round last published, and with how many signatures: a later
        // signature makes the authority publish the same document again.
        let mut published: Option<(RoundId, usize)> = None;
        loop {
            let now = (shared.now)();
            let time = self.schedule.at(now);
            let round = time.round;
            if opened != Some(round) && time.phase == Phase::Vote {
                opened = Some(round);
                self.open(&shared, &http, round, time.phase_ends).await;
            }
            if opened != Some(round) && time.phase == Phase::Sign {
                // Back in the sign half (a restart): join the round with the
                // votes the others hold, or sit it out if they hold none.
                opened = Some(round);
                if self.join_late(&shared, &http, round, time.phase_ends).await {
                    closed = Some(round);
                    self.close(&shared, &http, round, time.phase_ends);
                }
            }
            if time.phase == Phase::Sign && opened == Some(round) && closed != Some(round) {
                closed = Some(round);
                self.close(&shared, &http, round, time.phase_ends);
            }
            if closed == Some(round) {
                let held = published.filter(|(r, _)| *r == round).map_or(0, |(_, n)| n);
                if let Some(signatures) = self.publish(&shared, held).await {
                    published = Some((round, signatures));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Opens `round` with this authority's vote, posts it to the others,
    /// and fetches theirs (those it missed while it was down).
    async fn open(
        &self,
        shared: &Arc<Shared>,
        http: &reqwest::Client,
        round: RoundId,
        until: SystemTime,
    ) {
        let Some(vote) = self.vote(shared, round).await else {
            return;
        };
        let voted = vote.nodes.len();
        let opened = match VotingRound::open(self.set.clone(), vote, &self.key) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot sign the vote for {round}: {e}");
                return;
            }
        };
        let body = opened.own_vote().to_json();
        if let Ok(mut slot) = shared.round.lock() {
            *slot = Some(opened);
        }
        if let Some(audit) = &shared.audit {
            crate::server::record(
                audit,
                &AuditEvent::VotePublished {
                    epoch: round.epoch.0,
                    revision: round.serial,
                },
            );
        }
        tracing::debug!("voting for {round} with {voted} nodes");
        self.post_to_peers(shared, http, "/v1/votes", body, "vote", until);
        tokio::spawn(pull_votes(
            shared.clone(),
            http.clone(),
            self.peer_urls(),
            round,
            until,
        ));
    }

    /// Joins `round` after its vote half: fetches the votes the others
    /// hold; returns whether there were any (then the round can be closed).
    async fn join_late(
        &self,
        shared: &Arc<Shared>,
        http: &reqwest::Client,
        round: RoundId,
        until: SystemTime,
    ) -> bool {
        let Some(vote) = self.vote(shared, round).await else {
            return false;
        };
        let joined = match VotingRound::join_late(self.set.clone(), vote, &self.key) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot join {round}: {e}");
                return false;
            }
        };
        if let Ok(mut slot) = shared.round.lock() {
            *slot = Some(joined);
        }
        let pulled = pull_votes(shared.clone(), http.clone(), self.peer_urls(), round, until).await;
        if pulled > 0 {
            tracing::info!("joined {round} late with {pulled} votes fetched from the others");
        }
        pulled > 0
    }

    /// The other authorities' base URLs.
    fn peer_urls(&self) -> Vec<String> {
        let me = self.key.node_id();
        self.set
            .authorities
            .iter()
            .filter(|a| a.id != me)
            .map(|a| a.url.trim_end_matches('/').to_string())
            .collect()
    }

    /// This authority's vote for `round`, from its state.
    async fn vote(&self, shared: &Arc<Shared>, round: RoundId) -> Option<Vote> {
        let now_epoch = shared.clock.epoch_at((shared.now)());
        let state_shared = shared.clone();
        let material = tokio::task::spawn_blocking(move || {
            state_shared
                .state
                .lock()
                .map(|mut s| s.vote_material(round.epoch, now_epoch))
                .ok()
        })
        .await
        .ok()
        .flatten();
        let Some((nodes, previous_layers)) = material else {
            tracing::error!("directory state unavailable: no vote for {round}");
            return None;
        };
        Some(Vote {
            authority: self.key.node_id(),
            round,
            round_secs: self.round_secs,
            params: self.params.clone(),
            authorities: self.set.clone(),
            previous_layers,
            nodes,
        })
    }

    /// Ends the vote half: computes, signs and posts the consensus signature.
    fn close(
        &self,
        shared: &Arc<Shared>,
        http: &reqwest::Client,
        round: RoundId,
        until: SystemTime,
    ) {
        let closed = match shared.round.lock() {
            Ok(mut slot) => slot
                .as_mut()
                .filter(|r| r.round() == round)
                .map(|r| (r.votes(), r.close(&self.key))),
            Err(_) => None,
        };
        match closed {
            Some((votes, Ok(signature))) => {
                tracing::debug!("consensus for {round} computed from {votes} votes");
                if let Some(audit) = &shared.audit {
                    crate::server::record(
                        audit,
                        &AuditEvent::ConsensusSigned {
                            epoch: round.epoch.0,
                            revision: round.serial,
                        },
                    );
                }
                self.post_to_peers(
                    shared,
                    http,
                    "/v1/signatures",
                    signature.to_json(),
                    "signature",
                    until,
                );
            }
            Some((votes, Err(e))) => {
                let reason = match e {
                    topology::ConsensusError::TooFewVotes { .. } => "too_few_votes",
                    topology::ConsensusError::Disagreement(_) => "disagreement",
                };
                DirectoryMetrics::count(&shared.metrics.consensus_failed, reason);
                tracing::warn!("no consensus for {round} ({votes} votes): {e}");
            }
            None => {}
        }
    }

    /// Publishes the round's consensus if it is complete and carries more
    /// than `held` signatures; returns how many it carries then.
    async fn publish(&self, shared: &Arc<Shared>, held: usize) -> Option<usize> {
        let complete = match shared.round.lock() {
            Ok(slot) => slot
                .as_ref()
                .and_then(|r| r.complete())
                .map(|(t, s)| (t.epoch, t.serial, s.clone())),
            Err(_) => None,
        };
        let (epoch, serial, signed) = complete?;
        let signatures = signed.valid_signers(&self.set).len();
        if signatures <= held {
            return None;
        }
        let state_shared = shared.clone();
        let result = tokio::task::spawn_blocking(move || {
            state_shared
                .state
                .lock()
                .map_err(|_| "directory state lock poisoned".to_string())
                .and_then(|mut s| s.publish(signed).map_err(|e| e.to_string()))
        })
        .await;
        match result {
            Ok(Ok(_)) => {
                if held == 0 {
                    shared.metrics.consensus_published.inc();
                }
                shared
                    .metrics
                    .consensus_signatures
                    .set(i64::try_from(signatures).unwrap_or(i64::MAX));
                shared
                    .metrics
                    .consensus_epoch
                    .set(i64::try_from(epoch.0).unwrap_or(i64::MAX));
                tracing::info!(
                    "published the consensus of epoch {epoch} revision {serial} with {signatures} signatures"
                );
                Some(signatures)
            }
            Ok(Err(e)) => {
                tracing::error!("cannot publish the consensus: {e}");
                None
            }
            Err(e) => {
                tracing::error!("cannot publish the consensus: {e}");
                None
            }
        }
    }

    /// Posts `body` to `path` at every other authority, each in its own task,
    /// retrying until accepted, refused for good, or `until`.
    fn post_to_peers(
        &self,
        shared: &Arc<Shared>,
        http: &reqwest::Client,
        path: &'static str,
        body: String,
        what: &'static str,
        until: SystemTime,
    ) {
        let me = self.key.node_id();
        for peer in self.set.authorities.iter().filter(|a| a.id != me) {
            let url = format!("{}{path}", peer.url);
            let (http, body, shared) = (http.clone(), body.clone(), shared.clone());
            tokio::spawn(async move {
                loop {
                    let result = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let retry = match result {
                        Ok(r) if r.status().is_success() => return,
                        // Refused for good (e.g. the peer holds other votes).
                        Ok(r) if r.status() != reqwest::StatusCode::CONFLICT => {
                            tracing::warn!("{url}: {what} refused: {}", r.status());
                            false
                        }
                        Ok(_) | Err(_) => true,
                    };
                    if !retry || (shared.now)() + RETRY >= until {
                        DirectoryMetrics::count(&shared.metrics.posts_failed, what);
                        tracing::debug!("{url}: {what} not delivered");
                        return;
                    }
                    tokio::time::sleep(RETRY).await;
                }
            });
        }
    }
}

/// Fetches the votes each peer holds (`GET /v1/votes`) and records those of
/// `round` in the shared round; returns how many were new. A peer that does
/// not answer before `until` is counted in `posts_failed{reason="pull"}`.
async fn pull_votes(
    shared: Arc<Shared>,
    http: reqwest::Client,
    peers: Vec<String>,
    round: RoundId,
    until: SystemTime,
) -> usize {
    let left = until
        .duration_since((shared.now)())
        .unwrap_or_default()
        .min(REQUEST_TIMEOUT);
    if left.is_zero() {
        return 0;
    }
    let limit = (peers.len() + 1) * (MAX_VOTE_BYTES + MAX_VOTE_BYTES / 4) + 1024;
    let mut fetches = tokio::task::JoinSet::new();
    for url in peers {
        let http = http.clone();
        fetches.spawn(async move {
            let fetched = fetch_votes(&http, &url, left, limit).await;
            (url, fetched)
        });
    }
    let mut new = 0;
    while let Some(joined) = fetches.join_next().await {
        let Ok((url, fetched)) = joined else { continue };
        let votes = match fetched {
            Ok(votes) => votes,
            Err(e) => {
                DirectoryMetrics::count(&shared.metrics.posts_failed, "pull");
                tracing::debug!("{url}/v1/votes: {e}");
                continue;
            }
        };
        for vote in votes {
            let outcome = match shared.round.lock() {
                Ok(mut slot) => match slot.as_mut().filter(|r| r.round() == round) {
                    Some(r) => r.receive_vote(&vote),
                    None => return new,
                },
                Err(_) => return new,
            };
            match outcome {
                VoteOutcome::Accepted(id) => {
                    new += 1;
                    shared.metrics.votes_pulled.inc();
                    tracing::debug!("vote of {id} fetched from {url}");
                }
                VoteOutcome::Duplicate => {}
                // A peer already in the next round: nothing wrong.
                VoteOutcome::Refused(VoteRefusal::OtherRound(_)) => {}
                VoteOutcome::Refused(refusal) => {
                    DirectoryMetrics::count(&shared.metrics.votes_refused, refusal.label());
                    tracing::warn!("vote fetched from {url} refused: {refusal}");
                }
            }
        }
    }
    new
}

/// One peer's held votes, read up to `limit` bytes within `timeout`.
async fn fetch_votes(
    http: &reqwest::Client,
    base_url: &str,
    timeout: Duration,
    limit: usize,
) -> Result<Vec<SignedVote>, String> {
    let mut response = http
        .get(format!("{base_url}/v1/votes"))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("more than {limit} bytes of votes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("not a list of votes: {e}"))
}
