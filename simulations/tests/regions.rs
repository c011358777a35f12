//! Data residency: constrained clients' packets stay in their regions, the
//! observers use what that reveals, and labels alone change nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use simulations::Scenario;

/// 3 layers of 4 mixes and 4 gateways, half of each "eu"; `fraction` of
/// 40 clients may cross only "eu" nodes.
fn scenario(fraction: f64) -> Scenario {
    Scenario::from_toml(
        &format!(
            "seed = 5\nduration_secs = 40.0\nwarmup_secs = 5.0\ndrain_secs = 10.0\n\
             [topology]\nnodes_per_layer = 4\ngateways = 4\n\
             [traffic]\nclients = 40\n\
             [adversary]\ntarget_messages = 150\n\
             [regions]\nmixes = [\"eu\", \"us\"]\ngateways = [\"eu\", \"us\"]\n\
             constrained_fraction = {fraction:?}\nallowed = [\"eu\"]\n"
        ),
        "t",
    )
    .unwrap()
}

#[test]
fn constrained_clients_packets_never_reach_a_node_outside_their_regions() {
    // Link loss and replies: retransmissions on fresh routes, SURB-acks,
    // replies through SURBs; loss also loses some packets mid-route.
    let mut s = scenario(0.25);
    s.link.loss = 0.05;
    s.traffic.reply_surbs = 1;
    s.traffic.reply_probability = 0.5;
    let out = simulations::run(&s, None).unwrap();
    let regions = out.report.regions.as_ref().unwrap();
    assert_eq!(regions.constrained_clients, 10);
    assert_eq!(regions.constrained_packets_outside, 0);
    assert_eq!(regions.nodes.len(), 16);
    for n in &regions.nodes {
        let report = out.report.nodes.iter().find(|r| r.name == n.name).unwrap();
        if n.allowed {
            assert_eq!(n.region, "eu");
            assert!(n.constrained_packets > 100, "{n:?}");
        } else {
            assert_eq!(n.region, "us");
            assert_eq!(n.constrained_packets, 0, "{n:?}");
            // The other clients' packets do cross it.
            assert!(report.received > 100, "{}: {}", n.name, report.received);
        }
    }
    // Retransmissions ran, and the constrained clients' messages arrived.
    assert!(out.report.delivery.retransmissions > 0);
    assert!(out.report.delivery.message_ratio > 0.99);
    // Targets lost on a link are not measured.
    assert!(out.report.anonymity.targets_measured > 100);
    let unconstrained = regions.unconstrained.as_ref().unwrap();
    assert!(unconstrained.targets_measured > 100);
    assert!(
        out.report
            .summary()
            .contains("10 of 40 clients constrained")
    );
}

#[test]
fn region_labels_without_a_constraint_change_nothing() {
    let labelled = scenario(0.0);
    let plain = Scenario {
        regions: Default::default(),
        ..labelled.clone()
    };
    let a = simulations::run(&plain, None).unwrap();
    let mut b = simulations::run(&labelled, None).unwrap();
    assert!(b.report.regions.is_none());
    b.report.scenario = a.report.scenario.clone();
    assert_eq!(a, b);
}

#[test]
fn a_constrained_run_is_deterministic() {
    let s = scenario(0.5);
    assert_eq!(
        simulations::run(&s, None).unwrap(),
        simulations::run(&s, None).unwrap()
    );
}

#[test]
fn a_few_constrained_clients_are_easier_to_name_than_anyone_without_a_constraint() {
    // Their first hops betray them: a packet leaving an "eu" mix for an
    // "eu" node is 2× likelier theirs than another sender's share says.
    let free = simulations::run(&scenario(0.0), None).unwrap();
    let few = simulations::run(&scenario(0.1), None).unwrap();
    let (f, c) = (&free.report.anonymity, &few.report.anonymity);
    // 4 clients at 0.5 messages/s for 35 measured seconds.
    assert!(c.targets_measured >= 50, "{}", c.targets_measured);
    assert!(
        c.true_sender_probability > 1.5 * f.true_sender_probability,
        "constrained {} vs free {}",
        c.true_sender_probability,
        f.true_sender_probability
    );
    assert!(
        c.entropy_bits.mean < f.entropy_bits.mean - 0.1,
        "constrained {} vs free {}",
        c.entropy_bits.mean,
        f.entropy_bits.mean
    );
    // The unconstrained clients' targets are measured separately.
    let u = few
        .report
        .regions
        .as_ref()
        .unwrap()
        .unconstrained
        .as_ref()
        .unwrap();
    assert!(u.targets_measured > 100);
}
