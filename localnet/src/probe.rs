//! A stand-in gateway for tests and load runs against real mix nodes.
//!
//! It registers with the directory like a gateway, injects packets at
//! layer 1 and sinks what layer 3 delivers, unwrapping the final hop with a
//! real exit `Mixer`. Tests use it before the real gateway is involved, and
//! the load tool uses it to drive one node at a time.

// A test and benchmark harness: failing loudly is its job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use directory::DirectoryClient;
use mixnode_core::{Action, Mixer, MixerConfig, MixerRole, SphinxCodec};
use protocol::epoch::Epoch;
use protocol::fragment::{MessageId, fragment_message};
use protocol::frame::Frame;
use protocol::keys::{IdentityKeyPair, NodeId, SphinxKeyPair};
use protocol::packet::{PACKET_SIZE, RouteHop, build_packet};
use protocol::surb::open_forward_payload;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::mpsc;
use topology::{AuthoritySet, EpochKey, NodeDescriptor, Role, Topology};
use transport::{Endpoint, LinkConfig, PeerId, Received};

/// The stand-in gateway.
pub struct ProbeGateway {
    /// Its identity (registered as a gateway).
    pub identity: IdentityKeyPair,
    /// Its Sphinx key, the same for every epoch.
    pub sphinx: SphinxKeyPair,
    /// Its pinned QUIC endpoint.
    pub endpoint: Endpoint,
    /// Packets that arrived.
    pub incoming: mpsc::Receiver<Received>,
    /// The exit mixer that unwraps the final hop.
    pub exit: Mixer,
    /// Its directory client.
    pub directory: DirectoryClient,
    /// Randomness for packets.
    pub rng: ChaCha20Rng,
}

