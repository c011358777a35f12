//! The SOCKS5 entry (RFC 1928): no authentication, CONNECT, IPv4, IPv6 and
//! domain names. A name is passed to the exit as a name and resolved there,
//! never here (no local DNS query reveals where the user goes).
//!
//! The parser is sans-IO ([`parse_greeting`], [`parse_request`]): it takes
//! the bytes read so far and says whether it needs more, what it read, or
//! which reply a malformed message gets. The server ([`serve_socks5`]) only
//! reads, writes and counts.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stream_core::frame::valid_host_name;
use stream_core::{ResetReason, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::mux::{ConnectError, StreamClient};

/// SOCKS protocol version 5.
pub const SOCKS_VERSION: u8 = 5;
/// Method: no authentication required.
pub const METHOD_NO_AUTH: u8 = 0x00;
/// Method: none of the offered methods is acceptable.
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
/// Reply: succeeded.
pub const REPLY_SUCCEEDED: u8 = 0x00;
/// Reply: general SOCKS server failure.
pub const REPLY_GENERAL_FAILURE: u8 = 0x01;
/// Reply: command not supported.
pub const REPLY_COMMAND_NOT_SUPPORTED: u8 = 0x07;
/// Reply: address type not supported.
pub const REPLY_ADDRESS_NOT_SUPPORTED: u8 = 0x08;
/// Longest host name accepted (DNS's limit for a full name).
pub const MAX_HOST_NAME: usize = 253;

/// What a parse of the bytes read so far gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The message is not complete yet: read more.
    Incomplete,
    /// The message, and how many bytes it took.
    Done(T, usize),
    /// Malformed: send this reply (a method byte for a greeting, a reply
    /// code for a request), then close.
    Bad(Malformed),
}

/// Why a greeting or request was refused, with the reply it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The version byte is not 5.
    WrongVersion,
    /// A greeting that offers no method, or not "no authentication".
    NoAcceptableMethod,
    /// A command other than CONNECT (BIND, UDP ASSOCIATE, unknown).
    UnsupportedCommand,
    /// An address type other than IPv4, domain name or IPv6.
    UnsupportedAddress,
    /// An empty, oversize or non-printable host name.
    BadHostName,
}

impl Malformed {
    /// The reply code a request refused for this gets.
    pub fn reply_code(self) -> u8 {
        match self {
            Malformed::UnsupportedCommand => REPLY_COMMAND_NOT_SUPPORTED,
            Malformed::UnsupportedAddress => REPLY_ADDRESS_NOT_SUPPORTED,
            Malformed::WrongVersion | Malformed::NoAcceptableMethod | Malformed::BadHostName => {
                REPLY_GENERAL_FAILURE
            }
        }
    }
}

/// Reads a method-selection message: `VER NMETHODS METHODS...`. Done when
/// it offers "no authentication".
pub fn parse_greeting(bytes: &[u8]) -> Parsed<()> {
    let (Some(&version), Some(&n)) = (bytes.first(), bytes.get(1)) else {
        return Parsed::Incomplete;
    };
    if version != SOCKS_VERSION {
        return Parsed::Bad(Malformed::WrongVersion);
    }
    let Some(methods) = bytes.get(2..2 + usize::from(n)) else {
        return Parsed::Incomplete;
    };
    if methods.contains(&METHOD_NO_AUTH) {
        Parsed::Done((), 2 + usize::from(n))
    } else {
        Parsed::Bad(Malformed::NoAcceptableMethod)
    }
}

