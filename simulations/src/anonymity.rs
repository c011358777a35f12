//! Sender anonymity as a global passive observer computes it.
//!
//! Every packet carries the observer's belief about who sent it: a probability
//! distribution over senders ([`SenderDist`]). A packet leaving a client is
//! certainly from that client. With exponential (memoryless) delays, every
//! packet inside a mix is equally likely to be the next to leave, whatever
//! its arrival time; so the packet that leaves gets the *mixture* (the
//! average) of the distributions of all packets in the mix at that instant,
//! itself included. A corrupt mix tells the observer which input left, so its
//! output keeps its own distribution. The sender entropy of a target packet
//! is the Shannon entropy of its distribution where it is delivered; 2^H is
//! the effective size of its anonymity set. The model and its assumptions are
//! written down in docs/simulations.md.
//!
//! Nodes' own loop cover (mix nodes' and gateways') also sits in the pools;
//! its "sender" is the node (ids after the clients), and the entropy of a target is taken over clients
//! only, renormalised, since the observer knows a delivered message came from
//! a client.

use std::rc::Rc;
use std::time::Duration;

use protocol::time::Timestamp;

pub use crate::closed_form::single_mix_entropy_bits;

/// Beliefs about the sender of one packet: `(sender, probability)` pairs, each
/// sender once, in a deterministic (not sorted) order.
#[derive(Clone, Debug, PartialEq)]
pub struct SenderDist(Vec<(u32, f64)>);

impl SenderDist {
    /// Certainly `sender`.
    pub fn point(sender: u32) -> Rc<SenderDist> {
        Rc::new(SenderDist(vec![(sender, 1.0)]))
    }

    /// The `(sender, probability)` pairs.
    pub fn entries(&self) -> &[(u32, f64)] {
        &self.0
    }

    /// `dist` after evidence that multiplies the probability of every sender
    /// `marked` holds for by `weight` (of every other sender by 1),
    /// renormalised; `dist` itself when the evidence changes nothing or
    /// would leave no sender.
    pub fn reweighted(
        dist: &Rc<SenderDist>,
        marked: impl Fn(u32) -> bool,
        weight: f64,
    ) -> Rc<SenderDist> {
        if weight == 1.0 || !dist.0.iter().any(|(s, _)| marked(*s)) {
            return dist.clone();
        }
        let scaled = |s: u32, p: f64| if marked(s) { p * weight } else { p };
        let total: f64 = dist.0.iter().map(|&(s, p)| scaled(s, p)).sum();
        if !(total.is_finite() && total > 0.0) {
            return dist.clone();
        }
        let out = dist
            .0
            .iter()
            .filter_map(|&(s, p)| {
                let q = scaled(s, p);
                (q > 0.0).then_some((s, q / total))
            })
            .collect();
        Rc::new(SenderDist(out))
    }

    /// Entropy in bits over senders below `clients`, renormalised; 0 if none.
    pub fn client_entropy_bits(&self, clients: u32) -> f64 {
        let total: f64 = self
            .0
            .iter()
            .filter(|(s, _)| *s < clients)
            .map(|(_, p)| p)
            .sum();
        if total <= 0.0 {
            return 0.0;
        }
        let h: f64 = self
            .0
            .iter()
            .filter(|(s, p)| *s < clients && *p > 0.0)
            .map(|(_, p)| {
                let q = p / total;
                -q * q.log2()
            })
            .sum();
        if h > 0.0 { h } else { 0.0 }
    }
}

/// Reusable buffers for mixing distributions; sized to the number of senders.
#[derive(Debug)]
pub struct MixtureScratch {
    acc: Vec<f64>,
    touched: Vec<u32>,
}

impl MixtureScratch {
    /// Buffers for `senders` possible senders.
    pub fn new(senders: usize) -> Self {
        MixtureScratch {
            acc: vec![0.0; senders],
            touched: Vec::new(),
        }
    }

    /// The average of `members` (equal weights).
    pub fn mixture<'a>(
        &mut self,
        members: impl IntoIterator<Item = &'a SenderDist>,
    ) -> Rc<SenderDist> {
        let mut count = 0usize;
        for dist in members {
            count += 1;
            for &(sender, p) in &dist.0 {
                if let Some(slot) = self.acc.get_mut(sender as usize) {
                    if *slot == 0.0 {
                        self.touched.push(sender);
                    }
                    *slot += p;
                }
            }
        }
        // No sort: the order of first touch is already deterministic, and
        // sorting a thousand entries per packet would dominate the run.
        let weight = 1.0 / count.max(1) as f64;
        let mut out = Vec::with_capacity(self.touched.len());
        for &sender in &self.touched {
            if let Some(slot) = self.acc.get_mut(sender as usize) {
                out.push((sender, *slot * weight));
                *slot = 0.0;
            }
        }
        self.touched.clear();
        Rc::new(SenderDist(out))
    }
}

