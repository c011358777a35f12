//! The scenario file: everything a run depends on, and nothing else.
//!
//! A run is a pure function of its [`Scenario`] (the seed included), so a
//! scenario file is the whole recipe for reproducing a figure. Every field has
//! a default; a file only names what it changes. Unknown keys are refused, so
//! a typo cannot silently fall back to a default.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use client_core::{ClientConfig, Envelope};
use protocol::frame::FRAGMENT_CAPACITY;

use crate::error::SimError;

/// Which packet format the clients, mixers and gateways make and read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodecKind {
    /// A cleartext packet carrying route, delays, destination and frame:
    /// fast, for large scenarios (see [`crate::trace_codec`]).
    Trace,
    /// Real Sphinx packets with real keys: slow (two X25519 per hop), exact.
    Sphinx,
}

/// One run of the simulator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Seed of every random choice in the run (default 1).
    pub seed: u64,
    /// Virtual seconds during which clients create real messages (default 60).
    pub duration_secs: f64,
    /// Virtual seconds at the start whose messages are not measured, so that
    /// pools fill up first (default 5).
    pub warmup_secs: f64,
    /// Virtual seconds the network keeps running after `duration_secs` so that
    /// messages in flight arrive (default 10).
    pub drain_secs: f64,
    /// Packet format: `trace` (default) or `sphinx`.
    pub codec: CodecKind,
    /// Mix layers and gateways.
    pub topology: TopologySpec,
    /// Clients, their rates and the mixes' own cover.
    pub traffic: TrafficSpec,
    /// Settings of the client core (acks and retransmission).
    pub client: ClientSpec,
    /// Latency of every link.
    pub link: LinkSpec,
    /// Who watches, and what is measured about anonymity.
    pub adversary: AdversarySpec,
    /// Active and long-term attacks (none by default).
    pub attack: AttackSpec,
    /// Data residency: nodes' region labels and clients constrained to some
    /// regions (none by default; left out of the report when unset).
    #[serde(skip_serializing_if = "RegionSpec::is_unset")]
    pub regions: RegionSpec,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            seed: 1,
            duration_secs: 60.0,
            warmup_secs: 5.0,
            drain_secs: 10.0,
            codec: CodecKind::Trace,
            topology: TopologySpec::default(),
            traffic: TrafficSpec::default(),
            client: ClientSpec::default(),
            link: LinkSpec::default(),
            adversary: AdversarySpec::default(),
            attack: AttackSpec::default(),
            regions: RegionSpec::default(),
        }
    }
}

/// Shape of the network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopologySpec {
    /// Mix layers a packet crosses (1 to 4; Sphinx allows 5 hops with the exit gateway; default 3).
    pub layers: usize,
    /// Mix nodes in each layer (default 3).
    pub nodes_per_layer: usize,
    /// Gateways; each client uses one, chosen round-robin, as entry and as mailbox (default 2).
    pub gateways: usize,
    /// Target false-positive rate of each node's replay filter (default 1e-6, as in a real node).
    pub replay_false_positive_rate: f64,
}

impl Default for TopologySpec {
    fn default() -> Self {
        TopologySpec {
            layers: 3,
            nodes_per_layer: 3,
            gateways: 2,
            replay_false_positive_rate: 1e-6,
        }
    }
}

