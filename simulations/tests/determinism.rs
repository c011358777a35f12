//! Same scenario and seed ⇒ byte-identical output files, through the real CLI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn mixsim(args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_mixsim"))
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "mixsim {args:?} failed");
}

#[test]
fn same_seed_writes_byte_identical_files_and_another_seed_does_not() {
    let tmp = std::env::temp_dir().join(format!("mixsim-det-{}", std::process::id()));
    let scenario = tmp.join("s.toml");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(
        &scenario,
        "seed = 11\nduration_secs = 20.0\nwarmup_secs = 2.0\ndrain_secs = 3.0\n\
         [traffic]\nclients = 15\nreply_surbs = 1\nreply_probability = 0.5\n\
         [link]\nloss = 0.01\n[link.latency]\nkind = \"exponential\"\nmean_ms = 8.0\n\
         [adversary]\ncorrupt_mixes = 2\ntarget_messages = 50\n",
    )
    .unwrap();
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    let s = scenario.to_str().unwrap();
    mixsim(&["run", s, "--out", a.to_str().unwrap(), "--quiet"]);
    mixsim(&["run", s, "--out", b.to_str().unwrap(), "--quiet"]);
    let (fa, fb) = (files(&a), files(&b));
    for name in [
        "report.json",
        "summary.txt",
        "latency_histogram.csv",
        "nodes.csv",
        "bandwidth.csv",
        "targets.csv",
        "latency.svg",
        "queues.svg",
        "entropy.svg",
        "report.html",
    ] {
        assert!(fa.contains_key(name), "{name} missing");
    }
    assert_eq!(fa, fb, "two runs of one seed differ");

    let text = std::fs::read_to_string(&scenario).unwrap();
    std::fs::write(&scenario, text.replace("seed = 11", "seed = 12")).unwrap();
    let c = tmp.join("c");
    mixsim(&["run", s, "--out", c.to_str().unwrap(), "--quiet"]);
    assert_ne!(files(&c)["report.json"], fa["report.json"]);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn sweep_is_deterministic_and_writes_one_plot_per_metric() {
    let tmp = std::env::temp_dir().join(format!("mixsim-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let sweep = tmp.join("sweep.toml");
    std::fs::write(
        &sweep,
        "threads = 2\n[scenario]\nduration_secs = 10.0\nwarmup_secs = 1.0\ndrain_secs = 2.0\n\
         [scenario.traffic]\nclients = 10\n\
         [grid]\n\"traffic.mean_delay_ms\" = [20.0, 80.0]\n\"traffic.lambda_p\" = [1, 3]\n",
    )
    .unwrap();
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    let s = sweep.to_str().unwrap();
    mixsim(&["sweep", s, "--out", a.to_str().unwrap(), "--quiet"]);
    mixsim(&["sweep", s, "--out", b.to_str().unwrap(), "--quiet"]);
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa, fb);
    let csv = String::from_utf8(fa["sweep.csv"].clone()).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.starts_with("traffic.lambda_p,traffic.mean_delay_ms,packet_latency_mean_ms"));
    // One chart per metric with a value (the attacks' are absent).
    assert_eq!(fa.keys().filter(|k| k.ends_with(".svg")).count(), 15);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_sweep_in_two_shards_merges_to_the_same_bytes() {
    let tmp = std::env::temp_dir().join(format!("mixsim-shards-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let sweep = tmp.join("sweep.toml");
    std::fs::write(
        &sweep,
        "threads = 2\n[scenario]\nduration_secs = 8.0\nwarmup_secs = 1.0\ndrain_secs = 2.0\n\
         [scenario.traffic]\nclients = 8\n[scenario.adversary]\ntarget_messages = 40\n\
         [grid]\n\"traffic.mean_delay_ms\" = [20.0, 80.0, 160.0]\n",
    )
    .unwrap();
    let s = sweep.to_str().unwrap();
    let whole = tmp.join("whole");
    mixsim(&[
        "sweep",
        s,
        "--seeds",
        "3",
        "--out",
        whole.to_str().unwrap(),
        "--quiet",
    ]);
    let shards: Vec<String> = (0..2)
        .map(|i| {
            let file = tmp.join(format!("shard-{i}.csv"));
            let (f, sh) = (file.to_str().unwrap(), format!("{i}/2"));
            mixsim(&[
                "sweep", s, "--seeds", "3", "--shard", &sh, "--out", f, "--quiet",
            ]);
            file.to_str().unwrap().to_string()
        })
        .collect();
    let merged = tmp.join("merged");
    let mut args = vec!["merge", s];
    args.extend(shards.iter().rev().map(String::as_str));
    args.extend(["--out", merged.to_str().unwrap()]);
    mixsim(&args);
    let (a, b) = (files(&whole), files(&merged));
    assert!(a.contains_key("runs.csv") && a.contains_key("sweep.csv"));
    // The report page too: the merge writes the unsharded sweep's page.
    assert!(a.contains_key("report.html"));
    let csv = String::from_utf8(a["sweep.csv"].clone()).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .contains("entropy_mean_bits_ci95")
    );
    assert_eq!(a, b, "merged shards differ from the unsharded sweep");
    // A missing shard is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_mixsim"))
        .args(["merge", s, &shards[0], "--out"])
        .arg(tmp.join("partial"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// FNV-1a, 64 bits: a stable fingerprint of a file's bytes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn a_scenario_without_regions_writes_the_bytes_it_wrote_before_regions_existed() {
    // Fingerprints of `mixsim run small.toml` taken before the simulator had
    // region labels: a scenario without `[regions]` must not change by a byte.
    // Taken again at frame version 3, whose forward frames carry a recall
    // tag: the seal draws 32 random bytes more (the stand-in codec draws
    // them too, to stay in step with the real one), so every later draw
    // moved; nothing about regions changed. `report.json` and `targets.csv`
    // taken again when the timing observer stopped keeping its inputs and
    // forgot senders below a 1e-9 share instead of inputs older than 16 mean
    // delays: their timing figures moved in the last digits; `summary.txt`,
    // which prints them to three, did not. All taken again when gateways
    // began to send every SURB-ack a fixed hold (`SURB_ACK_HOLD`) after its
    // packet arrived: acks, and every event after them, moved.
    let expected = [
        ("bandwidth.csv", 0x0129_edb2_2175_1770_u64),
        ("entropy.svg", 0x0850_8a05_9022_d620),
        ("latency.svg", 0xf4f1_d2ce_2a70_16a0),
        ("latency_histogram.csv", 0xcb06_4cde_f65e_530f),
        ("nodes.csv", 0xaf31_dddc_24fa_ac38),
        ("queues.svg", 0xf01b_432a_1c0d_364b),
        ("report.json", 0x1edd_62a8_3d9c_f1cc),
        ("summary.txt", 0xc236_bd5e_8ae1_1ef2),
        ("targets.csv", 0x3819_df40_31ba_dd39),
    ];
    let tmp = std::env::temp_dir().join(format!("mixsim-before-{}", std::process::id()));
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/small.toml");
    mixsim(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        tmp.to_str().unwrap(),
        "--quiet",
    ]);
    let written = files(&tmp);
    for (name, fingerprint) in expected {
        assert_eq!(
            fnv1a(&written[name]),
            fingerprint,
            "{name} differs from what small.toml wrote before regions"
        );
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}