/// Reads a request: `VER CMD RSV ATYP DST.ADDR DST.PORT`; only CONNECT.
pub fn parse_request(bytes: &[u8]) -> Parsed<Target> {
    let Some(head) = bytes.get(..4) else {
        return Parsed::Incomplete;
    };
    let &[version, command, _reserved, atyp] = head else {
        return Parsed::Incomplete;
    };
    if version != SOCKS_VERSION {
        return Parsed::Bad(Malformed::WrongVersion);
    }
    if command != 0x01 {
        return Parsed::Bad(Malformed::UnsupportedCommand);
    }
    let rest = bytes.get(4..).unwrap_or(&[]);
    let port_at = |at: usize| -> Option<u16> {
        let p = rest.get(at..at + 2)?;
        Some(u16::from_be_bytes([*p.first()?, *p.get(1)?]))
    };
    match atyp {
        0x01 => {
            let (Some(ip), Some(port)) = (rest.get(..4), port_at(4)) else {
                return Parsed::Incomplete;
            };
            let ip: [u8; 4] = match ip.try_into() {
                Ok(ip) => ip,
                Err(_) => return Parsed::Incomplete,
            };
            Parsed::Done(
                Target::Ip(SocketAddr::from((Ipv4Addr::from(ip), port))),
                4 + 6,
            )
        }
        0x04 => {
            let (Some(ip), Some(port)) = (rest.get(..16), port_at(16)) else {
                return Parsed::Incomplete;
            };
            let ip: [u8; 16] = match ip.try_into() {
                Ok(ip) => ip,
                Err(_) => return Parsed::Incomplete,
            };
            Parsed::Done(
                Target::Ip(SocketAddr::from((Ipv6Addr::from(ip), port))),
                4 + 18,
            )
        }
        0x03 => {
            let Some(&len) = rest.first() else {
                return Parsed::Incomplete;
            };
            let len = usize::from(len);
            let (Some(name), Some(port)) = (rest.get(1..1 + len), port_at(1 + len)) else {
                return Parsed::Incomplete;
            };
            if len > MAX_HOST_NAME || !valid_host_name(name) {
                return Parsed::Bad(Malformed::BadHostName);
            }
            let name = String::from_utf8_lossy(name).into_owned();
            // A literal address sent as a name is still an address.
            let target = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => Target::Ip(SocketAddr::new(ip, port)),
                Err(_) => Target::Domain(name, port),
            };
            Parsed::Done(target, 4 + 1 + len + 2)
        }
        _ => Parsed::Bad(Malformed::UnsupportedAddress),
    }
}

