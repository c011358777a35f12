//! The baseline a node's cost is measured against: one Sphinx unwrap.
//!
//! A packet at a mix node needs one unwrap and nothing else of substance;
//! what a node spends beyond it per packet is overhead. The load tools
//! print a node's CPU per packet beside [`measure_unwrap`], taken on the
//! same machine in the same run: packets of the node's own Sphinx
//! (`protocol::sphinx`, every node's default codec) over a two-hop route,
//! unwrapped at their first hop on one thread, timed by that thread's CPU
//! clock (time spent descheduled on a loaded machine is not counted, as it
//! is not in a node's `/proc` CPU times either). A gateway's unwraps are
//! final hops, which need one scalar multiplication instead of two, so they
//! are timed apart, at the second hop of the same packets.
//!
//! On a quiet machine an unwrap runs with warm caches and a core to itself;
//! inside a node under load it does not, and the two differ by a fifth and
//! more on a small shared machine. Nodes therefore also time one unwrap in
//! sixteen themselves (`unwrap_cpu_seconds_total`, `unwraps_timed_total`),
//! and the load tools give a node's cost against those too.

use std::time::Duration;

use protocol::frame::Frame;
use protocol::keys::{IdentityKeyPair, SphinxKeyPair};
use protocol::packet::{RouteHop, build_packet};
use protocol::sphinx::{UnwrappedPacket, unwrap_packet};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sphinx_packet::route::DestinationAddressBytes;

use crate::error::LocalnetError;
pub use nodeshell::metrics::thread_cpu_time;

/// The cost of one unwrap on this machine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnwrapBaseline {
    /// Unwraps timed (of each kind).
    pub unwraps: usize,
    /// CPU time of one unwrap at a hop that forwards (a mix node's), in
    /// microseconds: two scalar multiplications.
    pub micros: f64,
    /// CPU time of one unwrap at the final hop (a gateway's deliveries), in
    /// microseconds: one scalar multiplication, no blinding for a next hop.
    pub final_micros: f64,
}

/// Builds `packets` distinct packets over two hops and times `rounds` passes
/// of unwrapping all of them on the calling thread, at the first hop
/// (forward) and then at the second (final); the best pass of each is the
/// baseline (the least disturbed by other work on the machine).
pub fn measure_unwrap(packets: usize, rounds: usize) -> Result<UnwrapBaseline, LocalnetError> {
    let failed = |why: String| LocalnetError::Failed("unwrap baseline".into(), why);
    let mut rng = ChaCha20Rng::seed_from_u64(0x5eed);
    let first = SphinxKeyPair::generate(&mut rng);
    let last = SphinxKeyPair::generate(&mut rng);
    let route = [
        RouteHop {
            id: IdentityKeyPair::generate(&mut rng).node_id(),
            sphinx_key: first.public(),
        },
        RouteHop {
            id: IdentityKeyPair::generate(&mut rng).node_id(),
            sphinx_key: last.public(),
        },
    ];
    let frame = Frame::Ack.encode().map_err(|e| failed(e.to_string()))?;
    let delays = [Duration::from_millis(50), Duration::ZERO];
    let destination = DestinationAddressBytes::from_bytes([7; 32]);
    let built: Vec<Vec<u8>> = (0..packets.max(1))
        .map(|_| {
            build_packet(&mut rng, &route, &delays, destination, [0; 16], &frame)
                .map(|p| p.bytes)
                .map_err(|e| failed(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let forwarded: Vec<Vec<u8>> = built
        .iter()
        .map(|packet| match unwrap_packet(first.secret(), packet) {
            Ok(UnwrappedPacket::Forward { packet, .. }) => Ok(packet),
            Ok(_) => Err(failed("the first hop of two is not a forward".into())),
            Err(e) => Err(failed(e.to_string())),
        })
        .collect::<Result<_, _>>()?;
    let best = |key: &SphinxKeyPair, packets: &[Vec<u8>]| -> Result<f64, LocalnetError> {
        let mut best = f64::INFINITY;
        for _ in 0..rounds.max(1) {
            let started = thread_cpu_time();
            for packet in packets {
                unwrap_packet(key.secret(), packet).map_err(|e| failed(e.to_string()))?;
            }
            let spent = thread_cpu_time().saturating_sub(started);
            best = best.min(spent.as_secs_f64() * 1e6 / packets.len() as f64);
        }
        Ok(best)
    };
    Ok(UnwrapBaseline {
        unwraps: built.len() * rounds.max(1),
        micros: best(&first, &built)?,
        final_micros: best(&last, &forwarded)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_unwrap_takes_some_cpu_time() {
        let b = measure_unwrap(8, 2).unwrap();
        assert_eq!(b.unwraps, 16);
        // Two scalar multiplications cannot be free, nor take a second.
        assert!(b.micros > 1.0 && b.micros < 1e6, "{b:?}");
        // A final hop skips the second multiplication (the next hop's alpha).
        assert!(b.final_micros > 0.5 && b.final_micros < b.micros, "{b:?}");
    }
}
