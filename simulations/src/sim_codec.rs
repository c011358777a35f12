//! What the simulator needs from a packet format beyond unwrapping.
//!
//! [`HopCodec`] is the mixer's side (take one layer off). The simulator also
//! builds packets for clients and runs each node's own loop cover (mix nodes'
//! and gateways', through the node's own [`Mixer`]). For
//! Sphinx it uses the real pieces: [`build_packet`] and the mixer's own
//! cover clock ([`Mixer::poll_cover`]). The trace codec cannot use
//! `poll_cover` (that builds Sphinx), so it keeps an equivalent
//! [`PoissonTicker`] per node, at the mixer's own configured rate, and builds
//! trace packets over the same route.

use std::time::Duration;

use mixnode_core::{HopCodec, Mixer, SphinxCodec};
use protocol::packet::{DelaySampler, RouteHop, SURB_ID_SIZE, build_packet};
use protocol::poisson::PoissonTicker;
use protocol::time::Timestamp;
use rand_chacha::ChaCha20Rng;

use crate::error::SimError;
use crate::scenario::CodecKind;
use crate::trace_codec::TraceCodec;

/// A node's own loop-cover clock, when the codec keeps it outside the mixer.
#[derive(Debug, Default)]
pub struct CoverClock {
    ticker: Option<PoissonTicker>,
    delays: Option<DelaySampler>,
}

/// A [`HopCodec`] the simulator can also build packets and loop cover with.
pub trait SimCodec: HopCodec + Clone + Sized + 'static {
    /// Which codec this is, for the report.
    const KIND: CodecKind;

    /// Builds a packet for `route` carrying `frame` (a [`protocol::frame::Frame`]
    /// encoding; the trace codec only looks at `loop_cover`).
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        route: &[RouteHop],
        delays: &[Duration],
        destination: [u8; 32],
        packet_id: u64,
        frame: &[u8],
        loop_cover: bool,
        rng: &mut ChaCha20Rng,
    ) -> Result<Vec<u8>, SimError>;

    /// Starts the node's loop cover at `now`.
    fn start_cover(
        mixer: &Mixer<Self>,
        clock: &mut CoverClock,
        now: Timestamp,
        rng: &mut ChaCha20Rng,
    );

    /// When the node's next loop cover is due.
    fn next_cover_at(mixer: &Mixer<Self>, clock: &CoverClock) -> Option<Timestamp>;

    /// The node's loop-cover packet due at `now` over `route` (the node itself
    /// is appended as the final hop), if one is due.
    fn poll_cover(
        mixer: &Mixer<Self>,
        clock: &mut CoverClock,
        now: Timestamp,
        rng: &mut ChaCha20Rng,
        route: &[RouteHop],
        packet_id: u64,
    ) -> Option<Vec<u8>>;
}

impl SimCodec for SphinxCodec {
    const KIND: CodecKind = CodecKind::Sphinx;

    fn build(
        &self,
        route: &[RouteHop],
        delays: &[Duration],
        destination: [u8; 32],
        _packet_id: u64,
        frame: &[u8],
        _loop_cover: bool,
        rng: &mut ChaCha20Rng,
    ) -> Result<Vec<u8>, SimError> {
        let dest = protocol::keys::NodeId(destination).to_destination();
        build_packet(rng, route, delays, dest, [0; SURB_ID_SIZE], frame)
            .map(|p| p.bytes)
            .map_err(|e| SimError::Packet(e.to_string()))
    }

    fn start_cover(
        mixer: &Mixer<Self>,
        _clock: &mut CoverClock,
        now: Timestamp,
        rng: &mut ChaCha20Rng,
    ) {
        mixer.start_cover(now, rng);
    }

    fn next_cover_at(mixer: &Mixer<Self>, _clock: &CoverClock) -> Option<Timestamp> {
        mixer.next_cover_at()
    }

    fn poll_cover(
        mixer: &Mixer<Self>,
        _clock: &mut CoverClock,
        now: Timestamp,
        rng: &mut ChaCha20Rng,
        route: &[RouteHop],
        _packet_id: u64,
    ) -> Option<Vec<u8>> {
        mixer.poll_cover(now, rng, route).map(|t| t.packet)
    }
}

impl SimCodec for TraceCodec {
    const KIND: CodecKind = CodecKind::Trace;

    fn build(
        &self,
        route: &[RouteHop],
        delays: &[Duration],
        destination: [u8; 32],
        packet_id: u64,
        _frame: &[u8],
        loop_cover: bool,
        _rng: &mut ChaCha20Rng,
    ) -> Result<Vec<u8>, SimError> {
        let ids: Vec<_> = route.iter().map(|h| h.id).collect();
        TraceCodec::encode(&ids, delays, destination, packet_id, loop_cover)
    }

    fn start_cover(
        mixer: &Mixer<Self>,
        clock: &mut CoverClock,
        now: Timestamp,
        rng: &mut ChaCha20Rng,
    ) {
        let config = mixer.config();
        clock.ticker = Some(PoissonTicker::new(config.loop_cover_rate, now, rng));
        clock.delays = Some(DelaySampler::new(config.cover_mean_delay));
    }

    fn next_cover_at(_mixer: &Mixer<Self>, clock: &CoverClock) -> Option<Timestamp> {
        clock.ticker.as_ref().and_then(PoissonTicker::next_tick)
    }

    fn poll_cover(
        mixer: &Mixer<Self>,
        clock: &mut CoverClock,
        now: Timestamp,
        rng: &mut ChaCha20Rng,
        route: &[RouteHop],
        packet_id: u64,
    ) -> Option<Vec<u8>> {
        clock.ticker.as_mut()?.poll(now, rng)?;
        let mut ids: Vec<_> = route.iter().map(|h| h.id).collect();
        ids.push(mixer.id());
        let delays = clock.delays?.route_delays(ids.len(), rng);
        TraceCodec::encode(&ids, &delays, mixer.id().0, packet_id, true).ok()
    }
}
