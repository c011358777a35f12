//! The discrete-event engine.
//!
//! Time is virtual: a binary heap of events keyed by (instant, sequence
//! number), so events at the same instant run in the order they were
//! scheduled and a run never depends on anything but its scenario. Every
//! random choice comes from a ChaCha20 stream derived from the seed, one per
//! role (a client's core, its application, its link; a node's links, its
//! cover; a gateway's sessions), so the trace and Sphinx codecs see the same
//! traffic, routes and delays for the same seed.
//!
//! Every party is its real state machine, driven as its async shell drives
//! it: each client a [`ClientCore`] (woken at `poll_timeout`, drained with
//! `poll_transmit`, fed its gateway's mailbox pushes with `handle_delivery`,
//! its events read with `poll_event`); each gateway a [`GatewayCore`] over a
//! [`MemoryStore`] mailbox (client sessions speaking the real link protocol,
//! final hops from its exit mixer, its actions carried out); each mix node
//! and each gateway's exit a [`mixnode_core::Mixer`]. The engine adds only what
//! the network adds (link latency and loss) and the bookkeeping of figures:
//! what it knows about a packet (kind, send time, the observer's belief
//! about its sender) travels beside the bytes, never inside them.
//!
//! The handlers live in three files: `clients.rs` (the client cores and
//! their application), `gateways.rs` (the gateway cores and their client
//! sessions), `hops.rs` (links, mixers and the nodes' own cover).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

use client_core::ClientCore;
use gateway_core::{
    GatewayConfig, GatewayCore, Mailbox, MailboxConfig, MemoryStore, SessionId, ThrottleConfig,
};
use indicatif::ProgressBar;
use mixnode_core::SphinxCodec;
use protocol::format::PacketFormat;
use protocol::fragment::MessageId;
use protocol::link::{GatewayMessage, LinkDecoder};
use protocol::poisson::PoissonTicker;
use protocol::time::Timestamp;
use protocol::{ClientAddress, SphinxKeyPair};
use rand_chacha::ChaCha20Rng;

mod attacks;
mod clients;
mod gateways;
mod hops;

use crate::anonymity::{Beliefs, PoolBelief, TimingPool};
use crate::error::SimError;
use crate::events::{Event, Scheduled, rng_stream};
use crate::network::Network;
use crate::report::{Delivery, Distribution, RegionNode, RegionReport, Report, RunOutput};
use crate::residency::Residency;
use crate::routes::SimRoutes;
use crate::scenario::{CodecKind, Scenario};
use crate::sim_codec::{CoverClock, SimCodec};
use crate::tally::{Kind, Tally, ratio};
use crate::trace_codec::TraceCodec;

/// Runs `scenario`, updating `progress` (virtual milliseconds) if given.
pub fn run(scenario: &Scenario, progress: Option<&ProgressBar>) -> Result<RunOutput, SimError> {
    scenario.validate()?;
    match scenario.codec {
        CodecKind::Trace => Engine::new(scenario, TraceCodec::new()?)?.run(progress),
        CodecKind::Sphinx => Engine::new(scenario, SphinxCodec)?.run(progress),
    }
}

/// Random streams of one seed, by role (stream numbers are part of the
/// determinism contract: changing one changes every figure of a seed).
mod stream {
    pub(super) const SETUP: u64 = 0;
    pub(super) const CLIENT_APP: u64 = 1 << 32;
    pub(super) const NODE_LINKS: u64 = 2 << 32;
    pub(super) const NODE_COVER: u64 = 3 << 32;
    pub(super) const CLIENT_CORE: u64 = 4 << 32;
    pub(super) const CLIENT_LINK: u64 = 5 << 32;
    pub(super) const GATEWAY: u64 = 6 << 32;
    pub(super) const ATTACK: u64 = 7 << 32;
}

