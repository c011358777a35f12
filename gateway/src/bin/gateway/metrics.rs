//! The gateway's own Prometheus series: its core's counters and gauges
//! (sessions, mailbox, SURB-acks, throttling, drops by reason) and the
//! sessions closed as too slow. The series every node has are the runtime's
//! (`nodeshell::metrics`). Labels stay coarse: a drop reason, never a client,
//! since per-client series would publish who receives how much. The core's
//! [`GatewayStats`](gateway_core::GatewayStats) are copied in at each scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use gateway_core::{
    GatewayDropReason, GatewayStatsSnapshot, PrekeyRequestOutcome, PrekeyUploadKind,
    PrekeyUploadOutcome,
};
use nodeshell::metrics::{DropLabels, catch_up, counter, drop_family, gauge, to_i64};

/// The label of `prekey_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// What became of the request.
    outcome: &'static str,
}

/// The labels of `prekey_uploads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UploadLabels {
    /// A published bundle or a one-time prekey.
    kind: &'static str,
    /// What became of it.
    outcome: &'static str,
}

/// The prekey service's series.
struct PrekeyCounters {
    requests: Family<RequestLabels, Counter>,
    one_time_handed: Counter,
    uploads: Family<UploadLabels, Counter>,
    published: Gauge,
}

impl PrekeyCounters {
    fn register(r: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "prekey_requests",
            "Bundle requests that reached the prekey service, by outcome",
            requests.clone(),
        );
        for outcome in PrekeyRequestOutcome::ALL {
            let _ = requests.get_or_create(&RequestLabels {
                outcome: outcome.as_str(),
            });
        }
        let uploads = Family::<UploadLabels, Counter>::default();
        r.register(
            "prekey_uploads",
            "Prekeys uploaded by clients (a bundle, or each one-time prekey), by kind and outcome",
            uploads.clone(),
        );
        for kind in PrekeyUploadKind::ALL {
            for outcome in PrekeyUploadOutcome::ALL {
                let _ = uploads.get_or_create(&UploadLabels {
                    kind: kind.as_str(),
                    outcome: outcome.as_str(),
                });
            }
        }
        PrekeyCounters {
            requests,
            one_time_handed: counter(
                r,
                "one_time_prekeys_handed",
                "One-time prekeys handed out in answers (each once)",
            ),
            uploads,
            published: gauge(
                r,
                "prekey_published_bundles",
                "Published bundles the prekey service keeps now",
            ),
        }
    }

    fn observe(&self, s: &GatewayStatsSnapshot) {
        for outcome in PrekeyRequestOutcome::ALL {
            let c = self.requests.get_or_create(&RequestLabels {
                outcome: outcome.as_str(),
            });
            catch_up(&c, s.prekey_requests(outcome));
        }
        catch_up(&self.one_time_handed, s.one_time_handed);
        for kind in PrekeyUploadKind::ALL {
            for outcome in PrekeyUploadOutcome::ALL {
                let c = self.uploads.get_or_create(&UploadLabels {
                    kind: kind.as_str(),
                    outcome: outcome.as_str(),
                });
                catch_up(&c, s.prekey_uploads(kind, outcome));
            }
        }
        self.published.set(to_i64(s.published_bundles));
    }
}

/// Counters copied from the core's stats.
struct CoreCounters {
    stored: Counter,
    taken_unstored: Counter,
    expired: Counter,
    delivered: Counter,
    acknowledged: Counter,
    acks_sent: Counter,
    acks_late: Counter,
    ack_failures: Counter,
    client_packets: Counter,
    throttled: Counter,
    malformed: Counter,
    auth_refused: Counter,
    authenticated: Counter,
    sessions_refused: Counter,
    auth_timeouts: Counter,
    registrations_expired: Counter,
    sessions_source_limited: Counter,
    registrations_source_limited: Counter,
    enrolled: Counter,
    enrollments_refused: Counter,
    revoked: Counter,
    recalls: Counter,
    recalls_unmatched: Counter,
    recalled: Counter,
    dropped: Family<DropLabels, Counter>,
}

