//! Beta: the routing information each hop decrypts, reads and passes on.
//!
//! A hop appends one zero slot to its beta, XORs the keystream of its
//! stream key over all 360 bytes, and reads its instruction from the front;
//! the next hop's beta is what follows. The sender builds the layers from
//! the inside out, and precomputes the filler: what the keystreams of the
//! earlier hops turn those zero slots into, so that every hop's MAC covers
//! exactly the bytes that hop will see.

use crate::sphinx::cipher::{apply_keystream, header_mac, keystream};
use crate::sphinx::error::SphinxError;
use crate::sphinx::geometry::{
    DESTINATION_SIZE, HOP_SLOT_SIZE, HeaderVersion, KEYSTREAM_SIZE, MAC_SIZE, NODE_ADDRESS_SIZE,
    ROUTING_INFO_SIZE, SURB_ID_SIZE, TRUNCATED_ROUTING_INFO_SIZE, array_at, xor_into,
};
use crate::sphinx::kdf::HopSecrets;

const FORWARD_HOP: u8 = 1;
const FINAL_HOP: u8 = 2;

/// What a hop finds in its decrypted routing information.
// A short-lived stack value: boxing the next beta would allocate on every hop.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Instruction {
    /// Send the packet on.
    Forward {
        /// The version the sender wrote.
        version: HeaderVersion,
        /// The next node's address.
        next_hop: [u8; NODE_ADDRESS_SIZE],
        /// The delay the sender chose, in nanoseconds.
        delay_nanos: u64,
        /// The next hop's header MAC.
        next_mac: [u8; MAC_SIZE],
        /// The next hop's beta.
        next_routing: [u8; ROUTING_INFO_SIZE],
    },
    /// This hop is the last.
    Final {
        /// The version the sender wrote.
        version: HeaderVersion,
        /// The destination the sender named.
        destination: [u8; DESTINATION_SIZE],
        /// The SURB identifier (zero for forward packets).
        surb_id: [u8; SURB_ID_SIZE],
    },
}

impl Instruction {
    pub(crate) fn version(&self) -> HeaderVersion {
        match self {
            Instruction::Forward { version, .. } | Instruction::Final { version, .. } => *version,
        }
    }
}

/// Decrypts a hop's beta with its stream key and reads its instruction.
pub(crate) fn read(
    stream_key: &[u8; 16],
    routing: &[u8; ROUTING_INFO_SIZE],
) -> Result<Instruction, SphinxError> {
    let mut block = [0u8; KEYSTREAM_SIZE];
    for (b, r) in block.iter_mut().zip(routing) {
        *b = *r;
    }
    apply_keystream(stream_key, &mut block);
    let [flag, v0, v1, v2, rest @ ..] = block;
    match flag {
        FORWARD_HOP => Ok(Instruction::Forward {
            version: HeaderVersion::from_bytes([v0, v1, v2])?,
            next_hop: array_at(&rest, 0),
            delay_nanos: u64::from_be_bytes(array_at(&rest, NODE_ADDRESS_SIZE)),
            next_mac: array_at(&rest, NODE_ADDRESS_SIZE + 8),
            next_routing: array_at(&rest, NODE_ADDRESS_SIZE + 8 + MAC_SIZE),
        }),
        FINAL_HOP => Ok(Instruction::Final {
            version: HeaderVersion::from_bytes([v0, v1, v2])?,
            destination: array_at(&rest, 0),
            surb_id: array_at(&rest, DESTINATION_SIZE),
        }),
        other => Err(SphinxError::UnknownFlag(other)),
    }
}

/// A layer of the header: a hop's beta and the MAC over it.
pub(crate) struct Layer {
    pub(crate) mac: [u8; MAC_SIZE],
    pub(crate) routing: [u8; ROUTING_INFO_SIZE],
}

/// The innermost layer, for the final hop: its instruction and random
/// padding encrypted under its key, then the filler.
pub(crate) fn seal_final(
    secrets: &HopSecrets,
    version: HeaderVersion,
    destination: &[u8; DESTINATION_SIZE],
    surb_id: &[u8; SURB_ID_SIZE],
    padding: &[u8],
    filler: &[u8],
) -> Layer {
    let mut plain = Vec::with_capacity(ROUTING_INFO_SIZE);
    plain.push(FINAL_HOP);
    plain.extend_from_slice(&version.to_bytes());
    plain.extend_from_slice(destination);
    plain.extend_from_slice(surb_id);
    plain.extend_from_slice(padding);
    apply_keystream(secrets.stream_key(), &mut plain);
    plain.extend_from_slice(filler);
    let routing = array_at(&plain, 0);
    Layer {
        mac: header_mac(secrets.mac_key(), &routing),
        routing,
    }
}

/// A forward layer around `inner`, telling its hop to send the packet to
/// `next_hop` after `delay_nanos`.
pub(crate) fn seal_forward(
    secrets: &HopSecrets,
    version: HeaderVersion,
    next_hop: &[u8; NODE_ADDRESS_SIZE],
    delay_nanos: u64,
    inner: &Layer,
) -> Layer {
    let mut plain = Vec::with_capacity(ROUTING_INFO_SIZE);
    plain.push(FORWARD_HOP);
    plain.extend_from_slice(&version.to_bytes());
    plain.extend_from_slice(next_hop);
    plain.extend_from_slice(&delay_nanos.to_be_bytes());
    plain.extend_from_slice(&inner.mac);
    plain.extend(inner.routing.iter().take(TRUNCATED_ROUTING_INFO_SIZE));
    apply_keystream(secrets.stream_key(), &mut plain);
    let routing = array_at(&plain, 0);
    Layer {
        mac: header_mac(secrets.mac_key(), &routing),
        routing,
    }
}

/// The filler for a route whose hops before the last have `secrets`: slot
/// by slot, the tail of each hop's keystream over the slots added so far.
pub(crate) fn filler(secrets: &[HopSecrets]) -> Vec<u8> {
    let mut filler = Vec::with_capacity(HOP_SLOT_SIZE * secrets.len());
    for hop in secrets {
        filler.extend_from_slice(&[0u8; HOP_SLOT_SIZE]);
        let stream = keystream(hop.stream_key());
        let tail = stream.len().saturating_sub(filler.len());
        xor_into(&mut filler, stream.get(tail..).unwrap_or_default());
    }
    filler
}
