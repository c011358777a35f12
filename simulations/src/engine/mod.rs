//! The discrete-event engine.
//!
//! Time is virtual: a binary heap of events keyed by (instant, sequence
//! number), so events at the same instant run in the order they were
//! scheduled and a run never depends on anything but its scenario. Every
//! random choice comes from a ChaCha20 stream derived from the seed, one per
//! client and per node (plus one for packet cryptography), so the trace and
//! Sphinx codecs see the same traffic, routes and delays for the same seed.
//!
//! Each hop is the real [`mixnode_core::Mixer`]: a packet's arrival calls
//! `handle_packet(now, bytes)`, and the engine obeys the returned action
//! exactly as a node's async shell would, scheduling the release at
//! `send_at`. The engine's own knowledge about a packet (kind, send time,
//! the observer's belief about its sender) travels beside the bytes, never
//! inside them. Entry gateways only relay a client's packet to layer 1, so
//! they appear as one more link, not as a mixer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::Duration;

use indicatif::ProgressBar;
use mixnode_core::SphinxCodec;
use protocol::fragment::{MessageId, fragment_message};
use protocol::frame::Frame;
use protocol::packet::DelaySampler;
use protocol::poisson::PoissonTicker;
use protocol::time::Timestamp;
use rand_chacha::ChaCha20Rng;

mod hops;

use crate::anonymity::{PoolBelief, SenderDist};
use crate::client::{PoissonClient, SimClient};
use crate::error::SimError;
use crate::events::{Event, Scheduled, rng_stream};
use crate::network::Network;
use crate::report::{Distribution, Report, RunOutput};
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

struct InFlight {
    bytes: Vec<u8>,
    kind: Kind,
    sent_at: Timestamp,
    arrived_at: Timestamp,
    next: u32,
    target: Option<u32>,
    dist: Option<Rc<SenderDist>>,
}

struct Message {
    created: Timestamp,
    measured: bool,
    remaining: u32,
    failed: bool,
}

struct ClientSlot {
    model: Box<dyn SimClient>,
    rng: ChaCha20Rng,
    messages: PoissonTicker,
    gateway: usize,
}

/// Frames the Sphinx codec seals (the trace codec ignores them).
struct Frames {
    real: Vec<u8>,
    loop_cover: Vec<u8>,
    drop_cover: Vec<u8>,
}

