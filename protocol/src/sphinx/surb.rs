//! Single-use reply blocks, as `sphinx-packet` 0.8 builds and serializes them.
//!
//! A [`ReplyBlock`] is a prebuilt header to its creator, the first hop's
//! address and payload key seeds: `header (348) | first hop (32) | seeds (16 each)`.
//! At version 260 it carries only the last hop's seed: its user adds one
//! layer, every hop removes one, and only the creator, who keeps every hop's
//! seed in [`ReplyKeys`] (`SURB id (16) | seeds`), can undo them. At version
//! 259 it carries every seed and the final hop reads the reply.

use std::time::Duration;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::sphinx::builder::{Destination, PacketRandomness, RouteNode, build_header};
use crate::sphinx::error::SphinxError;
use crate::sphinx::geometry::{
    HEADER_SIZE, HeaderVersion, MAX_HOPS, NODE_ADDRESS_SIZE, PAYLOAD_KEY_SEED_SIZE, SURB_ID_SIZE,
};
use crate::sphinx::kdf::derive_payload_key;
use crate::sphinx::payload::{add_layer, decode_payload, encode_payload, remove_layer};

/// A SURB: what its user needs to send one packet to its creator.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ReplyBlock {
    header: [u8; HEADER_SIZE],
    first_hop: [u8; NODE_ADDRESS_SIZE],
    seeds: Vec<[u8; PAYLOAD_KEY_SEED_SIZE]>,
}

impl std::fmt::Debug for ReplyBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplyBlock({} seed(s))", self.seeds.len())
    }
}

/// What a version-260 SURB's creator keeps to read the reply.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ReplyKeys {
    surb_id: [u8; SURB_ID_SIZE],
    seeds: Vec<[u8; PAYLOAD_KEY_SEED_SIZE]>,
}

impl std::fmt::Debug for ReplyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplyKeys({} hop(s))", self.seeds.len())
    }
}

/// Reads seeds: a non-empty multiple of 16 bytes, at most [`MAX_HOPS`] seeds.
fn read_seeds(
    bytes: &[u8],
    whole_len: usize,
) -> Result<Vec<[u8; PAYLOAD_KEY_SEED_SIZE]>, SphinxError> {
    let (seeds, rest) = bytes.as_chunks::<PAYLOAD_KEY_SEED_SIZE>();
    if seeds.is_empty() || seeds.len() > MAX_HOPS || !rest.is_empty() {
        return Err(SphinxError::SurbLength { len: whole_len });
    }
    Ok(seeds.to_vec())
}

/// Builds a SURB along `route` (which ends at the creator's gateway) to
/// `destination`. Version 260 needs a non-zero SURB id and returns the keys
/// the creator keeps; version 259 returns none (the final hop reads the reply).
pub fn build_surb(
    randomness: &PacketRandomness,
    route: &[RouteNode],
    delays: &[Duration],
    destination: &Destination,
    version: HeaderVersion,
) -> Result<(ReplyBlock, Option<ReplyKeys>), SphinxError> {
    if version != HeaderVersion::SINGLE_SEED_SURB && version != HeaderVersion::PAYLOAD_KEY_SEEDS {
        return Err(SphinxError::SurbVersion(version.0));
    }
    let single_seed = version == HeaderVersion::SINGLE_SEED_SURB;
    if single_seed && destination.surb_id == [0u8; SURB_ID_SIZE] {
        return Err(SphinxError::ZeroSurbId);
    }
    let built = build_header(randomness, route, delays, destination, version)?;
    let first_hop = route
        .first()
        .map(|n| n.address)
        .ok_or(SphinxError::RouteLength(0))?;
    let seeds: Vec<_> = built.secrets.iter().map(|s| *s.payload_seed()).collect();
    if single_seed {
        let last = seeds.last().copied().ok_or(SphinxError::RouteLength(0))?;
        let block = ReplyBlock {
            header: built.header,
            first_hop,
            seeds: vec![last],
        };
        let keys = ReplyKeys {
            surb_id: destination.surb_id,
            seeds,
        };
        Ok((block, Some(keys)))
    } else {
        let block = ReplyBlock {
            header: built.header,
            first_hop,
            seeds,
        };
        Ok((block, None))
    }
}

impl ReplyBlock {
    /// The address of the hop to hand the reply to.
    pub fn first_hop(&self) -> &[u8; NODE_ADDRESS_SIZE] {
        &self.first_hop
    }

    /// Builds the reply packet carrying `message`, with a payload of `payload_size` bytes.
    pub fn seal(&self, message: &[u8], payload_size: usize) -> Result<Vec<u8>, SphinxError> {
        let mut payload = encode_payload(message, payload_size)?;
        for seed in self.seeds.iter().rev() {
            add_layer(&*derive_payload_key(seed)?, &mut payload)?;
        }
        let mut packet = Vec::with_capacity(HEADER_SIZE + payload.len());
        packet.extend_from_slice(&self.header);
        packet.extend_from_slice(&payload);
        Ok(packet)
    }

    /// `header | first hop | seeds`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_SIZE + NODE_ADDRESS_SIZE + PAYLOAD_KEY_SEED_SIZE * self.seeds.len(),
        );
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.first_hop);
        for seed in &self.seeds {
            out.extend_from_slice(seed);
        }
        out
    }

    /// Reads the serialized form.
    pub fn from_bytes(bytes: &[u8]) -> Result<ReplyBlock, SphinxError> {
        let wrong = SphinxError::SurbLength { len: bytes.len() };
        let (header, rest) = bytes.split_first_chunk::<HEADER_SIZE>().ok_or(wrong)?;
        let (first_hop, seeds) = rest.split_first_chunk::<NODE_ADDRESS_SIZE>().ok_or(wrong)?;
        Ok(ReplyBlock {
            header: *header,
            first_hop: *first_hop,
            seeds: read_seeds(seeds, bytes.len())?,
        })
    }
}

impl ReplyKeys {
    /// The SURB identifier the reply's final hop reads in the clear.
    pub fn surb_id(&self) -> &[u8; SURB_ID_SIZE] {
        &self.surb_id
    }

    /// Reads the message of a reply whose payload came out of the final hop
    /// (every hop removed a layer): re-adds the hops' layers last hop first,
    /// removes the sender's, and checks the padding.
    pub fn open(&self, sealed_payload: &[u8]) -> Result<Vec<u8>, SphinxError> {
        let keys = self
            .seeds
            .iter()
            .map(derive_payload_key)
            .collect::<Result<Vec<_>, _>>()?;
        let last = keys.last().ok_or(SphinxError::SurbLength { len: 0 })?;
        let mut payload = sealed_payload.to_vec();
        for key in keys.iter().rev() {
            add_layer(key, &mut payload)?;
        }
        remove_layer(last, &mut payload)?;
        decode_payload(&payload)
    }

    /// `SURB id | seeds`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SURB_ID_SIZE + PAYLOAD_KEY_SEED_SIZE * self.seeds.len());
        out.extend_from_slice(&self.surb_id);
        for seed in &self.seeds {
            out.extend_from_slice(seed);
        }
        out
    }

    /// Reads the serialized form.
    pub fn from_bytes(bytes: &[u8]) -> Result<ReplyKeys, SphinxError> {
        let (surb_id, seeds) = bytes
            .split_first_chunk::<SURB_ID_SIZE>()
            .ok_or(SphinxError::SurbLength { len: bytes.len() })?;
        Ok(ReplyKeys {
            surb_id: *surb_id,
            seeds: read_seeds(seeds, bytes.len())?,
        })
    }
}
