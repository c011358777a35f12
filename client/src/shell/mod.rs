//! The async client: a tokio task around [`ClientCore`](client_core::ClientCore).
//!
//! [`Client`] is the handle the application holds; the task behind it
//! (`driver`) owns the core, the gateway session ([`link`]), the clock
//! ([`clock`]) and the topology ([`routes`]). The data folder is in
//! [`store`], the reassembly journal of partial messages in [`journal`]; [`memory`] is an in-memory gateway for tests and benchmarks.

mod api;
pub mod clock;
mod create;
mod driver;
pub mod journal;
pub mod link;
pub mod memory;
mod open;
mod prekeys;
pub mod routes;
pub mod store;

pub use api::{
    Client, ClientOptions, ClientParts, Outgoing, RecalledMessage, ReceivedMessage, ReplyPath,
    SendStatus, ShellStats,
};
pub use create::CreateOptions;
pub use journal::{JournalLimits, PartialJournal};
pub use link::{GatewayDelivery, GatewayDialer, GatewayLink, GatewayLinkError, QuicDialer};
pub use open::{os_seed, refresh_topology};
pub use prekeys::{ONE_TIME_LOW_MARK, ONE_TIME_TARGET};
pub use routes::{ResidencyError, TopologyRoutes};
pub use store::{
    BookFile, DataFolder, FolderLock, Passphrase, StateSealing, StoredSettings, UnlockedFolder,
};
