//! Abuse that must cost the attacker more than the node, on the state
//! machines the node binaries run (the same code, no sockets): each test
//! states its bound and asserts it. The figures are in docs/reliability.md.

// The retired-key test measures what a packet costs, on the real clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    missing_docs
)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use fuzz_checks::fixtures::{self, CLIENT_KEY, GATEWAY_NODE, MIXER_NODE};
use gateway_core::{
    FinalHop, GatewayAction, GatewayConfig, GatewayCore, GatewayDropReason, Mailbox, MailboxConfig,
    MemoryStore,
};
use mixnode_core::{Action, DropReason, MixerRole};
use protocol::epoch::Epoch;
use protocol::frame::{Frame, SURB_ACK_HOLD};
use protocol::link::auth::prove;
use protocol::link::{ClientMessage, CloseReason, GatewayMessage, LinkDecoder, LinkMessage};
use protocol::packet::{Delivery, SURB_ID_SIZE, build_packet};
use protocol::surb::SurbId;
use protocol::time::Timestamp;

const START: Timestamp = Timestamp::from_millis(1_000_000);

fn forward_packet(rng: &mut rand_chacha::ChaCha20Rng, key_of_first_hop: u8) -> Vec<u8> {
    let mut first = fixtures::hop(MIXER_NODE);
    first.sphinx_key = fixtures::sphinx_key(key_of_first_hop).public();
    let route = [
        first,
        fixtures::hop(2),
        fixtures::hop(3),
        fixtures::hop(GATEWAY_NODE),
    ];
    let frame = Frame::NodeLoop.encode().unwrap();
    let destination = protocol::keys::NodeId([9; 32]).to_destination();
    build_packet(
        rng,
        &route,
        &[Duration::from_millis(1); 4],
        destination,
        [0; SURB_ID_SIZE],
        &frame,
    )
    .unwrap()
    .bytes
}

/// Packets built for a key the node retired cost it no more than the
/// multiplications of its live keys (current, next, previous: one each, the
/// MAC fails under each), never the blinding or the payload's unwrap; a
/// valid packet costs two and the payload's unwrap: three against two is
/// 1.5 valid packets. Seconds are not asserted (on a loaded machine they say
/// nothing); the ratio is printed beside the refusals that are: every one is
/// refused as `unknown_key`, counted, and leaves no replay tag.
#[test]
fn a_flood_under_a_retired_key_is_refused_counted_and_leaves_no_tag() {
    let mut rng = fixtures::rng(40);
    let mixer = fixtures::mixer(MixerRole::Mix);
    // Epoch 0's key (fixture key 1) is retired once epoch 2 is current.
    mixer.install_key(Epoch(1), fixtures::sphinx_key(101));
    mixer.install_key(Epoch(2), fixtures::sphinx_key(102));
    mixer.install_key(Epoch(3), fixtures::sphinx_key(103));
    mixer.rotate(Epoch(2));
    assert_eq!(mixer.live_epochs(), vec![Epoch(1), Epoch(2), Epoch(3)]);
    let retired: Vec<Vec<u8>> = (0..200)
        .map(|_| forward_packet(&mut rng, MIXER_NODE))
        .collect();
    let valid: Vec<Vec<u8>> = (0..200).map(|_| forward_packet(&mut rng, 102)).collect();
    let state = mixer.replay_state();
    let extra = forward_packet(&mut rng, MIXER_NODE);
    assert_eq!(
        mixer.handle_packet(START, &extra),
        Err(DropReason::UnknownKey)
    );
    assert_eq!(
        mixer.replay_state(),
        state,
        "a refused packet leaves no tag"
    );
    // Interleaved, so that whatever else the machine does weighs on both.
    let (mut flood, mut honest) = (Duration::ZERO, Duration::ZERO);
    for (bad, good) in retired.iter().zip(&valid) {
        let started = Instant::now();
        assert_eq!(mixer.handle_packet(START, bad), Err(DropReason::UnknownKey));
        let middle = Instant::now();
        let result = mixer.handle_packet(START, good);
        honest += middle.elapsed();
        flood += middle - started;
        assert!(matches!(result, Ok(Action::Forward(_))), "{result:?}");
    }
    assert!(
        mixer.replay_state() != state,
        "the valid packets left their tags"
    );
    let n = retired.len() as f64;
    let (flood, honest) = (flood.as_secs_f64() / n, honest.as_secs_f64() / n);
    let ratio = flood / honest;
    println!(
        "retired-key flood: {:.0} µs per packet, valid {:.0} µs, ratio {ratio:.2}",
        flood * 1e6,
        honest * 1e6
    );
    let dropped = mixer.stats().snapshot().dropped_total();
    assert_eq!(dropped, retired.len() as u64 + 1, "every refusal counted");
}

