//! Starting the real clients of a load run: `mixnet-load` and `mixnet-cost`
//! both make each client with [`create_client`] and start it with
//! [`connect`], the library's own `Client` with its driver, core and QUIC
//! session, as an application would.

// The load lives on the real clock.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use client::shell::CreateOptions;
use client::{AddressCard, Client, ClientError, ClientOptions, OpenError};
use protocol::NodeId;

/// How long a client may take to be created, and to reach its gateway.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a client of the load could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Creating or opening the client's folder failed.
    #[error("{dir}: {source}")]
    Open {
        /// The client's folder.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: OpenError,
    },
    /// The client did not reach its gateway in time.
    #[error("{dir}: no gateway session within {secs} s")]
    NoSession {
        /// The client's folder.
        dir: PathBuf,
        /// The time waited.
        secs: u64,
    },
    /// The client stopped before it reached its gateway.
    #[error("{dir}: the client stopped before reaching its gateway: {source}")]
    Stopped {
        /// The client's folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: ClientError,
    },
}

/// Creates the data folder of a client registered at `gateway`, trying
/// again while the gateway's client endpoint is not up yet (60 s at most);
/// returns its address card.
pub async fn create_client(
    dir: &Path,
    directory_url: &str,
    directory_key: NodeId,
    gateway: NodeId,
) -> Result<AddressCard, FleetError> {
    let started = Instant::now();
    loop {
        let options = CreateOptions {
            directory_url: directory_url.to_string(),
            directory_key,
            authorities: Vec::new(),
            authority_threshold: None,
            gateway: Some(gateway),
            passphrase: None,
            invite: None,
            two_factor: false,
            region: None,
            route_regions: Vec::new(),
            prekey_rotation: None,
        };
        match Client::create(dir, options).await {
            Ok(created) => return Ok(created.book.card(created.address())),
            Err(OpenError::Registration { .. }) if started.elapsed() < SETUP_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(source) => {
                return Err(FleetError::Open {
                    dir: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// The options of a load client: quick reconnection, a deep receive queue,
/// the network's rates (from the topology), `retransmissions` per fragment.
pub fn load_options(retransmissions: u32) -> ClientOptions {
    let mut o = ClientOptions {
        min_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        topology_refresh: Duration::from_secs(5),
        receive_queue: 1024,
        ..ClientOptions::default()
    };
    o.core.max_retransmissions = retransmissions;
    o
}

/// Starts the client kept in `dir` and waits (60 s at most) for its gateway session.
pub async fn connect(dir: &Path, options: ClientOptions) -> Result<Client, FleetError> {
    let client = Client::connect(dir, options)
        .await
        .map_err(|source| FleetError::Open {
            dir: dir.to_path_buf(),
            source,
        })?;
    match tokio::time::timeout(SETUP_TIMEOUT, client.wait_connected()).await {
        Ok(Ok(())) => Ok(client),
        Ok(Err(source)) => Err(FleetError::Stopped {
            dir: dir.to_path_buf(),
            source,
        }),
        Err(_) => Err(FleetError::NoSession {
            dir: dir.to_path_buf(),
            secs: SETUP_TIMEOUT.as_secs(),
        }),
    }
}
