//! Creating a client: a key, a gateway, and a registration there before the
//! address card exists.
//!
//! A gateway keeps mail only for the clients it serves, and it starts serving
//! a client at the client's first authenticated session. A card handed out
//! before that session would collect nothing: every message sent to it is
//! dropped at the gateway, and its sender only learns that no
//! acknowledgement came back. So creation opens one session with the chosen
//! gateway, which registers the new key, before anything is written; if the
//! gateway cannot be reached, nothing is written and the error says which
//! gateway, where, and why. Every later connection renews the registration
//! (a gateway that lost or expired it registers the client again).

use std::path::Path;
use std::time::Duration;

use directory::DirectoryClient;
use protocol::{NodeId, SphinxKeyPair};
use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use topology::NodeEntry;

use super::api::Client;
use super::link::QuicGatewayLink;
use super::open::os_seed;
use super::store::{DataFolder, Passphrase, StateSealing, StoredSettings, UnlockedFolder};
use crate::error::{DataFolderError, OpenError};

/// What [`Client::create`] needs to know.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Base URL of the directory.
    pub directory_url: String,
    /// The directory's key, pinned in the new folder.
    pub directory_key: NodeId,
    /// Several directory authorities to pin instead of the one directory
    /// (`directory_url` and `directory_key` are then ignored).
    pub authorities: Vec<topology::Authority>,
    /// Signatures of `authorities` a topology needs (default: a majority).
    pub authority_threshold: Option<usize>,
    /// The gateway to keep the mailbox at; one of the topology's at random if `None`.
    pub gateway: Option<NodeId>,
    /// Seals the folder with a passphrase instead of a key file.
    pub passphrase: Option<Passphrase>,
    /// A one-time invite of the gateway's operator (base58), for a gateway
    /// in closed admission.
    pub invite: Option<String>,
    /// Needs both factors to open the folder: the device key file
    /// `state.key` and `passphrase` (which must then be given).
    pub two_factor: bool,
    /// The region the gateway must be in (its label in the topology).
    pub region: Option<String>,
    /// Regions every route of the client must stay inside (data residency);
    /// empty: any. Kept in the folder's settings.
    pub route_regions: Vec<String>,
    /// When the prekeys rotate and how long retired ones are kept; `None`:
    /// 7 days each. Kept in the folder's settings.
    pub prekey_rotation: Option<client_core::sessions::RotationSchedule>,
}

