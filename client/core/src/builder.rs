//! Building the packets a client sends: forward packets over fresh routes,
//! SURB-acks and reply SURBs back to the client itself.

use std::time::Duration;

use protocol::address::DROP_DESTINATION;
use protocol::format::PacketFormat;
use protocol::frame::{Frame, SURB_ACK_HOLD, SealedContent};
use protocol::packet::{DelaySampler, OutgoingPacket, RouteHop};
use protocol::surb::Surb;
use protocol::time::Timestamp;
use protocol::{ClientAddress, NodeId};
use rand::CryptoRng;
use x25519_dalek::PublicKey;

use super::health::{NodeHealth, RouteChoice, mixes_of};
use super::routes::RouteSource;
use super::stats::ClientStats;
use crate::error::ClientError;

/// Builds packets for one client over the routes its [`RouteSource`] gives,
/// steering around the mix nodes its [`NodeHealth`] suspects, in the
/// [`PacketFormat`] `F`.
pub(crate) struct PacketBuilder<'a, R, F> {
    pub(crate) format: &'a F,
    pub(crate) routes: &'a R,
    pub(crate) health: &'a NodeHealth,
    /// The instant the packets are built at.
    pub(crate) now: Timestamp,
    /// Routes drawn at most per packet to avoid suspect nodes.
    pub(crate) candidates: usize,
    /// This client's own address: where SURBs lead back to.
    pub(crate) own: ClientAddress,
    pub(crate) delays: DelaySampler,
}

/// A SURB to this client, ready to hand out.
pub(crate) struct HomeSurb<Rec> {
    pub(crate) surb: Surb,
    pub(crate) recovery: Rec,
    /// The sum of its hops' delays.
    pub(crate) delay: Duration,
    /// The mix nodes it crosses.
    pub(crate) mixes: Vec<NodeId>,
}

impl<R: RouteSource, F: PacketFormat> PacketBuilder<'_, R, F> {
    /// A fresh route to `gateway`, avoiding suspect mix nodes when one of the
    /// routes drawn does; counts what the choice did in `stats`.
    fn route(
        &self,
        rng: &mut impl CryptoRng,
        gateway: NodeId,
        stats: &mut ClientStats,
    ) -> Result<Vec<RouteHop>, ClientError> {
        let (route, choice) = self
            .health
            .choose(self.now, self.candidates, || {
                self.routes.route_to(&mut *rng, gateway)
            })
            .ok_or_else(|| ClientError::NoRoute(gateway.to_base58()))?;
        match choice {
            RouteChoice::Clear => {}
            RouteChoice::AvoidedSuspects => stats.routes_avoiding_suspects += 1,
            RouteChoice::ThroughSuspects => stats.routes_through_suspects += 1,
        }
        Ok(route)
    }

    /// A SURB over a fresh route to this client.
    pub(crate) fn surb_home(
        &self,
        rng: &mut impl CryptoRng,
        stats: &mut ClientStats,
    ) -> Result<HomeSurb<F::Recovery>, ClientError> {
        let route = self.route(rng, self.own.gateway, stats)?;
        let delays = self.delays.route_delays(route.len(), rng);
        let (surb, recovery) =
            self.format
                .build_surb(rng, &route, &delays, self.own.destination())?;
        Ok(HomeSurb {
            surb,
            recovery,
            delay: delays.iter().sum(),
            mixes: mixes_of(&route).iter().map(|hop| hop.id).collect(),
        })
    }

    /// A fresh route to `to` with its sampled delays, for a frame that
    /// depends on them (a lifetime counted from the arrival at `to`'s gateway).
    pub(crate) fn forward_route(
        &self,
        rng: &mut impl CryptoRng,
        to: &ClientAddress,
        stats: &mut ClientStats,
    ) -> Result<ForwardRoute, ClientError> {
        let route = self.route(rng, to.gateway, stats)?;
        let delays = self.delays.route_delays(route.len(), rng);
        Ok(ForwardRoute {
            route,
            delays,
            to: *to,
        })
    }

    /// Drop cover's destination: the drop address at a random gateway.
    pub(crate) fn drop_cover_target(&self, rng: &mut impl CryptoRng) -> Option<ClientAddress> {
        let gateway: NodeId = self.routes.random_gateway(rng)?;
        Some(ClientAddress {
            client_key: DROP_DESTINATION,
            gateway,
        })
    }

    /// A cover packet to `to` (loop or drop cover): `content` sealed to
    /// `seal_to`, with a fresh SURB-ack home like every forward packet.
    pub(crate) fn cover(
        &self,
        rng: &mut impl CryptoRng,
        to: &ClientAddress,
        seal_to: &PublicKey,
        content: &SealedContent,
        margin: Duration,
        stats: &mut ClientStats,
    ) -> Result<CoverPacket<F::Recovery>, ClientError> {
        let home = self.surb_home(rng, stats)?;
        let route = self.forward_route(rng, to, stats)?;
        let frame =
            Frame::Forward(self.format.seal_frame(content, seal_to, home.surb.0, rng)?).encode()?;
        let packet = route.build(self.format, rng, &frame)?;
        let arrival = self.now.saturating_add(route.delay());
        Ok(CoverPacket {
            packet,
            recovery: home.recovery,
            arrival,
            // Its gateway holds every SURB-ack the same fixed time.
            ack_due: arrival
                .saturating_add(SURB_ACK_HOLD)
                .saturating_add(home.delay.saturating_add(margin)),
        })
    }
}

/// A cover packet and what its sender waits for.
pub(crate) struct CoverPacket<Rec> {
    pub(crate) packet: OutgoingPacket,
    /// What reads its SURB-ack.
    pub(crate) recovery: Rec,
    /// When it reaches its gateway (by its sampled delays).
    pub(crate) arrival: Timestamp,
    /// When its SURB-ack should be back, margin included.
    pub(crate) ack_due: Timestamp,
}

/// A route to a client address with the delays drawn for it: a forward
/// packet not built yet.
pub(crate) struct ForwardRoute {
    route: Vec<RouteHop>,
    delays: Vec<Duration>,
    to: ClientAddress,
}

impl ForwardRoute {
    /// The sum of the delays: how long after it leaves the packet reaches
    /// the recipient's gateway (network latency aside).
    pub(crate) fn delay(&self) -> Duration {
        self.delays.iter().sum()
    }

    /// The mix nodes it crosses.
    pub(crate) fn mixes(&self) -> impl Iterator<Item = NodeId> + '_ {
        mixes_of(&self.route).iter().map(|hop| hop.id)
    }

    /// The packet carrying `frame` over this route, in `format`.
    pub(crate) fn build(
        &self,
        format: &impl PacketFormat,
        rng: &mut impl CryptoRng,
        frame: &[u8],
    ) -> Result<OutgoingPacket, ClientError> {
        Ok(format.build_packet(rng, &self.route, &self.delays, self.to.destination(), frame)?)
    }
}
