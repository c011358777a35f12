//! Registrations that expire when unused, and limits per source address on
//! new sessions and new registrations.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::*;
use gateway_core::{
    GatewayConfig, GatewayCore, GatewayDropReason, Mailbox, MailboxConfig, MemoryStore,
    SourceLimits, ThrottleConfig,
};
use protocol::keys::{NodeId, SphinxKeyPair};
use protocol::link::{CloseReason, GatewayMessage};
use protocol::packet::{Delivery, SURB_ID_SIZE};
use protocol::surb::SurbId;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const GW: NodeId = NodeId([7; 32]);
const DAY: u64 = 86_400;

fn at(secs: u64) -> Timestamp {
    Timestamp::ZERO.saturating_add(Duration::from_secs(secs))
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

/// A sealed SURB reply for `client`, stored as it comes.
fn mail_for(client: [u8; 32], n: u8) -> Delivery {
    Delivery {
        destination: client,
        surb_id: SurbId([n.max(1); SURB_ID_SIZE]),
        payload: vec![n; protocol::link::DELIVERY_PAYLOAD_SIZE],
    }
}

fn refused(messages: &[GatewayMessage]) -> bool {
    messages
        == [GatewayMessage::Close {
            reason: CloseReason::SourceLimited,
        }]
}

#[test]
fn unused_registrations_expire_with_their_mailboxes_and_used_ones_stay() {
    let config = GatewayConfig {
        registration_expiry: Duration::from_secs(30 * DAY),
        ..GatewayConfig::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mailbox = Mailbox::open(
        MemoryStore::new(),
        MailboxConfig {
            retention: Duration::from_secs(365 * DAY),
            ..MailboxConfig::default()
        },
    )
    .unwrap();
    let mut core = GatewayCore::new(GW, config, mailbox).unwrap();
    let [gone, kept, online] = [0; 3].map(|_| SphinxKeyPair::generate(&mut rng));
    for key in [&gone, &kept, &online] {
        let (mut c, _) = connect(&mut core, &mut rng, at(0), key);
        core.close_session(c.session);
        c.closed = true;
        core.handle_delivery(at(60), mail_for(key.public().to_bytes(), 1));
    }
    assert_eq!(core.registered_count(), 3);
    assert_eq!(core.mailbox().usage().messages, 3);

    // `kept` comes back on day 20; `online` connects on day 30 and stays.
    let (c, _) = connect(&mut core, &mut rng, at(20 * DAY), &kept);
    core.close_session(c.session);
    let _online = connect(&mut core, &mut rng, at(30 * DAY), &online);

    // A registration counts in whole days and lasts 30 of them after the
    // day of the last connection: on day 30, `gone` (day 0) is still kept.
    core.handle_timeout(at(30 * DAY + 1));
    assert_eq!(core.registered_count(), 3);
    // Day 31: `gone` expires, with its mail.
    core.handle_timeout(at(31 * DAY + 1));
    let gone_key = gone.public().to_bytes();
    assert!(!core.is_registered(&gone_key));
    assert!(core.is_registered(&kept.public().to_bytes()));
    assert!(core.is_registered(&online.public().to_bytes()));
    assert_eq!(core.mailbox().client_usage(&gone_key).messages, 0);
    assert_eq!(core.mailbox().usage().messages, 2);
    let s = core.stats().snapshot();
    assert_eq!((s.registrations_expired, s.registered), (1, 2));

    // Mail for the forgotten client is refused again, and counted so.
    core.handle_delivery(at(31 * DAY + 2), mail_for(gone_key, 2));
    assert_eq!(
        core.stats()
            .snapshot()
            .dropped(GatewayDropReason::UnknownClient),
        1
    );
    // Its next connection registers it afresh.
    connect(&mut core, &mut rng, at(33 * DAY), &gone);
    assert!(core.is_registered(&gone_key));

    // `online` stays registered however long its session lasts.
    core.handle_timeout(at(200 * DAY));
    assert!(core.is_registered(&online.public().to_bytes()));
    assert!(!core.is_registered(&kept.public().to_bytes()));
}

#[test]
fn registrations_survive_a_restart_with_their_day() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let config = GatewayConfig {
        registration_expiry: Duration::from_secs(10 * DAY),
        ..GatewayConfig::default()
    };
    let mut core = memory_core(GW, config);
    let client = SphinxKeyPair::generate(&mut rng);
    let key = client.public().to_bytes();
    let (c, _) = connect(&mut core, &mut rng, at(5 * DAY), &client);
    core.close_session(c.session);
    // The store keeps the day: a gateway reopened on it expires on time.
    let store = core.mailbox().store().clone();
    let mailbox = Mailbox::open(store, MailboxConfig::default()).unwrap();
    let mut reopened: GatewayCore<MemoryStore> = GatewayCore::new(GW, config, mailbox).unwrap();
    reopened.handle_timeout(at(15 * DAY + 1));
    assert!(reopened.is_registered(&key), "day 15 is the last kept");
    reopened.handle_timeout(at(16 * DAY + 1));
    assert!(!reopened.is_registered(&key));
}

#[test]
fn one_source_cannot_open_sessions_without_bound_and_others_are_not_affected() {
    let config = GatewayConfig {
        source_limits: SourceLimits {
            sessions: ThrottleConfig {
                rate: 1.0,
                burst: 5.0,
            },
            ..SourceLimits::default()
        },
        ..GatewayConfig::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut core = memory_core(GW, config);
    let client = SphinxKeyPair::generate(&mut rng);
    let key = client.public().to_bytes();
    let mut accepted = 0;
    for _ in 0..50 {
        let (c, messages) = connect_from(&mut core, &mut rng, at(0), &client, key, ip(1));
        if refused(&messages) {
            assert!(c.closed);
        } else {
            assert_eq!(messages.first(), Some(&GatewayMessage::Welcome));
            accepted += 1;
        }
    }
    assert_eq!(accepted, 5, "the burst, no more");
    let s = core.stats().snapshot();
    assert_eq!((s.sessions_source_limited, s.authenticated), (45, 5));

    // Another address, and the same one's next token a second later, get in.
    let other = SphinxKeyPair::generate(&mut rng);
    let (_, m) = connect_from(
        &mut core,
        &mut rng,
        at(0),
        &other,
        other.public().to_bytes(),
        ip(2),
    );
    assert_eq!(m.first(), Some(&GatewayMessage::Welcome));
    let (_, m) = connect_from(&mut core, &mut rng, at(1), &client, key, ip(1));
    assert_eq!(m.first(), Some(&GatewayMessage::Welcome));
    // IPv6 addresses count per /64: a second address of the same /64 shares
    // the budget.
    let v6a: IpAddr = "2001:db8::1".parse().unwrap();
    let v6b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
    for _ in 0..5 {
        let (_, m) = connect_from(&mut core, &mut rng, at(1), &client, key, v6a);
        assert!(!refused(&m));
    }
    let (_, m) = connect_from(&mut core, &mut rng, at(1), &client, key, v6b);
    assert!(refused(&m));
    let (_, m) = connect_from(
        &mut core,
        &mut rng,
        at(1),
        &client,
        key,
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    );
    assert!(!refused(&m), "another /64");
}

#[test]
fn one_source_cannot_register_keys_without_bound_but_known_clients_still_connect() {
    let config = GatewayConfig {
        source_limits: SourceLimits {
            registrations: ThrottleConfig {
                rate: 1.0 / 3600.0,
                burst: 3.0,
            },
            ..SourceLimits::default()
        },
        ..GatewayConfig::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut core = memory_core(GW, config);
    let keys: Vec<SphinxKeyPair> = (0..10).map(|_| SphinxKeyPair::generate(&mut rng)).collect();
    let mut registered = Vec::new();
    for k in &keys {
        let (c, messages) =
            connect_from(&mut core, &mut rng, at(0), k, k.public().to_bytes(), ip(9));
        if refused(&messages) {
            assert!(c.closed);
        } else {
            assert_eq!(messages.first(), Some(&GatewayMessage::Welcome));
            core.close_session(c.session);
            registered.push(k.public().to_bytes());
        }
    }
    assert_eq!(registered.len(), 3);
    assert_eq!(core.registered_count(), 3);
    let s = core.stats().snapshot();
    assert_eq!(s.registrations_source_limited, 7);
    assert_eq!(s.registered, 3);
    // A client already registered is never held back by the registration budget.
    let known = keys
        .iter()
        .find(|k| registered.contains(&k.public().to_bytes()))
        .unwrap();
    let (_, m) = connect_from(
        &mut core,
        &mut rng,
        at(1),
        known,
        known.public().to_bytes(),
        ip(9),
    );
    assert_eq!(m.first(), Some(&GatewayMessage::Welcome));
    // An hour later, one more key may register.
    let late = keys
        .iter()
        .find(|k| !registered.contains(&k.public().to_bytes()))
        .unwrap();
    let (_, m) = connect_from(
        &mut core,
        &mut rng,
        at(3601),
        late,
        late.public().to_bytes(),
        ip(9),
    );
    assert_eq!(m.first(), Some(&GatewayMessage::Welcome));
}
