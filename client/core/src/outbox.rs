//! Messages on their way out: the send queue, the ack table and the
//! retransmission deadlines.
//!
//! A fragment is queued when its message is sent; on a send tick it is
//! wrapped with a fresh route and a fresh SURB-ack, and gets a deadline (the
//! sum of both routes' sampled delays plus a margin). The SURB-ack's id maps
//! to the fragment in the ack table. An ack before the deadline marks the
//! fragment done; a deadline that passes queues it again (at the front), until
//! the message runs out of retransmissions and fails. Old SURB-acks of a
//! fragment stay valid until it is acked: an ack that crossed a
//! retransmission still counts.
//!
//! A message may carry an expiry instant: each copy of its fragments then
//! tells the recipient's gateway (the frame's `lifetime`) how many whole
//! seconds it may keep the fragment after its arrival, and a message whose
//! expiry has passed when its next copy is due fails unsent.
//!
//! A message sent to an address may be recallable: each copy of its
//! fragment `i` then carries the recall tag `t_i` of its secret (every other
//! forward frame a random one). A recall is a one-fragment message whose
//! copies go in recall frames that reveal the secret and the fragment count
//! ([`RecallRole`]).
//!
//! Each ack entry also remembers the mix nodes of its copy's two routes, so
//! that the ack, or its deadline passing, tells the client's
//! [`NodeHealth`] which nodes worked or may have failed.

use std::collections::{BTreeSet, HashMap, VecDeque};

use protocol::format::{PacketFormat, ReplyRecovery};
use protocol::fragment::{Fragment, FragmentId, MessageId};
use protocol::frame::{Frame, RecallFrame, SURB_ACK_HOLD, SealedContent};
use protocol::recall::RecallSecret;
use protocol::surb::{Surb, SurbId};
use protocol::time::Timestamp;
use protocol::{ClientAddress, NodeId};
use rand::CryptoRng;
use x25519_dalek::PublicKey;

use super::builder::{ForwardRoute, PacketBuilder};
use super::config::ClientConfig;
use super::events::{ClientEvent, DeliveryOutcome, EventQueue, SendFailure};
use super::health::NodeHealth;
use super::routes::RouteSource;
use super::stats::{ClientStats, DeliveryDrop};
use super::transmission::{Transmission, TransmissionKind};
use crate::error::ClientError;

/// Where a message goes.
#[derive(Debug)]
pub(crate) enum Target {
    /// To a client address, over fresh forward routes.
    Address(ClientAddress),
    /// Back through SURBs someone gave us: one per transmission; `acked`:
    /// whether each fragment carries a SURB-ack and waits for it.
    Surbs { surbs: VecDeque<Surb>, acked: bool },
}

#[derive(Debug)]
struct OutgoingFragment {
    fragment: Fragment,
    acked: bool,
    sends: u32,
    /// Copies that could not be built (no route, a SURB that does not parse).
    unbuilt: u32,
    /// When the first copy left.
    first_sent: Option<Timestamp>,
    deadline: Option<Timestamp>,
    surb_acks: Vec<SurbId>,
    /// The SURB-ack of the copy the pending deadline is for (none when that
    /// copy could not be built).
    pending: Option<SurbId>,
}

/// What a message has to do with recall.
#[derive(Debug)]
pub(crate) enum RecallRole {
    /// Nothing: its frames carry random recall tags.
    None,
    /// Recallable: each copy of fragment `i` carries this secret's tag `t_i`.
    Tagged(RecallSecret),
    /// A recall: its one fragment goes in recall frames revealing the
    /// secret and the recalled message's fragment count.
    Reveals {
        /// The recalled message's secret.
        secret: RecallSecret,
        /// The recalled message's fragment count.
        fragments: u16,
    },
}

#[derive(Debug)]
struct OutgoingMessage {
    target: Target,
    recall: RecallRole,
    fragments: Vec<OutgoingFragment>,
    acked: usize,
    /// After this instant no copy is sent, and no gateway keeps one.
    expires_at: Option<Timestamp>,
}

#[derive(Debug)]
struct AckEntry<Rec> {
    fragment: FragmentId,
    recovery: Rec,
    /// The mix nodes of the copy's forward route (when this client chose it)
    /// and of its SURB-ack route, each once.
    mixes: Box<[NodeId]>,
    /// Whether a missed deadline counts against `mixes`: not for a reply,
    /// whose forward half the other client chose and whose ack waits for it.
    blame: bool,
}

