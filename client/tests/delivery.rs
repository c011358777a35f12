//! Messages, acks, retransmissions and replies across a small in-process mixnet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod network;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use client_core::{ClientEvent, DeliveryOutcome, ReplyHandle};
use protocol::fragment::MessageId;
use protocol::frame::FRAGMENT_CAPACITY;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use network::{TestNetwork, test_config};

const A: usize = 0;
const B: usize = 1;

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Two clients on two gateways.
fn two_clients(seed: u64) -> TestNetwork {
    TestNetwork::new(seed, 2, &[0, 1], test_config())
}

fn delivered(net: &TestNetwork, client: usize, id: MessageId) -> usize {
    net.count(
        client,
        |e| matches!(e, ClientEvent::Delivered { id: d } if *d == id),
    )
}

fn received_bytes(net: &TestNetwork, client: usize, id: MessageId) -> Vec<Vec<u8>> {
    net.events_of(client)
        .filter_map(|e| match e {
            ClientEvent::Received { id: r, bytes, .. } if *r == id => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn one_byte_one_fragment_and_100_kib_arrive_once_and_are_acked() {
    let mut net = two_clients(1);
    let to_b = net.clients[B].address();
    // The envelope of a message without SURBs has a 4-byte header.
    let messages = [
        payload(1, 1),
        payload(2, FRAGMENT_CAPACITY - 4),
        payload(3, 100 * 1024),
    ];
    let mut ids = Vec::new();
    for m in &messages {
        let now = net.now;
        ids.push(net.clients[A].send(now, &to_b, m, 0, &mut net.rng).unwrap());
    }
    let ok = net.run_until(Duration::from_secs(30), |n| {
        ids.iter().all(|id| delivered(n, A, *id) == 1)
    });
    assert!(ok, "all three delivered; events {:?}", net.events.len());
    // Let late duplicates (if any) arrive before counting.
    net.run_until(Duration::from_secs(1), |_| false);
    for (id, m) in ids.iter().zip(&messages) {
        assert_eq!(
            received_bytes(&net, B, *id),
            vec![m.clone()],
            "received once, intact"
        );
        assert_eq!(delivered(&net, A, *id), 1);
    }
    // Progress of the big message counts up to its fragment count.
    let progress: Vec<(usize, usize)> = net
        .events_of(A)
        .filter_map(|e| match e {
            ClientEvent::Progress { id, acked, total } if *id == ids[2] => Some((*acked, *total)),
            _ => None,
        })
        .collect();
    let total = (100 * 1024 + 4usize).div_ceil(FRAGMENT_CAPACITY);
    assert_eq!(progress.len(), total);
    assert_eq!(progress.last(), Some(&(total, total)));
    assert!(progress.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    assert_eq!(
        net.clients[A].occupancy().unacked_fragments,
        0,
        "nothing left in flight"
    );
    assert_eq!(net.clients[A].occupancy().ack_table, 0);
    assert_eq!(net.refused, 0, "no mixer refused a packet");
    let stats = net.clients[B].stats();
    assert_eq!(stats.dropped_total(), 0);
    // Loop cover (λ_L = 2/s) is a Poisson stream: give it time to go round
    // rather than count on one being in flight at this instant.
    let looped = net.run_until(Duration::from_secs(10), |n| {
        n.clients[A].stats().loop_cover_received > 0
    });
    assert!(looped, "loop cover came back: {:?}", net.clients[A].stats());
}

/// Replies are as long as the message answered, up to 8 KiB.
fn reply_len(message_len: usize) -> usize {
    message_len.min(8 * 1024)
}

#[test]
fn replies_reach_the_sender_through_its_surbs() {
    let mut net = two_clients(2);
    let to_b = net.clients[B].address();
    let sizes = [1usize, 500, 100 * 1024];
    let mut ids = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let now = net.now;
        // Enough SURBs for the reply (at most 8 KiB), plus two spares.
        let surbs = reply_len(*len).div_ceil(FRAGMENT_CAPACITY) + 2;
        let m = payload(10 + i as u64, *len);
        ids.push(
            net.clients[A]
                .send(now, &to_b, &m, surbs, &mut net.rng)
                .unwrap(),
        );
    }
    assert!(net.run_until(Duration::from_secs(30), |n| n.received(B).len() == 3));
    let handles: Vec<(MessageId, ReplyHandle)> = net
        .received(B)
        .into_iter()
        .map(|e| match e {
            ClientEvent::Received {
                id,
                reply: Some(h),
                in_reply_to: None,
                ..
            } => (*id, h.clone()),
            other => panic!("a message with a reply handle expected, got {other:?}"),
        })
        .collect();
    let mut replies = Vec::new();
    for (id, mut handle) in handles {
        assert_eq!(handle.in_reply_to(), id);
        let len = sizes[ids.iter().position(|x| *x == id).unwrap()];
        let answer = payload(100 + len as u64, reply_len(len));
        let now = net.now;
        let reply_id = net.clients[B]
            .reply(now, &mut handle, &answer, &mut net.rng)
            .unwrap();
        assert_eq!(
            handle.surbs_left(),
            0,
            "the handle's SURBs went to the reply"
        );
        replies.push((id, reply_id, answer));
    }
    let ok = net.run_until(Duration::from_secs(60), |n| {
        replies
            .iter()
            .all(|(_, r, _)| delivered(n, B, *r) == 1 && !received_bytes(n, A, *r).is_empty())
    });
    assert!(ok, "every reply received by A and acked to B");
    net.run_until(Duration::from_secs(1), |_| false);
    for (original, reply_id, answer) in &replies {
        let got: Vec<_> = net
            .events_of(A)
            .filter_map(|e| match e {
                ClientEvent::Received {
                    id,
                    bytes,
                    in_reply_to,
                    ..
                } if id == reply_id => Some((bytes.clone(), *in_reply_to)),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![(answer.clone(), Some(*original))]);
    }
    assert_eq!(net.clients[A].stats().dropped_total(), 0);
    // A acked every reply fragment itself (1 + 1 + 6 fragments).
    assert!(net.clients[A].stats().reply_acks_sent >= 8);
}

#[test]
fn a_reply_needs_one_surb_per_fragment() {
    let mut net = two_clients(3);
    let to_b = net.clients[B].address();
    let now = net.now;
    net.clients[A]
        .send(now, &to_b, b"short", 1, &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(10), |n| n.received(B).len() == 1));
    let ClientEvent::Received {
        reply: Some(mut handle),
        ..
    } = net.received(B)[0].clone()
    else {
        panic!("handle expected");
    };
    let now = net.now;
    let err = net.clients[B]
        .reply(
            now,
            &mut handle,
            &vec![0; FRAGMENT_CAPACITY * 2],
            &mut net.rng,
        )
        .unwrap_err();
    assert_eq!(
        err,
        client::ClientError::NotEnoughSurbs {
            needed: 3,
            available: 1
        }
    );
    assert_eq!(handle.surbs_left(), 1, "a refused reply keeps the handle");
}

#[test]
fn a_lost_fragment_is_sent_again_and_arrives_once() {
    let mut net = two_clients(4);
    let to_b = net.clients[B].address();
    let lost = Rc::new(Cell::new(0));
    let counter = lost.clone();
    // The gateway loses the first copy of fragment 1 of every message.
    net.lose_fragment = Box::new(move |f, seen| {
        let lose = f.index == 1 && seen == 0;
        counter.set(counter.get() + usize::from(lose));
        lose
    });
    let m = payload(5, FRAGMENT_CAPACITY * 3);
    let now = net.now;
    let id = net.clients[A]
        .send(now, &to_b, &m, 0, &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(30), |n| delivered(n, A, id) == 1));
    net.run_until(Duration::from_secs(1), |_| false);
    assert_eq!(lost.get(), 1);
    assert_eq!(received_bytes(&net, B, id), vec![m]);
    assert_eq!(net.clients[A].stats().retransmissions, 1);
}

#[test]
fn a_lost_ack_makes_a_duplicate_that_the_receiver_removes() {
    let mut net = two_clients(5);
    let to_b = net.clients[B].address();
    // The first ack of every fragment is lost, so every fragment is sent twice.
    net.lose_ack = Box::new(|_, seen| seen == 0);
    let m = payload(6, 10);
    let now = net.now;
    let id = net.clients[A]
        .send(now, &to_b, &m, 0, &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(30), |n| delivered(n, A, id) == 1));
    net.run_until(Duration::from_secs(1), |_| false);
    assert_eq!(
        received_bytes(&net, B, id),
        vec![m],
        "the application sees it once"
    );
    assert_eq!(net.clients[B].stats().duplicate_fragments, 1);
    assert_eq!(net.clients[A].stats().retransmissions, 1);
}

#[test]
fn a_message_that_is_never_acked_fails_after_the_last_retransmission() {
    let mut net = two_clients(6);
    let to_b = net.clients[B].address();
    let copies = Rc::new(Cell::new(0));
    let counter = copies.clone();
    net.lose_fragment = Box::new(move |_, _| {
        counter.set(counter.get() + 1);
        true
    });
    let now = net.now;
    let id = net.clients[A]
        .send(now, &to_b, b"lost", 0, &mut net.rng)
        .unwrap();
    let failed = |n: &TestNetwork| {
        n.count(
            A,
            |e| matches!(e, ClientEvent::SendFailed { id: f, .. } if *f == id),
        ) == 1
    };
    assert!(net.run_until(Duration::from_secs(60), failed));
    let max = test_config().max_retransmissions as usize;
    assert_eq!(
        copies.get(),
        max + 1,
        "first send plus every retransmission"
    );
    assert_eq!(net.clients[A].stats().retransmissions, max as u64);
    assert_eq!(net.clients[A].occupancy().unacked_fragments, 0);
    assert_eq!(net.clients[A].occupancy().ack_table, 0);
    assert!(received_bytes(&net, B, id).is_empty());
    assert_eq!(delivered(&net, A, id), 0);
}

#[test]
fn same_seed_same_trace() {
    let run = |seed| {
        let mut net = two_clients(seed);
        let to_b = net.clients[B].address();
        let now = net.now;
        net.clients[A]
            .send(now, &to_b, &payload(9, 5000), 2, &mut net.rng)
            .unwrap();
        net.run_until(Duration::from_millis(1500), |_| false);
        (net.trace_hash(), net.client_sends.len())
    };
    let first = run(7);
    assert_eq!(first, run(7));
    assert_ne!(first.0, run(8).0);
}

/// A sends to B with `surbs` reply SURBs; returns the network once B holds
/// the reply handle and A's message is acked.
fn message_with_handle(seed: u64, surbs: usize) -> (TestNetwork, ReplyHandle) {
    let mut net = two_clients(seed);
    let to_b = net.clients[B].address();
    let now = net.now;
    let id = net.clients[A]
        .send(now, &to_b, b"question", surbs, &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(10), |n| delivered(n, A, id) == 1));
    let ClientEvent::Received {
        reply: Some(handle),
        ..
    } = net.received(B)[0].clone()
    else {
        panic!("handle expected");
    };
    (net, handle)
}

