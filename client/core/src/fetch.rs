//! Asking a correspondent's gateway for its published bundle, through the
//! mixnet, answered over SURBs (docs/e2ee.md, "Prekeys kept at the gateway").
//!
//! Why through the mixnet and not over a direct link: the gateway must not
//! learn who asks for whom. The request is a forward packet like any other
//! (same size, a fresh route) to the gateway's prekey service; inside, the
//! fingerprint and [`BUNDLE_REQUEST_SURBS`] SURBs home, over which the answer
//! comes as reply fragments. The asker's own gateway sees replies come in
//! and nothing else. A request takes one of the client's λ_P send ticks,
//! like a message fragment would, so the rhythm of its packets is unchanged.
//!
//! Losses: a request (or its answer) that does not come back by its
//! deadline is sent again over fresh routes with fresh SURBs, up to
//! [`MAX_ATTEMPTS`] times; then the fetch fails with an event. The answer is
//! read only from the SURBs of the latest attempt or an earlier one still
//! held; the caller checks its signatures (the gateway may lie).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use protocol::NodeId;
use protocol::format::ReplyRecovery;
use protocol::fragment::MessageId;
use protocol::frame::Frame;
use protocol::prekeys::{BUNDLE_REQUEST_SURBS, BundleAnswer, FINGERPRINT_SIZE};
use protocol::surb::SurbId;
use protocol::time::Timestamp;

use crate::events::{ClientEvent, DeliveryOutcome, EventQueue, FetchFailure};
use crate::stats::{ClientStats, DeliveryDrop};

/// Times a request is sent before its fetch fails.
pub const MAX_ATTEMPTS: u32 = 3;
/// Most fetches under way at once.
pub const MAX_FETCHES: usize = 64;
/// Wait beyond the sampled delays of the request and its answer's route.
const ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// Which bundle: a fingerprint at a gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleQuery {
    /// The gateway asked.
    pub gateway: NodeId,
    /// The identity fingerprint asked for.
    pub fingerprint: [u8; FINGERPRINT_SIZE],
}

enum State {
    /// Waiting for a send tick.
    Queued,
    /// Sent; the answer is due by `deadline`.
    InFlight { deadline: Timestamp },
}

struct Fetch {
    attempts: u32,
    state: State,
    /// Pieces of the answer by index, of the message `message` of `count` pieces.
    pieces: BTreeMap<u16, Vec<u8>>,
    message: Option<(MessageId, u16)>,
}

/// The fetches under way and the SURBs their answers come over.
pub(crate) struct BundleFetches<Rec> {
    fetches: BTreeMap<BundleQuery, Fetch>,
    surbs: HashMap<SurbId, (BundleQuery, Rec)>,
}

impl<Rec> Default for BundleFetches<Rec> {
    fn default() -> Self {
        BundleFetches {
            fetches: BTreeMap::new(),
            surbs: HashMap::new(),
        }
    }
}

impl<Rec: ReplyRecovery> BundleFetches<Rec> {
    /// Starts fetching `query` (nothing if it is under way already);
    /// `false` when [`MAX_FETCHES`] are under way.
    pub(crate) fn request(&mut self, query: BundleQuery) -> bool {
        if self.fetches.contains_key(&query) {
            return true;
        }
        if self.fetches.len() >= MAX_FETCHES {
            return false;
        }
        self.fetches.insert(
            query,
            Fetch {
                attempts: 0,
                state: State::Queued,
                pieces: BTreeMap::new(),
                message: None,
            },
        );
        true
    }

    /// A fetch waiting for a send tick.
    pub(crate) fn next_queued(&self) -> Option<BundleQuery> {
        self.fetches
            .iter()
            .find(|(_, f)| matches!(f.state, State::Queued))
            .map(|(q, _)| *q)
    }

    /// The request of `query` left, its answer due by `deadline` over the
    /// SURBs `recoveries` open.
    pub(crate) fn sent(&mut self, query: BundleQuery, recoveries: Vec<Rec>, deadline: Timestamp) {
        let Some(fetch) = self.fetches.get_mut(&query) else {
            return;
        };
        fetch.attempts += 1;
        fetch.state = State::InFlight { deadline };
        for recovery in recoveries {
            self.surbs.insert(recovery.id(), (query, recovery));
        }
    }

    /// Whether a delivery under `id` is (part of) an answer.
    pub(crate) fn has_surb(&self, id: &SurbId) -> bool {
        self.surbs.contains_key(id)
    }

