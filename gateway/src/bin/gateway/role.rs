//! The gateway's role in the node runtime.
//!
//! What is a gateway's own, around the runtime's node lifecycle:
//! - the client listener, bound before the gateway registers so that its
//!   descriptor announces the address clients dial (see `clients`);
//! - the core thread, which owns the [`GatewayCore`], its `redb` mailbox and
//!   the replay journal (see `core_loop`), and takes the final-hop packets
//!   the runtime's workers open with the exit `Mixer`;
//! - the gateway's own series, copied from the core's stats at each scrape.
//!
//! Shutdown: the core thread closes every session (`Close(shutdown)`),
//! flushes the journal and ends, and the runtime waits for it to the end;
//! the listener gives the goodbyes until the runtime's deadline to reach the
//! clients, then closes.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use gateway::config::GatewaySections;
use gateway::{RedbPrekeyStore, RedbStore};
use gateway_core::{GatewayConfig, GatewayCore, Mailbox, ThrottleConfig};
use mixnode_core::{Action, DropReason};
use nodeshell::config::{NodeConfig, NodeFile};
use nodeshell::{Node, NodeKind, Role, RoleInput, RoleTasks};
use prometheus_client::registry::Registry;
use protocol::keys::IdentityKeyPair;
use protocol::packet::Delivery;
use tokio::sync::mpsc;

use crate::clients::ClientListener;
use crate::core_loop::CoreLoop;
use crate::metrics::GatewayMetrics;

/// Client events waiting for the core thread.
const CLIENT_EVENTS: usize = 1024;
/// Final-hop packets waiting for the core thread.
const FINAL_HOPS: usize = 4096;
/// How much faster than the network's λ_P + λ_L a client may send before it is throttled.
const THROTTLE_HEADROOM: f64 = 1.25;

/// The gateway's role: its sections of the config, its mailbox, its client listener.
pub struct GatewayRole {
    config: GatewaySections,
    mailbox: Mailbox<RedbStore>,
    /// The prekey service's tables, in the mailbox's database.
    prekeys: RedbPrekeyStore,
    listener: Option<ClientListener>,
    /// The data folder (closed admission's files are there).
    data_dir: std::path::PathBuf,
}

impl Role for GatewayRole {
    const KIND: NodeKind = NodeKind::Gateway;
    type Sections = GatewaySections;
    type Hop = Delivery;
    /// Links, the intake, the client sessions on one thread (the mailbox
    /// commits run on the core thread): no work-stealing wake-ups between
    /// two runtime threads per packet.
    const ASYNC_THREADS: usize = 1;

    /// Opens the mailbox in the data folder; errors name the file.
    fn open(file: &NodeFile<GatewaySections>) -> Result<Self> {
        let path = file.node.node.data_dir.join("mailbox.redb");
        let store = RedbStore::open(&path).with_context(|| path.display().to_string())?;
        let prekeys = store.prekey_store();
        let mailbox = Mailbox::open(store, file.role.mailbox.mailbox_config())
            .with_context(|| path.display().to_string())?;
        Ok(GatewayRole {
            config: file.role.clone(),
            mailbox,
            prekeys,
            listener: None,
            data_dir: file.node.node.data_dir.clone(),
        })
    }

    fn hop(action: Action) -> Result<Delivery, DropReason> {
        match action {
            Action::Deliver(delivery) => Ok(delivery),
            // A gateway is the last hop only: it mixes nothing onwards.
            _ => Err(DropReason::UnknownNextHop),
        }
    }

    fn hop_queue(_config: &NodeConfig) -> usize {
        FINAL_HOPS
    }

    fn bind(&mut self, identity: &IdentityKeyPair) -> Result<Option<SocketAddr>> {
        let listener = ClientListener::bind(identity, self.config.clients.listen)?;
        let bound = listener.local_addr()?;
        self.listener = Some(listener);
        Ok(Some(self.config.clients.announced(bound)))
    }

    fn start(
        self,
        node: &Node,
        input: RoleInput<Delivery>,
        registry: &mut Registry,
    ) -> Result<RoleTasks> {
        let listener = self
            .listener
            .context("the client listener is bound before the gateway starts")?;
        let metrics = Arc::new(GatewayMetrics::register(registry));
        let params = node.topology.borrow().params.clone();
        // A Poisson sender at exactly λ_P + λ_L now and then outruns a bucket
        // refilled at that rate; a quarter of headroom keeps honest clients
        // unthrottled while still bounding a misbehaving one.
        let rate = THROTTLE_HEADROOM * (params.lambda_p + params.lambda_l);
        let clients = &self.config.clients;
        let core = GatewayCore::new(
            node.id,
            GatewayConfig {
                throttle: ThrottleConfig {
                    rate,
                    burst: (rate * 2.0).max(ThrottleConfig::default().burst),
                },
                max_sessions: clients.max_sessions,
                registration_expiry: clients.registration_expiry(),
                source_limits: clients.source_limits(),
                open_registration: clients.admission == gateway::config::Admission::Open,
                ..GatewayConfig::default()
            },
            self.mailbox,
        )
        .context("mailbox.redb")?
        .with_prekey_store(self.prekeys);
        let stats = core.stats().clone();
        let (client_tx, client_rx) = mpsc::channel(CLIENT_EVENTS);

        // The core thread, with a runtime of its own: its calls write to disk.
        let core_loop = CoreLoop {
            core,
            journal: input.journal,
            node: node.clone(),
            metrics: metrics.clone(),
            rng: input.rng,
            enrollment: (clients.admission == gateway::config::Admission::Closed)
                .then(|| gateway::enrollment::EnrollmentFiles::new(&self.data_dir)),
            group_commit: self.config.mailbox.group_commit(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("cannot start the core runtime")?;
        let final_hops = input.opened;
        let core_thread = std::thread::Builder::new()
            .name("gateway-core".into())
            .spawn(move || runtime.block_on(core_loop.run(client_rx, final_hops)))
            .context("cannot start the core thread")?;

        let listening = tokio::spawn(listener.serve(
            client_tx,
            clients.max_sessions,
            clients.session_queue,
            node.shutdown.clone(),
        ));
        Ok(RoleTasks {
            durable: vec![tokio::task::spawn_blocking(move || {
                let _ = core_thread.join();
            })],
            lingering: vec![listening],
            observe: Some(Box::new(move || metrics.observe_core(&stats.snapshot()))),
        })
    }
}