/// Awaits `fut` for at most `secs` seconds, panicking with `what` otherwise.
pub async fn within<T>(what: &str, secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

impl ProbeGateway {
    /// Registers a gateway with the directory and waits until the topology lists it.
    pub async fn join(directory_url: &str, directory_key: NodeId, seed: u64) -> Self {
        Self::join_authorities(AuthoritySet::single(directory_key, directory_url), seed).await
    }

    /// Registers a gateway with every authority of `authorities` and waits
    /// until their consensus lists it.
    pub async fn join_authorities(authorities: AuthoritySet, seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let identity = IdentityKeyPair::generate(&mut rng);
        let sphinx = SphinxKeyPair::generate(&mut rng);
        let directory = DirectoryClient::with_authorities(authorities, None).unwrap();
        let topology = within("first topology", 20, directory.topology())
            .await
            .unwrap();
        let mut config = LinkConfig::new("127.0.0.1:0".parse().unwrap(), PACKET_SIZE);
        config.queue_capacity = 65_536;
        config.incoming_capacity = 65_536;
        let pins: Vec<PeerId> = topology
            .all_peer_ids()
            .into_iter()
            .map(|i| PeerId(i.0))
            .collect();
        let (endpoint, incoming) = Endpoint::bind(identity.signing_key(), pins, config).unwrap();
        let exit = Mixer::new(
            identity.node_id(),
            SphinxCodec,
            MixerConfig {
                role: MixerRole::Exit,
                ..MixerConfig::default()
            },
        );
        let mut gw = ProbeGateway {
            identity,
            sphinx,
            endpoint,
            incoming,
            exit,
            directory,
            rng,
        };
        gw.register(topology.epoch).await;
        gw
    }

    /// Registers for `epoch` (and the next) and waits until listed.
    pub async fn register(&mut self, epoch: Epoch) {
        for e in [epoch, epoch.next()] {
            self.exit.install_key(e, self.sphinx.clone());
        }
        self.exit.rotate(epoch);
        let descriptor = NodeDescriptor {
            id: self.identity.node_id(),
            role: Role::Gateway,
            address: self.endpoint.local_addr(),
            client_address: None,
            sphinx_keys: [epoch, epoch.next()]
                .into_iter()
                .map(|e| EpochKey {
                    epoch: e,
                    key: self.sphinx.public(),
                })
                .collect(),
            region: None,
            metrics_url: None,
            issued_at: 1,
        };
        let signed = descriptor.sign(&self.identity).unwrap();
        self.directory.register(&signed).await.unwrap();
        let me = self.identity.node_id();
        within("gateway listed in the topology", 20, async {
            loop {
                if let Ok(t) = self.directory.refresh().await
                    && t.entry(&me).is_some()
                {
                    let pins: Vec<PeerId> =
                        t.all_peer_ids().into_iter().map(|i| PeerId(i.0)).collect();
                    self.endpoint.set_pins(pins);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }

    /// The current topology.
    pub async fn topology(&self) -> Topology {
        (*self.directory.topology().await.unwrap()).clone()
    }

    /// This gateway as a route hop.
    pub fn hop(&self) -> RouteHop {
        RouteHop {
            id: self.identity.node_id(),
            sphinx_key: self.sphinx.public(),
        }
    }

    /// A packet over `mixes` then this gateway, tagged with `tag`, with the given per-mix delays.
    pub fn packet(&mut self, mixes: &[RouteHop], delays: &[Duration], tag: u8) -> Vec<u8> {
        let mut route = mixes.to_vec();
        route.push(self.hop());
        let mut all = delays.to_vec();
        all.push(Duration::ZERO);
        let fragment = fragment_message(MessageId([tag; 16]), &[tag])
            .unwrap()
            .remove(0);
        let frame = Frame::Reply {
            surb_ack: None,
            lifetime: None,
            fragment,
        }
        .encode()
        .unwrap();
        // Addressed to a client of this gateway (not to the gateway itself, which would be loop cover).
        let client = sphinx_packet::route::DestinationAddressBytes::from_bytes([7; 32]);
        build_packet(&mut self.rng, &route, &all, client, [0; 16], &frame)
            .unwrap()
            .bytes
    }

    /// Sends raw bytes to a node of `topology`.
    pub fn send(&self, topology: &Topology, to: NodeId, packet: Vec<u8>) {
        let entry = topology.entry(&to).expect("node in topology");
        self.endpoint
            .send(PeerId(to.0), entry.address, packet)
            .unwrap();
    }

    /// Waits for the next packet delivered to this gateway and returns its tag.
    pub async fn receive_tag(&mut self) -> u8 {
        loop {
            let received = self.incoming.recv().await.expect("endpoint open");
            match self.exit.handle_packet(Timestamp::ZERO, &received.packet) {
                Ok(Action::Deliver(d)) => {
                    let frame = Frame::decode(&open_forward_payload(&d.payload).unwrap()).unwrap();
                    if let Frame::Reply { fragment, .. } = frame {
                        return fragment.data[0];
                    }
                }
                // Mix nodes' loop cover never ends here; anything else is a test failure.
                other => panic!("unexpected at the sink: {other:?}"),
            }
        }
    }
}

/// Reads a metric's value (sum over label sets matching `needle`) from a `/metrics` page.
pub async fn metric(url: &str, needle: &str) -> f64 {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    metric_in(&text, needle)
}

/// The sum of the samples of a `/metrics` page whose line starts with `needle`.
pub fn metric_in(page: &str, needle: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The mix layers of the topology as route hops.
pub fn layers(topology: &Topology) -> Vec<Vec<RouteHop>> {
    topology
        .layers
        .iter()
        .map(|l| l.iter().map(|n| n.hop()).collect())
        .collect()
}

/// Waits until every mix node of `net` works on a topology of `nodes` nodes.
pub async fn wait_until_nodes_see(net: &crate::LocalNet, nodes: usize) {
    within("mix nodes see the new topology", 20, async {
        loop {
            let mut all = true;
            for m in &net.mixnodes {
                if metric(&m.metrics_url, "mixnode_topology_nodes").await < nodes as f64 {
                    all = false;
                }
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// Sends one packet along each of the 8 paths of a 3 × 2 network and waits
/// for all of them, so that every link is open before a timed measurement.
pub async fn warm_up_links(gw: &mut ProbeGateway, topology: &Topology) {
    let l = layers(topology);
    let d = [Duration::from_millis(1); 3];
    for i in 0..8usize {
        let route = [l[0][i % 2], l[1][(i / 2) % 2], l[2][(i / 4) % 2]];
        let p = gw.packet(&route, &d, 250);
        gw.send(topology, route[0].id, p);
    }
    for _ in 0..8 {
        assert_eq!(within("warm-up delivery", 20, gw.receive_tag()).await, 250);
    }
}
