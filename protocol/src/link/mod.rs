//! The client link protocol: the messages a client and its gateway exchange
//! over their (QUIC) stream, and their byte encoding.
//!
//! Every message is length-prefixed (see docs/gateway.md for the byte layout):
//!
//! ```text
//! len: u16 big endian | version: u8 | kind: u8 | fields
//! ```
//!
//! `len` counts everything after itself and is at most [`MAX_BODY_LEN`].
//! Kinds sent by the gateway are `0x01..`, kinds sent by the client `0x81..`,
//! so a message reflected back at its sender is refused. This module is pure
//! encoding: [`LinkDecoder`] buffers stream bytes and hands out whole
//! messages, never panicking and never holding more than one message plus the
//! bytes the caller pushed.

use crate::keys::NodeId;
use crate::packet::{PACKET_SIZE, SPHINX_PAYLOAD_SIZE, SURB_ID_SIZE};
use crate::prekeys::FINGERPRINT_SIZE;
use crate::surb::SurbId;

pub mod auth;
mod error;

pub use error::LinkDecodeError;

/// Version byte of the link protocol.
pub const LINK_VERSION: u8 = 2;
/// Bytes of the length prefix.
pub const LENGTH_PREFIX_SIZE: usize = 2;
/// Largest body (version, kind and fields) a message may have.
pub const MAX_BODY_LEN: usize = 4096;
/// The payload every [`GatewayMessage::Deliver`] carries, whatever it holds
/// (a sealed forward body, padded, or a sealed SURB payload): one length on
/// the link for data, replies, acks and loops.
pub const DELIVERY_PAYLOAD_SIZE: usize = SPHINX_PAYLOAD_SIZE;

/// Why the gateway closes a session (sent in [`GatewayMessage::Close`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CloseReason {
    /// The client could not prove it holds the key it claimed.
    AuthFailed = 1,
    /// The client sent a message the gateway could not read, or one out of turn.
    Malformed = 2,
    /// The client did not authenticate in time.
    AuthTimeout = 3,
    /// A newer session of the same client replaced this one.
    Replaced = 4,
    /// The gateway serves no more clients.
    GatewayFull = 5,
    /// The gateway is shutting down.
    Shutdown = 6,
    /// The client is not registered and the gateway does not register clients itself.
    NotRegistered = 7,
    /// Too many sessions or new registrations from the client's network address.
    SourceLimited = 8,
}

impl CloseReason {
    /// Every reason, in code order.
    pub const ALL: [CloseReason; 8] = [
        CloseReason::AuthFailed,
        CloseReason::Malformed,
        CloseReason::AuthTimeout,
        CloseReason::Replaced,
        CloseReason::GatewayFull,
        CloseReason::Shutdown,
        CloseReason::NotRegistered,
        CloseReason::SourceLimited,
    ];

    fn from_byte(b: u8) -> Option<Self> {
        CloseReason::ALL.into_iter().find(|r| *r as u8 == b)
    }

    /// The reason whose code is `code`, as a gateway also gives it as the
    /// application error code of the QUIC connection it closes.
    pub fn from_code(code: u64) -> Option<Self> {
        u8::try_from(code).ok().and_then(Self::from_byte)
    }

    /// A short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::AuthFailed => "auth_failed",
            CloseReason::Malformed => "malformed",
            CloseReason::AuthTimeout => "auth_timeout",
            CloseReason::Replaced => "replaced",
            CloseReason::GatewayFull => "gateway_full",
            CloseReason::Shutdown => "shutdown",
            CloseReason::NotRegistered => "not_registered",
            CloseReason::SourceLimited => "source_limited",
        }
    }
}

