//! The metric names a Grafana dashboard (JSON) queries.
//!
//! `mixnet-chaos` checks each of them against the series Prometheus holds
//! from a live scrape of the container network, so a dashboard never shows
//! an empty panel because a metric was renamed.

use serde_json::Value;

/// Prefixes of the series the network exports (and of the recording rules).
const PREFIXES: [&str; 5] = ["mixnode_", "gateway_", "directory_", "process_", "mixnet:"];

/// Every metric name in the `expr` fields of dashboard `json`, sorted, once each.
pub fn metric_names(json: &str) -> Result<Vec<String>, serde_json::Error> {
    let value: Value = serde_json::from_str(json)?;
    let mut exprs = Vec::new();
    collect_exprs(&value, &mut exprs);
    let mut names: Vec<String> = exprs
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .filter(|t| PREFIXES.iter().any(|p| t.starts_with(p)))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn collect_exprs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_come_from_every_expr_once() {
        let json = r#"{"panels": [
            {"targets": [{"expr": "sum by (reason) (rate(mixnode_packets_dropped_total{job=\"mixnode\"}[5m]))"}]},
            {"panels": [{"targets": [{"expr": "mixnet:packets_forwarded:rate5m / mixnode_queue_depth"}]}]},
            {"targets": [{"expr": "rate(mixnode_packets_dropped_total[1m])", "legendFormat": "gateway_x"}]}
        ]}"#;
        assert_eq!(
            metric_names(json).unwrap(),
            [
                "mixnet:packets_forwarded:rate5m",
                "mixnode_packets_dropped_total",
                "mixnode_queue_depth"
            ]
        );
    }
}
