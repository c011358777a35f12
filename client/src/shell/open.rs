//! Starting a client from its data folder and the directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use directory::DirectoryClient;
use protocol::SphinxKeyPair;
use rand::rngs::SysRng;
use rand::{SeedableRng, TryRng};
use tokio::sync::watch;
use topology::{NodeEntry, Topology};

use super::api::{Client, ClientOptions, ClientParts};
use super::journal::{PARTIAL_DIR, PartialJournal};
use super::link::GatewayDialer;
use super::link::QuicDialer;
use super::routes::TopologyRoutes;
use super::store::DataFolder;
use crate::error::{DataFolderError, OpenError};

/// Fetches the topology again every `every`, and publishes it when it is
/// newer; ends when no client watches any more.
pub async fn refresh_topology(
    directory: Arc<DirectoryClient>,
    every: Duration,
    publish: watch::Sender<Arc<Topology>>,
) {
    loop {
        tokio::select! {
            () = publish.closed() => return,
            () = tokio::time::sleep(every) => {}
        }
        match directory.refresh().await {
            Ok(topology) => {
                let newer = {
                    let held = publish.borrow();
                    (topology.epoch, topology.serial) != (held.epoch, held.serial)
                };
                if newer {
                    publish.send_replace(topology);
                }
            }
            Err(e) => tracing::warn!("keeping the current topology: {e}"),
        }
    }
}

/// A random 32-byte seed from the operating system.
pub fn os_seed() -> Result<[u8; 32], DataFolderError> {
    let mut seed = [0u8; 32];
    SysRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| DataFolderError::Io {
            path: "/dev/urandom".into(),
            reason: e.to_string(),
        })?;
    Ok(seed)
}

impl Client {
    /// Starts the client kept in `data_dir`: claims the folder for this
    /// process ([`DataFolder::lock`]: fails with
    /// [`DataFolderError::InUse`] while another client of it runs), unlocks
    /// its key, settings and
    /// sealed session book (`options.passphrase` when the folder is sealed
    /// with one; see [`DataFolder::unlock`]) and the reassembly
    /// journal of partial messages (`partial/`, replayed into the core),
    /// fetches and verifies the topology (or uses the cached one), finds
    /// its gateway there and opens sessions with `connect(gateway, keys)`.
    /// The topology is fetched again every `options.topology_refresh`.
    pub async fn open<C, F>(
        data_dir: &Path,
        options: ClientOptions,
        connect: F,
    ) -> Result<Client, OpenError>
    where
        C: GatewayDialer,
        F: FnOnce(&NodeEntry, &SphinxKeyPair) -> Result<C, OpenError>,
    {
        let folder = DataFolder::new(data_dir);
        // Before anything is read: the book read here is the one this
        // process alone writes from now on.
        let lock = folder.lock()?;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(os_seed()?);
        let unlocked = folder.unlock(&mut rng, options.passphrase.as_ref())?;
        let (settings, keys) = (&unlocked.settings, &unlocked.keys);
        let authorities = settings.authority_set(&folder)?;
        let gateway = settings.gateway(&folder)?;
        let directory = Arc::new(
            DirectoryClient::with_authorities(authorities, Some(folder.topology_path()))?
                .with_mirrors(options.topology_mirrors.clone()),
        );
        let topology = directory.topology().await?;
        let entry = topology
            .gateways
            .iter()
            .find(|g| g.id == gateway)
            .ok_or_else(|| OpenError::UnknownGateway(gateway.to_base58()))?;
        let mut options = options;
        if options.prekey_rotation.is_none() {
            options.prekey_rotation = Some(settings.rotation_schedule());
        }
        if options.route_regions.is_none() && !settings.route_regions.is_empty() {
            options.route_regions = Some(settings.route_regions.clone());
        }
        if let Some(regions) = &options.route_regions {
            // Refused at once rather than sending nothing: the client's own
            // gateway and every layer must have a node inside the regions.
            TopologyRoutes::new(topology.clone(), Some(regions.clone().into()))
                .check_route_to(&gateway)?;
            crate::shell::routes::check_entry(entry, regions)?;
        }
        let connector = connect(entry, keys)?;
        let journal = PartialJournal::open(data_dir.join(PARTIAL_DIR))?;
        let (publish, watch) = watch::channel(topology);
        tokio::spawn(refresh_topology(
            directory,
            options.topology_refresh,
            publish,
        ));
        Ok(Client::start(ClientParts {
            keys: unlocked.keys,
            gateway,
            topology: watch,
            connector,
            options,
            seed: os_seed()?,
            sessions: unlocked.book,
            book_file: Some(unlocked.book_file),
            journal: Some(journal),
            folder_lock: Some(lock),
        }))
    }

    /// Starts the client kept in `data_dir` ([`Client::open`]) with QUIC
    /// sessions to its gateway's client address.
    pub async fn connect(data_dir: &Path, options: ClientOptions) -> Result<Client, OpenError> {
        Client::open(data_dir, options, |entry, keys| {
            let address = entry
                .client_address
                .ok_or_else(|| OpenError::NoClientAddress(entry.id.to_base58()))?;
            Ok(QuicDialer {
                address,
                gateway: entry.id,
                keys: keys.clone(),
            })
        })
        .await
    }
}
