//! The exit service: for each stream an opener asks for, check the
//! policy, resolve and connect under a timeout, then carry bytes both ways
//! until either side closes, the stream is idle too long, or it carried its
//! cap. A refusal goes back as the SOCKS5 reply code that says why.
//!
//! The exit never learns who asked: stream messages carry no sender
//! address, and everything goes back through the opener's reply SURBs.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use stream_core::{ResetReason, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::mux::{IncomingStream, MixStream, StreamListener};
use super::policy::{ExitPolicy, Verdict};

/// Counters of the exit.
#[derive(Debug, Default)]
pub struct ExitStats {
    /// Streams asked for.
    pub requests: AtomicU64,
    /// Refused by the policy.
    pub refused_by_policy: AtomicU64,
    /// Refused because resolving or connecting failed.
    pub connect_failed: AtomicU64,
    /// Connected.
    pub connected: AtomicU64,
    /// Closed for being idle.
    pub idle_closed: AtomicU64,
    /// Reset for reaching `max_bytes_per_stream`.
    pub cap_reached: AtomicU64,
    /// Bytes carried, both directions.
    pub bytes: AtomicU64,
    /// Streams connected and not yet over.
    pub open: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Serves every stream `listener` gives under `policy`, until it stops.
pub async fn serve_exit(
    mut listener: StreamListener,
    policy: Arc<ExitPolicy>,
    stats: Arc<ExitStats>,
) {
    while let Some(incoming) = listener.next().await {
        add(&stats.requests, 1);
        let (policy, stats) = (policy.clone(), stats.clone());
        tokio::spawn(async move { serve_stream(incoming, &policy, &stats).await });
    }
}

async fn serve_stream(incoming: IncomingStream, policy: &ExitPolicy, stats: &ExitStats) {
    let target = incoming.target().clone();
    let verdict = match policy.check(&target) {
        Ok(v) => v,
        Err(reason) => {
            add(&stats.refused_by_policy, 1);
            incoming.refuse(reason);
            return;
        }
    };
    let connected =
        tokio::time::timeout(policy.connect_timeout(), connect(&target, verdict, policy)).await;
    let tcp = match connected {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(reason)) => {
            if reason == ResetReason::NotAllowed {
                add(&stats.refused_by_policy, 1);
            } else {
                add(&stats.connect_failed, 1);
            }
            incoming.refuse(reason);
            return;
        }
        Err(_) => {
            add(&stats.connect_failed, 1);
            incoming.refuse(ResetReason::TimedOut);
            return;
        }
    };
    add(&stats.connected, 1);
    add(&stats.open, 1);
    let mix = incoming.accept();
    pump(tcp, mix, policy, stats).await;
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

/// Resolves (at the exit, never at the opener) and connects to the first
/// address the policy allows.
async fn connect(
    target: &Target,
    verdict: Verdict,
    policy: &ExitPolicy,
) -> Result<TcpStream, ResetReason> {
    let addresses: Vec<SocketAddr> = match target {
        Target::Ip(addr) => vec![*addr],
        Target::Domain(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|_| ResetReason::HostUnreachable)?
            .collect(),
    };
    let mut last = ResetReason::HostUnreachable;
    let mut any_allowed = false;
    for addr in addresses {
        if !policy.address_allowed(verdict, addr.ip()) {
            continue;
        }
        any_allowed = true;
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = reason_of(&e),
        }
    }
    if any_allowed {
        Err(last)
    } else {
        Err(ResetReason::NotAllowed)
    }
}

fn reason_of(e: &io::Error) -> ResetReason {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ResetReason::ConnectionRefused,
        io::ErrorKind::NetworkUnreachable => ResetReason::NetworkUnreachable,
        io::ErrorKind::HostUnreachable => ResetReason::HostUnreachable,
        io::ErrorKind::TimedOut => ResetReason::TimedOut,
        _ => ResetReason::GeneralFailure,
    }
}

/// Carries bytes both ways; each side's end of file is passed on as a
/// shutdown (a FIN on the stream), so half-closed connections work.
async fn pump(tcp: TcpStream, mix: MixStream, policy: &ExitPolicy, stats: &ExitStats) {
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let (mut mix_read, mut mix_write) = tokio::io::split(mix);
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    let (mut tcp_open, mut mix_open) = (true, true);
    let mut total: u64 = 0;
    let idle = policy.idle_timeout();
    let outcome = loop {
        if !tcp_open && !mix_open {
            break None;
        }
        let n = tokio::select! {
            r = tcp_read.read(&mut up), if tcp_open => match r {
                Ok(0) | Err(_) => {
                    tcp_open = false;
                    let _ = mix_write.shutdown().await;
                    0
                }
                Ok(n) => match up.get(..n) {
                    Some(bytes) if mix_write.write_all(bytes).await.is_ok() => n,
                    _ => break Some(ResetReason::GeneralFailure),
                },
            },
            r = mix_read.read(&mut down), if mix_open => match r {
                Ok(0) => {
                    mix_open = false;
                    let _ = tcp_write.shutdown().await;
                    0
                }
                // The stream was reset or its peer vanished: nothing to say to it.
                Err(_) => break None,
                Ok(n) => match down.get(..n) {
                    Some(bytes) if tcp_write.write_all(bytes).await.is_ok() => n,
                    _ => break Some(ResetReason::GeneralFailure),
                },
            },
            () = tokio::time::sleep(idle) => {
                add(&stats.idle_closed, 1);
                break Some(ResetReason::TimedOut);
            }
        };
        total += n as u64;
        add(&stats.bytes, n as u64);
        if total > policy.max_bytes_per_stream {
            add(&stats.cap_reached, 1);
            break Some(ResetReason::GeneralFailure);
        }
    };
    if let Some(reason) = outcome {
        mix_read.unsplit(mix_write).reset(reason);
    }
}
