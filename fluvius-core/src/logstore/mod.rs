//! The log store contract: one trait, many backends, one conformance suite.
//!
//! # Semantics every backend keeps
//! - [`append`](LogStore::append) is all or nothing. Versions are dense per aggregate
//!   (1, 2, 3, …); the request's `expected_version` is the version before the append, and a
//!   mismatch is [`Error::Conflict`](crate::Error::Conflict). A command id seen before is
//!   [`Error::DuplicateCommand`](crate::Error::DuplicateCommand).
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

mod append;
mod entry;
mod records;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use append::AppendRequest;
pub use entry::{events_of, LogEntry, UndecodableEntry};
pub use records::{CommandRecord, Snapshot, SnapshotQuery, StreamQuery};

use crate::checkpoint::CheckpointStore;
use crate::error::Result;
use crate::event::Event;
use crate::future::BoxFuture;
use crate::id::AggregateId;

/// Where events live. Implemented by [`MemoryLogStore`](crate::MemoryLogStore) here and by the
/// SQL stores in `fluvius-sql`; every implementation passes the same conformance suite.
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
    /// ([`Error::UndecodableEvent`](crate::Error::UndecodableEvent) or
    /// [`Error::Upcast`](crate::Error::Upcast), naming the event); use
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
