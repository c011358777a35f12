//! What happens to a packet between the ends: a link carries it, a mixer
//! takes it, a node sends its own loop cover.
//!
//! Each handler obeys the [`mixnode_core::Mixer`] it drives and only adds what the
//! real network adds: link latency and loss, and the observer's bookkeeping.
//! A final hop at a gateway goes on to the gateway's core (`gateways.rs`).

use std::time::Duration;

use mixnode_core::Action;
use protocol::packet::RouteHop;
use protocol::time::Timestamp;

use super::attacks::Admission;
use super::{Engine, InFlight};
use crate::anonymity::{Beliefs, SenderDist};
use crate::events::Event;
use crate::sim_codec::SimCodec;
use crate::tally::Kind;

impl<C: SimCodec> Engine<C> {
    /// Puts `packet` on the link towards `packet.next`; `latency` is `None` if the link lost it.
    pub(super) fn send(&mut self, now: Timestamp, packet: InFlight, latency: Option<Duration>) {
        let node = packet.next;
        let slot = self.store(packet);
        match latency {
            Some(l) => self.schedule(now.saturating_add(l), Event::Arrive { node, slot }),
            None => {
                self.tally.drop("link_loss");
                self.retire(slot);
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
        let id = self.next_cover_id;
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
        self.next_cover_id += 1;
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
                .then(|| Beliefs::point((self.clients.len() + n) as u32)),
            fresh: false,
            origin: None,
        };
        if let Some(a) = &mut self.n_minus_one
            && a.node == n
        {
            // The observer sees it leave the mix like any other output.
            a.output(now, None);
        }
        if let Some(c) = self.tally.cover_sent.get_mut(n) {
            *c += 1;
        }
        self.tally.cross(kind, 1);
        self.send(now, packet, latency);
    }

    pub(super) fn arrive(&mut self, now: Timestamp, node: usize, slot: u32) {
        if let Some(a) = &mut self.n_minus_one
            && a.node == node
        {
            let fresh = self
                .slots
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.fresh);
            if a.admit(now, slot, fresh) == Admission::Block {
                self.tally.drop("adversary_blocked");
                self.retire(slot);
                return;
            }
        }
        let origin = self
            .slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .and_then(|p| p.origin);
        self.visited(node, origin);
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
                    self.retire(slot);
                    return;
                };
                packet.bytes = t.packet;
                packet.arrived_at = now;
                packet.next = next as u32;
                packet.fresh = false;
                if let Some(q) = self.tally.queues.get_mut(node) {
                    q.enter(now);
                }
                if self.tracking
                    && let (Some(pool), Some(timing), Some(dist)) = (
                        self.pools.get_mut(node),
                        self.timing_pools.get_mut(node),
                        &packet.dist,
                    )
                {
                    pool.enter(&dist.pool);
                    timing.enter(now, &dist.timing);
                }
                self.schedule(
                    t.send_at,
                    Event::Release {
                        node: node as u32,
                        slot,
                    },
                );
            }
            Ok(Action::Deliver(delivery)) => {
                if let Some(p) = self.retire(slot) {
                    self.delivered(now, &p);
                }
                if let Some(g) = node.checked_sub(self.net.mixes()) {
                    self.final_hop(now, g, delivery);
                }
            }
            Ok(Action::LoopReturned) => {
                if let Some(a) = &mut self.n_minus_one
                    && a.node == node
                {
                    a.loop_returned(now);
                }
                self.retire(slot);
            }
            Err(reason) => {
                self.tally.mixer_drop(reason);
                self.retire(slot);
            }
        }
    }

    /// A packet whose route `origin` drew reached `node`: counted per node
    /// when `origin` is a constrained client.
    pub(super) fn visited(&mut self, node: usize, origin: Option<u32>) {
        if let (Some(r), Some(c)) = (&self.residency, origin)
            && r.is_constrained(c as usize)
            && let Some(v) = self.tally.constrained_visits.get_mut(node)
        {
            *v += 1;
        }
    }

    /// A packet reached its final hop: the figures of a real fragment copy.
    pub(super) fn delivered(&mut self, now: Timestamp, packet: &InFlight) {
        let Kind::Fragment { msg, .. } = packet.kind else {
            return;
        };
        if let (Some(ordinal), Some(dist)) = (packet.target, &packet.dist)
            && let Some(e) = self.tally.target_posteriors.get_mut(ordinal as usize)
        {
            let clients = self.clients.len() as u32;
            let truth = self
                .tally
                .target_senders
                .get(ordinal as usize)
                .copied()
                .unwrap_or(u32::MAX);
            *e = Some([
                dist.pool.posterior(clients, truth),
                dist.timing.posterior(clients, truth),
            ]);
        }
        if !self.messages.get(msg as usize).is_some_and(|m| m.measured) {
            return;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        self.tally.delivery.packets_delivered += 1;
        self.tally
            .packet_latencies_ms
            .push(ms(now.saturating_duration_since(packet.sent_at)));
    }

    pub(super) fn release(&mut self, now: Timestamp, node: usize, slot: u32) {
        let corrupt = self.net.corrupt.get(node).copied().unwrap_or(false);
        if self.tracking
            && let (Some(pool), Some(timing)) =
                (self.pools.get_mut(node), self.timing_pools.get_mut(node))
            && let Some(Some(packet)) = self.slots.get_mut(slot as usize)
            && let Some(own) = packet.dist.take()
        {
            // Honest mix: to the pool observer the packet that leaves is any
            // of those inside, all equally likely; to the timing observer,
            // any recent input, weighed by the delay density at its age.
            // Corrupt mix: both know which it is.
            let mixed = (!corrupt).then(|| Beliefs {
                pool: pool.mixture(),
                timing: timing.mixture(),
            });
            pool.leave(&own.pool);
            let mut dist = mixed.unwrap_or(own);
            if let Some(r) = &self.residency {
                // Where it goes next tells whether a constrained client can
                // have sent it, and how likely one did.
                let weight = r.constrained_weight(packet.next as usize);
                let constrained = |s: u32| r.is_constrained(s as usize);
                dist.pool = SenderDist::reweighted(&dist.pool, constrained, weight);
                dist.timing = SenderDist::reweighted(&dist.timing, constrained, weight);
            }
            packet.dist = Some(dist);
        }
        if let Some(a) = &mut self.n_minus_one
            && a.node == node
        {
            a.output(now, Some(slot));
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