/// Traffic: clients and cover (Loopix rates are per second).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrafficSpec {
    /// Number of clients (default 20).
    pub clients: usize,
    /// Real messages each client creates per second, Poisson (default 0.5).
    pub message_rate: f64,
    /// Bytes of each real message; the client core puts it in an envelope
    /// and cuts it into fragments, one packet each (default 1000: one fragment).
    pub message_size: usize,
    /// λ_P: each client's sending rate; a tick sends a queued real packet or else drop cover (default 2).
    pub lambda_p: f64,
    /// λ_L: each client's loop-cover rate (default 1).
    pub lambda_l: f64,
    /// λ_D: a separate drop-cover rate; must be 0, as in the network's
    /// topology document: the client core sends drop cover only on λ_P
    /// ticks with nothing queued (default 0).
    pub lambda_d: f64,
    /// λ_M: each mix node's (and, with `gateway_cover`, each gateway's) own
    /// loop-cover rate (default 1).
    pub lambda_m: f64,
    /// Whether gateways also send their own loop cover at λ_M over
    /// [L1, …, Ln, the gateway], as real gateways do (default true).
    pub gateway_cover: bool,
    /// Mean of the exponential per-hop delay at each mix, in milliseconds (default 50).
    pub mean_delay_ms: f64,
    /// Fragments a client may hold queued or waiting for their ack before
    /// it refuses new messages (default 10 000).
    pub client_queue: usize,
    /// Reply SURBs each message carries, so that its recipient can answer
    /// without learning the sender's address (default 0).
    pub reply_surbs: usize,
    /// Share of received messages the recipient answers through their SURBs
    /// (default 0; needs `reply_surbs` ≥ the reply's fragments).
    pub reply_probability: f64,
    /// Bytes of each reply (default 200: one fragment, one SURB).
    pub reply_size: usize,
}

impl Default for TrafficSpec {
    fn default() -> Self {
        TrafficSpec {
            clients: 20,
            message_rate: 0.5,
            message_size: 1000,
            lambda_p: 2.0,
            lambda_l: 1.0,
            lambda_d: 0.0,
            lambda_m: 1.0,
            gateway_cover: true,
            mean_delay_ms: 50.0,
            client_queue: 10_000,
            reply_surbs: 0,
            reply_probability: 0.0,
            reply_size: 200,
        }
    }
}

/// Settings of every client's core; the defaults are the client library's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSpec {
    /// Times a fragment is sent again before its message fails (default 5).
    pub max_retransmissions: u32,
    /// Added to a copy's sampled round trip (both routes' delays) before it
    /// counts as lost and is sent again, milliseconds (default 2000).
    pub ack_margin_ms: f64,
}

impl Default for ClientSpec {
    fn default() -> Self {
        let core = ClientConfig::default();
        ClientSpec {
            max_retransmissions: core.max_retransmissions,
            ack_margin_ms: core.ack_margin.as_secs_f64() * 1000.0,
        }
    }
}

/// Distribution of the one-way latency of a link.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LatencySpec {
    /// Always `ms`.
    Constant {
        /// Milliseconds.
        ms: f64,
    },
    /// Uniform between `min_ms` and `max_ms`.
    Uniform {
        /// Lower bound, milliseconds.
        min_ms: f64,
        /// Upper bound, milliseconds.
        max_ms: f64,
    },
    /// Exponential with mean `mean_ms`.
    Exponential {
        /// Mean, milliseconds.
        mean_ms: f64,
    },
}

impl LatencySpec {
    /// The mean latency in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        match *self {
            LatencySpec::Constant { ms } => ms,
            LatencySpec::Uniform { min_ms, max_ms } => (min_ms + max_ms) / 2.0,
            LatencySpec::Exponential { mean_ms } => mean_ms,
        }
    }
}

/// Links between every pair of parties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkSpec {
    /// One-way latency (default constant 10 ms).
    pub latency: LatencySpec,
    /// Probability that a packet is lost on one hop: client → gateway,
    /// gateway → layer 1, every mix hop, the last layer → gateway, SURB-acks
    /// and cover alike (default 0). The client's session with its gateway
    /// (mailbox pushes and their acknowledgements) is a reliable stream and
    /// loses nothing.
    pub loss: f64,
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            latency: LatencySpec::Constant { ms: 10.0 },
            loss: 0.0,
        }
    }
}

/// The adversary and the target messages whose sender anonymity is measured.
///
/// The adversary always sees every link (a global passive observer); the
/// corrupt nodes additionally tell it which input became which output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdversarySpec {
    /// Mix nodes that collude with the observer, chosen from the seed (default 0).
    pub corrupt_mixes: usize,
    /// Gateways that collude (default 0). Under a global observer an honest
    /// gateway hides nothing the observer cannot see, so this only shows up
    /// in the report.
    pub corrupt_gateways: usize,
    /// Further corrupt nodes named explicitly: `"L2.0"` (layer 2, first
    /// node) or `"G1"` (default none); added to the random ones.
    pub corrupt_nodes: Vec<String>,
    /// Real packets, the first sent after the warm-up, whose sender entropy is
    /// measured (default 200; 0 turns anonymity tracking off and runs faster).
    pub target_messages: usize,
}

