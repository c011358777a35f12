//! Final-hop handling: what the gateway does with the packets its exit mixer
//! unwrapped for its clients.
//!
//! Deliveries are handled in batches. A message for an online client with
//! room in its window is pushed to it at once and held in memory (`held.rs`);
//! every other message of a batch is committed to the mailbox in one
//! transaction (one disk sync). Every SURB-ack is built at once and leaves
//! at its fixed instant, and only if its message was committed or taken. The
//! shell hands over whatever deliveries the exit mixer produced since the
//! last call.
//!
//! A recall frame is handled in the same pass: the bodies of the client's
//! mailbox whose recall tags its secret gives are deleted at once (one
//! commit); its sealed notice is then stored like any message, whatever was
//! found (a body found may be a retransmitted copy of one the client has
//! already taken, so finding every fragment does not prove the message
//! unseen), and its SURB-ack goes back.
//!
//! A packet to the gateway's own prekey service
//! ([`PREKEY_SERVICE_DESTINATION`]) is answered (or dropped) at once, apart
//! from the batch: it stores nothing in the mailbox (`prekey_service.rs`).

use protocol::address::{DROP_DESTINATION, PREKEY_SERVICE_DESTINATION};
use protocol::format::PacketFormat;
use protocol::frame::{Frame, RecallFrame};
use protocol::link::DELIVERY_PAYLOAD_SIZE;
use protocol::packet::Delivery;
use protocol::recall::MAX_RECALL_FRAGMENTS;
use protocol::surb::SurbId;
use protocol::time::Timestamp;

use std::collections::BTreeMap;

use super::{GatewayAction, GatewayCore, SessionId};
use crate::mailbox::{ClientKey, MailboxStore, NewMessage, PutError};
use crate::stats::{GatewayDropReason, PrekeyRequestOutcome};

/// What the final hop did with one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalHop {
    /// Committed to the client's mailbox; `acked` if its SURB-ack was made.
    Stored {
        /// Whether a SURB-ack goes back to the sender (at its instant).
        acked: bool,
    },
    /// Pushed to its online client and held in memory: stored only if the
    /// client does not acknowledge it in time; `acked` if its SURB-ack was
    /// made (it leaves at its instant if the message was taken or stored).
    Pushed {
        /// Whether a SURB-ack waits for its instant.
        acked: bool,
    },
    /// Drop cover: its SURB-ack made (if it could be built), nothing stored.
    Discarded {
        /// Whether a SURB-ack goes back to the sender (at its instant).
        acked: bool,
    },
    /// Not stored, for this reason (also counted).
    Dropped(GatewayDropReason),
    /// A recall: `deleted` messages of the client's mailbox went, and its
    /// notice was kept for the client (stored, or pushed and held).
    Recalled {
        /// Messages deleted.
        deleted: u64,
        /// Whether a SURB-ack goes back to the sender (at its instant).
        acked: bool,
    },
    /// A packet to the prekey service: answered through its SURBs, or
    /// dropped, as the outcome says (also counted).
    Prekey(PrekeyRequestOutcome),
}

/// What [`GatewayCore::classify`] makes of one delivery.
struct Classified {
    /// What to store, if anything.
    message: Option<NewMessage>,
    /// The SURB-ack to send once stored (or at once when nothing is).
    ack: Option<PendingAck>,
    /// For a recall: how many messages it deleted.
    recalled: Option<u64>,
}

/// What the final hop did with a batch of deliveries: one outcome per
/// delivery, in order, and the actions for the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalHopReport {
    /// One per delivery handed over, in the same order.
    pub outcomes: Vec<FinalHop>,
    /// SURB-acks due now and deliveries to push to online clients.
    pub actions: Vec<GatewayAction>,
}

/// The SURB-ack of a forward packet, to build and send at its instant.
pub(super) struct PendingAck {
    pub(super) surb: Vec<u8>,
}

impl<S: MailboxStore, F: PacketFormat> GatewayCore<S, F> {
    /// The exit mixer unwrapped a final-hop packet for `delivery.destination`.
    /// See [`GatewayCore::handle_deliveries`].
    pub fn handle_delivery(&mut self, now: Timestamp, delivery: Delivery) -> FinalHopReport {
        self.handle_deliveries(now, [delivery])
    }

