//! A small network for the gateway's behaviour tests: three mix layers, an
//! exit mixer at the gateway, the gateway core, and clients that speak the
//! link protocol.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// The source address of every test client.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

use gateway_core::{
    GatewayAction, GatewayConfig, GatewayCore, Mailbox, MailboxConfig, MailboxStore, MemoryStore,
    SessionId,
};
use mixnode_core::{Action, Mixer, MixerConfig, MixerRole, SphinxCodec, Transmit};
use protocol::epoch::Epoch;
use protocol::keys::{IdentityKeyPair, NodeId, SphinxKeyPair};
use protocol::link::auth::prove;
use protocol::link::{ClientMessage, GatewayMessage, LinkDecoder, LinkMessage};
use protocol::packet::Delivery;
use protocol::packet::RouteHop;
use protocol::replay::ReplayFilterConfig;
use protocol::time::Timestamp;
use rand_chacha::ChaCha20Rng;

/// A mixer and its route hop.
pub struct Node {
    pub mixer: Mixer,
    pub hop: RouteHop,
}

pub fn node(rng: &mut ChaCha20Rng, role: MixerRole) -> Node {
    let id = IdentityKeyPair::generate(rng).node_id();
    let key = SphinxKeyPair::generate(rng);
    let hop = RouteHop {
        id,
        sphinx_key: key.public(),
    };
    let mixer = Mixer::new(
        id,
        SphinxCodec,
        MixerConfig {
            role,
            replay: ReplayFilterConfig {
                min_tags_per_epoch: 10_000,
                false_positive_rate: 1e-6,
            },
            ..MixerConfig::default()
        },
    );
    mixer.install_key(Epoch(0), key);
    mixer.rotate(Epoch(0));
    Node { mixer, hop }
}

/// Feeds `packet` through `nodes` (each hop at the instant the previous one
/// released it) and returns the final hop's action and the instant it happened.
pub fn traverse(nodes: &[&Node], start: Timestamp, packet: Vec<u8>) -> (Timestamp, Action) {
    let mut now = start;
    let mut packet = packet;
    for (i, n) in nodes.iter().enumerate() {
        match n.mixer.handle_packet(now, &packet).expect("accepted") {
            Action::Forward(Transmit {
                next_hop,
                send_at,
                packet: next,
            }) => {
                assert_eq!(next_hop, nodes[i + 1].hop.id);
                now = send_at;
                packet = next;
            }
            other => {
                assert_eq!(i, nodes.len() - 1, "only the last hop ends the route");
                return (now, other);
            }
        }
    }
    panic!("route did not end");
}

