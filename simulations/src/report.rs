//! What a run measured, in the form written to disk.
//!
//! The [`Report`] is plain data with a fixed field order (vectors sorted by
//! node number, maps as `BTreeMap`), so the same scenario and seed always
//! serialise to the same bytes. Raw samples (latencies, entropies) live beside
//! it in [`RunOutput`] for the CSV files and plots.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::scenario::{CodecKind, Scenario};

/// Summary statistics of a sample, in milliseconds (or bits).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Distribution {
    /// Number of samples.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Distribution {
    /// Statistics of `samples` (sorted in place).
    pub fn of(samples: &mut [f64]) -> Distribution {
        samples.sort_by(f64::total_cmp);
        let count = samples.len();
        if count == 0 {
            return Distribution::default();
        }
        let q = |p: f64| {
            let rank = ((p * count as f64).ceil() as usize).clamp(1, count);
            samples.get(rank - 1).copied().unwrap_or(0.0)
        };
        Distribution {
            count,
            mean: samples.iter().sum::<f64>() / count as f64,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            min: samples.first().copied().unwrap_or(0.0),
            max: samples.last().copied().unwrap_or(0.0),
        }
    }
}

/// Real traffic that arrived, out of what was measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Delivery {
    /// Real messages created after the warm-up and before the end of traffic.
    pub messages_measured: u64,
    /// Of those, messages their recipient's client core reassembled and
    /// handed out (`ClientEvent::Received`) before the run ended.
    pub messages_delivered: u64,
    /// `messages_delivered / messages_measured`.
    pub message_ratio: f64,
    /// Measured messages whose sender saw every fragment acknowledged
    /// (`ClientEvent::Delivered`).
    pub messages_acknowledged: u64,
    /// Measured messages their sender gave up on (`ClientEvent::SendFailed`:
    /// a fragment unacknowledged after its last retransmission). Such a
    /// message may still have been delivered, if only its acks were lost.
    pub messages_failed: u64,
    /// Fragment copies of measured messages that a client sent (first copies
    /// and retransmissions).
    pub packets_sent: u64,
    /// Of those, copies that reached the recipient's gateway.
    pub packets_delivered: u64,
    /// `packets_delivered / packets_sent`.
    pub packet_ratio: f64,
    /// Fragment copies sent again after their ack deadline (all messages and
    /// replies, measured or not).
    pub retransmissions: u64,
    /// Fragments that reached a recipient again after it held them (a lost
    /// ack, or a retransmission that crossed its ack), removed by its core.
    pub duplicates_removed: u64,
    /// Messages refused by a full client queue (`client_queue` fragments
    /// queued or waiting for acks).
    pub client_queue_full: u64,
    /// Replies sent to measured messages, through their SURBs.
    pub replies_measured: u64,
    /// Of those, replies the original sender received.
    pub replies_delivered: u64,
    /// Replies a recipient wanted to send but could not (too few SURBs, a
    /// full queue).
    pub replies_refused: u64,
}

/// Packets and bytes of one kind of traffic, counted on every link crossing.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Traffic {
    /// Link crossings.
    pub packets: u64,
    /// Bytes on the wire (packets × the real 2413-byte packet size).
    pub bytes: u64,
}

/// Bandwidth split by kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Bandwidth {
    /// First copies of real message fragments.
    pub real: Traffic,
    /// Later copies of message and reply fragments (their ack deadline passed).
    pub retransmission: Traffic,
    /// First copies of reply fragments, through SURBs.
    pub reply: Traffic,
    /// SURB-acks: gateways' for stored fragments, clients' for replies.
    pub ack: Traffic,
    /// Clients' loop cover.
    pub loop_cover: Traffic,
    /// Clients' drop cover (λ_P ticks with nothing queued).
    pub drop_cover: Traffic,
    /// Mix nodes' own loop cover (λ_M).
    pub mix_cover: Traffic,
    /// Gateways' own loop cover (λ_M).
    pub gateway_cover: Traffic,
    /// Mailbox messages a gateway pushed to its clients over their sessions
    /// (`packets`: messages; `bytes`: link bytes), not counted below.
    pub mailbox: Traffic,
    /// Cover bytes (client loop and drop, mix and gateway loop) per real byte.
    pub cover_per_real: f64,
    /// Ack and retransmission bytes per real byte.
    pub overhead_per_real: f64,
    /// Share of all packet bytes that is cover.
    pub cover_fraction: f64,
}