/// Gauges copied from the core's stats.
struct CoreGauges {
    sessions: Gauge,
    online_clients: Gauge,
    mailbox_messages: Gauge,
    mailbox_bytes: Gauge,
    held: Gauge,
    registered_clients: Gauge,
}

/// The gateway's own series.
pub struct GatewayMetrics {
    /// Client sessions closed because the client did not read fast enough.
    pub slow_clients: Counter,
    core: CoreCounters,
    gauges: CoreGauges,
    prekeys: PrekeyCounters,
}

impl GatewayMetrics {
    /// Registers the gateway's series in the node's registry.
    pub fn register(r: &mut Registry) -> Self {
        let slow_clients = counter(
            r,
            "client_sessions_too_slow",
            "Client sessions closed because their write queue was full",
        );
        let core = CoreCounters {
            stored: counter(r, "mailbox_stored", "Messages committed to the mailbox"),
            taken_unstored: counter(
                r,
                "mailbox_taken_unstored",
                "Messages pushed to an online client and acknowledged before they were due to be written: never stored",
            ),
            expired: counter(
                r,
                "mailbox_expired",
                "Messages removed because their retention ran out",
            ),
            delivered: counter(
                r,
                "mailbox_delivered",
                "Messages pushed to clients (a redelivery counts again)",
            ),
            acknowledged: counter(
                r,
                "mailbox_acknowledged",
                "Messages deleted after the client acknowledged them",
            ),
            acks_sent: counter(r, "surb_acks_sent", "SURB-acks sent into the mixnet"),
            acks_late: counter(
                r,
                "surb_acks_late",
                "SURB-acks that left more than 50 ms past their fixed instant",
            ),
            ack_failures: counter(r, "surb_ack_failures", "SURB-acks that could not be built"),
            client_packets: counter(
                r,
                "client_packets_accepted",
                "Client packets accepted for layer 1",
            ),
            throttled: counter(
                r,
                "client_packets_throttled",
                "Client packets dropped for exceeding the network's rate",
            ),
            malformed: counter(
                r,
                "client_messages_malformed",
                "Malformed client link messages (each closes its session)",
            ),
            auth_refused: counter(
                r,
                "client_auth_refused",
                "Client sessions refused for a wrong proof",
            ),
            authenticated: counter(
                r,
                "client_authenticated",
                "Client sessions that authenticated",
            ),
            sessions_refused: counter(
                r,
                "client_sessions_refused",
                "Client sessions closed at once because the gateway was full",
            ),
            auth_timeouts: counter(
                r,
                "client_auth_timeouts",
                "Client sessions closed for not authenticating in time",
            ),
            registrations_expired: counter(
                r,
                "client_registrations_expired",
                "Client registrations deleted, with their mailboxes, after going unused",
            ),
            sessions_source_limited: counter(
                r,
                "client_sessions_source_limited",
                "Client sessions refused because their source address opened too many",
            ),
            registrations_source_limited: counter(
                r,
                "client_registrations_source_limited",
                "Client registrations refused because their source address made too many",
            ),
            enrolled: counter(
                r,
                "client_enrollments",
                "Clients registered with a one-time invite (closed admission)",
            ),
            enrollments_refused: counter(
                r,
                "client_enrollments_refused",
                "Sessions of unregistered clients refused for want of an unused invite, or of revoked clients",
            ),
            revoked: counter(r, "clients_revoked", "Clients revoked by the operator"),
            recalls: counter(
                r,
                "recalls",
                "Recalls handled for clients of this gateway (well-formed)",
            ),
            recalls_unmatched: counter(
                r,
                "recalls_unmatched",
                "Recalls whose secret matched no stored message (a wrong secret, or all delivered)",
            ),
            recalled: counter(r, "recalled_messages", "Stored messages deleted by recalls"),
            dropped: drop_family(
                r,
                "messages_dropped",
                "Client packets and final-hop messages the gateway dropped, by reason",
                GatewayDropReason::ALL.iter().map(|d| d.as_str()),
            ),
        };
        let gauges = CoreGauges {
            sessions: gauge(r, "sessions", "Client sessions open now"),
            online_clients: gauge(
                r,
                "online_clients",
                "Clients with an authenticated session now",
            ),
            mailbox_messages: gauge(r, "mailbox_messages", "Messages in the mailbox now"),
            mailbox_bytes: gauge(r, "mailbox_bytes", "Payload bytes in the mailbox now"),
            held: gauge(
                r,
                "mailbox_held",
                "Messages pushed to online clients and held in memory, not stored (yet)",
            ),
            registered_clients: gauge(r, "registered_clients", "Clients the gateway serves now"),
        };
        let prekeys = PrekeyCounters::register(r);
        GatewayMetrics {
            slow_clients,
            core,
            gauges,
            prekeys,
        }
    }

