//! The gateway's Prometheus metrics.
//!
//! Labels stay coarse: a drop reason, never a peer or a client, since
//! per-client series would publish who receives how much. The core's
//! [`GatewayStats`] are copied into the registry at each scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use gateway_core::{GatewayDropReason, GatewayStatsSnapshot};
use mixnode_core::DropReason;

/// Label set of the drop counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// Why the packet or message was dropped.
    pub reason: &'static str,
}

/// Counters copied from the core's stats.
struct CoreCounters {
    stored: Counter,
    expired: Counter,
    delivered: Counter,
    acknowledged: Counter,
    acks_sent: Counter,
    ack_failures: Counter,
    client_packets: Counter,
    throttled: Counter,
    malformed: Counter,
    auth_refused: Counter,
    authenticated: Counter,
    dropped: Family<DropLabels, Counter>,
}

/// Gauges copied from the core's stats.
struct CoreGauges {
    sessions: Gauge,
    online_clients: Gauge,
    mailbox_messages: Gauge,
    mailbox_bytes: Gauge,
}

/// Every metric the gateway exports.
pub struct GatewayMetrics {
    registry: Registry,
    /// Final-hop packets that arrived from mix nodes.
    pub received: Counter,
    /// Final-hop packets dropped by the exit mixer or the shell, by reason.
    pub dropped: Family<DropLabels, Counter>,
    /// Replayed packets (also counted as drops with reason "replay").
    pub replays: Counter,
    /// Packets handed to a link into layer 1 (client packets and SURB-acks).
    pub forwarded: Counter,
    /// Open QUIC links with mix nodes.
    pub links_open: Gauge,
    /// Current key epoch.
    pub epoch: Gauge,
    /// Topology documents refused for a bad signature.
    pub topology_bad_signature: Counter,
    /// Nodes in the topology the gateway works on.
    pub topology_nodes: Gauge,
    /// Client sessions closed because the client did not read fast enough.
    pub slow_clients: Counter,
    /// The gateway's own loop cover packets (λ_M) built for a link into layer 1.
    pub loop_cover_sent: Counter,
    /// The gateway's own loop cover packets that came back.
    pub loop_cover_returned: Counter,
    link_dropped: Family<DropLabels, Counter>,
    unpinned_refused: Counter,
    core: CoreCounters,
    gauges: CoreGauges,
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    registry.register(name, help, c.clone());
    c
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

fn family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    reasons: impl IntoIterator<Item = &'static str>,
) -> Family<DropLabels, Counter> {
    let f = Family::<DropLabels, Counter>::default();
    registry.register(name, help, f.clone());
    // Every reason appears from the start, at zero.
    for reason in reasons {
        let _ = f.get_or_create(&DropLabels { reason });
    }
    f
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn catch_up(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

impl GatewayMetrics {
    /// Registers every metric under the `gateway` prefix.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("gateway");
        let received = counter(
            &mut r,
            "packets_received",
            "Final-hop packets that arrived from mix nodes",
        );
        let dropped = family(
            &mut r,
            "packets_dropped",
            "Final-hop packets dropped before the mailbox, by reason",
            DropReason::ALL.iter().map(|d| d.as_str()),
        );
        let replays = counter(&mut r, "replays", "Replayed packets refused");
        let forwarded = counter(
            &mut r,
            "packets_forwarded",
            "Packets handed to a link into layer 1 (client packets and SURB-acks)",
        );
        let links_open = gauge(&mut r, "links_open", "Open QUIC links with mix nodes");
        let epoch = gauge(&mut r, "epoch", "Current key epoch");
        let topology_bad_signature = counter(
            &mut r,
            "topology_bad_signature",
            "Topology documents refused for a bad signature",
        );
        let topology_nodes = gauge(
            &mut r,
            "topology_nodes",
            "Nodes in the topology the gateway works on",
        );
        let slow_clients = counter(
            &mut r,
            "client_sessions_too_slow",
            "Client sessions closed because their write queue was full",
        );
        let loop_cover_sent = counter(
            &mut r,
            "loop_cover_sent",
            "The gateway's own loop cover packets (rate λ_M) built for a link into layer 1",
        );
        let loop_cover_returned = counter(
            &mut r,
            "loop_cover_returned",
            "The gateway's own loop cover packets that came back",
        );
        let link_dropped = family(
            &mut r,
            "link_packets_dropped",
            "Packets dropped by the link layer, by reason",
            transport::LinkDropReason::ALL.iter().map(|d| d.as_str()),
        );
        let unpinned_refused = counter(
            &mut r,
            "links_unpinned_refused",
            "Node-side connections refused because the peer's key is not in the topology",
        );
        let core = CoreCounters {
            stored: counter(
                &mut r,
                "mailbox_stored",
                "Messages committed to the mailbox",
            ),
            expired: counter(
                &mut r,
                "mailbox_expired",
                "Messages removed because their retention ran out",
            ),
            delivered: counter(
                &mut r,
                "mailbox_delivered",
                "Messages pushed to clients (a redelivery counts again)",
            ),
            acknowledged: counter(
                &mut r,
                "mailbox_acknowledged",
                "Messages deleted after the client acknowledged them",
            ),
            acks_sent: counter(&mut r, "surb_acks_sent", "SURB-acks sent into the mixnet"),
            ack_failures: counter(
                &mut r,
                "surb_ack_failures",
                "SURB-acks that could not be built",
            ),
            client_packets: counter(
                &mut r,
                "client_packets_accepted",
                "Client packets accepted for layer 1",
            ),
            throttled: counter(
                &mut r,
                "client_packets_throttled",
                "Client packets dropped for exceeding the network's rate",
            ),
            malformed: counter(
                &mut r,
                "client_messages_malformed",
                "Malformed client link messages (each closes its session)",
            ),
            auth_refused: counter(
                &mut r,
                "client_auth_refused",
                "Client sessions refused for a wrong proof",
            ),
            authenticated: counter(
                &mut r,
                "client_authenticated",
                "Client sessions that authenticated",
            ),
            dropped: family(
                &mut r,
                "messages_dropped",
                "Client packets and final-hop messages the gateway dropped, by reason",
                GatewayDropReason::ALL.iter().map(|d| d.as_str()),
            ),
        };
        let gauges = CoreGauges {
            sessions: gauge(&mut r, "sessions", "Client sessions open now"),
            online_clients: gauge(
                &mut r,
                "online_clients",
                "Clients with an authenticated session now",
            ),
            mailbox_messages: gauge(&mut r, "mailbox_messages", "Messages in the mailbox now"),
            mailbox_bytes: gauge(&mut r, "mailbox_bytes", "Payload bytes in the mailbox now"),
        };
        GatewayMetrics {
            registry: r,
            received,
            dropped,
            replays,
            forwarded,
            links_open,
            epoch,
            topology_bad_signature,
            topology_nodes,
            slow_clients,
            loop_cover_sent,
            loop_cover_returned,
            link_dropped,
            unpinned_refused,
            core,
            gauges,
        }
    }

    /// Counts one final-hop drop.
    pub fn count_drop(&self, reason: DropReason) {
        self.dropped
            .get_or_create(&DropLabels {
                reason: reason.as_str(),
            })
            .inc();
        if reason == DropReason::Replay {
            self.replays.inc();
        }
    }

    /// Copies the link layer's counters into the exported metrics.
    pub fn observe_links(&self, stats: &transport::LinkStats) {
        self.links_open.set(to_i64(stats.links_open()));
        for reason in transport::LinkDropReason::ALL {
            let c = self.link_dropped.get_or_create(&DropLabels {
                reason: reason.as_str(),
            });
            catch_up(&c, stats.dropped(reason));
        }
        catch_up(&self.unpinned_refused, stats.peers_rejected());
    }

    /// Copies the core's counters into the exported metrics.
    pub fn observe_core(&self, s: &GatewayStatsSnapshot) {
        let c = &self.core;
        catch_up(&c.stored, s.stored);
        catch_up(&c.expired, s.expired);
        catch_up(&c.delivered, s.delivered);
        catch_up(&c.acknowledged, s.acknowledged);
        catch_up(&c.acks_sent, s.acks_sent);
        catch_up(&c.ack_failures, s.ack_failures);
        catch_up(&c.client_packets, s.forwarded);
        catch_up(&c.throttled, s.throttled);
        catch_up(&c.malformed, s.malformed);
        catch_up(&c.auth_refused, s.auth_refused);
        catch_up(&c.authenticated, s.authenticated);
        for reason in GatewayDropReason::ALL {
            let f = c.dropped.get_or_create(&DropLabels {
                reason: reason.as_str(),
            });
            catch_up(&f, s.dropped(reason));
        }
        let g = &self.gauges;
        g.sessions.set(to_i64(s.sessions));
        g.online_clients.set(to_i64(s.online_clients));
        g.mailbox_messages.set(to_i64(s.mailbox_messages));
        g.mailbox_bytes.set(to_i64(s.mailbox_bytes));
    }

    /// The exposition text, in the Prometheus text format (what `promtool check metrics` reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        directory::metrics::openmetrics_to_prometheus(&out)
    }
}

