//! Every shipped scenario and sweep file parses, and the small ones run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

use simulations::{Scenario, Sweep};

#[test]
fn shipped_scenarios_and_sweeps_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    assert!(
        names.iter().any(|p| p.ends_with("sweep_regions.toml")),
        "{names:?}"
    );
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("sweep_") {
            let sweep = Sweep::from_file(&path).unwrap();
            // The smallest shipped grid is the rate profiles' 2 × 2.
            assert!(sweep.len() >= 4, "{name}: {} points", sweep.len());
        } else {
            Scenario::from_file(&path).unwrap();
        }
    }
}

#[test]
fn small_example_runs_and_delivers_everything() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/small.toml");
    let out = simulations::run(&Scenario::from_file(&path).unwrap(), None).unwrap();
    assert_eq!(out.report.delivery.message_ratio, 1.0);
    assert_eq!(out.report.anonymity.targets_measured, 200);
    assert!(out.report.summary().contains("sender anonymity"));
}

#[test]
fn the_regions_sweep_constrains_a_share_of_clients_at_every_point_but_the_first() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/sweep_regions.toml");
    let sweep = Sweep::from_file(&path).unwrap();
    let fractions: Vec<f64> = (0..sweep.len())
        .map(|i| sweep.point(i).unwrap().0.regions.constrained_fraction)
        .collect();
    assert_eq!(fractions, [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]);
    for i in 0..sweep.len() {
        let (s, _) = sweep.point(i).unwrap();
        let residency = simulations::residency::Residency::new(&s).unwrap();
        assert_eq!(residency.is_some(), i > 0);
    }
}

#[test]
fn the_scale_scenarios_keep_the_client_load_per_mix() {
    // docs/performance.md compares the scale runs at equal load per mix:
    // client packets a second per mix, clients × (λ_P + λ_L) ÷ mixes per layer.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let load = |name: &str| {
        let s = Scenario::from_file(&dir.join(name)).unwrap();
        let t = &s.traffic;
        t.clients as f64 * (t.lambda_p + t.lambda_l) / s.topology.nodes_per_layer as f64
    };
    let per_mix = load("scale_1k_clients.toml");
    assert!((per_mix - 300.0).abs() < 1e-9, "{per_mix}");
    for name in [
        "scale_10k_clients.toml",
        "scale_100k_clients.toml",
        "scale_100k_quiet_10min.toml",
    ] {
        assert!(
            (load(name) - per_mix).abs() < 1e-9,
            "{name}: {}",
            load(name)
        );
    }
}
