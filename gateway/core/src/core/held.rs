//! Deliver first, store only what is not taken in time, and send every
//! SURB-ack at one fixed instant.
//!
//! Most of what reaches a gateway is for clients that are online: their
//! mail, their replies, and their own loop cover, which the gateway cannot
//! tell apart. Writing each of them to the durable mailbox, reading it back
//! to push it and deleting it when the client acknowledges it cost a
//! gateway most of a Sphinx unwrap per packet (docs/performance.md). So a
//! delivery for an online client with room in its window is pushed at once
//! from memory and held; it is written to the mailbox only if the client
//! has not acknowledged it by half the hold ([`HeldDeliveries`]).
//!
//! Durability is kept: a message's SURB-ack leaves only once the message is
//! either committed to the mailbox or acknowledged by its client, which
//! acknowledges only what it holds in its own state. A gateway that
//! crashes loses only held messages whose SURB-ack has not left, so their
//! senders retransmit.
//!
//! The ack's timing is kept from telling anything: whether a message was
//! taken from memory, stored at once (its client offline), or stored after
//! the hold, and whether it was mail or drop cover, its SURB-ack leaves
//! [`GatewayConfig::surb_ack_hold`](super::GatewayConfig::surb_ack_hold)
//! after the delivery reached the core ([`DueAcks`]). Were the ack sent as
//! soon as it could be, its sender could time acks and learn whether the
//! recipient is online, which is what the mailbox is there to hide.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use protocol::format::PacketFormat;
use protocol::frame::Frame;
use protocol::link::{GatewayMessage, LinkMessage};
use protocol::packet::OutgoingPacket;
use protocol::recall::RecallTag;
use protocol::surb::Surb;
use protocol::time::Timestamp;

use super::final_hop::PendingAck;
use super::{GatewayAction, GatewayCore, Session, SessionId, SessionState};
use crate::mailbox::{ClientKey, MailboxId, MailboxStore, NewMessage};

/// How far past its instant a SURB-ack may leave before it counts as late:
/// a few turns of the binary's core loop (10 ms each by default).
pub const ACK_LATE_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// A delivery pushed to its client before it was stored.
pub(super) struct HeldMessage {
    /// When it reached the core: its retention counts from then.
    pub(super) arrival: Timestamp,
    /// The message, with its reserved id, as it would be stored.
    pub(super) message: NewMessage,
    /// Its SURB-ack in [`DueAcks`], cancelled if the message cannot be stored.
    pub(super) ack: Option<AckKey>,
}

/// Deliveries pushed and held in memory, by mailbox id, with the instants
/// they are due to be stored.
#[derive(Default)]
pub(super) struct HeldDeliveries {
    messages: HashMap<MailboxId, HeldMessage>,
    deadlines: BTreeSet<(Timestamp, MailboxId)>,
}

impl HeldDeliveries {
    /// Holds `held` until `store_at`.
    pub(super) fn hold(&mut self, id: MailboxId, store_at: Timestamp, held: HeldMessage) {
        self.deadlines.insert((store_at, id));
        self.messages.insert(id, held);
    }

    /// Removes message `id` if `client` holds it (it was taken, or is being stored).
    pub(super) fn take(&mut self, client: &ClientKey, id: MailboxId) -> Option<HeldMessage> {
        if self.messages.get(&id)?.message.client != *client {
            return None;
        }
        self.messages.remove(&id)
    }

    /// Removes the messages due to be stored by `now`.
    pub(super) fn due(&mut self, now: Timestamp) -> Vec<HeldMessage> {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            due.extend(self.messages.remove(&id));
        }
        due
    }

    /// Removes every message held for `client`.
    pub(super) fn take_client(&mut self, client: &ClientKey) -> Vec<HeldMessage> {
        self.messages
            .extract_if(|_, h| h.message.client == *client)
            .map(|(_, h)| h)
            .collect()
    }

    /// Removes the messages held for `client` under one of `tags` (a recall).
    pub(super) fn take_tagged(&mut self, client: &ClientKey, tags: &[RecallTag]) -> u64 {
        let before = self.messages.len();
        self.messages.retain(|_, h| {
            h.message.client != *client || !h.message.recall_tag.is_some_and(|t| tags.contains(&t))
        });
        (before - self.messages.len()) as u64
    }

    /// When the next message is due to be stored. A deadline whose message
    /// was taken meanwhile stays until it is reached (and then finds nothing).
    pub(super) fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Messages held now.
    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }
}

/// Where a SURB-ack waits in [`DueAcks`].
pub(super) type AckKey = (Timestamp, u64);

/// SURB-acks built and waiting for their instant.
#[derive(Default)]
pub(super) struct DueAcks {
    acks: BTreeMap<AckKey, OutgoingPacket>,
    next: u64,
}

impl DueAcks {
    /// Sends `packet` at `at`.
    pub(super) fn schedule(&mut self, at: Timestamp, packet: OutgoingPacket) -> AckKey {
        let key = (at, self.next);
        self.next = self.next.wrapping_add(1);
        self.acks.insert(key, packet);
        key
    }

    /// Withdraws an ack whose message could not be stored.
    pub(super) fn cancel(&mut self, key: AckKey) {
        self.acks.remove(&key);
    }

