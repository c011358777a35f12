//! A cleartext stand-in for Sphinx, so that large scenarios run fast.
//!
//! The mixing, gateway and client logic does not depend on the cryptography,
//! only on what each party learns when it makes or reads a packet: a hop
//! learns the next hop and its delay, or the final destination, the SURB id
//! and the payload; a gateway reads the frame; a client reads what comes
//! back through its SURBs. A [`TraceCodec`] packet carries exactly that in
//! the clear, and the real state machines run it through their very own code
//! paths: [`mixnode_core::Mixer`] through [`HopCodec`], the client and gateway
//! cores through [`PacketFormat`]. Unwrapping a hop costs a copy of the
//! packet instead of two scalar multiplications.
//!
//! A trace packet is exactly [`PACKET_SIZE`] bytes, as a Sphinx packet is
//! (the client link refuses any other size); a trace SURB is exactly
//! [`SURB_SIZE`] bytes (frames carry SURB-acks of that size). Layout
//! (little-endian):
//!
//! | bytes | packet | SURB |
//! |---|---|---|
//! | 0 | version `T` | version `S` |
//! | 1 | hop index | — |
//! | 2 | hop count | hop count |
//! | 3 | flags (1: a node's own loop cover) | — |
//! | 4..12 | packet id | packet id |
//! | 12..44 | destination | destination |
//! | 44..60 | SURB id (zero: forward packet) | SURB id |
//! | 60..100 | five delays, ns | five delays, ns |
//! | 100..260 | five node ids | five node ids |
//! | 365.. | the 2048-byte frame | — |
//!
//! A final hop hands out the frame padded with zeros to the length of a
//! Sphinx payload, so that what a gateway stores and pushes to its clients
//! has the same size in both codecs.
//!
//! The replay tag is a hash of (packet id, hop index): unique per hop, as a
//! Sphinx tag is, and uniformly spread for the node's Bloom filter. A packet
//! sent through a SURB takes the SURB's packet id, so a SURB used twice is
//! refused as a replay at its first hop, as with Sphinx.
//!
//! Randomness: building a packet or a SURB draws from the caller's random
//! source exactly what [`SphinxFormat`](protocol::format::SphinxFormat) draws
//! (32 bytes of secret and the final padding for a packet; a non-zero 16-byte
//! SURB id, then the same, for a SURB), so a trace run and a Sphinx run of
//! one seed see the same routes, delays and clocks.

use std::sync::Arc;
use std::time::Duration;

use mixnode_core::{
    Action, DropReason, HopCodec, HopOutput, Mixer, MixerConfig, MixerRole, SphinxCodec,
};
use protocol::ProtocolError;
use protocol::epoch::Epoch;
use protocol::format::{DestinationAddressBytes, PacketFormat, ReplyRecovery};
use protocol::frame::{ForwardFrame, Frame, LifetimeBucket, SealedContent};
use protocol::keys::{NodeId, SphinxKeyPair, random_bytes};
use protocol::packet::{
    FRAME_SIZE, MAX_HOPS, OutgoingPacket, PACKET_SIZE, RouteHop, SPHINX_PAYLOAD_SIZE, SURB_ID_SIZE,
    build_packet,
};
use protocol::recall::RecallTag;
use protocol::seal::{SEALED_PLAINTEXT_SIZE, SEALED_SIZE};
use protocol::surb::{SURB_SIZE, Surb, SurbId};
use protocol::time::Timestamp;
use rand::{CryptoRng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use x25519_dalek::PublicKey;

use crate::error::SimError;

/// Bytes of every trace packet: the real packet size.
pub const TRACE_PACKET_SIZE: usize = PACKET_SIZE;

const VERSION: u8 = b'T';
const SURB_VERSION: u8 = b'S';
const FLAG_LOOP_COVER: u8 = 1;
const ID_AT: usize = 4;
const DEST_AT: usize = 12;
const SURB_ID_AT: usize = 44;
const DELAYS_AT: usize = SURB_ID_AT + SURB_ID_SIZE;
const ROUTE_AT: usize = DELAYS_AT + 8 * MAX_HOPS;
const HEADER_END: usize = ROUTE_AT + 32 * MAX_HOPS;
const FRAME_AT: usize = PACKET_SIZE - FRAME_SIZE;
const _: () = assert!(HEADER_END <= FRAME_AT && HEADER_END <= SURB_SIZE);

/// The fast cleartext codec: the mixer's side ([`HopCodec`]) and the ends'
/// side ([`PacketFormat`]) of one format.
#[derive(Clone, Debug)]
pub struct TraceCodec {
    /// A genuine final-hop payload of a loop-cover frame: what a node's own
    /// loop cover must carry for the mixer (which reads it as Sphinx) to
    /// recognise it.
    loop_payload: Arc<Vec<u8>>,
}

/// A trace packet whose header parsed, waiting for [`HopCodec::finish`].
pub struct OpenedTrace {
    bytes: Vec<u8>,
}

/// What a trace SURB's creator keeps: only its id (nothing is sealed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceRecovery {
    id: SurbId,
}