pub fn delivery(action: Action) -> Delivery {
    match action {
        Action::Deliver(d) => d,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

pub fn memory_core(id: NodeId, config: GatewayConfig) -> GatewayCore<MemoryStore> {
    let mailbox = Mailbox::open(MemoryStore::new(), MailboxConfig::default()).unwrap();
    GatewayCore::new(id, config, mailbox).unwrap()
}

/// The client end of a session: decodes what the gateway sent it.
pub struct LinkClient {
    pub key: SphinxKeyPair,
    pub session: SessionId,
    pub decoder: LinkDecoder<GatewayMessage>,
    pub closed: bool,
}

impl LinkClient {
    pub fn client_key(&self) -> [u8; 32] {
        self.key.public().to_bytes()
    }

    /// Every message sent to any session in `actions`.
    pub fn receive_all(actions: &[GatewayAction]) -> Vec<GatewayMessage> {
        let mut out = Vec::new();
        for a in actions {
            if let GatewayAction::Send { bytes, .. } = a {
                let mut decoder = LinkDecoder::<GatewayMessage>::new();
                decoder.push(bytes);
                while let Some(m) = decoder.next_message().unwrap() {
                    out.push(m);
                }
            }
        }
        out
    }

    /// Takes the messages the gateway sent this session in `actions`.
    pub fn receive(&mut self, actions: &[GatewayAction]) -> Vec<GatewayMessage> {
        let mut out = Vec::new();
        for a in actions {
            match a {
                GatewayAction::Send { session, bytes } if *session == self.session => {
                    self.decoder.push(bytes);
                    while let Some(m) = self.decoder.next_message().unwrap() {
                        out.push(m);
                    }
                }
                GatewayAction::Close { session, .. } if *session == self.session => {
                    self.closed = true;
                }
                _ => {}
            }
        }
        out
    }
}

/// Opens a session and answers the challenge with `secret`, claiming `claimed` as the key.
pub fn connect_as<S: MailboxStore>(
    core: &mut GatewayCore<S>,
    rng: &mut ChaCha20Rng,
    now: Timestamp,
    key: &SphinxKeyPair,
    claimed: [u8; 32],
) -> (LinkClient, Vec<GatewayMessage>) {
    connect_from(core, rng, now, key, claimed, LOOPBACK)
}

/// [`connect_as`] from the network address `source`; a session refused at
/// once gets no challenge, only the `Close` (returned as the messages).
pub fn connect_from<S: MailboxStore>(
    core: &mut GatewayCore<S>,
    rng: &mut ChaCha20Rng,
    now: Timestamp,
    key: &SphinxKeyPair,
    claimed: [u8; 32],
    source: IpAddr,
) -> (LinkClient, Vec<GatewayMessage>) {
    let (session, actions) = core.open_session(now, source, rng);
    let mut client = LinkClient {
        key: key.clone(),
        session,
        decoder: LinkDecoder::new(),
        closed: false,
    };
    let hello = client.receive(&actions);
    if client.closed {
        return (client, hello);
    }
    let [GatewayMessage::Challenge { gateway, ephemeral }] = hello.as_slice() else {
        panic!("expected a challenge, got {hello:?}");
    };
    assert_eq!(*gateway, core.id());
    let proof = prove(key.secret(), gateway, ephemeral);
    let auth = ClientMessage::Authenticate {
        client_key: claimed,
        proof,
    };
    let actions = core.handle_client_bytes(now, session, &auth.encode());
    let messages = client.receive(&actions);
    (client, messages)
}

/// Connects with the right key; asserts the gateway welcomed the client.
pub fn connect<S: MailboxStore>(
    core: &mut GatewayCore<S>,
    rng: &mut ChaCha20Rng,
    now: Timestamp,
    key: &SphinxKeyPair,
) -> (LinkClient, Vec<GatewayMessage>) {
    let (client, mut messages) = connect_as(core, rng, now, key, key.public().to_bytes());
    assert_eq!(messages.first(), Some(&GatewayMessage::Welcome));
    messages.remove(0);
    assert!(
        matches!(messages.first(), Some(GatewayMessage::PrekeyStock { .. })),
        "the prekey stock follows the welcome: {messages:?}"
    );
    messages.remove(0);
    (client, messages)
}

pub fn mailbox_ids(messages: &[GatewayMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            GatewayMessage::Deliver { mailbox_id, .. } => Some(*mailbox_id),
            _ => None,
        })
        .collect()
}

pub fn forwards(actions: &[GatewayAction]) -> Vec<protocol::packet::OutgoingPacket> {
    actions
        .iter()
        .filter_map(|a| match a {
            GatewayAction::Forward(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

pub const MEAN_DELAY: Duration = Duration::from_millis(20);

/// A memory store that counts commits (calls that change it).
#[derive(Default)]
pub struct CountingStore {
    pub inner: MemoryStore,
    pub commits: std::rc::Rc<std::cell::Cell<usize>>,
}

impl MailboxStore for CountingStore {
    fn put(&mut self, m: &gateway_core::StoredMessage) -> Result<(), gateway_core::MailboxError> {
        self.put_batch(std::slice::from_ref(m))
    }
    fn put_batch(
        &mut self,
        m: &[gateway_core::StoredMessage],
    ) -> Result<(), gateway_core::MailboxError> {
        self.commits.set(self.commits.get() + 1);
        self.inner.put_batch(m)
    }
    fn list(
        &self,
        c: &[u8; 32],
        a: Option<gateway_core::MailboxId>,
        l: usize,
    ) -> Result<Vec<gateway_core::StoredMessage>, gateway_core::MailboxError> {
        self.inner.list(c, a, l)
    }
    fn delete(
        &mut self,
        c: &[u8; 32],
        id: gateway_core::MailboxId,
    ) -> Result<Option<gateway_core::mailbox::RemovedMessage>, gateway_core::MailboxError> {
        Ok(self.delete_batch(&[(*c, id)])?.pop())
    }
    fn delete_batch(
        &mut self,
        m: &[([u8; 32], gateway_core::MailboxId)],
    ) -> Result<Vec<gateway_core::mailbox::RemovedMessage>, gateway_core::MailboxError> {
        self.commits.set(self.commits.get() + 1);
        self.inner.delete_batch(m)
    }
    fn delete_tagged(
        &mut self,
        c: &[u8; 32],
        t: &[protocol::recall::RecallTag],
    ) -> Result<
        Vec<(
            protocol::recall::RecallTag,
            gateway_core::mailbox::RemovedMessage,
        )>,
        gateway_core::MailboxError,
    > {
        self.commits.set(self.commits.get() + 1);
        self.inner.delete_tagged(c, t)
    }
    fn expire(
        &mut self,
        n: Timestamp,
        l: usize,
    ) -> Result<Vec<gateway_core::mailbox::RemovedMessage>, gateway_core::MailboxError> {
        self.inner.expire(n, l)
    }
    fn next_expiry(&self) -> Result<Option<Timestamp>, gateway_core::MailboxError> {
        self.inner.next_expiry()
    }
    fn usage_by_client(
        &self,
    ) -> Result<Vec<([u8; 32], gateway_core::mailbox::MailboxUsage)>, gateway_core::MailboxError>
    {
        self.inner.usage_by_client()
    }
    fn next_id(&self) -> Result<gateway_core::MailboxId, gateway_core::MailboxError> {
        self.inner.next_id()
    }
    fn register_client(
        &mut self,
        c: &[u8; 32],
        seen: gateway_core::RegistrationDay,
    ) -> Result<(), gateway_core::MailboxError> {
        self.inner.register_client(c, seen)
    }
    fn clients(
        &self,
    ) -> Result<Vec<([u8; 32], Option<gateway_core::RegistrationDay>)>, gateway_core::MailboxError>
    {
        self.inner.clients()
    }
    fn unregister_client(
        &mut self,
        c: &[u8; 32],
    ) -> Result<Vec<gateway_core::mailbox::RemovedMessage>, gateway_core::MailboxError> {
        self.inner.unregister_client(c)
    }
}