/// The observer's beliefs about the packets inside one mix, summed.
///
/// Keeping the sum up to date as packets enter and leave makes the mixture
/// at each departure cost the size of the mixture itself, not the sum of
/// every member's size ([`MixtureScratch`] computes the same thing from
/// scratch, and the tests check one against the other).
#[derive(Debug, Default)]
pub struct PoolBelief {
    sums: SenderSums,
    members: usize,
}

/// Weighted sums of sender probabilities over the beliefs added and not yet
/// removed, one entry per sender whose sum is not zero (so a mixture costs
/// its own size, and memory grows with the senders present plus a 4-byte
/// slot per sender id seen, not with every belief: a network of thousands
/// of nodes keeps two of these per node).
#[derive(Debug, Default)]
struct SenderSums {
    /// Where each present sender's entry is, by sender id ([`ABSENT`] when
    /// none); grown to the largest id seen. A slice lookup, not a hash: this
    /// is the hot loop of a tracked run.
    index: Vec<u32>,
    /// `(sender, weighted sum, beliefs counted)`, in order of first entry
    /// (a removed entry's place goes to the last one).
    entries: Vec<(u32, f64, u32)>,
}

/// An index slot of a sender with no entry.
const ABSENT: u32 = u32::MAX;

impl SenderSums {
    /// The index slot of `sender`, grown to hold it.
    fn slot(&mut self, sender: u32) -> Option<&mut u32> {
        let at = sender as usize;
        if at >= self.index.len() {
            self.index.resize(at + 1, ABSENT);
        }
        self.index.get_mut(at)
    }

    /// Adds `weight` × `dist`.
    fn add(&mut self, dist: &SenderDist, weight: f64) {
        for &(sender, p) in &dist.0 {
            let next = self.entries.len() as u32;
            let Some(slot) = self.slot(sender) else {
                continue;
            };
            let pos = *slot;
            if pos == ABSENT {
                *slot = next;
                self.entries.push((sender, weight * p, 1));
            } else if let Some(e) = self.entries.get_mut(pos as usize) {
                e.1 += weight * p;
                e.2 += 1;
            }
        }
    }

    /// Removes `weight` × `dist`, added before.
    fn remove(&mut self, dist: &SenderDist, weight: f64) {
        for &(sender, p) in &dist.0 {
            let Some(&pos) = self.index.get(sender as usize) else {
                continue;
            };
            let pos = pos as usize;
            let Some(e) = self.entries.get_mut(pos) else {
                continue;
            };
            e.1 -= weight * p;
            e.2 = e.2.saturating_sub(1);
            if e.2 == 0 {
                // Gone, whatever rounding the additions left.
                if let Some(slot) = self.index.get_mut(sender as usize) {
                    *slot = ABSENT;
                }
                self.entries.swap_remove(pos);
                if let Some(&(moved, _, _)) = self.entries.get(pos)
                    && let Some(slot) = self.index.get_mut(moved as usize)
                {
                    *slot = pos as u32;
                }
            }
        }
    }

    /// Forgets every sender whose sum is below `floor`.
    fn prune(&mut self, floor: f64) {
        for e in &self.entries {
            if e.1 < floor
                && let Some(slot) = self.index.get_mut(e.0 as usize)
            {
                *slot = ABSENT;
            }
        }
        self.entries.retain(|e| e.1 >= floor);
        for (pos, e) in self.entries.iter().enumerate() {
            if let Some(slot) = self.index.get_mut(e.0 as usize) {
                *slot = pos as u32;
            }
        }
    }

    /// Multiplies every sum by `factor`.
    fn scale(&mut self, factor: f64) {
        for e in &mut self.entries {
            e.1 *= factor;
        }
    }

    /// Each sender with a non-zero sum, its sum mapped by `f`.
    fn mixture(&self, f: impl Fn(f64) -> f64) -> Rc<SenderDist> {
        let out = self
            .entries
            .iter()
            .map(|&(s, sum, _)| (s, f(sum)))
            .collect();
        Rc::new(SenderDist(out))
    }
}

