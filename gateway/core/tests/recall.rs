#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

//! Recall at the recipient's gateway: a recall frame deletes the stored
//! bodies its secret names, of its own client only, and stores its notice
//! unless it found every fragment; a wrong secret deletes nothing and is
//! counted; a malformed recall is dropped and counted.

mod common;

use common::*;
use gateway_core::{FinalHop, GatewayConfig, GatewayCore, GatewayDropReason, MemoryStore};
use mixnode_core::MixerRole;
use protocol::fragment::{MessageId, fragment_message};
use protocol::frame::{ForwardFrame, Frame, RecallFrame, SURB_ACK_SIZE, SealedContent};
use protocol::keys::SphinxKeyPair;
use protocol::packet::{DelaySampler, Delivery, SPHINX_PAYLOAD_SIZE};
use protocol::recall::{MAX_RECALL_FRAGMENTS, RecallSecret, RecallTag};
use protocol::sphinx::encode_payload;
use protocol::surb::{SurbId, build_surb};
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct World {
    rng: ChaCha20Rng,
    mixes: Vec<Node>,
    exit: Node,
    gateway: GatewayCore<MemoryStore>,
    bob: SphinxKeyPair,
    carol: SphinxKeyPair,
}

fn world(seed: u64) -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mixes: Vec<Node> = (0..3).map(|_| node(&mut rng, MixerRole::Mix)).collect();
    let exit = node(&mut rng, MixerRole::Exit);
    let mut gateway = memory_core(exit.hop.id, GatewayConfig::default());
    let bob = SphinxKeyPair::generate(&mut rng);
    let carol = SphinxKeyPair::generate(&mut rng);
    for key in [&bob, &carol] {
        gateway
            .register_client(Timestamp::ZERO, &key.public().to_bytes())
            .unwrap();
    }
    World {
        rng,
        mixes,
        exit,
        gateway,
        bob,
        carol,
    }
}

impl World {
    /// A SURB-ack the gateway can use (back through the mixes to itself).
    fn surb_ack(&mut self) -> Vec<u8> {
        let delays = DelaySampler::new(MEAN_DELAY).route_delays(4, &mut self.rng);
        let route: Vec<_> = self
            .mixes
            .iter()
            .map(|n| n.hop)
            .chain([self.exit.hop])
            .collect();
        build_surb(
            &mut self.rng,
            &route,
            &delays,
            sphinx_packet::route::DestinationAddressBytes::from_bytes([9; 32]),
        )
        .unwrap()
        .0
        .0
    }

    /// A final-hop delivery of `frame` to `to`.
    fn delivery(to: &SphinxKeyPair, frame: &Frame) -> Delivery {
        Delivery {
            destination: to.public().to_bytes(),
            surb_id: SurbId([0; protocol::packet::SURB_ID_SIZE]),
            payload: encode_payload(&frame.encode().unwrap(), SPHINX_PAYLOAD_SIZE).unwrap(),
        }
    }

    /// Fragment `index` of a `count`-fragment message to `to`, tagged by `secret`.
    fn fragment(
        &mut self,
        to: &SphinxKeyPair,
        secret: &RecallSecret,
        index: u16,
        count: u16,
    ) -> Delivery {
        let mut fragment = fragment_message(MessageId([1; 16]), b"x")
            .unwrap()
            .remove(0);
        fragment.id.index = index;
        fragment.count = count;
        let content = SealedContent::Data {
            lifetime: None,
            fragment,
        };
        let ack = self.surb_ack();
        let mut frame = ForwardFrame::seal(&content, &to.public(), ack, &mut self.rng).unwrap();
        frame.recall_tag = secret.tag(index);
        Self::delivery(to, &Frame::Forward(frame))
    }

    /// A recall of `count` fragments under `secret`, for `to`.
    fn recall(&mut self, to: &SphinxKeyPair, secret: &RecallSecret, count: u16) -> Delivery {
        let notice = ForwardFrame::seal(
            &SealedContent::DropCover,
            &to.public(),
            vec![0; SURB_ACK_SIZE],
            &mut self.rng,
        )
        .unwrap();
        let frame = Frame::Recall(RecallFrame {
            secret: secret.clone(),
            fragments: count,
            surb_ack: self.surb_ack(),
            sealed: notice.sealed,
        });
        Self::delivery(to, &frame)
    }

    fn stored(&self, key: &SphinxKeyPair) -> u64 {
        self.gateway
            .mailbox()
            .client_usage(&key.public().to_bytes())
            .messages
    }
}

const NOW: Timestamp = Timestamp::from_millis(5_000);

#[test]
fn a_recall_deletes_every_fragment_and_stores_only_its_notice() {
    let mut w = world(1);
    let secret = RecallSecret::random(&mut w.rng);
    let bob = SphinxKeyPair::from_secret_bytes(*w.bob.secret_bytes());
    let fragments: Vec<Delivery> = (0..3).map(|i| w.fragment(&bob, &secret, i, 3)).collect();
    let report = w.gateway.handle_deliveries(NOW, fragments);
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| *o == FinalHop::Stored { acked: true })
    );
    assert_eq!(w.stored(&bob), 3);

    let recall = w.recall(&bob, &secret, 3);
    let report = w.gateway.handle_delivery(NOW, recall);
    assert_eq!(
        report.outcomes,
        [FinalHop::Recalled {
            deleted: 3,
            acked: true
        }]
    );
    // The notice is stored even so: another copy of a fragment may have
    // reached Bob already; his client judges it.
    assert_eq!(w.stored(&bob), 1, "only the notice is left");
    let stats = w.gateway.stats().snapshot();
    assert_eq!(
        (stats.recalls, stats.recalled, stats.recalls_unmatched),
        (1, 3, 0)
    );
}

