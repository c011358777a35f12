//! Route health: with one mix node of a layer dropping everything, the core
//! learns from its own acks to route around it, every message arrives with
//! the default retransmissions, and once the node heals and its failures are
//! forgotten it is used again. Driven in virtual time over an in-process
//! network of real `Mixer`s, three layers of two.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use client_core::{ClientConfig, ClientCore, ClientEvent, RouteSource};
use mixnode_core::{Action, Mixer, MixerConfig, MixerRole, SphinxCodec};
use protocol::epoch::Epoch;
use protocol::fragment::MessageId;
use protocol::frame::Frame;
use protocol::keys::{IdentityKeyPair, NodeId, SphinxKeyPair};
use protocol::packet::Delivery;
use protocol::packet::RouteHop;
use protocol::replay::ReplayFilterConfig;
use protocol::surb::{Surb, open_forward_payload, use_surb};
use protocol::time::Timestamp;
use rand::{CryptoRng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

const A: usize = 0;
const B: usize = 1;
/// How long a node's failures are remembered in these tests.
const MEMORY: Duration = Duration::from_secs(20);

/// Routes with one random mix per layer, like `topology::RouteSelector`.
#[derive(Clone)]
struct Layers {
    layers: Vec<Vec<RouteHop>>,
    gateways: Vec<RouteHop>,
}

impl RouteSource for Layers {
    fn route_to(&self, rng: &mut dyn CryptoRng, exit_gateway: NodeId) -> Option<Vec<RouteHop>> {
        let exit = self.gateways.iter().find(|g| g.id == exit_gateway)?;
        let mut route = Vec::new();
        for layer in &self.layers {
            route.push(*layer.get(rng.random_range(0..layer.len()))?);
        }
        route.push(*exit);
        Some(route)
    }

    fn random_gateway(&self, rng: &mut dyn CryptoRng) -> Option<NodeId> {
        let i = rng.random_range(0..self.gateways.len());
        self.gateways.get(i).map(|g| g.id)
    }
}

fn config() -> ClientConfig {
    // Fast rates and timers; retransmissions, candidates and threshold stay
    // at their defaults.
    ClientConfig {
        send_rate: 20.0,
        loop_cover_rate: 2.0,
        mean_hop_delay: Duration::from_millis(20),
        ack_margin: Duration::from_millis(500),
        node_failure_memory: MEMORY,
        ..ClientConfig::default()
    }
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

/// A packet on a link: arrival instant, sequence number (ties keep send
/// order), the node it arrives at, its bytes.
type InFlight = (Timestamp, u64, NodeId, Vec<u8>);

/// Three layers of two mixes, two gateways, client A on the first and B on
/// the second. A dead node takes packets and does nothing with them.
struct Net {
    now: Timestamp,
    rng: ChaCha20Rng,
    topology: Layers,
    clients: Vec<ClientCore<Layers>>,
    events: Vec<(usize, ClientEvent)>,
    dead: HashSet<NodeId>,
    /// Clients whose gateway keeps what comes for them (and acks data
    /// fragments) but who never read it.
    offline: HashSet<usize>,
    /// Every packet that reached a mix node: (instant, node).
    arrivals: Vec<(Timestamp, NodeId)>,
    mixers: HashMap<NodeId, Mixer>,
    client_of_key: HashMap<[u8; 32], usize>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
}

impl Net {
    fn new(seed: u64, config: ClientConfig) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut mixers = HashMap::new();
        let mut layers = Vec::new();
        for _ in 0..3 {
            let mut layer = Vec::new();
            for _ in 0..2 {
                let (m, hop) = mixer(&mut rng, MixerRole::Mix);
                mixers.insert(hop.id, m);
                layer.push(hop);
            }
            layers.push(layer);
        }
        let mut gateways = Vec::new();
        for _ in 0..2 {
            let (m, hop) = mixer(&mut rng, MixerRole::Exit);
            mixers.insert(hop.id, m);
            gateways.push(hop);
        }
        let topology = Layers { layers, gateways };
        let now = Timestamp::from_millis(1_000);
        let mut clients = Vec::new();
        let mut client_of_key = HashMap::new();
        for (i, g) in [0, 1].into_iter().enumerate() {
            let keys = SphinxKeyPair::generate(&mut rng);
            let gateway = topology.gateways[g].id;
            let core = ClientCore::new(config, keys, gateway, topology.clone(), now, &mut rng);
            client_of_key.insert(core.address().client_key, i);
            clients.push(core);
        }
        Net {
            now,
            rng,
            topology,
            clients,
            events: Vec::new(),
            dead: HashSet::new(),
            offline: HashSet::new(),
            arrivals: Vec::new(),
            mixers,
            client_of_key,
            in_flight: BinaryHeap::new(),
            seq: 0,
        }
    }

    fn schedule(&mut self, at: Timestamp, to: NodeId, packet: Vec<u8>) {
        self.seq += 1;
        self.in_flight.push(Reverse((at, self.seq, to, packet)));
    }

    /// Runs until virtual time `until`.
    fn run_to(&mut self, until: Timestamp) {
        loop {
            let next_packet = self.in_flight.peek().map(|Reverse((t, ..))| *t);
            let next_timer = self.clients.iter().filter_map(|c| c.poll_timeout()).min();
            let Some(next) = next_packet.into_iter().chain(next_timer).min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            self.step();
        }
        self.now = self.now.max(until);
    }

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
                // The entry gateway forwards it to layer 1 at once.
                self.schedule(self.now, packet.first_hop, packet.bytes);
            }
            self.drain_events(i);
        }
    }

    fn drain_events(&mut self, i: usize) {
        while let Some(e) = self.clients[i].poll_event() {
            self.events.push((i, e));
        }
    }

    fn hop(&mut self, node: NodeId, packet: &[u8]) {
        let is_gateway = self.topology.gateways.iter().any(|g| g.id == node);
        if !is_gateway {
            self.arrivals.push((self.now, node));
        }
        if self.dead.contains(&node) {
            return;
        }
        match self.mixers[&node].handle_packet(self.now, packet) {
            Ok(Action::Forward(t)) => self.schedule(t.send_at, t.next_hop, t.packet),
            Ok(Action::Deliver(d)) => self.gateway_delivers(d),
            Ok(Action::LoopReturned) => {}
            Err(e) => panic!("a mixer refused a packet: {e:?}"),
        }
    }

    /// What an exit gateway does: ack every forward packet through its
    /// SURB-ack (drop cover too), hand the sealed body to its client.
    fn gateway_delivers(&mut self, d: Delivery) {
        let mut handed = d.payload;
        if d.surb_id.is_forward() {
            let Ok(Frame::Forward(frame)) =
                open_forward_payload(&handed).and_then(|f| Frame::decode(&f))
            else {
                panic!("a forward packet without a forward frame");
            };
            let ack = Frame::Ack.encode().unwrap();
            let packet = use_surb(&Surb(frame.surb_ack.clone()), &ack).unwrap();
            self.schedule(self.now, packet.first_hop, packet.bytes);
            handed = frame.delivery_payload();
        }
        let Some(&client) = self.client_of_key.get(&d.destination) else {
            return; // drop cover
        };
        if self.offline.contains(&client) {
            return;
        }
        self.clients[client].handle_delivery(self.now, d.surb_id, &handed);
        self.drain_events(client);
    }

    /// The share of the packets reaching `node`'s layer that went to `node`,
    /// between `from` and `to`, and how many reached the layer.
    fn share(&self, node: NodeId, from: Timestamp, to: Timestamp) -> (f64, usize) {
        let layer = self
            .topology
            .layers
            .iter()
            .find(|l| l.iter().any(|h| h.id == node))
            .unwrap();
        let in_window = |t: &Timestamp| *t >= from && *t < to;
        let total = self
            .arrivals
            .iter()
            .filter(|(t, n)| in_window(t) && layer.iter().any(|h| h.id == *n))
            .count();
        let through = self
            .arrivals
            .iter()
            .filter(|(t, n)| in_window(t) && *n == node)
            .count();
        (through as f64 / total.max(1) as f64, total)
    }

    fn count(&self, i: usize, pred: impl Fn(&ClientEvent) -> bool) -> usize {
        self.events
            .iter()
            .filter(|(c, e)| *c == i && pred(e))
            .count()
    }

    fn delivered(&self, i: usize, id: MessageId) -> bool {
        self.count(
            i,
            |e| matches!(e, ClientEvent::Delivered { id: d } if *d == id),
        ) == 1
    }

    fn received(&self, i: usize, id: MessageId) -> usize {
        self.count(
            i,
            |e| matches!(e, ClientEvent::Received { id: r, .. } if *r == id),
        )
    }

    fn at(&self, secs: u64) -> Timestamp {
        Timestamp::from_millis(1_000 + secs * 1_000)
    }

    /// A and B each send a message to the other every `every`, from now
    /// until `until`; returns the ids (sender, id).
    fn converse(&mut self, until: Timestamp, every: Duration) -> Vec<(usize, MessageId)> {
        let mut ids = Vec::new();
        while self.now < until {
            for (from, to) in [(A, B), (B, A)] {
                let to = self.clients[to].address();
                let now = self.now;
                // Every fourth message takes four fragments.
                let len = if ids.len() % 8 < 2 { 5000 } else { 40 };
                let mut bytes = format!("{from} at {now:?} ").into_bytes();
                bytes.resize(len, b'.');
                let id = self.clients[from]
                    .send(now, &to, &bytes, 0, &mut self.rng)
                    .unwrap();
                ids.push((from, id));
            }
            let next = self.now.saturating_add(every);
            self.run_to(next);
        }
        ids
    }

    fn assert_all_arrived(&mut self, ids: &[(usize, MessageId)]) {
        // Time for the last retransmissions.
        let end = self.now.saturating_add(Duration::from_secs(15));
        self.run_to(end);
        for (from, id) in ids {
            assert!(self.delivered(*from, *id), "message {id:?} of {from}");
            assert_eq!(self.received(1 - from, *id), 1, "received once");
        }
        for c in [A, B] {
            assert_eq!(self.clients[c].stats().send_failures, 0);
        }
    }
}

