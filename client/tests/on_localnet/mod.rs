//! What the client tests that run on a local network of real processes
//! share: `mixnet-client init` until the directory lists the gateway, and a
//! connected in-process `Client`.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use client::{AddressCard, Client, ClientOptions};
use localnet::LocalNet;

const CLIENT: &str = env!("CARGO_BIN_EXE_mixnet-client");

/// `mixnet-client init` until the directory lists the gateway; returns the address card.
pub fn init(net: &LocalNet, dir: &Path, gateway: usize) -> AddressCard {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(CLIENT)
            .args(["init", "--dir", dir.to_str().unwrap()])
            .args(["--directory", &net.directory_url])
            .args(["--directory-key", &net.directory_key.to_base58()])
            .args(["--gateway", &net.gateways[gateway].id.to_base58()])
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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