fn gateway(config: GatewayConfig, mailbox: MailboxConfig) -> GatewayCore<MemoryStore> {
    let mailbox = Mailbox::open(MemoryStore::new(), mailbox).unwrap();
    GatewayCore::new(fixtures::gateway_id(), config, mailbox).unwrap()
}

fn closes(actions: &[GatewayAction], reason: CloseReason) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, GatewayAction::Close { reason: r, .. } if *r == reason))
        .count()
}

/// Authenticates the fixture client on a new session; returns the actions.
fn honest_login(core: &mut GatewayCore<MemoryStore>, now: Timestamp) -> Vec<GatewayAction> {
    let mut rng = fixtures::rng(41);
    let (session, actions) = core.open_session(now, IpAddr::from([198, 51, 100, 7]), &mut rng);
    let mut decoder = LinkDecoder::<GatewayMessage>::new();
    for a in &actions {
        if let GatewayAction::Send { bytes, .. } = a {
            decoder.push(bytes);
        }
    }
    let Ok(Some(GatewayMessage::Challenge { gateway, ephemeral })) = decoder.next_message() else {
        return actions;
    };
    let client = fixtures::sphinx_key(CLIENT_KEY);
    let hello = ClientMessage::Authenticate {
        client_key: client.public().to_bytes(),
        proof: prove(client.secret(), &gateway, &ephemeral),
    };
    core.handle_client_bytes(now, session, &hello.encode())
}

/// A client opening sessions as fast as it can and never authenticating:
/// bound, one address gets its burst of new sessions and is refused the
/// rest as `source_limited`; from many addresses, at most `max_sessions`
/// open at once, every one past it closed at once as `gateway_full`; all
/// counted, all closed within the auth timeout, and an honest client gets
/// in as soon as they are.
#[test]
fn a_session_flood_holds_at_most_max_sessions_for_at_most_the_auth_timeout() {
    let config = GatewayConfig {
        max_sessions: 100,
        ..GatewayConfig::default()
    };
    let mut core = gateway(config, MailboxConfig::default());
    let mut rng = fixtures::rng(42);
    // One address: held to its burst of new sessions, the rest refused.
    let mut limited = 0;
    for _ in 0..1_000 {
        let (_, actions) = core.open_session(START, IpAddr::from([203, 0, 113, 1]), &mut rng);
        limited += closes(&actions, CloseReason::SourceLimited);
    }
    let burst = config.source_limits.sessions.burst as usize;
    assert_eq!(limited, 1_000 - burst, "one source gets its burst");
    assert_eq!(
        core.stats().snapshot().sessions_source_limited,
        limited as u64
    );
    assert_eq!(core.session_count(), burst);
    // Many addresses (a botnet): held to max_sessions in all.
    let mut full = 0;
    for i in 0..10_000u32 {
        let [_, a, b, c] = i.to_be_bytes();
        let (_, actions) = core.open_session(START, IpAddr::from([10, a, b, c]), &mut rng);
        full += closes(&actions, CloseReason::GatewayFull);
        assert!(core.session_count() <= 100);
    }
    assert_eq!(
        full,
        10_000 - (100 - burst),
        "every session past the bound refused"
    );
    assert_eq!(
        core.stats().snapshot().sessions_refused,
        full as u64,
        "and counted"
    );
    let refused = honest_login(&mut core, START);
    assert_eq!(
        closes(&refused, CloseReason::GatewayFull),
        1,
        "full while flooded"
    );
    let later = START.saturating_add(config.auth_timeout);
    let timeouts = core.handle_timeout(later);
    assert_eq!(closes(&timeouts, CloseReason::AuthTimeout), 100);
    assert_eq!(core.stats().snapshot().auth_timeouts, 100, "counted");
    assert_eq!(core.session_count(), 0);
    let welcome = honest_login(&mut core, later);
    assert!(
        welcome
            .iter()
            .all(|a| !matches!(a, GatewayAction::Close { .. }))
    );
    assert!(core.is_online(&fixtures::sphinx_key(CLIENT_KEY).public().to_bytes()));
}

