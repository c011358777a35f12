//! An in-process mixnet for the async client's tests: in-memory gateways
//! (`client::shell::memory`) joined by real `Mixer`s, one per layer and one
//! exit mixer per gateway. Packets cross every hop at once (the delays the
//! sender chose are not waited for); an exit gateway opens forward
//! deliveries, sends the SURB-ack back `SURB_ACK_HOLD` after the packet
//! arrived (as a real gateway does, whatever the recipient's state), and
//! stores the delivery in its client's mailbox at once. A test may have an exit
//! gateway hold fragments back (stored and acknowledged to their sender, not
//! yet in the mailbox) and release them later.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use client::shell::memory::{MemoryDialer, MemoryGateway, MemoryGatewayControl};
use client::shell::{ClientParts, DataFolder, PartialJournal, StateSealing, StoredSettings};
use client::{Client, ClientOptions};
use mixnode_core::{Action, Mixer, MixerConfig, MixerRole, SphinxCodec};
use protocol::address::DROP_DESTINATION;
use protocol::epoch::Epoch;
use protocol::frame::{ForwardFrame, Frame, SURB_ACK_HOLD, SealedContent};
use protocol::keys::{IdentityKeyPair, NodeId, SphinxKeyPair};
use protocol::packet::Delivery;
use protocol::replay::ReplayFilterConfig;
use protocol::surb::{Surb, SurbId, open_forward_payload, use_surb};
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::{mpsc, watch};
use topology::{NetworkParams, NodeEntry, Topology};

/// Waits (up to `patience`) until every client has a gateway session.
pub async fn wait_connected(clients: &[&Client], patience: Duration) {
    for client in clients {
        tokio::time::timeout(patience, client.wait_connected())
            .await
            .expect("a gateway session in time")
            .expect("a gateway session");
    }
}

/// Gives each client the other's address card.
pub async fn introduce(a: &Client, b: &Client) {
    a.add_contact(&b.card()).await.expect("b is a contact of a");
    b.add_contact(&a.card()).await.expect("a is a contact of b");
}

fn mixer(rng: &mut ChaCha20Rng, role: MixerRole) -> (Mixer, NodeEntry) {
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
    let entry = NodeEntry {
        id,
        address: SocketAddr::from(([127, 0, 0, 1], 9)),
        client_address: Some(SocketAddr::from(([127, 0, 0, 1], 10))),
        sphinx_key: key.public(),
        region: None,
        score: 1.0,
    };
    mixer.install_key(Epoch(0), key);
    mixer.rotate(Epoch(0));
    (mixer, entry)
}

/// Network parameters small enough for fast tests.
pub fn test_params() -> NetworkParams {
    // Epoch 0 starts now, so the test topology is valid (not expired) for
    // the two epochs of `Topology::valid_until`.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    NetworkParams {
        genesis_unix_secs: now,
        mean_delay: Duration::from_millis(20),
        lambda_p: 50.0,
        lambda_l: 2.0,
        ..NetworkParams::default()
    }
}

/// One gateway of the test network, before its client starts.
/// Each registered client's gateway index and key pair, by client key.
type Registered = Arc<std::sync::Mutex<HashMap<[u8; 32], (usize, SphinxKeyPair)>>>;

pub struct GatewaySlot {
    pub id: NodeId,
    pub control: MemoryGatewayControl,
    pub connector: Option<MemoryDialer>,
}

/// Data fragments held back at their exit gateway.
#[derive(Default)]
struct HoldBack {
    /// (gateway index, lowest fragment index held).
    rule: Option<(usize, u16)>,
    /// (gateway index, SURB id, delivery) in arrival order.
    parked: Vec<(usize, SurbId, Vec<u8>)>,
}

/// The running test network.
pub struct TestMixnet {
    pub topology: Arc<Topology>,
    pub gateways: Vec<GatewaySlot>,
    /// Client key → index of its gateway, filled by `register`.
    clients: Registered,
    /// Packets a mixer refused.
    pub refused: Arc<AtomicU64>,
    /// Deliveries for a client key nobody registered (drop cover).
    pub undeliverable: Arc<AtomicU64>,
    hold: Arc<std::sync::Mutex<HoldBack>>,
}

