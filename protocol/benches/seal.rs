//! What sealing a forward frame's body to its recipient costs, beside what
//! building the Sphinx packet that carries it costs (the baseline, measured
//! in the same run).

#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use protocol::frame::{ForwardFrame, SURB_ACK_SIZE, SealedContent};
use protocol::keys::{IdentityKeyPair, SphinxKeyPair};
use protocol::packet::{RouteHop, build_packet};
use protocol::surb::build_surb;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn seal(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let recipient = SphinxKeyPair::generate(&mut rng);
    let content = SealedContent::LoopCover { id: [7; 16] };
    let route: Vec<RouteHop> = (0..4)
        .map(|_| RouteHop {
            id: IdentityKeyPair::generate(&mut rng).node_id(),
            sphinx_key: SphinxKeyPair::generate(&mut rng).public(),
        })
        .collect();
    let delays = [Duration::from_millis(50); 4];
    let frame = ForwardFrame::seal(
        &content,
        &recipient.public(),
        vec![1; SURB_ACK_SIZE],
        &mut rng,
    )
    .expect("seals");
    let encoded = protocol::frame::Frame::Forward(frame.clone())
        .encode()
        .expect("encodes");
    let mut group = c.benchmark_group("sealed_body");
    group.bench_function("seal", |b| {
        b.iter(|| {
            ForwardFrame::seal(
                black_box(&content),
                &recipient.public(),
                vec![1; SURB_ACK_SIZE],
                &mut rng,
            )
        })
    });
    group.bench_function("open", |b| {
        b.iter(|| ForwardFrame::open(recipient.secret(), black_box(frame.sealed.as_slice())))
    });
    // Baselines: the Sphinx packet (4 hops) that carries the frame, and the
    // SURB-ack every packet now carries.
    group.bench_function("sphinx_packet_4_hops", |b| {
        b.iter(|| {
            build_packet(
                &mut rng,
                &route,
                &delays,
                recipient_destination(&recipient),
                [0; 16],
                black_box(&encoded),
            )
        })
    });
    group.bench_function("surb_4_hops", |b| {
        b.iter(|| build_surb(&mut rng, &route, &delays, recipient_destination(&recipient)))
    });
    group.finish();
}

fn recipient_destination(keys: &SphinxKeyPair) -> sphinx_packet::route::DestinationAddressBytes {
    sphinx_packet::route::DestinationAddressBytes::from_bytes(keys.public().to_bytes())
}

criterion_group!(benches, seal);
criterion_main!(benches);