#[test]
fn a_partial_recall_deletes_what_is_left_and_stores_the_notice_acked_alike() {
    let mut w = world(2);
    let secret = RecallSecret::random(&mut w.rng);
    let bob = SphinxKeyPair::from_secret_bytes(*w.bob.secret_bytes());
    // Fragment 0 was delivered and acknowledged already: only 1 is stored.
    let one = w.fragment(&bob, &secret, 1, 2);
    w.gateway.handle_delivery(NOW, one);
    let recall = w.recall(&bob, &secret, 2);
    let report = w.gateway.handle_delivery(NOW, recall);
    assert_eq!(
        report.outcomes,
        [FinalHop::Recalled {
            deleted: 1,
            acked: true
        }]
    );
    assert_eq!(w.stored(&bob), 1, "the notice waits for Bob");
    let stored = w
        .gateway
        .mailbox()
        .list(&bob.public().to_bytes(), None, 10)
        .unwrap();
    assert_eq!(stored[0].recall_tag, None, "a notice cannot be recalled");
}

#[test]
fn a_recall_deletes_only_matching_tags_of_its_own_client() {
    let mut w = world(3);
    let secret = RecallSecret::random(&mut w.rng);
    let other = RecallSecret::random(&mut w.rng);
    let bob = SphinxKeyPair::from_secret_bytes(*w.bob.secret_bytes());
    let carol = SphinxKeyPair::from_secret_bytes(*w.carol.secret_bytes());
    let batch = vec![
        w.fragment(&bob, &secret, 0, 1),
        // Bob's other message, under another secret.
        w.fragment(&bob, &other, 0, 1),
        // Carol holds a body with the very same tag: not Bob's mailbox.
        w.fragment(&carol, &secret, 0, 1),
    ];
    w.gateway.handle_deliveries(NOW, batch);
    let recall = w.recall(&bob, &secret, 1);
    let report = w.gateway.handle_delivery(NOW, recall);
    assert!(matches!(
        report.outcomes[..],
        [FinalHop::Recalled { deleted: 1, .. }]
    ));
    assert_eq!(
        w.stored(&bob),
        2,
        "Bob's other message stays, and the notice"
    );
    assert_eq!(w.stored(&carol), 1, "Carol's mailbox is untouched");
}

#[test]
fn a_wrong_secret_deletes_nothing_and_is_counted() {
    let mut w = world(4);
    let secret = RecallSecret::random(&mut w.rng);
    let bob = SphinxKeyPair::from_secret_bytes(*w.bob.secret_bytes());
    let fragment = w.fragment(&bob, &secret, 0, 1);
    w.gateway.handle_delivery(NOW, fragment);
    let forged = RecallSecret::random(&mut w.rng);
    let recall = w.recall(&bob, &forged, 1);
    let report = w.gateway.handle_delivery(NOW, recall);
    assert_eq!(
        report.outcomes,
        [FinalHop::Recalled {
            deleted: 0,
            acked: true
        }]
    );
    assert_eq!(w.stored(&bob), 2, "the message and the notice");
    let stats = w.gateway.stats().snapshot();
    assert_eq!((stats.recalls, stats.recalls_unmatched), (1, 1));
    // Random tags (cover, unrecallable messages) match no secret either.
    let tag = RecallTag::random(&mut w.rng);
    assert!(!(0..4).any(|i| forged.tag(i) == tag));
}

#[test]
fn a_recall_of_no_fragment_or_over_the_cap_is_dropped_and_counted() {
    let mut w = world(5);
    let secret = RecallSecret::random(&mut w.rng);
    let bob = SphinxKeyPair::from_secret_bytes(*w.bob.secret_bytes());
    let fragment = w.fragment(&bob, &secret, 0, 1);
    w.gateway.handle_delivery(NOW, fragment);
    for count in [0, MAX_RECALL_FRAGMENTS + 1, u16::MAX] {
        let recall = w.recall(&bob, &secret, count);
        let report = w.gateway.handle_delivery(NOW, recall);
        assert_eq!(
            report.outcomes,
            [FinalHop::Dropped(GatewayDropReason::BadRecall)]
        );
        assert!(report.actions.is_empty(), "no ack for a dropped recall");
    }
    assert_eq!(w.stored(&bob), 1, "nothing deleted");
    let stats = w.gateway.stats().snapshot();
    assert_eq!(stats.dropped(GatewayDropReason::BadRecall), 3);
    assert_eq!(stats.recalls, 0);
}

#[test]
fn a_recall_to_the_drop_address_or_an_unknown_client_is_dropped() {
    let mut w = world(6);
    let secret = RecallSecret::random(&mut w.rng);
    let stranger = SphinxKeyPair::generate(&mut w.rng);
    let recall = w.recall(&stranger, &secret, 1);
    let report = w.gateway.handle_delivery(NOW, recall);
    assert_eq!(
        report.outcomes,
        [FinalHop::Dropped(GatewayDropReason::UnknownClient)]
    );
    let mut recall = w.recall(&stranger, &secret, 1);
    recall.destination = protocol::address::DROP_DESTINATION;
    let report = w.gateway.handle_delivery(NOW, recall);
    assert_eq!(
        report.outcomes,
        [FinalHop::Dropped(GatewayDropReason::BadPayload)]
    );
}
