//! The attacks beyond passive observation: the (n−1) attack on one mix and
//! the long-term intersection attack on one client. Each is bookkeeping
//! beside the engine's handlers: the (n−1) adversary decides which packets
//! may reach its mix (`admit`) and watches what leaves (`output`); the
//! intersection adversary counts what every client's gateway pushes to it
//! (`pushed`). Neither touches a core.

use std::time::Duration;

use protocol::time::Timestamp;
use rand::RngExt;
use rand_chacha::ChaCha20Rng;

use crate::closed_form;
use crate::report::{IntersectionReport, NMinusOneAttempt, NMinusOneReport};
use crate::scenario::{Scenario, parse_node_name};

/// What the (n−1) adversary does with a packet arriving at its mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Not attacking now: the packet goes in.
    Pass,
    /// Held back (dropped).
    Block,
    /// The target: let in alone.
    Target,
}

/// One attempt in progress.
#[derive(Debug)]
struct Attempt {
    start: Timestamp,
    /// When the target entered, and its slot while inside.
    target: Option<(Timestamp, u32)>,
    /// Outputs of the mix since the target entered: (instant, is the target).
    outputs: Vec<(Timestamp, bool)>,
    /// The mix's last returned loop before the block started.
    last_return: Timestamp,
}

/// The (n−1) adversary on one layer-1 mix.
#[derive(Debug)]
pub(super) struct NMinusOne {
    /// The attacked node.
    pub node: usize,
    period: Duration,
    flush: Duration,
    watch: Duration,
    alarm: Duration,
    mean_delay_ns: f64,
    lambda_m: f64,
    next_start: Timestamp,
    end: Timestamp,
    current: Option<Attempt>,
    last_return: Timestamp,
    attempts: Vec<NMinusOneAttempt>,
    started: u64,
    blocked: u64,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl NMinusOne {
    /// The attack of `scenario`, if it has one; attempts start from `start` until `end`.
    pub fn new(scenario: &Scenario, start: Timestamp, end: Timestamp) -> Option<NMinusOne> {
        let spec = scenario.attack.n_minus_one.as_ref()?;
        let node = parse_node_name(&spec.node, &scenario.topology)?;
        let (flush, watch, alarm) = scenario.n_minus_one_windows()?;
        Some(NMinusOne {
            node,
            period: Duration::try_from_secs_f64(spec.period_secs).unwrap_or(Duration::MAX),
            flush,
            watch,
            alarm,
            mean_delay_ns: scenario.mean_delay().as_nanos().max(1) as f64,
            lambda_m: scenario.traffic.lambda_m,
            next_start: start,
            end,
            current: None,
            last_return: Timestamp::ZERO,
            attempts: Vec::new(),
            started: 0,
            blocked: 0,
        })
    }

    /// Moves the attack on to `now`: closes an attempt whose watch is over
    /// (or that found no target within its period), opens the next one.
    fn advance(&mut self, now: Timestamp) {
        if let Some(a) = &self.current {
            let over = match a.target {
                Some((entered, _)) => now > entered.saturating_add(self.watch),
                None => now >= a.start.saturating_add(self.period),
            };
            if over {
                self.close();
            }
        }
        if self.current.is_none() && now >= self.next_start && self.next_start < self.end {
            self.current = Some(Attempt {
                start: self.next_start,
                target: None,
                outputs: Vec::new(),
                last_return: self.last_return,
            });
            self.started += 1;
            while self.next_start <= now {
                self.next_start = self.next_start.saturating_add(self.period);
            }
        }
    }

    /// A packet reaches the mix; `from_client` says whether it is a client's
    /// packet on its first mix hop (a candidate target).
    pub fn admit(&mut self, now: Timestamp, slot: u32, from_client: bool) -> Admission {
        self.advance(now);
        let flush = self.flush;
        let Some(a) = &mut self.current else {
            return Admission::Pass;
        };
        let admission = if a.target.is_none() && from_client && now >= a.start.saturating_add(flush)
        {
            a.target = Some((now, slot));
            Admission::Target
        } else {
            Admission::Block
        };
        if admission == Admission::Block {
            self.blocked += 1;
        }
        admission
    }

    /// The mix released the packet in `slot`, or (`slot` None) sent its own loop cover.
    pub fn output(&mut self, now: Timestamp, slot: Option<u32>) {
        self.advance(now);
        if let Some(a) = &mut self.current
            && let Some((entered, target_slot)) = a.target
            && now <= entered.saturating_add(self.watch)
        {
            let is_target = slot == Some(target_slot) && !a.outputs.iter().any(|o| o.1);
            a.outputs.push((now, is_target));
        }
    }

    /// One of the mix's own loops came back.
    pub fn loop_returned(&mut self, now: Timestamp) {
        self.last_return = self.last_return.max(now);
    }

    fn close(&mut self) {
        let Some(a) = self.current.take() else {
            return;
        };
        let Some((entered, _)) = a.target else {
            return;
        };
        // The adversary's posterior over outputs: the target's delay density
        // at each output's offset from its entry (loop cover is Poisson, so
        // the rest of the likelihood is the same whichever output it is).
        let weight = |t: Timestamp| {
            let ns = t.saturating_duration_since(entered).as_nanos() as f64;
            (-ns / self.mean_delay_ns).exp()
        };
        let total: f64 = a.outputs.iter().map(|o| weight(o.0)).sum();
        let first = a.outputs.first().map(|o| o.0);
        let ties = a.outputs.iter().filter(|o| Some(o.0) == first).count();
        let (true_output, guessed) = match a.outputs.iter().find(|o| o.1) {
            Some(o) if total > 0.0 => (
                weight(o.0) / total,
                if Some(o.0) == first {
                    1.0 / ties.max(1) as f64
                } else {
                    0.0
                },
            ),
            _ => (0.0, 0.0),
        };
        let alarm_at = a.last_return.saturating_add(self.alarm);
        let block_end = entered.saturating_add(self.watch);
        self.attempts.push(NMinusOneAttempt {
            start_secs: secs(a.start.since_origin()),
            wait_for_target_ms: secs(entered.saturating_duration_since(a.start)) * 1000.0,
            candidates: a.outputs.len(),
            true_output,
            guessed,
            noticed: alarm_at <= block_end,
            notice_after_secs: if self.alarm == Duration::MAX {
                f64::INFINITY
            } else {
                alarm_at.as_nanos() as f64 / 1e9 - a.start.as_nanos() as f64 / 1e9
            },
        });
    }

    /// The figures, once the run is over.
    pub fn report(mut self, name: String) -> NMinusOneReport {
        self.close();
        let n = self.attempts.len();
        let mean = |f: &dyn Fn(&NMinusOneAttempt) -> f64| {
            if n == 0 {
                f64::NAN
            } else {
                self.attempts.iter().map(f).sum::<f64>() / n as f64
            }
        };
        let d = self.mean_delay_ns / 1e9;
        NMinusOneReport {
            node: name,
            attempts_started: self.started,
            targets: n,
            blocked: self.blocked,
            guess_success: mean(&|a| a.guessed),
            true_output_probability: mean(&|a| a.true_output),
            noticed: mean(&|a| f64::from(u8::from(a.noticed))),
            notice_after_secs: mean(&|a| a.notice_after_secs),
            alarm_secs: secs(self.alarm),
            predicted_guess_success: closed_form::n_minus_one_guess_success(self.lambda_m, d),
            predicted_true_output_probability: closed_form::n_minus_one_true_output_probability(
                self.lambda_m,
                d,
            ),
            predicted_notice_after_secs: closed_form::n_minus_one_time_to_notice_secs(
                self.lambda_m,
                secs(self.alarm),
            ),
            attempts: self.attempts,
        }
    }
}

/// The intersection adversary against client 0.
#[derive(Debug)]
pub(super) struct Intersection {
    /// Alice's correspondents, sorted.
    pub correspondents: Vec<u32>,
    /// Alice's real messages per second while online.
    pub rate: f64,
    round: Duration,
    online: Vec<bool>,
    current: usize,
    rounds_end: usize,
    counts: Vec<u32>,
    on_sum: Vec<f64>,
    off_sum: Vec<f64>,
    off_squares: Vec<f64>,
    on_rounds: u32,
    off_rounds: u32,
    named: Vec<bool>,
}

impl Intersection {
    /// The attack of `scenario`, if it has one, drawing Alice's
    /// correspondents and online rounds from `rng`.
    pub fn new(scenario: &Scenario, rng: &mut ChaCha20Rng) -> Option<Intersection> {
        let spec = scenario.attack.intersection.as_ref()?;
        let clients = scenario.traffic.clients;
        let rounds = (scenario.duration_secs / spec.round_secs).floor() as usize;
        let mut others: Vec<u32> = (1..clients as u32).collect();
        let mut correspondents = Vec::with_capacity(spec.correspondents);
        for _ in 0..spec.correspondents {
            let i = rng.random_range(0..others.len());
            correspondents.push(others.swap_remove(i));
        }
        correspondents.sort_unstable();
        let online = (0..rounds)
            .map(|_| rng.random::<f64>() < spec.online_probability)
            .collect();
        Some(Intersection {
            correspondents,
            rate: spec.message_rate.unwrap_or(scenario.traffic.message_rate),
            round: Duration::try_from_secs_f64(spec.round_secs).unwrap_or(Duration::MAX),
            online,
            current: 0,
            rounds_end: rounds,
            counts: vec![0; clients],
            on_sum: vec![0.0; clients],
            off_sum: vec![0.0; clients],
            off_squares: vec![0.0; clients],
            on_rounds: 0,
            off_rounds: 0,
            named: Vec::new(),
        })
    }

