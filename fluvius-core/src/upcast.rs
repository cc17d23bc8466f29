//! Event versioning: upcasters and key renames, applied on read. Stored events never change.
//!
//! An action declares the schema version it writes (`#[action(..., version = 2)]`). Events
//! stored at an older version are lifted one step at a time (1→2→3) by upcasters registered
//! per (event key, from-version) — with `#[upcast("user-created", from = 1)]` or
//! [`DomainBuilder::upcaster`](crate::DomainBuilder::upcaster) — whenever they are read: by
//! `get_events`, `read_all`, aggregate loads and handler dispatch alike. A renamed key is
//! mapped with [`DomainBuilder::rename_event`](crate::DomainBuilder::rename_event) before
//! upcasting.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::future::BoxFuture;
use crate::id::AggregateId;
use crate::logstore::{LogEntry, LogStore, StreamQuery, UndecodableEntry};
use crate::payload::Payload;

/// Why an upcaster could not lift a payload.
pub struct UpcastError {
    message: String,
}

impl UpcastError {
    /// A failure with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for UpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for UpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpcastError({:?})", self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for UpcastError {
    fn from(err: E) -> Self {
        Self::msg(err.to_string())
    }
}

/// An upcaster: the payload at version `from` in, the payload at `from + 1` out.
pub type UpcastFn = fn(Value) -> std::result::Result<Value, UpcastError>;

/// An upcaster registered at link time by `#[upcast]` (collected with `inventory`).
#[derive(Clone, Copy, Debug)]
pub struct UpcasterRegistration {
    /// The event key.
    pub key: &'static str,
    /// The version it lifts from (to `from + 1`).
    pub from: u32,
    /// Where it was declared.
    pub origin: &'static str,
    /// The function.
    pub upcast: UpcastFn,
}

inventory::collect!(UpcasterRegistration);

/// The upcasters and renames of one domain, with the current version of every key.
#[derive(Default)]
pub(crate) struct Upcasters {
    steps: HashMap<(String, u32), (UpcastFn, String)>,
    renames: HashMap<String, String>,
    current: HashMap<String, u32>,
    /// The version each action writes, per key.
    declared: HashMap<String, u32>,
}

impl Upcasters {
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.renames.is_empty() && self.current.values().all(|&v| v <= 1)
    }

    pub(crate) fn add(&mut self, key: &str, from: u32, f: UpcastFn, origin: String) -> Result<()> {
        if from == 0 {
            return Err(Error::Config(format!(
                "upcaster for `{key}` ({origin}): versions start at 1"
            )));
        }
        if let Some((_, prev)) = self.steps.insert((key.to_owned(), from), (f, origin.clone())) {
            return Err(Error::Config(format!(
                "two upcasters for `{key}` from version {from}: {prev} and {origin}"
            )));
        }
        let current = self.current.entry(key.to_owned()).or_insert(1);
        *current = (*current).max(from + 1);
        Ok(())
    }

    pub(crate) fn rename(&mut self, old: &str, new: &str) -> Result<()> {
        if old == new {
            return Err(Error::Config(format!("rename of `{old}` to itself")));
        }
        if let Some(prev) = self.renames.insert(old.to_owned(), new.to_owned()) {
            return Err(Error::Config(format!(
                "`{old}` is renamed twice (to `{prev}` and `{new}`)"
            )));
        }
        Ok(())
    }

    /// Declare the version an action writes for `key`.
    pub(crate) fn declare_current(&mut self, key: &str, version: u32) {
        let declared = self.declared.entry(key.to_owned()).or_insert(version);
        *declared = (*declared).max(version);
        let current = self.current.entry(key.to_owned()).or_insert(1);
        *current = (*current).max(version);
    }

    /// Every key whose current version cannot be reached from every older version, and every
    /// upcaster that would lift events past the version their action writes (new events would
    /// then be folded in one shape when fresh and in another when read back).
    pub(crate) fn gaps(&self) -> Vec<String> {
        let mut gaps = Vec::new();
        for ((key, from), (_, origin)) in &self.steps {
            if let Some(&declared) = self.declared.get(key) {
                if *from >= declared {
                    gaps.push(format!(
                        "`{key}`: upcaster from version {from} ({origin}) but the action writes version {declared}"
                    ));
                }
            }
        }
        for (key, &current) in &self.current {
            let missing: Vec<u32> = (1..current)
                .filter(|v| !self.steps.contains_key(&(key.clone(), *v)))
                .collect();
            if !missing.is_empty() && missing.len() < (current - 1) as usize {
                // Some but not all steps: a chain with a hole is always a mistake.
                gaps.push(format!(
                    "`{key}`: no upcaster from version(s) {missing:?} (current {current})"
                ));
            }
        }
        gaps.sort();
        gaps
    }

    /// Lift one event to the current shape of its key.
    pub(crate) fn upcast(&self, mut event: Event) -> Result<Event> {
        if let Some(new) = self.renames.get(event.key.as_str()) {
            event.key = new.as_str().into();
        }
        let Some(&current) = self.current.get(event.key.as_str()) else {
            return Ok(event);
        };
        if event.schema_version == current {
            return Ok(event);
        }
        if event.schema_version > current {
            return Err(upcast_error(
                &event,
                current,
                format!(
                    "stored at version {}, newer than this code's version {current}",
                    event.schema_version
                ),
            ));
        }
        let mut value = event
            .payload
            .to_value()
            .map_err(|e| upcast_error(&event, current, format!("stored payload is not JSON: {e}")))?;
        for from in event.schema_version..current {
            let Some((step, _)) = self.steps.get(&(event.key.to_string(), from)) else {
                return Err(upcast_error(
                    &event,
                    current,
                    format!("no upcaster from version {from}"),
                ));
            };
            value = step(value).map_err(|e| {
                upcast_error(
                    &event,
                    current,
                    format!("upcaster from version {from} failed: {e}"),
                )
            })?;
        }
        event.payload = Payload::from(value);
        event.schema_version = current;
        Ok(event)
    }

    /// Check that a stored (key, version) pair can be lifted; `Err` says why not.
    pub(crate) fn check(&self, key: &str, version: u32) -> std::result::Result<(), String> {
        let key = self.renames.get(key).map_or(key, String::as_str);
        let Some(&current) = self.current.get(key) else {
            return Ok(());
        };
        if version > current {
            return Err(format!("`{key}` v{version} is newer than this code's v{current}"));
        }
        for from in version..current {
            if !self.steps.contains_key(&(key.to_owned(), from)) {
                return Err(format!(
                    "`{key}`: no upcaster from v{from} (stored v{version}, current v{current})"
                ));
            }
        }
        Ok(())
    }
}

