//! The node's Prometheus registry and its `/metrics` endpoint.
//!
//! [`NodeMetrics`] are the series every node exports (packets in, out and
//! dropped by reason, replays, loop cover, links, epoch, topology), under
//! the binary's prefix (`mixnode_`, `gateway_`); a role registers its own
//! series in the same registry with [`counter`], [`gauge`] and
//! [`drop_family`]. Labels stay coarse: a drop reason, never a peer or a
//! client, since per-peer series would publish traffic patterns to whoever
//! scrapes. The endpoint answers in the Prometheus text format, which
//! `promtool check metrics` reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use directory::DirectoryClient;
use mixnode_core::DropReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use transport::LinkStats;

use crate::node::NodeKind;
use crate::shutdown::ShutdownSignal;

/// Label set of the drop counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// Why the packet (or message) was dropped.
    pub reason: &'static str,
}

/// Registers a counter.
pub fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    registry.register(name, help, c.clone());
    c
}

/// Registers a gauge.
pub fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

/// Registers a counter family labelled by drop reason, with every reason
/// present from the start, at zero.
pub fn drop_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    reasons: impl IntoIterator<Item = &'static str>,
) -> Family<DropLabels, Counter> {
    let f = Family::<DropLabels, Counter>::default();
    registry.register(name, help, f.clone());
    for reason in reasons {
        let _ = f.get_or_create(&DropLabels { reason });
    }
    f
}

