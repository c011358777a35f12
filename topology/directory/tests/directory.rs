//! The directory service and its client, in-process on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use directory::{DirectoryClient, DirectoryClientError};
use directory::{DirectoryConfig, DirectoryServer, WallClock};
use protocol::{Epoch, IdentityKeyPair, SphinxKeyPair};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use topology::{
    EpochKey, NetworkParams, NodeDescriptor, Role, RouteSelector, SignedDescriptor, SignedTopology,
    TopologyError,
};

const GENESIS: u64 = 1_000_000;
const EPOCH_SECS: u64 = 60;

/// A wall clock the test moves by hand, in unix seconds.
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn at_epoch(epoch: u64) -> Self {
        TestClock(Arc::new(AtomicU64::new(GENESIS + epoch * EPOCH_SECS + 1)))
    }

    fn wall(&self) -> WallClock {
        let secs = self.0.clone();
        Arc::new(move || UNIX_EPOCH + Duration::from_secs(secs.load(Ordering::SeqCst)))
    }

    fn set_epoch(&self, epoch: u64) {
        self.0
            .store(GENESIS + epoch * EPOCH_SECS + 1, Ordering::SeqCst);
    }
}

fn config(dir: &Path) -> DirectoryConfig {
    DirectoryConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        key_file: dir.join("directory.key"),
        db_path: dir.join("directory.redb"),
        audit_log: dir.join("audit.jsonl"),
        max_absent_epochs: 2,
        max_nodes: 100,
        allowed_nodes: Vec::new(),
        authorities: Vec::new(),
        threshold: None,
        round_secs: 300,
        network: NetworkParams {
            genesis_unix_secs: GENESIS,
            epoch_length: Duration::from_secs(EPOCH_SECS),
            ..NetworkParams::default()
        },
        rate_profile: None,
    }
}

fn descriptor(rng: &mut ChaCha20Rng, role: Role, port: u16, epochs: &[u64]) -> SignedDescriptor {
    let identity = IdentityKeyPair::generate(rng);
    NodeDescriptor {
        id: identity.node_id(),
        role,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        client_address: None,
        sphinx_keys: epochs
            .iter()
            .map(|&e| EpochKey {
                epoch: Epoch(e),
                key: SphinxKeyPair::generate(rng).public(),
            })
            .collect(),
        region: Some("eu".into()),
        metrics_url: Some(format!("http://127.0.0.1:{}/metrics", port + 1000)),
        issued_at: GENESIS + 10 * EPOCH_SECS,
    }
    .sign(&identity)
    .unwrap()
}

/// Registers 6 mix nodes and 2 gateways with keys for epochs 10 and 11.
async fn register_network(
    client: &DirectoryClient,
    rng: &mut ChaCha20Rng,
) -> Vec<SignedDescriptor> {
    let mut all = Vec::new();
    for i in 0..8u16 {
        let role = if i < 6 { Role::Mix } else { Role::Gateway };
        let d = descriptor(rng, role, 4000 + i, &[10, 11]);
        client.register(&d).await.unwrap();
        all.push(d);
    }
    all
}

fn cache_in(dir: &Path) -> Option<PathBuf> {
    Some(dir.join("topology.json"))
}

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("test took too long")
}