#[test]
fn a_dead_mix_node_is_avoided_after_a_few_failures_and_used_again_once_healed() {
    let mut net = Net::new(7, config());
    let dead = net.topology.layers[1][0].id;
    net.dead.insert(dead);

    // While the node is dead: every message arrives, with the default
    // retransmissions (5), although at first a copy and its ack cross the
    // dead node three times in four.
    assert_eq!(net.clients[A].config().max_retransmissions, 5);
    let ids = net.converse(net.at(12), Duration::from_millis(250));
    let (before, n) = net.share(dead, net.at(0), net.at(1));
    assert!(
        before > 0.3 && n > 20,
        "before learning, half of layer 2's packets went to it: {before} of {n}"
    );
    // A few failures later the clients route around it. What still reaches
    // it is the fallback: all 8 routes drawn crossed it (1 in 256).
    let (learned, n) = net.share(dead, net.at(3), net.at(12));
    assert!(
        learned < 0.02 && n > 300,
        "after a few failures hardly any: {learned} of {n}"
    );
    for c in [A, B] {
        let core = &net.clients[c];
        assert_eq!(core.node_health().suspects(net.now), vec![dead]);
        assert!(core.stats().routes_avoiding_suspects > 50);
        assert!(core.stats().route_failures > 0);
    }

    // The node heals. Nothing tells the clients (they do not probe): its
    // failures are forgotten `MEMORY` after the last one, then it is used
    // again, works, and stays in use.
    net.dead.clear();
    let ids2 = net.converse(net.at(45), Duration::from_millis(250));
    let (after, n) = net.share(dead, net.at(35), net.at(45));
    assert!(
        after > 0.35 && n > 300,
        "used again once healed and forgotten: {after} of {n}"
    );
    for c in [A, B] {
        assert!(net.clients[c].node_health().suspects(net.now).is_empty());
    }
    net.assert_all_arrived(&ids);
    net.assert_all_arrived(&ids2);
}