/// Loses the first reply fragment to A from now on (a delivery through one
/// of A's reply SURBs; acks of A's cover come through SURBs too).
fn lose_first_reply_fragment(net: &mut TestNetwork) -> Rc<Cell<usize>> {
    let lost = Rc::new(Cell::new(0));
    let counter = lost.clone();
    let replies = net.clients[A].reply_surb_ids();
    net.lose_delivery = Box::new(move |client, d| {
        let lose = client == A && replies.contains(&d.surb_id) && counter.get() == 0;
        counter.set(counter.get() + usize::from(lose));
        lose
    });
    lost
}

#[test]
fn a_lost_reply_fragment_is_sent_again_through_a_spare_surb() {
    let (mut net, mut handle) = message_with_handle(21, 2);
    let lost = lose_first_reply_fragment(&mut net);
    let now = net.now;
    let reply = net.clients[B]
        .reply(now, &mut handle, b"answer", &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(30), |n| delivered(n, B, reply) == 1));
    assert_eq!(lost.get(), 1);
    assert_eq!(received_bytes(&net, A, reply), vec![b"answer".to_vec()]);
    assert_eq!(net.clients[B].stats().retransmissions, 1);
}

#[test]
fn a_lost_reply_fragment_without_a_spare_surb_fails() {
    let (mut net, mut handle) = message_with_handle(22, 1);
    lose_first_reply_fragment(&mut net);
    let now = net.now;
    let reply = net.clients[B]
        .reply(now, &mut handle, b"answer", &mut net.rng)
        .unwrap();
    let failed = |n: &TestNetwork| {
        n.count(
            B,
            |e| matches!(e, ClientEvent::SendFailed { id, .. } if *id == reply),
        ) == 1
    };
    assert!(net.run_until(Duration::from_secs(30), failed));
    assert!(received_bytes(&net, A, reply).is_empty());
    assert_eq!(net.clients[B].occupancy().unacked_fragments, 0);
}