impl Default for AdversarySpec {
    fn default() -> Self {
        AdversarySpec {
            corrupt_mixes: 0,
            corrupt_gateways: 0,
            corrupt_nodes: Vec::new(),
            target_messages: 200,
        }
    }
}

/// Attacks beyond the passive observers: each runs only when its table is present.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttackSpec {
    /// The (n−1) attack on one layer-1 mix.
    pub n_minus_one: Option<NMinusOneSpec>,
    /// The long-term intersection (statistical disclosure) attack on client 0.
    pub intersection: Option<IntersectionSpec>,
}

/// The (n−1) attack: the adversary, on every link into one mix, repeatedly
/// blocks all its inputs to flush it, lets one client packet in (the
/// target), keeps blocking while it watches the mix's outputs, and names the
/// output it believes is the target. Blocked packets are dropped (reason
/// `adversary_blocked`); their senders retransmit as usual.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NMinusOneSpec {
    /// The attacked mix, `L1.<n>` (default `L1.0`).
    pub node: String,
    /// One attack starts every `period_secs`, from the warm-up on (default 5).
    pub period_secs: f64,
    /// Milliseconds of blocking before the target is let in (default 10 mean delays).
    pub flush_ms: Option<f64>,
    /// Milliseconds after the target entered during which inputs stay
    /// blocked and outputs are candidates (default 10 mean delays).
    pub watch_ms: Option<f64>,
    /// A mix raises its alarm when none of its own loops returned for this
    /// long, seconds (default ln(10⁶)/λ_M: honest operation exceeds it with
    /// probability 10⁻⁶ per gap).
    pub alarm_secs: Option<f64>,
}

impl Default for NMinusOneSpec {
    fn default() -> Self {
        NMinusOneSpec {
            node: "L1.0".to_string(),
            period_secs: 5.0,
            flush_ms: None,
            watch_ms: None,
            alarm_secs: None,
        }
    }
}

/// The long-term intersection attack: client 0 ("Alice") writes only to a
/// few fixed correspondents, and only in rounds when she is online; the
/// adversary knows which rounds those are (it sees her link come and go) and
/// counts what every client's gateway pushes to it in each round. Every other
/// client stays online and writes to uniformly random clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntersectionSpec {
    /// Alice's correspondents, drawn from the seed among the other clients (default 3).
    pub correspondents: usize,
    /// Length of a round, seconds (default 10).
    pub round_secs: f64,
    /// Probability that Alice is online in a round, drawn per round (default 0.5).
    pub online_probability: f64,
    /// Alice's real messages per second while online (default: `traffic.message_rate`).
    pub message_rate: Option<f64>,
}

impl Default for IntersectionSpec {
    fn default() -> Self {
        IntersectionSpec {
            correspondents: 3,
            round_secs: 10.0,
            online_probability: 0.5,
            message_rate: None,
        }
    }
}

/// Data residency: region labels on the nodes, and which clients may route
/// only through some regions (docs/simulations.md, "Data residency").
///
/// Labels repeat by position: in every layer, mix j is labelled
/// `mixes[j % mixes.len()]`, and gateway g `gateways[g % gateways.len()]`,
/// so each layer holds its share of every region, as the directory spreads
/// them. Clients 0 to k − 1, k = round(`constrained_fraction` × clients)
/// (at least one when the fraction is above 0), are constrained: each is
/// placed on an allowed gateway (the i-th on the (i mod a)-th of the a
/// allowed ones), writes only to clients on allowed gateways, and draws
/// every mix, and every drop-cover gateway, among the allowed nodes. The
/// other clients keep gateway (i mod gateways) and route as without regions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionSpec {
    /// Region labels of the mix nodes, by position in a layer (default none).
    pub mixes: Vec<String>,
    /// Region labels of the gateways, by gateway number (default none).
    pub gateways: Vec<String>,
    /// Share of clients constrained to `allowed`, in [0, 1] (default 0).
    pub constrained_fraction: f64,
    /// Regions a constrained client's packets may cross (default none).
    pub allowed: Vec<String>,
}