/// Serves `/metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<GatewayMetrics>,
    link_stats: std::sync::Arc<transport::LinkStats>,
    core_stats: std::sync::Arc<gateway_core::GatewayStats>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            let link_stats = link_stats.clone();
            let core_stats = core_stats.clone();
            async move {
                metrics.observe_links(&link_stats);
                metrics.observe_core(&core_stats.snapshot());
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_stats_and_drops_appear_with_reason_labels() {
        let m = GatewayMetrics::new();
        m.count_drop(DropReason::Replay);
        let stats = gateway_core::GatewayStats::default();
        stats.dropped(GatewayDropReason::Throttled);
        m.observe_core(&stats.snapshot());
        m.observe_core(&stats.snapshot());
        let text = m.encode();
        assert!(
            text.contains(r#"gateway_packets_dropped_total{reason="replay"} 1"#),
            "{text}"
        );
        assert!(text.contains("gateway_replays_total 1"));
        assert!(
            text.contains("gateway_client_packets_throttled_total 1"),
            "{text}"
        );
        assert!(text.contains(r#"gateway_messages_dropped_total{reason="throttled"} 1"#));
        assert!(text.contains(r#"gateway_messages_dropped_total{reason="unknown_client"} 0"#));
        assert!(text.contains("# TYPE gateway_mailbox_messages gauge"));
        assert!(!text.contains("# EOF"));
    }
}
