//! The binaries' operational log: `tracing` events on stderr, as text for
//! a person or as JSON lines for a SIEM (`--log-format json`).
//!
//! This is the log of what the software does, filtered by `RUST_LOG`; the
//! audit log ([`crate::AuditLog`]) is the separate, chained record of what
//! was done to the node. Neither carries traffic metadata.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How a binary writes its operational log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per event (`timestamp`, `level`, `fields`, `target`).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}`: the log formats are `text` and `json`")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Logs to stderr in `format`, filtered by `RUST_LOG` or else by
/// `default_filter` (e.g. `info`). Does nothing if a logger is already set.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_back_what_they_print() {
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(format.to_string().parse::<LogFormat>(), Ok(format));
        }
        assert!("xml".parse::<LogFormat>().unwrap_err().contains("json"));
    }
}