/// A message from the gateway to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayMessage {
    /// First message of every session: the gateway's id and a fresh X25519
    /// public key the client must prove its key against.
    Challenge {
        /// The gateway's identity.
        gateway: NodeId,
        /// The gateway's ephemeral X25519 public key for this session.
        ephemeral: [u8; 32],
    },
    /// The client is authenticated; deliveries follow.
    Welcome,
    /// One message from the client's mailbox.
    Deliver {
        /// The message's id in the mailbox; the client acks with it.
        mailbox_id: u64,
        /// The SURB id of a reply (all zero for a forward packet).
        surb_id: SurbId,
        /// The sealed body of a forward packet (zero-padded) or the sealed
        /// Sphinx payload of a SURB packet: exactly [`DELIVERY_PAYLOAD_SIZE`]
        /// bytes on the wire (the encoder pads or cuts to it).
        payload: Vec<u8>,
    },
    /// The gateway closes the session.
    Close {
        /// Why.
        reason: CloseReason,
    },
    /// What the gateway keeps of the client's prekeys: sent after
    /// [`GatewayMessage::Welcome`] and after each prekey upload.
    PrekeyStock {
        /// Whether a published bundle is kept.
        published: bool,
        /// One-time prekeys not handed out yet.
        one_time_left: u32,
    },
}

/// A message from a client to its gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// Answer to the challenge: the client's key and its proof of holding the secret.
    Authenticate {
        /// The client's X25519 Sphinx public key (the client part of its address).
        client_key: [u8; 32],
        /// HMAC-SHA256 over the transcript keyed with the X25519 shared secret.
        proof: [u8; 32],
    },
    /// A Sphinx packet to forward into mix layer 1.
    SendPacket {
        /// The layer-1 node to hand the packet to.
        first_hop: NodeId,
        /// The packet.
        packet: Box<[u8; PACKET_SIZE]>,
    },
    /// The client has the message: the gateway may delete it.
    AckDelivery {
        /// The id from [`GatewayMessage::Deliver`].
        mailbox_id: u64,
    },
    /// A one-time invite to a gateway in closed admission, sent before
    /// [`ClientMessage::Authenticate`] by a client the gateway does not
    /// serve yet (read by the gateway alone, over the encrypted link).
    Enroll {
        /// The invite code the gateway's operator handed out.
        invite: [u8; INVITE_LEN],
    },
    /// The client's published bundle, kept under its identity fingerprint
    /// (replacing the one it published before); opaque to the gateway,
    /// which keeps at most [`MAX_PUBLISHED_BUNDLE_SIZE`](crate::prekeys::MAX_PUBLISHED_BUNDLE_SIZE) bytes.
    PublishBundle {
        /// The fingerprint of the client's identity.
        fingerprint: [u8; FINGERPRINT_SIZE],
        /// The published bundle, signed by that identity.
        published: Vec<u8>,
    },
    /// One-time prekeys to hand out with the published bundle, each once
    /// (as many as fit [`MAX_BODY_LEN`]: [`ClientMessage::fits`]).
    AddOneTimePrekeys {
        /// Each key's id (the client's name for it) and its bytes, opaque
        /// to the gateway, at most
        /// [`MAX_ONE_TIME_PREKEY_SIZE`](crate::prekeys::MAX_ONE_TIME_PREKEY_SIZE) each.
        keys: Vec<(u32, Vec<u8>)>,
    },
}

impl ClientMessage {
    /// Whether the message fits one link message ([`MAX_BODY_LEN`]); the
    /// encoder does not check.
    pub fn fits(&self) -> bool {
        self.encode().len() <= LENGTH_PREFIX_SIZE + MAX_BODY_LEN
    }
}

/// Bytes of an [`ClientMessage::AddOneTimePrekeys`] entry besides the key: id and length.
pub const ONE_TIME_PREKEY_ENTRY_HEADER: usize = 4 + 2;

/// Bytes of an invite code.
pub const INVITE_LEN: usize = 16;

const KIND_CHALLENGE: u8 = 0x01;
const KIND_WELCOME: u8 = 0x02;
const KIND_DELIVER: u8 = 0x03;
const KIND_CLOSE: u8 = 0x04;
const KIND_PREKEY_STOCK: u8 = 0x05;
const KIND_AUTHENTICATE: u8 = 0x81;
const KIND_SEND_PACKET: u8 = 0x82;
const KIND_ACK_DELIVERY: u8 = 0x83;
const KIND_ENROLL: u8 = 0x84;
const KIND_PUBLISH_BUNDLE: u8 = 0x85;
const KIND_ADD_ONE_TIME_PREKEYS: u8 = 0x86;

