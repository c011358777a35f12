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
    sum: Vec<f64>,
    count: Vec<u32>,
    active: Vec<u32>,
    position: Vec<u32>,
    members: usize,
}

impl PoolBelief {
    /// An empty pool over `senders` possible senders.
    pub fn new(senders: usize) -> Self {
        PoolBelief {
            sum: vec![0.0; senders],
            count: vec![0; senders],
            active: Vec::new(),
            position: vec![0; senders],
            members: 0,
        }
    }

    /// Packets inside.
    pub fn members(&self) -> usize {
        self.members
    }

    /// A packet with belief `dist` entered.
    pub fn enter(&mut self, dist: &SenderDist) {
        self.members += 1;
        for &(sender, p) in &dist.0 {
            let i = sender as usize;
            let (Some(sum), Some(count)) = (self.sum.get_mut(i), self.count.get_mut(i)) else {
                continue;
            };
            *sum += p;
            *count += 1;
            if *count == 1 {
                if let Some(pos) = self.position.get_mut(i) {
                    *pos = self.active.len() as u32;
                }
                self.active.push(sender);
            }
        }
    }

    /// A packet that entered with belief `dist` left.
    pub fn leave(&mut self, dist: &SenderDist) {
        self.members = self.members.saturating_sub(1);
        for &(sender, p) in &dist.0 {
            let i = sender as usize;
            let (Some(sum), Some(count)) = (self.sum.get_mut(i), self.count.get_mut(i)) else {
                continue;
            };
            *count = count.saturating_sub(1);
            *sum -= p;
            if *count == 0 {
                // Exactly zero again, whatever rounding the additions left.
                *sum = 0.0;
                let pos = self.position.get(i).copied().unwrap_or(0) as usize;
                self.active.swap_remove(pos);
                if let Some(&moved) = self.active.get(pos)
                    && let Some(p) = self.position.get_mut(moved as usize)
                {
                    *p = pos as u32;
                }
            }
        }
    }

    /// The equal-weight mixture of the members' beliefs.
    pub fn mixture(&self) -> Rc<SenderDist> {
        let weight = 1.0 / self.members.max(1) as f64;
        let out = self
            .active
            .iter()
            .map(|&s| {
                let sum = self.sum.get(s as usize).copied().unwrap_or(0.0);
                (s, sum.max(0.0) * weight)
            })
            .collect();
        Rc::new(SenderDist(out))
    }

    /// Forgets everything and frees the memory.
    pub fn release_memory(&mut self) {
        *self = PoolBelief::default();
    }
}

/// Expected sender entropy (bits) of a packet leaving one exponential mix fed
/// by Poisson arrivals from many distinct senders, with `rho` = arrival rate ×
/// mean delay: the other packets in the mix when it leaves are Poisson(ρ), so
/// H = E[log2(1 + N)], N ~ Poisson(ρ). Derivation in docs/simulations.md.
pub fn single_mix_entropy_bits(rho: f64) -> f64 {
    if !(rho.is_finite() && rho > 0.0) {
        return 0.0;
    }
    let mut total = 0.0;
    let mut mass = 0.0;
    let mut log_p = -rho; // ln P(N = 0)
    let mut n = 0u32;
    while mass < 1.0 - 1e-12 && n < 100_000 {
        let p = log_p.exp();
        total += p * f64::from(n + 1).log2();
        mass += p;
        n += 1;
        log_p += rho.ln() - f64::from(n).ln();
    }
    total
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
        let mut pool = PoolBelief::new(senders);
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
    fn analytic_single_mix_entropy_limits() {
        assert_eq!(single_mix_entropy_bits(0.0), 0.0);
        // Small ρ: almost always alone, H ≈ ρ (one other packet with prob. ρ).
        assert!((single_mix_entropy_bits(0.01) - 0.01 * 0.995).abs() < 1e-4);
        // Large ρ: H ≈ log2(1 + ρ).
        let h = single_mix_entropy_bits(1000.0);
        assert!((h - 1001f64.log2()).abs() < 0.01, "{h}");
    }
}