    /// Takes a delivery under one of the fetches' SURBs.
    pub(crate) fn handle(
        &mut self,
        surb_id: &SurbId,
        payload: &[u8],
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) -> DeliveryOutcome {
        let Some((query, recovery)) = self.surbs.get(surb_id) else {
            return stats.drop_delivery(DeliveryDrop::UnknownSurb);
        };
        let query = *query;
        let Ok(Frame::Reply { fragment, .. }) =
            recovery.open(payload).and_then(|b| Frame::decode(&b))
        else {
            return stats.drop_delivery(DeliveryDrop::NotAFrame);
        };
        self.surbs.remove(surb_id);
        let Some(fetch) = self.fetches.get_mut(&query) else {
            // Answered already (a late copy of an earlier attempt's answer).
            return DeliveryOutcome::Duplicate;
        };
        let id = (fragment.id.message, fragment.count);
        let fits = usize::from(fragment.count) <= BUNDLE_REQUEST_SURBS
            && fragment.id.index < fragment.count;
        if !fits || fetch.message.is_some_and(|m| m != id) {
            // Pieces of another answer (an earlier attempt's) are not mixed in.
            if fits && fetch.message.is_some() {
                return DeliveryOutcome::Duplicate;
            }
            return stats.drop_delivery(DeliveryDrop::BadFragment);
        }
        fetch.message = Some(id);
        fetch.pieces.insert(fragment.id.index, fragment.data);
        if fetch.pieces.len() < usize::from(fragment.count) {
            return DeliveryOutcome::Held {
                message: fragment.id.message,
                fragments: fragment.count,
            };
        }
        let bytes: Vec<u8> = fetch.pieces.values().flatten().copied().collect();
        self.finish(query);
        match BundleAnswer::decode(&bytes) {
            Ok(answer) => {
                stats.bundles_fetched += 1;
                events.push(
                    ClientEvent::BundleFetched {
                        gateway: query.gateway,
                        fingerprint: query.fingerprint,
                        published: answer.published,
                        one_time: answer.one_time,
                    },
                    stats,
                );
                DeliveryOutcome::Completed {
                    message: fragment.id.message,
                }
            }
            Err(_) => {
                Self::failed(query, FetchFailure::Unreadable, stats, events);
                stats.drop_delivery(DeliveryDrop::BadEnvelope)
            }
        }
    }

    /// Ends `query`'s fetch, which cannot be sent (no route), with an event.
    pub(crate) fn fail(
        &mut self,
        query: BundleQuery,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) {
        self.finish(query);
        Self::failed(query, FetchFailure::NoRoute, stats, events);
    }

    /// Counts a failed fetch and tells the application.
    fn failed(
        query: BundleQuery,
        reason: FetchFailure,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) {
        stats.bundle_fetches_failed += 1;
        events.push(
            ClientEvent::BundleFetchFailed {
                gateway: query.gateway,
                fingerprint: query.fingerprint,
                reason,
            },
            stats,
        );
    }

    /// Ends `query`'s fetch and forgets its SURBs.
    fn finish(&mut self, query: BundleQuery) {
        self.fetches.remove(&query);
        self.surbs.retain(|_, (q, _)| *q != query);
    }

    /// Sends again what is overdue, or fails it after [`MAX_ATTEMPTS`].
    pub(crate) fn handle_timeout(
        &mut self,
        now: Timestamp,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) {
        let overdue: Vec<(BundleQuery, u32)> = self
            .fetches
            .iter()
            .filter(|(_, f)| matches!(f.state, State::InFlight { deadline } if deadline <= now))
            .map(|(q, f)| (*q, f.attempts))
            .collect();
        for (query, attempts) in overdue {
            if attempts >= MAX_ATTEMPTS {
                self.finish(query);
                Self::failed(query, FetchFailure::NoAnswer { attempts }, stats, events);
            } else if let Some(fetch) = self.fetches.get_mut(&query) {
                // The SURBs of the earlier attempt stay: its answer may still come.
                fetch.state = State::Queued;
            }
        }
    }

    /// The earliest deadline of a request in flight.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.fetches
            .values()
            .filter_map(|f| match f.state {
                State::InFlight { deadline } => Some(deadline),
                State::Queued => None,
            })
            .min()
    }

    /// The wait for an answer beyond the sampled delays.
    pub(crate) fn margin() -> Duration {
        ANSWER_MARGIN
    }
}
