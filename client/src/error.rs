//! Errors of the client crate.

use thiserror::Error;

/// Why the client's data folder could not be read or written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DataFolderError {
    /// A file could not be read or written.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// A field of a file is malformed.
    #[error("{}: `{field}` is not valid: {reason}", path.display())]
    BadField {
        /// The file.
        path: std::path::PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Another process (or another client of this one) runs the client of
    /// the folder.
    #[error(
        "{}: in use by another mixnet-client{}: one process runs a client at a time \
         (its gateway keeps one session per client); stop that one first (a running \
         `receive`, `chat`, `socks5` or `exit` takes `send` and `recall` from other processes)",
        path.display(),
        holder.map(|pid| format!(" (process {pid})")).unwrap_or_default()
    )]
    InUse {
        /// The folder.
        path: std::path::PathBuf,
        /// The holder's process id, when its lock file says it.
        holder: Option<u32>,
    },
    /// `init` would overwrite an existing key.
    #[error("{}: already exists; refusing to replace the client's key", path.display())]
    Exists {
        /// The key file.
        path: std::path::PathBuf,
    },
}

/// Why [`Client::open`](crate::Client::open) could not start a client, or
/// [`Client::create`](crate::Client::create) create one.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The data folder is missing or malformed.
    #[error(transparent)]
    DataFolder(#[from] DataFolderError),
    /// No topology could be fetched or loaded from the cache.
    #[error(transparent)]
    Directory(#[from] directory::DirectoryClientError),
    /// The topology does not list the client's gateway.
    #[error("gateway {0} is not in the topology")]
    UnknownGateway(String),
    /// The topology lists the gateway without an address for clients.
    #[error("gateway {0} has no client address in the topology")]
    NoClientAddress(String),
    /// The topology has no gateway that accepts clients.
    #[error("the topology has no gateway that accepts clients")]
    NoGateway,
    /// A gateway in closed admission refused to register the new client.
    #[error(
        "gateway {gateway} serves only clients its operator enrolled: {}",
        if *invited {
            "this invite was not issued, was used already, or the key is revoked"
        } else {
            "ask the operator for an invite and give it with --invite CODE"
        }
    )]
    NotEnrolled {
        /// The gateway.
        gateway: String,
        /// Whether an invite was given.
        invited: bool,
    },
    /// The invite code does not parse.
    #[error(
        "invite {0:?} is not an invite code (the base58 text `gateway invite` printed, 16 bytes)"
    )]
    BadInvite(String),
    /// Two factors were asked for without a passphrase.
    #[error(
        "two factors need a passphrase as well as the device key file: give one \
         (MIXNET_CLIENT_PASSPHRASE)"
    )]
    TwoFactorWithoutPassphrase,
    /// No gateway that accepts clients is in the region asked for.
    #[error(
        "the topology has no gateway for clients in region \"{region}\" (regions with one: {known})"
    )]
    NoGatewayInRegion {
        /// The region asked for.
        region: String,
        /// The regions that have one, comma-separated.
        known: String,
    },
    /// The client's own gateway or the mix layers are outside its allowed
    /// regions (data residency).
    #[error(transparent)]
    Residency(#[from] crate::shell::routes::ResidencyError),
    /// The new client could not register at its gateway.
    #[error(
        "cannot register at gateway {gateway} ({address}): {source}; is it running and \
         reachable? No address card was made: that gateway would refuse mail for it"
    )]
    Registration {
        /// The gateway.
        gateway: String,
        /// Its address for clients.
        address: std::net::SocketAddr,
        /// What the link said.
        #[source]
        source: transport::gateway_link::GatewayLinkError,
    },
}

/// Why an exit policy could not be used.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for a policy.
    #[error("{}{message}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Parse {
        /// The file, when known.
        path: Option<std::path::PathBuf>,
        /// What the parser said (it names the key).
        message: String,
    },
    /// A value that parses but cannot be used.
    #[error("{0}")]
    Invalid(String),
}

impl PolicyError {
    /// The same error, naming the file.
    pub fn at(self, file: &std::path::Path) -> Self {
        match self {
            PolicyError::Parse { message, .. } => PolicyError::Parse {
                path: Some(file.to_path_buf()),
                message,
            },
            PolicyError::Invalid(m) => PolicyError::Invalid(format!("{}: {m}", file.display())),
            other => other,
        }
    }
}