impl RegionSpec {
    /// Whether the scenario says nothing about regions (the default).
    pub fn is_unset(&self) -> bool {
        *self == RegionSpec::default()
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn from_file(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path, e))?;
        Scenario::from_toml(&text, &path.display().to_string())
    }

    /// Parses and checks scenario TOML; `file` names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Scenario, SimError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| SimError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Refuses values the simulator cannot run.
    pub fn validate(&self) -> Result<(), SimError> {
        let t = &self.traffic;
        let finite_nonneg = |field: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(SimError::invalid(field, format!("must be ≥ 0, got {v}")))
            }
        };
        finite_nonneg("duration_secs", self.duration_secs)?;
        finite_nonneg("warmup_secs", self.warmup_secs)?;
        finite_nonneg("drain_secs", self.drain_secs)?;
        finite_nonneg("traffic.message_rate", t.message_rate)?;
        finite_nonneg("traffic.lambda_p", t.lambda_p)?;
        finite_nonneg("traffic.lambda_l", t.lambda_l)?;
        if t.lambda_d != 0.0 {
            return Err(SimError::invalid(
                "traffic.lambda_d",
                "must be 0: the client core sends drop cover only on λ_P ticks with nothing queued",
            ));
        }
        if !(0.0..=1.0).contains(&t.reply_probability) {
            return Err(SimError::invalid(
                "traffic.reply_probability",
                "must be in [0, 1]",
            ));
        }
        if t.reply_probability > 0.0 && t.reply_surbs == 0 {
            return Err(SimError::invalid(
                "traffic.reply_surbs",
                "must be ≥ 1 when reply_probability > 0",
            ));
        }
        if t.reply_surbs > ClientConfig::default().max_reply_surbs_per_message {
            return Err(SimError::invalid(
                "traffic.reply_surbs",
                "more than a client accepts on one message",
            ));
        }
        finite_nonneg("client.ack_margin_ms", self.client.ack_margin_ms)?;
        finite_nonneg("traffic.lambda_m", t.lambda_m)?;
        finite_nonneg("traffic.mean_delay_ms", t.mean_delay_ms)?;
        if self.warmup_secs > self.duration_secs {
            return Err(SimError::invalid(
                "warmup_secs",
                "must not exceed duration_secs",
            ));
        }
        let topo = &self.topology;
        if !(1..=4).contains(&topo.layers) {
            return Err(SimError::invalid("topology.layers", "must be 1 to 4"));
        }
        if topo.nodes_per_layer == 0 || topo.gateways == 0 {
            return Err(SimError::invalid(
                "topology",
                "needs at least one node per layer and one gateway",
            ));
        }
        if !(topo.replay_false_positive_rate > 0.0 && topo.replay_false_positive_rate < 0.5) {
            return Err(SimError::invalid(
                "topology.replay_false_positive_rate",
                "must be in (0, 0.5)",
            ));
        }
        if t.clients == 0 || t.clients > u32::MAX as usize / 2 {
            return Err(SimError::invalid("traffic.clients", "must be at least 1"));
        }
        if t.message_size == 0 {
            return Err(SimError::invalid("traffic.message_size", "must be ≥ 1"));
        }
        let core = self.client_config();
        let envelope = Envelope::message_len(t.reply_surbs, t.message_size);
        if envelope.div_ceil(FRAGMENT_CAPACITY) > core.max_message_fragments {
            return Err(SimError::invalid(
                "traffic.message_size",
                format!(
                    "more than a client sends in one message ({} fragments of {FRAGMENT_CAPACITY} bytes)",
                    core.max_message_fragments
                ),
            ));
        }
        if t.mean_delay_ms > 10_000.0 {
            return Err(SimError::invalid(
                "traffic.mean_delay_ms",
                "above the nodes' 10 s delay cap",
            ));
        }
        match self.link.latency {
            LatencySpec::Constant { ms } => finite_nonneg("link.latency.ms", ms)?,
            LatencySpec::Exponential { mean_ms } => finite_nonneg("link.latency.mean_ms", mean_ms)?,
            LatencySpec::Uniform { min_ms, max_ms } => {
                finite_nonneg("link.latency.min_ms", min_ms)?;
                finite_nonneg("link.latency.max_ms", max_ms)?;
                if max_ms < min_ms {
                    return Err(SimError::invalid("link.latency", "max_ms < min_ms"));
                }
            }
        }
        if !(0.0..1.0).contains(&self.link.loss) {
            return Err(SimError::invalid("link.loss", "must be in [0, 1)"));
        }
        if self.adversary.corrupt_mixes > topo.layers * topo.nodes_per_layer {
            return Err(SimError::invalid(
                "adversary.corrupt_mixes",
                "more than there are mix nodes",
            ));
        }
        for name in &self.adversary.corrupt_nodes {
            if parse_node_name(name, topo).is_none() {
                return Err(SimError::invalid(
                    "adversary.corrupt_nodes",
                    format!("`{name}` names no node (L<layer>.<n> or G<n>)"),
                ));
            }
        }
        if let Some(a) = &self.attack.n_minus_one {
            match parse_node_name(&a.node, topo) {
                Some(n) if n < topo.nodes_per_layer => {}
                _ => {
                    return Err(SimError::invalid(
                        "attack.n_minus_one.node",
                        format!("`{}` is not a layer-1 mix (L1.<n>)", a.node),
                    ));
                }
            }
            if !(a.period_secs.is_finite() && a.period_secs > 0.0) {
                return Err(SimError::invalid(
                    "attack.n_minus_one.period_secs",
                    "must be > 0",
                ));
            }
            for (field, v) in [
                ("attack.n_minus_one.flush_ms", a.flush_ms),
                ("attack.n_minus_one.watch_ms", a.watch_ms),
                ("attack.n_minus_one.alarm_secs", a.alarm_secs),
            ] {
                if let Some(v) = v {
                    finite_nonneg(field, v)?;
                }
            }
        }
        if let Some(i) = &self.attack.intersection {
            if i.correspondents == 0 || i.correspondents >= t.clients {
                return Err(SimError::invalid(
                    "attack.intersection.correspondents",
                    "must be ≥ 1 and fewer than the other clients",
                ));
            }
            if !(i.round_secs.is_finite() && i.round_secs > 0.0) {
                return Err(SimError::invalid(
                    "attack.intersection.round_secs",
                    "must be > 0",
                ));
            }
            if !(0.0..=1.0).contains(&i.online_probability) {
                return Err(SimError::invalid(
                    "attack.intersection.online_probability",
                    "must be in [0, 1]",
                ));
            }
            if let Some(r) = i.message_rate {
                finite_nonneg("attack.intersection.message_rate", r)?;
            }
        }
        if self.adversary.corrupt_gateways > topo.gateways {
            return Err(SimError::invalid(
                "adversary.corrupt_gateways",
                "more than there are gateways",
            ));
        }
        crate::residency::Residency::new(self)?;
        Ok(())
    }

    /// The (n−1) attack's flush, watch and alarm durations, defaults applied.
    pub fn n_minus_one_windows(&self) -> Option<(Duration, Duration, Duration)> {
        let a = self.attack.n_minus_one.as_ref()?;
        let d_ms = self.traffic.mean_delay_ms;
        let ms = |v: f64| Duration::try_from_secs_f64(v / 1000.0).unwrap_or(Duration::MAX);
        let alarm = a
            .alarm_secs
            .unwrap_or_else(|| crate::closed_form::loop_alarm_secs(self.traffic.lambda_m));
        Some((
            ms(a.flush_ms.unwrap_or(10.0 * d_ms)),
            ms(a.watch_ms.unwrap_or(10.0 * d_ms)),
            Duration::try_from_secs_f64(alarm).unwrap_or(Duration::MAX),
        ))
    }

    /// When the observers start following beliefs: early enough before the
    /// warm-up ends that every packet in a pool when the first target is
    /// sent entered after it ([`TRACKING_LEAD_PATHS`] mean path times: a
    /// packet's mean time from its client to its gateway, each mix delay and
    /// each link), at time zero if the warm-up is shorter. Beliefs draw no
    /// randomness, so the start changes no packet, only what tracking costs.
    pub fn tracking_from(&self) -> Duration {
        let layers = self.topology.layers as f64;
        let path_ms =
            layers * self.traffic.mean_delay_ms + (layers + 2.0) * self.link.latency.mean_ms();
        let lead_secs = TRACKING_LEAD_PATHS * path_ms / 1000.0;
        Duration::try_from_secs_f64((self.warmup_secs - lead_secs).max(0.0))
            .unwrap_or(Duration::ZERO)
    }

    /// Mean per-hop mix delay.
    pub fn mean_delay(&self) -> Duration {
        Duration::from_secs_f64(self.traffic.mean_delay_ms / 1000.0)
    }

    /// The settings of every client's core: the client library's defaults,
    /// with the scenario's rates, delay, queue bound and retransmission.
    pub fn client_config(&self) -> ClientConfig {
        let t = &self.traffic;
        ClientConfig {
            send_rate: t.lambda_p,
            loop_cover_rate: t.lambda_l,
            mean_hop_delay: self.mean_delay(),
            max_unacked_fragments: t.client_queue,
            max_retransmissions: self.client.max_retransmissions,
            ack_margin: Duration::try_from_secs_f64(self.client.ack_margin_ms / 1000.0)
                .unwrap_or(Duration::ZERO),
            ..ClientConfig::default()
        }
    }
}

