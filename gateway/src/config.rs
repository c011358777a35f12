//! The gateway's TOML configuration: the sections every node has (packet
//! processing under `[processing]`), plus `[clients]` and `[mailbox]`.
//!
//! Only what is particular to this gateway lives here; network-wide
//! parameters (epoch length, delays, rates, packet size) come from the signed
//! topology. The client rate limit is the network's λ_P + λ_L.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use gateway_core::{MailboxConfig, SourceLimits, ThrottleConfig};
use nodeshell::cli::{InitArgs, InitCommand};
use nodeshell::config::RoleSections;
use serde::Deserialize;

/// The gateway's own sections.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GatewaySections {
    /// The client side.
    pub clients: ClientsSection,
    /// Retention and quotas.
    #[serde(default)]
    pub mailbox: MailboxSection,
}

impl RoleSections for GatewaySections {
    const PROCESSING: &'static str = "processing";
    const SECTIONS: &'static [&'static str] = &["clients", "mailbox"];

    fn check(&self, path: &Path) -> Result<()> {
        if self.mailbox.retention_secs == 0 {
            bail!(
                "{}: `mailbox.retention_secs` must be above 0",
                path.display()
            );
        }
        if self.mailbox.group_commit_ms > MAX_GROUP_COMMIT_MS {
            bail!(
                "{}: `mailbox.group_commit_ms` must be at most {MAX_GROUP_COMMIT_MS} (it delays every delivery, acknowledgement and client packet)",
                path.display()
            );
        }
        if self.clients.session_queue == 0 || self.clients.max_sessions == 0 {
            bail!(
                "{}: `clients.session_queue` and `clients.max_sessions` must be above 0",
                path.display()
            );
        }
        Ok(())
    }
}

/// Longest hold of a group commit a config may ask for, in milliseconds.
pub const MAX_GROUP_COMMIT_MS: u64 = 1000;

/// The arguments of `gateway init`.
#[derive(Debug, clap::Args)]
pub struct GatewayInit {
    #[command(flatten)]
    node: InitArgs,
    /// Address the QUIC endpoint for clients binds.
    #[arg(long, default_value = "0.0.0.0:1790")]
    clients: SocketAddr,
}

impl GatewayInit {
    /// The arguments of `gateway init` with these values.
    pub fn new(node: InitArgs, clients: SocketAddr) -> Self {
        GatewayInit { node, clients }
    }
}

impl InitCommand for GatewayInit {
    fn common(&self) -> &InitArgs {
        &self.node
    }
}

/// `[clients]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsSection {
    /// Address the QUIC endpoint for clients binds.
    pub listen: SocketAddr,
    /// Address clients dial (announced as `client_address`); defaults to `listen`.
    #[serde(default)]
    pub public_address: Option<SocketAddr>,
    /// Most client sessions at once.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Messages waiting to be written to one client before it is disconnected as too slow.
    #[serde(default = "default_session_queue")]
    pub session_queue: usize,
    /// Days a client may stay away before its registration and mailbox are deleted.
    #[serde(default = "default_registration_expiry_days")]
    pub registration_expiry_days: u64,
    /// New sessions one source address may open at once.
    #[serde(default = "default_source_sessions_burst")]
    pub source_sessions_burst: u32,
    /// New sessions one source address may open per minute, sustained.
    #[serde(default = "default_source_sessions_per_minute")]
    pub source_sessions_per_minute: u32,
    /// New client keys one source address may register at once.
    #[serde(default = "default_source_registrations_burst")]
    pub source_registrations_burst: u32,
    /// New client keys one source address may register per hour, sustained.
    #[serde(default = "default_source_registrations_per_hour")]
    pub source_registrations_per_hour: u32,
    /// Who may register: anyone (`open`), or only clients with an invite (`closed`).
    #[serde(default)]
    pub admission: Admission,
}

/// Who a gateway registers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    /// Any client that authenticates (public gateways).
    #[default]
    Open,
    /// Only clients with a one-time invite from `gateway invite`; `gateway
    /// revoke` removes one (docs/gateway.md, "Closed admission").
    Closed,
}

