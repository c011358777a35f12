//! Network-wide parameters, carried in every topology document.
//!
//! Every party must agree on the packet size, the mean per-hop delay and the
//! cover rates: a client that sends at another rate than the others stands out,
//! and a delay mean that differs from the crowd's shrinks the anonymity set. So
//! these values live in the signed topology, not in each node's config; the
//! directory's operator sets them once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocol::{Epoch, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::TopologyError;

/// Parameters every node and client of the network applies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkParams {
    /// Start of epoch 0, unix seconds: epoch = floor((now − genesis) / length).
    pub genesis_unix_secs: u64,
    /// How long one key epoch (and one topology) lasts.
    #[serde(rename = "epoch_length_secs", with = "crate::serde_keys::secs")]
    pub epoch_length: Duration,
    /// Mean of the exponential delay a sender picks for each mix hop.
    #[serde(rename = "mean_delay_ms", with = "crate::serde_keys::millis")]
    pub mean_delay: Duration,
    /// Longest per-hop delay a node honours; longer ones are clamped or dropped.
    #[serde(rename = "max_delay_ms", with = "crate::serde_keys::millis")]
    pub max_delay: Duration,
    /// λ_P: a client's Poisson sending rate (real or drop cover), per second.
    pub lambda_p: f64,
    /// λ_L: a client's loop cover rate, per second.
    pub lambda_l: f64,
    /// λ_D: a client's separate drop cover rate, per second (0 = only through λ_P).
    pub lambda_d: f64,
    /// λ_M: a mix node's loop cover rate, per second.
    pub lambda_m: f64,
    /// Bytes of every packet on every link.
    pub packet_size: usize,
}

impl Default for NetworkParams {
    /// Loopix-style defaults: 50 ms mean delay per hop, one-hour epochs.
    fn default() -> Self {
        NetworkParams {
            genesis_unix_secs: 0,
            epoch_length: Duration::from_secs(3600),
            mean_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(10),
            lambda_p: 10.0,
            lambda_l: 2.0,
            lambda_d: 0.0,
            lambda_m: 2.0,
            packet_size: protocol::packet::PACKET_SIZE,
        }
    }
}

/// Named sets of client rates an operator picks for the whole network
/// (`rate_profile` in the directory's config). Every client of a network
/// sends at the same rate, so a profile is chosen per network, never per
/// client: a client that sent faster than the others would stand out.
/// docs/streams.md ("Rate profiles") says what each costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateProfile {
    /// λ_P = 10/s, 50 ms mean per-hop delay: the default, for messages.
    Quiet,
    /// λ_P = 100/s, 20 ms mean per-hop delay: for byte streams (web, files).
    Fast,
}

impl RateProfile {
    /// λ_P of the profile, per second.
    pub fn lambda_p(self) -> f64 {
        match self {
            RateProfile::Quiet => 10.0,
            RateProfile::Fast => 100.0,
        }
    }

    /// Mean per-hop delay of the profile.
    pub fn mean_delay(self) -> Duration {
        match self {
            RateProfile::Quiet => Duration::from_millis(50),
            RateProfile::Fast => Duration::from_millis(20),
        }
    }

    /// Sets the profile's λ_P and mean delay in `params` (the gateways'
    /// per-client throttle follows λ_P); λ_L and the rest stay.
    pub fn apply(self, params: &mut NetworkParams) {
        params.lambda_p = self.lambda_p();
        params.mean_delay = self.mean_delay();
    }
}

impl NetworkParams {
    /// The clock that maps wall-clock time to this network's epochs.
    pub fn epoch_clock(&self) -> EpochClock {
        EpochClock {
            genesis_unix_secs: self.genesis_unix_secs,
            epoch_length: self.epoch_length,
        }
    }

