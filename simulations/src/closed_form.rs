//! Closed forms the simulator is checked against, each with its source.
//!
//! One exponential mix (an M/M/∞ queue) fed by Poisson arrivals at rate λ
//! from many distinct senders, with mean delay d and ρ = λd:
//!
//! - the **pool observer** (it knows which packets are inside the mix when
//!   one leaves) sees the leaving packet as one of 1 + N, N ~ Poisson(ρ)
//!   (departures of an M/M/∞ queue see its stationary law), all equally
//!   likely: Shannon and min-entropy are both log2(1 + N), the true sender's
//!   posterior 1/(1 + N);
//! - the **timing observer** (it sees only when packets enter and leave)
//!   weighs each earlier input by the delay density at its age, e^(−a/d);
//!   the ages of the others are a Poisson process of rate λ on [0, ∞), the
//!   leaving packet's own is Exp(1/d). Its expectations reduce to integrals
//!   over the Laplace functional of that shot noise,
//!   E[e^(−sS)] = e^(−ρ·Ein(s)) with Ein(s) = ∫₀ˢ (1 − e^(−u))/u du,
//!   evaluated here by quadrature; for large ρ the entropy tends to
//!   log2(e·ρ) (Danezis, "The traffic analysis of continuous-time mixes",
//!   PET 2004).
//!
//! Derivations are written out in docs/simulations.md.

/// Euler–Mascheroni constant γ.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Expected sender entropy (bits) of a packet leaving one exponential mix fed
/// by Poisson arrivals from many distinct senders, with `rho` = arrival rate ×
/// mean delay: the other packets in the mix when it leaves are Poisson(ρ), so
/// H = E[log2(1 + N)], N ~ Poisson(ρ). The pool observer's min-entropy is the
/// same (its posterior is uniform). Derivation in docs/simulations.md.
pub fn single_mix_entropy_bits(rho: f64) -> f64 {
    poisson_expectation(rho, |n| f64::from(n + 1).log2())
}

/// The pool observer's expected posterior on the true sender of a packet
/// leaving one exponential mix: E[1/(1 + N)] = (1 − e^(−ρ))/ρ, N ~ Poisson(ρ).
/// With ties broken at random it is also the chance that its best guess is right.
pub fn single_mix_true_sender_probability(rho: f64) -> f64 {
    if !(rho.is_finite() && rho > 0.0) {
        return 1.0;
    }
    -(-rho).exp_m1() / rho
}

/// E[f(N)] for N ~ Poisson(ρ).
fn poisson_expectation(rho: f64, f: impl Fn(u32) -> f64) -> f64 {
    if !(rho.is_finite() && rho > 0.0) {
        return f(0);
    }
    let mut total = 0.0;
    let mut mass = 0.0;
    let mut log_p = -rho; // ln P(N = 0)
    let mut n = 0u32;
    while mass < 1.0 - 1e-12 && n < 100_000 {
        let p = log_p.exp();
        total += p * f(n);
        mass += p;
        n += 1;
        log_p += rho.ln() - f64::from(n).ln();
    }
    total
}

