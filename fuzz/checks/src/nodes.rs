//! Packets into the nodes: the mixer of each role, a gateway's client
//! sessions and its final hop.

use std::time::Duration;

use gateway_core::{
    FinalHop, GatewayAction, GatewayConfig, GatewayCore, GatewayDropReason, Mailbox, MailboxConfig,
    MailboxStore, MemoryStore, SessionId,
};
use mixnode_core::{Action, DropReason, MixerRole};
use protocol::address::DROP_DESTINATION;
use protocol::frame::SURB_ACK_HOLD;
use protocol::link::auth::prove;
use protocol::link::{ClientMessage, GatewayMessage, LinkDecoder, LinkMessage};
use protocol::packet::{Delivery, PACKET_SIZE, SURB_ID_SIZE};
use protocol::surb::SurbId;
use protocol::time::Timestamp;

use crate::fixtures;
use crate::input::{Input, MAX_STEPS};

/// The instant every check starts at.
const START: Timestamp = Timestamp::from_millis(1_000_000);

fn mixer_packet(role: MixerRole, packet: &[u8]) {
    let mixer = fixtures::mixer(role);
    let before = mixer.replay_state();
    let result = mixer.handle_packet(START, packet);
    let spent = mixer.replay_state() != before;
    match &result {
        Err(DropReason::WrongSize) => assert_ne!(packet.len(), PACKET_SIZE),
        Err(DropReason::UnknownKey) => {
            assert!(!spent, "a packet refused before its tag leaves no tag");
        }
        Err(DropReason::QueueFull | DropReason::UnknownNextHop | DropReason::LinkDown) => {
            panic!("the mixer decides no {result:?}")
        }
        Err(_) => {}
        Ok(Action::Forward(t)) => {
            assert_eq!(t.packet.len(), PACKET_SIZE, "one size on every link");
            let cap = mixer.config().max_delay;
            assert!(t.send_at <= START.saturating_add(cap), "delay capped");
        }
        Ok(Action::Deliver(d)) => {
            assert_eq!(role, MixerRole::Exit, "a mix node delivers nothing");
            assert!(d.payload.len() < PACKET_SIZE);
        }
        Ok(Action::LoopReturned) => {}
    }
    if spent {
        // Whatever came of it, the tag is taken: the same bytes are a replay
        // (counted in the filter's load, as every tag offered is).
        assert_eq!(mixer.handle_packet(START, packet), Err(DropReason::Replay));
    } else {
        assert!(result.is_err(), "an accepted packet leaves its tag");
    }
    let stats = mixer.stats().snapshot();
    assert_eq!(stats.received, if spent { 2 } else { 1 });
}

/// A packet into a mix node's mixer. Refused before the replay check: no
/// state changes; past it: the same bytes again are a replay; forwarded
/// packets are one size and never held past the delay cap; a mix node
/// delivers nothing.
pub fn mixer_mix(data: &[u8]) {
    mixer_packet(MixerRole::Mix, data);
}

/// A packet into an exit gateway's mixer (the same properties).
pub fn mixer_exit(data: &[u8]) {
    mixer_packet(MixerRole::Exit, data);
}

/// A gateway with the fixture client registered and `stored` messages for it.
fn gateway(stored: usize) -> GatewayCore<MemoryStore> {
    let client = fixtures::sphinx_key(fixtures::CLIENT_KEY)
        .public()
        .to_bytes();
    let mut store = MemoryStore::new();
    store
        .register_client(&client, gateway_core::RegistrationDay::of(START))
        .expect("memory store");
    let mut mailbox = Mailbox::open(store, MailboxConfig::default()).expect("memory store");
    for i in 0..stored {
        let payload = vec![u8::try_from(i % 256).unwrap_or(0); 100];
        mailbox
            .put(START, &client, SurbId([0; SURB_ID_SIZE]), payload, None)
            .expect("room");
    }
    let config = GatewayConfig {
        delivery_window: 4,
        max_clients: 2,
        ..GatewayConfig::default()
    };
    GatewayCore::new(fixtures::gateway_id(), config, mailbox).expect("memory store")
}

/// Every message the gateway writes, decoded; the bytes must decode whole.
fn sent_to(session: SessionId, actions: &[GatewayAction]) -> Vec<GatewayMessage> {
    let mut out = Vec::new();
    for action in actions {
        if let GatewayAction::Send { session: s, bytes } = action {
            assert_eq!(*s, session, "one session here");
            let mut decoder = LinkDecoder::<GatewayMessage>::new();
            decoder.push(bytes);
            while let Some(m) = decoder
                .next_message()
                .expect("the gateway writes its format")
            {
                out.push(m);
            }
            assert_eq!(decoder.buffered(), 0, "whole messages only");
        }
    }
    out
}