fn default_registration_expiry_days() -> u64 {
    90
}

fn default_source_sessions_burst() -> u32 {
    60
}

fn default_source_sessions_per_minute() -> u32 {
    60
}

fn default_source_registrations_burst() -> u32 {
    100
}

fn default_source_registrations_per_hour() -> u32 {
    120
}

fn default_max_sessions() -> usize {
    10_000
}

fn default_session_queue() -> usize {
    256
}

/// `[mailbox]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailboxSection {
    /// How long an unacknowledged message is kept, in seconds.
    pub retention_secs: u64,
    /// Most messages one client's mailbox may hold.
    pub max_messages_per_client: u64,
    /// Most payload bytes all mailboxes together may hold.
    pub max_total_bytes: u64,
    /// How long a turn of the core loop holds its first event for others
    /// to share its commit, in milliseconds.
    pub group_commit_ms: u64,
}

impl Default for MailboxSection {
    fn default() -> Self {
        MailboxSection {
            retention_secs: 7 * 24 * 3600,
            max_messages_per_client: 10_000,
            max_total_bytes: 1 << 30,
            group_commit_ms: 10,
        }
    }
}

impl MailboxSection {
    /// The hold of a turn of the core loop ([`MailboxSection::group_commit_ms`]).
    pub fn group_commit(&self) -> Duration {
        Duration::from_millis(self.group_commit_ms)
    }

    /// The mailbox settings these give.
    pub fn mailbox_config(&self) -> MailboxConfig {
        MailboxConfig {
            retention: Duration::from_secs(self.retention_secs),
            max_messages_per_client: self.max_messages_per_client,
            max_total_bytes: self.max_total_bytes,
            ..MailboxConfig::default()
        }
    }
}

impl ClientsSection {
    /// The client-side address announced to the network: `public_address`, or the one bound.
    pub fn announced(&self, bound: SocketAddr) -> SocketAddr {
        self.public_address.unwrap_or(bound)
    }

    /// The per-source limits these give.
    pub fn source_limits(&self) -> SourceLimits {
        SourceLimits {
            sessions: ThrottleConfig {
                rate: f64::from(self.source_sessions_per_minute) / 60.0,
                burst: f64::from(self.source_sessions_burst),
            },
            registrations: ThrottleConfig {
                rate: f64::from(self.source_registrations_per_hour) / 3600.0,
                burst: f64::from(self.source_registrations_burst),
            },
            ..SourceLimits::default()
        }
    }

    /// How long an unused registration is kept.
    pub fn registration_expiry(&self) -> Duration {
        Duration::from_secs(self.registration_expiry_days.saturating_mul(86_400))
    }
}

/// A commented config for `gateway init`.
pub fn template(args: &GatewayInit, data_dir: &Path) -> String {
    let common = args.node.template(data_dir);
    format!(
        r#"# Gateway configuration.
# Network-wide parameters (epoch length, delays, rates) come from the signed
# topology published by the directory, not from this file.

{node}
[clients]
# Address the QUIC endpoint for clients binds.
listen = "{clients}"
# Address clients dial, if different from `listen`; announced as `client_address`.
# public_address = "203.0.113.7:1790"
# Most client sessions at once.
max_sessions = 10000
# Messages waiting to be written to one client before it is disconnected as too slow.
session_queue = 256
# Days a client may stay away before its registration and its mailbox are
# deleted (the gateway keeps only the day of each client's last connection).
registration_expiry_days = 90
# Per source address (IPv4 address or IPv6 /64): new sessions at once and per
# minute, new client keys registered at once and per hour. Raise them for an
# organization whose people all connect from behind one NAT.
source_sessions_burst = 60
source_sessions_per_minute = 60
source_registrations_burst = 100
source_registrations_per_hour = 120
# Who may register: "open" (anyone), or "closed" (only clients given a
# one-time invite by `gateway invite`; `gateway revoke` removes one).
admission = "open"

{directory_and_metrics}
{audit}
[mailbox]
# How long a message the client has not acknowledged is kept (seconds; 7 days).
retention_secs = 604800
# Most messages one client's mailbox may hold; beyond, new ones are refused (no ack).
max_messages_per_client = 10000
# Most payload bytes all mailboxes together may hold.
max_total_bytes = 1073741824
# Milliseconds each turn of the mailbox loop waits after its first event, so
# that the deliveries and acknowledgements of the turn share one commit (one
# disk sync). Longer: less CPU and fewer syncs per message, and that much more
# delay on every delivery, acknowledgement and client packet. 0: no hold.
group_commit_ms = 10

{processing}"#,
        node = common.node("the mailbox (mailbox.redb), the replay journal and the topology cache"),
        clients = args.clients,
        directory_and_metrics = common.directory_and_metrics(),
        audit = common.audit(),
        processing = common.processing(GatewaySections::PROCESSING),
    )
}

