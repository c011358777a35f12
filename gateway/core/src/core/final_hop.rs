//! Final-hop handling: what the gateway does with the packets its exit mixer
//! unwrapped for its clients.
//!
//! Deliveries are handled in batches: every message of a batch is committed to
//! the mailbox in one transaction (one disk sync), and only once that commit
//! has returned are the batch's SURB-acks built. The shell hands over whatever
//! deliveries the exit mixer produced since the last call.

use std::time::Duration;

use protocol::fragment::FragmentId;
use protocol::frame::Frame;
use protocol::packet::Delivery;
use protocol::surb::{Surb, open_forward_payload, use_surb};
use protocol::time::Timestamp;

use super::{GatewayAction, GatewayCore};
use crate::mailbox::{ClientKey, MailboxStore, NewMessage, PutError};
use crate::stats::GatewayDropReason;
use protocol::link::MAX_DELIVER_PAYLOAD;

/// What the final hop did with one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalHop {
    /// Committed to the client's mailbox; `acked` if its SURB-ack was sent.
    Stored {
        /// Whether a SURB-ack went back to the sender.
        acked: bool,
    },
    /// Not stored, for this reason (also counted).
    Dropped(GatewayDropReason),
}

/// What the final hop did with a batch of deliveries: one outcome per
/// delivery, in order, and the actions for the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalHopReport {
    /// One per delivery handed over, in the same order.
    pub outcomes: Vec<FinalHop>,
    /// SURB-acks to send and deliveries to push to online clients.
    pub actions: Vec<GatewayAction>,
}

/// The SURB-ack to send once a data fragment is stored.
struct PendingAck {
    surb: Vec<u8>,
    fragment: FragmentId,
}

impl<S: MailboxStore> GatewayCore<S> {
    /// The exit mixer unwrapped a final-hop packet for `delivery.destination`.
    /// See [`GatewayCore::handle_deliveries`].
    pub fn handle_delivery(&mut self, now: Timestamp, delivery: Delivery) -> FinalHopReport {
        self.handle_deliveries(now, [delivery])
    }

    /// Handles final-hop packets: stores what is for registered clients (all
    /// in one commit), then returns the SURB-acks of the stored data fragments
    /// as [`GatewayAction::Forward`]s and pushes the new messages to clients
    /// that are online. A message that was not stored is never acked.
    pub fn handle_deliveries(
        &mut self,
        now: Timestamp,
        deliveries: impl IntoIterator<Item = Delivery>,
    ) -> FinalHopReport {
        let mut to_store = Vec::new();
        let mut acks = Vec::new();
        // Where each stored message's outcome goes in `outcomes`.
        let mut slots = Vec::new();
        let mut outcomes = Vec::new();
        for delivery in deliveries {
            match self.classify(delivery) {
                Ok((message, ack)) => {
                    slots.push(outcomes.len());
                    outcomes.push(FinalHop::Stored { acked: false });
                    to_store.push(message);
                    acks.push(ack);
                }
                Err(reason) => outcomes.push(FinalHop::Dropped(reason)),
            }
        }
        // A sender's lifetime shorter than the sweep interval brings the next
        // sweep forward, so the message is not kept past it.
        if let Some(earliest) = to_store
            .iter()
            .filter_map(|m| m.lifetime)
            .min()
            .map(|lifetime| now.saturating_add(lifetime))
        {
            self.next_sweep = self.next_sweep.min(earliest);
        }
        let clients: Vec<ClientKey> = to_store.iter().map(|m| m.client).collect();
        let results = self.mailbox.put_batch(now, to_store);

        let mut actions = Vec::new();
        let mut to_push: Vec<ClientKey> = Vec::new();
        for (((result, ack), client), slot) in results.into_iter().zip(acks).zip(clients).zip(slots)
        {
            let outcome = match result {
                Ok(_) => {
                    self.stats.stored();
                    if !to_push.contains(&client) {
                        to_push.push(client);
                    }
                    if let Some(ack) = ack {
                        let packet = Frame::Ack {
                            fragment: ack.fragment,
                        }
                        .encode()
                        .and_then(|frame| use_surb(&Surb(ack.surb), &frame));
                        match packet {
                            Ok(packet) => {
                                self.stats.ack_sent();
                                actions.push(GatewayAction::Forward(packet));
                                FinalHop::Stored { acked: true }
                            }
                            Err(_) => {
                                self.stats.ack_failed();
                                FinalHop::Stored { acked: false }
                            }
                        }
                    } else {
                        FinalHop::Stored { acked: false }
                    }
                }
                Err(PutError::Full) => {
                    self.stats.dropped(GatewayDropReason::MailboxFull);
                    FinalHop::Dropped(GatewayDropReason::MailboxFull)
                }
                Err(PutError::Store(_)) => {
                    self.stats.dropped(GatewayDropReason::StoreFailed);
                    FinalHop::Dropped(GatewayDropReason::StoreFailed)
                }
            };
            if let Some(slot) = outcomes.get_mut(slot) {
                *slot = outcome;
            }
        }
        if !to_push.is_empty() {
            self.update_gauges();
        }
        for client in to_push {
            if let Some(session) = self.online.get(&client).copied() {
                self.pump(session, &mut actions);
            }
        }
        FinalHopReport { outcomes, actions }
    }

    /// What to store for a delivery and the ack to send once it is stored,
    /// or why (counted) it is dropped.
    fn classify(
        &self,
        delivery: Delivery,
    ) -> Result<(NewMessage, Option<PendingAck>), GatewayDropReason> {
        let drop = |reason| {
            self.stats.dropped(reason);
            Err(reason)
        };
        let client = delivery.destination;
        if !self.clients.contains(&client) {
            return drop(GatewayDropReason::UnknownClient);
        }
        let message = |payload: Vec<u8>, lifetime: Option<u32>| NewMessage {
            client,
            surb_id: delivery.surb_id,
            payload,
            lifetime: lifetime.map(|secs| Duration::from_secs(u64::from(secs))),
        };
        if !delivery.surb_id.is_forward() {
            // A SURB reply (or an ack through a SURB): sealed for the client,
            // stored as it came (its frame's lifetime cannot be read here).
            if delivery.payload.len() > MAX_DELIVER_PAYLOAD {
                return drop(GatewayDropReason::BadPayload);
            }
            return Ok((message(delivery.payload, None), None));
        }
        let Ok(frame) = open_forward_payload(&delivery.payload).and_then(|f| Frame::decode(&f))
        else {
            return drop(GatewayDropReason::BadPayload);
        };
        match frame {
            Frame::DataFragment {
                surb_ack,
                lifetime,
                fragment,
            } => {
                let ack = surb_ack.map(|surb| PendingAck {
                    surb,
                    fragment: fragment.id,
                });
                // The SURB-ack and the lifetime are sender material: used
                // here (the lifetime becomes the record's expiry), never stored.
                let stored = Frame::DataFragment {
                    surb_ack: None,
                    lifetime: None,
                    fragment,
                }
                .encode();
                match stored {
                    Ok(bytes) => Ok((message(bytes, lifetime), ack)),
                    Err(_) => drop(GatewayDropReason::BadPayload),
                }
            }
            // The client counts its own loops: they reach it like data.
            Frame::LoopCover => match Frame::LoopCover.encode() {
                Ok(bytes) => Ok((message(bytes, None), None)),
                Err(_) => drop(GatewayDropReason::BadPayload),
            },
            Frame::DropCover => drop(GatewayDropReason::DropCover),
            Frame::Ack { .. } | Frame::Reply { .. } => drop(GatewayDropReason::UnexpectedFrame),
        }
    }
}
