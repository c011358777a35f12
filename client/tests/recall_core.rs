//! Recall in the client core, across the in-process mixnet: the frames of a
//! recallable message carry the tags of its secret (and only its copies the
//! same tag), every other frame a random one; a recall travels as a recall
//! frame that reveals the secret and the fragment count, is acknowledged
//! like a message, and hands the recipient its notice.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod network;

use std::time::Duration;

use client_core::ClientEvent;
use protocol::frame::FRAGMENT_CAPACITY;
use protocol::recall::RecallTag;

use network::{TestNetwork, test_config};

const A: usize = 0;
const B: usize = 1;

#[test]
fn a_recallable_message_carries_its_tags_and_a_recall_reveals_its_secret() {
    let mut net = TestNetwork::new(7, 2, &[0, 1], test_config());
    let to_b = net.clients[B].address();
    let now = net.now;
    // Three fragments, recallable; one message that is not.
    let big = vec![7u8; 2 * FRAGMENT_CAPACITY + 10];
    let (id, ticket) = net.clients[A]
        .send_recallable(now, &to_b, &big, 0, None, &mut net.rng)
        .unwrap();
    let ticket = ticket.expect("three fragments may be recalled");
    assert_eq!((ticket.id, ticket.fragments, ticket.to), (id, 3, to_b));
    let plain = net.clients[A]
        .send(now, &to_b, b"not recallable", 0, &mut net.rng)
        .unwrap();
    let done = |net: &TestNetwork, id| {
        net.count(
            A,
            |e| matches!(e, ClientEvent::Delivered { id: d } if *d == id),
        ) == 1
    };
    assert!(net.run_until(Duration::from_secs(30), |n| done(n, id) && done(n, plain)));

    let tags_of = |net: &TestNetwork, id| -> Vec<(u16, RecallTag)> {
        net.tags_at_gateway
            .iter()
            .filter(|(f, _)| f.message == id)
            .map(|(f, t)| (f.index, *t))
            .collect()
    };
    let tags = tags_of(&net, id);
    assert!(tags.len() >= 3);
    for (index, tag) in &tags {
        assert_eq!(*tag, ticket.secret.tag(*index), "fragment {index}");
    }
    // The tags of one message look unrelated; the other message's tag is
    // none of the secret's.
    let expected = ticket.secret.tags(3);
    assert_ne!(expected[0], expected[1]);
    for (_, tag) in tags_of(&net, plain) {
        assert!(!expected.contains(&tag));
    }

    // The recall: one fragment, in a recall frame with the secret and the
    // count, acknowledged like a message; the recipient gets the notice.
    let now = net.now;
    let recall = net.clients[A]
        .recall(now, &ticket, b"the notice", &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(30), |n| done(n, recall)));
    let seen = &net.recalls_at_gateway;
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|r| r.secret == ticket.secret && r.fragments == 3)
    );
    assert!(net.events_of(B).any(
        |e| matches!(e, ClientEvent::Received { id: r, bytes, .. } if *r == recall && bytes == b"the notice")
    ));
    assert_eq!(net.clients[A].stats().recalls_sent, 1);
    assert_eq!(net.refused, 0);
}

#[test]
fn a_notice_that_does_not_fit_one_fragment_is_refused() {
    let mut net = TestNetwork::new(8, 2, &[0, 1], test_config());
    let to_b = net.clients[B].address();
    let now = net.now;
    let (_, ticket) = net.clients[A]
        .send_recallable(now, &to_b, b"hi", 0, None, &mut net.rng)
        .unwrap();
    let ticket = ticket.unwrap();
    let notice = vec![0u8; FRAGMENT_CAPACITY];
    assert!(matches!(
        net.clients[A].recall(now, &ticket, &notice, &mut net.rng),
        Err(client_core::ClientError::MessageTooLarge { max: 1, .. })
    ));
}
