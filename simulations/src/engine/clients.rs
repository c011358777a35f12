//! The clients: each a real [`ClientCore`](client_core::ClientCore), driven as
//! the async client's driver drives it, and an application that hands it
//! messages and answers some of them.
//!
//! A wake at the core's `poll_timeout` drains `poll_transmit` (each packet
//! goes to the gateway in a `SendPacket` link message, as over the QUIC
//! session) and passes the core's events on. A mailbox push from the
//! gateway is decoded with the real link decoder, handed to
//! `handle_delivery`, and acknowledged to the gateway once the core returned,
//! as the driver does.

use std::time::Duration;

use client_core::ClientEvent;
use client_core::{ReplyHandle, Transmission, TransmissionKind};
use protocol::link::{ClientMessage, GatewayMessage, LinkMessage};
use protocol::packet::PACKET_SIZE;
use protocol::time::Timestamp;
use rand::RngExt;

use super::{Engine, InFlight, Message};
use crate::anonymity::Beliefs;
use crate::events::Event;
use crate::sim_codec::SimCodec;
use crate::tally::Kind;

/// How long after a wake that found nothing more to do the engine looks
/// again, if the core asks for an instant not after the wake (it never
/// should; this only keeps a misbehaving core from stalling virtual time).
const MIN_WAKE_GAP: Duration = Duration::from_micros(1);

impl<C: SimCodec> Engine<C> {
    /// Schedules client `c`'s wake at its core's `poll_timeout`, unless a
    /// wake at or before it is already due.
    pub(super) fn reschedule_client(&mut self, now: Timestamp, c: usize) {
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        if !client.online {
            return;
        }
        let Some(at) = client.core.poll_timeout() else {
            return;
        };
        let at = at.max(now);
        if client.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        client.wake_at = Some(at);
        self.schedule(at, Event::ClientWake(c as u32));
    }

    /// The application hands client `c` a new message for a random other client.
    pub(super) fn new_message(&mut self, now: Timestamp, c: usize) {
        if now >= self.traffic_end {
            return;
        }
        let clients = self.clients.len() as u32;
        let surbs = self.scenario.traffic.reply_surbs;
        let constrained = self.residency.as_ref().is_some_and(|r| r.is_constrained(c));
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        let mut to = if constrained {
            // Only clients whose gateway is in the allowed regions.
            let allowed = &self.allowed_recipients;
            let n = allowed.len().max(1);
            let mut i = client.app_rng.random_range(0..n);
            if allowed.get(i) == Some(&(c as u32)) && n > 1 {
                i = (i + 1) % n;
            }
            allowed.get(i).copied().unwrap_or(c as u32)
        } else {
            client.app_rng.random_range(0..clients)
        };
        if !constrained && to == c as u32 && clients > 1 {
            to = (to + 1) % clients;
        }
        client.messages.poll(now, &mut client.app_rng);
        let next = client.messages.next_tick();
        // Alice, under the intersection attack, writes only to her
        // correspondents.
        if c == 0
            && let Some(a) = &self.intersection
        {
            let pick = client
                .app_rng
                .random_range(0..a.correspondents.len().max(1));
            to = a.correspondents.get(pick).copied().unwrap_or(to);
        }
        // An offline device's application hands its core nothing.
        if !client.online {
            if let Some(t) = next {
                self.schedule(t, Event::NewMessage(c as u32));
            }
            return;
        }
        let Some(address) = self.addresses.get(to as usize) else {
            return;
        };
        let sent = client.core.send(
            now,
            address,
            &self.message_bytes,
            surbs,
            &mut client.core_rng,
        );
        let measured = now >= self.warmup;
        if measured {
            self.tally.delivery.messages_measured += 1;
        }
        match sent {
            Ok(id) => {
                self.by_id.insert(id, self.messages.len() as u32);
                self.messages.push(Message {
                    created: now,
                    measured,
                    reply: false,
                    received: false,
                });
            }
            // A full queue: the message is lost (it stays counted as measured).
            Err(_) => self.tally.delivery.client_queue_full += 1,
        }
        if let Some(t) = next {
            self.schedule(t, Event::NewMessage(c as u32));
        }
        self.reschedule_client(now, c);
    }