    fn round_of(&self, now: Timestamp) -> usize {
        (now.as_nanos() / self.round.as_nanos().max(1) as u64) as usize
    }

    /// When Alice's device goes offline or comes back, in order: `(instant,
    /// online from then)`. She starts online; after the last whole round she
    /// is offline.
    pub fn presence_changes(&self) -> Vec<(Timestamp, bool)> {
        let mut changes = Vec::new();
        let mut online = true;
        let states = self.online.iter().copied().chain(std::iter::once(false));
        for (r, state) in states.enumerate() {
            if state != online {
                let at = Timestamp::ZERO.saturating_add(self.round.saturating_mul(r as u32));
                changes.push((at, state));
                online = state;
            }
        }
        changes
    }

    /// Closes every round that ended by `now`.
    pub fn advance(&mut self, now: Timestamp) {
        let round = self.round_of(now).min(self.rounds_end);
        while self.current < round {
            self.close_round();
        }
    }

    /// Client `c`'s gateway pushed it one message at `now`.
    pub fn pushed(&mut self, now: Timestamp, c: usize) {
        self.advance(now);
        if self.current < self.rounds_end
            && let Some(n) = self.counts.get_mut(c)
        {
            *n += 1;
        }
    }

    fn close_round(&mut self) {
        let online = self.online.get(self.current).copied().unwrap_or(false);
        for (c, n) in self.counts.iter_mut().enumerate() {
            let v = f64::from(*n);
            let sums = if online {
                self.on_sum.get_mut(c)
            } else {
                if let Some(q) = self.off_squares.get_mut(c) {
                    *q += v * v;
                }
                self.off_sum.get_mut(c)
            };
            if let Some(s) = sums {
                *s += v;
            }
            *n = 0;
        }
        if online {
            self.on_rounds += 1;
        } else {
            self.off_rounds += 1;
        }
        let named = self.guess() == self.correspondents;
        self.named.push(named);
        self.current += 1;
    }

