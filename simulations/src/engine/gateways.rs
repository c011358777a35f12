//! The gateways: each a real [`GatewayCore`](gateway_core::GatewayCore) over an
//! in-memory mailbox, driven as the gateway binary's core loop drives it.
//!
//! A client's session speaks the real link protocol: the engine opens it,
//! answers the challenge with the client's proof (at time zero, with no
//! latency: sessions are up before traffic starts), and from then on hands
//! the core whatever bytes arrive from the client (`handle_client_bytes`)
//! and whatever the exit mixer delivers (`handle_delivery`), then carries
//! out the core's actions: `Forward` puts a packet on the link to its
//! layer-1 node, `Send` puts bytes on the client's session.

use gateway_core::GatewayAction;
use protocol::link::auth::prove;
use protocol::link::{ClientMessage, GatewayMessage, LinkDecoder, LinkMessage};
use protocol::packet::Delivery;
use protocol::time::Timestamp;

use super::{Engine, InFlight};
use crate::anonymity::Beliefs;
use crate::error::SimError;
use crate::events::Event;
use crate::sim_codec::SimCodec;
use crate::tally::Kind;

impl<C: SimCodec> Engine<C> {
    /// Opens client `c`'s authenticated session with its gateway at `now`
    /// (the handshake takes no virtual time); returns what the gateway does
    /// next (the pushes of mail stored while the client was away).
    pub(super) fn connect(
        &mut self,
        now: Timestamp,
        c: usize,
    ) -> Result<Vec<GatewayAction>, SimError> {
        let Some(client) = self.clients.get_mut(c) else {
            return Ok(Vec::new());
        };
        let Some(gw) = self.gateways.get_mut(client.gateway) else {
            return Err(SimError::Setup(format!("client {c} has no gateway")));
        };
        // Each simulated client connects from an address of its own.
        let source = std::net::Ipv4Addr::from(0x0a00_0000_u32 | (c as u32 & 0x00ff_ffff));
        let (session, actions) = gw.core.open_session(now, source.into(), &mut gw.rng);
        let mut hello = LinkDecoder::<GatewayMessage>::new();
        for action in actions {
            if let GatewayAction::Send { bytes, .. } = action {
                hello.push(&bytes);
            }
        }
        let Ok(Some(GatewayMessage::Challenge { gateway, ephemeral })) = hello.next_message()
        else {
            return Err(SimError::Setup(format!("gateway refused client {c}")));
        };
        let keys = client.core.keys();
        let answer = ClientMessage::Authenticate {
            client_key: keys.public().to_bytes(),
            proof: prove(keys.secret(), &gateway, &ephemeral),
        }
        .encode();
        let mut next = gw.core.handle_client_bytes(now, session, &answer);
        let welcome = next.iter().position(|a| match a {
            GatewayAction::Send { bytes, .. } => {
                let mut answer = LinkDecoder::<GatewayMessage>::new();
                answer.push(bytes);
                matches!(answer.next_message(), Ok(Some(GatewayMessage::Welcome)))
            }
            _ => false,
        });
        let Some(welcome) = welcome else {
            return Err(SimError::Setup(format!("gateway refused client {c}")));
        };
        next.remove(welcome);
        gw.sessions.insert(session, c as u32);
        client.session = session;
        client.decoder = LinkDecoder::new();
        Ok(next)
    }

    /// Client `c`'s device goes offline, as a phone loses its network: its
    /// session ends (the gateway keeps its mail, and what was pushed but not
    /// acknowledged), and its core is not driven until it is back, as the
    /// client's driver takes no ticks without a session. Its application
    /// hands it nothing meanwhile.
    pub(super) fn go_offline(&mut self, c: usize) {
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        if !client.online {
            return;
        }
        client.online = false;
        // A pending wake finds `wake_at` cleared and does nothing.
        client.wake_at = None;
        if let Some(gw) = self.gateways.get_mut(client.gateway) {
            gw.core.close_session(client.session);
            gw.sessions.remove(&client.session);
        }
    }

    /// Client `c`'s device is back: a new session (the gateway pushes what it
    /// stored meanwhile) and its core driven again at once. The core's
    /// clocks, more than `max_tick_lag` late, restart instead of sending
    /// every missed tick; deadlines that passed are handled first.
    pub(super) fn come_online(&mut self, now: Timestamp, c: usize) -> Result<(), SimError> {
        let Some(client) = self.clients.get_mut(c) else {
            return Ok(());
        };
        if client.online {
            return Ok(());
        }
        client.online = true;
        let g = client.gateway;
        let actions = self.connect(now, c)?;
        self.gateway_actions(now, g, actions, None);
        self.reschedule_client(now, c);
        Ok(())
    }

    /// Schedules gateway `g`'s wake at its core's `next_timeout`, unless a
    /// wake at or before it is already due.
    ///
    /// Called at the start, after every wake and after every final hop: a
    /// gateway's timers change when a session opens (all open at time zero
    /// here), when it sweeps its mailbox (in `handle_timeout`), when a final
    /// hop schedules its SURB-ack and holds a pushed message, and when it
    /// stores a message whose sender set a lifetime (simulated clients set
    /// none).
    pub(super) fn reschedule_gateway(&mut self, now: Timestamp, g: usize) {
        let Some(gw) = self.gateways.get_mut(g) else {
            return;
        };
        let at = gw.core.next_timeout().max(now);
        if gw.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        gw.wake_at = Some(at);
        self.schedule(at, Event::GatewayWake(g as u32));
    }

