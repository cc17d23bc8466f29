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
    /// [`read_log`](Self::read_log); wrappers must forward both.
    fn read_all(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Event>>> {
        Box::pin(async move { events_of(self.read_log(after, limit).await?) })
    }

    /// The record of a processed command, if this id was processed.
    fn get_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<CommandRecord>>>;

    /// The latest snapshot of one stream that passes `query` (see [`SnapshotQuery`]), if any.
    ///
    /// The default keeps no snapshots: it returns `None` (and such a store ignores
    /// [`AppendRequest::snapshot`]). Every backend of this workspace stores them; wrappers must
    /// forward this method.
    fn load_snapshot<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: SnapshotQuery,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        let _ = (resource, aggregate_id, query);
        Box::pin(async { Ok(None) })
    }

    /// The handler checkpoints and dead letters kept in the same database, if this store keeps
    /// them. A domain on a store without them keeps checkpoints in memory (not durable).
    fn checkpoints(&self) -> Option<&dyn CheckpointStore> {
        None
    }

    /// Whether [`append`](Self::append) runs [`AppendRequest::transactional`] handlers inside
    /// its transaction (see [`crate::transactional`]). The default is `false`: a domain with
    /// transactional handlers refuses to build on such a store rather than skip them. Every
    /// backend of this workspace runs them; wrappers must forward this method.
    fn runs_transactional_handlers(&self) -> bool {
        false
    }

    /// The position of the last event [`read_all`](Self::read_all) can return now (0 for an
    /// empty log). The default pages through the log; backends answer directly.
    fn head_position(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            const PAGE: usize = 1000;
            let mut head = 0;
            loop {
                let page = self.read_log(head, PAGE).await?;
                let Some(last) = page.last() else { break };
                head = last.position();
                if page.len() < PAGE {
                    break;
                }
            }
            Ok(head)
        })
    }

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
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn append(&self, request: AppendRequest) -> BoxFuture<'_, Result<Vec<Event>>> {
        (**self).append(request)
    }
    fn read_stream<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: StreamQuery,
    ) -> BoxFuture<'a, Result<Vec<Event>>> {
        (**self).read_stream(resource, aggregate_id, query)
    }
    fn read_all(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Event>>> {
        (**self).read_all(after, limit)
    }
    fn read_log(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<LogEntry>>> {
        (**self).read_log(after, limit)
    }
    fn get_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<CommandRecord>>> {
        (**self).get_command(command_id)
    }
    fn load_snapshot<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: SnapshotQuery,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        (**self).load_snapshot(resource, aggregate_id, query)
    }

    fn checkpoints(&self) -> Option<&dyn CheckpointStore> {
        (**self).checkpoints()
    }
    fn runs_transactional_handlers(&self) -> bool {
        (**self).runs_transactional_handlers()
    }
    fn head_position(&self) -> BoxFuture<'_, Result<u64>> {
        (**self).head_position()
    }
}