/// One node's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeReport {
    /// `L<layer>.<n>` or `G<n>`.
    pub name: String,
    /// Mix layer (1-based); 0 for gateways.
    pub layer: usize,
    /// Whether the node colludes with the observer.
    pub corrupt: bool,
    /// Packets held at once, time-averaged over the run.
    pub queue_mean: f64,
    /// Most packets held at once.
    pub queue_max: u64,
    /// Mean time a packet spent in the node, ms.
    pub sojourn_mean_ms: f64,
    /// Packets handed to the node's mixer.
    pub received: u64,
    /// Packets it forwarded.
    pub forwarded: u64,
    /// Packets it delivered (gateways: final hops handed to the gateway core).
    pub delivered: u64,
    /// Its own loop-cover packets sent (λ_M).
    pub cover_sent: u64,
    /// Its own loop cover that came back.
    pub loops_returned: u64,
    /// Gateways: client packets forwarded into layer 1.
    pub client_packets: u64,
    /// Gateways: messages committed to a mailbox.
    pub stored: u64,
    /// Gateways: mailbox messages pushed to clients.
    pub pushed: u64,
    /// Gateways: SURB-acks sent back into the mixnet.
    pub acks_sent: u64,
    /// Drops by reason label, the mixer's and (gateways) the gateway core's.
    pub dropped: BTreeMap<String, u64>,
}

/// Sender anonymity of the target packets.
///
/// The top-level figures are the pool observer's (it knows which packets
/// are inside each mix); `timing` holds the timing observer's (it sees only
/// when packets enter and leave). docs/simulations.md states both models.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Anonymity {
    /// Targets asked for.
    pub targets_requested: usize,
    /// Targets that were delivered and measured.
    pub targets_measured: usize,
    /// Entropy (bits) of the pool observer's posterior over senders, per target.
    pub entropy_bits: Distribution,
    /// 2^(mean entropy): the effective anonymity set.
    pub effective_anonymity_set: f64,
    /// Clients in the run (the largest possible set).
    pub clients: usize,
    /// The pool observer's min-entropy, −log2 of its likeliest sender's probability, bits.
    pub min_entropy_bits: Distribution,
    /// Mean probability the pool observer gives a target's true sender
    /// (per-message sender–receiver linkability: the recipient is seen).
    pub true_sender_probability: f64,
    /// Share of targets whose true sender is the pool observer's best guess.
    pub guess_success: f64,
    /// The timing observer's figures.
    pub timing: ObserverFigures,
}

/// One observer's figures over the targets.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ObserverFigures {
    /// Shannon entropy, bits.
    pub entropy_bits: Distribution,
    /// Min-entropy, bits.
    pub min_entropy_bits: Distribution,
    /// Mean probability given to the true sender.
    pub true_sender_probability: f64,
    /// Share of targets whose true sender is the best guess.
    pub guess_success: f64,
}

/// One (n−1) attempt: a flush, a target let in alone, a watch.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NMinusOneAttempt {
    /// When the block started, virtual seconds.
    pub start_secs: f64,
    /// From the block's start to the target's entry, ms (the flush, then
    /// the wait for a client packet).
    pub wait_for_target_ms: f64,
    /// Outputs of the mix during the watch (the target, loop cover, leftovers).
    pub candidates: usize,
    /// The adversary's posterior on the target's true output.
    pub true_output: f64,
    /// 1 if its best guess (the first output) was the target (1/k for a k-way tie), else 0.
    pub guessed: f64,
    /// Whether the mix's loop alarm rang before the block ended.
    pub noticed: bool,
    /// From the block's start to the alarm, had the block lasted, seconds.
    pub notice_after_secs: f64,
}