    /// Copies the core's counters into the exported metrics.
    pub fn observe_core(&self, s: &GatewayStatsSnapshot) {
        let c = &self.core;
        catch_up(&c.stored, s.stored);
        catch_up(&c.taken_unstored, s.taken_unstored);
        catch_up(&c.expired, s.expired);
        catch_up(&c.delivered, s.delivered);
        catch_up(&c.acknowledged, s.acknowledged);
        catch_up(&c.acks_sent, s.acks_sent);
        catch_up(&c.acks_late, s.acks_late);
        catch_up(&c.ack_failures, s.ack_failures);
        catch_up(&c.client_packets, s.forwarded);
        catch_up(&c.throttled, s.throttled);
        catch_up(&c.malformed, s.malformed);
        catch_up(&c.auth_refused, s.auth_refused);
        catch_up(&c.authenticated, s.authenticated);
        catch_up(&c.sessions_refused, s.sessions_refused);
        catch_up(&c.auth_timeouts, s.auth_timeouts);
        catch_up(&c.registrations_expired, s.registrations_expired);
        catch_up(&c.sessions_source_limited, s.sessions_source_limited);
        catch_up(
            &c.registrations_source_limited,
            s.registrations_source_limited,
        );
        catch_up(&c.enrolled, s.enrolled);
        catch_up(&c.enrollments_refused, s.enrollments_refused);
        catch_up(&c.revoked, s.revoked);
        catch_up(&c.recalls, s.recalls);
        catch_up(&c.recalls_unmatched, s.recalls_unmatched);
        catch_up(&c.recalled, s.recalled);
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
        g.held.set(to_i64(s.held));
        g.registered_clients.set(to_i64(s.registered));
        self.prekeys.observe(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_stats_appear_with_reason_labels() {
        let mut registry = Registry::with_prefix("gateway");
        let m = GatewayMetrics::register(&mut registry);
        let stats = gateway_core::GatewayStats::default();
        stats.dropped(GatewayDropReason::Throttled);
        m.observe_core(&stats.snapshot());
        m.observe_core(&stats.snapshot());
        let text = nodeshell::metrics::encode(&registry);
        assert!(
            text.contains("gateway_client_packets_throttled_total 1"),
            "{text}"
        );
        assert!(text.contains(r#"gateway_messages_dropped_total{reason="throttled"} 1"#));
        assert!(text.contains(r#"gateway_messages_dropped_total{reason="unknown_client"} 0"#));
        assert!(text.contains("# TYPE gateway_mailbox_messages gauge"));
        assert!(text.contains(r#"gateway_prekey_requests_total{outcome="unknown"} 0"#));
        assert!(text.contains("gateway_one_time_prekeys_handed_total 0"));
        assert!(
            text.contains(r#"gateway_prekey_uploads_total{kind="one_time",outcome="duplicate"} 0"#)
        );
        assert!(text.contains("# TYPE gateway_prekey_published_bundles gauge"));
        assert!(!text.contains("# EOF"));
    }
}