#[test]
fn an_unacknowledged_reply_arrives_and_costs_its_receiver_no_ack() {
    let (mut net, mut handle) = message_with_handle(23, 8);
    let acks_before = net.clients[A].stats().reply_acks_sent;
    let answer = payload(23, 3 * FRAGMENT_CAPACITY);
    let now = net.now;
    let reply = net.clients[B]
        .reply_unacknowledged(now, &mut handle, &answer, &mut net.rng)
        .unwrap();
    assert_eq!(
        handle.surbs_left(),
        0,
        "the handle's SURBs went to the reply"
    );
    assert!(net.run_until(Duration::from_secs(30), |n| {
        !received_bytes(n, A, reply).is_empty()
    }));
    assert_eq!(received_bytes(&net, A, reply), vec![answer]);
    let sent =
        |n: &TestNetwork| n.count(B, |e| matches!(e, ClientEvent::Sent { id } if *id == reply));
    assert_eq!(sent(&net), 1, "the replier learns only that it left");
    assert_eq!(delivered(&net, B, reply), 0);
    // Run on: no ack ever comes back, and A sent none for these fragments.
    net.run_until(Duration::from_secs(10), |_| false);
    assert_eq!(net.clients[A].stats().reply_acks_sent, acks_before);
    assert_eq!(delivered(&net, B, reply), 0);
    assert_eq!(net.clients[B].occupancy().unacked_fragments, 0);
    assert_eq!(net.clients[B].stats().retransmissions, 0);
}

