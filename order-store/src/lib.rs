//! The PostgreSQL event store of the order ledger.
//!
//! - [`EventStore::append`]: one statement, one round trip: idempotency check, optimistic
//!   concurrency on the stream version, dense versions, the command's result recorded, then
//!   a (coalesced) NOTIFY.
//! - [`CommandHandler`]: decide with the pure domain and append, one writer per stream in a
//!   process (queued commands are batched into one append), on the state the last append left
//!   (a bounded cache); a lost race with another process reads the stream and decides again.
//! - [`EventStore::read_all`]: the global log in the gap-safe order (writing transaction id,
//!   then position, fenced at the oldest transaction still in flight that may write to this
//!   database: `orders.log_fence()`), so that no subscriber
//!   ever skips an event that commits late; [`EventStore::read_all_in`] the same for the
//!   streams of some categories (each event records its stream's type, the aggregate's
//!   `CATEGORY`).
//! - [`migrate()`]: the SQL migrations, under an advisory lock.
//! - Failover: a multi-host URL names a primary and its standbys; connections go to whichever
//!   takes writes, and a connection opened before its server turned read-only or shut down is
//!   replaced ([`StoreConfig::server`]). Reads from a replica that must not go back in time
//!   check and read on one connection ([`EventStore::connection_reaching`]).
//!
//! Errors are typed ([`Error`]); SQLSTATEs are mapped by named constants ([`sqlstate`]).
//!
//! ```no_run
//! # async fn example(placement: order_domain::order::PlaceOrder)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use order_domain::{Metadata, Order, OrderCommand};
//! use order_store::{CommandContext, CommandHandler, Cursor, EventStore, StoreConfig};
//! use uuid::Uuid;
//!
//! let store = EventStore::new(StoreConfig::new("postgres://app@localhost/orders"))?;
//! let orders = CommandHandler::<Order>::new(store.clone(), 5);
//! let order_id = Uuid::new_v4();
//! let context = CommandContext {
//!     command_id: Uuid::new_v4(), // a retry with the same id answers the first result
//!     expected_version: None,
//!     metadata: Metadata::default(),
//! };
//! let placed = orders
//!     .handle(order_id, &OrderCommand::PlaceOrder(placement), &context)
//!     .await?;
//! println!("version {} at position {}", placed.stream_version, placed.global_position);
//!
//! // The log in the gap-safe order, as subscribers read it.
//! for event in store.read_all(Cursor::START, 100).await? {
//!     println!("{} {} {}", event.global_position, event.category, event.event_type);
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod append;
mod batch;
mod canonical;
mod config;
mod connect;
mod error;
mod event;
mod handler;
pub mod import;
mod jsonb;
mod listen;
pub mod migrate;
mod probe;
mod recycle;
mod replica;
mod store;
pub mod subscription;
mod xid;

pub use append::{
    APPEND_SQL, AppendOutcome, AppendRequest, CommandRecordWrite, CommandWrite, Committed,
    ExpectedVersion, Idempotency, StreamAppend, StreamOutcome,
};
#[cfg(feature = "cli")]
pub use config::DatabaseArgs;
pub use config::{CommandEventIds, ServerRole, StoreConfig};
pub use connect::HostByHost;
pub use error::{Error, sqlstate};
pub use event::{
    MAX_APPEND_BYTES, MAX_CATEGORY_LEN, MAX_EVENT_TYPE_LEN, MAX_EVENTS_PER_APPEND,
    MAX_PAYLOAD_BYTES, NewEvent, RecordedEvent, check_category,
};
pub use handler::{
    CommandContext, CommandHandler, DEFAULT_CACHED_STREAMS, HandleError, Handled, fingerprint,
};
pub use import::{ImportBatchOutcome, ImportProgress, ImportRecord, ImportedEvent, ImportedStream};
pub use listen::EventListener;
pub use migrate::migrate;
pub use probe::ReadinessProbe;
pub use recycle::register_metrics;
pub use replica::{Pauses, Reach};
pub use store::{
    CURSOR_BEFORE_POSITION_SQL, CategoryPage, CommandRecord, EventStore, NOTIFY_CHANNEL,
    StreamSlice,
};
pub use subscription::{
    Lease, LogDigest, SubscriptionState, advance_checkpoint, restart_checkpoint, verify_read,
};
pub use xid::{Cursor, CursorParseError, Xid8};

/// Re-exported so that users of the store need not depend on the driver crates directly.
pub use deadpool_postgres;
pub use tokio_postgres;