/// Outgoing messages and everything that tracks their acks; `Rec` is what
/// the packet format keeps to read a SURB-ack.
#[derive(Debug)]
pub(crate) struct Outbox<Rec> {
    messages: HashMap<MessageId, OutgoingMessage>,
    queue: VecDeque<FragmentId>,
    reply_acks: VecDeque<(Surb, FragmentId)>,
    ack_table: HashMap<SurbId, AckEntry<Rec>>,
    deadlines: BTreeSet<(Timestamp, FragmentId)>,
    unacked: usize,
}

impl<Rec> Default for Outbox<Rec> {
    fn default() -> Self {
        Outbox {
            messages: HashMap::new(),
            queue: VecDeque::new(),
            reply_acks: VecDeque::new(),
            ack_table: HashMap::new(),
            deadlines: BTreeSet::new(),
            unacked: 0,
        }
    }
}

/// What came of trying to send the fragment at the head of the queue.
enum Attempt {
    Sent(Transmission),
    /// The entry was stale (fragment acked, message gone): try the next.
    Skip,
    /// No SURB-ack could be built (no route home): the fragment stays at the
    /// head of the queue.
    Blocked,
}

impl<Rec: ReplyRecovery> Outbox<Rec> {
    /// Fragments queued or waiting for an ack.
    pub(crate) fn unacked(&self) -> usize {
        self.unacked
    }

    /// SURB-acks this client waits on.
    pub(crate) fn ack_table_len(&self) -> usize {
        self.ack_table.len()
    }

    /// Messages not yet delivered or failed.
    pub(crate) fn messages_len(&self) -> usize {
        self.messages.len()
    }

    /// Whether `surb_id` is one of our SURB-acks.
    pub(crate) fn has_ack(&self, surb_id: &SurbId) -> bool {
        self.ack_table.contains_key(surb_id)
    }

    /// Queues a message cut into `fragments`, to be sent (and kept by the
    /// recipient's gateway) until `expires_at` if given.
    pub(crate) fn push(
        &mut self,
        id: MessageId,
        target: Target,
        fragments: Vec<Fragment>,
        expires_at: Option<Timestamp>,
        recall: RecallRole,
    ) {
        self.unacked += fragments.len();
        self.queue.extend(fragments.iter().map(|f| f.id));
        let fragments = fragments
            .into_iter()
            .map(|fragment| OutgoingFragment {
                fragment,
                acked: false,
                sends: 0,
                unbuilt: 0,
                first_sent: None,
                deadline: None,
                surb_acks: Vec::new(),
                pending: None,
            })
            .collect();
        self.messages.insert(
            id,
            OutgoingMessage {
                target,
                recall,
                fragments,
                acked: 0,
                expires_at,
            },
        );
    }

    /// Queues the ack of a reply fragment we received, to go out on a send tick.
    pub(crate) fn push_reply_ack(
        &mut self,
        surb: Surb,
        fragment: FragmentId,
        config: &ClientConfig,
        stats: &mut ClientStats,
    ) {
        if self.reply_acks.len() >= config.max_queued_reply_acks {
            stats.drop_delivery(DeliveryDrop::ReplyAckDropped);
        } else {
            self.reply_acks.push_back((surb, fragment));
        }
    }

