//! The group arithmetic of Sphinx on Curve25519, in Edwards form: X25519
//! as `mul_clamped` on a decoded point, node public keys decoded once, and
//! the sender's running product of blinding factors. The reasoning is in
//! the [module docs](super#group-arithmetic); the unit tests check every
//! operation against x25519-dalek.

use std::sync::Arc;

use curve25519_dalek::edwards::EdwardsBasepointTable;
use curve25519_dalek::scalar::clamp_integer;
use curve25519_dalek::traits::BasepointTable;
use curve25519_dalek::{EdwardsPoint, MontgomeryPoint, Scalar};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::sphinx::error::SphinxError;
use crate::sphinx::geometry::ALPHA_SIZE;

/// Whether `u` (little endian) is a canonical field element: below the
/// prime 2^255 − 19, so in particular with the top bit clear.
pub(crate) fn is_canonical(u: &[u8; 32]) -> bool {
    let [low, middle @ .., high] = u;
    if *high & 0x80 != 0 {
        return false;
    }
    // The only encodings at or above the prime: 0x7f, thirty 0xff, and a low byte ≥ 0xed.
    !(*high == 0x7f && middle.iter().all(|b| *b == 0xff) && *low >= 0xed)
}

/// Decodes a u-coordinate to a point of large order, refusing every other
/// encoding: non-canonical bytes, points of the twist, small-order points.
/// Runs on public bytes only (alpha, a node's public key).
pub(crate) fn decode_point(u: &[u8; 32]) -> Result<EdwardsPoint, SphinxError> {
    if !is_canonical(u) {
        return Err(SphinxError::NonCanonicalAlpha);
    }
    let point = MontgomeryPoint(*u)
        .to_edwards(0)
        .ok_or(SphinxError::AlphaNotOnCurve)?;
    if point.is_small_order() {
        return Err(SphinxError::SmallOrderAlpha);
    }
    Ok(point)
}

/// X25519 of a decoded point: u([clamp(scalar)]·point), as bytes.
pub(crate) fn x25519(point: &EdwardsPoint, scalar: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(point.mul_clamped(*scalar).to_montgomery().to_bytes())
}

/// A node's public key, decoded once for building packets to it.
///
/// A sender multiplies each hop's key by a secret scalar once per packet.
/// [`NodePublicKey::precompute`] adds a table of multiples of the key
/// (30 KiB, about a millisecond to build) that makes that multiplication a
/// fixed-base one, about three times faster: worth it for the keys of a
/// topology a client builds many packets over.
#[derive(Clone, Debug)]
pub struct NodePublicKey {
    bytes: [u8; ALPHA_SIZE],
    /// 8·Y: the key with any torsion removed.
    cleared: EdwardsPoint,
    /// Multiples of 8·Y for fixed-base multiplication, if precomputed.
    table: Option<Arc<EdwardsBasepointTable>>,
}

impl PartialEq for NodePublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for NodePublicKey {}

impl NodePublicKey {
    /// Decodes a node's X25519 public key. Refuses what no honest key is:
    /// non-canonical bytes, points of the twist, small-order points.
    pub fn from_bytes(bytes: [u8; ALPHA_SIZE]) -> Result<NodePublicKey, SphinxError> {
        let point = decode_point(&bytes).map_err(|_| SphinxError::BadNodeKey)?;
        Ok(NodePublicKey {
            bytes,
            cleared: point.mul_by_cofactor(),
            table: None,
        })
    }

    /// The same key with its fixed-base table built (shared by clones).
    pub fn precompute(mut self) -> NodePublicKey {
        if self.table.is_none() {
            self.table = Some(Arc::new(EdwardsBasepointTable::create(&self.cleared)));
        }
        self
    }

    /// Whether the fixed-base table is built.
    pub fn is_precomputed(&self) -> bool {
        self.table.is_some()
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; ALPHA_SIZE] {
        &self.bytes
    }

    /// [scalar]·8Y, in constant time either way.
    fn mul_cleared(&self, scalar: &Scalar) -> EdwardsPoint {
        match &self.table {
            Some(table) => table.as_ref() * scalar,
            None => self.cleared * scalar,
        }
    }
}

impl TryFrom<&x25519_dalek::PublicKey> for NodePublicKey {
    type Error = SphinxError;

    fn try_from(key: &x25519_dalek::PublicKey) -> Result<Self, SphinxError> {
        NodePublicKey::from_bytes(key.to_bytes())
    }
}

/// The sender's running product of clamped scalars, K/8 mod ℓ (see the
/// module docs): after hop i it turns hop i + 1's key into its shared secret.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct BlindingProduct(Scalar);

impl BlindingProduct {
    /// Starts from the sender's initial secret; also returns alpha, u([c_x]·B).
    pub(crate) fn start(initial_secret: &[u8; 32]) -> (BlindingProduct, [u8; ALPHA_SIZE]) {
        let alpha = EdwardsPoint::mul_base_clamped(*initial_secret)
            .to_montgomery()
            .to_bytes();
        let eighth = Zeroizing::new(clamped_over_eight(initial_secret));
        (
            BlindingProduct(Scalar::from_bytes_mod_order(*eighth)),
            alpha,
        )
    }

