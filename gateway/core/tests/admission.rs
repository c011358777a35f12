//! Closed admission: only clients enrolled with an unused invite are
//! served; an invite serves once; a revoked client is refused and its
//! mailbox is gone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{LOOPBACK, LinkClient, memory_core};
use gateway_core::{GatewayConfig, GatewayCore, MemoryStore, invite_digest};
use protocol::keys::{IdentityKeyPair, SphinxKeyPair};
use protocol::link::auth::prove;
use protocol::link::{ClientMessage, CloseReason, GatewayMessage, LinkDecoder, LinkMessage};
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Opens a session, sends `invite` (if any) and authenticates as `key`;
/// the gateway's answer: `Welcome` or a `Close` with its reason.
fn attempt(
    core: &mut GatewayCore<MemoryStore>,
    rng: &mut ChaCha20Rng,
    key: &SphinxKeyPair,
    invite: Option<[u8; 16]>,
) -> GatewayMessage {
    let now = Timestamp::from_millis(1_000);
    let (session, actions) = core.open_session(now, LOOPBACK, rng);
    let mut client = LinkClient {
        key: key.clone(),
        session,
        decoder: LinkDecoder::new(),
        closed: false,
    };
    let [GatewayMessage::Challenge { gateway, ephemeral }] = client.receive(&actions)[..] else {
        panic!("a challenge expected");
    };
    let mut bytes = Vec::new();
    if let Some(invite) = invite {
        bytes.extend(ClientMessage::Enroll { invite }.encode());
    }
    bytes.extend(
        ClientMessage::Authenticate {
            client_key: key.public().to_bytes(),
            proof: prove(key.secret(), &gateway, &ephemeral),
        }
        .encode(),
    );
    let actions = core.handle_client_bytes(now, session, &bytes);
    client.receive(&actions).remove(0)
}

fn closed_gateway(rng: &mut ChaCha20Rng) -> GatewayCore<MemoryStore> {
    let config = GatewayConfig {
        open_registration: false,
        ..GatewayConfig::default()
    };
    memory_core(IdentityKeyPair::generate(rng).node_id(), config)
}

const REFUSED: GatewayMessage = GatewayMessage::Close {
    reason: CloseReason::NotRegistered,
};

#[test]
fn a_closed_gateway_serves_only_enrolled_clients_and_each_invite_once() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut core = closed_gateway(&mut rng);
    let (first, second) = ([1u8; 16], [2u8; 16]);
    core.set_invites([invite_digest(&first), invite_digest(&second)]);
    let (alice, bob, carol) = (
        SphinxKeyPair::generate(&mut rng),
        SphinxKeyPair::generate(&mut rng),
        SphinxKeyPair::generate(&mut rng),
    );

    // No invite, or one never issued: refused, not registered.
    assert_eq!(attempt(&mut core, &mut rng, &alice, None), REFUSED);
    assert_eq!(attempt(&mut core, &mut rng, &alice, Some([9; 16])), REFUSED);
    assert_eq!(core.registered_count(), 0);
    // An issued invite: served, and registered from then on.
    assert_eq!(
        attempt(&mut core, &mut rng, &alice, Some(first)),
        GatewayMessage::Welcome
    );
    assert_eq!(
        core.take_redeemed_invites(),
        vec![(invite_digest(&first), alice.public().to_bytes())]
    );
    assert_eq!(
        attempt(&mut core, &mut rng, &alice, None),
        GatewayMessage::Welcome,
        "an enrolled client needs no invite again"
    );
    // The same invite for another key: refused.
    assert_eq!(attempt(&mut core, &mut rng, &bob, Some(first)), REFUSED);
    assert_eq!(
        attempt(&mut core, &mut rng, &bob, Some(second)),
        GatewayMessage::Welcome
    );
    assert_eq!(core.registered_count(), 2);
    assert_eq!(
        core.take_redeemed_invites(),
        vec![(invite_digest(&second), bob.public().to_bytes())]
    );
    let stats = core.stats().snapshot();
    assert_eq!((stats.enrolled, stats.enrollments_refused), (2, 3));

    // Revoked: the registration goes, and no invite brings the key back.
    let mut actions = Vec::new();
    assert!(core.revoke(&alice.public().to_bytes(), &mut actions));
    assert_eq!(core.registered_count(), 1);
    core.set_invites([invite_digest(&[3u8; 16])]);
    assert_eq!(attempt(&mut core, &mut rng, &alice, None), REFUSED);
    assert_eq!(attempt(&mut core, &mut rng, &alice, Some([3; 16])), REFUSED);
    // ... while the unused invite still serves someone else.
    assert_eq!(
        attempt(&mut core, &mut rng, &carol, Some([3; 16])),
        GatewayMessage::Welcome
    );
    assert_eq!(core.stats().snapshot().revoked, 1);
}

#[test]
fn an_open_gateway_ignores_invites_and_a_second_enroll_is_malformed() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let id = IdentityKeyPair::generate(&mut rng).node_id();
    let mut core = memory_core(id, GatewayConfig::default());
    let dave = SphinxKeyPair::generate(&mut rng);
    assert_eq!(
        attempt(&mut core, &mut rng, &dave, Some([7; 16])),
        GatewayMessage::Welcome
    );
    assert!(core.take_redeemed_invites().is_empty());
    // Two Enroll messages in one session: the session is dropped.
    let now = Timestamp::from_millis(1_000);
    let (session, _) = core.open_session(now, LOOPBACK, &mut rng);
    let mut bytes = ClientMessage::Enroll { invite: [1; 16] }.encode();
    bytes.extend(ClientMessage::Enroll { invite: [2; 16] }.encode());
    let actions = core.handle_client_bytes(now, session, &bytes);
    assert!(
        LinkClient::receive_all(&actions).contains(&GatewayMessage::Close {
            reason: CloseReason::Malformed
        })
    );
}