fn upcast_error(event: &Event, to: u32, message: String) -> Error {
    Error::Upcast {
        event_id: event.id,
        key: event.key.to_string(),
        from: event.schema_version,
        to,
        message,
    }
}

/// A log store seen through the domain's upcasters: reads return current shapes.
pub(crate) struct UpcastingStore {
    pub(crate) inner: Arc<dyn LogStore>,
    pub(crate) upcasters: Arc<Upcasters>,
}

impl UpcastingStore {
    fn lift(&self, events: Vec<Event>) -> Result<Vec<Event>> {
        events.into_iter().map(|e| self.upcasters.upcast(e)).collect()
    }
}

impl LogStore for UpcastingStore {
    // Writes, command records and the capabilities are the wrapped store's. Snapshots hold
    // folded state, not events: nothing to upcast (a state of another shape is recognised by
    // its `state_version`).
    crate::forward_log_store!(|s| &s.inner =>
        backend, append, get_command,
        load_snapshot, checkpoints, runs_transactional_handlers, head_position);

    fn read_stream<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: StreamQuery,
    ) -> BoxFuture<'a, Result<Vec<Event>>> {
        Box::pin(async move { self.lift(self.inner.read_stream(resource, aggregate_id, query).await?) })
    }

    fn read_all(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Event>>> {
        Box::pin(async move { self.lift(self.inner.read_all(after, limit).await?) })
    }

    /// Each event lifted on its own: one that cannot be upcast is an undecodable entry with
    /// the upcaster's error, and the entries after it are still read.
    fn read_log(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<LogEntry>>> {
        Box::pin(async move {
            let entries = self.inner.read_log(after, limit).await?;
            Ok(entries
                .into_iter()
                .map(|entry| match entry {
                    LogEntry::Decoded(event) => {
                        let (position, id, key) = (event.position, event.id, event.key.clone());
                        match self.upcasters.upcast(event) {
                            Ok(event) => LogEntry::Decoded(event),
                            Err(error) => LogEntry::Undecodable(UndecodableEntry::new(
                                position,
                                Some(id),
                                Some(key.to_string()),
                                error,
                            )),
                        }
                    }
                    undecodable => undecodable,
                })
                .collect())
        })
    }
}