    /// Gateway `g`'s timers are due (SURB-acks, held messages, the mailbox sweep). A sweep that found
    /// a full batch asks for `now` again, and gets it (after the events
    /// already due at `now`), as the binary's loop comes straight back.
    pub(super) fn gateway_wake(&mut self, now: Timestamp, g: usize) {
        let Some(gw) = self.gateways.get_mut(g) else {
            return;
        };
        if gw.wake_at != Some(now) {
            return;
        }
        gw.wake_at = None;
        let actions = gw.core.handle_timeout(now);
        self.gateway_actions(now, g, actions, None);
        self.reschedule_gateway(now, g);
    }

    /// Client `c`'s packet, in `slot`, reaches its gateway in a `SendPacket`
    /// link message.
    pub(super) fn at_gateway(&mut self, now: Timestamp, c: usize, slot: u32) {
        let Some(client) = self.clients.get(c) else {
            return;
        };
        let (g, session) = (client.gateway, client.session);
        let Some(bytes) = self
            .slots
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .map(|p| std::mem::take(&mut p.bytes))
        else {
            return;
        };
        let origin = self
            .slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .and_then(|p| p.origin);
        self.visited(self.net.gateway_node(g), origin);
        let Some(gw) = self.gateways.get_mut(g) else {
            return;
        };
        let actions = gw.core.handle_client_bytes(now, session, &bytes);
        self.gateway_actions(now, g, actions, Some(slot));
        if self
            .slots
            .get(slot as usize)
            .is_some_and(|s| s.as_ref().is_some_and(|p| p.bytes.is_empty()))
        {
            // Not forwarded (throttled, or not for layer 1): counted by the
            // gateway core; the packet's trip ends here.
            self.retire(slot);
        }
    }

    /// Client `c`'s acknowledgements of mailbox pushes reach its gateway.
    pub(super) fn session_to_gateway(&mut self, now: Timestamp, c: usize, chunk: u32) {
        let bytes = self.take_chunk(chunk);
        let Some(client) = self.clients.get(c) else {
            return;
        };
        let (g, session) = (client.gateway, client.session);
        let Some(gw) = self.gateways.get_mut(g) else {
            return;
        };
        let actions = gw.core.handle_client_bytes(now, session, &bytes);
        self.gateway_actions(now, g, actions, None);
    }

    /// Gateway `g`'s exit mixer unwrapped a final hop for one of its clients.
    pub(super) fn final_hop(&mut self, now: Timestamp, g: usize, delivery: Delivery) {
        let Some(gw) = self.gateways.get_mut(g) else {
            return;
        };
        let report = gw.core.handle_delivery(now, delivery);
        self.gateway_actions(now, g, report.actions, None);
        // Its SURB-ack, and a pushed message's store, fall due later.
        self.reschedule_gateway(now, g);
    }

    /// Carries out gateway `g`'s actions. `from_client` is the slot of the
    /// client packet whose `SendPacket` produced them, if any: its `Forward`
    /// is that packet; any other `Forward` is a SURB-ack the gateway made.
    fn gateway_actions(
        &mut self,
        now: Timestamp,
        g: usize,
        actions: Vec<GatewayAction>,
        from_client: Option<u32>,
    ) {
        let node = self.net.gateway_node(g);
        for action in actions {
            match action {
                GatewayAction::Forward(packet) => {
                    let Some(next) = self.net.node_of(&packet.first_hop) else {
                        self.tally.drop("unknown_next_hop");
                        continue;
                    };
                    let relayed = from_client.and_then(|slot| {
                        let p = self.slots.get_mut(slot as usize)?.take()?;
                        self.free.push(slot);
                        Some(p)
                    });
                    let mut packet = match relayed {
                        Some(mut p) => {
                            p.bytes = packet.bytes;
                            p
                        }
                        None => InFlight {
                            bytes: packet.bytes,
                            kind: Kind::Ack,
                            sent_at: now,
                            arrived_at: now,
                            next: 0,
                            target: None,
                            // Made by the gateway, as its own cover is: the
                            // observer sees no client packet it relays.
                            dist: self
                                .tracking
                                .then(|| Beliefs::point((self.clients.len() + node) as u32)),
                            fresh: false,
                            origin: None,
                        },
                    };
                    packet.next = next as u32;
                    packet.arrived_at = now;
                    self.tally.cross(packet.kind, 1);
                    let latency = self
                        .node_rngs
                        .get_mut(node)
                        .and_then(|rng| self.net.link.cross(rng));
                    self.send(now, packet, latency);
                }
                GatewayAction::Send { session, bytes } => {
                    let Some(client) = self
                        .gateways
                        .get(g)
                        .and_then(|gw| gw.sessions.get(&session))
                        .copied()
                    else {
                        continue;
                    };
                    self.tally.mailbox.bytes += bytes.len() as u64;
                    // The session is a reliable stream: late, never lost.
                    let latency = self
                        .node_rngs
                        .get_mut(node)
                        .map(|rng| self.net.link.latency(rng))
                        .unwrap_or_default();
                    let chunk = self.keep_chunk(bytes);
                    self.schedule(
                        now.saturating_add(latency),
                        Event::SessionToClient { client, chunk },
                    );
                }
                GatewayAction::Close { session, .. } => {
                    self.tally.drop("session_closed");
                    if let Some(gw) = self.gateways.get_mut(g) {
                        gw.sessions.remove(&session);
                    }
                }
            }
        }
    }
}