#[test]
fn without_avoidance_the_dead_node_keeps_its_share_and_messages_fail() {
    // The same network with route choice left uniform (one candidate): the
    // dead node keeps half of its layer's packets, and with 5
    // retransmissions some messages run out (0.75^6 ≈ 18 % each).
    let mut net = Net::new(
        7,
        ClientConfig {
            route_candidates: 1,
            ..config()
        },
    );
    let dead = net.topology.layers[1][0].id;
    net.dead.insert(dead);
    let ids = net.converse(net.at(12), Duration::from_millis(250));
    let end = net.now.saturating_add(Duration::from_secs(15));
    net.run_to(end);
    let (share, n) = net.share(dead, net.at(4), net.at(12));
    assert!(share > 0.4 && n > 300, "{share} of {n}");
    let failed = ids
        .iter()
        .filter(|(from, id)| !net.delivered(*from, *id))
        .count();
    assert!(failed > 5, "{failed} of {} failed", ids.len());
    assert!(net.clients[A].stats().routes_through_suspects > 50);
    assert_eq!(net.clients[A].stats().routes_avoiding_suspects, 0);
}

#[test]
fn an_unacked_reply_blames_no_node() {
    // A reply's forward half is a SURB the other client chose, and its ack
    // waits for that client: a reply nobody acks says nothing about the
    // replier's nodes.
    let mut net = Net::new(
        8,
        ClientConfig {
            reply_ack_timeout: Duration::from_secs(2),
            ..config()
        },
    );
    let to_b = net.clients[B].address();
    let now = net.now;
    net.clients[A]
        .send(now, &to_b, b"answer me", 3, &mut net.rng)
        .unwrap();
    let until = net.at(5);
    net.run_to(until);
    let mut handle = net
        .events
        .iter()
        .find_map(|(c, e)| match e {
            ClientEvent::Received { reply, .. } if *c == B => reply.clone(),
            _ => None,
        })
        .expect("B got the message with its SURBs");
    net.offline.insert(A);
    let now = net.now;
    let id = net.clients[B]
        .reply(now, &mut handle, b"unread", &mut net.rng)
        .unwrap();
    let until = net.at(20);
    net.run_to(until);
    assert_eq!(
        net.count(
            B,
            |e| matches!(e, ClientEvent::SendFailed { id: f, .. } if *f == id)
        ),
        1,
        "the reply ran out of SURBs"
    );
    let b = &net.clients[B];
    assert!(b.stats().retransmissions >= 2);
    assert_eq!(b.stats().route_failures, 0);
    assert_eq!(b.node_health().tracked(), 0);
}
