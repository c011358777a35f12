#![doc = include_str!("../README.md")]

mod builder;
pub mod config;
mod cover;
pub mod envelope;
pub mod error;
pub mod events;
pub mod fetch;
pub mod health;
mod inbox;
mod outbox;
pub mod routes;
pub mod sessions;
pub mod stats;
pub mod transmission;

use std::time::Duration;

use protocol::format::{PacketFormat, ReplyRecovery, SphinxFormat};
use protocol::fragment::{MessageId, fragment_message};
use protocol::frame::{FRAGMENT_CAPACITY, Frame, SealedContent};
use protocol::packet::{DelaySampler, OutgoingPacket};
use protocol::poisson::PoissonTicker;
use protocol::surb::SurbId;
use protocol::time::Timestamp;
use protocol::{ClientAddress, NodeId, SphinxKeyPair};
use rand::{CryptoRng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use x25519_dalek::PublicKey;

pub use config::ClientConfig;
pub use envelope::{Envelope, EnvelopeKind};
pub use error::ClientError;
pub use events::{
    ClientEvent, DeliveryOutcome, FetchFailure, ReplyHandle, ReplySource, SendFailure,
};
pub use health::NodeHealth;
pub use routes::RouteSource;
pub use stats::{ClientStats, DeliveryDrop};
pub use transmission::{Transmission, TransmissionKind};

use builder::PacketBuilder;
use cover::CoverBook;
use events::EventQueue;
use fetch::{BundleFetches, BundleQuery};
use inbox::{Inbox, ReplySurbStore};
use outbox::{Outbox, RecallRole, Target};
use protocol::recall::{MAX_RECALL_FRAGMENTS, RecallSecret};
use sessions::RecallTicket;

/// A Poisson clock with its own random stream.
struct Ticker {
    rate: f64,
    ticker: PoissonTicker,
    rng: ChaCha20Rng,
}

impl Ticker {
    fn new(rate: f64, now: Timestamp, rng: &mut impl CryptoRng) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let mut rng = ChaCha20Rng::from_seed(seed);
        Ticker {
            rate,
            ticker: PoissonTicker::new(rate, now, &mut rng),
            rng,
        }
    }

    fn next(&self) -> Option<Timestamp> {
        self.ticker.next_tick()
    }

    /// Takes a tick due by `now`. When the next tick is more than `max_lag`
    /// late (the shell was suspended, say), the clock restarts at
    /// `now - max_lag` instead of releasing every missed tick at once; the
    /// exponential gaps are memoryless, so the restarted process is the same
    /// Poisson process. Restarts are counted in `jumps`.
    fn poll(&mut self, now: Timestamp, max_lag: Duration, jumps: &mut u64) -> bool {
        let late = self
            .ticker
            .next_tick()
            .is_some_and(|due| now.saturating_duration_since(due) > max_lag);
        if late {
            let restart = Timestamp::from_nanos(
                now.as_nanos()
                    .saturating_sub(u64::try_from(max_lag.as_nanos()).unwrap_or(u64::MAX)),
            );
            self.ticker = PoissonTicker::new(self.rate, restart, &mut self.rng);
            *jumps += 1;
        }
        self.ticker.poll(now, &mut self.rng).is_some()
    }
}

/// The client state machine, over routes from `R`, building packets in the
/// format `F` (Sphinx, unless a simulator asks for a stand-in).
pub struct ClientCore<R, F: PacketFormat = SphinxFormat> {
    format: F,
    config: ClientConfig,
    keys: SphinxKeyPair,
    address: ClientAddress,
    routes: R,
    delays: DelaySampler,
    send_ticks: Ticker,
    loop_ticks: Ticker,
    outbox: Outbox<F::Recovery>,
    cover: CoverBook<F::Recovery>,
    inbox: Inbox,
    reply_surbs: ReplySurbStore<F::Recovery>,
    fetches: BundleFetches<F::Recovery>,
    events: EventQueue,
    health: NodeHealth,
    stats: ClientStats,
}

