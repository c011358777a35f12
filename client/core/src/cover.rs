//! What the client keeps of its own cover: the SURB-acks of cover packets
//! (every packet in the λ_P and λ_L streams carries one, so its gateway sees
//! one packet come back for every packet out, real or not) and the loops on
//! their way back to its own mailbox.
//!
//! Loops are how a client notices a gateway that drops its mail: the gateway
//! cannot tell a loop from a message (both are sealed bodies of one size), so
//! a gateway that drops mail drops loops too. A loop that has not come back
//! by its deadline is counted missing; [`CoverBook::missing_in_a_row`] loops
//! missing one after the other raise [`ClientEvent::LoopsMissing`], once,
//! until a loop comes back. A loop that comes back after it was counted
//! missing (the client was offline, its mail waited) is counted late and
//! ends the run.

use std::collections::{BTreeSet, HashMap};

use protocol::format::ReplyRecovery;
use protocol::frame::Frame;
use protocol::surb::SurbId;
use protocol::time::Timestamp;

use crate::events::{ClientEvent, DeliveryOutcome, EventQueue};
use crate::stats::{ClientStats, DeliveryDrop};

/// Most cover SURB-acks and loops tracked at once; the oldest are forgotten first.
const MAX_TRACKED: usize = 4_096;
/// Loops remembered after they were counted missing, to tell a late one.
const MAX_MISSING: usize = 1_024;

/// The cover a client sent and waits for.
#[derive(Debug)]
pub(crate) struct CoverBook<Rec> {
    acks: HashMap<SurbId, (Timestamp, Rec)>,
    ack_deadlines: BTreeSet<(Timestamp, SurbId)>,
    loops: HashMap<[u8; 16], Timestamp>,
    loop_deadlines: BTreeSet<(Timestamp, [u8; 16])>,
    missing: BTreeSet<[u8; 16]>,
    missing_order: std::collections::VecDeque<[u8; 16]>,
    in_a_row: u32,
    alarm: u32,
    alarmed: bool,
}

impl<Rec: ReplyRecovery> CoverBook<Rec> {
    /// A book that raises the alarm after `alarm` loops missing in a row
    /// (zero: never).
    pub(crate) fn new(alarm: u32) -> Self {
        CoverBook {
            acks: HashMap::new(),
            ack_deadlines: BTreeSet::new(),
            loops: HashMap::new(),
            loop_deadlines: BTreeSet::new(),
            missing: BTreeSet::new(),
            missing_order: std::collections::VecDeque::new(),
            in_a_row: 0,
            alarm,
            alarmed: false,
        }
    }

    /// Cover SURB-acks and loops tracked now.
    pub(crate) fn len(&self) -> usize {
        self.acks.len() + self.loops.len()
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        let ack = self.ack_deadlines.first().map(|(t, _)| *t);
        let lp = self.loop_deadlines.first().map(|(t, _)| *t);
        match (ack, lp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Waits for the SURB-ack of a cover packet until `deadline`.
    pub(crate) fn expect_ack(&mut self, recovery: Rec, deadline: Timestamp) {
        if self.acks.len() >= MAX_TRACKED
            && let Some((_, old)) = self.ack_deadlines.pop_first()
        {
            self.acks.remove(&old);
        }
        let id = recovery.id();
        self.ack_deadlines.insert((deadline, id));
        self.acks.insert(id, (deadline, recovery));
    }

    /// Waits for loop `id` to come back until `deadline`.
    pub(crate) fn expect_loop(&mut self, id: [u8; 16], deadline: Timestamp) {
        if self.loops.len() >= MAX_TRACKED
            && let Some((_, old)) = self.loop_deadlines.pop_first()
        {
            self.loops.remove(&old);
        }
        self.loop_deadlines.insert((deadline, id));
        self.loops.insert(id, deadline);
    }

    /// Whether `surb_id` is the SURB-ack of a cover packet.
    pub(crate) fn has_ack(&self, surb_id: &SurbId) -> bool {
        self.acks.contains_key(surb_id)
    }

    /// A packet came back through the SURB-ack of a cover packet.
    pub(crate) fn handle_ack(
        &mut self,
        surb_id: &SurbId,
        payload: &[u8],
        stats: &mut ClientStats,
    ) -> DeliveryOutcome {
        let Some((_, recovery)) = self.acks.get(surb_id) else {
            return stats.drop_delivery(DeliveryDrop::UnknownSurb);
        };
        match recovery
            .open(payload)
            .and_then(|bytes| Frame::decode(&bytes))
        {
            Ok(Frame::Ack) => {
                if let Some((deadline, _)) = self.acks.remove(surb_id) {
                    self.ack_deadlines.remove(&(deadline, *surb_id));
                }
                stats.cover_acks_received += 1;
                DeliveryOutcome::Cover
            }
            // Not the SURB's answer: it stays valid for the real one.
            Ok(_) => stats.drop_delivery(DeliveryDrop::UnexpectedKind),
            Err(_) => stats.drop_delivery(DeliveryDrop::NotAFrame),
        }
    }

    /// Loop `id` came back to the mailbox.
    pub(crate) fn loop_returned(&mut self, id: [u8; 16], stats: &mut ClientStats) {
        if let Some(deadline) = self.loops.remove(&id) {
            self.loop_deadlines.remove(&(deadline, id));
            stats.loop_cover_received += 1;
        } else if self.missing.remove(&id) {
            stats.loops_late += 1;
        } else {
            // Not one of ours, or one we forgot: nothing to learn from it.
            stats.loop_cover_received += 1;
            return;
        }
        self.in_a_row = 0;
        self.alarmed = false;
    }

    /// Counts what passed its deadline by `now`.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Timestamp,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) {
        while let Some(&(deadline, id)) = self.ack_deadlines.first() {
            if deadline > now {
                break;
            }
            self.ack_deadlines.pop_first();
            self.acks.remove(&id);
            stats.cover_acks_missing += 1;
        }
        while let Some(&(deadline, id)) = self.loop_deadlines.first() {
            if deadline > now {
                break;
            }
            self.loop_deadlines.pop_first();
            self.loops.remove(&id);
            stats.loops_missing += 1;
            self.in_a_row = self.in_a_row.saturating_add(1);
            if self.missing.insert(id) {
                self.missing_order.push_back(id);
            }
            while self.missing_order.len() > MAX_MISSING {
                if let Some(old) = self.missing_order.pop_front() {
                    self.missing.remove(&old);
                }
            }
            if self.alarm > 0 && self.in_a_row >= self.alarm && !self.alarmed {
                self.alarmed = true;
                events.push(
                    ClientEvent::LoopsMissing {
                        in_a_row: self.in_a_row,
                    },
                    stats,
                );
            }
        }
    }
}