    /// The adversary's guess: the clients (Alice excluded) whose mean count
    /// rises most in her online rounds (Danezis's statistical disclosure).
    fn guess(&self) -> Vec<u32> {
        if self.on_rounds == 0 || self.off_rounds == 0 {
            return Vec::new();
        }
        let (on, off) = (f64::from(self.on_rounds), f64::from(self.off_rounds));
        let mut scores: Vec<(f64, u32)> = (1..self.counts.len())
            .map(|c| {
                let a = self.on_sum.get(c).copied().unwrap_or(0.0) / on;
                let b = self.off_sum.get(c).copied().unwrap_or(0.0) / off;
                (a - b, c as u32)
            })
            .collect();
        scores.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let mut top: Vec<u32> = scores
            .iter()
            .take(self.correspondents.len())
            .map(|s| s.1)
            .collect();
        top.sort_unstable();
        top
    }

    /// The figures, once traffic has ended at `end`.
    pub fn report(mut self, end: Timestamp) -> IntersectionReport {
        self.advance(end);
        let rounds = self.named.len();
        let last_wrong = self.named.iter().rposition(|n| !n);
        let rounds_to_name = match (self.named.last(), last_wrong) {
            (Some(true), None) => Some(1),
            (Some(true), Some(i)) => Some(i + 2),
            _ => None,
        };
        // Per-round variance of an ordinary client's count in Alice's
        // offline rounds: the noise the attack averages away.
        let off = f64::from(self.off_rounds.max(1));
        let others: Vec<usize> = (1..self.counts.len())
            .filter(|c| !self.correspondents.contains(&(*c as u32)))
            .collect();
        let variance = others
            .iter()
            .map(|&c| {
                let m = self.off_sum.get(c).copied().unwrap_or(0.0) / off;
                self.off_squares.get(c).copied().unwrap_or(0.0) / off - m * m
            })
            .sum::<f64>()
            / others.len().max(1) as f64;
        let round_secs = self.round.as_secs_f64();
        let per_correspondent = self.rate * round_secs / self.correspondents.len() as f64;
        let z = (2.0 * (others.len().max(2) as f64).ln()).sqrt() + 1.0;
        let p_on = f64::from(self.on_rounds) / rounds.max(1) as f64;
        let predicted = if per_correspondent > 0.0 && p_on > 0.0 && p_on < 1.0 {
            z * z * variance / (p_on * (1.0 - p_on)) / (per_correspondent * per_correspondent)
        } else {
            f64::INFINITY
        };
        IntersectionReport {
            correspondents: self.correspondents,
            rounds,
            online_rounds: self.on_rounds as usize,
            round_secs,
            rounds_to_name,
            hours_to_name: rounds_to_name.map(|r| r as f64 * round_secs / 3600.0),
            count_variance: variance,
            alice_per_correspondent: per_correspondent,
            predicted_rounds: predicted,
            named: self.named,
        }
    }
}