    /// Client `c`'s core is due: every packet it has goes to its gateway.
    pub(super) fn client_wake(&mut self, now: Timestamp, c: usize) {
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        if client.wake_at != Some(now) || !client.online {
            return; // superseded by an earlier wake
        }
        client.wake_at = None;
        while let Some(client) = self.clients.get_mut(c)
            && let Some(t) = client.core.poll_transmit(now, &mut client.core_rng)
        {
            self.transmit(now, c, t);
        }
        self.client_events(now, c);
        self.reschedule_client(now, c);
        if let Some(client) = self.clients.get_mut(c)
            && client.wake_at.is_none_or(|w| w <= now)
            && client.core.poll_timeout().is_some_and(|t| t <= now)
        {
            let at = now.saturating_add(MIN_WAKE_GAP);
            client.wake_at = Some(at);
            self.schedule(at, Event::ClientWake(c as u32));
        }
    }

    /// Puts one packet of client `c` on its link to its gateway.
    fn transmit(&mut self, now: Timestamp, c: usize, t: Transmission) {
        let kind = match t.kind {
            TransmissionKind::Fragment { id, copy } => Kind::Fragment {
                msg: self.message_index(&id.message),
                first: copy <= 1,
            },
            TransmissionKind::ReplyFragment { id, copy } => Kind::Reply {
                msg: self.message_index(&id.message),
                first: copy <= 1,
            },
            TransmissionKind::ReplyAck { .. } => Kind::Ack,
            // Simulated clients fetch no bundles; one would end at a
            // gateway like drop cover.
            TransmissionKind::DropCover | TransmissionKind::BundleRequest => Kind::Drop,
            TransmissionKind::LoopCover => Kind::Loop,
        };
        // The client link carries packets of the one size only.
        let Ok(packet) = Box::<[u8; PACKET_SIZE]>::try_from(t.packet.bytes.into_boxed_slice())
        else {
            self.tally.drop("wrong_size");
            return;
        };
        let bytes = ClientMessage::SendPacket {
            first_hop: t.packet.first_hop,
            packet,
        }
        .encode();
        let mut target = None;
        if let Kind::Fragment { msg, .. } = kind
            && self.messages.get(msg as usize).is_some_and(|m| m.measured)
        {
            self.tally.delivery.packets_sent += 1;
            let wanted = self.scenario.adversary.target_messages;
            let group = self.target_group(c);
            if self.tracking
                && let Some(started) = self.targets_started.get_mut(group)
                && *started < wanted
            {
                // Each group's targets have ordinals of their own.
                let ordinal = group * wanted + *started;
                target = Some(ordinal as u32);
                if let Some(s) = self.tally.target_senders.get_mut(ordinal) {
                    *s = c as u32;
                }
                *started += 1;
                self.targets_in_flight += 1;
            }
        }
        // Its own route source drew the routes of its fragments and cover;
        // a reply (or a reply's ack) travels a route its SURB's maker drew.
        let origin =
            matches!(kind, Kind::Fragment { .. } | Kind::Loop | Kind::Drop).then_some(c as u32);
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        let latency = self.net.link.cross(&mut client.link_rng);
        let gateway = self.net.gateway_node(client.gateway) as u32;
        let packet = InFlight {
            bytes,
            kind,
            sent_at: now,
            arrived_at: now,
            next: gateway,
            target,
            dist: self.tracking.then(|| Beliefs::point(c as u32)),
            fresh: true,
            origin,
        };
        self.tally.cross(kind, 1);
        let slot = self.store(packet);
        match latency {
            Some(l) => self.schedule(
                now.saturating_add(l),
                Event::AtGateway {
                    client: c as u32,
                    slot,
                },
            ),
            None => {
                self.tally.drop("link_loss");
                self.retire(slot);
            }
        }
    }

    fn message_index(&self, id: &protocol::fragment::MessageId) -> u32 {
        self.by_id.get(id).copied().unwrap_or(u32::MAX)
    }

