//! Counters the engine updates while it runs, turned into a [`Report`](crate::report::Report) at the end.
//!
//! Kept apart from the engine so that the event loop reads as the protocol
//! (who sends what where) and this file as the bookkeeping.

use std::collections::BTreeMap;

use gateway_core::{GatewayDropReason, GatewayStatsSnapshot};
use mixnode_core::DropReason;
use protocol::packet::PACKET_SIZE;
use protocol::time::Timestamp;

use crate::anonymity::Posterior;
use crate::report::{
    Anonymity, Bandwidth, Delivery, Distribution, NodeReport, ObserverFigures, Traffic,
};

/// The kind of a packet, as the simulator (not the observer) knows it:
/// what the client core said it sent
/// ([`TransmissionKind`](client_core::TransmissionKind)), or who else made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A copy of a fragment of real message `msg`.
    Fragment {
        /// Index into the engine's message table.
        msg: u32,
        /// Whether it is the fragment's first copy (else a retransmission).
        first: bool,
    },
    /// A copy of a fragment of reply `msg`, through a SURB.
    Reply {
        /// Index into the engine's message table.
        msg: u32,
        /// Whether it is the fragment's first copy (else a retransmission).
        first: bool,
    },
    /// A SURB-ack: a gateway's for a stored fragment, or a client's for a
    /// reply fragment.
    Ack,
    /// A client's loop cover.
    Loop,
    /// A client's drop cover.
    Drop,
    /// A mix node's own loop cover.
    MixLoop,
    /// A gateway's own loop cover.
    GatewayLoop,
}

/// Where a kind's link crossings are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Real,
    Retransmission,
    Reply,
    Ack,
    Loop,
    Drop,
    MixLoop,
    GatewayLoop,
}

impl Kind {
    fn column(self) -> Column {
        match self {
            Kind::Fragment { first: true, .. } => Column::Real,
            Kind::Fragment { first: false, .. } | Kind::Reply { first: false, .. } => {
                Column::Retransmission
            }
            Kind::Reply { first: true, .. } => Column::Reply,
            Kind::Ack => Column::Ack,
            Kind::Loop => Column::Loop,
            Kind::Drop => Column::Drop,
            Kind::MixLoop => Column::MixLoop,
            Kind::GatewayLoop => Column::GatewayLoop,
        }
    }
}

/// Packets held by one node over time.
#[derive(Clone, Debug, Default)]
pub struct QueueGauge {
    held: u64,
    max: u64,
    area_ns: f64,
    last: Timestamp,
    sojourn_ns: f64,
    departures: u64,
}

impl QueueGauge {
    fn advance(&mut self, now: Timestamp) {
        let dt = now.saturating_duration_since(self.last).as_nanos() as f64;
        self.area_ns += self.held as f64 * dt;
        self.last = self.last.max(now);
    }

    /// A packet entered the node.
    pub fn enter(&mut self, now: Timestamp) {
        self.advance(now);
        self.held += 1;
        self.max = self.max.max(self.held);
    }

    /// A packet that entered at `arrived` left.
    pub fn leave(&mut self, now: Timestamp, arrived: Timestamp) {
        self.advance(now);
        self.held = self.held.saturating_sub(1);
        self.sojourn_ns += now.saturating_duration_since(arrived).as_nanos() as f64;
        self.departures += 1;
    }
}

/// Everything counted during a run.
#[derive(Debug, Default)]
pub struct Tally {
    /// Per node.
    pub queues: Vec<QueueGauge>,
    /// Link crossings by [`Column`].
    crossings: [u64; 8],
    /// Mailbox messages pushed to clients, and the bytes of their link messages.
    pub mailbox: Traffic,
    /// Per node: its own loop-cover packets sent.
    pub cover_sent: Vec<u64>,
    /// Packet network latencies of measured real packets, ms.
    pub packet_latencies_ms: Vec<f64>,
    /// Message latencies of measured messages, ms.
    pub message_latencies_ms: Vec<f64>,
    /// Latencies of measured replies, ms.
    pub reply_latencies_ms: Vec<f64>,
    /// Measured messages and real packets.
    pub delivery: Delivery,
    /// Per target ordinal, the pool and the timing observer's figures (None: not delivered).
    pub target_posteriors: Vec<Option<[Posterior; 2]>>,
    /// Per target ordinal, its true sender.
    pub target_senders: Vec<u32>,
    /// Drops by reason label.
    pub drops: BTreeMap<String, u64>,
    /// Events processed.
    pub events: u64,
    /// Packets handed to a mixer.
    pub packet_hops: u64,
    /// Per node, packets of constrained clients that reached it (empty
    /// without a region constraint).
    pub constrained_visits: Vec<u64>,
}

impl Tally {
    /// Counters for `nodes` nodes, `targets` target packets and
    /// `visited` nodes whose constrained clients' packets are counted.
    pub fn new(nodes: usize, targets: usize, visited: usize) -> Self {
        Tally {
            queues: vec![QueueGauge::default(); nodes],
            cover_sent: vec![0; nodes],
            target_posteriors: vec![None; targets],
            target_senders: vec![0; targets],
            constrained_visits: vec![0; visited],
            ..Tally::default()
        }
    }

    /// A packet of `kind` crosses `links` links.
    pub fn cross(&mut self, kind: Kind, links: u64) {
        if let Some(c) = self.crossings.get_mut(kind.column() as usize) {
            *c += links;
        }
    }