/// A reply: `VER REP RSV ATYP BND.ADDR BND.PORT`, with the bound address
/// all zeros (the exit's own address is none of the user's business).
pub fn reply(code: u8) -> [u8; 10] {
    [SOCKS_VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// Counters of the SOCKS5 entry.
#[derive(Debug, Default)]
pub struct Socks5Stats {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Connections closed at once: too many open.
    pub over_capacity: AtomicU64,
    /// Greetings refused (wrong version, no acceptable method).
    pub bad_greetings: AtomicU64,
    /// Requests refused (wrong version, command, address type, name).
    pub bad_requests: AtomicU64,
    /// Connections that ended or stalled before a complete request.
    pub truncated: AtomicU64,
    /// Streams the exit refused or that did not open.
    pub refused: AtomicU64,
    /// Streams opened.
    pub connected: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Settings of the SOCKS5 entry.
#[derive(Clone, Debug)]
pub struct Socks5Options {
    /// Connections open at once at most; more are closed at once.
    pub max_connections: usize,
    /// Time for the greeting and the request together.
    pub handshake_timeout: Duration,
}

impl Default for Socks5Options {
    fn default() -> Self {
        Socks5Options {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves SOCKS5 on `listener` through `streams` until the listener fails.
pub async fn serve_socks5(
    listener: TcpListener,
    streams: StreamClient,
    options: Socks5Options,
    stats: Arc<Socks5Stats>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(options.max_connections));
    loop {
        let (tcp, _) = listener.accept().await?;
        add(&stats.connections);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            add(&stats.over_capacity);
            drop(tcp);
            continue;
        };
        let (streams, stats, options) = (streams.clone(), stats.clone(), options.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_one(tcp, &streams, &options, &stats).await {
                tracing::debug!(error = %e, "SOCKS5 connection ended");
            }
            drop(permit);
        });
    }
}

/// Reads until `parse` is done or refuses, within the handshake's deadline.
async fn read_message<T>(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Parsed<T>,
) -> std::io::Result<Option<Result<T, Malformed>>> {
    loop {
        match parse(buf) {
            Parsed::Done(value, used) => {
                buf.drain(..used.min(buf.len()));
                return Ok(Some(Ok(value)));
            }
            Parsed::Bad(why) => return Ok(Some(Err(why))),
            Parsed::Incomplete => {}
        }
        // No message is longer than 4 + 1 + 255 + 2 (or 2 + 255 for a greeting).
        if buf.len() > 600 {
            return Ok(None);
        }
        let mut chunk = [0u8; 512];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
    }
}

async fn serve_one(
    mut tcp: TcpStream,
    streams: &StreamClient,
    options: &Socks5Options,
    stats: &Socks5Stats,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let handshake = tokio::time::timeout(options.handshake_timeout, async {
        match read_message(&mut tcp, &mut buf, parse_greeting).await? {
            None => return Ok(None),
            Some(Err(_)) => {
                add(&stats.bad_greetings);
                tcp.write_all(&[SOCKS_VERSION, METHOD_NONE_ACCEPTABLE])
                    .await?;
                return Ok(Some(None));
            }
            Some(Ok(())) => tcp.write_all(&[SOCKS_VERSION, METHOD_NO_AUTH]).await?,
        }
        match read_message(&mut tcp, &mut buf, parse_request).await? {
            None => Ok(None),
            Some(Err(why)) => {
                add(&stats.bad_requests);
                tcp.write_all(&reply(why.reply_code())).await?;
                Ok(Some(None))
            }
            Some(Ok(target)) => Ok::<_, std::io::Error>(Some(Some(target))),
        }
    })
    .await;
    let target = match handshake {
        Ok(Ok(Some(Some(target)))) => target,
        Ok(Ok(Some(None))) => return Ok(()),
        Ok(Ok(None)) | Err(_) => {
            add(&stats.truncated);
            return Ok(());
        }
        Ok(Err(e)) => {
            add(&stats.truncated);
            return Err(e);
        }
    };
    let mut stream = match streams.connect(target).await {
        Ok(stream) => stream,
        Err(e) => {
            add(&stats.refused);
            let code = match e {
                ConnectError::Refused(reason) => reason.code(),
                ConnectError::TooManyStreams | ConnectError::Stopped => {
                    ResetReason::GeneralFailure.code()
                }
            };
            tcp.write_all(&reply(code)).await?;
            return Ok(());
        }
    };
    add(&stats.connected);
    tcp.write_all(&reply(REPLY_SUCCEEDED)).await?;
    // Bytes the client sent after its request (pipelined) go first.
    if !buf.is_empty() {
        tokio::io::AsyncWriteExt::write_all(&mut stream, &buf).await?;
    }
    tokio::io::copy_bidirectional(&mut tcp, &mut stream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greetings() {
        assert_eq!(parse_greeting(&[5]), Parsed::Incomplete);
        assert_eq!(parse_greeting(&[5, 2, 2]), Parsed::Incomplete);
        assert_eq!(parse_greeting(&[5, 2, 2, 0]), Parsed::Done((), 4));
        assert_eq!(
            parse_greeting(&[4, 1, 0]),
            Parsed::Bad(Malformed::WrongVersion)
        );
        assert_eq!(
            parse_greeting(&[5, 1, 2]),
            Parsed::Bad(Malformed::NoAcceptableMethod)
        );
        assert_eq!(
            parse_greeting(&[5, 0]),
            Parsed::Bad(Malformed::NoAcceptableMethod)
        );
    }

    #[test]
    fn requests_of_each_address_type() {
        let v4 = [5, 1, 0, 1, 127, 0, 0, 1, 0x1F, 0x90];
        assert_eq!(
            parse_request(&v4),
            Parsed::Done(Target::Ip("127.0.0.1:8080".parse().unwrap()), 10)
        );
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&"::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0, 80]);
        assert_eq!(
            parse_request(&v6),
            Parsed::Done(Target::Ip("[::1]:80".parse().unwrap()), 22)
        );
        let mut name = vec![5, 1, 0, 3, 11];
        name.extend_from_slice(b"example.org");
        name.extend_from_slice(&[1, 187]);
        assert_eq!(
            parse_request(&name),
            Parsed::Done(Target::Domain("example.org".into(), 443), 18)
        );
        for cut in 0..name.len() {
            assert_eq!(parse_request(&name[..cut]), Parsed::Incomplete);
        }
    }

    #[test]
    fn malformed_requests_get_the_right_reply() {
        let bad = |b: &[u8]| match parse_request(b) {
            Parsed::Bad(m) => m.reply_code(),
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(&[4, 1, 0, 1]), REPLY_GENERAL_FAILURE);
        assert_eq!(bad(&[5, 2, 0, 1]), REPLY_COMMAND_NOT_SUPPORTED);
        assert_eq!(bad(&[5, 3, 0, 1]), REPLY_COMMAND_NOT_SUPPORTED);
        assert_eq!(bad(&[5, 1, 0, 9]), REPLY_ADDRESS_NOT_SUPPORTED);
        let mut empty = vec![5, 1, 0, 3, 0, 0, 80];
        assert_eq!(bad(&empty), REPLY_GENERAL_FAILURE);
        empty[4] = 1;
        empty[5] = b' ';
        empty.push(0);
        assert_eq!(bad(&empty), REPLY_GENERAL_FAILURE);
        let mut long = vec![5, 1, 0, 3, 255];
        long.extend_from_slice(&[b'a'; 255]);
        long.extend_from_slice(&[0, 80]);
        assert_eq!(bad(&long), REPLY_GENERAL_FAILURE);
    }

    proptest! {
        #[test]
        fn random_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_greeting(&bytes);
            if let Parsed::Done(_, used) = parse_request(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }
    }
}
