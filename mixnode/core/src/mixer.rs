//! The mixing state machine.
//!
//! A [`Mixer`] is everything a mix node decides, with no I/O: given the
//! current time and the bytes of a packet that arrived, it says where the
//! unwrapped packet goes and when ([`Action::Forward`]), or why it was dropped
//! ([`DropReason`]). The async shell owns sockets and timers and simply obeys.
//!
//! Keys: a node holds its Sphinx key for the current epoch, the next one (it
//! is announced an epoch ahead, so packets built just after a rotation are
//! readable), and the previous one for one epoch of overlap. A packet is tried
//! against each live key, newest-relevant first; its header MAC says which key
//! it was built for. Each key has its own replay filter, retired with it.
//!
//! The mixer is `Sync`: a node shares one between its worker threads. Keys sit
//! behind a read-mostly lock (written once an epoch) and the replay filter
//! behind a mutex held only for one tag lookup, far shorter than the X25519
//! multiplication that precedes it.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use protocol::epoch::Epoch;
use protocol::frame::Frame;
use protocol::keys::{NodeId, SphinxKeyPair};
use protocol::packet::{DelaySampler, Delivery, RouteHop, build_packet};
use protocol::poisson::PoissonTicker;
use protocol::replay::{ReplayError, ReplayFilter, ReplayFilterConfig, ReplayRecord};
use protocol::time::Timestamp;
use rand::CryptoRng;

use crate::codec::{HopCodec, HopOutput, SphinxCodec};
use crate::drop_reason::DropReason;
use crate::stats::MixerStats;

/// Whether the mixer runs in a mix node or at an exit gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixerRole {
    /// A mix node: final-hop packets are only accepted for its own loop cover.
    Mix,
    /// A gateway: final-hop packets are handed out for delivery, except its
    /// own loop cover (addressed to its own id), which ends as with a mix node.
    Exit,
}

/// Settings of a [`Mixer`].
#[derive(Clone, Copy, Debug)]
pub struct MixerConfig {
    /// Mix node or exit gateway.
    pub role: MixerRole,
    /// Packets asking for a longer delay are dropped.
    pub max_delay: Duration,
    /// Sizing of the replay filters.
    pub replay: ReplayFilterConfig,
    /// Rate of the node's own loop cover (λ_M, per second; zero for none).
    pub loop_cover_rate: f64,
    /// Mean per-hop delay of the node's loop cover.
    pub cover_mean_delay: Duration,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            role: MixerRole::Mix,
            max_delay: Duration::from_secs(10),
            replay: ReplayFilterConfig::default(),
            loop_cover_rate: 0.0,
            cover_mean_delay: Duration::from_millis(50),
        }
    }
}

/// A packet to send to a neighbour at a given instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The neighbour.
    pub next_hop: NodeId,
    /// When to release the packet.
    pub send_at: Timestamp,
    /// The packet bytes.
    pub packet: Vec<u8>,
}

/// What to do with a packet that was accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send it on.
    Forward(Transmit),
    /// Deliver it (exit gateways only).
    Deliver(Delivery),
    /// It was this node's own loop cover, back home.
    LoopReturned,
}

struct CoverState {
    ticker: PoissonTicker,
    delays: DelaySampler,
}

/// The sans-IO mix: keys, replay filters, delays and loop cover.
pub struct Mixer<C: HopCodec = SphinxCodec> {
    id: NodeId,
    codec: C,
    config: MixerConfig,
    keys: RwLock<BTreeMap<Epoch, SphinxKeyPair>>,
    current: RwLock<Epoch>,
    replay: Mutex<ReplayFilter>,
    cover: Mutex<Option<CoverState>>,
    stats: MixerStats,
}

impl<C: HopCodec> Mixer<C> {
    /// A mixer for node `id` with no keys yet.
    pub fn new(id: NodeId, codec: C, config: MixerConfig) -> Self {
        Mixer {
            id,
            codec,
            config,
            keys: RwLock::new(BTreeMap::new()),
            current: RwLock::new(Epoch(0)),
            replay: Mutex::new(ReplayFilter::new(config.replay)),
            cover: Mutex::new(None),
            stats: MixerStats::default(),
        }
    }

    /// The node this mixer runs for.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The mixer's settings.
    pub fn config(&self) -> &MixerConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &MixerStats {
        &self.stats
    }

    /// Installs the Sphinx key of `epoch` (current or announced next).
    pub fn install_key(&self, epoch: Epoch, key: SphinxKeyPair) {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(epoch, key);
        self.replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open_epoch(epoch);
    }

