//! The CLI refuses bad input with one clear line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::Command;

#[test]
fn bad_scenario_fails_with_file_and_field_named() {
    let dir = std::env::temp_dir().join(format!("mixsim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[traffic]\nlambda_p = -1.0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mixsim"))
        .args(["run", file.to_str().unwrap(), "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("traffic.lambda_p"), "{err}");
    assert!(!dir.join("out").exists());

    std::fs::write(&file, "[trafic]\nclients = 3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mixsim"))
        .args(["run", file.to_str().unwrap(), "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("trafic"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_region_constraint_no_layer_can_keep_is_refused_with_the_layer_named() {
    let dir = std::env::temp_dir().join(format!("mixsim-cli-regions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("regions.toml");
    // Two mixes per layer, both "us": no layer has an "eu" mix.
    std::fs::write(
        &file,
        "[topology]\nnodes_per_layer = 2\n[regions]\nmixes = [\"us\"]\n\
         gateways = [\"eu\"]\nconstrained_fraction = 0.5\nallowed = [\"eu\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mixsim"))
        .args(["run", file.to_str().unwrap(), "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("regions.allowed") && err.contains("layer 1 has no mix node"),
        "{err}"
    );
    assert!(!dir.join("out").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
