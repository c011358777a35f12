//! What the simulator needs from a packet format.
//!
//! A format has two sides: [`HopCodec`], the mixer's (take one layer off),
//! and [`PacketFormat`], the ends' (the client core builds packets and SURBs,
//! the gateway core reads final hops and answers SURB-acks). Both run inside
//! the real state machines. Beyond them, the simulator runs each node's own
//! loop cover (mix nodes' and gateways', through the node's own [`Mixer`]):
//! for Sphinx with the mixer's own cover clock ([`Mixer::poll_cover`]); the
//! trace codec cannot use `poll_cover` (that builds Sphinx), so it keeps an
//! equivalent [`PoissonTicker`] per node, at the mixer's own configured rate,
//! and builds trace packets over the same route.

use mixnode_core::{HopCodec, Mixer, SphinxCodec};
use protocol::format::{PacketFormat, SphinxFormat};
use protocol::packet::{DelaySampler, RouteHop};
use protocol::poisson::PoissonTicker;
use protocol::time::Timestamp;
use rand_chacha::ChaCha20Rng;

use crate::scenario::CodecKind;
use crate::trace_codec::TraceCodec;

/// A node's own loop-cover clock, when the codec keeps it outside the mixer.
#[derive(Debug, Default)]
pub struct CoverClock {
    ticker: Option<PoissonTicker>,
    delays: Option<DelaySampler>,
}

/// A packet format the simulator can run end to end: the mixers' side, the
/// cores' side, and the nodes' own loop cover.
pub trait SimCodec: HopCodec + Clone + Sized + 'static {
    /// Which codec this is, for the report.
    const KIND: CodecKind;

    /// The client and gateway cores' side of the format.
    type Format: PacketFormat + Clone;

    /// The format the cores build and read packets in.
    fn format(&self) -> Self::Format;

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

    type Format = SphinxFormat;

    fn format(&self) -> SphinxFormat {
        SphinxFormat
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

    type Format = TraceCodec;

    fn format(&self) -> TraceCodec {
        self.clone()
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
        TraceCodec::loop_cover(&ids, &delays, packet_id).ok()
    }
}