    /// Removes the acks due by `now`, in order, each with its instant.
    pub(super) fn due(&mut self, now: Timestamp) -> Vec<(Timestamp, OutgoingPacket)> {
        let mut due = Vec::new();
        while let Some(entry) = self.acks.first_entry() {
            let at = entry.key().0;
            if at > now {
                break;
            }
            due.push((at, entry.remove()));
        }
        due
    }

    /// When the next ack is due.
    pub(super) fn next_instant(&self) -> Option<Timestamp> {
        self.acks.first_key_value().map(|((at, _), _)| *at)
    }
}

impl<S: MailboxStore, F: PacketFormat> GatewayCore<S, F> {
    /// The session a delivery for `client` is pushed in at once, if any: the
    /// client is online, has room in its window, and nothing stored waits
    /// to be pushed before it (pushes go in id order).
    pub(super) fn holding_session(&self, client: &ClientKey) -> Option<SessionId> {
        if self.config.surb_ack_hold.is_zero() {
            return None;
        }
        let session = *self.online.get(client)?;
        let Some(Session {
            state: SessionState::Authenticated {
                in_flight, cursor, ..
            },
            ..
        }) = self.sessions.get(&session)
        else {
            return None;
        };
        if in_flight.len() >= self.config.delivery_window {
            return None;
        }
        let waiting = self.mailbox.list(client, *cursor, 1).ok()?;
        waiting.is_empty().then_some(session)
    }

    /// Pushes `message` in `session` (its bytes added to `pushes`) and holds
    /// it until half the ack hold; schedules its SURB-ack. Returns whether
    /// there is an ack.
    pub(super) fn hold(
        &mut self,
        now: Timestamp,
        session: SessionId,
        mut message: NewMessage,
        ack: Option<PendingAck>,
        pushes: &mut BTreeMap<SessionId, Vec<u8>>,
    ) -> bool {
        let id = self.mailbox.reserve_id();
        message.id = Some(id);
        let ack = ack.and_then(|ack| self.schedule_ack(now, ack));
        if let Some(Session {
            state: SessionState::Authenticated {
                in_flight, cursor, ..
            },
            ..
        }) = self.sessions.get_mut(&session)
        {
            in_flight.insert(id);
            *cursor = Some(id);
        }
        self.stats.delivered();
        GatewayMessage::Deliver {
            mailbox_id: id.0,
            surb_id: message.surb_id,
            payload: message.payload.clone(),
        }
        .encode_into(pushes.entry(session).or_default());
        let store_at = now.saturating_add(self.config.surb_ack_hold / 2);
        let held = HeldMessage {
            arrival: now,
            message,
            ack,
        };
        self.held.hold(id, store_at, held);
        self.stats.set_held(self.held.len() as u64);
        ack.is_some()
    }

    /// Stores messages that were held and not taken (one commit). One that
    /// cannot be stored loses its SURB-ack (counted as dropped): its sender
    /// retransmits.
    pub(super) fn store_held(&mut self, now: Timestamp, held: Vec<HeldMessage>) {
        if held.is_empty() {
            return;
        }
        let mut acks = Vec::with_capacity(held.len());
        let messages: Vec<NewMessage> = held
            .into_iter()
            .map(|h| {
                acks.push(h.ack);
                // The sender's lifetime counts from the arrival.
                let elapsed = now.saturating_duration_since(h.arrival);
                let lifetime = h.message.lifetime.map(|l| l.saturating_sub(elapsed));
                NewMessage {
                    lifetime,
                    ..h.message
                }
            })
            .collect();
        self.sweep_by_lifetimes(now, &messages);
        let results = self.mailbox.put_batch(now, messages);
        for (result, ack) in results.into_iter().zip(acks) {
            match result {
                Ok(_) => self.stats.stored(),
                Err(e) => {
                    self.refused(&e);
                    if let Some(ack) = ack {
                        self.due_acks.cancel(ack);
                    }
                }
            }
        }
        self.stats.set_held(self.held.len() as u64);
        self.update_gauges();
    }

    /// Builds `ack`'s packet and schedules it for the hold's end after `now`;
    /// `None` (counted) if it cannot be built.
    pub(super) fn schedule_ack(&mut self, now: Timestamp, ack: PendingAck) -> Option<AckKey> {
        let packet = Frame::Ack
            .encode()
            .and_then(|frame| self.format.use_surb(&Surb(ack.surb), &frame));
        match packet {
            Ok(packet) => {
                let at = now.saturating_add(self.config.surb_ack_hold);
                Some(self.due_acks.schedule(at, packet))
            }
            Err(_) => {
                self.stats.ack_failed();
                None
            }
        }
    }

    /// Sends the SURB-acks due by `now`; counts those leaving more than
    /// [`ACK_LATE_AFTER`] past their instant (a core that fell behind, or a
    /// slow commit: their timing no longer hides as well).
    pub(super) fn release_acks(&mut self, now: Timestamp, actions: &mut Vec<GatewayAction>) {
        for (at, packet) in self.due_acks.due(now) {
            self.stats.ack_sent();
            if now.saturating_duration_since(at) > ACK_LATE_AFTER {
                self.stats.ack_late();
            }
            actions.push(GatewayAction::Forward(packet));
        }
    }
}