    /// A packet was dropped for `reason` (a mixer's, or `link_loss`).
    pub fn drop(&mut self, reason: &str) {
        *self.drops.entry(reason.to_string()).or_default() += 1;
    }

    /// A mixer refused a packet.
    pub fn mixer_drop(&mut self, reason: DropReason) {
        self.drop(reason.as_str());
    }

    /// Bandwidth figures from the crossings.
    pub fn bandwidth(&self) -> Bandwidth {
        let t = |c: Column| {
            let packets = self.crossings.get(c as usize).copied().unwrap_or(0);
            Traffic {
                packets,
                bytes: packets * PACKET_SIZE as u64,
            }
        };
        let real = t(Column::Real);
        let retransmission = t(Column::Retransmission);
        let reply = t(Column::Reply);
        let ack = t(Column::Ack);
        let loop_cover = t(Column::Loop);
        let drop_cover = t(Column::Drop);
        let mix_cover = t(Column::MixLoop);
        let gateway_cover = t(Column::GatewayLoop);
        let cover = loop_cover.bytes + drop_cover.bytes + mix_cover.bytes + gateway_cover.bytes;
        let overhead = ack.bytes + retransmission.bytes;
        let all = cover + overhead + real.bytes + reply.bytes;
        Bandwidth {
            cover_per_real: ratio(cover, real.bytes),
            overhead_per_real: ratio(overhead, real.bytes),
            cover_fraction: ratio(cover, all),
            real,
            retransmission,
            reply,
            ack,
            loop_cover,
            drop_cover,
            mix_cover,
            gateway_cover,
            mailbox: self.mailbox.clone(),
        }
    }

    /// Per-node figures at `end`; `describe` gives name, layer and
    /// corruption, `stats` the mixer's counters and `gateway` the gateway
    /// core's (for gateways).
    pub fn node_reports(
        &mut self,
        end: Timestamp,
        describe: impl Fn(usize) -> (String, usize, bool),
        stats: impl Fn(usize) -> mixnode_core::stats::MixerStatsSnapshot,
        gateway: impl Fn(usize) -> Option<GatewayStatsSnapshot>,
    ) -> Vec<NodeReport> {
        let span = end.as_nanos().max(1) as f64;
        self.queues
            .iter_mut()
            .enumerate()
            .map(|(n, q)| {
                q.advance(end);
                let (name, layer, corrupt) = describe(n);
                let s = stats(n);
                let mut dropped: BTreeMap<String, u64> = DropReason::ALL
                    .iter()
                    .filter(|r| s.dropped(**r) > 0)
                    .map(|r| (r.as_str().to_string(), s.dropped(*r)))
                    .collect();
                let g = gateway(n).unwrap_or_default();
                for r in GatewayDropReason::ALL {
                    if g.dropped(r) > 0 {
                        *dropped.entry(r.as_str().to_string()).or_default() += g.dropped(r);
                    }
                }
                NodeReport {
                    name,
                    layer,
                    corrupt,
                    queue_mean: q.area_ns / span,
                    queue_max: q.max,
                    sojourn_mean_ms: if q.departures > 0 {
                        q.sojourn_ns / q.departures as f64 / 1e6
                    } else {
                        0.0
                    },
                    received: s.received,
                    forwarded: s.forwarded,
                    delivered: s.delivered,
                    cover_sent: self.cover_sent.get(n).copied().unwrap_or(0),
                    loops_returned: s.loops_returned,
                    client_packets: g.forwarded,
                    stored: g.stored,
                    pushed: g.delivered,
                    acks_sent: g.acks_sent,
                    dropped,
                }
            })
            .collect()
    }

    /// Anonymity figures of the targets with ordinals in `targets`, and
    /// every measured one's figures.
    pub fn anonymity(
        &self,
        targets: std::ops::Range<usize>,
        clients: usize,
    ) -> (Anonymity, Vec<[Posterior; 2]>) {
        let group = self.target_posteriors.get(targets).unwrap_or(&[]);
        let measured: Vec<[Posterior; 2]> = group.iter().flatten().copied().collect();
        let figures = |i: usize| {
            let pick = |f: fn(&Posterior) -> f64| -> Vec<f64> {
                measured.iter().filter_map(|p| p.get(i)).map(f).collect()
            };
            let mean = |v: Vec<f64>| {
                if v.is_empty() {
                    0.0
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            };
            ObserverFigures {
                entropy_bits: Distribution::of(&mut pick(|p| p.entropy_bits)),
                min_entropy_bits: Distribution::of(&mut pick(|p| p.min_entropy_bits)),
                true_sender_probability: mean(pick(|p| p.true_sender)),
                guess_success: mean(pick(|p| p.guessed)),
            }
        };
        let pool = figures(0);
        let anonymity = Anonymity {
            targets_requested: group.len(),
            targets_measured: pool.entropy_bits.count,
            effective_anonymity_set: if pool.entropy_bits.count > 0 {
                pool.entropy_bits.mean.exp2()
            } else {
                0.0
            },
            entropy_bits: pool.entropy_bits,
            clients,
            min_entropy_bits: pool.min_entropy_bits,
            true_sender_probability: pool.true_sender_probability,
            guess_success: pool.guess_success,
            timing: figures(1),
        };
        (anonymity, measured)
    }
}

/// `a / b`, zero when `b` is zero.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}