impl TestMixnet {
    /// Three mixes and `gateways` gateways; spawns the router task.
    pub fn start(seed: u64, gateways: usize) -> TestMixnet {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut mixers = HashMap::new();
        let mut layers = Vec::new();
        for _ in 0..3 {
            let (m, entry) = mixer(&mut rng, MixerRole::Mix);
            mixers.insert(entry.id, m);
            layers.push(vec![entry]);
        }
        let (wire_tx, wire_rx) = mpsc::channel::<(NodeId, Vec<u8>)>(4096);
        let mut entries = Vec::new();
        let mut slots = Vec::new();
        for _ in 0..gateways {
            let (m, entry) = mixer(&mut rng, MixerRole::Exit);
            mixers.insert(entry.id, m);
            let (mut gateway, connector) = MemoryGateway::new(1024);
            slots.push(GatewaySlot {
                id: entry.id,
                control: gateway.control(),
                connector: Some(connector),
            });
            entries.push(entry);
            // The entry gateway forwards what its client sends to layer 1.
            let wire = wire_tx.clone();
            tokio::spawn(async move {
                while let Some(packet) = gateway.next_packet().await {
                    if wire.send(packet).await.is_err() {
                        return;
                    }
                }
            });
        }
        let topology = Arc::new(Topology {
            epoch: Epoch(0),
            serial: 1,
            params: test_params(),
            layers,
            gateways: entries,
            authorities: None,
        });
        let net = TestMixnet {
            topology,
            gateways: slots,
            clients: Arc::default(),
            refused: Arc::default(),
            undeliverable: Arc::default(),
            hold: Arc::default(),
        };
        let router = Router {
            mixers,
            gateways: net
                .gateways
                .iter()
                .map(|g| (g.id, g.control.clone()))
                .collect(),
            clients: net.clients.clone(),
            refused: net.refused.clone(),
            undeliverable: net.undeliverable.clone(),
            hold: net.hold.clone(),
            wire: wire_tx,
        };
        tokio::spawn(router.run(wire_rx));
        net
    }

    /// Routes deliveries for `client_key` to gateway `gateway`'s mailbox.
    /// The key pair lets the test see inside sealed bodies (to hold
    /// fragments back); a real gateway cannot.
    /// A client on gateway `gateway` whose state lives in the data folder
    /// `dir` (made on its first start, unlocked on the next ones: a restart),
    /// with the reassembly journal when `journal`.
    pub fn start_from_folder(
        &self,
        gateway: usize,
        seed: u8,
        dir: &Path,
        options: ClientOptions,
        journal: bool,
    ) -> Client {
        let mut rng = ChaCha20Rng::seed_from_u64(u64::from(seed));
        let keys = SphinxKeyPair::generate(&mut rng);
        self.register(&keys, gateway);
        let folder = DataFolder::new(dir);
        let unlocked = if folder.settings_path().exists() {
            folder.unlock(&mut rng, None)
        } else {
            let settings = StoredSettings {
                directory_url: "http://127.0.0.1:9".into(),
                directory_key: self.gateways[gateway].id.to_base58(),
                authorities: Vec::new(),
                authority_threshold: None,
                gateway: self.gateways[gateway].id.to_base58(),
                state_sealing: StateSealing::KeyFile,
                route_regions: Vec::new(),
                mailbox_region: None,
                prekey_rotation_secs: None,
                prekey_grace_secs: None,
            };
            folder.init(&mut rng, &settings, &keys, None)
        }
        .unwrap();
        let (_publish, topology) = watch::channel(self.topology.clone());
        Client::start(ClientParts {
            keys,
            gateway: self.gateways[gateway].id,
            topology,
            connector: self.gateways[gateway].connector.clone().unwrap(),
            options,
            seed: [seed; 32],
            sessions: unlocked.book,
            book_file: Some(unlocked.book_file),
            journal: journal.then(|| PartialJournal::open(dir.join("partial")).unwrap()),
            folder_lock: None,
        })
    }

    pub fn register(&self, keys: &SphinxKeyPair, gateway: usize) {
        self.clients
            .lock()
            .unwrap()
            .insert(keys.public().to_bytes(), (gateway, keys.clone()));
    }