impl ReplyRecovery for TraceRecovery {
    fn id(&self) -> SurbId {
        self.id
    }

    fn open(&self, sealed_payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        frame_of(sealed_payload)
    }

    fn to_bytes(&self) -> Vec<u8> {
        self.id.0.to_vec()
    }
}

/// The route part of a trace packet or SURB.
struct TraceRoute<'a> {
    route: &'a [NodeId],
    delays: &'a [Duration],
    destination: [u8; 32],
    surb_id: [u8; SURB_ID_SIZE],
    packet_id: u64,
}

impl TraceRoute<'_> {
    fn check(&self) -> Result<(), ProtocolError> {
        if self.route.is_empty() || self.route.len() > MAX_HOPS {
            return Err(ProtocolError::BadRoute(format!(
                "a route has 1 to {MAX_HOPS} hops, this one has {}",
                self.route.len()
            )));
        }
        if self.route.len() != self.delays.len() {
            return Err(ProtocolError::BadRoute(format!(
                "{} hops but {} delays",
                self.route.len(),
                self.delays.len()
            )));
        }
        Ok(())
    }

    /// Writes everything but the first four bytes into `b`.
    fn write_into(&self, b: &mut [u8]) {
        write(b, ID_AT, &self.packet_id.to_le_bytes());
        write(b, DEST_AT, &self.destination);
        write(b, SURB_ID_AT, &self.surb_id);
        for (i, (hop, delay)) in self.route.iter().zip(self.delays).enumerate() {
            let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
            write(b, DELAYS_AT + 8 * i, &nanos.to_le_bytes());
            write(b, ROUTE_AT + 32 * i, hop.as_bytes());
        }
    }

    /// The packet carrying `frame` (or zeros), first hop first.
    fn packet(&self, flags: u8, frame: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![0u8; TRACE_PACKET_SIZE];
        write(&mut b, 0, &[VERSION, 0, self.route.len() as u8, flags]);
        self.write_into(&mut b);
        if let Some(frame) = frame {
            write(&mut b, FRAME_AT, frame);
        }
        b
    }
}

impl TraceCodec {
    /// A codec; builds one real Sphinx loop-cover packet once to obtain the
    /// payload a node's returning loop carries.
    pub fn new() -> Result<TraceCodec, SimError> {
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        let key = SphinxKeyPair::generate(&mut rng);
        let id = NodeId([7; 32]);
        let exit = Mixer::new(
            id,
            SphinxCodec,
            MixerConfig {
                role: MixerRole::Exit,
                ..MixerConfig::default()
            },
        );
        exit.install_key(Epoch(0), key.clone());
        exit.rotate(Epoch(0));
        let frame = Frame::NodeLoop.encode()?;
        let hop = RouteHop {
            id,
            sphinx_key: key.public(),
        };
        let packet = build_packet(
            &mut rng,
            &[hop],
            &[Duration::ZERO],
            NodeId([8; 32]).to_destination(),
            [0; SURB_ID_SIZE],
            &frame,
        )?;
        match exit.handle_packet(Timestamp::ZERO, &packet.bytes) {
            Ok(Action::Deliver(d)) => Ok(TraceCodec {
                loop_payload: Arc::new(d.payload),
            }),
            other => Err(SimError::Setup(format!(
                "reference loop payload: {other:?}"
            ))),
        }
    }