/// E1(x), the exponential integral, for x > 0 (series below 1, continued
/// fraction above; Numerical Recipes §6.3).
fn exp_integral_e1(x: f64) -> f64 {
    if x <= 1.0 {
        let mut sum = 0.0;
        let mut term = 1.0;
        for k in 1..60 {
            term *= -x / f64::from(k);
            sum -= term / f64::from(k);
        }
        return sum - EULER_GAMMA - x.ln();
    }
    // Modified Lentz on the continued fraction of e^x E1(x).
    let tiny = 1e-300;
    let mut b = x + 1.0;
    let mut c = 1.0 / tiny;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..200 {
        let a = -f64::from(i) * f64::from(i);
        b += 2.0;
        d = 1.0 / (a * d + b);
        c = b + a / c;
        let delta = c * d;
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h * (-x).exp()
}

/// Ein(s) = ∫₀ˢ (1 − e^(−u))/u du = E1(s) + ln s + γ (series near zero, where
/// that sum cancels).
fn ein(s: f64) -> f64 {
    if s <= 1.0 {
        let mut sum = 0.0;
        let mut term = 1.0;
        for k in 1..40 {
            term *= -s / f64::from(k);
            sum -= term / f64::from(k);
        }
        return sum;
    }
    exp_integral_e1(s) + s.ln() + EULER_GAMMA
}

/// Above this s, Ein(s) = ln s + γ to double precision (E1(50) ≈ 4e-24), and
/// the integrands below have closed-form tails.
const TAIL_START: f64 = 50.0;

/// ∫ over t = ln s from −40 to ln(TAIL_START) of `g(s)`·ds, Simpson's rule.
fn integrate_log_s(g: impl Fn(f64) -> f64) -> f64 {
    let (a, b) = (-40.0f64, TAIL_START.ln());
    let n = 20_000;
    let h = (b - a) / f64::from(n);
    let f = |t: f64| {
        let s = t.exp();
        g(s) * s
    };
    let mut sum = f(a) + f(b);
    for i in 1..n {
        let t = a + h * f64::from(i);
        sum += if i % 2 == 1 { 4.0 } else { 2.0 } * f(t);
    }
    sum * h / 3.0
}

/// The timing observer's expected sender entropy (bits) of a packet leaving
/// one exponential mix, ρ = λd (see the module doc).
///
/// With weights w = e^(−a/d) (the leaving packet's own among them),
/// W = Σw and Y = Σ (a/d)·w, H = ln W + Y/W nats; E[ln W] by Frullani's
/// integral and E[Y/W] = ∫ E[Y e^(−sW)] ds by Campbell's formula, both
/// against e^(−ρ·Ein(s)).
pub fn timing_single_mix_entropy_bits(rho: f64) -> f64 {
    if !(rho.is_finite() && rho > 0.0) {
        return 0.0;
    }
    let phi = |s: f64| (-rho * ein(s)).exp();
    // L(s) = E[e^(−s·x)], x ~ U(0, 1) (the leaving packet's own weight).
    let l = |s: f64| -(-s).exp_m1() / s;
    // I(s) = ∫₀¹ (−ln x) e^(−s·x) dx = Ein(s)/s: the other inputs' terms
    // (a/d)·w by Campbell's formula (their weights w = e^(−a/d) have
    // intensity ρ/w on (0, 1)).
    let i = |s: f64| ein(s) / s;
    // J(s) = E[(−ln x)·x·e^(−s·x)], x ~ U(0, 1): the leaving packet's own term.
    let j = |s: f64| {
        if s < 1e-3 {
            0.25 - s / 9.0
        } else {
            (ein(s) + (-s).exp_m1()) / (s * s)
        }
    };
    let tail_t = TAIL_START.ln();
    let scale = (-rho * EULER_GAMMA).exp();
    // E[ln W] = ∫ (e^(−s) − E[e^(−sW)])/s ds.
    let ln_w = integrate_log_s(|s| ((-s).exp() - l(s) * phi(s)) / s)
        - scale * (-(1.0 + rho) * tail_t).exp() / (1.0 + rho);
    // E[Y/W] = ∫ E[Y e^(−sW)] ds = ∫ Φ(s)·(J(s) + ρ·L(s)·I(s)) ds; above
    // TAIL_START the integrand is e^(−ργ) s^(−1−ρ) ((1 + ρ) ln s + γ − 1 + ργ)/s.
    let (a, b) = (1.0 + rho, EULER_GAMMA - 1.0 + rho * EULER_GAMMA);
    let tail = scale
        * (-(1.0 + rho) * tail_t).exp()
        * ((a * tail_t + b) / (1.0 + rho) + a / ((1.0 + rho) * (1.0 + rho)));
    let y_over_w = integrate_log_s(|s| phi(s) * (j(s) + rho * l(s) * i(s))) + tail;
    (ln_w + y_over_w) / std::f64::consts::LN_2
}

/// The timing observer's expected posterior on the true sender of a packet
/// leaving one exponential mix, ρ = λd:
/// ∫₀^∞ e^(−ρ·Ein(s)) (1 − e^(−s)(1 + s))/s² ds (see the module doc). Tends
/// to 1/(2ρ) for large ρ, half the pool observer's 1/(1 + ρ).
pub fn timing_single_mix_true_sender_probability(rho: f64) -> f64 {
    if !(rho.is_finite() && rho > 0.0) {
        return 1.0;
    }
    let g = |s: f64| {
        let k = if s < 1e-4 {
            0.5 - s / 3.0
        } else {
            (1.0 - (-s).exp() * (1.0 + s)) / (s * s)
        };
        (-rho * ein(s)).exp() * k
    };
    let scale = (-rho * EULER_GAMMA).exp();
    integrate_log_s(g) + scale * (-(1.0 + rho) * TAIL_START.ln()).exp() / (1.0 + rho)
}

/// The (n−1) adversary's chance of naming a target's output when the mix
/// under attack sends its own loop cover at `lambda_m` per second and delays
/// by `mean_delay_secs` on average: with the mix flushed, the outputs after
/// the target entered are the target (after Exp(1/d)) and loop cover
/// (Poisson at λ_M); its best guess, the first output, is right with
/// probability 1/(1 + λ_M·d).
pub fn n_minus_one_guess_success(lambda_m: f64, mean_delay_secs: f64) -> f64 {
    1.0 / (1.0 + (lambda_m * mean_delay_secs).max(0.0))
}

/// The (n−1) adversary's expected posterior on the target's true output: the
/// timing observer's single-mix figure with ρ = λ_M·d (the loop cover plays
/// the other inputs, offsets from the target's entry their ages).
pub fn n_minus_one_true_output_probability(lambda_m: f64, mean_delay_secs: f64) -> f64 {
    timing_single_mix_true_sender_probability(lambda_m * mean_delay_secs)
}

/// Expected time (s) from the start of a block on all of a mix's inputs to
/// its alarm, when the alarm rings after `alarm_secs` without a returning
/// loop and loops return as a Poisson stream at `lambda_m`: T − E[min(B, T)]
/// with B ~ Exp(λ_M) the time since the last return, i.e.
/// T − (1 − e^(−λ_M·T))/λ_M.
pub fn n_minus_one_time_to_notice_secs(lambda_m: f64, alarm_secs: f64) -> f64 {
    if lambda_m <= 0.0 {
        return f64::INFINITY;
    }
    alarm_secs + (-lambda_m * alarm_secs).exp_m1() / lambda_m
}

/// The alarm threshold of a mix sending loops at `lambda_m`: the gap between
/// returning loops that honest operation exceeds with probability 10⁻⁶,
/// ln(10⁶)/λ_M.
pub fn loop_alarm_secs(lambda_m: f64) -> f64 {
    if lambda_m <= 0.0 {
        return f64::INFINITY;
    }
    1e6f64.ln() / lambda_m
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (the
/// half-width factor of a two-sided 95 % interval); NaN for df = 0.
pub fn student_t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        d if d <= 30 => TABLE.get(d - 1).copied().unwrap_or(f64::NAN),
        // Cornish–Fisher expansion around the normal quantile.
        d => {
            let z: f64 = 1.959_964;
            let d = d as f64;
            z + (z.powi(3) + z) / (4.0 * d)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn analytic_single_mix_entropy_limits() {
        assert_eq!(single_mix_entropy_bits(0.0), 0.0);
        // Small ρ: almost always alone, H ≈ ρ (one other packet with prob. ρ).
        assert!((single_mix_entropy_bits(0.01) - 0.01 * 0.995).abs() < 1e-4);
        // Large ρ: H ≈ log2(1 + ρ).
        let h = single_mix_entropy_bits(1000.0);
        assert!((h - 1001f64.log2()).abs() < 0.01, "{h}");
        let p = single_mix_true_sender_probability(5.0);
        let by_sum = poisson_expectation(5.0, |n| 1.0 / f64::from(n + 1));
        assert!((p - by_sum).abs() < 1e-9, "{p} {by_sum}");
    }

    #[test]
    fn special_functions_match_known_values() {
        // E1(1) = 0.219383934..., E1(0.5) = 0.559773595..., E1(5) = 0.001148295...
        assert!((exp_integral_e1(1.0) - 0.219_383_934_395_520_3).abs() < 1e-12);
        assert!((exp_integral_e1(0.5) - 0.559_773_594_776_160_8).abs() < 1e-12);
        assert!((exp_integral_e1(5.0) - 0.001_148_295_591_275_3).abs() < 1e-14);
        // Both branches of Ein agree where they meet.
        let below = ein(1.0);
        assert!((below - (exp_integral_e1(1.0) + EULER_GAMMA)).abs() < 1e-12);
        assert!((student_t_975(9) - 2.262).abs() < 1e-9);
        assert!((student_t_975(1000) - 1.962).abs() < 1e-3);
    }

    /// The timing observer's closed forms against a direct Monte Carlo of
    /// the same model (Poisson ages, exponential own age).
    #[test]
    fn timing_closed_forms_match_monte_carlo_and_limits() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        for rho in [0.5, 5.0, 20.0] {
            let (mut h, mut p) = (0.0, 0.0);
            let trials = 4_000;
            for _ in 0..trials {
                let own: f64 = -rng.random::<f64>().ln();
                let mut weights = vec![(-own).exp()];
                let mut age = 0.0;
                loop {
                    age += -rng.random::<f64>().ln() / rho;
                    if age > 40.0 {
                        break;
                    }
                    weights.push((-age).exp());
                }
                let total: f64 = weights.iter().sum();
                h -= weights
                    .iter()
                    .map(|w| w / total * (w / total).log2())
                    .sum::<f64>();
                p += weights[0] / total;
            }
            let (h, p) = (h / f64::from(trials), p / f64::from(trials));
            let (hc, pc) = (
                timing_single_mix_entropy_bits(rho),
                timing_single_mix_true_sender_probability(rho),
            );
            assert!((h - hc).abs() < 0.05, "rho {rho}: H {h} vs {hc}");
            assert!((p - pc).abs() < 0.02, "rho {rho}: p {p} vs {pc}");
            // The timing observer knows less than the pool observer.
            assert!(hc > single_mix_entropy_bits(rho));
        }
        let big = 2000.0;
        let h = timing_single_mix_entropy_bits(big);
        assert!((h - (std::f64::consts::E * big).log2()).abs() < 0.01, "{h}");
        let p = timing_single_mix_true_sender_probability(big);
        assert!((p * 2.0 * big - 1.0).abs() < 0.01, "{p}");
        assert_eq!(n_minus_one_guess_success(0.0, 0.05), 1.0);
        assert!((n_minus_one_guess_success(20.0, 0.05) - 0.5).abs() < 1e-12);
        let t = n_minus_one_time_to_notice_secs(2.0, loop_alarm_secs(2.0));
        assert!((t - (1e6f64.ln() - 1.0) / 2.0).abs() < 1e-5, "{t}");
    }
}