impl<R: RouteSource> ClientCore<R> {
    /// A client with Sphinx key pair `keys` whose mailbox is at `gateway`,
    /// taking routes from `routes`, with its clocks started at `now`.
    pub fn new(
        config: ClientConfig,
        keys: SphinxKeyPair,
        gateway: NodeId,
        routes: R,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Self {
        ClientCore::with_format(SphinxFormat, config, keys, gateway, routes, now, rng)
    }
}

impl<R: RouteSource, F: PacketFormat> ClientCore<R, F> {
    /// [`ClientCore::new`] building its packets in `format`.
    pub fn with_format(
        format: F,
        config: ClientConfig,
        keys: SphinxKeyPair,
        gateway: NodeId,
        routes: R,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Self {
        let address = ClientAddress {
            client_key: keys.public().to_bytes(),
            gateway,
        };
        ClientCore {
            format,
            send_ticks: Ticker::new(config.send_rate, now, rng),
            loop_ticks: Ticker::new(config.loop_cover_rate, now, rng),
            delays: DelaySampler::new(config.mean_hop_delay),
            outbox: Outbox::default(),
            cover: CoverBook::new(config.loop_alarm),
            inbox: Inbox::new(&config),
            reply_surbs: ReplySurbStore::default(),
            fetches: BundleFetches::default(),
            events: EventQueue::new(config.max_events),
            health: NodeHealth::new(&config),
            stats: ClientStats::default(),
            config,
            keys,
            address,
            routes,
        }
    }

    /// This client's address, to give to whoever should write to it.
    pub fn address(&self) -> ClientAddress {
        self.address
    }

    /// This client's Sphinx key pair.
    pub fn keys(&self) -> &SphinxKeyPair {
        &self.keys
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The route source.
    pub fn routes(&self) -> &R {
        &self.routes
    }

    /// The route source, to update when the topology changes.
    pub fn routes_mut(&mut self) -> &mut R {
        &mut self.routes
    }

    /// What this client learned about mix nodes from its acks.
    pub fn node_health(&self) -> &NodeHealth {
        &self.health
    }

    /// Sizes of the bounded structures, for metrics and tests.
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            unacked_fragments: self.outbox.unacked(),
            outgoing_messages: self.outbox.messages_len(),
            ack_table: self.outbox.ack_table_len(),
            reply_surbs: self.reply_surbs.len(),
            cover: self.cover.len(),
            partial_messages: self.inbox.partial_messages(),
            reassembly_bytes: self.inbox.buffered_bytes(),
        }
    }

    /// A packet builder for instant `now`, and the counters it updates.
    fn builder(&mut self, now: Timestamp) -> (PacketBuilder<'_, R, F>, &mut ClientStats) {
        let builder = PacketBuilder {
            format: &self.format,
            routes: &self.routes,
            health: &self.health,
            now,
            candidates: self.config.route_candidates,
            own: self.address,
            delays: self.delays,
        };
        (builder, &mut self.stats)
    }

    /// Fragments an envelope of `len` bytes needs.
    fn fragments_for(len: usize) -> usize {
        len.div_ceil(FRAGMENT_CAPACITY).max(1)
    }

    /// Checks that `fragments` more fit the message and queue limits.
    fn check_room(&self, len: usize, fragments: usize) -> Result<(), ClientError> {
        if fragments > self.config.max_message_fragments {
            return Err(ClientError::MessageTooLarge {
                len,
                fragments,
                max: self.config.max_message_fragments,
            });
        }
        let queued = self.outbox.unacked();
        if queued.saturating_add(fragments) > self.config.max_unacked_fragments {
            return Err(ClientError::QueueFull {
                queued,
                max: self.config.max_unacked_fragments,
            });
        }
        Ok(())
    }