impl PoolBelief {
    /// An empty pool.
    pub fn new() -> Self {
        PoolBelief::default()
    }

    /// Packets inside.
    pub fn members(&self) -> usize {
        self.members
    }

    /// A packet with belief `dist` entered.
    pub fn enter(&mut self, dist: &SenderDist) {
        self.members += 1;
        self.sums.add(dist, 1.0);
    }

    /// A packet that entered with belief `dist` left.
    pub fn leave(&mut self, dist: &SenderDist) {
        self.members = self.members.saturating_sub(1);
        self.sums.remove(dist, 1.0);
    }

    /// The equal-weight mixture of the members' beliefs.
    pub fn mixture(&self) -> Rc<SenderDist> {
        let weight = 1.0 / self.members.max(1) as f64;
        self.sums.mixture(|sum| sum.max(0.0) * weight)
    }

    /// Forgets everything and frees the memory.
    pub fn release_memory(&mut self) {
        *self = PoolBelief::default();
    }
}

/// What one observer's belief says about a target whose true sender is known
/// to the simulator.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Posterior {
    /// Shannon entropy over clients, bits.
    pub entropy_bits: f64,
    /// Min-entropy over clients, −log2 of the largest probability, bits.
    pub min_entropy_bits: f64,
    /// Probability the belief gives the true sender (the link's probability).
    pub true_sender: f64,
    /// Chance that the observer's best guess (a most likely sender, ties
    /// broken at random) is the true sender.
    pub guessed: f64,
}

impl SenderDist {
    /// The belief's figures over senders below `clients`, renormalised, for
    /// a packet truly sent by `truth`.
    pub fn posterior(&self, clients: u32, truth: u32) -> Posterior {
        let total: f64 = self
            .0
            .iter()
            .filter(|(s, _)| *s < clients)
            .map(|(_, p)| p)
            .sum();
        if total <= 0.0 {
            return Posterior::default();
        }
        let max = self
            .0
            .iter()
            .filter(|(s, _)| *s < clients)
            .map(|(_, p)| *p)
            .fold(0.0, f64::max);
        let near_max = |p: f64| p >= max * (1.0 - 1e-9);
        let ties = self
            .0
            .iter()
            .filter(|(s, p)| *s < clients && near_max(*p))
            .count();
        let truth_p: f64 = self
            .0
            .iter()
            .filter(|(s, _)| *s == truth)
            .map(|(_, p)| p)
            .sum();
        let min_entropy = -(max / total).log2();
        Posterior {
            entropy_bits: self.client_entropy_bits(clients),
            min_entropy_bits: if min_entropy > 0.0 { min_entropy } else { 0.0 },
            true_sender: truth_p / total,
            guessed: if truth_p > 0.0 && near_max(truth_p) {
                1.0 / ties.max(1) as f64
            } else {
                0.0
            },
        }
    }
}

/// A packet's beliefs under the two passive observers: the pool observer
/// (which packets are inside a mix) and the timing observer (only when
/// packets entered and left).
#[derive(Clone, Debug, PartialEq)]
pub struct Beliefs {
    /// The pool observer's.
    pub pool: Rc<SenderDist>,
    /// The timing observer's.
    pub timing: Rc<SenderDist>,
}

impl Beliefs {
    /// Certainly `sender`, for both observers.
    pub fn point(sender: u32) -> Beliefs {
        let p = SenderDist::point(sender);
        Beliefs {
            pool: p.clone(),
            timing: p,
        }
    }
}

/// The timing observer's view of one mix: every input so far, each weighed
/// by the exponential delay density at its age.
///
/// The observer sees when packets enter and leave but not which packet
/// leaves, nor which inputs already left; for an output at t it gives input
/// j, which entered at t_j with belief b_j, the weight e^(−(t − t_j)/d), and
/// the output's belief is the weighted mixture of the b_j (Danezis 2004, the
/// continuous-time mix measure). Every weight decays by the same factor as
/// time passes, so the pool keeps only the weighted sums per sender,
/// relative to an origin instant (e^((t_j − origin)/d)), and never the inputs
/// themselves: memory grows with the senders whose share is still above
/// [`MASS_FLOOR`], not with the inputs. A sender's share falls below the
/// floor some 20 mean delays after its last input; it is then left out of
/// the mixtures and, at the next rescaling of the origin, forgotten.
#[derive(Debug, Default)]
pub struct TimingPool {
    per_ns: f64,
    origin: Timestamp,
    sums: SenderSums,
    total: f64,
}

