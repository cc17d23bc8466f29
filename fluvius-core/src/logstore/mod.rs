//! The log store contract: one trait, many backends, one conformance suite.
//!
//! # Semantics every backend keeps
//! - [`append`](LogStore::append) is all or nothing. Versions are dense per aggregate
//!   (1, 2, 3, …); the request's `expected_version` is the version before the append, and a
//!   mismatch is [`Error::Conflict`]. A command id seen before is [`Error::DuplicateCommand`].
//! - Global positions start at 1 and strictly increase; the events of one append get
//!   consecutive positions.
//! - Per-aggregate reads return events in version order. [`StreamQuery::until`] is
//!   *inclusive* (events with `timestamp <= until`).
//! - [`read_all(after, limit)`](LogStore::read_all) returns events with `position > after`
//!   (the start is *exclusive*, so a checkpoint is simply the last position processed), in
//!   position order, at most `limit` of them; a reader never sees position N+1 before N.
//!   [`read_log`](LogStore::read_log) reads the same entries one by one: a stored row that
//!   cannot be decoded (or upcast) is a [`LogEntry::Undecodable`] naming its position, id and
//!   error, and the entries after it are still read; `read_all` fails with that error
//!   ([`Error::UndecodableEvent`](crate::Error::UndecodableEvent) or
//!   [`Error::Upcast`](crate::Error::Upcast)) instead.
//! - A [`Snapshot`] attached to an append ([`AppendRequest::snapshot`]) is written in the same
//!   transaction as the events: a refused append stores neither.
//!   [`load_snapshot`](LogStore::load_snapshot) returns the latest snapshot at or before a
//!   version and/or a time ([`SnapshotQuery`]).

mod memory;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use memory::MemoryLogStore;

use crate::checkpoint::CheckpointStore;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::future::BoxFuture;
use crate::id::AggregateId;
use crate::name::Name;
use crate::payload::Payload;
use crate::transactional::{AppendTx, TransactionalHandlers};

/// A batch of events for one stream, appended atomically.
///
/// Build one with [`AppendRequest::new`] and the `with_*` methods (the struct is
/// `#[non_exhaustive]`: fields are added as stores learn new things).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AppendRequest {
    /// The resource of the stream.
    pub resource: Name,
    /// The aggregate of the stream.
    pub aggregate_id: AggregateId,
    /// The stream's version before this append (0 for a new stream).
    pub expected_version: u64,
    /// The events, with versions `expected_version + 1 ..` in order.
    pub events: Vec<Event>,
    /// The command that produced them, recorded in the same transaction (idempotency and the
    /// command log).
    pub command: Option<CommandRecord>,
    /// A snapshot of the aggregate's state at the version of one of `events`, stored in the same
    /// transaction.
    pub snapshot: Option<Snapshot>,
    /// Handlers to run inside the append's transaction, after the version check and before
    /// the commit; a refusal rolls the append back (see [`crate::transactional`]). Only set
    /// on stores whose [`runs_transactional_handlers`](LogStore::runs_transactional_handlers)
    /// is true.
    pub transactional: Option<TransactionalHandlers>,
}

impl AppendRequest {
    /// A request to append `events` to the stream (`resource`, `aggregate_id`) that is at
    /// `expected_version`, without a command record or a snapshot (set those fields, or use
    /// [`with_command`](Self::with_command) and [`with_snapshot`](Self::with_snapshot)).
    pub fn new(
        resource: impl Into<Name>,
        aggregate_id: AggregateId,
        expected_version: u64,
        events: Vec<Event>,
    ) -> Self {
        Self {
            resource: resource.into(),
            aggregate_id,
            expected_version,
            events,
            command: None,
            snapshot: None,
            transactional: None,
        }
    }

    /// Record `command` with the events.
    pub fn with_command(mut self, command: CommandRecord) -> Self {
        self.command = Some(command);
        self
    }

    /// Store `snapshot` with the events.
    pub fn with_snapshot(mut self, snapshot: Snapshot) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// Run `handlers` inside the append's transaction (see [`crate::transactional`]).
    pub fn with_transactional(mut self, handlers: TransactionalHandlers) -> Self {
        self.transactional = Some(handlers);
        self
    }