    /// Makes `epoch` current: keys (and replay tags) older than its
    /// predecessor are retired; the previous key stays for one epoch of overlap.
    pub fn rotate(&self, epoch: Epoch) {
        let oldest = epoch.previous().unwrap_or(epoch);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = epoch;
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|e, _| *e >= oldest);
        self.replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retire_before(oldest);
    }

    /// The current epoch.
    pub fn current_epoch(&self) -> Epoch {
        *self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The epochs whose keys are live.
    pub fn live_epochs(&self) -> Vec<Epoch> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    /// Serialized replay filters, for a restart that must still refuse old packets.
    pub fn replay_state(&self) -> Vec<u8> {
        self.replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .to_bytes()
    }

    /// Restores replay filters saved by [`Mixer::replay_state`].
    pub fn restore_replay_state(&self, bytes: &[u8]) -> Result<(), ReplayError> {
        let mut restored = ReplayFilter::from_bytes(self.config.replay, bytes)?;
        for epoch in self.live_epochs() {
            restored.open_epoch(epoch);
        }
        *self.replay.lock().unwrap_or_else(PoisonError::into_inner) = restored;
        Ok(())
    }

    /// Takes a packet that arrived at `now`.
    pub fn handle_packet(&self, now: Timestamp, packet: &[u8]) -> Result<Action, DropReason> {
        self.handle_packet_recorded(now, packet)
            .map(|(action, _)| action)
    }

    /// [`Mixer::handle_packet`], also returning the replay tag the packet left
    /// (once it passed the replay check), for the node's crash-safe journal.
    pub fn handle_packet_recorded(
        &self,
        now: Timestamp,
        packet: &[u8],
    ) -> Result<(Action, ReplayRecord), DropReason> {
        self.stats.received();
        let result = self.process(now, packet);
        match &result {
            Ok((Action::Forward(_), _)) => self.stats.forwarded(),
            Ok((Action::Deliver(_), _)) => self.stats.delivered(),
            Ok((Action::LoopReturned, _)) => self.stats.loop_returned(),
            Err(reason) => self.stats.dropped(*reason),
        }
        result
    }

    /// Records a tag from the node's journal (after a restart).
    pub fn remember_tag(&self, record: &ReplayRecord) {
        let _ = self
            .replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check_and_insert(record.epoch, &record.tag);
    }

    fn process(&self, now: Timestamp, packet: &[u8]) -> Result<(Action, ReplayRecord), DropReason> {
        if packet.len() != self.codec.packet_size() {
            return Err(DropReason::WrongSize);
        }
        let (epoch, opened, tag) = self.open_with_live_keys(packet)?;
        self.replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check_and_insert(epoch, &tag)
            .map_err(|_| DropReason::Replay)?;
        let record = ReplayRecord { epoch, tag };
        self.finish(now, opened).map(|action| (action, record))
    }

    fn finish(&self, now: Timestamp, opened: C::Opened) -> Result<Action, DropReason> {
        match self.codec.finish(opened)? {
            HopOutput::Forward {
                next_hop,
                delay,
                packet,
            } => {
                if delay > self.config.max_delay {
                    return Err(DropReason::DelayTooLong);
                }
                Ok(Action::Forward(Transmit {
                    next_hop,
                    send_at: now.saturating_add(delay),
                    packet,
                }))
            }
            HopOutput::Final {
                destination,
                surb_id,
                payload,
            } => {
                if destination == self.id.0 {
                    return match protocol::surb::open_forward_payload(&payload)
                        .and_then(|f| Frame::decode(&f))
                    {
                        Ok(Frame::NodeLoop) => Ok(Action::LoopReturned),
                        _ => Err(DropReason::BadPayload),
                    };
                }
                match self.config.role {
                    MixerRole::Mix => Err(DropReason::UnexpectedFinalHop),
                    MixerRole::Exit => Ok(Action::Deliver(Delivery {
                        destination,
                        surb_id,
                        payload,
                    })),
                }
            }
        }
    }

    /// Tries the live keys, current first, then next, then previous.
    fn open_with_live_keys(
        &self,
        packet: &[u8],
    ) -> Result<(Epoch, C::Opened, [u8; 32]), DropReason> {
        let current = self.current_epoch();
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let order = [Some(current), Some(current.next()), current.previous()];
        let mut last = DropReason::UnknownKey;
        for epoch in order.into_iter().flatten() {
            let Some(key) = keys.get(&epoch) else {
                continue;
            };
            match self.codec.open(key, packet) {
                Ok((opened, tag)) => return Ok((epoch, opened, tag)),
                Err(DropReason::UnknownKey) => continue,
                Err(other) => last = other,
            }
        }
        Err(last)
    }

    /// Starts (or restarts) the node's loop cover clock at `now`.
    pub fn start_cover(&self, now: Timestamp, rng: &mut (impl CryptoRng + ?Sized)) {
        *self.cover.lock().unwrap_or_else(PoisonError::into_inner) = Some(CoverState {
            ticker: PoissonTicker::new(self.config.loop_cover_rate, now, rng),
            delays: DelaySampler::new(self.config.cover_mean_delay),
        });
    }

    /// When the next loop cover packet is due, if cover is running.
    pub fn next_cover_at(&self) -> Option<Timestamp> {
        self.cover
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|c| c.ticker.next_tick())
    }

    /// Lets the loop cover tick due at `now` pass without a packet (for a
    /// caller that could draw no route); returns whether one was due.
    pub fn skip_cover(&self, now: Timestamp, rng: &mut (impl CryptoRng + ?Sized)) -> bool {
        self.cover
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(|state| state.ticker.poll(now, rng))
            .is_some()
    }

    /// If a loop cover packet is due at `now`, builds it over the mix route
    /// `route` (which must not include this node; the node is appended as
    /// the final hop with its current key) and returns it.
    pub fn poll_cover(
        &self,
        now: Timestamp,
        rng: &mut (impl CryptoRng + ?Sized),
        route: &[RouteHop],
    ) -> Option<Transmit> {
        let delays = {
            let mut cover = self.cover.lock().unwrap_or_else(PoisonError::into_inner);
            let state = cover.as_mut()?;
            state.ticker.poll(now, rng)?;
            state.delays
        };
        let own_key = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            keys.get(&self.current_epoch())?.public()
        };
        let mut full_route = route.to_vec();
        full_route.push(RouteHop {
            id: self.id,
            sphinx_key: own_key,
        });
        let route_delays = delays.route_delays(full_route.len(), rng);
        let frame = Frame::NodeLoop.encode().ok()?;
        let packet = build_packet(
            rng,
            &full_route,
            &route_delays,
            self.id.to_destination(),
            [0; protocol::packet::SURB_ID_SIZE],
            &frame,
        )
        .ok()?;
        self.stats.cover_sent();
        Some(Transmit {
            next_hop: packet.first_hop,
            send_at: now,
            packet: packet.bytes,
        })
    }
}
