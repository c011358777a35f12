//! Costs on the gateway's hot paths: a durable mailbox commit (redb, one
//! fsync'd transaction per message), the same on the in-memory store, the
//! client-authentication check, and forwarding one client packet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::RedbStore;
use gateway_core::{
    GatewayConfig, GatewayCore, Mailbox, MailboxConfig, MailboxStore, MemoryStore, NewMessage,
    ThrottleConfig,
};
use protocol::keys::{NodeId, SphinxKeyPair};
use protocol::link::auth::{AuthChallenge, prove};
use protocol::link::{ClientMessage, LinkMessage};
use protocol::packet::{PACKET_SIZE, SPHINX_PAYLOAD_SIZE, SURB_ID_SIZE};
use protocol::surb::SurbId;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn put_and_ack<S: MailboxStore>(m: &mut Mailbox<S>, n: u64) {
    let client = [7u8; 32];
    let id = m
        .put(
            Timestamp::from_nanos(n),
            &client,
            SurbId([1; SURB_ID_SIZE]),
            vec![0xAB; SPHINX_PAYLOAD_SIZE],
            None,
        )
        .unwrap();
    assert!(m.delete(&client, id).unwrap());
}

fn mailbox(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut redb = Mailbox::open(
        RedbStore::open(dir.path().join("bench.redb")).unwrap(),
        MailboxConfig::default(),
    )
    .unwrap();
    let mut n = 0;
    c.bench_function("redb put then ack-delete (two durable commits)", |b| {
        b.iter(|| {
            n += 1;
            put_and_ack(&mut redb, n);
        })
    });
    let mut batches = 0u64;
    c.bench_function(
        "redb store a 32-message batch then expire it (two durable commits)",
        |b| {
            b.iter(|| {
                batches += 1;
                let batch = (0..32)
                    .map(|_| NewMessage {
                        client: [batches as u8; 32],
                        surb_id: SurbId([1; SURB_ID_SIZE]),
                        payload: vec![0xAB; SPHINX_PAYLOAD_SIZE],
                        lifetime: None,
                        recall_tag: None,
                        id: None,
                    })
                    .collect();
                let results = redb.put_batch(Timestamp::from_nanos(batches), batch);
                assert!(results.iter().all(|r| r.is_ok()));
                // Keep the file small: expire what this iteration stored.
                redb.expire(Timestamp::MAX).unwrap();
            })
        },
    );
    let mut memory = Mailbox::open(MemoryStore::new(), MailboxConfig::default()).unwrap();
    c.bench_function("memory put then ack-delete", |b| {
        b.iter(|| {
            n += 1;
            put_and_ack(&mut memory, n);
        })
    });
}

fn sessions(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let gw = NodeId([1; 32]);
    let client = SphinxKeyPair::generate(&mut rng);
    let key = client.public().to_bytes();
    let challenge = AuthChallenge::new(gw, &mut rng);
    let proof = prove(client.secret(), &gw, &challenge.ephemeral());
    c.bench_function("verify a client's proof", |b| {
        b.iter(|| assert!(challenge.verify(black_box(&key), black_box(&proof))))
    });

    let config = GatewayConfig {
        throttle: ThrottleConfig {
            rate: 1e12,
            burst: 1e12,
        },
        ..GatewayConfig::default()
    };
    let mb = Mailbox::open(MemoryStore::new(), MailboxConfig::default()).unwrap();
    let mut core = GatewayCore::new(gw, config, mb).unwrap();
    let (session, actions) = core.open_session(Timestamp::ZERO, LOOPBACK, &mut rng);
    let mut dec = protocol::link::LinkDecoder::<protocol::link::GatewayMessage>::new();
    if let gateway_core::GatewayAction::Send { bytes, .. } = &actions[0] {
        dec.push(bytes);
    }
    let Some(protocol::link::GatewayMessage::Challenge { gateway, ephemeral }) =
        dec.next_message().unwrap()
    else {
        panic!("challenge");
    };
    let auth = ClientMessage::Authenticate {
        client_key: key,
        proof: prove(client.secret(), &gateway, &ephemeral),
    };
    core.handle_client_bytes(Timestamp::ZERO, session, &auth.encode());
    let packet = ClientMessage::SendPacket {
        first_hop: NodeId([2; 32]),
        packet: Box::new([3; PACKET_SIZE]),
    }
    .encode();
    let mut t = 0;
    c.bench_function("decode, throttle and forward one client packet", |b| {
        b.iter(|| {
            t += 1;
            let actions = core.handle_client_bytes(Timestamp::from_nanos(t), session, &packet);
            assert_eq!(actions.len(), 1);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = mailbox, sessions
}
criterion_main!(benches);