/// Raises `counter` to `total`, a running total kept elsewhere (a core's
/// stats, the link layer's), at each scrape.
pub fn catch_up(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// A count as a gauge value (saturating).
pub fn to_i64(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// The series every node exports.
pub struct NodeMetrics {
    /// Packets that arrived from links.
    pub received: Counter,
    /// Packets handed to a link towards their next hop.
    pub forwarded: Counter,
    /// Packets dropped, by reason.
    pub dropped: Family<DropLabels, Counter>,
    /// Replayed packets (also counted as drops with reason "replay").
    pub replays: Counter,
    /// The node's own loop cover packets sent (λ_M).
    pub cover_sent: Counter,
    /// The node's own loop cover packets that came back.
    pub cover_returned: Counter,
    /// Open QUIC links with other nodes.
    pub links_open: Gauge,
    /// Current key epoch.
    pub epoch: Gauge,
    /// Topology documents refused for a bad signature.
    pub topology_bad_signature: Counter,
    /// Nodes in the topology the node works on.
    pub topology_nodes: Gauge,
    /// Epochs since the one of the topology the node works on (0 while it is current).
    pub topology_stale_epochs: Gauge,
    /// 1 once the topology the node works on has expired (no newer consensus in time), else 0.
    pub topology_expired: Gauge,
    /// When the topology the node works on expires, unix seconds.
    pub topology_valid_until: Gauge,
    /// CPU time of the unwraps timed (one packet in [`UNWRAP_TIMED_EVERY`]).
    pub unwrap_cpu_seconds: Counter<f64, AtomicU64>,
    /// Unwraps timed.
    pub unwraps_timed: Counter,
    unwraps_seen: AtomicU64,
    link_dropped: Family<DropLabels, Counter>,
    unpinned_refused: Counter,
}

/// One packet in this many has its unwrap timed by the CPU clock of the
/// thread that opens it (reading that clock is a system call, about 0.4 µs
/// beyond a vDSO clock read here: timed every one, half a per cent of an
/// unwrap would go to the timing).
pub const UNWRAP_TIMED_EVERY: u64 = 16;

/// The calling thread's CPU time (zero if the clock cannot be read).
pub fn thread_cpu_time() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

impl NodeMetrics {
    /// Registers the common series in `registry` (made with the node's prefix).
    pub fn register(registry: &mut Registry, kind: NodeKind) -> Self {
        let r = registry;
        let cover = kind.cover_metric();
        NodeMetrics {
            received: counter(r, "packets_received", "Packets that arrived from links"),
            forwarded: counter(
                r,
                "packets_forwarded",
                "Packets handed to a link towards their next hop",
            ),
            dropped: drop_family(
                r,
                "packets_dropped",
                "Packets dropped, by reason",
                DropReason::ALL.iter().map(|d| d.as_str()),
            ),
            replays: counter(r, "replays", "Replayed packets refused"),
            cover_sent: counter(
                r,
                &format!("{cover}_sent"),
                "The node's own loop cover packets (rate λ_M) sent",
            ),
            cover_returned: counter(
                r,
                &format!("{cover}_returned"),
                "The node's own loop cover packets that came back",
            ),
            links_open: gauge(r, "links_open", "Open QUIC links with other nodes"),
            epoch: gauge(r, "epoch", "Current key epoch"),
            topology_bad_signature: counter(
                r,
                "topology_bad_signature",
                "Topology documents refused for a bad signature",
            ),
            topology_nodes: gauge(
                r,
                "topology_nodes",
                "Nodes in the topology the node works on",
            ),
            topology_stale_epochs: gauge(
                r,
                "topology_stale_epochs",
                "Epochs since the one of the topology the node works on (no newer consensus)",
            ),
            topology_expired: gauge(
                r,
                "topology_expired",
                "1 once the topology the node works on has expired (no newer consensus in time)",
            ),
            topology_valid_until: gauge(
                r,
                "topology_valid_until_seconds",
                "When the topology the node works on expires, unix seconds",
            ),
            link_dropped: drop_family(
                r,
                "link_packets_dropped",
                "Packets dropped by the link layer, by reason",
                transport::LinkDropReason::ALL.iter().map(|d| d.as_str()),
            ),
            unpinned_refused: counter(
                r,
                "links_unpinned_refused",
                "Connections refused because the peer's key is not in the topology",
            ),
            unwrap_cpu_seconds: {
                let c = Counter::<f64, AtomicU64>::default();
                r.register(
                    "unwrap_cpu_seconds",
                    "CPU time of the packet unwraps timed (one in 16), seconds",
                    c.clone(),
                );
                c
            },
            unwraps_timed: counter(r, "unwraps_timed", "Packet unwraps timed (one in 16)"),
            unwraps_seen: AtomicU64::new(0),
        }
    }

    /// Whether the packet about to be opened is one to time.
    pub fn time_this_unwrap(&self) -> bool {
        self.unwraps_seen
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(UNWRAP_TIMED_EVERY)
    }

    /// Counts one timed unwrap that took `cpu` of its thread's time.
    pub fn unwrap_timed(&self, cpu: Duration) {
        self.unwrap_cpu_seconds.inc_by(cpu.as_secs_f64());
        self.unwraps_timed.inc();
    }

    /// Counts one drop (a replay also in `replays`).
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

    /// Copies the link layer's counters into the exported series.
    pub fn observe_links(&self, stats: &LinkStats) {
        self.links_open.set(to_i64(stats.links_open()));
        for reason in transport::LinkDropReason::ALL {
            let c = self.link_dropped.get_or_create(&DropLabels {
                reason: reason.as_str(),
            });
            catch_up(&c, stats.dropped(reason));
        }
        catch_up(&self.unpinned_refused, stats.peers_rejected());
    }
}

/// The exposition text of `registry`, in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    directory::metrics::openmetrics_to_prometheus(&out)
}

/// What a scrape runs before the registry is encoded: copies counters kept
/// elsewhere (the link layer's, a core's) into the registry.
pub type Observe = Box<dyn Fn() + Send + Sync>;

/// The bound `/metrics` listener, before it serves.
pub struct MetricsEndpoint {
    listener: tokio::net::TcpListener,
}

impl MetricsEndpoint {
    /// Binds `listen` (`metrics.listen` in the config).
    pub async fn bind(listen: SocketAddr) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("metrics.listen = {listen}: cannot bind"))?;
        Ok(MetricsEndpoint { listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves `GET /metrics` until the stop is requested: `observe`, then
    /// the registry's text. A scrape in flight gets until the deadline.
    /// With a `mirror`, also `GET /v1/topology`: the signed topology the
    /// node holds, byte for byte as the authorities signed it.
    pub async fn serve(
        self,
        registry: Arc<Registry>,
        observe: Observe,
        mirror: Option<Arc<DirectoryClient>>,
        shutdown: ShutdownSignal,
    ) {
        let observe = Arc::new(observe);
        let mut app = axum::Router::new();
        if let Some(directory) = mirror {
            app = app.route(
                "/v1/topology",
                axum::routing::get(move || {
                    let held = directory.cached_signed();
                    async move {
                        use axum::response::IntoResponse;
                        match held {
                            Some(signed) => (
                                [(axum::http::header::CONTENT_TYPE, "application/json")],
                                signed.to_json(),
                            )
                                .into_response(),
                            None => (axum::http::StatusCode::NOT_FOUND, "no topology held yet\n")
                                .into_response(),
                        }
                    }
                }),
            );
        }
        let app = app.route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                let observe = observe.clone();
                async move {
                    observe();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        encode(&registry),
                    )
                }
            }),
        );
        let mut stopping = shutdown.clone();
        let served = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            stopping.requested().await;
        });
        let mut cut = shutdown;
        tokio::select! {
            _ = served => {}
            _ = async {
                cut.requested().await;
                tokio::time::sleep_until(cut.deadline()).await;
            } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn metrics(kind: NodeKind) -> (Registry, NodeMetrics) {
        let mut registry = Registry::with_prefix(kind.metrics_prefix());
        let m = NodeMetrics::register(&mut registry, kind);
        (registry, m)
    }

    #[test]
    fn drops_are_labelled_by_reason_and_replays_counted_twice() {
        let (registry, m) = metrics(NodeKind::Mix);
        m.count_drop(DropReason::Replay);
        m.count_drop(DropReason::WrongSize);
        let text = encode(&registry);
        assert!(
            text.contains(r#"mixnode_packets_dropped_total{reason="replay"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"mixnode_packets_dropped_total{reason="wrong_size"} 1"#));
        assert!(text.contains(r#"mixnode_packets_dropped_total{reason="unknown_key"} 0"#));
        assert!(text.contains("mixnode_replays_total 1"));
        assert!(text.contains("# TYPE mixnode_replays_total counter"));
        assert!(text.contains("mixnode_cover_sent_total 0"));
        assert!(!text.contains("# EOF"));
        let (registry, _) = metrics(NodeKind::Gateway);
        let text = encode(&registry);
        assert!(
            text.contains("gateway_loop_cover_returned_total 0"),
            "{text}"
        );
        assert!(text.contains(r#"gateway_link_packets_dropped_total{reason="#));
    }

    #[test]
    fn one_unwrap_in_sixteen_is_timed_and_its_cpu_time_exported() {
        let (registry, m) = metrics(NodeKind::Mix);
        let chosen: Vec<u64> = (0..UNWRAP_TIMED_EVERY * 3)
            .filter(|_| m.time_this_unwrap())
            .collect();
        assert_eq!(chosen.len(), 3);
        m.unwrap_timed(Duration::from_micros(150));
        m.unwrap_timed(Duration::from_micros(50));
        let text = encode(&registry);
        assert!(text.contains("mixnode_unwraps_timed_total 2"), "{text}");
        let seconds: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("mixnode_unwrap_cpu_seconds_total "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((seconds - 200e-6).abs() < 1e-9, "{seconds}");
    }

    #[test]
    fn a_thread_cpu_clock_counts_work_not_sleep() {
        let started = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu_time().saturating_sub(started);
        let started = thread_cpu_time();
        let mut worked = Duration::ZERO;
        // Bounded, should the clock not move: each turn reads it once.
        for x in 0..50_000_000u64 {
            if worked >= Duration::from_millis(5) {
                break;
            }
            std::hint::black_box(x.wrapping_mul(31));
            worked = thread_cpu_time().saturating_sub(started);
        }
        assert!(
            worked >= Duration::from_millis(5),
            "{worked:?} after working"
        );
        assert!(
            slept < Duration::from_millis(20),
            "{slept:?} while sleeping"
        );
    }

    #[test]
    fn counters_catch_up_with_running_totals() {
        let c = Counter::default();
        catch_up(&c, 5);
        catch_up(&c, 5);
        catch_up(&c, 3);
        assert_eq!(c.get(), 5);
        assert_eq!(to_i64(u64::MAX), i64::MAX);
        assert_eq!(to_i64(7usize), 7);
    }
}