#[tokio::test]
async fn registered_nodes_make_a_verified_topology_of_three_layers_of_two() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let key = IdentityKeyPair::generate(&mut rng);
        let clock = TestClock::at_epoch(10);
        let server = DirectoryServer::start_with_clock(&config(dir.path()), key, clock.wall())
            .await
            .unwrap();
        let client =
            DirectoryClient::new(&server.url(), server.id(), cache_in(dir.path())).unwrap();
        let registered = register_network(&client, &mut rng).await;

        let t = client.refresh().await.unwrap();
        assert_eq!(t.epoch, Epoch(10));
        assert_eq!(
            t.layers.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        assert_eq!(t.gateways.len(), 2);
        for signed in &registered {
            let d = signed.verify().unwrap();
            let entry = t.entry(&d.id).expect("every registered node is listed");
            assert_eq!(entry.sphinx_key, d.sphinx_key(Epoch(10)).unwrap());
            assert_eq!(entry.address, d.address);
            assert_eq!(t.is_gateway(&d.id), d.role == Role::Gateway);
        }
        assert_eq!(t.all_peer_ids().len(), 8);
        let exit = t.gateways[0].id;
        let route = RouteSelector::new(&t)
            .regions(["eu".to_string()])
            .select(&mut rng, &exit)
            .unwrap();
        assert_eq!(route.len(), 4);

        // The same epoch by number, the next one ahead of time, nothing further.
        assert_eq!(client.fetch_epoch(Epoch(10)).await.unwrap(), *t);
        let next = client.fetch_epoch(Epoch(11)).await.unwrap();
        assert_eq!(next.epoch, Epoch(11));
        assert_eq!(
            next.layers.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        match client.fetch_epoch(Epoch(12)).await {
            Err(DirectoryClientError::Status { status: 404, .. }) => {}
            other => panic!("expected 404, got {other:?}"),
        }
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_joining_node_makes_a_new_revision_and_nobody_moves() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let key = IdentityKeyPair::generate(&mut rng);
        let clock = TestClock::at_epoch(10);
        let server = DirectoryServer::start_with_clock(&config(dir.path()), key, clock.wall())
            .await
            .unwrap();
        let client = DirectoryClient::new(&server.url(), server.id(), None).unwrap();
        register_network(&client, &mut rng).await;
        let first = client.refresh().await.unwrap();
        assert_eq!(first.serial, 0);
        assert_eq!(
            client.refresh().await.unwrap().serial,
            0,
            "nothing changed, same revision"
        );
        let newcomer = descriptor(&mut rng, Role::Mix, 5000, &[10, 11]);
        client.register(&newcomer).await.unwrap();
        let second = client.refresh().await.unwrap();
        assert_eq!(second.serial, 1);
        for entry in first.layers.iter().flatten() {
            assert_eq!(second.layer_of(&entry.id), first.layer_of(&entry.id));
        }
        // Three epochs later, with no new descriptor, everyone has dropped out.
        clock.set_epoch(13);
        let later = client.refresh().await.unwrap();
        assert_eq!(later.epoch, Epoch(13));
        assert!(later.all_peer_ids().is_empty());
        // A descriptor whose keys are all in the past is refused.
        let stale = descriptor(&mut rng, Role::Mix, 5001, &[10, 11]);
        match client.register(&stale).await {
            Err(DirectoryClientError::Status { status: 422, .. }) => {}
            other => panic!("expected 422, got {other:?}"),
        }
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bad_descriptor_signature_is_refused_with_4xx() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let key = IdentityKeyPair::generate(&mut rng);
        let clock = TestClock::at_epoch(10);
        let server = DirectoryServer::start_with_clock(&config(dir.path()), key, clock.wall())
            .await
            .unwrap();
        let client = DirectoryClient::new(&server.url(), server.id(), None).unwrap();

        let mut tampered = descriptor(&mut rng, Role::Mix, 4000, &[10, 11]);
        tampered.0.body = tampered.0.body.replace("4000", "4444");
        match client.register(&tampered).await {
            Err(DirectoryClientError::Status {
                status: 403,
                message,
            }) => {
                assert!(message.contains("bad signature"), "{message}")
            }
            other => panic!("expected 403, got {other:?}"),
        }
        let mut garbled = descriptor(&mut rng, Role::Mix, 4001, &[10, 11]);
        garbled.0.body = "{\"id\":".into();
        match client.register(&garbled).await {
            Err(DirectoryClientError::Status { status: 400, .. }) => {}
            other => panic!("expected 400, got {other:?}"),
        }
        let raw = reqwest::Client::new();
        let response = raw
            .post(format!("{}/v1/descriptors", server.url()))
            .body(vec![0xffu8; 64 * 1024])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
        let t = client.refresh().await.unwrap();
        assert!(t.all_peer_ids().is_empty(), "nothing refused was listed");
        let metrics = reqwest::get(format!("{}/metrics", server.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in [
            "directory_descriptors_refused_total{reason=\"bad_signature\"} 1",
            "directory_descriptors_refused_total{reason=\"malformed\"} 1",
            "directory_topologies_served_total 1",
            "directory_epoch 10",
        ] {
            assert!(metrics.contains(line), "{line} missing from\n{metrics}");
        }
        server.stop().await.unwrap();
    })
    .await;
}

/// Serves `body` at `/v1/topology` on loopback: a directory that lies.
async fn serve_fixed(body: String) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/v1/topology",
        axum::routing::get(move || async move { body }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test]
async fn tampered_topology_is_refused_and_counted() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let key = IdentityKeyPair::generate(&mut rng);
        let clock = TestClock::at_epoch(10);
        let server = DirectoryServer::start_with_clock(&config(dir.path()), key, clock.wall())
            .await
            .unwrap();
        let pinned = server.id();
        let client = DirectoryClient::new(&server.url(), pinned, cache_in(dir.path())).unwrap();
        register_network(&client, &mut rng).await;
        let good = client.refresh().await.unwrap();
        let signed = reqwest::get(format!("{}/v1/topology", server.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        server.stop().await.unwrap();

        // The same document with one address changed.
        let mut tampered = SignedTopology::from_json(&signed).unwrap();
        tampered.body = tampered.body.replacen("127.0.0.1:400", "10.9.9.9:400", 1);
        assert_ne!(tampered.to_json(), signed);
        let (url, liar) = serve_fixed(tampered.to_json()).await;
        let victim = DirectoryClient::new(&url, pinned, cache_in(dir.path())).unwrap();
        match victim.refresh().await {
            Err(DirectoryClientError::Refused(TopologyError::BadSignature { .. })) => {}
            other => panic!("expected a bad signature, got {other:?}"),
        }
        assert_eq!(victim.bad_signatures(), 1);
        // It keeps running on the last good topology.
        assert_eq!(victim.topology().await.unwrap(), good);
        assert_eq!(victim.bad_signatures(), 2);
        liar.abort();

        // A well-formed document signed by another key is refused the same way.
        let impostor = IdentityKeyPair::generate(&mut rng);
        let forged = good.sign(&impostor).unwrap();
        let (url, liar) = serve_fixed(forged.to_json()).await;
        let victim = DirectoryClient::new(&url, pinned, None).unwrap();
        assert!(matches!(
            victim.topology().await,
            Err(DirectoryClientError::NoTopology)
        ));
        assert_eq!(victim.bad_signatures(), 1);
        liar.abort();
        // Garbage is refused as malformed, not counted as a bad signature.
        let (url, liar) = serve_fixed("not a topology".into()).await;
        let victim = DirectoryClient::new(&url, pinned, None).unwrap();
        assert!(matches!(
            victim.refresh().await,
            Err(DirectoryClientError::Refused(
                TopologyError::Malformed { .. }
            ))
        ));
        assert_eq!(victim.bad_signatures(), 0);
        liar.abort();
    })
    .await;
}