/// The (n−1) attack's figures, beside their closed forms.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NMinusOneReport {
    /// The attacked mix.
    pub node: String,
    /// Attempts started.
    pub attempts_started: u64,
    /// Attempts that let a target in.
    pub targets: usize,
    /// Packets the adversary held back (dropped).
    pub blocked: u64,
    /// Share of targets whose output the adversary named.
    pub guess_success: f64,
    /// Mean posterior on the target's true output.
    pub true_output_probability: f64,
    /// Share of attempts the mix noticed (its loop alarm rang before the block ended).
    pub noticed: f64,
    /// Mean time from a block's start to the mix's alarm, seconds.
    pub notice_after_secs: f64,
    /// The alarm threshold: no returned loop for this long, seconds.
    pub alarm_secs: f64,
    /// Closed form of `guess_success`: 1/(1 + λ_M·d).
    pub predicted_guess_success: f64,
    /// Closed form of `true_output_probability`.
    pub predicted_true_output_probability: f64,
    /// Closed form of `notice_after_secs`.
    pub predicted_notice_after_secs: f64,
    /// Every attempt.
    pub attempts: Vec<NMinusOneAttempt>,
}

/// The intersection attack's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IntersectionReport {
    /// Alice's correspondents (client numbers).
    pub correspondents: Vec<u32>,
    /// Rounds observed.
    pub rounds: usize,
    /// Of those, rounds Alice was online.
    pub online_rounds: usize,
    /// Length of a round, seconds.
    pub round_secs: f64,
    /// Rounds after which the adversary's guess is the correspondents and
    /// stays so to the end (None: not named by the end).
    pub rounds_to_name: Option<usize>,
    /// The same in hours.
    pub hours_to_name: Option<f64>,
    /// Variance of an ordinary client's pushes per round (Alice offline).
    pub count_variance: f64,
    /// Alice's real messages per correspondent per online round.
    pub alice_per_correspondent: f64,
    /// The reasoned estimate z²σ²/(p(1−p)·(k/m)²) (docs/simulations.md).
    pub predicted_rounds: f64,
    /// After each round, whether the guess was right.
    pub named: Vec<bool>,
}

/// One node under a region constraint.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RegionNode {
    /// `L<layer>.<n>` or `G<n>`.
    pub name: String,
    /// Its region label.
    pub region: String,
    /// Whether its region is one the constrained clients allow.
    pub allowed: bool,
    /// Packets whose route a constrained client drew (its fragments and
    /// cover) that reached this node.
    pub constrained_packets: u64,
}

/// What a region constraint did, beside the constrained clients' anonymity
/// (which is the report's `anonymity` when clients are constrained).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RegionReport {
    /// Clients constrained to the allowed regions.
    pub constrained_clients: usize,
    /// Constrained clients' packets that reached a node outside the allowed
    /// regions (0 unless routing is broken).
    pub constrained_packets_outside: u64,
    /// Sender anonymity of the other clients' targets (none if every client
    /// is constrained).
    pub unconstrained: Option<Anonymity>,
    /// Every node, its region and the constrained clients' packets it saw.
    pub nodes: Vec<RegionNode>,
}

/// Everything a run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The scenario that was run.
    pub scenario: Scenario,
    /// Packet format the clients, mixers and gateways made and read.
    pub codec: CodecKind,
    /// Virtual seconds simulated (traffic plus drain).
    pub virtual_secs: f64,
    /// Events the engine processed.
    pub events: u64,
    /// Packets handed to a mixer (one per hop).
    pub packet_hops: u64,
    /// Network latency of real fragment copies: leaving the client to
    /// reaching the recipient's gateway, ms.
    pub packet_latency_ms: Distribution,
    /// Message latency: created to handed out by the recipient's client core
    /// (includes waiting for λ_P slots, retransmissions and the mailbox
    /// push), ms.
    pub message_latency_ms: Distribution,
    /// Reply latency: the reply sent to handed out by the original sender's
    /// client core, ms.
    pub reply_latency_ms: Distribution,
    /// Delivery ratio.
    pub delivery: Delivery,
    /// Cover versus real traffic, acks and retransmissions.
    pub bandwidth: Bandwidth,
    /// Per node.
    pub nodes: Vec<NodeReport>,
    /// Sender anonymity of target packets.
    pub anonymity: Anonymity,
    /// The (n−1) attack, if the scenario has one.
    pub n_minus_one: Option<NMinusOneReport>,
    /// The intersection attack, if the scenario has one.
    pub intersection: Option<IntersectionReport>,
    /// The region constraint, if some clients are constrained (left out of
    /// report.json otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regions: Option<RegionReport>,
    /// Packets lost, by reason: mixers' drops, gateway cores' drops and
    /// `link_loss`. Not here: the gateways' `drop_cover` discards, which are
    /// the clients' drop cover (addressed to the drop address, acknowledged)
    /// ending where it should; they are in the gateways' `dropped` in `nodes`.
    pub drops: BTreeMap<String, u64>,
}

