//! Each byte stream shows the exit a throwaway identity of its own: two
//! streams of one opener are not linkable to each other or to the opener's
//! identity. In-process clients on a local network of real node processes.
//! Needs the node binaries built (`cargo build --bins`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![allow(clippy::disallowed_methods)]

mod on_localnet;

use std::sync::Arc;
use std::time::Duration;

use client::ClientOptions;
use client::streams::{ConnectError, StreamClient, StreamListener, StreamOptions};
use localnet::{LocalNet, NetworkSpec};
use stream_core::{ResetReason, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_of_one_opener_show_the_exit_two_unrelated_identities() {
    let net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 2,
        ..NetworkSpec::default()
    })
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let (exit_dir, opener_dir) = (root.path().join("exit"), root.path().join("opener"));
    let exit_card = on_localnet::init(&net, &exit_dir, 0);
    on_localnet::init(&net, &opener_dir, 1);
    let exit = Arc::new(on_localnet::connect(&exit_dir, ClientOptions::default()).await);
    let opener = Arc::new(on_localnet::connect(&opener_dir, ClientOptions::default()).await);
    opener.add_contact(&exit_card).await.unwrap();
    let own = opener.short_address();

    let mut listener = StreamListener::start(exit.clone(), StreamOptions::default());
    let streams = StreamClient::start(
        opener.clone(),
        exit_card.address,
        StreamOptions::default(),
        [7; 32],
    );
    let streams = Arc::new(streams);
    let mut opening = Vec::new();
    for host in ["a.example", "b.example"] {
        let streams = streams.clone();
        opening.push(tokio::spawn(async move {
            streams.connect(Target::Domain(host.into(), 80)).await
        }));
    }
    let mut peers = Vec::new();
    for _ in 0..2 {
        let incoming = tokio::time::timeout(Duration::from_secs(30), listener.next())
            .await
            .expect("a stream reached the exit in 30 s")
            .unwrap();
        peers.push(incoming.peer().expect("a stream comes in a session"));
        incoming.refuse(ResetReason::NotAllowed);
    }
    assert_ne!(peers[0], peers[1], "two streams, two identities");
    assert!(
        peers.iter().all(|peer| !own.names(peer)),
        "never the opener's own identity"
    );
    for opened in opening {
        let refused = tokio::time::timeout(Duration::from_secs(30), opened)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            refused,
            Err(ConnectError::Refused(ResetReason::NotAllowed))
        ));
    }
}