#[tokio::test]
async fn stopped_directory_leaves_clients_on_the_cached_topology() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let key = IdentityKeyPair::generate(&mut rng);
        let clock = TestClock::at_epoch(10);
        let server = DirectoryServer::start_with_clock(&config(dir.path()), key, clock.wall())
            .await
            .unwrap();
        let (url, pinned) = (server.url(), server.id());
        let client = DirectoryClient::new(&url, pinned, cache_in(dir.path())).unwrap();
        register_network(&client, &mut rng).await;
        let fetched = client.topology().await.unwrap();
        server.stop().await.unwrap();

        assert!(matches!(
            client.refresh().await,
            Err(DirectoryClientError::Unreachable(_))
        ));
        assert_eq!(client.topology().await.unwrap(), fetched);
        // A client restarted while the directory is down reads the cache from disk.
        let restarted = DirectoryClient::new(&url, pinned, cache_in(dir.path())).unwrap();
        assert_eq!(restarted.cached(), Some(fetched.clone()));
        assert_eq!(restarted.topology().await.unwrap(), fetched);
        // A cache signed by someone else is not trusted.
        let other = IdentityKeyPair::generate(&mut rng).node_id();
        let distrustful = DirectoryClient::new(&url, other, cache_in(dir.path())).unwrap();
        assert_eq!(distrustful.cached(), None);
        assert!(matches!(
            distrustful.topology().await,
            Err(DirectoryClientError::NoTopology)
        ));
        let no_cache = DirectoryClient::new(&url, pinned, None).unwrap();
        assert!(matches!(
            no_cache.topology().await,
            Err(DirectoryClientError::NoTopology)
        ));
    })
    .await;
}

#[tokio::test]
async fn restarted_directory_keeps_registered_nodes_and_documents() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let key = IdentityKeyPair::generate(&mut rng);
        let secret = key.secret_bytes();
        let clock = TestClock::at_epoch(10);
        let server = DirectoryServer::start_with_clock(&config(dir.path()), key, clock.wall())
            .await
            .unwrap();
        let client = DirectoryClient::new(&server.url(), server.id(), None).unwrap();
        register_network(&client, &mut rng).await;
        let before = client.refresh().await.unwrap();
        server.stop().await.unwrap();

        let key = IdentityKeyPair::from_secret_bytes(&secret);
        let server = DirectoryServer::start_with_clock(&config(dir.path()), key, clock.wall())
            .await
            .unwrap();
        let client = DirectoryClient::new(&server.url(), server.id(), None).unwrap();
        let after = client.refresh().await.unwrap();
        assert_eq!(after, before, "same nodes, same layers, same revision");
        // The next epoch is built from the stored registrations too.
        clock.set_epoch(11);
        let next = client.refresh().await.unwrap();
        assert_eq!(next.epoch, Epoch(11));
        assert_eq!(next.all_peer_ids(), before.all_peer_ids());
        server.stop().await.unwrap();
    })
    .await;
}