/// A report plus the raw samples behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutput {
    /// The summary.
    pub report: Report,
    /// Network latency of each delivered measured real fragment copy, ms, sorted.
    pub packet_latencies_ms: Vec<f64>,
    /// Entropy of each measured target, bits, in the order targets were sent.
    pub target_entropies_bits: Vec<f64>,
    /// Every measured target's figures under the pool and the timing observer.
    pub target_posteriors: Vec<[crate::anonymity::Posterior; 2]>,
}

impl Report {
    /// The one-screen text summary.
    pub fn summary(&self) -> String {
        let l = &self.packet_latency_ms;
        let m = &self.message_latency_ms;
        let r = &self.reply_latency_ms;
        let d = &self.delivery;
        let b = &self.bandwidth;
        let a = &self.anonymity;
        let (qmean, qmax) = self
            .nodes
            .iter()
            .filter(|n| n.layer > 0)
            .fold((0.0f64, 0u64), |acc, n| {
                (acc.0.max(n.queue_mean), acc.1.max(n.queue_max))
            });
        let s = &self.scenario;
        let mb = |t: &Traffic| t.bytes as f64 / 1e6;
        let mut out = format!(
            "mixsim: {codec:?} codec, seed {seed}, {layers} layers x {per} mixes, {gw} gateways, {clients} clients\n\
             virtual time {vt:.1} s, {events} events, {hops} packet-hops\n\
             \n\
             packet latency ms   mean {lm:.1}  p50 {l50:.1}  p90 {l90:.1}  p99 {l99:.1}  (n={ln})\n\
             message latency ms  mean {mm:.1}  p50 {m50:.1}  p90 {m90:.1}  p99 {m99:.1}  (n={mn})\n\
             delivery            messages {dm}/{dt} = {dr:.4}   packets {pd}/{ps} = {pr:.4}\n\
             acks                messages acknowledged {ma}, failed {mf}; retransmissions {rt}, duplicates removed {dup}\n",
            codec = self.codec,
            seed = s.seed,
            layers = s.topology.layers,
            per = s.topology.nodes_per_layer,
            gw = s.topology.gateways,
            clients = s.traffic.clients,
            vt = self.virtual_secs,
            events = self.events,
            hops = self.packet_hops,
            lm = l.mean,
            l50 = l.p50,
            l90 = l.p90,
            l99 = l.p99,
            ln = l.count,
            mm = m.mean,
            m50 = m.p50,
            m90 = m.p90,
            m99 = m.p99,
            mn = m.count,
            dm = d.messages_delivered,
            dt = d.messages_measured,
            dr = d.message_ratio,
            pd = d.packets_delivered,
            ps = d.packets_sent,
            pr = d.packet_ratio,
            ma = d.messages_acknowledged,
            mf = d.messages_failed,
            rt = d.retransmissions,
            dup = d.duplicates_removed,
        );
        if d.replies_measured > 0 || d.replies_refused > 0 {
            out += &format!(
                "replies             {rd}/{rm} delivered, {rr} refused; latency ms mean {rl:.1}  p90 {r90:.1}\n",
                rd = d.replies_delivered,
                rm = d.replies_measured,
                rr = d.replies_refused,
                rl = r.mean,
                r90 = r.p90,
            );
        }
        out += &format!(
            "bandwidth MB        real {rb:.2}  retransmission {tb:.2}  ack {ab:.2}  reply {yb:.2}  loop {lb:.2}  drop {db:.2}  mix {xb:.2}  gateway {gb:.2}\n\
             per real byte       cover {cpr:.2}  acks and retransmissions {opr:.2}   (mailbox pushes {pb:.2} MB)\n\
             mix queues          largest mean {qmean:.2}  largest max {qmax}\n\
             sender anonymity    {tm}/{tr} targets  H mean {hm:.3} bits (min {hmin:.3}, p50 {h50:.3})  set 2^H = {set:.2} of {clients}\n\
             min-entropy, link   pool H_min {hmin_mean:.3} bits, P(true sender) {pt:.3}, best guess right {gs:.3}\n\
             timing observer     H {th:.3} bits, H_min {thm:.3} bits, P(true sender) {tpt:.3}, best guess right {tgs:.3}\n\
             drops               {drops:?}\n",
            hmin_mean = a.min_entropy_bits.mean,
            pt = a.true_sender_probability,
            gs = a.guess_success,
            th = a.timing.entropy_bits.mean,
            thm = a.timing.min_entropy_bits.mean,
            tpt = a.timing.true_sender_probability,
            tgs = a.timing.guess_success,
            rb = mb(&b.real),
            tb = mb(&b.retransmission),
            ab = mb(&b.ack),
            yb = mb(&b.reply),
            lb = mb(&b.loop_cover),
            db = mb(&b.drop_cover),
            xb = mb(&b.mix_cover),
            gb = mb(&b.gateway_cover),
            cpr = b.cover_per_real,
            opr = b.overhead_per_real,
            pb = mb(&b.mailbox),
            tm = a.targets_measured,
            tr = a.targets_requested,
            hm = a.entropy_bits.mean,
            hmin = a.entropy_bits.min,
            h50 = a.entropy_bits.p50,
            set = a.effective_anonymity_set,
            clients = s.traffic.clients,
            drops = self.drops,
        );
        if let Some(g) = &self.regions {
            out += &format!(
                "region constraint   {k} of {clients} clients constrained, their targets above; {o} of their packets reached a node outside the allowed regions\n",
                k = g.constrained_clients,
                clients = s.traffic.clients,
                o = g.constrained_packets_outside,
            );
            if let Some(u) = &g.unconstrained {
                out += &format!(
                    "unconstrained       {tm}/{tr} targets  H mean {hm:.3} bits  set 2^H = {set:.2}; H_min {hmin:.3} bits, P(true sender) {pt:.3}; timing H {th:.3} bits\n",
                    tm = u.targets_measured,
                    tr = u.targets_requested,
                    hm = u.entropy_bits.mean,
                    set = u.effective_anonymity_set,
                    hmin = u.min_entropy_bits.mean,
                    pt = u.true_sender_probability,
                    th = u.timing.entropy_bits.mean,
                );
            }
        }
        if let Some(n) = &self.n_minus_one {
            out += &format!(
                "(n-1) attack on {node}  {t} targets: named {g:.3} (closed form {pg:.3}), P(true output) {p:.3} ({pp:.3}); \
                 noticed {nf:.3}, alarm after {na:.2} s ({pna:.2}); {b} packets held back\n",
                node = n.node,
                t = n.targets,
                g = n.guess_success,
                pg = n.predicted_guess_success,
                p = n.true_output_probability,
                pp = n.predicted_true_output_probability,
                nf = n.noticed,
                na = n.notice_after_secs,
                pna = n.predicted_notice_after_secs,
                b = n.blocked,
            );
        }
        if let Some(i) = &self.intersection {
            out += &format!(
                "intersection        correspondents {c:?} named after {r} of {n} rounds ({o} online; estimate {p:.0})\n",
                c = i.correspondents,
                r = i
                    .rounds_to_name
                    .map_or_else(|| "never".to_string(), |r| r.to_string()),
                n = i.rounds,
                o = i.online_rounds,
                p = i.predicted_rounds,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let d = Distribution::of(&mut v);
        assert_eq!(
            (d.count, d.p50, d.p90, d.p99, d.min, d.max),
            (100, 50.0, 90.0, 99.0, 1.0, 100.0)
        );
        assert!((d.mean - 50.5).abs() < 1e-12);
        assert_eq!(Distribution::of(&mut []), Distribution::default());
    }
}