impl Client {
    /// Creates a client in `data_dir`: fetches and verifies the topology,
    /// picks the gateway, makes a new key, registers it at the gateway
    /// ([`Client::register`]) and only then writes the folder. Returns the
    /// unlocked folder, whose address card can be handed out at once.
    pub async fn create(
        data_dir: &Path,
        options: CreateOptions,
    ) -> Result<UnlockedFolder, OpenError> {
        if options.two_factor && options.passphrase.is_none() {
            return Err(OpenError::TwoFactorWithoutPassphrase);
        }
        let folder = DataFolder::new(data_dir);
        if folder.key_path().exists() || folder.sessions_path().exists() {
            return Err(DataFolderError::Exists {
                path: folder.key_path(),
            }
            .into());
        }
        std::fs::create_dir_all(data_dir).map_err(|e| DataFolderError::Io {
            path: data_dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let single = options.authorities.is_empty();
        let set = if single {
            topology::AuthoritySet::single(options.directory_key, &options.directory_url)
        } else {
            topology::AuthoritySet::new(options.authorities.clone(), options.authority_threshold)
                .map_err(directory::DirectoryClientError::from)?
        };
        let directory = DirectoryClient::with_authorities(set, Some(folder.topology_path()))?;
        let topology = directory.topology().await?;
        let mut rng = ChaCha20Rng::from_seed(os_seed()?);
        let entry = pick_gateway(&topology, &options, &mut rng)?;
        if !options.route_regions.is_empty() {
            // The mailbox and every layer inside the regions, or no client.
            crate::shell::routes::check_entry(entry, &options.route_regions)?;
            super::routes::TopologyRoutes::new(
                topology.clone(),
                Some(options.route_regions.clone().into()),
            )
            .check_route_to(&entry.id)?;
        }
        let invite = options.invite.as_deref().map(parse_invite).transpose()?;
        let keys = SphinxKeyPair::generate(&mut rng);
        Client::register_with_invite(entry, &keys, invite).await?;
        let settings = StoredSettings {
            directory_url: if single {
                options.directory_url.clone()
            } else {
                String::new()
            },
            directory_key: if single {
                options.directory_key.to_base58()
            } else {
                String::new()
            },
            authorities: options.authorities.clone(),
            authority_threshold: options.authority_threshold.filter(|_| !single),
            gateway: entry.id.to_base58(),
            state_sealing: match (options.passphrase.is_some(), options.two_factor) {
                (true, true) => StateSealing::KeyFileAndPassphrase,
                (true, false) => StateSealing::Passphrase,
                (false, _) => StateSealing::KeyFile,
            },
            route_regions: options.route_regions.clone(),
            mailbox_region: entry.region.clone(),
            prekey_rotation_secs: options.prekey_rotation.map(|s| s.period.as_secs()),
            prekey_grace_secs: options.prekey_rotation.map(|s| s.grace.as_secs()),
        };
        let mut unlocked = folder.init(&mut rng, &settings, &keys, options.passphrase.as_ref())?;
        // The short address works from now on, not only after the first
        // `receive`: the gateway gets the card and one-time prekeys. A
        // failure here costs nothing lasting (the client publishes at every
        // session), so it is reported, not fatal.
        if let Err(e) = publish_prekeys(entry, &mut unlocked, &mut rng).await {
            tracing::warn!(
                "the new client's prekeys were not published at its gateway yet ({e}); \
                 they will be at its first session"
            );
        }
        Ok(unlocked)
    }

    /// Registers `keys` at `gateway`: one session that authenticates (the
    /// gateway registers a key it does not serve yet) and closes. From then
    /// on the gateway keeps mail for the client, until the registration
    /// expires unused.
    pub async fn register(gateway: &NodeEntry, keys: &SphinxKeyPair) -> Result<(), OpenError> {
        Client::register_with_invite(gateway, keys, None).await
    }

    /// [`Client::register`] at a gateway in closed admission, giving the
    /// one-time `invite` its operator handed out.
    pub async fn register_with_invite(
        gateway: &NodeEntry,
        keys: &SphinxKeyPair,
        invite: Option<[u8; protocol::link::INVITE_LEN]>,
    ) -> Result<(), OpenError> {
        let address = gateway
            .client_address
            .ok_or_else(|| OpenError::NoClientAddress(gateway.id.to_base58()))?;
        let link = QuicGatewayLink::connect_enrolling(address, gateway.id, keys, invite)
            .await
            .map_err(|source| match source {
                transport::gateway_link::GatewayLinkError::Refused(
                    protocol::link::CloseReason::NotRegistered,
                ) => OpenError::NotEnrolled {
                    gateway: gateway.id.to_base58(),
                    invited: invite.is_some(),
                },
                source => OpenError::Registration {
                    gateway: gateway.id.to_base58(),
                    address,
                    source,
                },
            })?;
        link.close().await;
        Ok(())
    }
}

/// Publishes the card of the client in `unlocked` and a first supply of
/// one-time prekeys at `gateway` (their secrets saved in the book first),
/// and waits until the gateway reports it keeps them.
async fn publish_prekeys(
    gateway: &NodeEntry,
    unlocked: &mut UnlockedFolder,
    rng: &mut ChaCha20Rng,
) -> Result<(), OpenError> {
    let address = gateway
        .client_address
        .ok_or_else(|| OpenError::NoClientAddress(gateway.id.to_base58()))?;
    let upload = unlocked.book.prekey_upload(
        rng,
        unlocked.address(),
        true,
        super::prekeys::ONE_TIME_TARGET as usize,
    );
    let count = upload.one_time.len() as u32;
    unlocked.book_file.save(rng, &unlocked.book)?;
    let registration = |source| OpenError::Registration {
        gateway: gateway.id.to_base58(),
        address,
        source,
    };
    let link = QuicGatewayLink::connect(address, gateway.id, &unlocked.keys)
        .await
        .map_err(registration)?;
    link.publish_prekeys(upload.fingerprint, upload.published, upload.one_time)
        .await
        .map_err(registration)?;
    // Closing at once could drop what is still in flight: wait for the
    // gateway's report of the last upload (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut kept = false;
    while !kept && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        kept = link
            .take_prekey_stock()
            .is_some_and(|s| s.published && s.one_time_left >= count);
        kept = kept || link.close_reason().is_some();
    }
    link.close().await;
    Ok(())
}

/// The gateway of a new client: the one named, else one at random among
/// those that accept clients in the region asked for (or, without one, in
/// the allowed regions when there are some).
fn pick_gateway<'t>(
    topology: &'t topology::Topology,
    options: &CreateOptions,
    rng: &mut ChaCha20Rng,
) -> Result<&'t NodeEntry, OpenError> {
    let in_region = |g: &NodeEntry| match (&options.region, &options.route_regions) {
        (Some(region), _) => g.region.as_ref() == Some(region),
        (None, allowed) if !allowed.is_empty() => {
            g.region.as_ref().is_some_and(|r| allowed.contains(r))
        }
        (None, _) => true,
    };
    if let Some(id) = options.gateway {
        let entry = topology
            .gateways
            .iter()
            .find(|g| g.id == id)
            .ok_or_else(|| OpenError::UnknownGateway(id.to_base58()))?;
        if let Some(region) = options.region.as_ref().filter(|_| !in_region(entry)) {
            return Err(OpenError::NoGatewayInRegion {
                region: region.clone(),
                known: format!(
                    "gateway {} is in {}",
                    id.to_base58(),
                    entry.region.as_deref().unwrap_or("no region")
                ),
            });
        }
        return Ok(entry);
    }
    let usable: Vec<&NodeEntry> = topology
        .gateways
        .iter()
        .filter(|g| g.client_address.is_some())
        .collect();
    if usable.is_empty() {
        return Err(OpenError::NoGateway);
    }
    let inside: Vec<&NodeEntry> = usable.iter().copied().filter(|g| in_region(g)).collect();
    let pick = rng.random_range(0..inside.len().max(1));
    match (inside.get(pick), &options.region) {
        (Some(entry), _) => Ok(*entry),
        (None, region) => {
            let mut known: Vec<&str> = usable.iter().filter_map(|g| g.region.as_deref()).collect();
            known.sort_unstable();
            known.dedup();
            Err(OpenError::NoGatewayInRegion {
                region: region
                    .clone()
                    .unwrap_or_else(|| options.route_regions.join(", ")),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            })
        }
    }
}

/// An invite code as `gateway invite` prints it (base58 of 16 bytes).
fn parse_invite(text: &str) -> Result<[u8; protocol::link::INVITE_LEN], OpenError> {
    bs58::decode(text.trim())
        .into_vec()
        .ok()
        .and_then(|bytes| <[u8; protocol::link::INVITE_LEN]>::try_from(bytes).ok())
        .ok_or_else(|| OpenError::BadInvite(text.to_string()))
}
