//! Real gateway processes in a real network on loopback: a directory, one mix
//! node per layer and two gateways.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::{metric, promtool_check, within};
use localnet::{LocalNet, NetworkSpec};

/// The gateway's own loop cover counters, returned read first: a loop
/// counts as sent before it can come back, so `returned ≤ sent` holds.
async fn loop_counters(url: &str) -> (f64, f64) {
    let returned = metric(url, "gateway_loop_cover_returned_total").await;
    let sent = metric(url, "gateway_loop_cover_sent_total").await;
    (sent, returned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_send_loop_cover_at_lambda_m_and_it_comes_back() {
    let net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 2,
        lambda_m: 20.0,
        ..NetworkSpec::default()
    })
    .unwrap();
    for gw in &net.gateways {
        let url = &gw.metrics_url;
        // Links open and pins follow the topology within a refresh or two;
        // from then on the gateway's loops come back.
        let first = within("a gateway's first loop returns", 30, async {
            loop {
                let (sent, returned) = loop_counters(url).await;
                if returned > 0.0 {
                    return (sent, returned);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (sent, returned) = loop_counters(url).await;
        assert!(returned <= sent, "{returned} returned of {sent} sent");
        // 2 s at λ_M = 20/s: 40 expected; fewer than 10 is all but impossible.
        assert!(sent - first.0 >= 10.0, "sent {} then {sent}", first.0);
        assert!(returned > first.1, "returned {} then {returned}", first.1);
        // A returning loop is the gateway's own, not a final hop it cannot place.
        for reason in ["unexpected_final_hop", "bad_payload"] {
            let series = format!("gateway_packets_dropped_total{{reason=\"{reason}\"}}");
            assert_eq!(metric(url, &series).await, 0.0, "{series}");
        }
    }
    // The live page, cover counters included, passes promtool.
    let text = reqwest::get(&net.gateways[0].metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("# TYPE gateway_loop_cover_returned_total counter"));
    promtool_check(&text);
}