#[test]
fn a_lost_unacknowledged_reply_fragment_is_not_sent_again() {
    let (mut net, mut handle) = message_with_handle(24, 3);
    let lost = lose_first_reply_fragment(&mut net);
    let now = net.now;
    let reply = net.clients[B]
        .reply_unacknowledged(now, &mut handle, b"answer", &mut net.rng)
        .unwrap();
    net.run_until(Duration::from_secs(30), |_| false);
    assert_eq!(lost.get(), 1);
    assert!(received_bytes(&net, A, reply).is_empty());
    assert_eq!(net.clients[B].stats().retransmissions, 0);
    assert_eq!(
        net.count(B, |e| matches!(e, ClientEvent::Sent { id } if *id == reply)),
        1
    );
    assert_eq!(net.clients[B].occupancy().outgoing_messages, 0);
}

/// A reply fragment replayed from a journal (`ReplySource::Journaled`) is
/// held like one delivered, but sends no ack and leaves the SURB alone:
/// its sender sends it again through a spare SURB, and that copy (a
/// duplicate now) is the one acknowledged.
#[test]
fn a_journaled_reply_fragment_is_held_without_an_ack_of_its_own() {
    let (mut net, mut handle) = message_with_handle(24, 2);
    // The first reply delivery to A is kept aside (as a journal would keep
    // it) instead of handed to A's core.
    let kept = Rc::new(std::cell::RefCell::new(Vec::new()));
    let keep = kept.clone();
    let replies = net.clients[A].reply_surb_ids();
    net.lose_delivery = Box::new(move |client, d| {
        let first = client == A && replies.contains(&d.surb_id) && keep.borrow().is_empty();
        if first {
            keep.borrow_mut().push((d.surb_id, d.payload.clone()));
        }
        first
    });
    let now = net.now;
    let reply = net.clients[B]
        .reply(now, &mut handle, b"answer", &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |_| !kept.borrow().is_empty()));
    let (surb_id, payload) = kept.borrow()[0].clone();

    // Only that SURB's keys open it, and opening uses nothing up.
    let a = &mut net.clients[A];
    assert_eq!(a.open_reply(&surb_id, &[7u8; 100]), None);
    let other = protocol::surb::SurbId([9; 16]);
    assert_eq!(a.open_reply(&other, &payload), None);
    let frame = a.open_reply(&surb_id, &payload).expect("A's SURB opens it");
    assert!(a.reply_surb_ids().contains(&surb_id));

    let acks_before = a.stats().reply_acks_sent;
    let outcome = a.handle_reply_frame(now, client_core::ReplySource::Journaled, &frame);
    assert!(
        matches!(outcome, DeliveryOutcome::Completed { .. }),
        "{outcome:?}"
    );
    net.drain_events(A);
    assert_eq!(received_bytes(&net, A, reply), vec![b"answer".to_vec()]);

    // No ack left A for it: B sends the fragment again through its spare
    // SURB; A takes that copy as a duplicate and acknowledges it.
    assert!(net.run_until(Duration::from_secs(30), |n| delivered(n, B, reply) == 1));
    assert_eq!(net.clients[B].stats().retransmissions, 1);
    assert_eq!(net.clients[A].stats().duplicate_fragments, 1);
    assert_eq!(net.clients[A].stats().reply_acks_sent, acks_before + 1);
    assert_eq!(received_bytes(&net, A, reply).len(), 1, "received once");
}
