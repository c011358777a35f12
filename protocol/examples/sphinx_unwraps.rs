//! N Sphinx unwraps with one implementation, for `valgrind --tool=callgrind`.
//!
//! ```text
//! cargo build --release -p protocol --example sphinx_unwraps
//! valgrind --tool=callgrind --toggle-collect='*unwrap_all*' \
//!     target/release/examples/sphinx_unwraps ours 200
//! valgrind --tool=callgrind --toggle-collect='*unwrap_all*' \
//!     target/release/examples/sphinx_unwraps reference 200
//! ```
//!
//! Only `unwrap_all` (the unwraps themselves, not building the packets) is
//! counted; divide callgrind's total by N for instructions per hop.
//!
//! `sphinx_unwraps breakdown N` instead prints, in CPU time per call (this
//! thread's `CLOCK_THREAD_CPUTIME_ID`), both hops and every piece of ours:
//! what a hop costs once its two multiplications are gone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::time::Duration;

use protocol::sphinx::{
    self, Destination, HeaderVersion, NodePublicKey, PacketGeometry, ReceivedPacket, RouteNode,
    UnwrappedPacket,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sphinx_packet::{ProcessedPacketData, SphinxPacket};
use x25519_dalek::{PublicKey, StaticSecret};

fn bytes32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

#[inline(never)]
fn unwrap_all_ours(key: &StaticSecret, packets: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for p in packets {
        let opened = ReceivedPacket::parse(p).unwrap().open(key).unwrap();
        black_box(opened.replay_tag());
        if let UnwrappedPacket::Forward { packet, .. } = opened.finish().unwrap() {
            n += black_box(packet).len();
        }
    }
    n
}

#[inline(never)]
fn unwrap_all_reference(key: &StaticSecret, packets: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for p in packets {
        let packet = SphinxPacket::from_bytes(p).unwrap();
        let secret = packet.header.compute_expanded_shared_secret(key);
        packet.header.ensure_header_integrity(&secret).unwrap();
        black_box(secret.replay_tag());
        if let ProcessedPacketData::ForwardHop {
            next_hop_packet, ..
        } = packet.process_with_expanded_secret(&secret).unwrap().data
        {
            n += black_box(next_hop_packet.to_bytes()).len();
        }
    }
    n
}

/// The calling thread's CPU time in nanoseconds.
fn cpu_ns() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Mean CPU µs of `f` over `n` calls, best of three rounds.
fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let start = cpu_ns();
            for _ in 0..n {
                f();
            }
            (cpu_ns() - start) as f64 / n as f64 / 1e3
        })
        .fold(f64::MAX, f64::min)
}

