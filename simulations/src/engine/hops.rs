//! What happens to a packet: a client sends it, a mixer takes it, a link carries it.
//!
//! These are the engine's event handlers, one per [`Event`](crate::events::Event)
//! kind. Each obeys the state machine it drives (a [`SimClient`] or a
//! [`mixnode_core::Mixer`]) and only adds what the real network adds: link latency
//! and loss, and the observer's bookkeeping.

use std::time::Duration;

use mixnode_core::Action;
use protocol::packet::RouteHop;
use protocol::time::Timestamp;
use rand::RngExt;

use super::{Engine, InFlight, Message};
use crate::anonymity::SenderDist;
use crate::client::Emission;
use crate::error::SimError;
use crate::events::Event;
use crate::network::{client_key, drop_key};
use crate::sim_codec::SimCodec;
use crate::tally::Kind;

impl<C: SimCodec> Engine<C> {
    pub(super) fn lose(&mut self, packet: &InFlight) {
        if let Kind::Real { msg } = packet.kind
            && let Some(m) = self.messages.get_mut(msg as usize)
        {
            m.failed = true;
        }
    }

    pub(super) fn new_message(&mut self, now: Timestamp, c: usize) {
        if now >= self.traffic_end {
            return;
        }
        let msg = self.messages.len() as u32;
        let measured = now >= self.warmup;
        let mut failed = false;
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        for _ in 0..self.fragments {
            failed |= !client.model.enqueue(u64::from(msg));
        }
        client.messages.poll(now, &mut client.rng);
        let next = client.messages.next_tick();
        if failed {
            self.tally.delivery.client_queue_full += 1;
        }
        self.messages.push(Message {
            created: now,
            measured,
            remaining: self.fragments,
            failed,
        });
        if measured {
            self.tally.delivery.messages_measured += 1;
        }
        if let Some(t) = next {
            self.schedule(t, Event::NewMessage(c as u32));
        }
    }

    pub(super) fn client_wake(&mut self, now: Timestamp, c: usize) -> Result<(), SimError> {
        let clients = self.clients.len() as u32;
        let gateways = self.net.gateways;
        let Some(client) = self.clients.get_mut(c) else {
            return Ok(());
        };
        let emission = client.model.poll(now, &mut client.rng);
        let wake = client.model.next_wakeup();
        let own_gateway = client.gateway;
        let Some(emission) = emission else {
            if let Some(t) = wake {
                self.schedule(t, Event::ClientWake(c as u32));
            }
            return Ok(());
        };
        let rng = &mut client.rng;
        let (kind, exit, destination) = match emission {
            Emission::Real(msg) => {
                let mut to = rng.random_range(0..clients);
                if to == c as u32 && clients > 1 {
                    to = (to + 1) % clients;
                }
                let kind = Kind::Real { msg: msg as u32 };
                (kind, to as usize % gateways, client_key(to))
            }
            Emission::LoopCover => (Kind::Loop, own_gateway, client_key(c as u32)),
            Emission::DropCover => {
                let g = rng.random_range(0..gateways);
                (Kind::Drop, g, drop_key(rng.random()))
            }
        };
        let mut route: Vec<usize> = (0..self.net.layers)
            .map(|l| self.net.random_in_layer(l, rng))
            .collect();
        route.push(self.net.gateway_node(exit));
        let hops: Vec<RouteHop> = route
            .iter()
            .filter_map(|n| self.net.hops.get(*n).copied())
            .collect();
        let delays = self.delays.route_delays(hops.len(), rng);
        let first_links = (self.net.link.cross(rng), self.net.link.cross(rng));
        let frame = match kind {
            Kind::Real { .. } => &self.frames.real,
            Kind::Loop => &self.frames.loop_cover,
            _ => &self.frames.drop_cover,
        };
        let id = self.next_packet_id;
        self.next_packet_id += 1;
        let bytes = self.codec.build(
            &hops,
            &delays,
            destination,
            id,
            frame,
            false,
            &mut self.crypto_rng,
        )?;
        if let Some(t) = wake {
            self.schedule(t, Event::ClientWake(c as u32));
        }
        let mut target = None;
        if let Kind::Real { msg } = kind {
            let measured = self.messages.get(msg as usize).is_some_and(|m| m.measured);
            if measured {
                self.tally.delivery.packets_sent += 1;
                if self.tracking && self.targets_started < self.scenario.adversary.target_messages {
                    target = Some(self.targets_started as u32);
                    self.targets_started += 1;
                    self.targets_in_flight += 1;
                }
            }
        }
        let packet = InFlight {
            bytes,
            kind,
            sent_at: now,
            arrived_at: now,
            next: route.first().copied().unwrap_or(0) as u32,
            target,
            dist: self.tracking.then(|| SenderDist::point(c as u32)),
        };
        self.tally.cross(kind, 2);
        self.send(
            now,
            packet,
            first_links.0.zip(first_links.1).map(|(a, b)| a + b),
        );
        Ok(())
    }

    /// Puts `packet` on the link towards `packet.next`; `latency` is `None` if the link lost it.
    pub(super) fn send(&mut self, now: Timestamp, packet: InFlight, latency: Option<Duration>) {
        let node = packet.next;
        let slot = self.store(packet);
        match latency {
            Some(l) => self.schedule(now.saturating_add(l), Event::Arrive { node, slot }),
            None => {
                self.tally.drop("link_loss");
                if let Some(p) = self.retire(slot) {
                    self.lose(&p);
                }
            }
        }
    }

