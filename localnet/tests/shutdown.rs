//! Stopping like a service: every node exits within a second of SIGTERM,
//! with a clean status and its replay journal written, even when the peers
//! its links lead to are already gone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use localnet::{LocalNet, NetworkSpec, NodeRole};

#[test]
fn every_node_exits_within_a_second_of_sigterm_even_with_its_peers_gone() {
    let mut net = LocalNet::start(NetworkSpec {
        gateways: 2,
        // Plenty of loop cover, so that every link carries packets when the
        // nodes stop, and every node has journalled some.
        lambda_m: 20.0,
        ..NetworkSpec::default()
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let mut slowest = Duration::ZERO;
    // One after another: the later ones send into links whose peers are dead.
    for node in net.mixnodes.iter_mut().chain(net.gateways.iter_mut()) {
        let began = Instant::now();
        assert!(
            node.process.stop(Duration::from_secs(5)),
            "{} exits cleanly on SIGTERM",
            node.process.name()
        );
        let took = began.elapsed();
        eprintln!("{}: {} ms", node.process.name(), took.as_millis());
        slowest = slowest.max(took);
        // A mix node journals every packet it forwarded (a gateway, every
        // message it stored: none here).
        let journal = std::fs::metadata(node.dir.join("replay.journal"))
            .unwrap()
            .len();
        assert_eq!(journal % 40, 0, "{}: whole records", node.process.name());
        if node.role == NodeRole::Mix {
            assert!(
                journal > 0,
                "{}: its forwards journalled",
                node.process.name()
            );
        }
    }
    assert!(
        slowest < Duration::from_secs(1),
        "every node exits within a second of SIGTERM; the slowest took {slowest:?}"
    );
}