    /// Link messages from client `c`'s gateway arrive: mailbox pushes are
    /// handed to the core, then acknowledged to the gateway.
    pub(super) fn session_to_client(&mut self, now: Timestamp, c: usize, chunk: u32) {
        let bytes = self.take_chunk(chunk);
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        if !client.online {
            // Its session is gone: what was pushed and not acknowledged stays
            // in the mailbox and is pushed again in the next session.
            return;
        }
        client.decoder.push(&bytes);
        let mut acks = Vec::new();
        loop {
            match client.decoder.next_message() {
                Ok(Some(GatewayMessage::Deliver {
                    mailbox_id,
                    surb_id,
                    payload,
                })) => {
                    self.tally.mailbox.packets += 1;
                    if let Some(a) = &mut self.intersection {
                        a.pushed(now, c);
                    }
                    client.core.handle_delivery(now, surb_id, &payload);
                    ClientMessage::AckDelivery { mailbox_id }.encode_into(&mut acks);
                }
                Ok(Some(GatewayMessage::Close { .. })) => self.tally.drop("session_closed"),
                Ok(Some(
                    GatewayMessage::Challenge { .. }
                    | GatewayMessage::Welcome
                    | GatewayMessage::PrekeyStock { .. },
                )) => {}
                Ok(None) => break,
                Err(_) => {
                    self.tally.drop("link_malformed");
                    break;
                }
            }
        }
        if !acks.is_empty() {
            // The session is a reliable stream: acks are late, never lost.
            let latency = self.net.link.latency(&mut client.link_rng);
            let chunk = self.keep_chunk(acks);
            self.schedule(
                now.saturating_add(latency),
                Event::SessionToGateway {
                    client: c as u32,
                    chunk,
                },
            );
        }
        self.client_events(now, c);
        self.reschedule_client(now, c);
    }

    /// Passes client `c`'s events to its application.
    fn client_events(&mut self, now: Timestamp, c: usize) {
        while let Some(event) = self.clients.get_mut(c).and_then(|s| s.core.poll_event()) {
            match event {
                ClientEvent::Received {
                    id,
                    reply,
                    in_reply_to,
                    ..
                } => {
                    self.received(now, id, in_reply_to.is_some());
                    if let Some(handle) = reply {
                        self.maybe_reply(now, c, handle);
                    }
                }
                ClientEvent::Delivered { id } => {
                    if let Some(m) = self
                        .by_id
                        .get(&id)
                        .and_then(|i| self.messages.get(*i as usize))
                        && m.measured
                        && !m.reply
                    {
                        self.tally.delivery.messages_acknowledged += 1;
                    }
                }
                ClientEvent::SendFailed { id, .. } => {
                    if let Some(m) = self
                        .by_id
                        .get(&id)
                        .and_then(|i| self.messages.get(*i as usize))
                        && m.measured
                        && !m.reply
                    {
                        self.tally.delivery.messages_failed += 1;
                    }
                }
                ClientEvent::Progress { .. }
                | ClientEvent::BundleFetched { .. }
                | ClientEvent::BundleFetchFailed { .. }
                | ClientEvent::Sent { .. }
                | ClientEvent::ReceiveTimedOut { .. }
                | ClientEvent::LoopsMissing { .. } => {}
            }
        }
    }

    /// A recipient's core handed out message (or reply) `id`.
    fn received(&mut self, now: Timestamp, id: protocol::fragment::MessageId, reply: bool) {
        let Some(m) = self
            .by_id
            .get(&id)
            .and_then(|i| self.messages.get_mut(*i as usize))
        else {
            return;
        };
        if m.received || !m.measured || m.reply != reply {
            return;
        }
        m.received = true;
        let ms = now.saturating_duration_since(m.created).as_secs_f64() * 1000.0;
        if reply {
            self.tally.delivery.replies_delivered += 1;
            self.tally.reply_latencies_ms.push(ms);
        } else {
            self.tally.delivery.messages_delivered += 1;
            self.tally.message_latencies_ms.push(ms);
        }
    }

    /// The application of client `c` answers a message it received, with
    /// probability `reply_probability`, through the SURBs the message carried.
    fn maybe_reply(&mut self, now: Timestamp, c: usize, mut handle: ReplyHandle) {
        let p = self.scenario.traffic.reply_probability;
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        if p <= 0.0 || client.app_rng.random::<f64>() >= p {
            return;
        }
        let sent = client
            .core
            .reply(now, &mut handle, &self.reply_bytes, &mut client.core_rng);
        let measured = now >= self.warmup && now < self.traffic_end;
        match sent {
            Ok(id) => {
                if measured {
                    self.tally.delivery.replies_measured += 1;
                }
                self.by_id.insert(id, self.messages.len() as u32);
                self.messages.push(Message {
                    created: now,
                    measured,
                    reply: true,
                    received: false,
                });
            }
            Err(_) => self.tally.delivery.replies_refused += 1,
        }
    }
}