/// A sender whose share of a timing pool's weight is below this is left out
/// of its mixtures and forgotten (an input 20.7 mean delays old, alone).
pub const MASS_FLOOR: f64 = 1e-9;

/// Rescale the stored weights when the newest reaches e^this.
const RESCALE_EXPONENT: f64 = 30.0;

impl TimingPool {
    /// An empty view of a mix with mean delay `mean_delay`.
    pub fn new(mean_delay: Duration) -> Self {
        let d = mean_delay.as_nanos().max(1) as f64;
        TimingPool {
            per_ns: 1.0 / d,
            ..TimingPool::default()
        }
    }

    fn exponent(&self, at: Timestamp) -> f64 {
        let ns = at.as_nanos() as f64 - self.origin.as_nanos() as f64;
        ns * self.per_ns
    }

    /// Senders remembered (with a share at or above [`MASS_FLOOR`] at the
    /// last rescaling, or added since).
    pub fn senders(&self) -> usize {
        self.sums.entries.len()
    }

    /// A packet with belief `dist` entered at `now` (instants never decrease).
    pub fn enter(&mut self, now: Timestamp, dist: &SenderDist) {
        if self.total <= 0.0 {
            self.origin = now;
            self.total = 0.0;
        } else if self.exponent(now) > RESCALE_EXPONENT {
            let factor = (-self.exponent(now)).exp();
            self.sums.scale(factor);
            self.total *= factor;
            self.origin = now;
            self.sums.prune(self.total * MASS_FLOOR);
        }
        let w = self.exponent(now).exp();
        self.total += w;
        self.sums.add(dist, w);
    }

    /// The belief about a packet leaving now: the weighted mixture.
    ///
    /// Every weight at the departure is the stored one divided by
    /// e^((t − origin)/d), the total's too: the shares do not depend on the
    /// departure's instant, only on the inputs so far.
    pub fn mixture(&self) -> Rc<SenderDist> {
        let total = self.total.max(f64::MIN_POSITIVE);
        let floor = total * MASS_FLOOR;
        let out = self
            .sums
            .entries
            .iter()
            .filter(|e| e.1 >= floor)
            .map(|&(s, sum, _)| (s, sum / total))
            .collect();
        Rc::new(SenderDist(out))
    }

    /// Forgets everything and frees the memory.
    pub fn release_memory(&mut self) {
        *self = TimingPool::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixture_of_points_is_uniform_and_entropy_counts_clients_only() {
        let mut scratch = MixtureScratch::new(10);
        let a = SenderDist::point(1);
        let b = SenderDist::point(3);
        let c = SenderDist::point(3);
        let m = scratch.mixture([a.as_ref(), b.as_ref(), c.as_ref()]);
        let mut entries = m.entries().to_vec();
        entries.sort_by_key(|e| e.0);
        assert_eq!(entries, vec![(1, 1.0 / 3.0), (3, 2.0 / 3.0)]);
        let u = scratch.mixture([a.as_ref(), b.as_ref()]);
        assert!((u.client_entropy_bits(10) - 1.0).abs() < 1e-12);
        // Sender 9 is a mix node when there are 5 clients: renormalised away.
        let with_mix = scratch.mixture([a.as_ref(), SenderDist::point(9).as_ref()]);
        assert_eq!(with_mix.client_entropy_bits(5), 0.0);
    }

    #[test]
    fn running_pool_sum_matches_mixture_from_scratch() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let senders = 40;
        let mut scratch = MixtureScratch::new(senders);
        let mut pool = PoolBelief::new();
        let mut inside: Vec<Rc<SenderDist>> = Vec::new();
        let sorted = |d: &SenderDist| {
            let mut e = d.entries().to_vec();
            e.sort_by_key(|x| x.0);
            e
        };
        for step in 0..3_000 {
            if inside.is_empty() || rng.random::<f64>() < 0.52 {
                // Enter a packet whose belief is a mixture of a few points.
                let points: Vec<Rc<SenderDist>> = (0..rng.random_range(1..4))
                    .map(|_| SenderDist::point(rng.random_range(0..senders as u32)))
                    .collect();
                let d = scratch.mixture(points.iter().map(|p| p.as_ref()));
                pool.enter(&d);
                inside.push(d);
            } else {
                let expected = scratch.mixture(inside.iter().map(|d| d.as_ref()));
                let got = pool.mixture();
                let (e, g) = (sorted(&expected), sorted(&got));
                assert_eq!(e.len(), g.len(), "step {step}");
                for (a, b) in e.iter().zip(&g) {
                    assert_eq!(a.0, b.0);
                    assert!((a.1 - b.1).abs() < 1e-9, "step {step}: {a:?} {b:?}");
                }
                let leaving = inside.swap_remove(rng.random_range(0..inside.len()));
                pool.leave(&leaving);
            }
            assert_eq!(pool.members(), inside.len());
        }
    }