    /// The earliest ack deadline.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// The next real packet for a send tick, if anything is queued.
    pub(crate) fn next_packet<R: RouteSource, F: PacketFormat<Recovery = Rec>>(
        &mut self,
        now: Timestamp,
        builder: &PacketBuilder<'_, R, F>,
        config: &ClientConfig,
        rng: &mut impl CryptoRng,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) -> Option<Transmission> {
        while let Some((surb, fragment)) = self.reply_acks.pop_front() {
            match Frame::Ack
                .encode()
                .and_then(|frame| builder.format.use_surb(&surb, &frame))
            {
                Ok(packet) => {
                    stats.reply_acks_sent += 1;
                    return Some(Transmission {
                        packet,
                        kind: TransmissionKind::ReplyAck { id: fragment },
                    });
                }
                Err(_) => {
                    stats.drop_delivery(DeliveryDrop::ReplyAckDropped);
                }
            }
        }
        while let Some(fid) = self.queue.pop_front() {
            match self.attempt(now, fid, builder, config, rng, stats, events) {
                Attempt::Sent(transmission) => return Some(transmission),
                Attempt::Skip => continue,
                Attempt::Blocked => {
                    self.queue.push_front(fid);
                    return None;
                }
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt<R: RouteSource, F: PacketFormat<Recovery = Rec>>(
        &mut self,
        now: Timestamp,
        fid: FragmentId,
        builder: &PacketBuilder<'_, R, F>,
        config: &ClientConfig,
        rng: &mut impl CryptoRng,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) -> Attempt {
        let Some(message) = self.messages.get_mut(&fid.message) else {
            return Attempt::Skip;
        };
        let Some(state) = message.fragments.get_mut(usize::from(fid.index)) else {
            return Attempt::Skip;
        };
        if state.acked || state.deadline.is_some() {
            return Attempt::Skip;
        }
        let expires_at = message.expires_at;
        if expires_at.is_some_and(|at| at <= now) {
            self.expire(fid.message, stats, events);
            return Attempt::Skip;
        }
        if let Target::Surbs {
            surbs,
            acked: false,
        } = &mut message.target
        {
            // Sent once, acknowledged by nobody: done as soon as it leaves.
            let packet = surbs.pop_front().map(|surb| {
                Frame::Reply {
                    surb_ack: None,
                    lifetime: None,
                    fragment: state.fragment.clone(),
                }
                .encode()
                .and_then(|frame| builder.format.use_surb(&surb, &frame))
            });
            state.sends += 1;
            state.acked = true;
            message.acked += 1;
            self.unacked = self.unacked.saturating_sub(1);
            if message.acked == message.fragments.len() {
                self.messages.remove(&fid.message);
                events.push(ClientEvent::Sent { id: fid.message }, stats);
            }
            return match packet {
                Some(Ok(packet)) => Attempt::Sent(Transmission {
                    packet,
                    kind: TransmissionKind::ReplyFragment { id: fid, copy: 1 },
                }),
                // No SURB left or one that does not parse: this fragment is
                // lost, as if dropped on the way; the caller recovers it.
                _ => {
                    stats.unsendable += 1;
                    Attempt::Skip
                }
            };
        }
        let Ok(home) = builder.surb_home(rng, stats) else {
            return Attempt::Blocked;
        };
        // The recipient's gateway sends the SURB-ack a fixed hold after the
        // packet reached it.
        let back = home.delay.saturating_add(SURB_ACK_HOLD);
        let (surb_ack, recovery) = (home.surb, home.recovery);
        let mut mixes = home.mixes;
        let surb_id = recovery.id();
        let blame = matches!(message.target, Target::Address(_));
        let built = match &mut message.target {
            Target::Address(to) => match builder.forward_route(rng, to, stats) {
                Err(e) => Err(e),
                Ok(route) => {
                    mixes.extend(route.mixes());
                    let lifetime = match expires_at.map(|at| lifetime_at(now, &route, at)) {
                        None => None,
                        Some(Some(secs)) => Some(secs),
                        Some(None) => {
                            // It would reach the gateway with less than a
                            // whole second to live: not worth sending.
                            self.expire(fid.message, stats, events);
                            return Attempt::Skip;
                        }
                    };
                    let content = SealedContent::Data {
                        lifetime,
                        fragment: state.fragment.clone(),
                    };
                    builder
                        .format
                        .seal_frame(&content, &PublicKey::from(to.client_key), surb_ack.0, rng)
                        .and_then(|frame| recall_frame(&message.recall, fid.index, frame).encode())
                        .map_err(ClientError::from)
                        .and_then(|frame| route.build(builder.format, rng, &frame))
                        .map(|packet| (packet, route.delay().saturating_add(back)))
                }
            },
            Target::Surbs { surbs, .. } => {
                let Some(surb) = surbs.pop_front() else {
                    // Nothing left to send through: the reply cannot be retransmitted.
                    self.fail(fid.message, SendFailure::OutOfSurbs, stats, events);
                    return Attempt::Skip;
                };
                Frame::Reply {
                    surb_ack: Some(surb_ack.0),
                    lifetime: None,
                    fragment: state.fragment.clone(),
                }
                .encode()
                .and_then(|frame| builder.format.use_surb(&surb, &frame))
                .map_err(ClientError::from)
                .map(|packet| (packet, config.reply_ack_timeout.saturating_add(back)))
            }
        };
        if state.sends > 0 {
            stats.retransmissions += 1;
        }
        state.sends += 1;
        let kind = if blame {
            TransmissionKind::Fragment {
                id: fid,
                copy: state.sends,
            }
        } else {
            TransmissionKind::ReplyFragment {
                id: fid,
                copy: state.sends,
            }
        };
        let Ok((packet, round_trip)) = built else {
            // No route to the recipient's gateway, or a SURB that does not
            // parse: this copy is lost before it leaves. It counts as a
            // transmission, so a message that can never leave fails instead
            // of blocking the queue; the next fragment takes the tick.
            stats.unsendable += 1;
            state.unbuilt += 1;
            let deadline = now.saturating_add(config.ack_margin);
            state.deadline = Some(deadline);
            state.pending = None;
            self.deadlines.insert((deadline, fid));
            return Attempt::Skip;
        };
        let deadline = now.saturating_add(round_trip.saturating_add(config.ack_margin));
        state.deadline = Some(deadline);
        state.first_sent.get_or_insert(now);
        state.surb_acks.push(surb_id);
        state.pending = Some(surb_id);
        self.deadlines.insert((deadline, fid));
        mixes.sort_unstable();
        mixes.dedup();
        self.ack_table.insert(
            surb_id,
            AckEntry {
                fragment: fid,
                recovery,
                mixes: mixes.into(),
                blame,
            },
        );
        Attempt::Sent(Transmission { packet, kind })
    }

    /// Reads a packet that came back through one of our SURB-acks; a real
    /// ack tells `health` that every mix node of that copy worked.
    pub(crate) fn handle_ack(
        &mut self,
        surb_id: &SurbId,
        payload: &[u8],
        health: &mut NodeHealth,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) -> DeliveryOutcome {
        let Some(entry) = self.ack_table.get(surb_id) else {
            return stats.drop_delivery(DeliveryDrop::UnknownSurb);
        };
        let fragment_id = entry.fragment;
        let frame = entry
            .recovery
            .open(payload)
            .and_then(|bytes| Frame::decode(&bytes));
        // A payload that does not open under the SURB's keys is not its
        // answer: the SURB stays valid for the real one.
        let entry = if frame.is_ok() {
            self.ack_table.remove(surb_id)
        } else {
            None
        };
        match frame {
            // The SURB was made for this one fragment: what came back
            // through it acknowledges that fragment.
            Ok(Frame::Ack) => {
                if let Some(entry) = entry {
                    health.record_success(&entry.mixes);
                }
                self.acknowledge(fragment_id, stats, events);
                DeliveryOutcome::Acked
            }
            Ok(_) => stats.drop_delivery(DeliveryDrop::UnexpectedKind),
            Err(_) => stats.drop_delivery(DeliveryDrop::NotAFrame),
        }
    }

    fn acknowledge(&mut self, fid: FragmentId, stats: &mut ClientStats, events: &mut EventQueue) {
        let Some(message) = self.messages.get_mut(&fid.message) else {
            stats.duplicate_acks += 1;
            return;
        };
        let Some(state) = message.fragments.get_mut(usize::from(fid.index)) else {
            stats.duplicate_acks += 1;
            return;
        };
        if state.acked {
            stats.duplicate_acks += 1;
            return;
        }
        stats.acks_received += 1;
        state.acked = true;
        if let Some(deadline) = state.deadline.take() {
            self.deadlines.remove(&(deadline, fid));
        }
        state.pending = None;
        for id in state.surb_acks.drain(..) {
            self.ack_table.remove(&id);
        }
        message.acked += 1;
        self.unacked = self.unacked.saturating_sub(1);
        let (acked, total) = (message.acked, message.fragments.len());
        events.push(
            ClientEvent::Progress {
                id: fid.message,
                acked,
                total,
            },
            stats,
        );
        if acked == total {
            self.messages.remove(&fid.message);
            events.push(ClientEvent::Delivered { id: fid.message }, stats);
        }
    }

    /// Handles the deadlines that passed by `now`: a failure in `health` for
    /// the mix nodes of the late copy, then requeue or fail.
    pub(crate) fn handle_deadlines(
        &mut self,
        now: Timestamp,
        config: &ClientConfig,
        health: &mut NodeHealth,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) {
        while let Some(&(deadline, fid)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, fid));
            let Some(state) = self
                .messages
                .get_mut(&fid.message)
                .and_then(|m| m.fragments.get_mut(usize::from(fid.index)))
            else {
                continue;
            };
            if state.acked || state.deadline != Some(deadline) {
                continue;
            }
            state.deadline = None;
            // The entry stays: a late ack still counts, and clears the nodes.
            if let Some(entry) = state.pending.take().and_then(|id| self.ack_table.get(&id))
                && entry.blame
            {
                stats.route_failures += 1;
                health.record_failure(now, &entry.mixes);
            }
            if state.sends > config.max_retransmissions {
                let reason = match state.first_sent {
                    Some(first) if state.unbuilt < state.sends => SendFailure::NoAck {
                        tries: state.sends - state.unbuilt,
                        over: now.saturating_duration_since(first),
                    },
                    _ => SendFailure::Unsendable { tries: state.sends },
                };
                self.fail(fid.message, reason, stats, events);
            } else {
                self.queue.push_front(fid);
            }
        }
    }

    /// Gives up on a message whose expiry passed before a copy could leave.
    fn expire(&mut self, id: MessageId, stats: &mut ClientStats, events: &mut EventQueue) {
        if self.messages.contains_key(&id) {
            stats.expired_unsent += 1;
            self.fail(id, SendFailure::Expired, stats, events);
        }
    }

    /// Gives up on a message: forgets its fragments and SURB-acks.
    fn fail(
        &mut self,
        id: MessageId,
        reason: SendFailure,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) {
        let Some(message) = self.messages.remove(&id) else {
            return;
        };
        for state in message.fragments {
            if !state.acked {
                self.unacked = self.unacked.saturating_sub(1);
            }
            if let Some(deadline) = state.deadline {
                self.deadlines.remove(&(deadline, state.fragment.id));
            }
            for surb_id in state.surb_acks {
                self.ack_table.remove(&surb_id);
            }
        }
        stats.send_failures += 1;
        events.push(ClientEvent::SendFailed { id, reason }, stats);
    }
}

/// Whole seconds (rounded down) from the arrival of a packet sent at `now`
/// over `route` at the recipient's gateway until `expires_at`; `None` when
/// that is less than one second.
fn lifetime_at(now: Timestamp, route: &ForwardRoute, expires_at: Timestamp) -> Option<u32> {
    let arrival = now.saturating_add(route.delay());
    let secs = expires_at.saturating_duration_since(arrival).as_secs();
    (secs > 0).then(|| u32::try_from(secs).unwrap_or(u32::MAX))
}

/// The frame a copy of fragment `index` of a message in `role` travels in.
fn recall_frame(role: &RecallRole, index: u16, mut frame: protocol::frame::ForwardFrame) -> Frame {
    match role {
        RecallRole::None => Frame::Forward(frame),
        RecallRole::Tagged(secret) => {
            frame.recall_tag = secret.tag(index);
            Frame::Forward(frame)
        }
        RecallRole::Reveals { secret, fragments } => Frame::Recall(RecallFrame {
            secret: secret.clone(),
            fragments: *fragments,
            surb_ack: frame.surb_ack,
            sealed: frame.sealed,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use protocol::frame::{ForwardFrame, LifetimeBucket, SURB_ACK_SIZE};
    use protocol::recall::RecallTag;
    use protocol::seal::SEALED_SIZE;

    fn forward() -> ForwardFrame {
        ForwardFrame {
            lifetime: LifetimeBucket::Unset,
            recall_tag: RecallTag([1; 32]),
            surb_ack: vec![2; SURB_ACK_SIZE],
            sealed: Box::new([3; SEALED_SIZE]),
        }
    }

    #[test]
    fn each_role_makes_its_frame() {
        let secret = RecallSecret([9; 32]);
        // No recall: the frame keeps the random tag it was sealed with.
        assert_eq!(
            recall_frame(&RecallRole::None, 4, forward()),
            Frame::Forward(forward())
        );
        // Recallable: fragment i carries t_i.
        for index in [0, 1, 7] {
            let Frame::Forward(frame) =
                recall_frame(&RecallRole::Tagged(secret.clone()), index, forward())
            else {
                panic!("a forward frame");
            };
            assert_eq!(frame.recall_tag, secret.tag(index));
            assert_eq!(frame.sealed, forward().sealed);
        }
        // A recall: the secret and the count, the SURB-ack and the sealed notice.
        let role = RecallRole::Reveals {
            secret: secret.clone(),
            fragments: 5,
        };
        let Frame::Recall(recall) = recall_frame(&role, 0, forward()) else {
            panic!("a recall frame");
        };
        assert_eq!((recall.secret, recall.fragments), (secret, 5));
        assert_eq!(recall.surb_ack, forward().surb_ack);
        assert_eq!(recall.sealed, forward().sealed);
    }
}
