//! The committed seeds, and every input a fuzzer found to fail, through
//! the checks of their targets: what CI runs without nightly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    out.sort();
    out
}

#[test]
fn every_committed_seed_and_regression_passes_its_check() {
    for target in fuzz_checks::TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(target.name));
        assert!(!seeds.is_empty(), "{}: no seeds committed", target.name);
        let regressions = files(&fuzz_dir().join("regressions").join(target.name));
        for file in seeds.iter().chain(&regressions) {
            let bytes = std::fs::read(file).unwrap();
            (target.check)(&bytes);
        }
    }
}

#[test]
fn the_seeds_the_code_makes_pass_their_checks_and_are_small() {
    let mut total = std::collections::BTreeMap::<&str, usize>::new();
    for seed in fuzz_checks::seeds::all() {
        let check = fuzz_checks::check_of(seed.target).expect("a target of that name");
        check(&seed.bytes);
        *total.entry(seed.target).or_default() += seed.bytes.len();
    }
    for (target, bytes) in total {
        assert!(bytes < 16 * 1024, "{target}: {bytes} bytes of seeds");
    }
}

#[test]
fn one_fuzz_target_per_check_and_one_check_per_fuzz_target() {
    let listed: BTreeSet<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
        .collect();
    let checks: BTreeSet<String> = fuzz_checks::TARGETS
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(listed, checks);
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for name in &checks {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lists {name}"
        );
        let source =
            std::fs::read_to_string(fuzz_dir().join("fuzz_targets").join(format!("{name}.rs")))
                .unwrap();
        assert!(source.contains(&format!("check_of(\"{name}\")")) || source.contains(name));
    }
}