    /// From now on, gateway `gateway` holds back the data fragments of
    /// index `from_index` and above: it acknowledges them to their sender
    /// but keeps them out of its client's mailbox until `release_held`.
    pub fn hold_fragments(&self, gateway: usize, from_index: u16) {
        self.hold.lock().unwrap().rule = Some((gateway, from_index));
    }

    /// Fragments held back so far.
    pub fn held(&self) -> usize {
        self.hold.lock().unwrap().parked.len()
    }

    /// Stops holding fragments back and stores the held ones in their
    /// gateways' mailboxes, in arrival order.
    pub fn release_held(&self) {
        let parked = {
            let mut hold = self.hold.lock().unwrap();
            hold.rule = None;
            std::mem::take(&mut hold.parked)
        };
        for (gateway, surb_id, payload) in parked {
            self.gateways[gateway].control.deliver(surb_id, payload);
        }
    }
}

struct Router {
    mixers: HashMap<NodeId, Mixer>,
    gateways: HashMap<NodeId, MemoryGatewayControl>,
    clients: Registered,
    refused: Arc<AtomicU64>,
    undeliverable: Arc<AtomicU64>,
    hold: Arc<std::sync::Mutex<HoldBack>>,
    wire: mpsc::Sender<(NodeId, Vec<u8>)>,
}

impl Router {
    async fn run(self, mut wire: mpsc::Receiver<(NodeId, Vec<u8>)>) {
        let start = tokio::time::Instant::now();
        while let Some((mut node, mut packet)) = wire.recv().await {
            let now = Timestamp::from_nanos(start.elapsed().as_nanos() as u64 + 1_000_000_000);
            loop {
                let Some(mixer) = self.mixers.get(&node) else {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                match mixer.handle_packet(now, &packet) {
                    Ok(Action::Forward(t)) => {
                        node = t.next_hop;
                        packet = t.packet;
                    }
                    Ok(Action::Deliver(d)) => {
                        self.deliver(node, d).await;
                        break;
                    }
                    Ok(Action::LoopReturned) => break,
                    Err(_) => {
                        self.refused.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }

    /// What the exit gateway `gateway` does with a final-hop packet.
    async fn deliver(&self, gateway: NodeId, d: Delivery) {
        let forward = if d.surb_id.is_forward() {
            match open_forward_payload(&d.payload).and_then(|f| Frame::decode(&f)) {
                Ok(Frame::Forward(frame)) => Some(frame),
                // A recall, as a gateway that found nothing left to delete:
                // its notice is held and acked like a message.
                Ok(Frame::Recall(recall)) => Some(ForwardFrame {
                    lifetime: protocol::frame::LifetimeBucket::Unset,
                    recall_tag: protocol::recall::RecallTag([0; 32]),
                    surb_ack: recall.surb_ack,
                    sealed: recall.sealed,
                }),
                _ => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        } else {
            None
        };
        let known = self.clients.lock().unwrap().get(&d.destination).cloned();
        // Every forward packet is acknowledged once held (drop cover too),
        // at the fixed instant after its arrival.
        let ack = |frame: &ForwardFrame| {
            let ack_frame = Frame::Ack.encode().unwrap();
            if let Ok(p) = use_surb(&Surb(frame.surb_ack.clone()), &ack_frame) {
                let wire = self.wire.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(SURB_ACK_HOLD).await;
                    let _ = wire.try_send((p.first_hop, p.bytes));
                });
            }
        };
        let (Some((index, keys)), Some(control)) = (known, self.gateways.get(&gateway)) else {
            if d.destination == DROP_DESTINATION
                && let Some(frame) = &forward
            {
                ack(frame);
            } else {
                self.undeliverable.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        let mut fragment_index = None;
        let handed = match &forward {
            Some(frame) => {
                ack(frame);
                if let Ok(SealedContent::Data { fragment, .. }) =
                    ForwardFrame::open(keys.secret(), frame.sealed.as_slice())
                {
                    fragment_index = Some(fragment.id.index);
                }
                frame.delivery_payload()
            }
            None => d.payload,
        };
        if let Some(i) = fragment_index {
            let mut hold = self.hold.lock().unwrap();
            if matches!(hold.rule, Some((g, from)) if g == index && i >= from) {
                hold.parked.push((index, d.surb_id, handed));
                return;
            }
        }
        control.deliver(d.surb_id, handed);
    }
}