/// A message kind that can be encoded to and decoded from a link.
pub trait LinkMessage: Sized {
    /// Appends the length-prefixed encoding to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);

    /// Reads a body (version, kind, fields; no length prefix).
    fn decode_body(body: &[u8]) -> Result<Self, LinkDecodeError>;

    /// The length-prefixed encoding.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Writes the prefix and header, then `fields`, clamping nothing: callers keep
/// bodies within [`MAX_BODY_LEN`] by construction.
fn write_message(out: &mut Vec<u8>, kind: u8, fields: &[&[u8]]) {
    let body_len = 2 + fields.iter().map(|f| f.len()).sum::<usize>();
    let len = u16::try_from(body_len).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(LINK_VERSION);
    out.push(kind);
    for f in fields {
        out.extend_from_slice(f);
    }
}

/// Splits a body into its kind and fields after checking the version.
fn read_header(body: &[u8]) -> Result<(u8, &[u8]), LinkDecodeError> {
    match body {
        [LINK_VERSION, kind, fields @ ..] => Ok((*kind, fields)),
        [version, _, ..] => Err(LinkDecodeError::UnknownVersion(*version)),
        _ => Err(LinkDecodeError::BadLength {
            kind: 0,
            len: body.len(),
        }),
    }
}

fn array<const N: usize>(kind: u8, fields: &[u8]) -> Result<[u8; N], LinkDecodeError> {
    <[u8; N]>::try_from(fields).map_err(|_| LinkDecodeError::BadLength {
        kind,
        len: fields.len(),
    })
}

impl LinkMessage for GatewayMessage {
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            GatewayMessage::Challenge { gateway, ephemeral } => {
                write_message(out, KIND_CHALLENGE, &[gateway.as_bytes(), ephemeral]);
            }
            GatewayMessage::Welcome => write_message(out, KIND_WELCOME, &[]),
            GatewayMessage::Deliver {
                mailbox_id,
                surb_id,
                payload,
            } => {
                let mut fixed = [0u8; DELIVERY_PAYLOAD_SIZE];
                let n = payload.len().min(DELIVERY_PAYLOAD_SIZE);
                if let (Some(dst), Some(src)) = (fixed.get_mut(..n), payload.get(..n)) {
                    dst.copy_from_slice(src);
                }
                write_message(
                    out,
                    KIND_DELIVER,
                    &[&mailbox_id.to_be_bytes(), &surb_id.0, &fixed],
                );
            }
            GatewayMessage::Close { reason } => write_message(out, KIND_CLOSE, &[&[*reason as u8]]),
            GatewayMessage::PrekeyStock {
                published,
                one_time_left,
            } => write_message(
                out,
                KIND_PREKEY_STOCK,
                &[&[u8::from(*published)], &one_time_left.to_be_bytes()],
            ),
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, LinkDecodeError> {
        let (kind, fields) = read_header(body)?;
        match kind {
            KIND_CHALLENGE => {
                let bytes: [u8; 64] = array(kind, fields)?;
                let (gateway, ephemeral) = bytes.split_at(32);
                Ok(GatewayMessage::Challenge {
                    gateway: NodeId(array(kind, gateway)?),
                    ephemeral: array(kind, ephemeral)?,
                })
            }
            KIND_WELCOME => {
                let [] = array(kind, fields)?;
                Ok(GatewayMessage::Welcome)
            }
            KIND_DELIVER => {
                let (id, rest) = fields
                    .split_at_checked(8)
                    .ok_or(LinkDecodeError::BadLength {
                        kind,
                        len: fields.len(),
                    })?;
                let (surb_id, payload) =
                    rest.split_at_checked(SURB_ID_SIZE)
                        .ok_or(LinkDecodeError::BadLength {
                            kind,
                            len: fields.len(),
                        })?;
                if payload.len() != DELIVERY_PAYLOAD_SIZE {
                    return Err(LinkDecodeError::BadLength {
                        kind,
                        len: fields.len(),
                    });
                }
                Ok(GatewayMessage::Deliver {
                    mailbox_id: u64::from_be_bytes(array(kind, id)?),
                    surb_id: SurbId(array(kind, surb_id)?),
                    payload: payload.to_vec(),
                })
            }
            KIND_CLOSE => {
                let [code] = array(kind, fields)?;
                let reason = CloseReason::from_byte(code)
                    .ok_or(LinkDecodeError::BadField("close reason"))?;
                Ok(GatewayMessage::Close { reason })
            }
            KIND_PREKEY_STOCK => {
                let [flag, left @ ..] = array::<5>(kind, fields)?;
                let published = match flag {
                    0 => false,
                    1 => true,
                    _ => return Err(LinkDecodeError::BadField("prekey stock published flag")),
                };
                Ok(GatewayMessage::PrekeyStock {
                    published,
                    one_time_left: u32::from_be_bytes(left),
                })
            }
            other => Err(LinkDecodeError::UnknownKind(other)),
        }
    }
}

impl LinkMessage for ClientMessage {
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            ClientMessage::Authenticate { client_key, proof } => {
                write_message(out, KIND_AUTHENTICATE, &[client_key, proof]);
            }
            ClientMessage::SendPacket { first_hop, packet } => {
                write_message(
                    out,
                    KIND_SEND_PACKET,
                    &[first_hop.as_bytes(), packet.as_slice()],
                );
            }
            ClientMessage::AckDelivery { mailbox_id } => {
                write_message(out, KIND_ACK_DELIVERY, &[&mailbox_id.to_be_bytes()]);
            }
            ClientMessage::Enroll { invite } => {
                write_message(out, KIND_ENROLL, &[invite]);
            }
            ClientMessage::PublishBundle {
                fingerprint,
                published,
            } => {
                write_message(out, KIND_PUBLISH_BUNDLE, &[fingerprint, published]);
            }
            ClientMessage::AddOneTimePrekeys { keys } => {
                let mut fields = Vec::new();
                for (id, key) in keys {
                    let len = u16::try_from(key.len()).unwrap_or(u16::MAX);
                    fields.extend_from_slice(&id.to_be_bytes());
                    fields.extend_from_slice(&len.to_be_bytes());
                    fields.extend_from_slice(key);
                }
                write_message(out, KIND_ADD_ONE_TIME_PREKEYS, &[&fields]);
            }
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, LinkDecodeError> {
        let (kind, fields) = read_header(body)?;
        match kind {
            KIND_AUTHENTICATE => {
                let bytes: [u8; 64] = array(kind, fields)?;
                let (client_key, proof) = bytes.split_at(32);
                Ok(ClientMessage::Authenticate {
                    client_key: array(kind, client_key)?,
                    proof: array(kind, proof)?,
                })
            }
            KIND_SEND_PACKET => {
                if fields.len() != 32 + PACKET_SIZE {
                    return Err(LinkDecodeError::BadLength {
                        kind,
                        len: fields.len(),
                    });
                }
                let (hop, packet) = fields.split_at(32);
                let packet: Box<[u8; PACKET_SIZE]> =
                    Box::<[u8]>::from(packet).try_into().map_err(|_| {
                        LinkDecodeError::BadLength {
                            kind,
                            len: fields.len(),
                        }
                    })?;
                Ok(ClientMessage::SendPacket {
                    first_hop: NodeId(array(kind, hop)?),
                    packet,
                })
            }
            KIND_ACK_DELIVERY => Ok(ClientMessage::AckDelivery {
                mailbox_id: u64::from_be_bytes(array(kind, fields)?),
            }),
            KIND_ENROLL => Ok(ClientMessage::Enroll {
                invite: array(kind, fields)?,
            }),
            KIND_PUBLISH_BUNDLE => {
                let (fingerprint, published) = fields
                    .split_first_chunk::<FINGERPRINT_SIZE>()
                    .ok_or(LinkDecodeError::BadLength {
                        kind,
                        len: fields.len(),
                    })?;
                Ok(ClientMessage::PublishBundle {
                    fingerprint: *fingerprint,
                    published: published.to_vec(),
                })
            }
            KIND_ADD_ONE_TIME_PREKEYS => {
                let bad = LinkDecodeError::BadLength {
                    kind,
                    len: fields.len(),
                };
                let mut keys = Vec::new();
                let mut rest = fields;
                while !rest.is_empty() {
                    let (header, tail) = rest
                        .split_first_chunk::<ONE_TIME_PREKEY_ENTRY_HEADER>()
                        .ok_or(bad.clone())?;
                    let [a, b, c, d, hi, lo] = *header;
                    let (key, tail) = tail
                        .split_at_checked(usize::from(u16::from_be_bytes([hi, lo])))
                        .ok_or(bad.clone())?;
                    keys.push((u32::from_be_bytes([a, b, c, d]), key.to_vec()));
                    rest = tail;
                }
                Ok(ClientMessage::AddOneTimePrekeys { keys })
            }
            other => Err(LinkDecodeError::UnknownKind(other)),
        }
    }
}

/// Reassembles length-prefixed messages from a byte stream.
///
/// Push bytes as they arrive, then call [`LinkDecoder::next_message`] until it
/// returns `Ok(None)`. After an error the stream is out of step: the session
/// must be closed.
#[derive(Debug)]
pub struct LinkDecoder<M> {
    buffer: Vec<u8>,
    _message: std::marker::PhantomData<fn() -> M>,
}

impl<M> Default for LinkDecoder<M> {
    fn default() -> Self {
        LinkDecoder {
            buffer: Vec::new(),
            _message: std::marker::PhantomData,
        }
    }
}

impl<M: LinkMessage> LinkDecoder<M> {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<M>, LinkDecodeError> {
        let Some((prefix, rest)) = self.buffer.split_first_chunk::<LENGTH_PREFIX_SIZE>() else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes(*prefix));
        if len > MAX_BODY_LEN {
            return Err(LinkDecodeError::TooLong {
                len,
                max: MAX_BODY_LEN,
            });
        }
        let Some(body) = rest.get(..len) else {
            return Ok(None);
        };
        let message = M::decode_body(body);
        self.buffer.drain(..LENGTH_PREFIX_SIZE + len);
        message.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_is_found_by_its_code_and_no_other_code_is() {
        for reason in CloseReason::ALL {
            assert_eq!(CloseReason::from_code(reason as u8 as u64), Some(reason));
        }
        for code in [0, 9, 255, 256 + CloseReason::Replaced as u64, u64::MAX] {
            assert_eq!(CloseReason::from_code(code), None, "{code}");
        }
    }

