//! What the client tests that run on a local network of real processes
//! share: `mixnet-client init` until the directory lists the gateway, and a
//! connected in-process `Client`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use client::{AddressCard, Client, ClientOptions};
use localnet::LocalNet;

const CLIENT: &str = env!("CARGO_BIN_EXE_mixnet-client");

/// `mixnet-client init` until the directory lists the gateway; returns the address card.
pub fn init(net: &LocalNet, dir: &Path, gateway: usize) -> AddressCard {
    let gateway = net.gateways[gateway].id.to_base58();
    init_with(net, dir, &["--gateway", &gateway], |_| true)
        .unwrap_or_else(|stderr| panic!("init: {stderr}"))
        .0
}

/// `mixnet-client init` with the directory's pins and `extra` flags, tried
/// again for up to 20 s while its error `retry` says so (the nodes register
/// one after the other at start): the card and what `init` said on stderr,
/// or its last stderr.
pub fn init_with(
    net: &LocalNet,
    dir: &Path,
    extra: &[&str],
    retry: impl Fn(&str) -> bool,
) -> Result<(AddressCard, String), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(CLIENT)
            .args(["init", "--dir", dir.to_str().unwrap()])
            .args(["--directory", &net.directory_url])
            .args(["--directory-key", &net.directory_key.to_base58()])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            let card = String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            return Ok((card, stderr));
        }
        if Instant::now() > deadline || !retry(&stderr) {
            return Err(stderr);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The client of `dir`, once connected to its gateway.
pub async fn connect(dir: &Path, options: ClientOptions) -> Client {
    let c = Client::connect(dir, options).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), c.wait_connected())
        .await
        .expect("connected in time")
        .unwrap();
    c
}

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mixnet-client COMMAND --dir DIR REST...`
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    let (command, rest) = args.split_first().unwrap();
    Command::new(CLIENT)
        .arg(command)
        .args(["--dir", dir.to_str().unwrap()])
        .args(rest)
        .output()
        .unwrap()
}

/// Its stdout, after checking it succeeded (else its stderr in the panic).
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Its stderr, after checking it failed (else its stdout in the panic).
pub fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// The short address of the client of `dir`.
pub fn short_of(dir: &Path) -> String {
    ok(cli(dir, &["address", "--short"])).trim().to_string()
}

/// `receive` (with `args`) as a child, and its stdout lines once it is ready.
pub fn receiver(dir: &Path, args: &[&str]) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = KillOnDrop(
        Command::new(CLIENT)
            .args(["receive", "--dir", dir.to_str().unwrap()])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "ready");
    (child, rx)
}