    /// Queues `bytes` for `to`, with `reply_surbs` SURBs attached so the
    /// recipient can answer without learning our address. The fragments
    /// leave on the next send ticks; [`ClientEvent::Delivered`] or
    /// [`ClientEvent::SendFailed`] tells how it ended.
    pub fn send(
        &mut self,
        now: Timestamp,
        to: &ClientAddress,
        bytes: &[u8],
        reply_surbs: usize,
        rng: &mut impl CryptoRng,
    ) -> Result<MessageId, ClientError> {
        self.send_expiring(now, to, bytes, reply_surbs, None, rng)
    }

    /// [`ClientCore::send`] with an expiry instant (on this core's clock):
    /// each copy of a fragment tells the recipient's gateway to keep it no
    /// longer than `expires_at` (the frame's lifetime: whole seconds, rounded
    /// down, from the copy's planned arrival there), and a message whose
    /// expiry has passed, or is less than a second after that arrival, when
    /// a copy is due is not sent any more: it ends with
    /// [`ClientEvent::SendFailed`] and counts in
    /// [`ClientStats::expired_unsent`]. An expiry already past fails the
    /// same way, at the first tick.
    pub fn send_expiring(
        &mut self,
        now: Timestamp,
        to: &ClientAddress,
        bytes: &[u8],
        reply_surbs: usize,
        expires_at: Option<Timestamp>,
        rng: &mut impl CryptoRng,
    ) -> Result<MessageId, ClientError> {
        self.queue_message(now, to, bytes, reply_surbs, expires_at, false, rng)
            .map(|(id, _)| id)
    }

    /// [`ClientCore::send_expiring`] for a message its sender may recall:
    /// a fresh recall secret's tags go in its frames, and the ticket to
    /// recall it comes back (`None` when it has more fragments than a
    /// recall may name, [`MAX_RECALL_FRAGMENTS`]: it is sent unrecallable).
    /// Keep the ticket (secret!) until the message expires.
    pub fn send_recallable(
        &mut self,
        now: Timestamp,
        to: &ClientAddress,
        bytes: &[u8],
        reply_surbs: usize,
        expires_at: Option<Timestamp>,
        rng: &mut impl CryptoRng,
    ) -> Result<(MessageId, Option<RecallTicket>), ClientError> {
        self.queue_message(now, to, bytes, reply_surbs, expires_at, true, rng)
    }

