//! What a client reads: deliveries from its gateway, end-to-end messages,
//! prekey bundles and address cards.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use client_core::sessions::{AddressCard, SessionBook};
use client_core::{ClientConfig, ClientCore, DeliveryDrop, DeliveryOutcome, RouteSource};
use e2ee::{
    InitialInfo, LocalIdentity, MessageTag, PrekeyBundle, PrekeySecrets, Session, UnixSeconds,
};
use protocol::ClientAddress;
use protocol::fragment::ReassemblyLimits;
use protocol::frame::SealedContent;
use protocol::keys::NodeId;
use protocol::link::DELIVERY_PAYLOAD_SIZE;
use protocol::packet::{RouteHop, SURB_ID_SIZE};
use protocol::seal::SEALED_PLAINTEXT_SIZE;
use protocol::surb::SurbId;
use protocol::time::Timestamp;
use rand::CryptoRng;

use crate::fixtures;
use crate::input::{Input, MAX_STEPS};

/// A route source with no topology: the delivery checks send nothing.
pub struct NoRoutes;

impl RouteSource for NoRoutes {
    fn route_to(&self, _: &mut dyn CryptoRng, _: NodeId) -> Option<Vec<RouteHop>> {
        None
    }

    fn random_gateway(&self, _: &mut dyn CryptoRng) -> Option<NodeId> {
        None
    }
}

/// The bounds of the client the delivery check runs (small, to be reached).
pub fn delivery_config() -> ClientConfig {
    ClientConfig {
        max_partial_messages: 4,
        max_message_fragments: 8,
        max_events: 8,
        reassembly: ReassemblyLimits {
            timeout: Duration::from_secs(30),
            max_buffered_bytes: 16 * 1024,
        },
        ..ClientConfig::default()
    }
}

/// What a client's gateway hands it: records of `kind, record`. Kind 0: the
/// record is the plaintext of a sealed body, sealed to the client here (so
/// the fuzzer works on what only a sender could write); kind 1: a raw
/// delivery payload; kind 2: a raw payload under a SURB id; kind 3: time
/// passes. Checked: a plaintext that does not decode is dropped as not a
/// frame, and one that decodes is not; raw bytes never open; the client's
/// bounded structures stay within their bounds.
pub fn client_delivery(data: &[u8]) {
    let config = delivery_config();
    let keys = fixtures::sphinx_key(fixtures::CLIENT_KEY);
    let public = keys.public();
    let mut rng = fixtures::rng(3);
    let mut now = Timestamp::from_millis(1_000_000);
    let mut client = ClientCore::new(
        config,
        keys,
        fixtures::gateway_id(),
        NoRoutes,
        now,
        &mut rng,
    );
    let mut input = Input::new(data);
    // Each step costs public-key operations: a bounded number keeps a run fast.
    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        let kind = input.u8() % 4;
        let outcome = match kind {
            0 => {
                let mut plaintext = [0u8; SEALED_PLAINTEXT_SIZE];
                let record = input.record();
                let n = record.len().min(SEALED_PLAINTEXT_SIZE);
                if let (Some(dst), Some(src)) = (plaintext.get_mut(..n), record.get(..n)) {
                    dst.copy_from_slice(src);
                }
                let mut payload = protocol::seal::seal(&public, &plaintext, &mut rng)
                    .expect("seals")
                    .to_vec();
                payload.resize(DELIVERY_PAYLOAD_SIZE, 0);
                let outcome = client.handle_delivery(now, SurbId([0; SURB_ID_SIZE]), &payload);
                let not_a_frame = outcome == DeliveryOutcome::Dropped(DeliveryDrop::NotAFrame);
                assert_eq!(
                    not_a_frame,
                    SealedContent::decode(&plaintext).is_err(),
                    "{outcome:?}"
                );
                Some(outcome)
            }
            1 => Some(client.handle_delivery(now, SurbId([0; SURB_ID_SIZE]), input.record())),
            2 => {
                let mut id = [0u8; SURB_ID_SIZE];
                let given = input.take(SURB_ID_SIZE);
                if let Some(dst) = id.get_mut(..given.len()) {
                    dst.copy_from_slice(given);
                }
                Some(client.handle_delivery(now, SurbId(id), input.record()))
            }
            _ => {
                now = now.saturating_add(Duration::from_secs(u64::from(input.u8())));
                client.handle_timeout(now);
                None
            }
        };
        if kind == 1 || kind == 2 {
            assert!(
                matches!(outcome, Some(DeliveryOutcome::Dropped(_))),
                "bytes not sealed to the client never open: {outcome:?}"
            );
        }
        let occupancy = client.occupancy();
        assert!(occupancy.partial_messages <= config.max_partial_messages);
        assert!(occupancy.reassembly_bytes <= config.reassembly.max_buffered_bytes);
        let mut events = 0;
        while client.poll_event().is_some() {
            events += 1;
        }
        assert!(events <= config.max_events);
    }
}

/// Alice's and Bob's books and the messages between them: Bob's first
/// message (which starts the session), Alice's answer, Bob's next.
pub struct Conversation {
    /// Alice's book once she opened Bob's first message.
    pub alice: Vec<u8>,
    /// The messages, in order: Bob's initial, Alice's reply, Bob's ratchet message.
    pub messages: Vec<Vec<u8>>,
}

/// The instant of the conversation.
pub const NOW: UnixSeconds = UnixSeconds(1_700_000_000);

/// Alice's address in the conversation.
pub fn alice_address() -> ClientAddress {
    ClientAddress {
        client_key: fixtures::sphinx_key(fixtures::CLIENT_KEY)
            .public()
            .to_bytes(),
        gateway: fixtures::gateway_id(),
    }
}