/// A peer that sends one byte a second: it holds one partial message at
/// most and is closed at the auth timeout, however slowly it writes.
#[test]
fn a_peer_writing_one_byte_a_second_is_closed_at_the_auth_timeout() {
    let mut core = gateway(GatewayConfig::default(), MailboxConfig::default());
    let mut rng = fixtures::rng(43);
    let (session, _) = core.open_session(START, IpAddr::from([198, 51, 100, 9]), &mut rng);
    let message = ClientMessage::Authenticate {
        client_key: [1; 32],
        proof: [2; 32],
    }
    .encode();
    let mut now = START;
    let mut closed_at = None;
    for (second, byte) in message.iter().cycle().take(60).enumerate() {
        now = START.saturating_add(Duration::from_secs(second as u64));
        let mut actions = core.handle_client_bytes(now, session, &[*byte]);
        actions.extend(core.handle_timeout(now));
        if closes(&actions, CloseReason::AuthTimeout) == 1 {
            closed_at = Some(second);
            break;
        }
        assert!(
            actions
                .iter()
                .all(|a| !matches!(a, GatewayAction::Close { .. }))
        );
    }
    let timeout = GatewayConfig::default().auth_timeout.as_secs() as usize;
    assert_eq!(closed_at, Some(timeout), "closed at the auth timeout");
    assert_eq!(core.stats().snapshot().auth_timeouts, 1, "counted");
    assert_eq!(core.session_count(), 0);
    let _ = now;
}

/// A client that authenticates and never acknowledges what it is sent: at
/// most `delivery_window` messages are in flight on its session; mail past
/// its mailbox's quota is refused as `mailbox_full`, counted, and never
/// acked back to its sender, while another client's mail is still stored.
#[test]
fn a_client_that_never_reads_holds_its_window_and_its_quota_and_no_more() {
    let config = GatewayConfig {
        delivery_window: 8,
        ..GatewayConfig::default()
    };
    let mailbox = MailboxConfig {
        max_messages_per_client: 50,
        ..MailboxConfig::default()
    };
    let mut core = gateway(config, mailbox);
    let client = fixtures::sphinx_key(CLIENT_KEY).public().to_bytes();
    let welcome = honest_login(&mut core, START);
    assert!(core.is_online(&client), "{welcome:?}");
    let other = [5u8; 32];
    core.register_client(START, &other).unwrap();
    let mut rng = fixtures::rng(44);
    let payload = fuzz_checks::seeds::mail_payload(&mut rng);
    let mut pushed = 0;
    let mut full = 0;
    for i in 0..200u64 {
        let now = START.saturating_add(Duration::from_millis(i));
        let report = core.handle_delivery(
            now,
            Delivery {
                destination: client,
                surb_id: SurbId([0; SURB_ID_SIZE]),
                payload: payload.clone(),
            },
        );
        match report.outcomes.as_slice() {
            [FinalHop::Stored { .. } | FinalHop::Pushed { .. }] => {}
            [FinalHop::Dropped(GatewayDropReason::MailboxFull)] => {
                full += 1;
                assert!(
                    report
                        .actions
                        .iter()
                        .all(|a| !matches!(a, GatewayAction::Forward(_))),
                    "refused mail is not acked"
                );
            }
            other => panic!("{other:?}"),
        }
        pushed += report
            .actions
            .iter()
            .filter(|a| matches!(a, GatewayAction::Send { .. }))
            .count();
    }
    assert_eq!(pushed, 8, "no more than the window in flight");
    // The window's eight were pushed and held, not stored: when their hold
    // ends untaken there is no room for them either, and they go unacked.
    assert_eq!(full, 142, "refused past the quota");
    let released = core.handle_timeout(START.saturating_add(SURB_ACK_HOLD * 2));
    let acks = released
        .iter()
        .filter(|a| matches!(a, GatewayAction::Forward(_)))
        .count();
    assert_eq!(acks, 50, "only what was stored is acked");
    assert_eq!(core.mailbox().client_usage(&client).messages, 50);
    let stats = core.stats().snapshot();
    assert_eq!(
        stats.dropped(GatewayDropReason::MailboxFull),
        150,
        "counted"
    );
    let report = core.handle_delivery(
        START,
        Delivery {
            destination: other,
            surb_id: SurbId([0; SURB_ID_SIZE]),
            payload,
        },
    );
    assert!(matches!(
        report.outcomes.as_slice(),
        [FinalHop::Stored { .. }]
    ));
}
