//! # Fluvius for Rust — event sourcing and CQRS, ergonomic and durable
//!
//! Write an aggregate as a plain state type with `#[action]` methods (decide) and `#[apply]`
//! methods (evolve); the macros turn each action into a routable, validated command that emits
//! an immutable [`Event`]. A [`Domain`] runs the pipeline: route, load, decide, record, append
//! with optimistic concurrency, respond, dispatch to `#[event_handler]`s.
//!
//! ```
//! use fluvius_core::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! pub struct User { name: String, active: bool }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! pub struct UserCreated { name: String }
//!
//! #[aggregate(resource = "user")]
//! impl User {
//!     #[action(evt_key = "user-created", resources = ["user"])]
//!     async fn create_user(&self, name: String) -> Result<UserCreated, DomainError> {
//!         if self.active { return Err(DomainError::rejected("user already exists")); }
//!         Ok(UserCreated { name })
//!     }
//!
//!     #[apply("user-created")]
//!     fn created(&mut self, e: UserCreated) { self.name = e.name; self.active = true; }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fluvius_core::Error> {
//! let domain = Domain::builder()
//!     .aggregate::<User>()
//!     .logstore(MemoryLogStore::new())
//!     .without_global_handlers()
//!     .build()
//!     .await?;
//! let id = AggregateId::new();
//! let resp = domain.process_command(User::create_user_command(id, "Ann".into())).await?;
//! assert_eq!(resp.version, 1);
//! let events = domain.logstore().get_events("user", id).await?;
//! assert_eq!(events[0].key, "user-created");
//! let user: User = domain.load(id).await?;
//! assert_eq!(user.name, "Ann");
//! # Ok(()) }
//! ```
//!
//! ## Reactions: handlers, projections, sagas
//!
//! Handlers (`#[event_handler]` or [`DomainBuilder::handler`]) are fed from the durable log,
//! not from command responses: each has a stable name and a checkpoint in the store
//! ([`CheckpointStore`]), reads [`LogStore::read_all`] after it in log order (so in version
//! order per aggregate), catches up on start and then follows live. Delivery is at least once;
//! a failing handler is retried with backoff and the event is then parked ([`DeadLetter`],
//! [`Domain::parked`], [`Domain::retry_parked`]). Several app instances on one database share
//! the work: each handler runs in one instance at a time (a leased claim), and another takes
//! over when an instance dies. See [`DispatchOptions`] for polling, leases, retries and
//! start-from-now. [`Projection`]s are read models with their own position and a rebuild;
//! sagas ([`DomainBuilder::saga`], [`Command::caused_by`]) issue commands in reaction to
//! events. [Transactional handlers](transactional) run inside the append's transaction and can
//! refuse a command (uniqueness checks across aggregates).
//!
//! ## Feature flags
//!
//! | feature  | default | what it enables |
//! |----------|---------|-----------------|
//! | `macros` | yes     | re-exports `#[aggregate]`, `#[action]`, `#[apply]`, `#[event_handler]`, `#[upcast]` from `fluvius-macros` |
//! | `testing`| no      | the log store conformance suite (`fluvius_core::testing`), for backend authors |
//!
//! Durable stores (SQLite, PostgreSQL) live in the `fluvius-sql` crate.

mod aggregate;
mod checkpoint;
mod clock;
mod command;
mod context;
mod dispatch;
mod domain;
mod error;
mod event;
mod future;
mod handler;
pub mod harness;
mod id;
mod idhash;
mod logstore;
mod memory;
mod name;
mod pattern;
mod payload;
mod projection;
mod response;
mod retry;
mod saga;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transactional;
mod upcast;

pub use aggregate::{ActionCall, ActionSpec, Aggregate, FoldEvent, NewEvent};
pub use checkpoint::{CheckpointStore, DeadLetter};
pub use command::{Args, Command};
pub use context::Context;
pub use dispatch::{DispatchOptions, HandlerStats, ProjectionStatus, ProjectionStop, StartFrom};
pub use domain::{Domain, DomainBuilder, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_PAYLOAD_BYTES};
pub use error::{DomainError, Error, Result};
pub use event::{Event, Metadata};
pub use future::BoxFuture;
pub use handler::{global_handlers, HandlerError, HandlerFn, HandlerRegistration};
pub use id::AggregateId;
pub use logstore::{
    events_of, AppendRequest, CommandRecord, LogEntry, LogStore, Snapshot, SnapshotQuery, StreamQuery,
    UndecodableEntry,
};
pub use memory::{MemoryCheckpointStore, MemoryLogStore};
pub use name::{validate_name, Name, MAX_NAME_LEN};
pub use pattern::Pattern;
pub use payload::{Payload, MAX_PAYLOAD_DEPTH};
pub use projection::Projection;
pub use response::Response;
pub use retry::{HandlerRetry, RetryPolicy};
pub use transactional::{AppendTx, TransactionalFn, TransactionalHandlers};
pub use upcast::{UpcastError, UpcastFn, UpcasterRegistration};

#[cfg(feature = "macros")]
pub use fluvius_macros::{action, aggregate, apply, event_handler, upcast};

/// Everything a domain module usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        AggregateId, Command, Context, Domain, DomainError, Error, Event, HandlerError, LogStore,
        MemoryLogStore, Response,
    };

    #[cfg(feature = "macros")]
    pub use fluvius_macros::{action, aggregate, apply, event_handler, upcast};
}

/// Paths used by generated code. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
    pub use serde;
    pub use serde_json;
    pub use uuid;

    /// Implemented by a type for itself only: `#[aggregate]` requires `ApplyPayload: SamePayload<ActionPayload>`
    /// for each `#[apply]` method and the action that emits its event, so a fold that would
    /// decode another type than the one recorded fails to compile.
    #[diagnostic::on_unimplemented(
        message = "this #[apply] method takes `{Self}`, but the action that emits its event returns `{T}`",
        label = "expected `{T}`, the payload type of the event's action",
        note = "an #[apply] method folds the payload its event was recorded with: take the type the #[action] returns"
    )]
    pub trait SamePayload<T> {}

    impl<T> SamePayload<T> for T {}

    /// Compiles only when `A` and `B` are the same type (see [`SamePayload`]).
    pub const fn same_payload<A: SamePayload<B>, B>() {}
}