/// Bob's address in the conversation.
pub fn bob_address() -> ClientAddress {
    ClientAddress {
        client_key: fixtures::sphinx_key(fixtures::CLIENT_KEY + 1)
            .public()
            .to_bytes(),
        gateway: fixtures::gateway_id(),
    }
}

/// The conversation, made once.
pub fn conversation() -> &'static Conversation {
    static CONVERSATION: OnceLock<Conversation> = OnceLock::new();
    CONVERSATION.get_or_init(|| {
        let mut rng = fixtures::rng(11);
        let mut alice = SessionBook::generate(&mut rng);
        let mut bob = SessionBook::generate(&mut rng);
        let (a, b) = (alice_address(), bob_address());
        bob.add_contact(&alice.card(a));
        let first = bob
            .seal(NOW, &mut rng, &a, Some(&b), b"hello Alice", None)
            .expect("seal");
        alice.open(NOW, &first).expect("open");
        let reply = alice
            .seal(NOW, &mut rng, &b, Some(&a), b"hello Bob", None)
            .expect("seal");
        bob.open(NOW, &reply).expect("open");
        let next = bob
            .seal(
                NOW,
                &mut rng,
                &a,
                Some(&b),
                b"how are you?",
                Some(UnixSeconds(NOW.0 + 60)),
            )
            .expect("seal");
        Conversation {
            alice: alice.to_bytes().expect("book").to_vec(),
            messages: vec![first, reply, next],
        }
    })
}

/// `SessionBook::open` on Alice's book: a message it refuses leaves the
/// book byte for byte as it was; one it opens is refused the second time,
/// again without a change.
pub fn session_book_open(data: &[u8]) {
    let mut book = SessionBook::from_bytes(&conversation().alice).expect("fixture");
    let before = book.to_bytes().expect("book");
    match book.open(NOW, data) {
        Err(_) => assert_eq!(book.to_bytes().expect("book"), before, "refused: no change"),
        Ok(_) => {
            let after = book.to_bytes().expect("book");
            assert!(book.open(NOW, data).is_err(), "a message opens once");
            assert_eq!(
                book.to_bytes().expect("book"),
                after,
                "a replay changes nothing"
            );
        }
    }
}

/// Alice's and Bob's sessions at the e2ee level, and Bob's messages.
pub struct Sessions {
    /// Alice's identity (the responder).
    pub identity: LocalIdentity,
    /// Alice's prekeys.
    pub prekeys: PrekeySecrets,
    /// Alice's bundle.
    pub bundle: PrekeyBundle,
    /// Alice's session once she accepted Bob's first message.
    pub alice: Session,
    /// Bob's messages: two initial ones, then, after Alice's reply, a ratchet one.
    pub messages: Vec<Vec<u8>>,
}

/// The sessions, made once.
pub fn sessions() -> &'static Sessions {
    static SESSIONS: OnceLock<Sessions> = OnceLock::new();
    SESSIONS.get_or_init(|| {
        let mut rng = fixtures::rng(12);
        let identity = LocalIdentity::generate(&mut rng);
        let prekeys = PrekeySecrets::generate(&mut rng, 1, 1);
        let bundle = identity.bundle(&prekeys);
        let bob_identity = LocalIdentity::generate(&mut rng);
        let mut bob = Session::initiate(&mut rng, &bob_identity, &bundle).expect("initiate");
        let first = bob.encrypt(&mut rng, b"one", None).expect("encrypt");
        let second = bob.encrypt(&mut rng, b"two", None).expect("encrypt");
        let mut alice = Session::accept(&identity, &prekeys, &first).expect("accept");
        alice.decrypt(NOW, &first).expect("decrypt");
        let mut replying = alice.clone();
        let reply = replying.encrypt(&mut rng, b"three", None).expect("encrypt");
        bob.decrypt(NOW, &reply).expect("decrypt");
        let third = bob.encrypt(&mut rng, b"four", None).expect("encrypt");
        Sessions {
            identity,
            prekeys,
            bundle,
            alice,
            messages: vec![first, second, third],
        }
    })
}

/// An e2ee message into Alice's session: the header readers never panic;
/// a refused message leaves the session byte for byte as it was; one that
/// opens opens once; `Session::accept` takes only initial messages.
pub fn e2ee_session(data: &[u8]) {
    let fixture = sessions();
    let initial = InitialInfo::parse(data);
    let _ = MessageTag::of(data);
    if Session::accept(&fixture.identity, &fixture.prekeys, data).is_ok() {
        assert!(
            matches!(initial, Ok(Some(_))),
            "accepted: an initial message"
        );
    }
    let mut session = fixture.alice.clone();
    let before = session.to_bytes().expect("session");
    match session.decrypt(NOW, data) {
        Err(_) => assert_eq!(session.to_bytes().expect("session"), before, "no change"),
        Ok(_) => {
            let after = session.to_bytes().expect("session");
            assert!(session.decrypt(NOW, data).is_err(), "a message opens once");
            assert_eq!(session.to_bytes().expect("session"), after);
        }
    }
}

/// `PrekeyBundle::decode`: canonical (a bundle that verifies is its bytes).
pub fn prekey_bundle(data: &[u8]) {
    if let Ok(bundle) = PrekeyBundle::decode(data) {
        assert_eq!(bundle.encode(), data, "canonical");
    }
}

/// Address cards and addresses from text: what parses prints back to text
/// that parses to the same value.
pub fn address_card(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(address) = ClientAddress::from_str(text) {
        let printed = address.to_string();
        assert_eq!(ClientAddress::from_str(&printed).ok(), Some(address));
    }
    if let Ok(card) = AddressCard::from_str(text) {
        let printed = card.to_string();
        assert_eq!(AddressCard::from_str(&printed).as_ref(), Ok(&card));
        assert_eq!(printed.trim(), text.trim(), "one text per card");
    }
}
