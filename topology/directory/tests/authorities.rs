//! Three directory authorities voting, in-process on loopback, with a clock
//! the test moves by hand: consensus, a lost authority, two lost, a node one
//! authority alone saw, and hostile votes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use directory::config::AuthorityConfig;
use directory::{DirectoryClient, DirectoryConfig, DirectoryServer, WallClock};
use protocol::{Epoch, IdentityKeyPair, NodeId, SphinxKeyPair};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use topology::{
    Authority, AuthoritySet, EpochKey, NetworkParams, NodeDescriptor, Role, RoundId,
    SignedDescriptor, SignedTopology, Vote,
};

const GENESIS: u64 = 1_000_000;
/// Epochs of 8 s in rounds of 2 s: four rounds an epoch.
const EPOCH_SECS: u64 = 8;
const ROUND_SECS: u64 = 2;

/// A wall clock the test moves by hand, in unix milliseconds.
#[derive(Clone)]
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn wall(&self) -> WallClock {
        let ms = self.0.clone();
        Arc::new(move || UNIX_EPOCH + Duration::from_millis(ms.load(Ordering::SeqCst)))
    }

    /// Moves to `ms` milliseconds into the round that builds `round`.
    fn set(&self, round: RoundId, ms: u64) {
        // Revision s > 0 of epoch e is built in slot s - 1 of e; revision 0
        // in the last slot of e - 1.
        let (epoch, slot) = match round.serial {
            0 => (round.epoch.0 - 1, EPOCH_SECS / ROUND_SECS - 1),
            s => (round.epoch.0, s - 1),
        };
        let at = (GENESIS + epoch * EPOCH_SECS + slot * ROUND_SECS) * 1000 + ms;
        self.0.store(at, Ordering::SeqCst);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Authorities {
    servers: Vec<Option<DirectoryServer>>,
    keys: Vec<NodeId>,
    secrets: Vec<IdentityKeyPair>,
    set: AuthoritySet,
    clock: TestClock,
    _dirs: Vec<tempfile::TempDir>,
}

async fn start(n: usize) -> Authorities {
    let mut rng = ChaCha20Rng::seed_from_u64(90);
    let keys: Vec<IdentityKeyPair> = (0..n)
        .map(|_| IdentityKeyPair::generate(&mut rng))
        .collect();
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let entries: Vec<AuthorityConfig> = keys
        .iter()
        .zip(&ports)
        .map(|(k, p)| AuthorityConfig {
            url: format!("http://127.0.0.1:{p}"),
            public_key: k.node_id(),
        })
        .collect();
    let set = AuthoritySet::new(
        entries
            .iter()
            .map(|a| Authority {
                id: a.public_key,
                url: a.url.clone(),
            })
            .collect(),
        None,
    )
    .unwrap();
    let clock = TestClock(Arc::new(AtomicU64::new(0)));
    clock.set(
        RoundId {
            epoch: Epoch(5),
            serial: 1,
        },
        1_500,
    ); // the sign half of a round
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), ports[i], &entries);
        let key = IdentityKeyPair::from_secret_bytes(&key.secret_bytes());
        servers.push(Some(
            DirectoryServer::start_with_clock(&config, key, clock.wall())
                .await
                .unwrap(),
        ));
        dirs.push(dir);
    }
    Authorities {
        servers,
        keys: keys.iter().map(IdentityKeyPair::node_id).collect(),
        secrets: keys,
        set,
        clock,
        _dirs: dirs,
    }
}

fn config(dir: &Path, port: u16, authorities: &[AuthorityConfig]) -> DirectoryConfig {
    DirectoryConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        key_file: dir.join("directory.key"),
        db_path: dir.join("directory.redb"),
        audit_log: dir.join("audit.jsonl"),
        max_absent_epochs: 2,
        max_nodes: 100,
        allowed_nodes: Vec::new(),
        authorities: authorities.to_vec(),
        threshold: None,
        round_secs: ROUND_SECS,
        rate_profile: None,
        network: NetworkParams {
            genesis_unix_secs: GENESIS,
            epoch_length: Duration::from_secs(EPOCH_SECS),
            ..NetworkParams::default()
        },
    }
}

