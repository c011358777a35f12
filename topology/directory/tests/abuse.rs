//! Abuse of a directory over real HTTP: 10 000 descriptors posted, each
//! from a node of its own. The directory holds at most `max_nodes`, counts
//! every refusal, keeps its memory bounded and keeps serving honest nodes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    missing_docs
)]
// The flood is timed on the real clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use directory::{DirectoryClient, DirectoryConfig, DirectoryServer, WallClock};
use protocol::{Epoch, IdentityKeyPair, SphinxKeyPair};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use topology::{EpochKey, NetworkParams, NodeDescriptor, Role, SignedDescriptor};

const GENESIS: u64 = 1_000_000;
const EPOCH_SECS: u64 = 60;
/// Descriptors the attacker posts.
const FLOOD: usize = 10_000;
/// Nodes the directory holds at most.
const MAX_NODES: usize = 100;
/// Growth of this process's resident memory the flood may cause.
const MEMORY_BOUND_KIB: u64 = 64 * 1024;

fn descriptor(rng: &mut ChaCha20Rng, role: Role, port: u16) -> SignedDescriptor {
    let identity = IdentityKeyPair::generate(rng);
    NodeDescriptor {
        id: identity.node_id(),
        role,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        client_address: None,
        sphinx_keys: vec![EpochKey {
            epoch: Epoch(10),
            key: SphinxKeyPair::generate(rng).public(),
        }],
        region: None,
        metrics_url: None,
        issued_at: GENESIS + 10 * EPOCH_SECS,
    }
    .sign(&identity)
    .unwrap()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_descriptors_fill_the_directory_to_its_bound_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let key = IdentityKeyPair::generate(&mut rng);
    let wall: WallClock =
        Arc::new(|| UNIX_EPOCH + Duration::from_secs(GENESIS + 10 * EPOCH_SECS + 1));
    let config = DirectoryConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        key_file: dir.path().join("directory.key"),
        db_path: dir.path().join("directory.redb"),
        audit_log: dir.path().join("audit.jsonl"),
        max_absent_epochs: 2,
        max_nodes: MAX_NODES,
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
    };
    let server = DirectoryServer::start_with_clock(&config, key, wall)
        .await
        .unwrap();
    let client = DirectoryClient::new(&server.url(), server.id(), None).unwrap();

    // Honest nodes first: 6 mixes and a gateway.
    let honest: Vec<SignedDescriptor> = (0..7u16)
        .map(|i| {
            descriptor(
                &mut rng,
                if i < 6 { Role::Mix } else { Role::Gateway },
                4000 + i,
            )
        })
        .collect();
    for d in &honest {
        client.register(d).await.unwrap();
    }
    let flood: Vec<SignedDescriptor> = (0..FLOOD)
        .map(|i| descriptor(&mut rng, Role::Mix, 10_000 + (i % 50_000) as u16))
        .collect();
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut accepted = 0usize;
    let mut refused = 0usize;
    for d in &flood {
        match client.register(d).await {
            Ok(()) => accepted += 1,
            Err(directory::DirectoryClientError::Status { status: 422, .. }) => refused += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let grown = rss_kib().saturating_sub(rss_before);

    assert_eq!(accepted, MAX_NODES - honest.len(), "filled to the bound");
    assert_eq!(refused, FLOOD - accepted, "every other one refused");
    assert!(grown < MEMORY_BOUND_KIB, "memory grew by {grown} KiB");

    // Honest nodes still refresh their descriptors and get the topology.
    let started = Instant::now();
    for d in &honest {
        client.register(d).await.unwrap();
    }
    let topology = client.refresh().await.unwrap();
    let honest_ms = started.elapsed().as_millis();
    for d in &honest {
        let id = d.verify().unwrap().id;
        assert!(topology.entry(&id).is_some(), "honest node listed");
    }
    assert!(honest_ms < 5_000, "honest requests took {honest_ms} ms");
    let metrics = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("directory_descriptors_refused_total{{reason=\"refused\"}} {refused}");
    assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    println!(
        "directory flood: {FLOOD} posts in {flood_secs:.1} s, {accepted} accepted, {refused} refused, \
         RSS +{grown} KiB, honest refresh {honest_ms} ms"
    );
    server.stop().await.unwrap();
}