struct Engine<C: SimCodec> {
    scenario: Scenario,
    codec: C,
    net: Network<C>,
    clients: Vec<ClientSlot>,
    /// Per node: link latency and loss of what it sends.
    node_rngs: Vec<ChaCha20Rng>,
    /// Per node (mix nodes and gateways): its loop-cover clock, routes and
    /// (Sphinx) packet secrets.
    cover_rngs: Vec<ChaCha20Rng>,
    cover_clocks: Vec<CoverClock>,
    crypto_rng: ChaCha20Rng,
    frames: Frames,
    delays: DelaySampler,
    fragments: u32,
    heap: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    slots: Vec<Option<InFlight>>,
    free: Vec<u32>,
    messages: Vec<Message>,
    next_packet_id: u64,
    /// Per node, the observer's summed beliefs about the packets inside.
    pools: Vec<PoolBelief>,
    tracking: bool,
    targets_started: usize,
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
        let mut setup = rng_stream(seed, 0);
        let net = Network::new(scenario, &codec, &mut setup);
        let t = &scenario.traffic;
        let nodes = net.mixers.len();
        let packet = |e: protocol::ProtocolError| SimError::Packet(e.to_string());
        let pieces =
            fragment_message(MessageId([0; 16]), &vec![0u8; t.message_size]).map_err(packet)?;
        let fragment = pieces
            .first()
            .cloned()
            .ok_or_else(|| SimError::Packet("message has no fragment".into()))?;
        let frames = Frames {
            real: Frame::DataFragment {
                surb_ack: None,
                lifetime: None,
                fragment,
            }
            .encode()
            .map_err(packet)?,
            loop_cover: Frame::LoopCover.encode().map_err(packet)?,
            drop_cover: Frame::DropCover.encode().map_err(packet)?,
        };
        let clients = (0..t.clients)
            .map(|i| {
                let mut rng = rng_stream(seed, (1 << 32) + i as u64);
                let model = PoissonClient::new(
                    t.lambda_p,
                    t.lambda_l,
                    t.lambda_d,
                    t.client_queue,
                    Timestamp::ZERO,
                    &mut rng,
                );
                let messages = PoissonTicker::new(t.message_rate, Timestamp::ZERO, &mut rng);
                ClientSlot {
                    model: Box::new(model),
                    rng,
                    messages,
                    gateway: i % net.gateways,
                }
            })
            .collect();
        let targets = scenario.adversary.target_messages;
        let mut engine = Engine {
            codec,
            node_rngs: (0..nodes)
                .map(|n| rng_stream(seed, (2 << 32) + n as u64))
                .collect(),
            cover_rngs: (0..nodes)
                .map(|n| rng_stream(seed, (3 << 32) + n as u64))
                .collect(),
            cover_clocks: (0..nodes).map(|_| CoverClock::default()).collect(),
            crypto_rng: rng_stream(seed, 1),
            frames,
            delays: DelaySampler::new(scenario.mean_delay()),
            fragments: u32::try_from(pieces.len()).unwrap_or(u32::MAX),
            heap: BinaryHeap::new(),
            seq: 0,
            slots: Vec::new(),
            free: Vec::new(),
            messages: Vec::new(),
            next_packet_id: 0,
            pools: (0..nodes)
                .map(|_| {
                    if targets > 0 {
                        // Senders: clients, then every node (own loop cover).
                        PoolBelief::new(t.clients + nodes)
                    } else {
                        PoolBelief::default()
                    }
                })
                .collect(),
            tracking: targets > 0,
            targets_started: 0,
            targets_in_flight: 0,
            tally: Tally::new(nodes, targets),
            warmup: at_secs(scenario.warmup_secs),
            traffic_end: at_secs(scenario.duration_secs),
            end: at_secs(scenario.duration_secs + scenario.drain_secs),
            net,
            clients,
            scenario: scenario.clone(),
        };
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
        for i in 0..self.clients.len() {
            let Some(c) = self.clients.get(i) else {
                continue;
            };
            let (wake, msg) = (c.model.next_wakeup(), c.messages.next_tick());
            if let Some(t) = wake {
                self.schedule(t, Event::ClientWake(i as u32));
            }
            if let Some(t) = msg {
                self.schedule(t, Event::NewMessage(i as u32));
            }
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
        match next.event {
            Event::ClientWake(c) => self.client_wake(next.at, c as usize)?,
            Event::NewMessage(c) => self.new_message(next.at, c as usize),
            Event::NodeCover(n) => self.node_cover(next.at, n as usize),
            Event::Arrive { node, slot } => self.arrive(next.at, node as usize, slot),
            Event::Release { node, slot } => self.release(next.at, node as usize, slot),
        }
        Ok(Some(next.at))
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
            if self.targets_in_flight == 0
                && self.targets_started >= self.scenario.adversary.target_messages
            {
                // Every target has left: stop paying for anonymity tracking.
                self.tracking = false;
                self.pools.iter_mut().for_each(PoolBelief::release_memory);
            }
        }
        Some(packet)
    }

    fn finish(mut self) -> RunOutput {
        let end = self.end;
        let net = &self.net;
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
        );
        let bandwidth = self.tally.bandwidth();
        let (anonymity, target_entropies_bits) = self.tally.anonymity(self.clients.len());
        let mut delivery = self.tally.delivery.clone();
        delivery.message_ratio = ratio(delivery.messages_delivered, delivery.messages_measured);
        delivery.packet_ratio = ratio(delivery.packets_delivered, delivery.packets_sent);
        let mut packet_latencies_ms = std::mem::take(&mut self.tally.packet_latencies_ms);
        let packet_latency_ms = Distribution::of(&mut packet_latencies_ms);
        let message_latency_ms = Distribution::of(&mut self.tally.message_latencies_ms);
        let report = Report {
            scenario: self.scenario.clone(),
            codec: C::KIND,
            virtual_secs: end.since_origin().as_secs_f64(),
            events: self.tally.events,
            packet_hops: self.tally.packet_hops,
            packet_latency_ms,
            message_latency_ms,
            delivery,
            bandwidth,
            nodes,
            anonymity,
            drops: self.tally.drops.clone(),
        };
        RunOutput {
            report,
            packet_latencies_ms,
            target_entropies_bits,
        }
    }
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

    #[test]
    fn gateway_cover_sits_in_the_pools_as_sent_by_its_gateway() {
        // On: layer 1 holds gateways' loops, believed sent by the gateways,
        // and no belief loses mass (every sender id has a place in the pool).
        let (mass, error) = watch_layer_one(true);
        assert!(mass > 1.0, "{mass}");
        assert!(error < 1e-9, "{error}");
        // Off: no packet is ever believed to come from a gateway.
        let (mass, error) = watch_layer_one(false);
        assert_eq!(mass, 0.0);
        assert!(error < 1e-9, "{error}");
    }
}