    /// The events as they are being written at positions `first_position..`, for the
    /// [transactional handlers](crate::transactional) to see (`None` when there are none, or
    /// none wants these events). For log store implementations, with
    /// [`run_transactional`](Self::run_transactional).
    pub fn events_at(&self, positions: impl IntoIterator<Item = u64>) -> Vec<Event> {
        self.events
            .iter()
            .zip(positions)
            .map(|(e, position)| Event {
                position,
                ..e.clone()
            })
            .collect()
    }

    /// Run the request's transactional handlers, if any want its events, on the events as
    /// written at `positions` (one per event, in order), inside the open transaction `tx`.
    /// An error means the store must roll the append back and return it.
    pub async fn run_transactional(
        &self,
        positions: impl IntoIterator<Item = u64>,
        tx: &mut AppendTx<'_>,
    ) -> Result<()> {
        match &self.transactional {
            Some(handlers) if handlers.wants(&self.events) => {
                handlers.run(&self.events_at(positions), tx).await
            }
            _ => Ok(()),
        }
    }

    /// Check every name the request would store with [`validate_name`](crate::validate_name),
    /// so that a name no store can hold (a NUL byte, …) is refused alike by every store.
    fn validate_names(&self) -> Result<()> {
        use crate::name::validate_name;
        validate_name("resource", &self.resource)?;
        for e in &self.events {
            validate_name("namespace", &e.namespace)?;
            validate_name("resource", &e.resource)?;
            validate_name("event key", &e.key)?;
            validate_name("action", &e.command_name)?;
            if let Some(tenant) = &e.metadata.tenant_id {
                validate_name("tenant", tenant)?;
            }
            if let Some(user) = &e.metadata.user_id {
                validate_name("user id", user)?;
            }
        }
        if let Some(record) = &self.command {
            validate_name("namespace", &record.namespace)?;
            validate_name("resource", &record.resource)?;
            validate_name("action", &record.action)?;
            record.context.validate_names()?;
        }
        Ok(())
    }

    /// Check the request's shape: every event belongs to the stream and versions are dense
    /// from `expected_version + 1`; every name it stores passes
    /// [`validate_name`](crate::validate_name) ([`Error::InvalidName`](crate::Error::InvalidName)
    /// otherwise). Backends call this before writing.
    pub fn validate(&self) -> Result<()> {
        self.validate_names()?;
        // Versions are i64 in the SQL stores; refusing larger ones here also rules out overflow.
        let last = self
            .expected_version
            .checked_add(self.events.len() as u64)
            .filter(|v| *v <= i64::MAX as u64)
            .ok_or_else(|| {
                crate::Error::InvalidAppend(format!(
                    "expected version {} is too large to append {} event(s)",
                    self.expected_version,
                    self.events.len()
                ))
            })?;
        for (i, e) in self.events.iter().enumerate() {
            let want = self.expected_version + 1 + i as u64;
            if e.resource != self.resource || e.aggregate_id != self.aggregate_id {
                return Err(crate::Error::InvalidAppend(format!(
                    "event {} belongs to {}/{}, not {}/{}",
                    e.id, e.resource, e.aggregate_id, self.resource, self.aggregate_id
                )));
            }
            if e.aggregate_version != want {
                return Err(crate::Error::InvalidAppend(format!(
                    "event {} has version {}, expected {}",
                    e.id, e.aggregate_version, want
                )));
            }
        }
        if let Some(snapshot) = &self.snapshot {
            if snapshot.resource != self.resource || snapshot.aggregate_id != self.aggregate_id {
                return Err(crate::Error::InvalidAppend(format!(
                    "snapshot belongs to {}/{}, not {}/{}",
                    snapshot.resource, snapshot.aggregate_id, self.resource, self.aggregate_id
                )));
            }
            let at = snapshot
                .version
                .checked_sub(self.expected_version + 1)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| self.events.get(i));
            let Some(event) = at else {
                return Err(crate::Error::InvalidAppend(format!(
                    "snapshot at version {} is not at the version of an appended event ({}..={})",
                    snapshot.version,
                    self.expected_version + 1,
                    last
                )));
            };
            if snapshot.timestamp != event.timestamp {
                return Err(crate::Error::InvalidAppend(format!(
                    "snapshot at version {} has timestamp {}, but its event has {}",
                    snapshot.version, snapshot.timestamp, event.timestamp
                )));
            }
        }
        Ok(())
    }
}

