//! Building the packets a client sends: forward packets over fresh routes,
//! SURB-acks and reply SURBs back to the client itself.

use std::time::Duration;

use protocol::packet::{DelaySampler, OutgoingPacket, RouteHop, SURB_ID_SIZE, build_packet};
use protocol::surb::{Surb, SurbRecovery, build_surb};
use protocol::{ClientAddress, NodeId};
use rand::CryptoRng;

use super::routes::RouteSource;
use crate::error::ClientError;

/// Builds packets for one client over the routes its [`RouteSource`] gives.
pub(crate) struct PacketBuilder<'a, R> {
    pub(crate) routes: &'a R,
    /// This client's own address: where SURBs lead back to.
    pub(crate) own: ClientAddress,
    pub(crate) delays: DelaySampler,
}

impl<R: RouteSource> PacketBuilder<'_, R> {
    /// A SURB over a fresh route to this client, with the sum of its delays.
    pub(crate) fn surb_home(
        &self,
        rng: &mut impl CryptoRng,
    ) -> Result<(Surb, SurbRecovery, Duration), ClientError> {
        let route = self
            .routes
            .route_to(rng, self.own.gateway)
            .ok_or_else(|| ClientError::NoRoute(self.own.gateway.to_base58()))?;
        let delays = self.delays.route_delays(route.len(), rng);
        let (surb, recovery) = build_surb(rng, &route, &delays, self.own.destination())?;
        Ok((surb, recovery, delays.iter().sum()))
    }

    /// A forward packet carrying `frame` over a fresh route to `to`, with the
    /// sum of its delays.
    pub(crate) fn forward(
        &self,
        rng: &mut impl CryptoRng,
        to: &ClientAddress,
        frame: &[u8],
    ) -> Result<(OutgoingPacket, Duration), ClientError> {
        let route = self.forward_route(rng, to)?;
        let delay = route.delay();
        Ok((route.build(rng, frame)?, delay))
    }

    /// A fresh route to `to` with its sampled delays, for a frame that
    /// depends on them (a lifetime counted from the arrival at `to`'s gateway).
    pub(crate) fn forward_route(
        &self,
        rng: &mut impl CryptoRng,
        to: &ClientAddress,
    ) -> Result<ForwardRoute, ClientError> {
        let route = self
            .routes
            .route_to(rng, to.gateway)
            .ok_or_else(|| ClientError::NoRoute(to.gateway.to_base58()))?;
        let delays = self.delays.route_delays(route.len(), rng);
        Ok(ForwardRoute {
            route,
            delays,
            to: *to,
        })
    }

    /// A random gateway for drop cover, and a random client key there.
    pub(crate) fn drop_cover_target(&self, rng: &mut impl CryptoRng) -> Option<ClientAddress> {
        let gateway: NodeId = self.routes.random_gateway(rng)?;
        let mut client_key = [0u8; 32];
        rng.fill_bytes(&mut client_key);
        Some(ClientAddress {
            client_key,
            gateway,
        })
    }
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

    /// The packet carrying `frame` over this route.
    pub(crate) fn build(
        &self,
        rng: &mut impl CryptoRng,
        frame: &[u8],
    ) -> Result<OutgoingPacket, ClientError> {
        Ok(build_packet(
            rng,
            &self.route,
            &self.delays,
            self.to.destination(),
            [0; SURB_ID_SIZE],
            frame,
        )?)
    }
}