    /// Recalls the message `ticket` names: queues a one-fragment message to
    /// its recipient whose copies travel in recall frames (the secret and
    /// the fragment count for the recipient's gateway, `notice`, sealed, for
    /// the recipient). It is acknowledged like any message, whatever the
    /// gateway found; [`ClientEvent::Delivered`] names the returned id.
    pub fn recall(
        &mut self,
        _now: Timestamp,
        ticket: &RecallTicket,
        notice: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<MessageId, ClientError> {
        let envelope = Envelope {
            kind: EnvelopeKind::Message,
            reply_surbs: Vec::new(),
            content: notice.to_vec(),
        }
        .encode();
        let fragments = Self::fragments_for(envelope.len());
        if fragments != 1 {
            return Err(ClientError::MessageTooLarge {
                len: envelope.len(),
                fragments,
                max: 1,
            });
        }
        self.check_room(envelope.len(), fragments)?;
        if self.routes.route_to(rng, ticket.to.gateway).is_none() {
            return Err(ClientError::NoRoute(ticket.to.gateway.to_base58()));
        }
        let id = MessageId::random(rng);
        let fragments = fragment_message(id, &envelope)?;
        let role = RecallRole::Reveals {
            secret: ticket.secret.clone(),
            fragments: ticket.fragments,
        };
        self.outbox
            .push(id, Target::Address(ticket.to), fragments, None, role);
        self.stats.recalls_sent += 1;
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)]
    fn queue_message(
        &mut self,
        now: Timestamp,
        to: &ClientAddress,
        bytes: &[u8],
        reply_surbs: usize,
        expires_at: Option<Timestamp>,
        recallable: bool,
        rng: &mut impl CryptoRng,
    ) -> Result<(MessageId, Option<RecallTicket>), ClientError> {
        if reply_surbs > self.config.max_reply_surbs_per_message {
            return Err(ClientError::TooManyReplySurbs {
                asked: reply_surbs,
                max: self.config.max_reply_surbs_per_message,
            });
        }
        let len = Envelope::message_len(reply_surbs, bytes.len());
        self.check_room(len, Self::fragments_for(len))?;
        if self.routes.route_to(rng, to.gateway).is_none() {
            return Err(ClientError::NoRoute(to.gateway.to_base58()));
        }
        let mut surbs = Vec::with_capacity(reply_surbs);
        let mut recoveries = Vec::with_capacity(reply_surbs);
        let (builder, stats) = self.builder(now);
        for _ in 0..reply_surbs {
            let home = builder.surb_home(rng, stats)?;
            surbs.push(home.surb);
            recoveries.push(home.recovery);
        }
        let expires = now.saturating_add(self.config.reply_surb_lifetime);
        for recovery in recoveries {
            self.reply_surbs.insert(
                recovery,
                expires,
                self.config.max_stored_reply_surbs,
                &mut self.stats,
            );
        }
        let envelope = Envelope {
            kind: EnvelopeKind::Message,
            reply_surbs: surbs,
            content: bytes.to_vec(),
        };
        let id = MessageId::random(rng);
        let fragments = fragment_message(id, &envelope.encode())?;
        let count = u16::try_from(fragments.len())
            .ok()
            .filter(|n| *n <= MAX_RECALL_FRAGMENTS);
        let ticket = match count {
            Some(count) if recallable => Some(RecallTicket {
                id,
                to: *to,
                secret: RecallSecret::random(rng),
                fragments: count,
            }),
            _ => None,
        };
        let role = match &ticket {
            Some(ticket) => RecallRole::Tagged(ticket.secret.clone()),
            None => RecallRole::None,
        };
        self.outbox
            .push(id, Target::Address(*to), fragments, expires_at, role);
        Ok((id, ticket))
    }

