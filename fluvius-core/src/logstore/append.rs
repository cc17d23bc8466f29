//! [`AppendRequest`]: one atomic batch for one stream, and the checks every store runs on it.

use crate::error::Result;
use crate::event::Event;
use crate::id::AggregateId;
use crate::name::Name;
use crate::transactional::{AppendTx, TransactionalHandlers};

use super::{CommandRecord, Snapshot};

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
    /// on stores whose [`runs_transactional_handlers`](super::LogStore::runs_transactional_handlers)
    /// is true.
    pub transactional: Option<TransactionalHandlers>,
    /// The domain built the request from names it checked already (when it was built, and when
    /// the command arrived): [`validate`](Self::validate) need not check them again. Always
    /// false for requests built outside this crate.
    pub(crate) names_checked: bool,
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
            names_checked: false,
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
        if !self.names_checked {
            self.validate_names()?;
        }
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