fn breakdown(key: &StaticSecret, packets: &[Vec<u8>]) {
    use aes::cipher::{KeyIvInit, StreamCipher};
    use curve25519_dalek::MontgomeryPoint;
    use hkdf::Hkdf;
    use hmac::{Hmac, KeyInit, Mac};
    use lioness_rs::Lioness;
    use sha2::Sha256;

    let n = packets.len();
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % n;
        &packets[i]
    };
    let ours = per_call(n, || {
        black_box(unwrap_all_ours(key, std::slice::from_ref(next())));
    });
    let reference = per_call(n, || {
        black_box(unwrap_all_reference(key, std::slice::from_ref(next())));
    });
    let alpha = MontgomeryPoint(packets[0][..32].try_into().unwrap());
    let point = alpha.to_edwards(0).unwrap();
    let secret = key.to_bytes();
    let x25519 = per_call(n, || {
        black_box(key.diffie_hellman(&PublicKey::from(black_box(alpha).to_bytes())));
    });
    let mul = per_call(n, || {
        black_box(black_box(point).mul_clamped(secret));
    });
    let decode = per_call(n, || {
        black_box(black_box(alpha).to_edwards(0).map(|p| p.is_small_order()));
    });
    let encode = per_call(n, || {
        black_box(black_box(point).to_montgomery());
    });
    let kdf = per_call(n, || {
        let mut okm = [0u8; 288];
        Hkdf::<Sha256>::new(Some(b""), black_box(&secret))
            .expand(b"info", &mut okm)
            .unwrap();
        black_box(okm);
    });
    let payload_kdf = per_call(n, || {
        let mut okm = [0u8; 192];
        Hkdf::<Sha256>::new(Some(b"salt"), black_box(&secret[..16]))
            .expand(b"info", &mut okm)
            .unwrap();
        black_box(okm);
    });
    let mac = per_call(n, || {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret[..16]).unwrap();
        m.update(black_box(&packets[0][48..348]));
        black_box(m.finalize());
    });
    let stream = per_call(n, || {
        let mut block = [0u8; 360];
        ctr::Ctr64BE::<aes::Aes128>::new((&[1u8; 16]).into(), (&[0u8; 16]).into())
            .apply_keystream(&mut block);
        black_box(block);
    });
    let mut payload = packets[0][348..].to_vec();
    let lioness = per_call(n, || {
        type Cipher = Lioness<chacha20::ChaCha20, blake2::Blake2bMac<blake2::digest::consts::U32>>;
        Cipher::new((&[5u8; 192]).into())
            .decrypt_block(black_box(&mut payload))
            .unwrap();
    });
    let rest = ours - 2.0 * (mul + encode);
    println!("| CPU µs per call | |");
    println!("|---|---|");
    println!("| sphinx-packet hop (node path) | {reference:.1} |");
    println!("| our hop (parse, open, finish) | {ours:.1} |");
    println!(
        "| throughput ours / sphinx-packet | ×{:.2} |",
        reference / ours
    );
    println!("| X25519 through x25519-dalek (ladder) | {x25519:.1} |");
    println!("| Edwards `mul_clamped` | {mul:.1} |");
    println!("| alpha: `to_edwards` + small-order check | {decode:.1} |");
    println!("| `to_montgomery` (one inversion) | {encode:.1} |");
    println!("| HKDF-SHA256, 288 bytes (hop secrets) | {kdf:.1} |");
    println!("| HKDF-SHA256, 192 bytes (payload key) | {payload_kdf:.1} |");
    println!("| HMAC-SHA256 over beta | {mac:.2} |");
    println!("| AES-128-CTR, 360 bytes | {stream:.2} |");
    println!("| Lioness over 2065 bytes | {lioness:.1} |");
    println!("| our hop minus 2 × (mul + to_montgomery) | {rest:.1} |");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "ours".into());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);

    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let secrets: Vec<StaticSecret> = (0..4)
        .map(|_| StaticSecret::from(bytes32(&mut rng)))
        .collect();
    let route: Vec<RouteNode> = secrets
        .iter()
        .map(|s| RouteNode {
            address: bytes32(&mut rng),
            key: NodePublicKey::try_from(&PublicKey::from(s)).unwrap(),
        })
        .collect();
    let destination = Destination {
        address: bytes32(&mut rng),
        surb_id: [0; 16],
    };
    let format = PacketGeometry {
        version: HeaderVersion::SINGLE_SEED_SURB,
        payload_size: 2065,
    };
    let packets: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            sphinx::build_packet_with_rng(
                &mut rng,
                &route,
                &[Duration::from_millis(50); 4],
                &destination,
                &[7u8; 2048],
                format,
            )
            .unwrap()
        })
        .collect();
    let key = &secrets[0];
    let bytes = match which.as_str() {
        "ours" => unwrap_all_ours(key, &packets),
        "reference" => unwrap_all_reference(key, &packets),
        "breakdown" => {
            breakdown(key, &packets);
            0
        }
        other => panic!("`{other}`: expected `ours`, `reference` or `breakdown`"),
    };
    println!("{which}: {count} unwraps, {bytes} bytes out");
}
