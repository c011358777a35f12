//! Reading a node's `/metrics` page over plain HTTP, and the samples on it.
//!
//! The chaos tool scrapes each node itself (besides Prometheus) to check the
//! invariants that are about nodes: every drop carries a reason, queues and
//! memory stay bounded. A tiny HTTP/1.0 client is enough for that.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One sample of an exposition: name, labels as written, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name.
    pub name: String,
    /// The label set as written between the braces (empty without labels).
    pub labels: String,
    /// The value.
    pub value: f64,
}

/// Parses the samples of a Prometheus text exposition (comments skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            Some(Sample {
                name: name.to_string(),
                labels: labels.to_string(),
                value,
            })
        })
        .collect()
}

/// The sum of the samples named `name` whose labels contain `label` (any with "").
pub fn sum(samples: &[Sample], name: &str, label: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.labels.contains(label))
        .map(|s| s.value)
        .sum()
}

/// GETs `path` from `addr` over HTTP/1.0; the body, or an error that says what failed.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("{addr}: {e}"))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("{addr}{path}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}{path}: no HTTP header"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(format!("{addr}{path}: {status}"));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_their_labels() {
        let text = "# HELP mixnode_packets_dropped_total Packets dropped\n\
                    # TYPE mixnode_packets_dropped_total counter\n\
                    mixnode_packets_dropped_total{reason=\"replay\"} 3\n\
                    mixnode_packets_dropped_total{reason=\"queue_full\"} 2\n\
                    mixnode_queue_depth 7\n";
        let s = parse(text);
        assert_eq!(s.len(), 3);
        assert_eq!(sum(&s, "mixnode_packets_dropped_total", ""), 5.0);
        assert_eq!(
            sum(&s, "mixnode_packets_dropped_total", "reason=\"replay\""),
            3.0
        );
        assert_eq!(sum(&s, "mixnode_queue_depth", ""), 7.0);
        assert_eq!(sum(&s, "absent", ""), 0.0);
    }
}