fn descriptor(rng: &mut ChaCha20Rng, role: Role, port: u16, epochs: &[u64]) -> SignedDescriptor {
    let identity = IdentityKeyPair::generate(rng);
    NodeDescriptor {
        id: identity.node_id(),
        role,
        address: format!("127.0.0.1:{port}").parse().unwrap(),
        client_address: None,
        sphinx_keys: epochs
            .iter()
            .map(|&e| EpochKey {
                epoch: Epoch(e),
                key: SphinxKeyPair::generate(rng).public(),
            })
            .collect(),
        region: None,
        metrics_url: None,
        issued_at: 1,
    }
    .sign(&identity)
    .unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn metric(url: &str, name: &str) -> f64 {
    let (_, text) = get(&format!("{url}/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Runs `round` through (vote half, then sign half) and returns what each
/// running authority serves for its epoch afterwards.
async fn run_round(net: &Authorities, round: RoundId) -> Vec<Option<SignedTopology>> {
    net.clock.set(round, 10);
    tokio::time::sleep(Duration::from_millis(600)).await;
    net.clock.set(round, 1_100);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut served = Vec::new();
    for server in net.servers.iter().flatten() {
        let (status, text) = get(&format!("{}/v1/topology/{}", server.url(), round.epoch.0)).await;
        served.push((status == 200).then(|| SignedTopology::from_json(&text).unwrap()));
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_authorities_agree_survive_one_loss_and_stop_at_two() {
    let mut net = start(3).await;
    let mut rng = ChaCha20Rng::seed_from_u64(91);
    let client = DirectoryClient::with_authorities(net.set.clone(), None).unwrap();
    let mut port = 4000;
    for role in [Role::Mix; 6].into_iter().chain([Role::Gateway; 2]) {
        port += 1;
        client
            .register(&descriptor(&mut rng, role, port, &[5, 6, 7, 8]))
            .await
            .unwrap();
    }
    // A node that registers at one authority only.
    let lonely = descriptor(&mut rng, Role::Mix, 4999, &[5, 6, 7, 8]);
    let lonely_id = lonely.verify().unwrap().id;
    let first_url = net.servers[0].as_ref().unwrap().url();
    let (status, _) = post(&format!("{first_url}/v1/descriptors"), lonely.to_json()).await;
    assert_eq!(status, 200);

    // All three up: one consensus, the same bytes everywhere, three signatures.
    let round = RoundId {
        epoch: Epoch(5),
        serial: 2,
    };
    let served = run_round(&net, round).await;
    let docs: Vec<SignedTopology> = served.into_iter().map(Option::unwrap).collect();
    assert!(docs.iter().all(|d| d.body == docs[0].body));
    let topology = docs[0].verify(&net.set).unwrap();
    assert_eq!((topology.epoch, topology.serial), (Epoch(5), 2));
    assert_eq!(topology.all_peer_ids().len(), 8);
    assert!(
        topology.entry(&lonely_id).is_none(),
        "one authority alone saw it"
    );
    assert!(docs.iter().any(|d| d.valid_signers(&net.set).len() == 3));
    assert!(docs.iter().all(|d| d.valid_signers(&net.set).len() >= 2));
    let fetched = client.refresh().await.unwrap();
    assert_eq!(*fetched, topology);

    // One authority gone: the next rounds still reach 2 of 3.
    net.servers[2].take().unwrap().stop().await.unwrap();
    let round = RoundId {
        epoch: Epoch(5),
        serial: 3,
    };
    let served = run_round(&net, round).await;
    for doc in &served {
        let doc = doc.as_ref().unwrap();
        assert_eq!(doc.valid_signers(&net.set).len(), 2);
        assert_eq!(doc.verify(&net.set).unwrap().all_peer_ids().len(), 8);
    }
    // The next epoch's first revision, with the next keys.
    let round = RoundId {
        epoch: Epoch(6),
        serial: 0,
    };
    let served = run_round(&net, round).await;
    let next = served[0].as_ref().unwrap().verify(&net.set).unwrap();
    assert_eq!(next.epoch, Epoch(6));

    // Two gone: no new consensus, counted; clients keep the last one.
    net.servers[1].take().unwrap().stop().await.unwrap();
    let round = RoundId {
        epoch: Epoch(6),
        serial: 1,
    };
    let served = run_round(&net, round).await;
    let last = served[0].as_ref().unwrap().verify(&net.set).unwrap();
    assert_eq!((last.epoch, last.serial), (Epoch(6), 0), "no revision 1");
    assert!(
        metric(
            &first_url,
            "directory_consensus_failed_total{reason=\"too_few_votes\"}"
        )
        .await
            >= 1.0
    );
    assert!(metric(&first_url, "directory_posts_failed_total{reason=\"vote\"}").await >= 1.0);
    for s in net.servers.iter_mut() {
        if let Some(s) = s.take() {
            s.stop().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_votes_and_signatures_are_refused_and_counted() {
    let mut net = start(3).await;
    let url = net.servers[0].as_ref().unwrap().url();
    let mut rng = ChaCha20Rng::seed_from_u64(92);
    let round = RoundId {
        epoch: Epoch(5),
        serial: 2,
    };
    net.clock.set(round, 10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stranger = IdentityKeyPair::generate(&mut rng);
    let vote = |authority: NodeId, round: RoundId| Vote {
        authority,
        round,
        round_secs: ROUND_SECS,
        params: NetworkParams {
            genesis_unix_secs: GENESIS,
            epoch_length: Duration::from_secs(EPOCH_SECS),
            ..NetworkParams::default()
        },
        authorities: net.set.clone(),
        previous_layers: Vec::new(),
        nodes: Vec::new(),
    };
    let votes = format!("{url}/v1/votes");
    // Signed by a stranger: 403.
    let strange = vote(stranger.node_id(), round).sign(&stranger).unwrap();
    assert_eq!(post(&votes, strange.to_json()).await.0, 403);
    // Naming authority 1, signed by the stranger's key: 403 (bad signature).
    let mut forged = vote(stranger.node_id(), round).sign(&stranger).unwrap();
    forged.0.body = forged
        .0
        .body
        .replace(&stranger.node_id().to_base58(), &net.keys[1].to_base58());
    assert_eq!(post(&votes, forged.to_json()).await.0, 403);
    // Truncated and oversized.
    let truncated: String = strange.to_json().chars().take(100).collect();
    assert_eq!(post(&votes, truncated).await.0, 400);
    assert_eq!(post(&votes, vec![b' '; 6 * 1024 * 1024]).await.0, 413);
    // Signatures: junk, and one for another round.
    let signatures = format!("{url}/v1/signatures");
    assert_eq!(post(&signatures, "{\"round\":").await.0, 400);
    assert_eq!(post(&signatures, vec![b'x'; 4096]).await.0, 413);
    for (reason, at_least) in [
        ("not_an_authority", 1.0),
        ("bad_signature", 1.0),
        ("malformed", 1.0),
        ("oversize", 1.0),
    ] {
        let name = format!("directory_votes_refused_total{{reason=\"{reason}\"}}");
        assert!(metric(&url, &name).await >= at_least, "{name}");
    }
    // The round still completes with the honest votes.
    net.clock.set(round, 1_100);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, text) = get(&format!("{url}/v1/topology/5")).await;
    assert_eq!(status, 200, "{text}");
    // A replayed vote of that (now past) round is refused as another round's.
    let next = RoundId {
        epoch: Epoch(5),
        serial: 3,
    };
    net.clock.set(next, 10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let replayed = SignedTopology::from_json(&text).unwrap();
    assert_eq!(replayed.verify(&net.set).unwrap().serial, 2);
    let old_vote = vote(net.keys[1], round).sign(&net.secrets[1]).unwrap();
    assert_eq!(post(&votes, old_vote.to_json()).await.0, 409);
    assert!(
        metric(
            &url,
            "directory_votes_refused_total{reason=\"wrong_round\"}"
        )
        .await
            >= 1.0
    );
    // The round completed with a majority (2 of 3): this authority's own
    // vote and at least one other, posted to it or pulled by it from its
    // peer (on a loaded machine the pull can come first); the third may
    // still be on its way.
    let received = metric(&url, "directory_votes_accepted_total").await
        + metric(&url, "directory_votes_pulled_total").await;
    assert!(received >= 1.0, "{received}");
    for s in net.servers.iter_mut() {
        if let Some(s) = s.take() {
            s.stop().await.unwrap();
        }
    }
}

/// A server that serves whatever document the test puts in it.
async fn serve_settable() -> (String, Arc<std::sync::Mutex<String>>) {
    use axum::routing::get;
    let doc = Arc::new(std::sync::Mutex::new(String::new()));
    let shared = doc.clone();
    let app = axum::Router::new().route(
        "/v1/topology",
        get(move || {
            let doc = shared.clone();
            async move { doc.lock().unwrap().clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, doc)
}

fn signed_by(t: &topology::Topology, keys: &[&IdentityKeyPair]) -> String {
    let body = t.body().unwrap();
    let mut signed = SignedTopology::unsigned(body.clone());
    for k in keys {
        signed.add_signature(topology::AuthoritySignature::sign(&body, k));
    }
    signed.to_json()
}

#[tokio::test]
async fn clients_follow_a_replaced_key_and_refuse_a_lone_or_conflicting_signer() {
    let mut rng = ChaCha20Rng::seed_from_u64(93);
    let (url, doc) = serve_settable().await;
    let [a, b, c, d] = [0; 4].map(|_| IdentityKeyPair::generate(&mut rng));
    let set_of = |keys: &[&IdentityKeyPair]| {
        AuthoritySet::new(
            keys.iter()
                .map(|k| Authority {
                    id: k.node_id(),
                    url: url.clone(),
                })
                .collect(),
            None,
        )
        .unwrap()
    };
    let old = set_of(&[&a, &b, &c]);
    let new = set_of(&[&a, &b, &d]);
    let topology = |epoch: u64, next: &AuthoritySet| topology::Topology {
        epoch: Epoch(epoch),
        serial: 0,
        params: NetworkParams::default(),
        layers: vec![Vec::new(); 3],
        gateways: Vec::new(),
        authorities: Some(next.clone()),
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("topology.json");
    let client = DirectoryClient::with_authorities(old.clone(), Some(cache.clone())).unwrap();

    // The old set (a and b of a, b, c) signs a consensus that replaces c by d.
    *doc.lock().unwrap() = signed_by(&topology(1, &new), &[&a, &b]);
    client.refresh().await.unwrap();
    assert_eq!(client.authorities(), new);
    assert_eq!(client.authority_set_changes(), 1);

    // The retired key alone, or with one current key, is refused.
    *doc.lock().unwrap() = signed_by(&topology(2, &old), &[&c]);
    assert!(client.refresh().await.is_err());
    *doc.lock().unwrap() = signed_by(&topology(2, &old), &[&c, &a]);
    assert!(client.refresh().await.is_err());
    // (Each authority of the set, all at this one URL, was asked in turn.)
    assert_eq!(client.bad_signatures(), 2 * 3);
    // One authority alone signing a topology of its own choosing: refused.
    *doc.lock().unwrap() = signed_by(&topology(2, &set_of(&[&a])), &[&a]);
    assert!(client.refresh().await.is_err());
    assert_eq!(client.bad_signatures(), 3 * 3);
    assert_eq!(client.authorities(), new);

    // The new key with a current one: accepted.
    *doc.lock().unwrap() = signed_by(&topology(2, &new), &[&d, &a]);
    assert_eq!(client.refresh().await.unwrap().epoch, Epoch(2));
    // Another document for the same epoch and revision: a conflict, the first stays.
    let mut other = topology(2, &new);
    other.params.lambda_p = 1.0;
    *doc.lock().unwrap() = signed_by(&other, &[&a, &b, &d]);
    assert!(matches!(
        client.refresh().await,
        Err(directory::DirectoryClientError::Conflict { .. })
    ));
    assert_eq!(client.conflicts(), 3);
    assert_eq!(client.cached().unwrap().params, NetworkParams::default());

    // A restarted client, still pinning the old set, holds the followed one.
    let restarted = DirectoryClient::with_authorities(old, Some(cache)).unwrap();
    assert_eq!(restarted.authorities(), new);
    assert_eq!(restarted.cached().unwrap().epoch, Epoch(2));
}