    /// Node `n`'s own loop cover is due: a mix node's or a gateway's, through
    /// the node's own mixer (`SimCodec::poll_cover`).
    pub(super) fn node_cover(&mut self, now: Timestamp, n: usize) {
        let (Some(rng), Some(link_rng)) = (self.cover_rngs.get_mut(n), self.node_rngs.get_mut(n))
        else {
            return;
        };
        let route = self.net.cover_route(n, rng);
        let hops: Vec<RouteHop> = route
            .iter()
            .filter_map(|r| self.net.hops.get(*r).copied())
            .collect();
        let id = self.next_packet_id;
        let (Some(mixer), Some(clock)) = (self.net.mixers.get(n), self.cover_clocks.get_mut(n))
        else {
            return;
        };
        let bytes = C::poll_cover(mixer, clock, now, rng, &hops, id);
        let next_cover = C::next_cover_at(mixer, clock);
        let latency = bytes.as_ref().and_then(|_| self.net.link.cross(link_rng));
        if let Some(t) = next_cover {
            self.schedule(t, Event::NodeCover(n as u32));
        }
        let Some(bytes) = bytes else {
            return;
        };
        self.next_packet_id += 1;
        let kind = if self.net.is_gateway(n) {
            Kind::GatewayLoop
        } else {
            Kind::MixLoop
        };
        let packet = InFlight {
            bytes,
            kind,
            sent_at: now,
            arrived_at: now,
            next: route.first().copied().unwrap_or(n) as u32,
            target: None,
            // Like every node's own cover: certainly from the node (senders
            // after the clients), then mixed in every pool it crosses.
            dist: self
                .tracking
                .then(|| SenderDist::point((self.clients.len() + n) as u32)),
        };
        if let Some(c) = self.tally.cover_sent.get_mut(n) {
            *c += 1;
        }
        self.tally.cross(kind, 1);
        self.send(now, packet, latency);
    }

    pub(super) fn arrive(&mut self, now: Timestamp, node: usize, slot: u32) {
        let Some(mixer) = self.net.mixers.get(node) else {
            return;
        };
        let Some(packet) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        self.tally.packet_hops += 1;
        let result = mixer.handle_packet(now, &packet.bytes);
        match result {
            Ok(Action::Forward(t)) => {
                let Some(next) = self.net.node_of(&t.next_hop) else {
                    self.tally.drop("unknown_next_hop");
                    if let Some(p) = self.retire(slot) {
                        self.lose(&p);
                    }
                    return;
                };
                packet.bytes = t.packet;
                packet.arrived_at = now;
                packet.next = next as u32;
                if let Some(q) = self.tally.queues.get_mut(node) {
                    q.enter(now);
                }
                if self.tracking
                    && let (Some(pool), Some(dist)) = (self.pools.get_mut(node), &packet.dist)
                {
                    pool.enter(dist);
                }
                self.schedule(
                    t.send_at,
                    Event::Release {
                        node: node as u32,
                        slot,
                    },
                );
            }
            Ok(Action::Deliver(_)) => {
                if let Some(p) = self.retire(slot) {
                    self.delivered(now, &p);
                }
            }
            Ok(Action::LoopReturned) => {
                self.retire(slot);
            }
            Err(reason) => {
                self.tally.mixer_drop(reason);
                if let Some(p) = self.retire(slot) {
                    self.lose(&p);
                }
            }
        }
    }

    pub(super) fn delivered(&mut self, now: Timestamp, packet: &InFlight) {
        let Kind::Real { msg } = packet.kind else {
            return;
        };
        if let (Some(ordinal), Some(dist)) = (packet.target, &packet.dist)
            && let Some(e) = self.tally.target_entropies.get_mut(ordinal as usize)
        {
            *e = Some(dist.client_entropy_bits(self.clients.len() as u32));
        }
        let Some(m) = self.messages.get_mut(msg as usize) else {
            return;
        };
        if !m.measured {
            return;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        self.tally.delivery.packets_delivered += 1;
        self.tally
            .packet_latencies_ms
            .push(ms(now.saturating_duration_since(packet.sent_at)));
        m.remaining = m.remaining.saturating_sub(1);
        if m.remaining == 0 && !m.failed {
            self.tally.delivery.messages_delivered += 1;
            self.tally
                .message_latencies_ms
                .push(ms(now.saturating_duration_since(m.created)));
        }
    }

    pub(super) fn release(&mut self, now: Timestamp, node: usize, slot: u32) {
        let corrupt = self.net.corrupt.get(node).copied().unwrap_or(false);
        if self.tracking
            && let Some(pool) = self.pools.get_mut(node)
            && let Some(Some(packet)) = self.slots.get_mut(slot as usize)
            && let Some(own) = packet.dist.take()
        {
            // Honest mix: the packet that leaves is any of those inside, all
            // equally likely. Corrupt mix: the observer knows which it is.
            let mixed = (!corrupt).then(|| pool.mixture());
            pool.leave(&own);
            packet.dist = Some(mixed.unwrap_or(own));
        }
        let Some(rng) = self.node_rngs.get_mut(node) else {
            return;
        };
        let latency = self.net.link.cross(rng);
        let Some(packet) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.free.push(slot);
        if let Some(q) = self.tally.queues.get_mut(node) {
            q.leave(now, packet.arrived_at);
        }
        self.tally.cross(packet.kind, 1);
        self.send(now, packet, latency);
    }
}