/// A packet on its way, with what the engine knows about it.
struct InFlight {
    bytes: Vec<u8>,
    kind: Kind,
    sent_at: Timestamp,
    arrived_at: Timestamp,
    next: u32,
    target: Option<u32>,
    /// The observers' beliefs about its sender (while targets are tracked).
    dist: Option<Beliefs>,
    /// Whether it is a client's packet that has not yet reached a mix.
    fresh: bool,
    /// The client whose own route source drew its route (its fragments and
    /// cover; not replies, which travel routes their SURB's maker drew).
    origin: Option<u32>,
}

/// A message (or a reply) an application handed to its client core.
struct Message {
    created: Timestamp,
    measured: bool,
    reply: bool,
    received: bool,
}

/// One client: its core, its random streams, its session with its gateway.
struct ClientSlot<F: PacketFormat> {
    core: ClientCore<SimRoutes, F>,
    /// Everything the core draws (clocks, routes, delays, packet secrets).
    core_rng: ChaCha20Rng,
    /// The application: when messages come, to whom, whether to reply.
    app_rng: ChaCha20Rng,
    /// Latency and loss of what the client sends.
    link_rng: ChaCha20Rng,
    messages: PoissonTicker,
    gateway: usize,
    session: SessionId,
    decoder: LinkDecoder<GatewayMessage>,
    /// The instant of the one live `ClientWake` event, if any.
    wake_at: Option<Timestamp>,
    /// Whether the device is online: it has a session with its gateway and
    /// its core is driven.
    online: bool,
}

/// One gateway's core and its sessions.
struct GatewaySlot<F: PacketFormat> {
    core: GatewayCore<MemoryStore, F>,
    /// Session challenges.
    rng: ChaCha20Rng,
    /// Which client each session is.
    sessions: BTreeMap<SessionId, u32>,
    /// The instant of the one live `GatewayWake` event, if any.
    wake_at: Option<Timestamp>,
}

struct Engine<C: SimCodec> {
    scenario: Scenario,
    net: Network<C>,
    clients: Vec<ClientSlot<C::Format>>,
    gateways: Vec<GatewaySlot<C::Format>>,
    addresses: Vec<ClientAddress>,
    /// Per node: link latency and loss of what it sends.
    node_rngs: Vec<ChaCha20Rng>,
    /// Per node (mix nodes and gateways): its loop-cover clock, routes and
    /// (Sphinx) packet secrets.
    cover_rngs: Vec<ChaCha20Rng>,
    cover_clocks: Vec<CoverClock>,
    heap: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    slots: Vec<Option<InFlight>>,
    free: Vec<u32>,
    chunks: Vec<Option<Vec<u8>>>,
    free_chunks: Vec<u32>,
    messages: Vec<Message>,
    by_id: HashMap<MessageId, u32>,
    message_bytes: Vec<u8>,
    reply_bytes: Vec<u8>,
    next_cover_id: u64,
    /// Per node, the pool observer's summed beliefs about the packets inside.
    pools: Vec<PoolBelief>,
    /// Per node, the timing observer's weighted beliefs about recent inputs.
    timing_pools: Vec<TimingPool>,
    /// The (n−1) adversary, if the scenario has one.
    n_minus_one: Option<attacks::NMinusOne>,
    /// The intersection adversary, if the scenario has one.
    intersection: Option<attacks::Intersection>,
    /// Region labels and the constrained clients, if some are.
    residency: Option<Residency>,
    /// The clients on allowed gateways: a constrained client's correspondents.
    allowed_recipients: Vec<u32>,
    /// Whether the observers follow beliefs now.
    tracking: bool,
    /// When they start to (none once started, or if nothing is measured).
    tracking_from: Option<Timestamp>,
    /// Per target group (the constrained clients' targets, then, with a
    /// constraint, the other clients'), targets started so far.
    targets_started: Vec<usize>,
    targets_in_flight: usize,
    tally: Tally,
    warmup: Timestamp,
    traffic_end: Timestamp,
    end: Timestamp,
}