    #[test]
    fn partial_messages_wait_for_more_bytes() {
        let bytes = ClientMessage::AckDelivery { mailbox_id: 7 }.encode();
        assert_eq!(bytes, [0, 10, LINK_VERSION, 0x83, 0, 0, 0, 0, 0, 0, 0, 7]);
        let mut d = LinkDecoder::<ClientMessage>::new();
        for b in &bytes[..bytes.len() - 1] {
            d.push(&[*b]);
            assert_eq!(d.next_message(), Ok(None));
        }
        d.push(&bytes[bytes.len() - 1..]);
        assert_eq!(
            d.next_message(),
            Ok(Some(ClientMessage::AckDelivery { mailbox_id: 7 }))
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn refuses_reflected_kinds_wrong_versions_and_long_prefixes() {
        let welcome = GatewayMessage::Welcome.encode();
        let mut d = LinkDecoder::<ClientMessage>::new();
        d.push(&welcome);
        assert_eq!(
            d.next_message(),
            Err(LinkDecodeError::UnknownKind(KIND_WELCOME))
        );
        let mut d = LinkDecoder::<GatewayMessage>::new();
        d.push(&[0, 2, 9, KIND_WELCOME]);
        assert_eq!(d.next_message(), Err(LinkDecodeError::UnknownVersion(9)));
        let mut d = LinkDecoder::<GatewayMessage>::new();
        d.push(&[0xff, 0xff]);
        assert!(matches!(
            d.next_message(),
            Err(LinkDecodeError::TooLong { .. })
        ));
    }

    fn body(message: &impl LinkMessage) -> Vec<u8> {
        message.encode()[LENGTH_PREFIX_SIZE..].to_vec()
    }

    #[test]
    fn prekey_messages_have_the_documented_layout() {
        let stock = GatewayMessage::PrekeyStock {
            published: true,
            one_time_left: 258,
        };
        assert_eq!(stock.encode(), [0, 7, LINK_VERSION, 0x05, 1, 0, 0, 1, 2]);
        let publish = ClientMessage::PublishBundle {
            fingerprint: [9; FINGERPRINT_SIZE],
            published: vec![1, 2, 3],
        };
        let bytes = publish.encode();
        assert_eq!(bytes[..4], [0, 25, LINK_VERSION, 0x85]);
        assert_eq!(bytes[4..24], [9; FINGERPRINT_SIZE]);
        assert_eq!(bytes[24..], [1, 2, 3]);
        let add = ClientMessage::AddOneTimePrekeys {
            keys: vec![(1, vec![7]), (0x0102_0304, vec![])],
        };
        assert_eq!(
            add.encode(),
            [
                0,
                15,
                LINK_VERSION,
                0x86,
                0,
                0,
                0,
                1,
                0,
                1,
                7,
                1,
                2,
                3,
                4,
                0,
                0
            ]
        );
        for m in [publish, add] {
            assert_eq!(ClientMessage::decode_body(&body(&m)), Ok(m));
        }
        assert_eq!(GatewayMessage::decode_body(&body(&stock)), Ok(stock));
    }

    #[test]
    fn three_one_time_prekeys_of_1284_bytes_fit_one_message_and_four_do_not() {
        let keys = |n: u32| ClientMessage::AddOneTimePrekeys {
            keys: (0..n).map(|id| (id, vec![5; 1284])).collect(),
        };
        assert!(keys(3).fits());
        assert!(!keys(4).fits());
        let largest = ClientMessage::PublishBundle {
            fingerprint: [0; FINGERPRINT_SIZE],
            published: vec![0; crate::prekeys::MAX_PUBLISHED_BUNDLE_SIZE],
        };
        assert!(largest.fits());
    }

    #[test]
    fn every_truncation_of_a_prekey_message_is_refused_or_a_shorter_message() {
        let stock = body(&GatewayMessage::PrekeyStock {
            published: false,
            one_time_left: 3,
        });
        for cut in 0..stock.len() {
            assert!(GatewayMessage::decode_body(&stock[..cut]).is_err(), "{cut}");
        }
        let mut flag = stock.clone();
        flag[2] = 2;
        assert_eq!(
            GatewayMessage::decode_body(&flag),
            Err(LinkDecodeError::BadField("prekey stock published flag"))
        );
        let publish = body(&ClientMessage::PublishBundle {
            fingerprint: [3; FINGERPRINT_SIZE],
            published: vec![4; 10],
        });
        for cut in 0..2 + FINGERPRINT_SIZE {
            assert!(
                ClientMessage::decode_body(&publish[..cut]).is_err(),
                "{cut}"
            );
        }
        // The entries of a batch are 4 + 2 + 3 and 4 + 2 + 0 bytes long:
        // a cut inside one is refused, a cut between two reads fewer keys.
        let add = body(&ClientMessage::AddOneTimePrekeys {
            keys: vec![(1, vec![8; 3]), (2, vec![])],
        });
        for cut in 0..add.len() {
            let decoded = ClientMessage::decode_body(&add[..cut]);
            match cut {
                2 => assert_eq!(
                    decoded,
                    Ok(ClientMessage::AddOneTimePrekeys { keys: vec![] })
                ),
                11 => assert_eq!(
                    decoded,
                    Ok(ClientMessage::AddOneTimePrekeys {
                        keys: vec![(1, vec![8; 3])]
                    })
                ),
                _ => assert!(decoded.is_err(), "{cut}"),
            }
        }
    }
}