/// Bytes from a client's stream into a gateway session. First byte: bit 0
/// authenticates the session first (with a valid proof), bit 1 puts mail in
/// the client's box first. Then records of stream bytes, each one read.
/// Checked: what the gateway writes decodes; a session that is closed
/// says why once and is gone; a session that never authenticated registers
/// nobody, forwards nothing and touches no mailbox; mail only leaves the box
/// on an ack of an authenticated session.
pub fn gateway_session(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let authenticate = mode & 1 == 1;
    let stored = if mode & 2 == 2 { 6 } else { 0 };
    let mut core = gateway(stored);
    let mut rng = fixtures::rng(u64::from(mode));
    let source = std::net::IpAddr::from([192, 0, 2, mode]);
    let (session, actions) = core.open_session(START, source, &mut rng);
    let Some(GatewayMessage::Challenge { gateway, ephemeral }) =
        sent_to(session, &actions).into_iter().next()
    else {
        panic!("a session opens with a challenge");
    };
    let client = fixtures::sphinx_key(fixtures::CLIENT_KEY);
    let mut now = START;
    if authenticate {
        let hello = ClientMessage::Authenticate {
            client_key: client.public().to_bytes(),
            proof: prove(client.secret(), &gateway, &ephemeral),
        }
        .encode();
        let sent = sent_to(session, &core.handle_client_bytes(now, session, &hello));
        assert_eq!(sent.first(), Some(&GatewayMessage::Welcome));
        assert!(matches!(
            sent.get(1),
            Some(GatewayMessage::PrekeyStock { .. })
        ));
        assert_eq!(sent.len(), 2 + stored.min(4), "the window's worth pushed");
    }
    let mut open = true;
    let mut mail = core.mailbox().usage().messages;
    while !input.is_empty() {
        now = now.saturating_add(Duration::from_millis(u64::from(input.u8())));
        let bytes = input.record();
        let actions = core.handle_client_bytes(now, session, bytes);
        if !open {
            assert!(actions.is_empty(), "a closed session is gone");
            continue;
        }
        let messages = sent_to(session, &actions);
        let closes: Vec<_> = actions
            .iter()
            .filter(|a| matches!(a, GatewayAction::Close { .. }))
            .collect();
        assert!(closes.len() <= 1, "closed once");
        if let Some(GatewayAction::Close { reason, .. }) = closes.first() {
            assert!(messages.contains(&GatewayMessage::Close { reason: *reason }));
            open = false;
            assert_eq!(core.session_count(), 0);
        }
        let forwards = actions
            .iter()
            .filter(|a| matches!(a, GatewayAction::Forward(_)))
            .count();
        let left = core.mailbox().usage().messages;
        if !authenticate {
            assert_eq!(forwards, 0, "nothing forwarded before authentication");
            assert_eq!(left, mail, "no mailbox touched before authentication");
            assert!(!core.is_online(&client.public().to_bytes()));
        }
        assert!(left <= mail, "nothing stored from a client stream");
        mail = left;
    }
    let stats = core.stats().snapshot();
    if !authenticate {
        assert_eq!(stats.authenticated, 0);
    }
}

/// Final-hop packets as the exit mixer hands them to the gateway: records
/// of `destination choice, SURB choice, payload`. Checked: one outcome per
/// delivery; the mailbox grows by exactly the deliveries stored less what
/// recalls deleted, and only for the registered client; every ack sent is
/// for a stored (or drop cover, or recall) delivery, at the end of its hold;
/// whatever is refused is counted.
pub fn gateway_final_hop(data: &[u8]) {
    let mut input = Input::new(data);
    let mut core = gateway(0);
    let client = fixtures::sphinx_key(fixtures::CLIENT_KEY)
        .public()
        .to_bytes();
    let mut now = START;
    // Each step costs public-key operations: a bounded number keeps a run fast.
    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        let mut deliveries = Vec::new();
        for _ in 0..=(input.u8() % 4) {
            let destination = match input.u8() % 3 {
                0 => client,
                1 => DROP_DESTINATION,
                _ => [7; 32],
            };
            let mut surb_id = [0u8; SURB_ID_SIZE];
            if input.u8() % 2 == 1 {
                let id = input.take(SURB_ID_SIZE);
                if let Some(dst) = surb_id.get_mut(..id.len()) {
                    dst.copy_from_slice(id);
                }
            }
            deliveries.push(Delivery {
                destination,
                surb_id: SurbId(surb_id),
                payload: input.record().to_vec(),
            });
        }
        let before = core.mailbox().usage();
        let dropped_before = core.stats().snapshot().dropped_total();
        let report = core.handle_deliveries(now, deliveries.clone());
        assert_eq!(report.outcomes.len(), deliveries.len());
        let mut stored = 0u64;
        let mut recalled = 0u64;
        let mut acked = 0usize;
        let mut refused = 0u64;
        for (delivery, outcome) in deliveries.iter().zip(&report.outcomes) {
            match outcome {
                FinalHop::Stored { acked: a } => {
                    assert_eq!(delivery.destination, client, "only a registered client");
                    stored += 1;
                    acked += usize::from(*a);
                }
                FinalHop::Discarded { acked: a } => {
                    assert_eq!(delivery.destination, DROP_DESTINATION);
                    acked += usize::from(*a);
                    refused += 1;
                }
                FinalHop::Recalled { deleted, acked: a } => {
                    assert_eq!(delivery.destination, client, "only a registered client");
                    // The notice is stored whatever the recall found.
                    stored += 1;
                    recalled += deleted;
                    acked += usize::from(*a);
                }
                // Never drawn: no delivery here goes to the prekey service,
                // and no client is online to push to.
                FinalHop::Prekey(_) => {}
                FinalHop::Pushed { .. } => panic!("pushed with no session open"),
                FinalHop::Dropped(reason) => {
                    if delivery.destination == [7; 32] {
                        assert_eq!(*reason, GatewayDropReason::UnknownClient);
                    }
                    refused += 1;
                }
            }
        }
        let after = core.mailbox().usage();
        assert_eq!(
            after.messages + recalled,
            before.messages + stored,
            "one message per store, less what recalls deleted"
        );
        // The acks leave at the end of their hold.
        let released = core.handle_timeout(now.saturating_add(SURB_ACK_HOLD));
        let forwards = report
            .actions
            .iter()
            .chain(&released)
            .filter(|a| matches!(a, GatewayAction::Forward(_)))
            .count();
        assert_eq!(forwards, acked, "an ack per stored or discarded delivery");
        let dropped = core.stats().snapshot().dropped_total() - dropped_before;
        assert_eq!(dropped, refused, "every refusal counted");
        now = now.saturating_add(Duration::from_secs(1));
    }
}