/// The folded state of one aggregate at one version, stored so a load need not replay the
/// whole stream: load = latest snapshot + the events after it.
///
/// `state_version` is the version of the state type's shape
/// ([`Aggregate::STATE_VERSION`](crate::Aggregate::STATE_VERSION)) when the snapshot was taken:
/// a snapshot of another shape is never decoded, the state is rebuilt from events instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The resource of the stream.
    pub resource: String,
    /// The aggregate of the stream.
    pub aggregate_id: AggregateId,
    /// The aggregate version the state is at (the state after folding events `1..=version`).
    pub version: u64,
    /// The version of the state type's shape.
    pub state_version: u32,
    /// The serialized state.
    pub state: Payload,
    /// The timestamp of the event at `version`.
    pub timestamp: DateTime<Utc>,
}

/// Which snapshot of one stream to load: the latest (highest version) one that passes every
/// bound given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotQuery {
    /// Only snapshots with `version <= max_version`.
    pub max_version: Option<u64>,
    /// Only snapshots with `timestamp <= until` (inclusive).
    pub until: Option<DateTime<Utc>>,
}

impl SnapshotQuery {
    /// Whether a snapshot passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.max_version.is_none_or(|v| s.version <= v) && self.until.is_none_or(|t| s.timestamp <= t)
    }
}

/// A processed command, as the log keeps it: who asked for what, and which versions it wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The command id.
    pub id: Uuid,
    /// The namespace of the domain that processed it.
    pub namespace: Name,
    /// The resource it addressed.
    pub resource: Name,
    /// The aggregate it addressed.
    pub aggregate_id: AggregateId,
    /// The action name.
    pub action: Name,
    /// Its arguments.
    pub args: Payload,
    /// Its context.
    pub context: Context,
    /// The aggregate version before the command.
    pub version_before: u64,
    /// The aggregate version after the command.
    pub version_after: u64,
    /// When it was recorded.
    pub timestamp: DateTime<Utc>,
}

/// Which events of one stream to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamQuery {
    /// Only events with `aggregate_version >= from_version`.
    pub from_version: Option<u64>,
    /// Only events with `aggregate_version <= to_version`.
    pub to_version: Option<u64>,
    /// Only events with `timestamp <= until` (inclusive).
    pub until: Option<DateTime<Utc>>,
}

impl StreamQuery {
    /// Whether an event passes the filter.
    pub fn matches(&self, e: &Event) -> bool {
        self.from_version.is_none_or(|v| e.aggregate_version >= v)
            && self.to_version.is_none_or(|v| e.aggregate_version <= v)
            && self.until.is_none_or(|t| e.timestamp <= t)
    }
}

/// One entry of the global log, as [`LogStore::read_log`] returns it: an event, or a stored row
/// that cannot be decoded or upcast (which does not hide the entries after it).
#[derive(Debug)]
pub enum LogEntry {
    /// A decoded event.
    Decoded(Event),
    /// A stored event that cannot be decoded or upcast.
    Undecodable(UndecodableEntry),
}

impl LogEntry {
    /// The entry's global position.
    pub fn position(&self) -> u64 {
        match self {
            LogEntry::Decoded(e) => e.position,
            LogEntry::Undecodable(u) => u.position,
        }
    }

    /// The event, or the error that names the entry
    /// ([`Error::UndecodableEvent`] or [`Error::Upcast`]).
    pub fn into_event(self) -> Result<Event> {
        match self {
            LogEntry::Decoded(e) => Ok(e),
            LogEntry::Undecodable(u) => Err(u.error),
        }
    }
}

/// The events of `entries`, or the error of the first undecodable one (what
/// [`LogStore::read_all`] answers).
pub fn events_of(entries: Vec<LogEntry>) -> Result<Vec<Event>> {
    entries.into_iter().map(LogEntry::into_event).collect()
}

