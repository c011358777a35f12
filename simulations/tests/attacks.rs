//! The active (n−1) attack and the long-term intersection attack, against
//! their closed forms and reasoned bounds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use simulations::closed_form::n_minus_one_guess_success;
use simulations::scenario::{IntersectionSpec, NMinusOneSpec, Scenario};

/// 3 layers of 2 mixes, 20 clients; the (n−1) adversary on L1.0 every 3 s.
fn n_minus_one(lambda_m: f64) -> Scenario {
    let mut s = Scenario {
        seed: 2,
        duration_secs: 150.0,
        warmup_secs: 5.0,
        drain_secs: 2.0,
        ..Scenario::default()
    };
    s.topology.nodes_per_layer = 2;
    s.topology.gateways = 1;
    s.traffic.clients = 20;
    s.traffic.lambda_m = lambda_m;
    s.traffic.mean_delay_ms = 50.0;
    s.adversary.target_messages = 0;
    s.attack.n_minus_one = Some(NMinusOneSpec {
        period_secs: 3.0,
        ..NMinusOneSpec::default()
    });
    s
}

#[test]
fn without_loop_cover_the_n_minus_one_adversary_names_every_target_unnoticed() {
    let out = simulations::run(&n_minus_one(0.0), None).unwrap();
    let a = out.report.n_minus_one.unwrap();
    assert!(a.targets > 45, "{}", a.targets);
    // Flushed for 10 mean delays and watched for 10: a leftover or a late
    // target has probability e^-10 per attempt.
    assert_eq!(a.guess_success, 1.0, "{:?}", a.attempts);
    assert_eq!(a.true_output_probability, 1.0);
    assert_eq!(a.noticed, 0.0);
    assert!(a.blocked > 500);
    assert!(out.report.drops["adversary_blocked"] == a.blocked);
}

#[test]
fn loop_cover_hides_the_target_as_the_closed_form_says_and_the_mix_notices_in_time() {
    let (lambda_m, d) = (10.0, 0.05);
    let out = simulations::run(&n_minus_one(lambda_m), None).unwrap();
    let a = out.report.n_minus_one.unwrap();
    let n = a.targets as f64;
    assert!(n > 45.0, "{n}");
    // Attempts are independent: a binomial 99 % interval around 1/(1 + λ_M d).
    let p = n_minus_one_guess_success(lambda_m, d);
    let half = 2.576 * (p * (1.0 - p) / n).sqrt();
    eprintln!("{a:#?}");
    assert!(
        (a.guess_success - p).abs() < half,
        "{} vs {p} ± {half}",
        a.guess_success
    );
    // The posterior on the true output: mean of values in [0, 1], so its
    // standard error is at most 0.5/√n.
    let q = a.predicted_true_output_probability;
    assert!(
        (a.true_output_probability - q).abs() < 2.576 * 0.5 / n.sqrt(),
        "{} vs {q}",
        a.true_output_probability
    );
    // The alarm: ln(10⁶)/λ_M without a returning loop. Time to it has a
    // standard deviation below 1/λ_M (that of the time since the last return).
    let t = a.predicted_notice_after_secs;
    assert!(
        (a.notice_after_secs - t).abs() < 2.576 / lambda_m / n.sqrt(),
        "{} vs {t}",
        a.notice_after_secs
    );
    // It rings only when the block outlasts it (flush + wait + watch ≈ 1 s
    // against an alarm at 1.38 s): rarely.
    assert!(a.noticed < 0.2, "{}", a.noticed);
}

/// One mix, 10 clients; Alice writes to one correspondent at 1.2/s in the
/// 5-second rounds she is online.
fn intersection() -> Scenario {
    let mut s = Scenario {
        seed: 4,
        duration_secs: 300.0,
        warmup_secs: 0.0,
        drain_secs: 2.0,
        ..Scenario::default()
    };
    s.topology.layers = 1;
    s.topology.nodes_per_layer = 1;
    s.topology.gateways = 1;
    s.traffic.clients = 10;
    s.traffic.message_rate = 0.1;
    s.traffic.lambda_p = 1.5;
    s.traffic.lambda_l = 0.2;
    s.traffic.lambda_m = 0.0;
    s.traffic.gateway_cover = false;
    s.adversary.target_messages = 0;
    s.attack.intersection = Some(IntersectionSpec {
        correspondents: 1,
        round_secs: 5.0,
        online_probability: 0.5,
        message_rate: Some(1.2),
    });
    s
}

#[test]
fn intersection_names_the_correspondent_in_the_estimated_number_of_rounds() {
    let r = simulations::run(&intersection(), None)
        .unwrap()
        .report
        .intersection
        .unwrap();
    eprintln!(
        "{:?} rounds (estimate {:.1}, variance {:.2})",
        r.rounds_to_name, r.predicted_rounds, r.count_variance
    );
    assert_eq!(r.rounds, 60);
    assert!((20..=40).contains(&r.online_rounds), "{}", r.online_rounds);
    let named = r.rounds_to_name.expect("named within the run") as f64;
    // The estimate is an order of magnitude (a normal approximation with a
    // union bound over the other clients; the counts are over-dispersed):
    // within a factor of 4.
    assert!(
        named > r.predicted_rounds / 4.0 && named < r.predicted_rounds * 4.0,
        "{named} vs {}",
        r.predicted_rounds
    );
    assert!(*r.named.last().unwrap());
    // A client's count in a round is at least Poisson-noisy: its λ_P ticks'
    // SURB-acks and its loops alone have variance (λ_P + λ_L)·round.
    assert!(r.count_variance > (1.5 + 0.2) * 5.0, "{}", r.count_variance);
}