    /// The shared secret of the next hop, whose key is `node`.
    pub(crate) fn shared_secret(&self, node: &NodePublicKey) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(node.mul_cleared(&self.0).to_montgomery().to_bytes())
    }

    /// Multiplies in a hop's blinding factor (clamped, as X25519 uses it).
    pub(crate) fn absorb(&mut self, blinding: &[u8; 32]) {
        let mut factor = Scalar::from_bytes_mod_order(clamp_integer(*blinding));
        self.0 *= factor;
        factor.zeroize();
    }
}

/// clamp(bytes) / 8: exact, since clamping clears the three low bits.
fn clamped_over_eight(bytes: &[u8; 32]) -> [u8; 32] {
    let clamped = Zeroizing::new(clamp_integer(*bytes));
    let mut out = [0u8; 32];
    let higher = clamped.iter().skip(1).chain(std::iter::once(&0u8));
    for ((o, low), high) in out.iter_mut().zip(clamped.iter()).zip(higher) {
        *o = (low >> 3) | (high << 5);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use x25519_dalek::{PublicKey, StaticSecret};

    fn bytes(seed: u8) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = seed.wrapping_mul(97).wrapping_add(i as u8).wrapping_mul(13);
        }
        b
    }

    #[test]
    fn edwards_x25519_is_x25519_dalek() {
        for seed in 0u8..40 {
            let secret = StaticSecret::from(bytes(seed));
            let public = PublicKey::from(&StaticSecret::from(bytes(seed ^ 0xa5)));
            let point = decode_point(public.as_bytes()).unwrap();
            assert_eq!(
                *x25519(&point, &secret.to_bytes()),
                secret.diffie_hellman(&public).to_bytes()
            );
        }
    }

    #[test]
    fn a_point_with_torsion_gives_the_x25519_result() {
        // P + T for an 8-torsion point T: clamping kills T in both.
        let secret = StaticSecret::from(bytes(3));
        let base = EdwardsPoint::mul_base_clamped(bytes(4));
        let mixed = base + curve25519_dalek::constants::EIGHT_TORSION[1];
        let u = mixed.to_montgomery().to_bytes();
        let point = decode_point(&u).unwrap();
        assert_eq!(
            *x25519(&point, &secret.to_bytes()),
            secret.diffie_hellman(&PublicKey::from(u)).to_bytes()
        );
    }

    #[test]
    fn running_product_matches_repeated_x25519() {
        for seed in 0u8..10 {
            let initial = bytes(seed);
            let (mut product, alpha) = BlindingProduct::start(&initial);
            assert_eq!(
                alpha,
                PublicKey::from(&StaticSecret::from(initial)).to_bytes()
            );
            let mut factors = vec![StaticSecret::from(initial)];
            for hop in 0u8..5 {
                let key_secret = StaticSecret::from(bytes(seed.wrapping_add(hop).wrapping_mul(7)));
                let public = PublicKey::from(&key_secret);
                let node = NodePublicKey::try_from(&public).unwrap();
                let ours = product.shared_secret(&node);
                assert_eq!(ours, product.shared_secret(&node.clone().precompute()));
                let theirs = factors.iter().fold(public, |acc, f| {
                    PublicKey::from(f.diffie_hellman(&acc).to_bytes())
                });
                assert_eq!(*ours, theirs.to_bytes());
                let blinding = bytes(hop.wrapping_add(100).wrapping_mul(seed | 1));
                product.absorb(&blinding);
                factors.push(StaticSecret::from(blinding));
            }
        }
    }

    #[test]
    fn hostile_encodings_are_refused() {
        let mut top = bytes(1);
        top[31] |= 0x80;
        assert_eq!(decode_point(&top), Err(SphinxError::NonCanonicalAlpha));
        let mut prime = [0xffu8; 32];
        prime[0] = 0xed;
        prime[31] = 0x7f;
        assert_eq!(decode_point(&prime), Err(SphinxError::NonCanonicalAlpha));
        // u = 0 and u = 1 are points of order 2 and 4.
        assert_eq!(decode_point(&[0u8; 32]), Err(SphinxError::SmallOrderAlpha));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(decode_point(&one), Err(SphinxError::SmallOrderAlpha));
        // About half of all u are on the twist; find one.
        let twist = (2u8..=255)
            .map(|u| {
                let mut b = [0u8; 32];
                b[0] = u;
                b
            })
            .find(|b| MontgomeryPoint(*b).to_edwards(0).is_none())
            .unwrap();
        assert_eq!(decode_point(&twist), Err(SphinxError::AlphaNotOnCurve));
        for t in curve25519_dalek::constants::EIGHT_TORSION {
            let u = t.to_montgomery().to_bytes();
            assert!(decode_point(&u).is_err());
        }
    }

    #[test]
    fn canonical_points() {
        let mut p = [0u8; 32];
        assert!(is_canonical(&p));
        p[31] = 0x80;
        assert!(!is_canonical(&p));
        let mut prime = [0xffu8; 32];
        prime[0] = 0xed;
        prime[31] = 0x7f;
        assert!(!is_canonical(&prime));
        prime[0] = 0xec;
        assert!(is_canonical(&prime));
    }
}
