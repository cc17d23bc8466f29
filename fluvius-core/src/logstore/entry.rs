//! One entry of the global log as [`read_log`](super::LogStore::read_log) returns it:
//! [`LogEntry`] (an event, or an [`UndecodableEntry`]), and [`events_of`].

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::Event;

/// One entry of the global log, as [`LogStore::read_log`](super::LogStore::read_log) returns it: an event, or a stored row
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
/// [`LogStore::read_all`](super::LogStore::read_all) answers).
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