    /// Answers a received message through the SURBs of its `handle`: one SURB
    /// per fragment, the rest kept for retransmissions. On success the handle
    /// is emptied; on error it is left as it was.
    pub fn reply(
        &mut self,
        now: Timestamp,
        handle: &mut ReplyHandle,
        bytes: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<MessageId, ClientError> {
        self.queue_reply(now, handle, bytes, true, rng)
    }

    /// [`ClientCore::reply`] without acknowledgements, for a caller that
    /// recovers losses itself (a byte stream): each fragment goes once
    /// through one SURB, carries no SURB-ack (so the other client spends no
    /// send tick on it), and the message ends with [`ClientEvent::Sent`].
    pub fn reply_unacknowledged(
        &mut self,
        now: Timestamp,
        handle: &mut ReplyHandle,
        bytes: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<MessageId, ClientError> {
        self.queue_reply(now, handle, bytes, false, rng)
    }

    fn queue_reply(
        &mut self,
        _now: Timestamp,
        handle: &mut ReplyHandle,
        bytes: &[u8],
        acked: bool,
        rng: &mut impl CryptoRng,
    ) -> Result<MessageId, ClientError> {
        let envelope = Envelope {
            kind: EnvelopeKind::Reply {
                in_reply_to: handle.in_reply_to,
            },
            reply_surbs: Vec::new(),
            content: bytes.to_vec(),
        };
        let encoded = envelope.encode();
        let needed = Self::fragments_for(encoded.len());
        self.check_room(encoded.len(), needed)?;
        if needed > handle.surbs.len() {
            return Err(ClientError::NotEnoughSurbs {
                needed,
                available: handle.surbs.len(),
            });
        }
        let id = MessageId::random(rng);
        let fragments = fragment_message(id, &encoded)?;
        let surbs = std::mem::take(&mut handle.surbs).into();
        self.outbox.push(
            id,
            Target::Surbs { surbs, acked },
            fragments,
            None,
            RecallRole::None,
        );
        Ok(id)
    }

    /// The next instant the core wants [`ClientCore::poll_transmit`] or
    /// [`ClientCore::handle_timeout`] called: a send or loop tick, an ack
    /// deadline, a reassembly timeout or a SURB expiry.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        [
            self.send_ticks.next(),
            self.loop_ticks.next(),
            self.outbox.next_deadline(),
            self.inbox.next_deadline(),
            self.reply_surbs.next_expiry(),
            self.cover.next_deadline(),
            self.fetches.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Handles every timer due by `now`: lost fragments are queued again (or
    /// their message fails), stalled incoming messages are abandoned, old
    /// reply SURBs forgotten.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.outbox.handle_deadlines(
            now,
            &self.config,
            &mut self.health,
            &mut self.stats,
            &mut self.events,
        );
        self.inbox
            .handle_timeouts(now, &mut self.stats, &mut self.events);
        self.reply_surbs.expire(now, &mut self.stats);
        self.cover
            .handle_timeout(now, &mut self.stats, &mut self.events);
        self.fetches
            .handle_timeout(now, &mut self.stats, &mut self.events);
        self.health.prune(now);
    }

    /// The next packet due by `now`, if any, and what it is; call until it
    /// returns `None`. Handles due timers first.
    pub fn poll_transmit(
        &mut self,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Option<Transmission> {
        self.handle_timeout(now);
        let lag = self.config.max_tick_lag;
        while self.send_ticks.poll(now, lag, &mut self.stats.clock_jumps) {
            if let Some(packet) = self.bundle_request(now, rng) {
                self.stats.bundle_requests_sent += 1;
                return Some(Transmission {
                    packet,
                    kind: TransmissionKind::BundleRequest,
                });
            }
            let builder = PacketBuilder {
                format: &self.format,
                routes: &self.routes,
                health: &self.health,
                now,
                candidates: self.config.route_candidates,
                own: self.address,
                delays: self.delays,
            };
            if let Some(packet) = self.outbox.next_packet(
                now,
                &builder,
                &self.config,
                rng,
                &mut self.stats,
                &mut self.events,
            ) {
                self.stats.real_sent += 1;
                return Some(packet);
            }
            if let Some(packet) = self.drop_cover(now, rng) {
                self.stats.drop_cover_sent += 1;
                return Some(Transmission {
                    packet,
                    kind: TransmissionKind::DropCover,
                });
            }
            self.stats.ticks_without_packet += 1;
        }
        while self.loop_ticks.poll(now, lag, &mut self.stats.clock_jumps) {
            if let Some(packet) = self.loop_cover(now, rng) {
                self.stats.loop_cover_sent += 1;
                return Some(Transmission {
                    packet,
                    kind: TransmissionKind::LoopCover,
                });
            }
            self.stats.ticks_without_packet += 1;
        }
        None
    }

    // Cover traffic takes its routes like real traffic (avoiding suspect
    // nodes too), so that its routes look like real ones.
    // Every forward packet carries a SURB-ack and a body of one size, so
    // that neither gateway can tell cover from mail: drop cover is sealed to
    // a throwaway key and acked by its gateway, loop cover sealed to this
    // client and stored in its mailbox like mail.
    fn drop_cover(&mut self, now: Timestamp, rng: &mut impl CryptoRng) -> Option<OutgoingPacket> {
        let margin = self.config.ack_margin;
        let throwaway: PublicKey = self.format.throwaway_key(rng);
        let (builder, stats) = self.builder(now);
        let target = builder.drop_cover_target(rng)?;
        let cover = builder
            .cover(
                rng,
                &target,
                &throwaway,
                &SealedContent::DropCover,
                margin,
                stats,
            )
            .ok()?;
        self.cover.expect_ack(cover.recovery, cover.ack_due);
        Some(cover.packet)
    }

    /// Asks `gateway` for the bundle its client of identity fingerprint
    /// `fingerprint` published: the request leaves on a coming send tick,
    /// and the answer comes as a [`ClientEvent::BundleFetched`] (or a
    /// [`ClientEvent::BundleFetchFailed`]). Asking again while a fetch is
    /// under way changes nothing.
    pub fn fetch_bundle(
        &mut self,
        gateway: NodeId,
        fingerprint: [u8; protocol::prekeys::FINGERPRINT_SIZE],
    ) -> Result<(), ClientError> {
        if self.fetches.request(BundleQuery {
            gateway,
            fingerprint,
        }) {
            Ok(())
        } else {
            Err(ClientError::TooManyFetches(fetch::MAX_FETCHES))
        }
    }

    /// The request of a queued fetch, if one waits: a forward packet to the
    /// gateway's prekey service carrying SURBs home for the answer. A fetch
    /// whose request cannot be built (no route) fails at once.
    fn bundle_request(
        &mut self,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Option<OutgoingPacket> {
        let query = self.fetches.next_queued()?;
        match self.build_bundle_request(now, query, rng) {
            Ok((packet, recoveries, deadline)) => {
                self.fetches.sent(query, recoveries, deadline);
                Some(packet)
            }
            Err(_) => {
                self.fetches.fail(query, &mut self.stats, &mut self.events);
                None
            }
        }
    }

    /// The packet of `query`'s request, the recoveries of its SURBs, and
    /// when its answer is due.
    fn build_bundle_request(
        &mut self,
        now: Timestamp,
        query: BundleQuery,
        rng: &mut impl CryptoRng,
    ) -> Result<(OutgoingPacket, Vec<F::Recovery>, Timestamp), ClientError> {
        let (builder, stats) = self.builder(now);
        let mut surbs = Vec::with_capacity(protocol::prekeys::BUNDLE_REQUEST_SURBS);
        let mut recoveries = Vec::with_capacity(surbs.capacity());
        let mut home_delay = Duration::ZERO;
        for _ in 0..protocol::prekeys::BUNDLE_REQUEST_SURBS {
            let home = builder.surb_home(rng, stats)?;
            home_delay = home_delay.max(home.delay);
            surbs.push(home.surb);
            recoveries.push(home.recovery);
        }
        let to = ClientAddress {
            client_key: protocol::address::PREKEY_SERVICE_DESTINATION,
            gateway: query.gateway,
        };
        let route = builder.forward_route(rng, &to, stats)?;
        let frame = Frame::BundleRequest(protocol::frame::BundleRequestFrame {
            fingerprint: query.fingerprint,
            surbs,
        })
        .encode()?;
        let packet = route.build(builder.format, rng, &frame)?;
        let deadline = now
            .saturating_add(route.delay())
            .saturating_add(home_delay)
            .saturating_add(BundleFetches::<F::Recovery>::margin());
        Ok((packet, recoveries, deadline))
    }

    fn loop_cover(&mut self, now: Timestamp, rng: &mut impl CryptoRng) -> Option<OutgoingPacket> {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let own = self.address;
        let own_key = self.keys.public();
        let (ack_margin, loop_margin) = (self.config.ack_margin, self.config.loop_margin);
        let (builder, stats) = self.builder(now);
        let cover = builder
            .cover(
                rng,
                &own,
                &own_key,
                &SealedContent::LoopCover { id },
                ack_margin,
                stats,
            )
            .ok()?;
        self.cover.expect_ack(cover.recovery, cover.ack_due);
        self.cover
            .expect_loop(id, cover.arrival.saturating_add(loop_margin));
        Some(cover.packet)
    }

    /// Takes what the gateway delivered for this client: the SURB id the
    /// final hop read (all zero for a forward packet) and the payload (for a
    /// forward packet, the recovered 2048-byte frame or the Sphinx payload it
    /// came in; for a SURB packet, the sealed Sphinx payload).
    /// Malformed deliveries are dropped and counted in [`ClientStats`]; the
    /// answer says what became of the delivery.
    pub fn handle_delivery(
        &mut self,
        now: Timestamp,
        surb_id: SurbId,
        payload: &[u8],
    ) -> DeliveryOutcome {
        self.stats.deliveries += 1;
        if surb_id.is_forward() {
            self.handle_forward(now, payload)
        } else if self.outbox.has_ack(&surb_id) {
            self.outbox.handle_ack(
                &surb_id,
                payload,
                &mut self.health,
                &mut self.stats,
                &mut self.events,
            )
        } else if self.fetches.has_surb(&surb_id) {
            self.fetches
                .handle(&surb_id, payload, &mut self.stats, &mut self.events)
        } else if self.cover.has_ack(&surb_id) {
            self.cover.handle_ack(&surb_id, payload, &mut self.stats)
        } else if let Some(opened) = self.reply_surbs.get(&surb_id).map(|r| r.open(payload)) {
            match opened {
                Ok(frame) => self.take_reply_frame(now, ReplySource::Delivered(surb_id), &frame),
                // A payload that does not open under the SURB's keys is not
                // the SURB's use: the SURB stays valid for the real reply.
                Err(_) => self.stats.drop_delivery(DeliveryDrop::NotAFrame),
            }
        } else {
            self.stats.drop_delivery(DeliveryDrop::UnknownSurb)
        }
    }

    /// Opens `payload`, delivered under `surb_id`, with the keys of that
    /// reply SURB of this client, without using the SURB up: the reply's
    /// frame, for [`ClientCore::handle_reply_frame`] now and, kept by the
    /// shell (sealed: it holds the fragment's header and the replier's
    /// SURB-ack, which no gateway sees), after a restart. `None`
    /// when this client keeps no reply SURB of that id, or when its keys do
    /// not open the payload.
    pub fn open_reply(&self, surb_id: &SurbId, payload: &[u8]) -> Option<Vec<u8>> {
        self.reply_surbs.get(surb_id)?.open(payload).ok()
    }

    /// Takes a reply's frame as [`ClientCore::open_reply`] gave it. Delivered
    /// now under a SURB: the SURB is used up once the frame decodes, and the
    /// fragment is acknowledged to its sender through the reply's SURB-ack,
    /// as [`ClientCore::handle_delivery`] does. Replayed from the shell's
    /// journal after a restart: the fragment is held again, and no ack is
    /// sent (it went before the restart, or its sender sends the fragment
    /// again and that copy is acknowledged).
    pub fn handle_reply_frame(
        &mut self,
        now: Timestamp,
        source: ReplySource,
        frame: &[u8],
    ) -> DeliveryOutcome {
        self.stats.deliveries += 1;
        self.take_reply_frame(now, source, frame)
    }

    fn take_reply_frame(
        &mut self,
        now: Timestamp,
        source: ReplySource,
        frame: &[u8],
    ) -> DeliveryOutcome {
        let frame = Frame::decode(frame);
        let acknowledge = match source {
            ReplySource::Delivered(surb_id) => {
                if frame.is_ok() {
                    self.reply_surbs.remove(&surb_id);
                }
                true
            }
            ReplySource::Journaled => false,
        };
        self.handle_reply(now, frame, acknowledge)
    }

    fn handle_forward(&mut self, now: Timestamp, payload: &[u8]) -> DeliveryOutcome {
        // The gateway hands over the sealed body of the forward frame (padded
        // to the one delivery size); only this client's key opens it.
        match self.format.open_frame(&self.keys, payload) {
            Ok(SealedContent::Data { fragment, .. }) => {
                // The gateway acked it already (it holds the SURB-ack).
                self.inbox.receive(
                    now,
                    fragment,
                    &self.config,
                    &mut self.stats,
                    &mut self.events,
                )
            }
            Ok(SealedContent::LoopCover { id }) => {
                self.cover.loop_returned(id, &mut self.stats);
                DeliveryOutcome::Cover
            }
            Ok(SealedContent::DropCover) => {
                self.stats.drop_cover_received += 1;
                DeliveryOutcome::Cover
            }
            Err(_) => self.stats.drop_delivery(DeliveryDrop::NotAFrame),
        }
    }

    fn handle_reply(
        &mut self,
        now: Timestamp,
        frame: Result<Frame, protocol::ProtocolError>,
        acknowledge: bool,
    ) -> DeliveryOutcome {
        match frame {
            Ok(Frame::Reply {
                surb_ack, fragment, ..
            }) => {
                let fragment_id = fragment.id;
                let outcome = self.inbox.receive(
                    now,
                    fragment,
                    &self.config,
                    &mut self.stats,
                    &mut self.events,
                );
                // Our gateway cannot read inside a SURB reply, so the ack is
                // ours to send, once the fragment is held (duplicates too:
                // their first ack may have been lost).
                let held = !matches!(outcome, DeliveryOutcome::Dropped(_));
                if let (true, true, Some(surb)) = (acknowledge, held, surb_ack) {
                    self.outbox.push_reply_ack(
                        protocol::surb::Surb(surb),
                        fragment_id,
                        &self.config,
                        &mut self.stats,
                    );
                }
                outcome
            }
            Ok(_) => self.stats.drop_delivery(DeliveryDrop::UnexpectedKind),
            Err(_) => self.stats.drop_delivery(DeliveryDrop::NotAFrame),
        }
    }

    /// The SURB ids of the reply SURBs this client handed out and still
    /// keeps: a delivery under one of them is a reply.
    pub fn reply_surb_ids(&self) -> Vec<SurbId> {
        self.reply_surbs.ids().collect()
    }

    /// The recoveries of the reply SURBs this client handed out and can
    /// still read replies through, with the time each has left at `now`,
    /// for [`ClientCore::restore_reply_surbs`] after a restart. Secret (they
    /// open the replies): the shell seals them at rest.
    pub fn reply_surbs_to_bytes(&self, now: Timestamp) -> Vec<u8> {
        self.reply_surbs.to_bytes(now)
    }

    /// Takes back the recoveries [`ClientCore::reply_surbs_to_bytes`] wrote
    /// `elapsed` ago (before a restart), leaving out those whose time ran out
    /// meanwhile; returns how many were taken. Bytes that do not read back
    /// take none.
    pub fn restore_reply_surbs(
        &mut self,
        now: Timestamp,
        elapsed: Duration,
        bytes: &[u8],
    ) -> Result<usize, ClientError> {
        let format = &self.format;
        self.reply_surbs.restore(
            now,
            elapsed,
            bytes,
            self.config.max_stored_reply_surbs,
            |b| {
                format
                    .recovery_from_bytes(b)
                    .map_err(|e| ClientError::BadReplySurbs(e.to_string()))
            },
            &mut self.stats,
        )
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop()
    }
}

/// How full the core's bounded structures are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occupancy {
    /// Fragments queued or waiting for an ack.
    pub unacked_fragments: usize,
    /// Messages not yet delivered or failed.
    pub outgoing_messages: usize,
    /// SURB-acks waited on.
    pub ack_table: usize,
    /// Reply SURB recoveries kept.
    pub reply_surbs: usize,
    /// Cover SURB-acks and loops waited on.
    pub cover: usize,
    /// Partial incoming messages.
    pub partial_messages: usize,
    /// Bytes in partial incoming messages.
    pub reassembly_bytes: usize,
}