/// A stored event that cannot be decoded (a malformed row) or upcast (no upcaster lifts it,
/// or its upcaster fails), named so that an operator can find and repair it.
#[derive(Debug)]
#[non_exhaustive]
pub struct UndecodableEntry {
    /// The entry's global position.
    pub position: u64,
    /// The event's id, when it could be read.
    pub event_id: Option<Uuid>,
    /// The event's key, when it could be read (handlers whose pattern does not match it are
    /// not concerned by the entry).
    pub key: Option<String>,
    /// Why it cannot be read: [`Error::UndecodableEvent`] or [`Error::Upcast`].
    pub error: Error,
}

impl UndecodableEntry {
    /// A row at `position` that does not decode, for `message` (the error is
    /// [`Error::UndecodableEvent`]).
    pub fn malformed(position: u64, event_id: Option<Uuid>, key: Option<String>, message: String) -> Self {
        let error = Error::UndecodableEvent {
            position,
            event_id,
            message,
        };
        Self::new(position, event_id, key, error)
    }

    /// An entry at `position` that cannot be read for `error` (an [`Error::UndecodableEvent`],
    /// or the [`Error::Upcast`] of an event that decodes but cannot be lifted to its current
    /// shape).
    pub fn new(position: u64, event_id: Option<Uuid>, key: Option<String>, error: Error) -> Self {
        Self {
            position,
            event_id,
            key,
            error,
        }
    }
}

/// Where events live. Implemented by [`MemoryLogStore`] here and by the SQL stores in
/// `fluvius-sql`; every implementation passes the same conformance suite.
///
/// Methods return boxed futures so the trait stays object-safe (`Arc<dyn LogStore>`).
///
/// The capabilities ([`load_snapshot`](Self::load_snapshot),
/// [`checkpoints`](Self::checkpoints),
/// [`runs_transactional_handlers`](Self::runs_transactional_handlers),
/// [`head_position`](Self::head_position)) have no default: a store, and a wrapper around
/// one, says what it does, so a wrapper cannot drop snapshots, durable checkpoints or
/// transactional handlers by forgetting a method. A wrapper forwards what it does not change
/// with [`forward_log_store!`](crate::forward_log_store). The provided methods are written in
/// terms of the required ones.
pub trait LogStore: Send + Sync + 'static {
    /// A short name for logs and errors, e.g. `"memory"` or `"sqlite"`.
    fn backend(&self) -> &'static str;

    /// Append a batch atomically; returns the stored events with their positions.
    fn append(&self, request: AppendRequest) -> BoxFuture<'_, Result<Vec<Event>>>;

    /// Read one stream, filtered by `query`, in version order.
    fn read_stream<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: StreamQuery,
    ) -> BoxFuture<'a, Result<Vec<Event>>>;

    /// Read the global log entry by entry: entries with `position > after`, in position order,
    /// at most `limit`. A stored row that cannot be decoded is a [`LogEntry::Undecodable`] with
    /// its position (and id and key, when those can be read), not a failed read: the entries
    /// after it are returned too. An `Err` means the read itself failed.
    fn read_log(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<LogEntry>>>;

    /// Read the global log: events with `position > after`, in position order, at most `limit`.
    /// A page with an entry that cannot be decoded fails with that entry's error
    /// ([`Error::UndecodableEvent`] or [`Error::Upcast`], naming the event); use
    /// [`read_log`](Self::read_log) to read past it. The default reads
    /// [`read_log`](Self::read_log) (so a wrapper that changes `read_log` and leaves this
    /// method out reads its own entries).
    fn read_all(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Event>>> {
        Box::pin(async move { events_of(self.read_log(after, limit).await?) })
    }

    /// The record of a processed command, if this id was processed.
    fn get_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<CommandRecord>>>;

    /// The latest snapshot of one stream that passes `query` (see [`SnapshotQuery`]), if any.
    ///
    /// A store that keeps no snapshots returns `None` (and ignores [`AppendRequest::snapshot`]).
    /// Every backend of this workspace stores them.
    fn load_snapshot<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: SnapshotQuery,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>>;

    /// The handler checkpoints and dead letters kept in the same database, if this store keeps
    /// them (`None`: a domain on this store keeps checkpoints in memory, not durable).
    fn checkpoints(&self) -> Option<&dyn CheckpointStore>;

    /// Whether [`append`](Self::append) runs [`AppendRequest::transactional`] handlers inside
    /// its transaction (see [`crate::transactional`]). A domain with transactional handlers
    /// refuses to build on a store that answers `false` rather than skip them. Every backend
    /// of this workspace runs them.
    fn runs_transactional_handlers(&self) -> bool;

    /// The position of the last event [`read_all`](Self::read_all) can return now (0 for an
    /// empty log).
    fn head_position(&self) -> BoxFuture<'_, Result<u64>>;

    /// All events of one aggregate, in version order (empty for an unknown aggregate).
    fn get_events<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
    ) -> BoxFuture<'a, Result<Vec<Event>>> {
        self.read_stream(resource, aggregate_id, StreamQuery::default())
    }

    /// The events of one aggregate recorded at or before `until` (inclusive): the state at a
    /// point in time.
    fn get_events_until<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<Event>>> {
        self.read_stream(
            resource,
            aggregate_id,
            StreamQuery {
                until: Some(until),
                ..StreamQuery::default()
            },
        )
    }

    /// The events of one aggregate from `from_version` (inclusive) on.
    fn get_events_from<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        from_version: u64,
    ) -> BoxFuture<'a, Result<Vec<Event>>> {
        self.read_stream(
            resource,
            aggregate_id,
            StreamQuery {
                from_version: Some(from_version),
                ..StreamQuery::default()
            },
        )
    }
}