#[cfg(test)]
mod tests {
    use nodeshell::config::{NodeFile, ProcessingSection, TEMPLATE_KEYS, parse};

    use super::*;

    fn example(data_dir: &Path) -> String {
        let args = GatewayInit {
            node: InitArgs {
                dir: data_dir.to_path_buf(),
                listen: ([127, 0, 0, 1], 1789).into(),
                metrics: ([127, 0, 0, 1], 9100).into(),
                directory: "http://127.0.0.1:8080".into(),
                directory_key: "KEY".into(),
                authorities: Vec::new(),
                authority_threshold: None,
            },
            clients: ([127, 0, 0, 1], 1790).into(),
        };
        template(&args, data_dir)
    }

    fn parsed(text: &str) -> Result<NodeFile<GatewaySections>> {
        parse::<GatewaySections>(Path::new("gateway.toml"), text)
    }

    #[test]
    fn template_parses_to_defaults_and_names_every_key() {
        let dir = Path::new("/var/lib/gateway");
        let text = example(dir);
        let file = parsed(&text).unwrap();
        let c = &file.role;
        assert_eq!(file.node.processing, ProcessingSection::default());
        assert_eq!(file.node.node.data_dir, dir);
        assert_eq!(c.mailbox, MailboxSection::default());
        assert_eq!(c.mailbox.retention_secs, 7 * 24 * 3600);
        assert_eq!(c.clients.max_sessions, default_max_sessions());
        assert_eq!(c.clients.session_queue, default_session_queue());
        assert_eq!(c.clients.announced(c.clients.listen), c.clients.listen);
        // The template's values are the core's defaults.
        let limits = c.clients.source_limits();
        let defaults = gateway_core::SourceLimits::default();
        assert_eq!(limits.sessions, defaults.sessions);
        assert_eq!(limits.registrations.burst, defaults.registrations.burst);
        assert!((limits.registrations.rate - defaults.registrations.rate).abs() < 1e-12);
        assert_eq!(
            c.clients.registration_expiry(),
            gateway_core::GatewayConfig::default().registration_expiry
        );
        let keys = [
            "max_sessions",
            "session_queue",
            "registration_expiry_days",
            "source_sessions_burst",
            "source_sessions_per_minute",
            "source_registrations_burst",
            "source_registrations_per_hour",
            "retention_secs",
            "max_messages_per_client",
            "max_total_bytes",
            "group_commit_ms",
        ];
        for key in TEMPLATE_KEYS.iter().chain(&keys) {
            assert!(text.contains(&format!("{key} =")), "template names `{key}`");
        }
    }

    #[test]
    fn gateway_fields_are_checked_by_name() {
        let text = example(Path::new("/var/lib/gateway"));
        let e = parsed(&text.replace("retention_secs = 604800", "retention_secs = 0"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gateway.toml") && e.contains("mailbox.retention_secs"),
            "{e}"
        );
        let e = parsed(&text.replace("group_commit_ms = 10", "group_commit_ms = 5000"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mailbox.group_commit_ms"), "{e}");
        let file = parsed(&text.replace("group_commit_ms = 10", "group_commit_ms = 0")).unwrap();
        assert_eq!(file.role.mailbox.group_commit(), Duration::ZERO);
        let e = parsed(&text.replace("[clients]", "[clients]\nlisen = 1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
    }
}
