//! `cargo run -p localnet` compiles each crate once: the build of the node
//! binaries it runs resolves every crate of `localnet`'s own tree with the
//! same features, so cargo finds them already built.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;

use localnet::build::{PACKAGES, cargo, workspace};

/// Each crate (name and version) of the tree cargo resolves for `packages`,
/// with its features; build dependencies included, for every target.
fn features(packages: &[&str]) -> BTreeMap<String, String> {
    let mut cmd = cargo();
    cmd.current_dir(workspace()).args([
        "tree",
        "--offline",
        "--locked",
        "-e",
        "normal,build",
        "--target",
        "all",
        "--prefix",
        "none",
        "-f",
        "{p}|{f}",
    ]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (package, features) = line.split_once('|')?;
            let mut id = package.split_whitespace();
            let name = format!("{} {}", id.next()?, id.next()?);
            let features = features.trim_end_matches(" (*)").trim().to_string();
            Some((name, features))
        })
        .collect()
}

#[test]
fn building_the_node_binaries_resolves_localnets_crates_as_cargo_run_does() {
    let run = features(&["localnet"]);
    let build = features(&PACKAGES);
    assert!(run.len() > 50, "{run:?}");
    let differ: Vec<String> = run
        .iter()
        .filter(|(name, f)| build.get(*name) != Some(f))
        .map(|(name, f)| format!("{name}: [{f}] then [{}]", build[name]))
        .collect();
    assert!(
        differ.is_empty(),
        "these crates would be compiled twice, with other features:\n{}",
        differ.join("\n")
    );
}

/// The README's `cargo run -p localnet` starts the network: the package has
/// two binaries, and cargo must know which one that command means. Cargo
/// picks the package's `default-run`, read here from `cargo metadata` (the
/// run itself would compile `localnet`'s tree apart from the workspace's
/// build, a minute of a small machine).
#[test]
fn cargo_run_of_the_package_runs_the_network_binary() {
    let out = cargo()
        .current_dir(workspace())
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--locked",
            "--format-version",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let package = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "localnet")
        .unwrap();
    let binaries: Vec<&str> = package["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(binaries.len() > 1, "{binaries:?}");
    assert!(binaries.contains(&"localnet"), "{binaries:?}");
    assert_eq!(package["default_run"], "localnet");
}