    #[test]
    fn posterior_reports_min_entropy_true_sender_and_guess() {
        let mut scratch = MixtureScratch::new(10);
        let d = scratch.mixture(
            [1u32, 1, 2, 3]
                .iter()
                .map(|s| SenderDist::point(*s))
                .collect::<Vec<_>>()
                .iter()
                .map(|p| p.as_ref()),
        );
        let p = d.posterior(10, 1);
        assert!((p.min_entropy_bits - 1.0).abs() < 1e-12);
        assert!((p.entropy_bits - 1.5).abs() < 1e-12);
        assert!((p.true_sender - 0.5).abs() < 1e-12);
        assert_eq!(p.guessed, 1.0);
        let q = d.posterior(10, 2);
        assert_eq!(q.guessed, 0.0);
        assert!((q.true_sender - 0.25).abs() < 1e-12);
        // A tie of two: the best guess is right half the time.
        let even = scratch.mixture([SenderDist::point(4).as_ref(), SenderDist::point(5).as_ref()]);
        assert_eq!(even.posterior(10, 5).guessed, 0.5);
        assert!(p.min_entropy_bits <= p.entropy_bits);
    }

    #[test]
    fn timing_pool_weighs_inputs_by_the_delay_density_at_their_age() {
        let d = Duration::from_millis(100);
        let mut pool = TimingPool::new(d);
        let at = |ms| Timestamp::from_millis(ms);
        pool.enter(at(1_000), &SenderDist::point(0));
        pool.enter(at(1_100), &SenderDist::point(1));
        let m = pool.mixture();
        let mut e = m.entries().to_vec();
        e.sort_by_key(|x| x.0);
        // Ages 200 and 100 ms: weights e^-2 and e^-1.
        let (w0, w1) = ((-2.0f64).exp(), (-1.0f64).exp());
        assert!((e[0].1 - w0 / (w0 + w1)).abs() < 1e-9, "{e:?}");
        assert!((e[1].1 - w1 / (w0 + w1)).abs() < 1e-9, "{e:?}");
        // Many mean delays later (and many rescalings) the old senders are
        // forgotten, the weights stay exact, and memory holds the senders
        // still present, not the 2 000 inputs.
        for k in 0..2_000u64 {
            pool.enter(at(2_000 + k * 10), &SenderDist::point(2 + (k % 2) as u32));
        }
        let m = pool.mixture();
        assert!(m.entries().iter().all(|(s, _)| *s >= 2));
        let total: f64 = m.entries().iter().map(|x| x.1).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert_eq!(pool.senders(), 2);
        // Inputs alternate every 10 ms (a tenth of d): the later one's share is
        // 1 / (1 + e^-0.1), by the sum of the geometric series.
        let share = |s: u32| m.entries().iter().find(|e| e.0 == s).map_or(0.0, |e| e.1);
        let later = 1.0 / (1.0 + (-0.1f64).exp());
        assert!((share(3) - later).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn timing_pool_memory_follows_the_senders_present_not_those_seen() {
        let d = Duration::from_millis(50);
        let mut pool = TimingPool::new(d);
        // 100 000 senders, each sending once, one every millisecond: at any
        // moment only the last ~20 mean delays (about 1 000 senders) weigh.
        for k in 0..100_000u64 {
            pool.enter(Timestamp::from_millis(k), &SenderDist::point(k as u32));
            assert!(pool.senders() <= 2_600, "{k}: {}", pool.senders());
        }
        let m = pool.mixture();
        let total: f64 = m.entries().iter().map(|x| x.1).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        // The newest sender weighs most: 1 − e^(−1/50) of the whole.
        let newest = m
            .entries()
            .iter()
            .find(|e| e.0 == 99_999)
            .map_or(0.0, |e| e.1);
        assert!(
            (newest - (1.0 - (-1.0f64 / 50.0).exp())).abs() < 1e-9,
            "{newest}"
        );
    }
}
