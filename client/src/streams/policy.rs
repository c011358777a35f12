//! The exit's policy: which targets it connects to (deny by default), how
//! many streams it carries, for how long and how much.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use stream_core::{ResetReason, Target};

use crate::error::PolicyError;

/// An exit's policy, read from TOML (`policy.example.toml` names every key).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExitPolicy {
    /// Targets the exit connects to; nothing else.
    pub allow: Vec<AllowRule>,
    /// Streams open at once, all openers together.
    pub max_streams: usize,
    /// Streams open at once from one opener's session.
    pub max_streams_per_peer: usize,
    /// Bytes carried by one stream, both directions; then it is reset.
    pub max_bytes_per_stream: u64,
    /// Seconds to resolve the name and connect.
    pub connect_timeout_secs: u64,
    /// Seconds without a byte in either direction before the stream is closed.
    pub idle_timeout_secs: u64,
    /// Whether a name may resolve to a loopback, private or link-local
    /// address (a rule that names such an address literally always may).
    pub allow_private_addresses: bool,
}

impl Default for ExitPolicy {
    fn default() -> Self {
        ExitPolicy {
            allow: Vec::new(),
            max_streams: 256,
            max_streams_per_peer: 32,
            max_bytes_per_stream: 1 << 30,
            connect_timeout_secs: 10,
            idle_timeout_secs: 300,
            allow_private_addresses: false,
        }
    }
}

/// Hosts and ports the exit connects to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// `example.org` (that name), `*.example.org` (its subdomains), an IP
    /// address, or `*` (any host).
    pub host: String,
    /// Ports: numbers, or ranges as text (`"8000-8999"`).
    pub ports: Vec<PortSpec>,
}

/// One port or a range of ports.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    One(u16),
    /// `"low-high"`, both included (or one port as text).
    Range(String),
}

impl PortSpec {
    fn bounds(&self) -> Option<(u16, u16)> {
        match self {
            PortSpec::One(p) => Some((*p, *p)),
            PortSpec::Range(text) => match text.split_once('-') {
                Some((lo, hi)) => Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)),
                None => text.trim().parse().ok().map(|p| (p, p)),
            },
        }
    }

    fn contains(&self, port: u16) -> bool {
        self.bounds()
            .is_some_and(|(lo, hi)| lo <= port && port <= hi)
    }
}

/// What the policy says of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; the target's addresses must be public.
    Allowed,
    /// Allowed by a rule that names the address itself: any address.
    AllowedLiteral,
}

impl ExitPolicy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| e.at(path))
    }

    /// Parses and checks a policy.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let policy: ExitPolicy = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: None,
            message: e.to_string(),
        })?;
        for (i, rule) in policy.allow.iter().enumerate() {
            if rule.host.trim().is_empty() {
                return Err(PolicyError::Invalid(format!("allow[{i}].host is empty")));
            }
            for port in &rule.ports {
                match port.bounds() {
                    Some((lo, hi)) if lo <= hi => {}
                    _ => {
                        return Err(PolicyError::Invalid(format!(
                            "allow[{i}].ports: {port:?} is not a port or a range low-high"
                        )));
                    }
                }
            }
        }
        if policy.max_streams == 0 || policy.connect_timeout_secs == 0 {
            return Err(PolicyError::Invalid(
                "max_streams and connect_timeout_secs must be positive".into(),
            ));
        }
        Ok(policy)
    }

    /// Checks a target against the rules: the first rule that matches its
    /// host and port allows it; none refuses it (`NotAllowed`).
    pub fn check(&self, target: &Target) -> Result<Verdict, ResetReason> {
        let host = target.host().to_ascii_lowercase();
        let port = target.port();
        for rule in &self.allow {
            let pattern = rule.host.trim().to_ascii_lowercase();
            let literal = pattern.parse::<IpAddr>().ok();
            let host_matches = match (literal, target) {
                (Some(ip), Target::Ip(addr)) => ip == addr.ip(),
                (Some(_), Target::Domain(..)) => false,
                (None, _) if pattern == "*" => true,
                (None, Target::Domain(..)) => match pattern.strip_prefix("*.") {
                    Some(suffix) => host
                        .strip_suffix(suffix)
                        .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                    None => host == pattern,
                },
                (None, Target::Ip(_)) => false,
            };
            if host_matches && rule.ports.iter().any(|p| p.contains(port)) {
                return Ok(if literal.is_some() {
                    Verdict::AllowedLiteral
                } else {
                    Verdict::Allowed
                });
            }
        }
        Err(ResetReason::NotAllowed)
    }

    /// Whether the exit may connect to `ip` under `verdict`.
    pub fn address_allowed(&self, verdict: Verdict, ip: IpAddr) -> bool {
        verdict == Verdict::AllowedLiteral || self.allow_private_addresses || is_public(ip)
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }
}