/// How many mean path times before the warm-up ends the observers start
/// following beliefs (see [`Scenario::tracking_from`]): a packet still in the
/// network that long after it was sent is one in e^(−20) or rarer.
pub const TRACKING_LEAD_PATHS: f64 = 20.0;

/// The node number of `L<layer>.<n>` (layer from 1) or `G<n>`, if it exists.
pub fn parse_node_name(name: &str, topo: &TopologySpec) -> Option<usize> {
    let mixes = topo.layers * topo.nodes_per_layer;
    if let Some(g) = name.strip_prefix('G') {
        let g: usize = g.parse().ok()?;
        return (g < topo.gateways).then_some(mixes + g);
    }
    let (layer, n) = name.strip_prefix('L')?.split_once('.')?;
    let (layer, n): (usize, usize) = (layer.parse().ok()?, n.parse().ok()?);
    (layer >= 1 && layer <= topo.layers && n < topo.nodes_per_layer)
        .then(|| (layer - 1) * topo.nodes_per_layer + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_and_typos_are_refused() {
        assert_eq!(Scenario::from_toml("", "t").unwrap(), Scenario::default());
        assert!(Scenario::from_toml("sede = 3", "t").is_err());
        assert!(Scenario::from_toml("[traffic]\nlambda_q = 3.0", "t").is_err());
        assert!(Scenario::default().traffic.gateway_cover);
        let off = Scenario::from_toml("[traffic]\ngateway_cover = false", "t").unwrap();
        assert!(!off.traffic.gateway_cover);
    }

    #[test]
    fn latency_kinds_parse() {
        let s = Scenario::from_toml(
            "[link.latency]\nkind = \"uniform\"\nmin_ms = 5.0\nmax_ms = 15.0",
            "t",
        )
        .unwrap();
        assert_eq!(s.link.latency.mean_ms(), 10.0);
        let bad = "[link.latency]\nkind = \"uniform\"\nmin_ms = 15.0\nmax_ms = 5.0";
        assert!(Scenario::from_toml(bad, "t").is_err());
        assert!(Scenario::from_toml("[topology]\nlayers = 5", "t").is_err());
        let named = "[adversary]\ncorrupt_nodes = [\"L3.2\", \"G1\"]";
        assert!(Scenario::from_toml(named, "t").is_ok());
        assert!(Scenario::from_toml("[adversary]\ncorrupt_nodes = [\"L4.0\"]", "t").is_err());
        let topo = TopologySpec::default();
        assert_eq!(parse_node_name("L1.0", &topo), Some(0));
        assert_eq!(parse_node_name("L3.2", &topo), Some(8));
        assert_eq!(parse_node_name("G1", &topo), Some(10));
        assert_eq!(parse_node_name("G2", &topo), None);
        assert_eq!(parse_node_name("L0.0", &topo), None);
    }
}