    /// Handles final-hop packets: pushes what is for online clients with
    /// room in their window and holds it, stores the rest of what is for
    /// registered clients (all in one commit), and pushes the new messages
    /// to clients that are online. Every SURB-ack leaves
    /// [`GatewayConfig::surb_ack_hold`](super::GatewayConfig::surb_ack_hold)
    /// after `now` (from [`GatewayCore::handle_timeout`], or in the report
    /// when the hold is zero); a message neither stored nor taken is never
    /// acked.
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
        let mut actions = Vec::new();
        // Held deliveries' pushes, one write per session.
        let mut pushes: BTreeMap<SessionId, Vec<u8>> = BTreeMap::new();
        for delivery in deliveries {
            if delivery.destination == PREKEY_SERVICE_DESTINATION {
                let outcome = self.bundle_request(delivery, &mut actions);
                outcomes.push(FinalHop::Prekey(outcome));
                continue;
            }
            match self.classify(delivery) {
                Ok(Classified {
                    message: Some(message),
                    ack,
                    recalled,
                }) => {
                    if let Some(session) = self.holding_session(&message.client) {
                        let acked = self.hold(now, session, message, ack, &mut pushes);
                        outcomes.push(match recalled {
                            Some(deleted) => FinalHop::Recalled { deleted, acked },
                            None => FinalHop::Pushed { acked },
                        });
                        continue;
                    }
                    slots.push((outcomes.len(), recalled));
                    outcomes.push(FinalHop::Stored { acked: false });
                    to_store.push(message);
                    acks.push(ack);
                }
                Ok(Classified {
                    message: None, ack, ..
                }) => {
                    let acked = ack.is_some_and(|ack| self.schedule_ack(now, ack).is_some());
                    outcomes.push(FinalHop::Discarded { acked });
                }
                Err(reason) => outcomes.push(FinalHop::Dropped(reason)),
            }
        }
        self.sweep_by_lifetimes(now, &to_store);
        let clients: Vec<ClientKey> = to_store.iter().map(|m| m.client).collect();
        // Acknowledgements read but not yet committed
        // ([`GatewayCore::read_client_bytes`]) are deleted in the same commit.
        let acked = std::mem::take(&mut self.acked);
        let (results, deleted) = self.mailbox.put_batch_deleting(now, to_store, &acked);