impl<T: LogStore + ?Sized> LogStore for Arc<T> {
    crate::forward_log_store!(|s| &**s =>
        backend, append, read_stream, read_all, read_log, get_command,
        load_snapshot, checkpoints, runs_transactional_handlers, head_position);
}

/// Implement [`LogStore`] methods of a wrapper by forwarding them, unchanged, to the store it
/// wraps: the one way a wrapper passes a method through.
///
/// Used inside an `impl LogStore for …` block: `|s| <expr>` names the wrapped store (`s` is
/// `&self`; the expression is a reference to a `LogStore`), then come the methods to forward.
/// The wrapper writes the methods it changes itself. The capability methods
/// ([`load_snapshot`](LogStore::load_snapshot), [`checkpoints`](LogStore::checkpoints),
/// [`runs_transactional_handlers`](LogStore::runs_transactional_handlers),
/// [`head_position`](LogStore::head_position)) have no default, so a wrapper that neither
/// forwards nor writes one does not compile, rather than silently losing snapshots,
/// durable checkpoints or transactional handlers.
///
/// Each required method and [`read_all`](LogStore::read_all) can be listed. `read_all` and the
/// other provided methods ([`get_events`](LogStore::get_events), …) are written in terms of the
/// required ones, so a wrapper that leaves them out stays correct: they then go through the
/// wrapper's own [`read_log`](LogStore::read_log) or [`read_stream`](LogStore::read_stream).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// use fluvius_core::{AppendRequest, BoxFuture, Event, LogStore, MemoryLogStore, Result};
///
/// /// Counts appends; everything else is the wrapped store's.
/// struct Counting<S> {
///     inner: S,
///     appends: AtomicU64,
/// }
///
/// impl<S: LogStore> LogStore for Counting<S> {
///     fn append(&self, request: AppendRequest) -> BoxFuture<'_, Result<Vec<Event>>> {
///         self.appends.fetch_add(1, Ordering::Relaxed);
///         self.inner.append(request)
///     }
///
///     fluvius_core::forward_log_store!(|s| &s.inner =>
///         backend, read_stream, read_log, read_all, get_command,
///         load_snapshot, checkpoints, runs_transactional_handlers, head_position);
/// }
///
/// let store = Counting { inner: MemoryLogStore::new(), appends: AtomicU64::new(0) };
/// assert!(store.runs_transactional_handlers(), "the memory store's capability, forwarded");
/// assert!(store.checkpoints().is_some());
/// ```
///
/// Leaving out a capability is a compile error (`not all trait items implemented`):
///
/// ```compile_fail
/// use fluvius_core::{LogStore, MemoryLogStore};
///
/// struct Wrapper(MemoryLogStore);
///
/// impl LogStore for Wrapper {
///     fluvius_core::forward_log_store!(|s| &s.0 =>
///         backend, append, read_stream, read_log, get_command,
///         checkpoints, runs_transactional_handlers, head_position); // no load_snapshot
/// }
/// ```
#[macro_export]
macro_rules! forward_log_store {
    (|$s:ident| $inner:expr => $($method:ident),+ $(,)?) => {
        $( $crate::forward_log_store!(@method $method |$s| $inner); )+
    };
    (@method backend |$s:ident| $inner:expr) => {
        fn backend(&self) -> &'static str {
            let $s = self;
            $crate::LogStore::backend($inner)
        }
    };
    (@method append |$s:ident| $inner:expr) => {
        $crate::forward_log_store!(@arg append request: $crate::AppendRequest,
            ::std::vec::Vec<$crate::Event> |$s| $inner);
    };
    (@method read_stream |$s:ident| $inner:expr) => {
        $crate::forward_log_store!(@stream read_stream $crate::StreamQuery,
            ::std::vec::Vec<$crate::Event> |$s| $inner);
    };
    (@method read_log |$s:ident| $inner:expr) => {
        $crate::forward_log_store!(@log read_log $crate::LogEntry |$s| $inner);
    };
    (@method read_all |$s:ident| $inner:expr) => {
        $crate::forward_log_store!(@log read_all $crate::Event |$s| $inner);
    };
    (@method get_command |$s:ident| $inner:expr) => {
        $crate::forward_log_store!(@arg get_command command_id: $crate::__private::uuid::Uuid,
            ::std::option::Option<$crate::CommandRecord> |$s| $inner);
    };
    (@method load_snapshot |$s:ident| $inner:expr) => {
        $crate::forward_log_store!(@stream load_snapshot $crate::SnapshotQuery,
            ::std::option::Option<$crate::Snapshot> |$s| $inner);
    };
    (@method checkpoints |$s:ident| $inner:expr) => {
        fn checkpoints(&self) -> ::std::option::Option<&dyn $crate::CheckpointStore> {
            let $s = self;
            $crate::LogStore::checkpoints($inner)
        }
    };
    (@method runs_transactional_handlers |$s:ident| $inner:expr) => {
        fn runs_transactional_handlers(&self) -> bool {
            let $s = self;
            $crate::LogStore::runs_transactional_handlers($inner)
        }
    };
    (@method head_position |$s:ident| $inner:expr) => {
        fn head_position(&self) -> $crate::BoxFuture<'_, $crate::Result<u64>> {
            let $s = self;
            $crate::LogStore::head_position($inner)
        }
    };
    // A call with one argument.
    (@arg $method:ident $arg:ident: $arg_ty:ty, $out:ty |$s:ident| $inner:expr) => {
        fn $method(&self, $arg: $arg_ty) -> $crate::BoxFuture<'_, $crate::Result<$out>> {
            let $s = self;
            $crate::LogStore::$method($inner, $arg)
        }
    };
    // One stream of one aggregate, by a query.
    (@stream $method:ident $query:ty, $out:ty |$s:ident| $inner:expr) => {
        fn $method<'a>(
            &'a self,
            resource: &'a str,
            aggregate_id: $crate::AggregateId,
            query: $query,
        ) -> $crate::BoxFuture<'a, $crate::Result<$out>> {
            let $s = self;
            $crate::LogStore::$method($inner, resource, aggregate_id, query)
        }
    };
    // A page of the global log.
    (@log $method:ident $item:ty |$s:ident| $inner:expr) => {
        fn $method(
            &self,
            after: u64,
            limit: usize,
        ) -> $crate::BoxFuture<'_, $crate::Result<::std::vec::Vec<$item>>> {
            let $s = self;
            $crate::LogStore::$method($inner, after, limit)
        }
    };
}
