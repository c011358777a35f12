//! A peer that presents a pinned certificate without holding its private
//! key fails the handshake signature check, in both directions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::*;
use crate::{Endpoint, LinkConfig};

const SIZE: usize = 64;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `victim`'s certificate paired with `forger`'s private key: what an
/// attacker who copied a node's certificate can present.
fn forged_identity(victim: &SigningKey, forger: &SigningKey) -> NodeIdentity {
    let real = NodeIdentity::new(victim).unwrap();
    let provider = real.provider();
    let pkcs8 = forger.to_pkcs8_der().unwrap();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()));
    let signer = provider.key_provider.load_private_key(der).unwrap();
    let cert = real.certificate().unwrap().clone();
    NodeIdentity::from_parts(
        real.peer_id(),
        CertifiedKey::new(vec![cert], signer),
        provider,
    )
}

async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(4), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_with_a_copied_certificate_is_refused() {
    let (ka, kb, kforger) = (key(1), key(2), key(66));
    let (b, mut rx_b) = Endpoint::bind(
        &kb,
        [PeerId::from_signing_key(&ka)],
        LinkConfig::new(loopback(), SIZE),
    )
    .unwrap();
    let forged = forged_identity(&ka, &kforger);
    let crypto = client_crypto(
        &forged,
        b.peer_id(),
        PeerSet::new([b.peer_id()]),
        Arc::new(LinkStats::default()),
    )
    .unwrap();
    let client = quinn::Endpoint::client(loopback()).unwrap();
    let connecting = client
        .connect_with(
            quinn::ClientConfig::new(crypto),
            b.local_addr(),
            SERVER_NAME,
        )
        .unwrap();
    // The client may believe the handshake done before the server refuses.
    let error = match connecting.await {
        Ok(connection) => {
            if let Ok(mut stream) = connection.open_uni().await {
                let _ = stream.write_all(&[0u8; SIZE]).await;
            }
            connection.closed().await
        }
        Err(error) => error,
    };
    assert!(
        crate::outbound::is_handshake_error(&error),
        "refused by TLS, not otherwise: {error}"
    );
    let stats = b.stats();
    wait_for("the server to refuse", || stats.handshake_failures() >= 1).await;
    assert_eq!(
        stats.peers_rejected(),
        0,
        "the key is pinned: the signature failed"
    );
    assert_eq!(stats.connections_accepted(), 0);
    assert!(rx_b.try_recv().is_err());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_a_copied_certificate_is_refused() {
    let (ka, kb, kforger) = (key(1), key(2), key(66));
    let (a, _rx_a) = Endpoint::bind(
        &ka,
        [PeerId::from_signing_key(&kb)],
        LinkConfig::new(loopback(), SIZE),
    )
    .unwrap();
    let forged = forged_identity(&kb, &kforger);
    let crypto = server_crypto(
        &forged,
        PeerSet::new([a.peer_id()]),
        InboundPolicy::PinnedOnly,
        Arc::new(LinkStats::default()),
    )
    .unwrap();
    let server =
        quinn::Endpoint::server(quinn::ServerConfig::with_crypto(crypto), loopback()).unwrap();
    let forger_addr = server.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let _ = incoming.await;
        }
    });
    a.send(forged.peer_id(), forger_addr, vec![0u8; SIZE])
        .unwrap();
    let stats = a.stats();
    wait_for("the dialer to refuse", || stats.handshake_failures() >= 1).await;
    assert_eq!(
        stats.peers_rejected(),
        0,
        "the key is pinned: the signature failed"
    );
    assert_eq!(stats.packets_sent(), 0);
    assert_eq!(stats.outbound_links_open(), 0);
    a.close().await;
    accepting.abort();
}