    /// A node's own loop cover over `route` (the node itself last), which
    /// the node's mixer recognises when it comes back.
    pub fn loop_cover(
        route: &[NodeId],
        delays: &[Duration],
        packet_id: u64,
    ) -> Result<Vec<u8>, ProtocolError> {
        let home = route.last().map_or([0; 32], |n| n.0);
        let trace = TraceRoute {
            route,
            delays,
            destination: home,
            surb_id: [0; SURB_ID_SIZE],
            packet_id,
        };
        trace.check()?;
        Ok(trace.packet(FLAG_LOOP_COVER, None))
    }
}

/// The frame at the head of a final hop's payload.
fn frame_of(payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    match payload.get(..FRAME_SIZE) {
        Some(frame) if payload.len() == SPHINX_PAYLOAD_SIZE => Ok(frame.to_vec()),
        _ => Err(ProtocolError::BadFrame(format!(
            "payload of {} bytes",
            payload.len()
        ))),
    }
}

fn check_frame(frame: &[u8]) -> Result<(), ProtocolError> {
    if frame.len() != FRAME_SIZE {
        return Err(ProtocolError::BadFrame(format!(
            "a frame is {FRAME_SIZE} bytes, got {}",
            frame.len()
        )));
    }
    Ok(())
}

fn write(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn read_32(buf: &[u8], at: usize) -> [u8; 32] {
    buf.get(at..at + 32)
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .unwrap_or([0; 32])
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

fn read_surb_id(buf: &[u8]) -> [u8; SURB_ID_SIZE] {
    buf.get(SURB_ID_AT..SURB_ID_AT + SURB_ID_SIZE)
        .and_then(|s| <[u8; SURB_ID_SIZE]>::try_from(s).ok())
        .unwrap_or([0; SURB_ID_SIZE])
}

/// The first eight of 32 random bytes, drawn as Sphinx draws its secret,
/// then as many bytes as Sphinx draws for its final padding.
fn packet_id(rng: &mut (impl CryptoRng + ?Sized)) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = random_bytes(rng);
    let mut padding = [0u8; protocol::sphinx::MAX_FINAL_PADDING];
    rng.fill_bytes(&mut padding);
    u64::from_le_bytes([a, b, c, d, e, f, g, h])
}

/// SplitMix64: spreads (packet id, hop) over a 32-byte tag.
fn replay_tag(packet_id: u64, hop: u8) -> [u8; 32] {
    let mut state = packet_id ^ (u64::from(hop) << 56) ^ 0x5851_f42d_4c95_7f2d;
    let mut tag = [0u8; 32];
    for chunk in tag.chunks_exact_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    tag
}

impl HopCodec for TraceCodec {
    type Opened = OpenedTrace;

    fn open(
        &self,
        _key: &SphinxKeyPair,
        packet: &[u8],
    ) -> Result<(OpenedTrace, [u8; 32]), DropReason> {
        if packet.len() != TRACE_PACKET_SIZE {
            return Err(DropReason::WrongSize);
        }
        let [version, hop, count, ..] = <[u8; 4]>::try_from(packet.get(..4).unwrap_or(&[]))
            .map_err(|_| DropReason::WrongSize)?;
        if version != VERSION || count == 0 || usize::from(count) > MAX_HOPS || hop >= count {
            return Err(DropReason::Malformed);
        }
        let tag = replay_tag(read_u64(packet, ID_AT), hop);
        Ok((
            OpenedTrace {
                bytes: packet.to_vec(),
            },
            tag,
        ))
    }

    fn finish(&self, opened: OpenedTrace) -> Result<HopOutput, DropReason> {
        let mut bytes = opened.bytes;
        let [_, hop, count, flags] = <[u8; 4]>::try_from(bytes.get(..4).unwrap_or(&[]))
            .map_err(|_| DropReason::WrongSize)?;
        let i = usize::from(hop);
        if hop + 1 < count {
            let delay = Duration::from_nanos(read_u64(&bytes, DELAYS_AT + 8 * i));
            let next_hop = NodeId(read_32(&bytes, ROUTE_AT + 32 * (i + 1)));
            if let Some(h) = bytes.get_mut(1) {
                *h = hop + 1;
            }
            return Ok(HopOutput::Forward {
                next_hop,
                delay,
                packet: bytes,
            });
        }
        let payload = if flags & FLAG_LOOP_COVER != 0 {
            self.loop_payload.as_ref().clone()
        } else {
            // As long as a Sphinx payload, so that a gateway's mailbox holds
            // as many bytes as it would with Sphinx.
            let mut payload = Vec::with_capacity(SPHINX_PAYLOAD_SIZE);
            payload.extend_from_slice(bytes.get(FRAME_AT..).unwrap_or(&[]));
            payload.resize(SPHINX_PAYLOAD_SIZE, 0);
            payload
        };
        Ok(HopOutput::Final {
            destination: read_32(&bytes, DEST_AT),
            surb_id: SurbId(read_surb_id(&bytes)),
            payload,
        })
    }
}

impl PacketFormat for TraceCodec {
    type Recovery = TraceRecovery;

    fn build_packet(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
        route: &[RouteHop],
        delays: &[Duration],
        destination: DestinationAddressBytes,
        frame: &[u8],
    ) -> Result<OutgoingPacket, ProtocolError> {
        let ids: Vec<NodeId> = route.iter().map(|h| h.id).collect();
        let mut trace = TraceRoute {
            route: &ids,
            delays,
            destination: destination.as_bytes(),
            surb_id: [0; SURB_ID_SIZE],
            packet_id: 0,
        };
        trace.check()?;
        check_frame(frame)?;
        trace.packet_id = packet_id(rng);
        let first_hop = ids
            .first()
            .copied()
            .ok_or_else(|| ProtocolError::BadRoute("empty route".into()))?;
        Ok(OutgoingPacket {
            first_hop,
            bytes: trace.packet(0, Some(frame)),
        })
    }

    fn build_surb(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
        route: &[RouteHop],
        delays: &[Duration],
        destination: DestinationAddressBytes,
    ) -> Result<(Surb, TraceRecovery), ProtocolError> {
        let ids: Vec<NodeId> = route.iter().map(|h| h.id).collect();
        let mut trace = TraceRoute {
            route: &ids,
            delays,
            destination: destination.as_bytes(),
            surb_id: [0; SURB_ID_SIZE],
            packet_id: 0,
        };
        trace.check()?;
        while trace.surb_id == [0u8; SURB_ID_SIZE] {
            rng.fill_bytes(&mut trace.surb_id);
        }
        trace.packet_id = packet_id(rng);
        let mut b = vec![0u8; SURB_SIZE];
        write(&mut b, 0, &[SURB_VERSION, 0, ids.len() as u8, 0]);
        trace.write_into(&mut b);
        Ok((
            Surb(b),
            TraceRecovery {
                id: SurbId(trace.surb_id),
            },
        ))
    }

    fn recovery_from_bytes(&self, bytes: &[u8]) -> Result<TraceRecovery, ProtocolError> {
        let id = <[u8; SURB_ID_SIZE]>::try_from(bytes)
            .map_err(|_| ProtocolError::BadSurb("a trace recovery is a SURB id".into()))?;
        Ok(TraceRecovery { id: SurbId(id) })
    }

    fn use_surb(&self, surb: &Surb, frame: &[u8]) -> Result<OutgoingPacket, ProtocolError> {
        check_frame(frame)?;
        let s = &surb.0;
        let bad = |why: &str| ProtocolError::BadSurb(why.to_string());
        if s.len() != SURB_SIZE {
            return Err(bad("a trace SURB has the SURB size"));
        }
        let [version, _, count, _] =
            <[u8; 4]>::try_from(s.get(..4).unwrap_or(&[])).map_err(|_| bad("truncated"))?;
        let hops = usize::from(count);
        if version != SURB_VERSION || hops == 0 || hops > MAX_HOPS {
            return Err(bad("not a trace SURB"));
        }
        let mut packet = vec![0u8; TRACE_PACKET_SIZE];
        write(&mut packet, 0, &[VERSION, 0, count, 0]);
        if let (Some(dst), Some(src)) = (packet.get_mut(4..HEADER_END), s.get(4..HEADER_END)) {
            dst.copy_from_slice(src);
        }
        write(&mut packet, FRAME_AT, frame);
        Ok(OutgoingPacket {
            first_hop: NodeId(read_32(s, ROUTE_AT)),
            bytes: packet,
        })
    }

    fn open_forward_payload(&self, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        frame_of(payload)
    }

    /// The body in the clear, after the recipient's key where the real one
    /// has its ephemeral key, and as many random bytes drawn as the real
    /// seal draws (its ephemeral secret, then its random recall tag).
    fn seal_frame(
        &self,
        content: &SealedContent,
        recipient: &PublicKey,
        surb_ack: Vec<u8>,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<ForwardFrame, ProtocolError> {
        let plaintext = content.encode()?;
        let _ephemeral = random_bytes(rng);
        let mut sealed = Box::new([0u8; SEALED_SIZE]);
        write(sealed.as_mut_slice(), 0, recipient.as_bytes());
        write(sealed.as_mut_slice(), 32, &plaintext);
        Ok(ForwardFrame {
            lifetime: LifetimeBucket::covering(content.lifetime()),
            recall_tag: RecallTag(random_bytes(rng)),
            surb_ack,
            sealed,
        })
    }

    /// Opens only a body sealed to `keys`, as the real open does.
    fn open_frame(
        &self,
        keys: &SphinxKeyPair,
        sealed: &[u8],
    ) -> Result<SealedContent, ProtocolError> {
        let sealed = sealed.get(..SEALED_SIZE).unwrap_or(sealed);
        if sealed.len() != SEALED_SIZE {
            return Err(ProtocolError::BadFrame("sealed body truncated".into()));
        }
        if sealed.get(..32) != Some(keys.public().as_bytes().as_slice()) {
            return Err(ProtocolError::BadKey("sealed to another key".into()));
        }
        SealedContent::decode(sealed.get(32..32 + SEALED_PLAINTEXT_SIZE).unwrap_or(&[]))
    }

    /// The random bytes a real key pair's secret takes, as the public key.
    fn throwaway_key(&self, rng: &mut (impl CryptoRng + ?Sized)) -> PublicKey {
        PublicKey::from(random_bytes(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::format::SphinxFormat;
    use rand::RngExt;

    fn mixer(id: NodeId, role: MixerRole) -> Mixer<TraceCodec> {
        let m = Mixer::new(
            id,
            TraceCodec::new().unwrap(),
            MixerConfig {
                role,
                ..MixerConfig::default()
            },
        );
        m.install_key(Epoch(0), SphinxKeyPair::from_secret_bytes([id.0[0]; 32]));
        m.rotate(Epoch(0));
        m
    }

    fn hops(ids: &[NodeId]) -> Vec<RouteHop> {
        let key = SphinxKeyPair::from_secret_bytes([1; 32]).public();
        ids.iter()
            .map(|id| RouteHop {
                id: *id,
                sphinx_key: key,
            })
            .collect()
    }

    #[test]
    fn trace_packet_crosses_mixers_refuses_replay_and_garbage() {
        let ids: Vec<NodeId> = (1..=3).map(|i| NodeId([i; 32])).collect();
        let delays = [
            Duration::from_millis(5),
            Duration::from_millis(7),
            Duration::ZERO,
        ];
        let codec = TraceCodec::new().unwrap();
        let frame = Frame::Ack.encode().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let pkt = codec
            .build_packet(
                &mut rng,
                &hops(&ids),
                &delays,
                DestinationAddressBytes::from_bytes([9; 32]),
                &frame,
            )
            .unwrap();
        assert_eq!(pkt.first_hop, ids[0]);
        assert_eq!(pkt.bytes.len(), PACKET_SIZE);
        let first = mixer(ids[0], MixerRole::Mix);
        let Ok(Action::Forward(t)) = first.handle_packet(Timestamp::ZERO, &pkt.bytes) else {
            panic!("not forwarded");
        };
        assert_eq!(t.next_hop, ids[1]);
        assert_eq!(t.send_at, Timestamp::from_millis(5));
        assert_eq!(
            first.handle_packet(Timestamp::ZERO, &pkt.bytes),
            Err(DropReason::Replay)
        );
        let second = mixer(ids[1], MixerRole::Mix);
        let Ok(Action::Forward(t2)) = second.handle_packet(t.send_at, &t.packet) else {
            panic!("not forwarded");
        };
        assert_eq!(t2.send_at, Timestamp::from_millis(12));
        let exit = mixer(ids[2], MixerRole::Exit);
        let Ok(Action::Deliver(d)) = exit.handle_packet(t2.send_at, &t2.packet) else {
            panic!("not delivered");
        };
        assert_eq!(d.destination, [9; 32]);
        assert!(d.surb_id.is_forward());
        assert_eq!(codec.open_forward_payload(&d.payload).unwrap(), frame);
        assert_eq!(
            first.handle_packet(Timestamp::ZERO, &[0u8; TRACE_PACKET_SIZE]),
            Err(DropReason::Malformed)
        );
        assert_eq!(
            first.handle_packet(Timestamp::ZERO, &[1, 2, 3]),
            Err(DropReason::WrongSize)
        );
    }

    #[test]
    fn surb_replies_come_back_once_and_open_with_their_recovery() {
        let ids: Vec<NodeId> = (1..=2).map(|i| NodeId([i; 32])).collect();
        let codec = TraceCodec::new().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (surb, recovery) = codec
            .build_surb(
                &mut rng,
                &hops(&ids),
                &[Duration::from_millis(3), Duration::ZERO],
                DestinationAddressBytes::from_bytes([6; 32]),
            )
            .unwrap();
        assert_eq!(surb.0.len(), SURB_SIZE);
        let frame = Frame::NodeLoop.encode().unwrap();
        let packet = codec.use_surb(&surb, &frame).unwrap();
        assert_eq!(packet.first_hop, ids[0]);
        let mix = mixer(ids[0], MixerRole::Mix);
        let Ok(Action::Forward(t)) = mix.handle_packet(Timestamp::ZERO, &packet.bytes) else {
            panic!("not forwarded");
        };
        // The same SURB used again is the same packet: a replay.
        let again = codec.use_surb(&surb, &frame).unwrap();
        assert_eq!(
            mix.handle_packet(Timestamp::ZERO, &again.bytes),
            Err(DropReason::Replay)
        );
        let exit = mixer(ids[1], MixerRole::Exit);
        let Ok(Action::Deliver(d)) = exit.handle_packet(t.send_at, &t.packet) else {
            panic!("not delivered");
        };
        assert_eq!(d.destination, [6; 32]);
        assert_eq!(d.surb_id, recovery.id());
        assert_eq!(recovery.open(&d.payload).unwrap(), frame);
    }

    #[test]
    fn draws_as_much_randomness_as_sphinx() {
        let ids: Vec<NodeId> = (1..=4).map(|i| NodeId([i; 32])).collect();
        let route = {
            let mut rng = ChaCha20Rng::seed_from_u64(9);
            ids.iter()
                .map(|id| RouteHop {
                    id: *id,
                    sphinx_key: SphinxKeyPair::generate(&mut rng).public(),
                })
                .collect::<Vec<_>>()
        };
        let delays = [Duration::from_millis(1); 4];
        let dest = DestinationAddressBytes::from_bytes([3; 32]);
        let frame = Frame::Ack.encode().unwrap();
        let trace = TraceCodec::new().unwrap();
        let (mut a, mut b) = (ChaCha20Rng::seed_from_u64(1), ChaCha20Rng::seed_from_u64(1));
        trace
            .build_packet(&mut a, &route, &delays, dest, &frame)
            .unwrap();
        SphinxFormat
            .build_packet(&mut b, &route, &delays, dest, &frame)
            .unwrap();
        let (t, r) = trace.build_surb(&mut a, &route, &delays, dest).unwrap();
        let (_, s) = SphinxFormat
            .build_surb(&mut b, &route, &delays, dest)
            .unwrap();
        assert_eq!(t.0.len(), SURB_SIZE);
        assert_eq!(r.id(), ReplyRecovery::id(&s), "same SURB id drawn");
        assert_eq!(a.random::<u64>(), b.random::<u64>());
    }

    #[test]
    fn own_loop_cover_returns_home() {
        let ids = [NodeId([1; 32]), NodeId([2; 32])];
        let pkt = TraceCodec::loop_cover(&ids, &[Duration::ZERO; 2], 7).unwrap();
        let a = mixer(ids[0], MixerRole::Mix);
        let b = mixer(ids[1], MixerRole::Mix);
        let Ok(Action::Forward(t)) = a.handle_packet(Timestamp::ZERO, &pkt) else {
            panic!("not forwarded");
        };
        assert_eq!(
            b.handle_packet(t.send_at, &t.packet),
            Ok(Action::LoopReturned)
        );
    }
}
