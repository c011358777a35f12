//! A small in-process mixnet for the client's tests: three mix `Mixer`s (one
//! per layer), exit `Mixer`s for the gateways, and client cores. Packets are
//! handed from hop to hop at the instants the mixers choose; a gateway opens
//! forward deliveries (as the real gateway does), sends the SURB-ack back and
//! hands the delivery to its client. Loss is injected by two hooks.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use client_core::{ClientConfig, ClientCore, ClientEvent, RouteSource};
use mixnode_core::{Action, Mixer, MixerConfig, MixerRole, SphinxCodec};
use protocol::address::DROP_DESTINATION;
use protocol::epoch::Epoch;
use protocol::fragment::FragmentId;
use protocol::frame::{ForwardFrame, Frame, SealedContent};
use protocol::keys::{IdentityKeyPair, NodeId, SphinxKeyPair};
use protocol::packet::Delivery;
use protocol::packet::{PACKET_SIZE, RouteHop};
use protocol::replay::ReplayFilterConfig;
use protocol::surb::{Surb, open_forward_payload, use_surb};
use protocol::time::Timestamp;
use rand::{CryptoRng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// The route source of the test network: one mix per layer.
#[derive(Clone)]
pub struct Topology {
    pub mixes: Vec<RouteHop>,
    pub gateways: Vec<RouteHop>,
}

impl RouteSource for Topology {
    fn route_to(&self, _rng: &mut dyn CryptoRng, exit_gateway: NodeId) -> Option<Vec<RouteHop>> {
        let gateway = self.gateways.iter().find(|g| g.id == exit_gateway)?;
        let mut route = self.mixes.clone();
        route.push(*gateway);
        Some(route)
    }

    fn random_gateway(&self, rng: &mut dyn CryptoRng) -> Option<NodeId> {
        if self.gateways.is_empty() {
            return None;
        }
        let i = rng.random_range(0..self.gateways.len());
        self.gateways.get(i).map(|g| g.id)
    }
}

/// Rates and timers small enough for fast tests.
pub fn test_config() -> ClientConfig {
    ClientConfig {
        send_rate: 50.0,
        loop_cover_rate: 2.0,
        mean_hop_delay: Duration::from_millis(20),
        ack_margin: Duration::from_millis(500),
        reply_ack_timeout: Duration::from_secs(1),
        max_retransmissions: 3,
        ..ClientConfig::default()
    }
}

/// Decides whether a gateway loses a delivery to the client of that index.
pub type DeliveryLossHook = Box<dyn FnMut(usize, &Delivery) -> bool>;

/// A packet on a link: arrival instant, sequence number (ties keep send
/// order), the node it arrives at, its bytes.
type InFlight = (Timestamp, u64, NodeId, Vec<u8>);

/// Decides whether the harness loses a fragment (or its ack) at the exit
/// gateway; gets the fragment and how many times it was seen there before.
pub type LossHook = Box<dyn FnMut(FragmentId, usize) -> bool>;

pub struct TestNetwork {
    pub now: Timestamp,
    pub rng: ChaCha20Rng,
    pub topology: Topology,
    pub clients: Vec<ClientCore<Topology>>,
    /// Events of every client, with the client's index, in order.
    pub events: Vec<(usize, ClientEvent)>,
    /// Loses a data fragment before its gateway stores it (no delivery, no ack).
    pub lose_fragment: LossHook,
    /// Loses the SURB-ack of a fragment its gateway delivered.
    pub lose_ack: LossHook,
    /// Loses any delivery (even sealed ones) at the recipient's gateway;
    /// gets the recipient's index and the delivery.
    pub lose_delivery: DeliveryLossHook,
    /// Packets sent by clients: (client, instant).
    pub client_sends: Vec<(usize, Timestamp)>,
    /// What each client's gateway handed it: (client, instant, through a
    /// SURB, payload length).
    pub handed: Vec<(usize, Timestamp, bool, usize)>,
    /// Deliveries for a destination no client has (drop cover).
    pub undeliverable: usize,
    /// Packets a mixer refused.
    pub refused: usize,
    /// Data fragments that reached their recipient's gateway: (arrival
    /// instant, fragment, the frame's lifetime), losses included.
    pub data_at_gateway: Vec<(Timestamp, FragmentId, Option<u32>)>,
    /// The recall tag of each data fragment copy that reached a gateway.
    pub tags_at_gateway: Vec<(FragmentId, protocol::recall::RecallTag)>,
    /// Every recall frame that reached a gateway (acked, its notice handed over).
    pub recalls_at_gateway: Vec<protocol::frame::RecallFrame>,
    /// Hash over every client send (who, when, where) and every event, in order.
    pub trace: DefaultHasher,
    mixers: HashMap<NodeId, Mixer>,
    /// Each client's index and key pair: the test sees inside sealed bodies.
    client_of_key: HashMap<[u8; 32], (usize, SphinxKeyPair)>,
    seen_at_gateway: HashMap<FragmentId, usize>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
}

fn mixer(rng: &mut ChaCha20Rng, role: MixerRole) -> (Mixer, RouteHop) {
    let id = IdentityKeyPair::generate(rng).node_id();
    let key = SphinxKeyPair::generate(rng);
    let mixer = Mixer::new(
        id,
        SphinxCodec,
        MixerConfig {
            role,
            replay: ReplayFilterConfig {
                min_tags_per_epoch: 50_000,
                false_positive_rate: 1e-6,
            },
            ..MixerConfig::default()
        },
    );
    let hop = RouteHop {
        id,
        sphinx_key: key.public(),
    };
    mixer.install_key(Epoch(0), key);
    mixer.rotate(Epoch(0));
    (mixer, hop)
}

impl TestNetwork {
    /// Three mixes, `gateways` gateways, and one client per entry of
    /// `client_gateways` (the index of its gateway).
    pub fn new(
        seed: u64,
        gateways: usize,
        client_gateways: &[usize],
        config: ClientConfig,
    ) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut mixers = HashMap::new();
        let mut topology = Topology {
            mixes: Vec::new(),
            gateways: Vec::new(),
        };
        for _ in 0..3 {
            let (m, hop) = mixer(&mut rng, MixerRole::Mix);
            mixers.insert(hop.id, m);
            topology.mixes.push(hop);
        }
        for _ in 0..gateways {
            let (m, hop) = mixer(&mut rng, MixerRole::Exit);
            mixers.insert(hop.id, m);
            topology.gateways.push(hop);
        }
        let now = Timestamp::from_millis(1_000);
        let mut clients = Vec::new();
        let mut client_of_key = HashMap::new();
        for (i, g) in client_gateways.iter().enumerate() {
            let keys = SphinxKeyPair::generate(&mut rng);
            let gateway = topology.gateways[*g].id;
            let core = ClientCore::new(
                config,
                keys.clone(),
                gateway,
                topology.clone(),
                now,
                &mut rng,
            );
            client_of_key.insert(core.address().client_key, (i, keys));
            clients.push(core);
        }
        TestNetwork {
            now,
            rng,
            topology,
            clients,
            events: Vec::new(),
            lose_fragment: Box::new(|_, _| false),
            lose_ack: Box::new(|_, _| false),
            lose_delivery: Box::new(|_, _| false),
            client_sends: Vec::new(),
            handed: Vec::new(),
            undeliverable: 0,
            refused: 0,
            data_at_gateway: Vec::new(),
            tags_at_gateway: Vec::new(),
            recalls_at_gateway: Vec::new(),
            trace: DefaultHasher::new(),
            mixers,
            client_of_key,
            seen_at_gateway: HashMap::new(),
            in_flight: BinaryHeap::new(),
            seq: 0,
        }
    }

    fn schedule(&mut self, at: Timestamp, to: NodeId, packet: Vec<u8>) {
        self.seq += 1;
        self.in_flight.push(Reverse((at, self.seq, to, packet)));
    }

    /// Runs until `done` holds or virtual time passes `limit` from now;
    /// returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now.saturating_add(limit);
        loop {
            if done(self) {
                return true;
            }
            let next_packet = self.in_flight.peek().map(|Reverse((t, ..))| *t);
            let next_timer = self.clients.iter().filter_map(|c| c.poll_timeout()).min();
            let Some(next) = next_packet.into_iter().chain(next_timer).min() else {
                return false;
            };
            if next > end {
                return false;
            }
            self.now = self.now.max(next);
            self.step();
        }
    }

    /// Moves every packet and timer due now.
    fn step(&mut self) {
        while let Some(Reverse((t, ..))) = self.in_flight.peek() {
            if *t > self.now {
                break;
            }
            let Some(Reverse((_, _, node, packet))) = self.in_flight.pop() else {
                break;
            };
            self.hop(node, &packet);
        }
        for i in 0..self.clients.len() {
            while let Some(packet) = self.clients[i]
                .poll_transmit(self.now, &mut self.rng)
                .map(|t| t.packet)
            {
                assert_eq!(
                    packet.bytes.len(),
                    PACKET_SIZE,
                    "every client packet has one size"
                );
                assert!(
                    self.topology.mixes[0].id == packet.first_hop,
                    "the entry gateway forwards to layer 1"
                );
                // Packet bytes are not part of the trace: `sphinx-packet` draws
                // its header padding from the OS, outside the seeded RNG.
                (i, self.now, packet.first_hop).hash(&mut self.trace);
                self.client_sends.push((i, self.now));
                // The entry gateway forwards the packet to its first hop at once.
                self.schedule(self.now, packet.first_hop, packet.bytes);
            }
            self.drain_events(i);
        }
    }

    pub fn drain_events(&mut self, i: usize) {
        while let Some(e) = self.clients[i].poll_event() {
            format!("{e:?}").hash(&mut self.trace);
            self.events.push((i, e));
        }
    }

    fn hop(&mut self, node: NodeId, packet: &[u8]) {
        let Some(mixer) = self.mixers.get(&node) else {
            panic!("packet for an unknown node");
        };
        match mixer.handle_packet(self.now, packet) {
            Ok(Action::Forward(t)) => self.schedule(t.send_at, t.next_hop, t.packet),
            Ok(Action::Deliver(d)) => self.gateway_delivers(d),
            Ok(Action::LoopReturned) => {}
            Err(_) => self.refused += 1,
        }
    }

    /// What an exit gateway does with a final-hop packet.
    fn gateway_delivers(&mut self, d: Delivery) {
        let forward = if d.surb_id.is_forward() {
            match open_forward_payload(&d.payload).and_then(|f| Frame::decode(&f)) {
                Ok(Frame::Forward(frame)) => Some(frame),
                Ok(Frame::Recall(recall)) => {
                    // As a gateway that found nothing to delete: the notice
                    // is stored and handed over, the recall acked.
                    let Some((client, _)) = self.client_of_key.get(&d.destination).cloned() else {
                        self.undeliverable += 1;
                        return;
                    };
                    self.send_ack(recall.surb_ack.clone());
                    let handed = recall.delivery_payload();
                    self.recalls_at_gateway.push(recall);
                    self.clients[client].handle_delivery(self.now, d.surb_id, &handed);
                    self.drain_events(client);
                    return;
                }
                _ => {
                    self.refused += 1;
                    return;
                }
            }
        } else {
            None
        };
        if d.destination == DROP_DESTINATION {
            // Drop cover: acknowledged, then discarded.
            if let Some(frame) = forward {
                self.send_ack(frame.surb_ack);
            }
            return;
        }
        let Some((client, key)) = self.client_of_key.get(&d.destination).cloned() else {
            self.undeliverable += 1;
            return;
        };
        if (self.lose_delivery)(client, &d) {
            return;
        }
        let Some(frame) = forward else {
            // A SURB packet: handed over sealed as it came.
            self.handed.push((client, self.now, true, d.payload.len()));
            self.clients[client].handle_delivery(self.now, d.surb_id, &d.payload);
            self.drain_events(client);
            return;
        };
        // The gateway cannot read the sealed body; the test can, to lose
        // chosen fragments and acks.
        let mut lose_ack = false;
        if let Ok(SealedContent::Data { lifetime, fragment }) =
            ForwardFrame::open(key.secret(), frame.sealed.as_slice())
        {
            self.data_at_gateway.push((self.now, fragment.id, lifetime));
            self.tags_at_gateway.push((fragment.id, frame.recall_tag));
            let seen = self.seen_at_gateway.entry(fragment.id).or_insert(0);
            let before = *seen;
            *seen += 1;
            if (self.lose_fragment)(fragment.id, before) {
                return;
            }
            lose_ack = (self.lose_ack)(fragment.id, before);
        }
        let handed = frame.delivery_payload();
        if !lose_ack {
            self.send_ack(frame.surb_ack);
        }
        self.handed.push((client, self.now, false, handed.len()));
        self.clients[client].handle_delivery(self.now, d.surb_id, &handed);
        self.drain_events(client);
    }

    /// Sends an ack back through `surb_ack`, as a gateway does once it holds a packet.
    fn send_ack(&mut self, surb_ack: Vec<u8>) {
        let frame = Frame::Ack.encode().unwrap();
        let packet = use_surb(&Surb(surb_ack), &frame).unwrap();
        self.schedule(self.now, packet.first_hop, packet.bytes);
    }

    /// The key pair of client `i` (to seal bodies to it in tests).
    pub fn keys_of(&self, i: usize) -> SphinxKeyPair {
        self.client_of_key
            .values()
            .find(|(c, _)| *c == i)
            .map(|(_, k)| k.clone())
            .expect("a client of this network")
    }

    /// Events of client `i` so far.
    pub fn events_of(&self, i: usize) -> impl Iterator<Item = &ClientEvent> {
        self.events
            .iter()
            .filter(move |(c, _)| *c == i)
            .map(|(_, e)| e)
    }

    /// Messages client `i` received so far: (id, bytes, event).
    pub fn received(&self, i: usize) -> Vec<&ClientEvent> {
        self.events_of(i)
            .filter(|e| matches!(e, ClientEvent::Received { .. }))
            .collect()
    }

    pub fn count(&self, i: usize, pred: impl Fn(&ClientEvent) -> bool) -> usize {
        self.events_of(i).filter(|e| pred(e)).count()
    }

    /// The fingerprint of the run so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.finish()
    }
}
