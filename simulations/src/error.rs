//! What can go wrong before or while a simulation runs.
//!
//! A simulation fails only on bad input (a scenario that makes no sense) or on
//! writing its results; the network inside it never fails the run: packets the
//! mixers refuse are counted, as a real node would count them.

/// Why a scenario could not be loaded, run or written out.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario or sweep file is not valid TOML for its schema.
    #[error("{file}: {message}")]
    Parse {
        /// The file (or `<inline>`).
        file: String,
        /// What the parser said.
        message: String,
    },
    /// A field has a value the simulator cannot run.
    #[error("scenario field `{field}`: {message}")]
    Invalid {
        /// The field, dotted path.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Building a packet failed (a route longer than Sphinx allows, ...).
    #[error("building a packet: {0}")]
    Packet(#[from] protocol::ProtocolError),
    /// The simulated network could not be set up (a gateway refused a
    /// client's session, the reference loop payload did not come out, ...).
    #[error("setting up the network: {0}")]
    Setup(String),
    /// A gateway's in-memory mailbox failed.
    #[error("gateway mailbox: {0}")]
    Mailbox(#[from] gateway_core::MailboxError),
    /// The report could not be serialised.
    #[error("report.json: {0}")]
    Json(#[from] serde_json::Error),
    /// The scenario could not be written back as TOML for the report page.
    #[error("report.html: the scenario as TOML: {0}")]
    Toml(#[from] toml::ser::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The SVG file.
        path: String,
        /// What the plotting backend said.
        message: String,
    },
}

impl SimError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        SimError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SimError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
