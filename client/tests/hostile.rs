//! Whatever a gateway hands over, the core never panics and counts what it drops.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod network;

use client_core::{ClientEvent, DeliveryDrop};
use proptest::prelude::*;
use protocol::fragment::{Fragment, FragmentId, MessageId};
use protocol::frame::{FRAGMENT_CAPACITY, ForwardFrame, SURB_ACK_SIZE, SealedContent};
use protocol::packet::SURB_ID_SIZE;
use protocol::surb::SurbId;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use network::{TestNetwork, test_config};

/// What a gateway hands client `i` for `content`: the body sealed to the
/// client's key, padded to the one delivery size.
fn sealed(net: &TestNetwork, i: usize, content: &SealedContent) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let to = net.keys_of(i).public();
    ForwardFrame::seal(content, &to, vec![0; SURB_ACK_SIZE], &mut rng)
        .unwrap()
        .delivery_payload()
}

fn data(fragment: Fragment) -> SealedContent {
    SealedContent::Data {
        lifetime: None,
        fragment,
    }
}

proptest! {
    // Integration tests have no lib.rs next to them to persist failures by.
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_deliveries_never_panic_and_are_counted(
        deliveries in proptest::collection::vec(
            (any::<bool>(), any::<[u8; SURB_ID_SIZE]>(),
             proptest::collection::vec(any::<u8>(), 0..2500)),
            1..8,
        )
    ) {
        let mut net = TestNetwork::new(1, 1, &[0], test_config());
        let n = deliveries.len() as u64;
        for (forward, id, payload) in deliveries {
            let surb_id = SurbId(if forward { [0; SURB_ID_SIZE] } else { id });
            net.clients[0].handle_delivery(Timestamp::from_millis(5), surb_id, &payload);
        }
        let stats = net.clients[0].stats();
        prop_assert_eq!(stats.deliveries, n);
        prop_assert_eq!(stats.dropped_total(), n, "every random delivery dropped and counted");
        prop_assert!(net.clients[0].poll_event().is_none());
    }
}

#[test]
fn forged_frames_are_dropped_for_their_reason() {
    let mut net = TestNetwork::new(2, 2, &[0, 1], test_config());
    let now = Timestamp::from_millis(5);
    let fwd = SurbId([0; SURB_ID_SIZE]);
    let id = FragmentId {
        message: MessageId([1; 16]),
        index: 0,
    };
    // A body sealed to another client.
    let foreign = sealed(&net, 1, &SealedContent::DropCover);
    // A non-final fragment that is not full.
    let short = sealed(
        &net,
        0,
        &data(Fragment {
            id,
            count: 3,
            data: vec![1; 10],
        }),
    );
    // A one-fragment message that is not an envelope.
    let not_envelope = sealed(
        &net,
        0,
        &data(Fragment {
            id,
            count: 1,
            data: vec![99; 10],
        }),
    );
    // A valid one: version 1, kind message, no SURBs, "hi".
    let good = sealed(
        &net,
        0,
        &data(Fragment {
            id: FragmentId {
                message: MessageId([2; 16]),
                index: 0,
            },
            count: 1,
            data: vec![1, 1, 0, 0, b'h', b'i'],
        }),
    );
    let core = &mut net.clients[0];
    core.handle_delivery(now, fwd, &foreign);
    assert_eq!(core.stats().dropped_for(DeliveryDrop::NotAFrame), 1);
    core.handle_delivery(now, fwd, &short);
    assert_eq!(core.stats().dropped_for(DeliveryDrop::BadFragment), 1);
    core.handle_delivery(now, fwd, &not_envelope);
    assert_eq!(core.stats().dropped_for(DeliveryDrop::BadEnvelope), 1);
    core.handle_delivery(now, fwd, &good);
    // The same fragment again (a retransmission that crossed the ack).
    core.handle_delivery(now, fwd, &good);
    assert_eq!(core.stats().messages_received, 1);
    assert_eq!(core.stats().duplicate_fragments, 1);
    let Some(ClientEvent::Received { bytes, .. }) = core.poll_event() else {
        panic!("message expected");
    };
    assert_eq!(bytes, b"hi");
    assert_eq!(core.poll_event(), None);
    assert_eq!(core.stats().dropped_total(), 3);
}

#[test]
fn partial_messages_are_bounded() {
    let mut config = test_config();
    config.max_partial_messages = 4;
    let mut net = TestNetwork::new(3, 1, &[0], config);
    let fwd = SurbId([0; SURB_ID_SIZE]);
    for i in 0..10u8 {
        let payload = sealed(
            &net,
            0,
            &data(Fragment {
                id: FragmentId {
                    message: MessageId([i; 16]),
                    index: 0,
                },
                count: 5,
                data: vec![i; FRAGMENT_CAPACITY],
            }),
        );
        net.clients[0].handle_delivery(Timestamp::from_millis(1), fwd, &payload);
    }
    let core = &mut net.clients[0];
    assert_eq!(core.occupancy().partial_messages, 4);
    assert_eq!(core.stats().dropped_for(DeliveryDrop::ReassemblyRefused), 6);
    // They time out and are reported once each.
    let later = Timestamp::from_millis(1).saturating_add(config.reassembly.timeout);
    core.handle_timeout(later);
    assert_eq!(core.occupancy().partial_messages, 0);
    let timed_out = std::iter::from_fn(|| core.poll_event())
        .filter(|e| matches!(e, ClientEvent::ReceiveTimedOut { .. }))
        .count();
    assert_eq!(timed_out, 4);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 100,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn well_formed_frames_with_hostile_fragments_stay_bounded(
        fragments in proptest::collection::vec(
            (0u8..4, 1u16..8, any::<u16>(), 0usize..=FRAGMENT_CAPACITY),
            1..24,
        )
    ) {
        let mut config = test_config();
        config.max_partial_messages = 3;
        let mut net = TestNetwork::new(4, 1, &[0], config);
        let n = fragments.len() as u64;
        for (msg, count, index, len) in fragments {
            let payload = sealed(&net, 0, &data(Fragment {
                id: FragmentId { message: MessageId([msg; 16]), index: index % count },
                count,
                data: vec![msg; len],
            }));
            net.clients[0].handle_delivery(Timestamp::from_millis(5), SurbId([0; SURB_ID_SIZE]), &payload);
        }
        let core = &mut net.clients[0];
        prop_assert_eq!(core.stats().deliveries, n);
        prop_assert!(core.occupancy().partial_messages <= 3);
        let events = std::iter::from_fn(|| core.poll_event()).count() as u64;
        prop_assert_eq!(events, core.stats().messages_received);
    }
}
