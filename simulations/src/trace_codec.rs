//! A cleartext stand-in for Sphinx, so that large scenarios run fast.
//!
//! The mixer's logic (keys, replay filter, delay cap, loop cover, roles) does
//! not depend on the cryptography, only on what a hop learns when it takes a
//! layer off: the next hop, the delay, or the final destination. A
//! [`TraceCodec`] packet carries exactly that in the clear, plus a packet id,
//! and [`mixnode_core::Mixer`] runs it through the very same code path as Sphinx
//! (it implements [`HopCodec`]). Unwrapping costs a copy of
//! [`TRACE_PACKET_SIZE`] bytes instead of two scalar multiplications.
//!
//! Layout (little-endian): version, hop index, hop count, flags, packet id
//! (8 B), destination (32 B), five delays in nanoseconds (8 B each), five node
//! ids (32 B each), zero padding to 256 B.
//!
//! The replay tag is a hash of (packet id, hop index): unique per hop, as a
//! Sphinx tag is, and uniformly spread for the node's Bloom filter. Bandwidth
//! figures still use the real wire size ([`protocol::packet::PACKET_SIZE`]).

use std::sync::Arc;
use std::time::Duration;

use mixnode_core::{
    Action, DropReason, HopCodec, HopOutput, Mixer, MixerConfig, MixerRole, SphinxCodec,
};
use protocol::epoch::Epoch;
use protocol::frame::Frame;
use protocol::keys::{NodeId, SphinxKeyPair};
use protocol::packet::{MAX_HOPS, RouteHop, SURB_ID_SIZE, build_packet};
use protocol::surb::SurbId;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::error::SimError;

/// Bytes of every trace packet.
pub const TRACE_PACKET_SIZE: usize = 256;

const VERSION: u8 = 0x54;
const FLAG_LOOP_COVER: u8 = 1;
const ID_AT: usize = 4;
const DEST_AT: usize = 12;
const DELAYS_AT: usize = 44;
const ROUTE_AT: usize = DELAYS_AT + 8 * MAX_HOPS;
const END: usize = ROUTE_AT + 32 * MAX_HOPS;
const _: () = assert!(END <= TRACE_PACKET_SIZE);

/// The fast cleartext codec.
#[derive(Clone, Debug)]
pub struct TraceCodec {
    /// A genuine final-hop payload of a loop-cover frame: what a node's own
    /// loop cover must carry for the mixer to recognise it.
    loop_payload: Arc<Vec<u8>>,
}

/// A trace packet whose header parsed, waiting for [`HopCodec::finish`].
pub struct OpenedTrace {
    bytes: [u8; TRACE_PACKET_SIZE],
}

impl TraceCodec {
    /// A codec; builds one real Sphinx loop-cover packet once to obtain the
    /// payload a returning loop carries.
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
        let frame = Frame::LoopCover
            .encode()
            .map_err(|e| SimError::Packet(e.to_string()))?;
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
        )
        .map_err(|e| SimError::Packet(e.to_string()))?;
        match exit.handle_packet(Timestamp::ZERO, &packet.bytes) {
            Ok(Action::Deliver(d)) => Ok(TraceCodec {
                loop_payload: Arc::new(d.payload),
            }),
            other => Err(SimError::Packet(format!(
                "reference loop payload: {other:?}"
            ))),
        }
    }

    /// Encodes a trace packet addressed to the first hop of `route`.
    pub fn encode(
        route: &[NodeId],
        delays: &[Duration],
        destination: [u8; 32],
        packet_id: u64,
        loop_cover: bool,
    ) -> Result<Vec<u8>, SimError> {
        if route.is_empty() || route.len() > MAX_HOPS || delays.len() != route.len() {
            return Err(SimError::Packet(format!(
                "trace route of {} hops with {} delays",
                route.len(),
                delays.len()
            )));
        }
        let mut b = vec![0u8; TRACE_PACKET_SIZE];
        let head = [
            VERSION,
            0,
            route.len() as u8,
            if loop_cover { FLAG_LOOP_COVER } else { 0 },
        ];
        write(&mut b, 0, &head);
        write(&mut b, ID_AT, &packet_id.to_le_bytes());
        write(&mut b, DEST_AT, &destination);
        for (i, (hop, delay)) in route.iter().zip(delays).enumerate() {
            let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
            write(&mut b, DELAYS_AT + 8 * i, &nanos.to_le_bytes());
            write(&mut b, ROUTE_AT + 32 * i, hop.as_bytes());
        }
        Ok(b)
    }
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

    fn packet_size(&self) -> usize {
        TRACE_PACKET_SIZE
    }

    fn open(
        &self,
        _key: &SphinxKeyPair,
        packet: &[u8],
    ) -> Result<(OpenedTrace, [u8; 32]), DropReason> {
        let bytes =
            <[u8; TRACE_PACKET_SIZE]>::try_from(packet).map_err(|_| DropReason::WrongSize)?;
        let [version, hop, count, ..] = bytes;
        if version != VERSION || count == 0 || usize::from(count) > MAX_HOPS || hop >= count {
            return Err(DropReason::Malformed);
        }
        let tag = replay_tag(read_u64(&bytes, ID_AT), hop);
        Ok((OpenedTrace { bytes }, tag))
    }

    fn finish(&self, opened: OpenedTrace) -> Result<HopOutput, DropReason> {
        let mut bytes = opened.bytes;
        let [_, hop, count, flags, ..] = bytes;
        let i = usize::from(hop);
        if hop + 1 < count {
            let delay = Duration::from_nanos(read_u64(&bytes, DELAYS_AT + 8 * i));
            let next_hop = NodeId(read_32(&bytes, ROUTE_AT + 32 * (i + 1)));
            if let Some(h) = bytes.get_mut(1) {
                *h = hop + 1;
            }
            Ok(HopOutput::Forward {
                next_hop,
                delay,
                packet: bytes.to_vec(),
            })
        } else {
            let payload = if flags & FLAG_LOOP_COVER != 0 {
                self.loop_payload.as_ref().clone()
            } else {
                Vec::new()
            };
            Ok(HopOutput::Final {
                destination: read_32(&bytes, DEST_AT),
                surb_id: SurbId([0; SURB_ID_SIZE]),
                payload,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn trace_packet_crosses_mixers_refuses_replay_and_garbage() {
        let ids: Vec<NodeId> = (1..=3).map(|i| NodeId([i; 32])).collect();
        let delays = [
            Duration::from_millis(5),
            Duration::from_millis(7),
            Duration::ZERO,
        ];
        let pkt = TraceCodec::encode(&ids, &delays, [9; 32], 42, false).unwrap();
        let first = mixer(ids[0], MixerRole::Mix);
        let Ok(Action::Forward(t)) = first.handle_packet(Timestamp::ZERO, &pkt) else {
            panic!("not forwarded");
        };
        assert_eq!(t.next_hop, ids[1]);
        assert_eq!(t.send_at, Timestamp::from_millis(5));
        assert_eq!(
            first.handle_packet(Timestamp::ZERO, &pkt),
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
    fn own_loop_cover_returns_home() {
        let ids = [NodeId([1; 32]), NodeId([2; 32])];
        let pkt = TraceCodec::encode(&ids, &[Duration::ZERO; 2], ids[1].0, 7, true).unwrap();
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