fn at_secs(secs: f64) -> Timestamp {
    Timestamp::ZERO.saturating_add(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

impl<C: SimCodec> Engine<C> {
    fn new(scenario: &Scenario, codec: C) -> Result<Self, SimError> {
        let seed = scenario.seed;
        let mut setup = rng_stream(seed, stream::SETUP);
        let net = Network::new(scenario, &codec, &mut setup);
        let t = &scenario.traffic;
        let nodes = net.mixers.len();
        let format = codec.format();
        let gateways = (0..net.gateways)
            .map(|g| gateway_slot(scenario, &net, g, format.clone(), seed))
            .collect::<Result<Vec<_>, SimError>>()?;
        let config = scenario.client_config();
        let mut attack_rng = rng_stream(seed, stream::ATTACK);
        let intersection = attacks::Intersection::new(scenario, &mut attack_rng);
        let residency = Residency::new(scenario)?;
        let mut clients = Vec::with_capacity(t.clients);
        let mut addresses = Vec::with_capacity(t.clients);
        for i in 0..t.clients {
            let keys = SphinxKeyPair::generate(&mut setup);
            let (gateway, routes) = match &residency {
                Some(r) if r.is_constrained(i) => (
                    r.gateway_of(i),
                    SimRoutes::constrained(net.routes.clone(), r.allowed_nodes()),
                ),
                Some(r) => (r.gateway_of(i), SimRoutes::new(net.routes.clone())),
                None => (i % net.gateways, SimRoutes::new(net.routes.clone())),
            };
            let mut core_rng = rng_stream(seed, stream::CLIENT_CORE + i as u64);
            let mut app_rng = rng_stream(seed, stream::CLIENT_APP + i as u64);
            let core = ClientCore::with_format(
                format.clone(),
                config,
                keys,
                net.gateway_id(gateway),
                routes,
                Timestamp::ZERO,
                &mut core_rng,
            );
            addresses.push(core.address());
            // Alice, under the intersection attack, writes at her own rate.
            let rate = match &intersection {
                Some(a) if i == 0 => a.rate,
                _ => t.message_rate,
            };
            clients.push(ClientSlot {
                core,
                core_rng,
                messages: PoissonTicker::new(rate, Timestamp::ZERO, &mut app_rng),
                app_rng,
                link_rng: rng_stream(seed, stream::CLIENT_LINK + i as u64),
                gateway,
                session: SessionId(u64::MAX),
                decoder: LinkDecoder::new(),
                wake_at: None,
                online: true,
            });
        }
        let targets = scenario.adversary.target_messages;
        let groups = if residency.is_some() { 2 } else { 1 };
        let allowed_recipients = match &residency {
            Some(r) => clients
                .iter()
                .enumerate()
                .filter(|(_, c)| r.is_allowed(net.gateway_node(c.gateway)))
                .map(|(i, _)| i as u32)
                .collect(),
            None => Vec::new(),
        };
        let constrained_visits = if residency.is_some() { nodes } else { 0 };
        let mut engine = Engine {
            node_rngs: (0..nodes)
                .map(|n| rng_stream(seed, stream::NODE_LINKS + n as u64))
                .collect(),
            cover_rngs: (0..nodes)
                .map(|n| rng_stream(seed, stream::NODE_COVER + n as u64))
                .collect(),
            cover_clocks: (0..nodes).map(|_| CoverClock::default()).collect(),
            heap: BinaryHeap::new(),
            seq: 0,
            slots: Vec::new(),
            free: Vec::new(),
            chunks: Vec::new(),
            free_chunks: Vec::new(),
            messages: Vec::new(),
            by_id: HashMap::new(),
            message_bytes: vec![0; t.message_size],
            reply_bytes: vec![0; t.reply_size],
            next_cover_id: 0,
            pools: (0..nodes).map(|_| PoolBelief::default()).collect(),
            timing_pools: (0..nodes).map(|_| TimingPool::default()).collect(),
            n_minus_one: attacks::NMinusOne::new(
                scenario,
                at_secs(scenario.warmup_secs),
                at_secs(scenario.duration_secs),
            ),
            intersection,
            residency,
            allowed_recipients,
            tracking: false,
            tracking_from: (targets > 0)
                .then(|| Timestamp::ZERO.saturating_add(scenario.tracking_from())),
            targets_started: vec![0; groups],
            targets_in_flight: 0,
            tally: Tally::new(nodes, targets * groups, constrained_visits),
            warmup: at_secs(scenario.warmup_secs),
            traffic_end: at_secs(scenario.duration_secs),
            end: at_secs(scenario.duration_secs + scenario.drain_secs),
            net,
            clients,
            gateways,
            addresses,
            scenario: scenario.clone(),
        };
        for c in 0..engine.clients.len() {
            // Nothing is stored yet: the welcome carries no pushes.
            engine.connect(Timestamp::ZERO, c)?;
        }
        engine.start();
        Ok(engine)
    }

    fn schedule(&mut self, at: Timestamp, event: Event) {
        if at > self.end {
            return;
        }
        self.seq += 1;
        self.heap.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn start(&mut self) {
        for c in 0..self.clients.len() {
            self.reschedule_client(Timestamp::ZERO, c);
            if let Some(t) = self.clients.get(c).and_then(|s| s.messages.next_tick()) {
                self.schedule(t, Event::NewMessage(c as u32));
            }
        }
        for g in 0..self.gateways.len() {
            self.reschedule_gateway(Timestamp::ZERO, g);
        }
        // Alice, under the intersection attack, is offline in her offline
        // rounds: her device, not only her application.
        let changes = self
            .intersection
            .as_ref()
            .map(attacks::Intersection::presence_changes)
            .unwrap_or_default();
        for (at, online) in changes {
            self.schedule(at, Event::Presence { client: 0, online });
        }
        // Every node's own loop cover: mix nodes and gateways alike (a
        // gateway's rate is zero when the scenario turns its cover off).
        for n in 0..self.net.mixers.len() {
            let (Some(mixer), Some(clock), Some(rng)) = (
                self.net.mixers.get(n),
                self.cover_clocks.get_mut(n),
                self.cover_rngs.get_mut(n),
            ) else {
                continue;
            };
            C::start_cover(mixer, clock, Timestamp::ZERO, rng);
            if let Some(t) = C::next_cover_at(mixer, clock) {
                self.schedule(t, Event::NodeCover(n as u32));
            }
        }
    }

    fn run(mut self, progress: Option<&ProgressBar>) -> Result<RunOutput, SimError> {
        while let Some(at) = self.step()? {
            if let Some(pb) = progress
                && self.tally.events.is_multiple_of(8192)
            {
                pb.set_position(at.as_nanos() / 1_000_000);
            }
        }
        Ok(self.finish())
    }

    /// Runs the next event; returns its instant, or `None` when none is left.
    fn step(&mut self) -> Result<Option<Timestamp>, SimError> {
        let Some(Reverse(next)) = self.heap.pop() else {
            return Ok(None);
        };
        self.tally.events += 1;
        let now = next.at;
        if self.tracking_from.is_some_and(|t| now >= t) {
            self.start_tracking();
        }
        match next.event {
            Event::ClientWake(c) => self.client_wake(now, c as usize),
            Event::NewMessage(c) => self.new_message(now, c as usize),
            Event::NodeCover(n) => self.node_cover(now, n as usize),
            Event::Arrive { node, slot } => self.arrive(now, node as usize, slot),
            Event::Release { node, slot } => self.release(now, node as usize, slot),
            Event::AtGateway { client, slot } => self.at_gateway(now, client as usize, slot),
            Event::SessionToGateway { client, chunk } => {
                self.session_to_gateway(now, client as usize, chunk);
            }
            Event::SessionToClient { client, chunk } => {
                self.session_to_client(now, client as usize, chunk)
            }
            Event::GatewayWake(g) => self.gateway_wake(now, g as usize),
            Event::Presence { client, online } => {
                if online {
                    self.come_online(now, client as usize)?;
                } else {
                    self.go_offline(client as usize);
                }
            }
        }
        Ok(Some(now))
    }

    /// The observers start following beliefs, in every node's pools
    /// (senders: clients, then every node, for its own loop cover and a
    /// gateway's SURB-acks). Packets already in flight carry none and stay
    /// out of the pools; they have left long before the first target is
    /// sent (`Scenario::tracking_from`).
    fn start_tracking(&mut self) {
        self.tracking_from = None;
        self.tracking = true;
        let d = self.scenario.mean_delay();
        self.pools.iter_mut().for_each(|p| *p = PoolBelief::new());
        self.timing_pools
            .iter_mut()
            .for_each(|p| *p = TimingPool::new(d));
    }

    fn store(&mut self, packet: InFlight) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    *s = Some(packet);
                }
                slot
            }
            None => {
                self.slots.push(Some(packet));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Removes a packet that left the network (delivered or dropped).
    fn retire(&mut self, slot: u32) -> Option<InFlight> {
        let packet = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        if packet.target.is_some() {
            self.targets_in_flight = self.targets_in_flight.saturating_sub(1);
            if self.targets_in_flight == 0 && self.all_targets_started() {
                // Every target has left: stop paying for anonymity tracking.
                self.tracking = false;
                self.pools.iter_mut().for_each(PoolBelief::release_memory);
                self.timing_pools
                    .iter_mut()
                    .for_each(TimingPool::release_memory);
            }
        }
        Some(packet)
    }

    /// Whether every target group that has clients has started all its targets.
    fn all_targets_started(&self) -> bool {
        let wanted = self.scenario.adversary.target_messages;
        let constrained = self
            .residency
            .as_ref()
            .map_or(0, Residency::constrained_clients);
        self.targets_started.iter().enumerate().all(|(g, started)| {
            // The second group (unconstrained clients) may have no client.
            *started >= wanted || (g == 1 && constrained >= self.clients.len())
        })
    }

    /// The target group of client `c`: 0, or 1 for an unconstrained client
    /// when some clients are constrained.
    fn target_group(&self, c: usize) -> usize {
        match &self.residency {
            Some(r) if !r.is_constrained(c) => 1,
            _ => 0,
        }
    }

    /// Keeps link bytes until their event; returns their chunk number.
    fn keep_chunk(&mut self, bytes: Vec<u8>) -> u32 {
        match self.free_chunks.pop() {
            Some(i) => {
                if let Some(c) = self.chunks.get_mut(i as usize) {
                    *c = Some(bytes);
                }
                i
            }
            None => {
                self.chunks.push(Some(bytes));
                (self.chunks.len() - 1) as u32
            }
        }
    }

    fn take_chunk(&mut self, i: u32) -> Vec<u8> {
        let bytes = self
            .chunks
            .get_mut(i as usize)
            .and_then(Option::take)
            .unwrap_or_default();
        self.free_chunks.push(i);
        bytes
    }

    fn finish(mut self) -> RunOutput {
        let end = self.end;
        let net = &self.net;
        let gateways = &self.gateways;
        let nodes = self.tally.node_reports(
            end,
            |n| {
                (
                    net.name(n),
                    net.layer_of(n),
                    net.corrupt.get(n).copied().unwrap_or(false),
                )
            },
            |n| {
                net.mixers
                    .get(n)
                    .map(|m| m.stats().snapshot())
                    .unwrap_or_default()
            },
            |n| {
                n.checked_sub(net.mixes())
                    .and_then(|g| gateways.get(g))
                    .map(|g| g.core.stats().snapshot())
            },
        );
        let mut drops = self.tally.drops.clone();
        for g in &self.gateways {
            let s = g.core.stats().snapshot();
            for reason in gateway_core::GatewayDropReason::ALL {
                // Drop cover goes to the drop address: `drop_cover` is where
                // it is meant to end (acknowledged, then discarded), not a loss.
                if reason != gateway_core::GatewayDropReason::DropCover && s.dropped(reason) > 0 {
                    *drops.entry(reason.as_str().to_string()).or_default() += s.dropped(reason);
                }
            }
        }
        let bandwidth = self.tally.bandwidth();
        let targets = self.scenario.adversary.target_messages;
        let clients = self.clients.len();
        let (anonymity, target_posteriors) = self.tally.anonymity(0..targets, clients);
        let regions = self
            .residency
            .as_ref()
            .map(|r| region_report(r, &self.net, &self.tally, targets, clients));
        let target_entropies_bits = target_posteriors
            .iter()
            .map(|p| p[0].entropy_bits)
            .collect();
        let n_minus_one = self.n_minus_one.take().map(|a| {
            let name = self.net.name(a.node);
            a.report(name)
        });
        let intersection = self.intersection.take().map(|a| a.report(self.traffic_end));
        let mut delivery: Delivery = self.tally.delivery.clone();
        delivery.message_ratio = ratio(delivery.messages_delivered, delivery.messages_measured);
        delivery.packet_ratio = ratio(delivery.packets_delivered, delivery.packets_sent);
        for c in &self.clients {
            let s = c.core.stats();
            delivery.retransmissions += s.retransmissions;
            delivery.duplicates_removed += s.duplicate_fragments;
        }
        let mut packet_latencies_ms = std::mem::take(&mut self.tally.packet_latencies_ms);
        let packet_latency_ms = Distribution::of(&mut packet_latencies_ms);
        let message_latency_ms = Distribution::of(&mut self.tally.message_latencies_ms);
        let reply_latency_ms = Distribution::of(&mut self.tally.reply_latencies_ms);
        let report = Report {
            scenario: self.scenario.clone(),
            codec: C::KIND,
            virtual_secs: end.since_origin().as_secs_f64(),
            events: self.tally.events,
            packet_hops: self.tally.packet_hops,
            packet_latency_ms,
            message_latency_ms,
            reply_latency_ms,
            delivery,
            bandwidth,
            nodes,
            anonymity,
            n_minus_one,
            intersection,
            regions,
            drops,
        };
        RunOutput {
            report,
            packet_latencies_ms,
            target_entropies_bits,
            target_posteriors,
        }
    }
}

/// What the region constraint did: the constrained clients' packets at every
/// node, and the unconstrained clients' targets' figures.
fn region_report<C: SimCodec>(
    r: &Residency,
    net: &Network<C>,
    tally: &Tally,
    targets: usize,
    clients: usize,
) -> RegionReport {
    let nodes: Vec<RegionNode> = (0..net.mixers.len())
        .map(|n| RegionNode {
            name: net.name(n),
            region: r.label(n).to_string(),
            allowed: r.is_allowed(n),
            constrained_packets: tally.constrained_visits.get(n).copied().unwrap_or(0),
        })
        .collect();
    let constrained_packets_outside = nodes
        .iter()
        .filter(|n| !n.allowed)
        .map(|n| n.constrained_packets)
        .sum();
    let unconstrained = (r.constrained_clients() < clients)
        .then(|| tally.anonymity(targets..2 * targets, clients).0);
    RegionReport {
        constrained_clients: r.constrained_clients(),
        constrained_packets_outside,
        unconstrained,
        nodes,
    }
}

/// Gateway `g`'s core, configured as the gateway binary configures it from
/// the topology (throttle at λ_P + λ_L with a burst of twice that, at least
/// the default), over an in-memory mailbox.
fn gateway_slot<C: SimCodec, F: PacketFormat>(
    scenario: &Scenario,
    net: &Network<C>,
    g: usize,
    format: F,
    seed: u64,
) -> Result<GatewaySlot<F>, SimError> {
    let rate = scenario.traffic.lambda_p + scenario.traffic.lambda_l;
    let config = GatewayConfig {
        throttle: ThrottleConfig {
            rate,
            burst: (rate * 2.0).max(ThrottleConfig::default().burst),
        },
        max_sessions: scenario.traffic.clients.max(1),
        max_clients: scenario.traffic.clients.max(1),
        ..GatewayConfig::default()
    };
    let mailbox = Mailbox::open(MemoryStore::new(), MailboxConfig::default())?;
    let mut core = GatewayCore::with_format(format, net.gateway_id(g), config, mailbox)?;
    core.set_layer1(net.layer1_ids());
    Ok(GatewaySlot {
        core,
        rng: rng_stream(seed, stream::GATEWAY + g as u64),
        sessions: BTreeMap::new(),
        wake_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a small trace network event by event and watches the observer's
    /// belief about the packets inside the first layer-1 mix.
    fn watch_layer_one(gateway_cover: bool) -> (f64, f64) {
        let mut s = Scenario {
            duration_secs: 10.0,
            warmup_secs: 0.0,
            drain_secs: 1.0,
            ..Scenario::default()
        };
        s.topology.nodes_per_layer = 1;
        s.topology.gateways = 2;
        s.traffic.clients = 4;
        // No real messages: the gateways send only cover SURB-acks (and
        // their loops, when on).
        s.traffic.message_rate = 0.0;
        s.traffic.lambda_m = 5.0;
        s.traffic.gateway_cover = gateway_cover;
        // Far more targets than the run sends: tracking stays on throughout.
        s.adversary.target_messages = 1_000_000;
        let mut engine = Engine::new(&s, TraceCodec::new().unwrap()).unwrap();
        let first_gateway = (s.traffic.clients + engine.net.mixes()) as u32;
        let (mut gateway_mass, mut worst_total_error) = (0.0f64, 0.0f64);
        while engine.step().unwrap().is_some() {
            let pool = &engine.pools[0];
            if pool.members() == 0 {
                continue;
            }
            let mix = pool.mixture();
            let total: f64 = mix.entries().iter().map(|(_, p)| p).sum();
            worst_total_error = worst_total_error.max((total - 1.0).abs());
            gateway_mass += mix
                .entries()
                .iter()
                .filter(|(sender, _)| *sender >= first_gateway)
                .map(|(_, p)| p)
                .sum::<f64>();
        }
        (gateway_mass, worst_total_error)
    }

    /// Everything client `c`'s core has sent so far.
    fn sent_by(engine: &Engine<TraceCodec>, c: usize) -> u64 {
        engine.clients.get(c).map_or(0, |slot| {
            let s = slot.core.stats();
            s.real_sent + s.drop_cover_sent + s.loop_cover_sent + s.reply_acks_sent
        })
    }

    #[test]
    fn an_offline_client_core_sends_nothing_and_resumes_with_its_mail() {
        use crate::scenario::IntersectionSpec;
        let mut s = Scenario {
            seed: 3,
            duration_secs: 400.0,
            warmup_secs: 0.0,
            drain_secs: 2.0,
            ..Scenario::default()
        };
        s.topology.layers = 1;
        s.topology.nodes_per_layer = 1;
        s.topology.gateways = 1;
        s.traffic.clients = 6;
        // Others write to Alice too: mail waits for her while she is away.
        s.traffic.message_rate = 0.5;
        s.traffic.lambda_p = 2.0;
        s.traffic.lambda_l = 1.0;
        s.adversary.target_messages = 0;
        s.attack.intersection = Some(IntersectionSpec {
            correspondents: 1,
            round_secs: 10.0,
            online_probability: 0.5,
            message_rate: Some(1.0),
        });
        let mut engine = Engine::new(&s, TraceCodec::new().unwrap()).unwrap();
        let alice_key = engine.clients[0].core.address().client_key;
        let (mut online_secs, mut online_sent) = (0.0, 0u64);
        let (mut offline_periods, mut waiting_on_return) = (0, 0u64);
        let (mut jumps_before, mut resumed_bursts) = (0u64, Vec::new());
        let mut last = Timestamp::ZERO;
        let mut was_online = true;
        let mut sent_at_change = 0u64;
        let mut back_at: Option<(Timestamp, u64)> = None;
        loop {
            let sent_before = sent_by(&engine, 0);
            let delivered_before = engine.clients[0].core.stats().deliveries;
            let Some(now) = engine.step().unwrap() else {
                break;
            };
            let online = engine.clients[0].online;
            if !was_online && !online {
                // Offline the whole event: the core is not driven at all.
                assert_eq!(
                    sent_by(&engine, 0),
                    sent_before,
                    "sent while offline at {now:?}"
                );
                assert_eq!(
                    engine.clients[0].core.stats().deliveries,
                    delivered_before,
                    "handed mail while offline at {now:?}"
                );
            }
            if was_online && !online {
                offline_periods += 1;
                online_secs += now.saturating_duration_since(last).as_secs_f64();
                online_sent += sent_by(&engine, 0) - sent_at_change;
            }
            if !was_online && online {
                // What her gateway stored while she was away is pushed now.
                waiting_on_return += engine.gateways[0]
                    .core
                    .mailbox()
                    .client_usage(&alice_key)
                    .messages;
                jumps_before = engine.clients[0].core.stats().clock_jumps;
                back_at = Some((now, sent_by(&engine, 0)));
                sent_at_change = sent_by(&engine, 0);
                last = now;
            }
            if let Some((at, sent)) = back_at
                && now.saturating_duration_since(at) >= Duration::from_millis(200)
            {
                // Her clocks restarted instead of sending every missed tick.
                resumed_bursts.push(sent_by(&engine, 0) - sent);
                assert!(engine.clients[0].core.stats().clock_jumps > jumps_before);
                back_at = None;
            }
            was_online = online;
        }
        assert!(offline_periods >= 4, "{offline_periods}");
        assert!(waiting_on_return > 0, "no mail waited for her");
        assert!(engine.clients[0].core.stats().deliveries > 0);
        // The ticks of the last `max_tick_lag` (1 s) and of the 0.2 s since:
        // about 1.2 s × (λ_P + λ_L) = 3.6 packets after each return, not the
        // 30 or more missed in a 10-second round.
        let mean_burst = resumed_bursts.iter().sum::<u64>() as f64 / resumed_bursts.len() as f64;
        assert!(mean_burst < 8.0, "{resumed_bursts:?}");
        // Online, she sends at λ_P + λ_L = 3 per second (her count is
        // Poisson), plus those few after each return.
        let rate = online_sent as f64 / online_secs;
        assert!((2.5..3.8).contains(&rate), "{rate} over {online_secs} s");
    }

    #[test]
    fn gateway_cover_sits_in_the_pools_as_sent_by_its_gateway() {
        // Layer 1 holds packets believed sent by gateways: the SURB-acks of
        // every client packet (cover included), and, when on, the gateways'
        // own loops on top. No belief loses mass (every sender id has a
        // place in the pool).
        let (on, error) = watch_layer_one(true);
        assert!(error < 1e-9, "{error}");
        let (off, error) = watch_layer_one(false);
        assert!(error < 1e-9, "{error}");
        assert!(off > 1.0, "cover SURB-acks come from the gateways: {off}");
        assert!(
            on > off * 1.2,
            "the gateways' loops add to them: {on} vs {off}"
        );
    }
}
