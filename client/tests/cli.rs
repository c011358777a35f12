//! The `mixnet-client` binary's commands that need no network, and its errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::{Command, Output};

use client::AddressCard;
use client::shell::{DataFolder, Passphrase, StateSealing, StoredSettings};
use protocol::{NodeId, SphinxKeyPair};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mixnet-client"))
        .args(args)
        .output()
        .unwrap()
}

fn initialised_folder(dir: &std::path::Path) -> DataFolder {
    sealed_folder(dir, None)
}

/// A folder sealed with `passphrase`, or with a key file.
fn sealed_folder(dir: &std::path::Path, passphrase: Option<&Passphrase>) -> DataFolder {
    let folder = DataFolder::new(dir);
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let keys = SphinxKeyPair::generate(&mut rng);
    let settings = StoredSettings {
        // Nothing listens on port 9 of loopback.
        directory_url: "http://127.0.0.1:9".into(),
        directory_key: NodeId([1; 32]).to_base58(),
        authorities: Vec::new(),
        authority_threshold: None,
        gateway: NodeId([2; 32]).to_base58(),
        state_sealing: if passphrase.is_some() {
            StateSealing::Passphrase
        } else {
            StateSealing::KeyFile
        },
        route_regions: Vec::new(),
        mailbox_region: None,
        prekey_rotation_secs: None,
        prekey_grace_secs: None,
    };
    folder.init(&mut rng, &settings, &keys, passphrase).unwrap();
    folder
}

/// The address stored in `folder`.
fn address_of(folder: &DataFolder, passphrase: Option<&Passphrase>) -> protocol::ClientAddress {
    folder
        .unlock(&mut ChaCha20Rng::seed_from_u64(6), passphrase)
        .unwrap()
        .address()
}

#[test]
fn address_prints_the_stored_address_and_a_stable_card() {
    let dir = tempfile::tempdir().unwrap();
    let folder = initialised_folder(dir.path());
    let d = dir.path().to_str().unwrap();
    let out = run(&["address", "--dir", d, "--plain"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.trim(), address_of(&folder, None).to_string());
    assert!(printed.trim().ends_with(&NodeId([2; 32]).to_base58()));

    // The card: the same address, with prekeys that verify, the same at
    // every call (the session book is created once, sealed in the folder).
    let card = String::from_utf8(run(&["address", "--dir", d]).stdout).unwrap();
    let parsed: AddressCard = card.trim().parse().unwrap();
    assert_eq!(parsed.address, address_of(&folder, None));
    let again = String::from_utf8(run(&["address", "--dir", d]).stdout).unwrap();
    assert_eq!(card, again);
    assert!(folder.sessions_path().exists());
}

#[test]
fn a_passphrase_folder_needs_its_passphrase_even_for_the_plain_address() {
    let dir = tempfile::tempdir().unwrap();
    let phrase = Passphrase::new("open sesame".into());
    let folder = sealed_folder(dir.path(), Some(&phrase));
    let d = dir.path().to_str().unwrap();
    // The Sphinx key is sealed: without the passphrase not even the address opens.
    let out = run(&["address", "--dir", d, "--plain"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("passphrase"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_mixnet-client"))
        .args(["address", "--dir", d, "--plain"])
        .env("MIXNET_CLIENT_PASSPHRASE", "open sesame")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        address_of(&folder, Some(&phrase)).to_string()
    );
}

#[test]
fn address_of_a_missing_folder_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "address",
        "--dir",
        dir.path().join("none").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("client.toml"), "{err}");
}

#[test]
fn send_to_a_malformed_address_fails_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    initialised_folder(dir.path());
    let out = run(&[
        "send",
        "--dir",
        dir.path().to_str().unwrap(),
        "--to",
        "not-an-address",
        "hello",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--to not-an-address"), "{err}");
}

#[test]
fn receive_without_directory_or_cache_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    initialised_folder(dir.path());
    let out = run(&[
        "receive",
        "--dir",
        dir.path().to_str().unwrap(),
        "--count",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no topology"), "{err}");
}

#[test]
fn init_with_an_unreachable_directory_writes_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "init",
        "--dir",
        dir.path().to_str().unwrap(),
        "--directory",
        "http://127.0.0.1:9",
        "--directory-key",
        &NodeId([1; 32]).to_base58(),
    ]);
    assert!(!out.status.success());
    assert!(!DataFolder::new(dir.path()).key_path().exists());
    let out = run(&[
        "init",
        "--dir",
        dir.path().to_str().unwrap(),
        "--directory",
        "http://127.0.0.1:9",
        "--directory-key",
        "xyz",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--directory-key"),
        "{err}"
    );
}

#[test]
fn init_with_two_factors_and_no_passphrase_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "init",
        "--dir",
        dir.path().to_str().unwrap(),
        "--directory",
        "http://127.0.0.1:9",
        "--directory-key",
        &NodeId([1; 32]).to_base58(),
        "--two-factor",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("two factors need a passphrase"), "{err}");
    assert!(!DataFolder::new(dir.path()).key_path().exists());
}