    /// Refuses values no node can work with.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let bad = |m: String| Err(TopologyError::InvalidParams(m));
        if self.epoch_length < Duration::from_secs(1) {
            return bad("epoch_length_secs must be at least 1".into());
        }
        if self.mean_delay.is_zero() || self.mean_delay > self.max_delay {
            return bad("mean_delay_ms must be positive and at most max_delay_ms".into());
        }
        for (name, rate) in [
            ("lambda_p", self.lambda_p),
            ("lambda_l", self.lambda_l),
            ("lambda_d", self.lambda_d),
            ("lambda_m", self.lambda_m),
        ] {
            if !rate.is_finite() || !(0.0..=10_000.0).contains(&rate) {
                return bad(format!(
                    "{name} must be a rate between 0 and 10000 per second, not {rate}"
                ));
            }
        }
        if self.packet_size != protocol::packet::PACKET_SIZE {
            return bad(format!(
                "packet_size is {}, but this build handles only {}-byte packets",
                self.packet_size,
                protocol::packet::PACKET_SIZE
            ));
        }
        Ok(())
    }
}

/// Maps wall-clock time to epochs: epoch = floor((now − genesis) / length).
///
/// Every party uses the genesis time from the directory's config (unix
/// seconds, published in every topology's [`NetworkParams`]) so that all
/// agree on the epoch number without talking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochClock {
    /// Start of epoch 0, in seconds since the unix epoch.
    pub genesis_unix_secs: u64,
    /// Length of one epoch.
    pub epoch_length: Duration,
}

impl EpochClock {
    /// Time since genesis, as a protocol timestamp (zero before genesis).
    pub fn since_genesis(&self, now: SystemTime) -> Timestamp {
        let genesis = UNIX_EPOCH + Duration::from_secs(self.genesis_unix_secs);
        let since = now.duration_since(genesis).unwrap_or_default();
        Timestamp::from_nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The epoch that contains `now` (epoch 0 before genesis).
    pub fn epoch_at(&self, now: SystemTime) -> Epoch {
        Epoch::at(self.since_genesis(now), self.epoch_length)
    }

    /// Wall-clock instant at which `epoch` starts.
    pub fn epoch_start(&self, epoch: Epoch) -> SystemTime {
        let offset = epoch.start(self.epoch_length).since_origin();
        UNIX_EPOCH + Duration::from_secs(self.genesis_unix_secs) + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_json() {
        let p = NetworkParams::default();
        p.validate().unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"mean_delay_ms\":50"), "{json}");
        assert!(json.contains("\"epoch_length_secs\":3600"), "{json}");
        assert_eq!(serde_json::from_str::<NetworkParams>(&json).unwrap(), p);
        let partial: NetworkParams = serde_json::from_str("{\"mean_delay_ms\":20}").unwrap();
        assert_eq!(partial.mean_delay, Duration::from_millis(20));
        assert_eq!(partial.epoch_length, p.epoch_length);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let base = NetworkParams::default();
        let cases = [
            NetworkParams {
                epoch_length: Duration::ZERO,
                ..base.clone()
            },
            NetworkParams {
                mean_delay: Duration::from_secs(11),
                ..base.clone()
            },
            NetworkParams {
                lambda_p: f64::NAN,
                ..base.clone()
            },
            NetworkParams {
                lambda_m: -1.0,
                ..base.clone()
            },
            NetworkParams {
                packet_size: 1000,
                ..base.clone()
            },
        ];
        for p in cases {
            assert!(
                matches!(p.validate(), Err(TopologyError::InvalidParams(_))),
                "{p:?}"
            );
        }
    }

    #[test]
    fn epoch_clock_counts_from_genesis() {
        let clock = EpochClock {
            genesis_unix_secs: 1_000,
            epoch_length: Duration::from_secs(60),
        };
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(clock.epoch_at(at(500)), Epoch(0));
        assert_eq!(clock.epoch_at(at(1_059)), Epoch(0));
        assert_eq!(clock.epoch_at(at(1_060)), Epoch(1));
        assert_eq!(clock.epoch_at(at(1_000 + 60 * 7 + 5)), Epoch(7));
        assert_eq!(clock.epoch_start(Epoch(7)), at(1_420));
    }
}
