//! Per-source limits on new sessions and new registrations.
//!
//! Opening a session costs the gateway a challenge and, at authentication,
//! an X25519 multiplication; registering a client costs a durable write and a
//! mailbox kept until the registration expires. One network address that
//! opens sessions in a loop, or registers fresh keys in a loop, would make
//! every other client pay for it. So each source gets two token buckets, one
//! for sessions and one for registrations of keys the gateway does not serve
//! yet, refilled at a configured rate: bursts of honest reconnects (or an
//! organization enrolling its people from behind one NAT) pass, a loop does
//! not.
//!
//! A source is a [`SourcePrefix`]: the whole address for IPv4, the /64 for
//! IPv6 (one host or site usually holds a whole /64, so a limit per /128
//! would limit nothing). The table of sources is bounded: idle entries (both
//! buckets full again) are dropped, and when it is full of busy ones a new
//! source is refused until some become idle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use protocol::time::Timestamp;

use crate::throttle::{ThrottleConfig, TokenBucket};

/// The part of a client's network address that limits apply to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourcePrefix {
    /// A whole IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl From<IpAddr> for SourcePrefix {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => SourcePrefix::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourcePrefix::V4(v4.octets()),
                None => {
                    let [a, b, c, d, e, f, g, h, ..] = v6.octets();
                    SourcePrefix::V6([a, b, c, d, e, f, g, h])
                }
            },
        }
    }
}

/// How much one source may ask of the gateway.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SourceLimits {
    /// New sessions (connections) per source: sustained rate per second and burst.
    pub sessions: ThrottleConfig,
    /// Registrations of new client keys per source: rate per second and burst.
    pub registrations: ThrottleConfig,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            // One reconnect a second, and 60 at once (a NAT's clients after
            // an outage).
            sessions: ThrottleConfig {
                rate: 1.0,
                burst: 60.0,
            },
            // 120 new keys an hour, 100 at once (an enrollment).
            registrations: ThrottleConfig {
                rate: 120.0 / 3600.0,
                burst: 100.0,
            },
            max_sources: 100_000,
        }
    }
}

impl SourceLimits {
    /// Limits that never refuse anything (tests, simulations, closed networks).
    pub fn unlimited() -> Self {
        let open = ThrottleConfig {
            rate: f64::MAX,
            burst: f64::MAX,
        };
        SourceLimits {
            sessions: open,
            registrations: open,
            max_sources: usize::MAX,
        }
    }

    /// How long a source needs, idle, until both its buckets are full again.
    fn idle_after(&self) -> Duration {
        let refill = |c: ThrottleConfig| {
            if c.rate > 0.0 && c.burst.is_finite() {
                (c.burst / c.rate).min(86_400.0 * 365.0)
            } else {
                0.0
            }
        };
        Duration::from_secs_f64(refill(self.sessions).max(refill(self.registrations)))
    }
}

/// What a source asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceRequest {
    /// A new session.
    Session,
    /// The registration of a key the gateway does not serve yet.
    Registration,
}

struct SourceBuckets {
    sessions: TokenBucket,
    registrations: TokenBucket,
    last_used: Timestamp,
}

/// The token buckets of every source seen recently.
pub struct SourceLimiter {
    limits: SourceLimits,
    sources: HashMap<SourcePrefix, SourceBuckets>,
}

impl SourceLimiter {
    /// No source seen yet.
    pub fn new(limits: SourceLimits) -> Self {
        SourceLimiter {
            limits,
            sources: HashMap::new(),
        }
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Takes one token of `request` from `source`'s bucket; `false` means
    /// the source is over its limit (or the table is full of busy sources).
    pub fn allow(&mut self, now: Timestamp, source: SourcePrefix, request: SourceRequest) -> bool {
        if !self.sources.contains_key(&source) && self.sources.len() >= self.limits.max_sources {
            self.forget_idle(now);
            if self.sources.len() >= self.limits.max_sources {
                return false;
            }
        }
        let limits = self.limits;
        let buckets = self.sources.entry(source).or_insert_with(|| SourceBuckets {
            sessions: TokenBucket::new(limits.sessions, now),
            registrations: TokenBucket::new(limits.registrations, now),
            last_used: now,
        });
        buckets.last_used = now;
        match request {
            SourceRequest::Session => buckets.sessions.try_take(now),
            SourceRequest::Registration => buckets.registrations.try_take(now),
        }
    }

    /// Drops the sources whose buckets have refilled completely: forgetting
    /// them changes nothing, a new full bucket is the same.
    pub fn forget_idle(&mut self, now: Timestamp) {
        let idle = self.limits.idle_after();
        self.sources
            .retain(|_, b| now.saturating_duration_since(b.last_used) < idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn at(secs: u64) -> Timestamp {
        Timestamp::ZERO.saturating_add(Duration::from_secs(secs))
    }

    fn limits(burst: f64, rate: f64, max_sources: usize) -> SourceLimits {
        let c = ThrottleConfig { rate, burst };
        SourceLimits {
            sessions: c,
            registrations: c,
            max_sources,
        }
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourcePrefix::from(a), SourcePrefix::from(b));
        assert_ne!(SourcePrefix::from(a), SourcePrefix::from(c));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(
            SourcePrefix::from(mapped),
            SourcePrefix::from(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)))
        );
        assert_ne!(
            SourcePrefix::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            SourcePrefix::from(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate_and_others_are_not_affected() {
        let mut limiter = SourceLimiter::new(limits(3.0, 0.5, 10));
        let one = SourcePrefix::V4([10, 0, 0, 1]);
        let two = SourcePrefix::V4([10, 0, 0, 2]);
        let allowed = (0..10)
            .filter(|_| limiter.allow(at(0), one, SourceRequest::Session))
            .count();
        assert_eq!(allowed, 3);
        assert!(limiter.allow(at(0), two, SourceRequest::Session));
        assert!(
            limiter.allow(at(0), one, SourceRequest::Registration),
            "registrations have their own bucket"
        );
        assert!(!limiter.allow(at(1), one, SourceRequest::Session));
        assert!(
            limiter.allow(at(2), one, SourceRequest::Session),
            "0.5/s refill"
        );
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_make_room() {
        let mut limiter = SourceLimiter::new(limits(2.0, 1.0, 2));
        for i in 0..2 {
            assert!(limiter.allow(
                at(0),
                SourcePrefix::V4([10, 0, 0, i]),
                SourceRequest::Session
            ));
        }
        let newcomer = SourcePrefix::V4([10, 0, 0, 9]);
        assert!(
            !limiter.allow(at(0), newcomer, SourceRequest::Session),
            "full of busy sources"
        );
        assert_eq!(limiter.tracked(), 2);
        // Two seconds later both buckets are full again: the old entries go.
        assert!(limiter.allow(at(3), newcomer, SourceRequest::Session));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn unlimited_never_refuses() {
        let mut limiter = SourceLimiter::new(SourceLimits::unlimited());
        let one = SourcePrefix::V4([10, 0, 0, 1]);
        assert!((0..10_000).all(|_| limiter.allow(at(0), one, SourceRequest::Registration)));
    }
}