/// Whether an address is reachable on the public Internet (not loopback,
/// private, link-local, unspecified, multicast or documentation).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || v4.octets().first() == Some(&0)
                || (v4.octets().first() == Some(&100)
                    && v4.octets().get(1).is_some_and(|b| b & 0xC0 == 64)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments().first().copied().unwrap_or(0);
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The example policy shipped beside the binary.
pub const EXAMPLE_POLICY: &str = include_str!("policy.example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(h: &str, p: u16) -> Target {
        Target::Domain(h.into(), p)
    }

    #[test]
    fn the_example_parses_and_names_every_key() {
        let example = ExitPolicy::parse(EXAMPLE_POLICY).unwrap();
        let defaults = ExitPolicy::default();
        assert_eq!(example.max_streams, defaults.max_streams);
        assert_eq!(example.max_streams_per_peer, defaults.max_streams_per_peer);
        assert_eq!(example.max_bytes_per_stream, defaults.max_bytes_per_stream);
        assert_eq!(example.connect_timeout_secs, defaults.connect_timeout_secs);
        assert_eq!(example.idle_timeout_secs, defaults.idle_timeout_secs);
        assert_eq!(
            example.allow_private_addresses,
            defaults.allow_private_addresses
        );
        for key in [
            "max_streams",
            "max_streams_per_peer",
            "max_bytes_per_stream",
            "connect_timeout_secs",
            "idle_timeout_secs",
            "allow_private_addresses",
            "[[allow]]",
            "host",
            "ports",
        ] {
            assert!(EXAMPLE_POLICY.contains(key), "{key}");
        }
    }

    #[test]
    fn deny_by_default_and_rules_match_as_documented() {
        assert_eq!(
            ExitPolicy::default().check(&domain("example.org", 80)),
            Err(ResetReason::NotAllowed)
        );
        let p = ExitPolicy::parse(
            r#"
            [[allow]]
            host = "*.example.org"
            ports = [80, "443", "8000-8999"]
            [[allow]]
            host = "127.0.0.1"
            ports = [8080]
            "#,
        )
        .unwrap();
        assert_eq!(
            p.check(&domain("www.example.org", 443)),
            Ok(Verdict::Allowed)
        );
        assert_eq!(
            p.check(&domain("a.b.EXAMPLE.org", 8500)),
            Ok(Verdict::Allowed)
        );
        assert!(p.check(&domain("example.org", 80)).is_err());
        assert!(p.check(&domain("badexample.org", 80)).is_err());
        assert!(p.check(&domain("www.example.org", 22)).is_err());
        let local = Target::Ip("127.0.0.1:8080".parse().unwrap());
        assert_eq!(p.check(&local), Ok(Verdict::AllowedLiteral));
        assert!(
            p.check(&Target::Ip("127.0.0.1:8081".parse().unwrap()))
                .is_err()
        );
        assert!(!p.address_allowed(Verdict::Allowed, "10.1.2.3".parse().unwrap()));
        assert!(!p.address_allowed(Verdict::Allowed, "::1".parse().unwrap()));
        assert!(p.address_allowed(Verdict::Allowed, "93.184.216.34".parse().unwrap()));
        assert!(p.address_allowed(Verdict::AllowedLiteral, "127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_policies_are_refused_with_the_field() {
        let e = ExitPolicy::parse("[[allow]]\nhost = \"x\"\nports = [\"9-1\"]\n").unwrap_err();
        assert!(e.to_string().contains("allow[0].ports"), "{e}");
        assert!(ExitPolicy::parse("max_stream = 3").is_err());
        assert!(ExitPolicy::parse("max_streams = 0").is_err());
    }
}