        let mut to_push: Vec<ClientKey> = Vec::new();
        for (((result, ack), client), (slot, recalled)) in
            results.into_iter().zip(acks).zip(clients).zip(slots)
        {
            let outcome = match result {
                Ok(_) => {
                    self.stats.stored();
                    if !to_push.contains(&client) {
                        to_push.push(client);
                    }
                    let acked = ack.is_some_and(|ack| self.schedule_ack(now, ack).is_some());
                    match recalled {
                        Some(deleted) => FinalHop::Recalled { deleted, acked },
                        None => FinalHop::Stored { acked },
                    }
                }
                Err(e) => FinalHop::Dropped(self.refused(&e)),
            };
            if let Some(slot) = outcomes.get_mut(slot) {
                *slot = outcome;
            }
        }
        if !to_push.is_empty() {
            self.update_gauges();
        }
        for (session, bytes) in pushes {
            actions.push(GatewayAction::Send { session, bytes });
        }
        for client in to_push {
            if let Some(session) = self.online.get(&client).copied() {
                self.pump(session, &mut actions);
            }
        }
        self.acks_deleted(deleted.ok(), &mut actions);
        self.release_acks(now, &mut actions);
        FinalHopReport { outcomes, actions }
    }

    /// A sender's lifetime shorter than the sweep interval brings the next
    /// sweep forward, so that a message stored `now` is not kept past it.
    pub(super) fn sweep_by_lifetimes(&mut self, now: Timestamp, stored: &[NewMessage]) {
        if let Some(earliest) = stored
            .iter()
            .filter_map(|m| m.lifetime)
            .min()
            .map(|lifetime| now.saturating_add(lifetime))
        {
            self.next_sweep = self.next_sweep.min(earliest);
        }
    }

    /// Counts a message the mailbox refused; returns why.
    pub(super) fn refused(&self, e: &PutError) -> GatewayDropReason {
        let reason = match e {
            PutError::Full => GatewayDropReason::MailboxFull,
            PutError::Store(_) => GatewayDropReason::StoreFailed,
        };
        self.stats.dropped(reason);
        reason
    }

    /// What to store for a delivery and the ack to send once it is stored,
    /// or why (counted) it is dropped. The frame is decoded here, once; the
    /// gateway reads the SURB-ack and the lifetime bucket, and stores the
    /// sealed body as it came, padded to the one delivery size.
    fn classify(&mut self, delivery: Delivery) -> Result<Classified, GatewayDropReason> {
        let drop = |reason| {
            self.stats.dropped(reason);
            Err(reason)
        };
        let client = delivery.destination;
        let is_drop = client == DROP_DESTINATION;
        if !is_drop && !self.clients.contains_key(&client) {
            return drop(GatewayDropReason::UnknownClient);
        }
        if !delivery.surb_id.is_forward() {
            // A SURB packet (a reply, or an ack through a SURB): sealed for
            // the client, stored as it came.
            if is_drop || delivery.payload.len() != DELIVERY_PAYLOAD_SIZE {
                return drop(GatewayDropReason::BadPayload);
            }
            let message = NewMessage {
                client,
                surb_id: delivery.surb_id,
                payload: delivery.payload,
                lifetime: None,
                recall_tag: None,
                id: None,
            };
            return Ok(Classified {
                message: Some(message),
                ack: None,
                recalled: None,
            });
        }
        let frame = match self
            .format
            .open_forward_payload(&delivery.payload)
            .and_then(|f| Frame::decode(&f))
        {
            Ok(Frame::Forward(frame)) => frame,
            Ok(Frame::Recall(recall)) if !is_drop => {
                return self.recall(delivery.surb_id, client, recall);
            }
            _ => return drop(GatewayDropReason::BadPayload),
        };
        if is_drop {
            // Drop cover: acknowledged like mail (so its sender's gateway
            // sees one packet back for every packet out), then discarded.
            self.stats.dropped(GatewayDropReason::DropCover);
            return Ok(Classified {
                message: None,
                ack: Some(PendingAck {
                    surb: frame.surb_ack,
                }),
                recalled: None,
            });
        }
        let message = NewMessage {
            client,
            surb_id: delivery.surb_id,
            payload: frame.delivery_payload(),
            lifetime: frame.lifetime.duration(),
            recall_tag: Some(frame.recall_tag),
            id: None,
        };
        Ok(Classified {
            message: Some(message),
            ack: Some(PendingAck {
                surb: frame.surb_ack,
            }),
            recalled: None,
        })
    }

    /// A recall for `client`: deletes the bodies its secret names (at once,
    /// one commit); its notice is stored whatever was found, since another
    /// copy of a fragment found here may have reached the client already
    /// (a retransmission whose ack was late), and the client judges it.
    fn recall(
        &mut self,
        surb_id: SurbId,
        client: ClientKey,
        recall: RecallFrame,
    ) -> Result<Classified, GatewayDropReason> {
        if recall.fragments == 0 || recall.fragments > MAX_RECALL_FRAGMENTS {
            self.stats.dropped(GatewayDropReason::BadRecall);
            return Err(GatewayDropReason::BadRecall);
        }
        let tags = recall.secret.tags(recall.fragments);
        let mut deletion = match self.mailbox.recall(&client, &tags) {
            Ok(deletion) => deletion,
            Err(_) => {
                self.stats.dropped(GatewayDropReason::StoreFailed);
                return Err(GatewayDropReason::StoreFailed);
            }
        };
        if deletion.deleted > 0 {
            self.update_gauges();
        }
        // Held ones were pushed already, so they count as delivered (their
        // acks still leave); they are no longer stored if not taken.
        let held = self.held.take_tagged(&client, &tags);
        if held > 0 {
            deletion.deleted += held;
            self.stats.set_held(self.held.len() as u64);
        }
        self.stats.recall(deletion.deleted);
        let message = Some(NewMessage {
            client,
            surb_id,
            payload: recall.delivery_payload(),
            lifetime: None,
            recall_tag: None,
            id: None,
        });
        Ok(Classified {
            message,
            ack: Some(PendingAck {
                surb: recall.surb_ack,
            }),
            recalled: Some(deletion.deleted),
        })
    }
}
