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
//! On a quiet machine an unwrap runs with warm caches and the CPU to itself;
//! inside a node under load it does not, and the two differ by a fifth and
//! more on a small shared machine. [`UnwrapSampler`] therefore also times
//! unwraps one at a time during the measured window, beside the nodes, so
//! that a node's overhead can be told from the unwrap's own slowdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use protocol::frame::Frame;
use protocol::keys::{IdentityKeyPair, SphinxKeyPair};
use protocol::packet::{RouteHop, build_packet};
use protocol::sphinx::{UnwrappedPacket, unwrap_packet};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sphinx_packet::route::DestinationAddressBytes;

use crate::error::LocalnetError;

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

/// The calling thread's CPU time.
pub fn thread_cpu_time() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Distinct packets over two hops, and their forms after the first hop.
struct TwoHopPackets {
    first: SphinxKeyPair,
    last: SphinxKeyPair,
    built: Vec<Vec<u8>>,
    forwarded: Vec<Vec<u8>>,
}

fn failed(why: String) -> LocalnetError {
    LocalnetError::Failed("unwrap baseline".into(), why)
}

impl TwoHopPackets {
    fn build(packets: usize) -> Result<Self, LocalnetError> {
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
        Ok(TwoHopPackets {
            first,
            last,
            built,
            forwarded,
        })
    }

    /// CPU time of one unwrap of `packet` with `key`.
    fn time(key: &SphinxKeyPair, packet: &[u8]) -> Result<Duration, LocalnetError> {
        let started = thread_cpu_time();
        unwrap_packet(key.secret(), packet).map_err(|e| failed(e.to_string()))?;
        Ok(thread_cpu_time().saturating_sub(started))
    }
}

/// Builds `packets` distinct packets over two hops and times `rounds` passes
/// of unwrapping all of them on the calling thread, at the first hop
/// (forward) and then at the second (final); the best pass of each is the
/// baseline (the least disturbed by other work on the machine).
pub fn measure_unwrap(packets: usize, rounds: usize) -> Result<UnwrapBaseline, LocalnetError> {
    let p = TwoHopPackets::build(packets)?;
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
        unwraps: p.built.len() * rounds.max(1),
        micros: best(&p.first, &p.built)?,
        final_micros: best(&p.last, &p.forwarded)?,
    })
}

/// Unwraps timed one at a time on a thread of their own while other work
/// runs: the baseline as a node pays it under the same load (caches shared
/// with every other process, a cold start after each sleep), where
/// [`measure_unwrap`] on a quiet machine gives its best case.
pub struct UnwrapSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<UnwrapBaseline, LocalnetError>>,
}

impl UnwrapSampler {
    /// Starts timing one forward and one final-hop unwrap every `interval`.
    pub fn start(interval: Duration) -> Result<Self, LocalnetError> {
        let packets = TwoHopPackets::build(64)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("unwrap-sampler".into())
            .spawn(move || {
                let (mut forward, mut last, mut n) = (Duration::ZERO, Duration::ZERO, 0usize);
                let pairs = packets.built.iter().zip(&packets.forwarded).cycle();
                for (built, forwarded) in pairs {
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    forward += TwoHopPackets::time(&packets.first, built)?;
                    last += TwoHopPackets::time(&packets.last, forwarded)?;
                    n += 1;
                    std::thread::sleep(interval);
                }
                let mean = |total: Duration| total.as_secs_f64() * 1e6 / n.max(1) as f64;
                Ok(UnwrapBaseline {
                    unwraps: n,
                    micros: mean(forward),
                    final_micros: mean(last),
                })
            })
            .map_err(|e| failed(e.to_string()))?;
        Ok(UnwrapSampler { stop, thread })
    }

    /// Stops the sampling and returns the mean of what it timed.
    pub fn finish(self) -> Result<UnwrapBaseline, LocalnetError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| failed("the sampling thread panicked".into()))?
    }
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

    #[test]
    fn the_sampler_times_unwraps_until_it_is_stopped() {
        let sampler = UnwrapSampler::start(Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let b = sampler.finish().unwrap();
        assert!(b.unwraps >= 1, "{b:?}");
        assert!(b.micros > 1.0 && b.micros < 1e6, "{b:?}");
        assert!(b.final_micros > 0.5 && b.final_micros < 1e6, "{b:?}");
    }
}
