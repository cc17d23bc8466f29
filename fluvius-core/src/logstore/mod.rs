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

mod memory;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use memory::MemoryLogStore;

use crate::checkpoint::CheckpointStore;
use crate::context::Context;
use crate::error::Result;
use crate::event::Event;
use crate::future::BoxFuture;
use crate::id::AggregateId;
use crate::payload::Payload;

/// A batch of events for one stream, appended atomically.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    /// The resource of the stream.
    pub resource: String,
    /// The aggregate of the stream.
    pub aggregate_id: AggregateId,
    /// The stream's version before this append (0 for a new stream).
    pub expected_version: u64,
    /// The events, with versions `expected_version + 1 ..` in order.
    pub events: Vec<Event>,
    /// The command that produced them, recorded in the same transaction (idempotency and the
    /// command log).
    pub command: Option<CommandRecord>,
}

impl AppendRequest {
    /// Check the request's shape: every event belongs to the stream and versions are dense
    /// from `expected_version + 1`. Backends call this before writing.
    pub fn validate(&self) -> Result<()> {
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
        Ok(())
    }
}

/// A processed command, as the log keeps it: who asked for what, and which versions it wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The command id.
    pub id: Uuid,
    /// The namespace of the domain that processed it.
    pub namespace: String,
    /// The resource it addressed.
    pub resource: String,
    /// The aggregate it addressed.
    pub aggregate_id: AggregateId,
    /// The action name.
    pub action: String,
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

/// Where events live. Implemented by [`MemoryLogStore`] here and by the SQL stores in
/// `fluvius-sql`; every implementation passes the same conformance suite.
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

    /// Read the global log: events with `position > after`, in position order, at most `limit`.
    fn read_all(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Event>>>;

    /// The record of a processed command, if this id was processed.
    fn get_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<CommandRecord>>>;

    /// The handler checkpoints and dead letters kept in the same database, if this store keeps
    /// them. A domain on a store without them keeps checkpoints in memory (not durable).
    fn checkpoints(&self) -> Option<&dyn CheckpointStore> {
        None
    }

    /// The position of the last event [`read_all`](Self::read_all) can return now (0 for an
    /// empty log). The default pages through the log; backends answer directly.
    fn head_position(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            const PAGE: usize = 1000;
            let mut head = 0;
            loop {
                let page = self.read_all(head, PAGE).await?;
                let Some(last) = page.last() else { break };
                head = last.position;
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
    fn get_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<CommandRecord>>> {
        (**self).get_command(command_id)
    }
    fn checkpoints(&self) -> Option<&dyn CheckpointStore> {
        (**self).checkpoints()
    }
    fn head_position(&self) -> BoxFuture<'_, Result<u64>> {
        (**self).head_position()
    }
}
