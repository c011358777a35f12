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
use std::time::Duration;

use protocol::IdentityKeyPair;
use tokio::sync::watch;
use topology::authority::AuthoritySet;
use topology::params::NetworkParams;
use topology::vote::{RoundId, Vote};
use topology::voting::{Phase, VotingRound, VotingSchedule};

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

    /// Opens `round` with this authority's vote and posts it to the others.
    async fn open(
        &self,
        shared: &Arc<Shared>,
        http: &reqwest::Client,
        round: RoundId,
        until: std::time::SystemTime,
    ) {
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
            return;
        };
        let vote = Vote {
            authority: self.key.node_id(),
            round,
            round_secs: self.round_secs,
            params: self.params.clone(),
            authorities: self.set.clone(),
            previous_layers,
            nodes,
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
        tracing::debug!("voting for {round} with {voted} nodes");
        self.post_to_peers(shared, http, "/v1/votes", body, "vote", until);
    }

    /// Ends the vote half: computes, signs and posts the consensus signature.
    fn close(
        &self,
        shared: &Arc<Shared>,
        http: &reqwest::Client,
        round: RoundId,
        until: std::time::SystemTime,
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
        until: std::time::SystemTime,
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
