//! Conversions shared by the backends: Rust values to columns and back.

// Shared by both dialects; with one of them compiled out, some of it goes unused.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]

use chrono::{DateTime, SubsecRound, Utc};
use fluvius_core::{AppendRequest, Context, Event, LogEntry, Metadata, Payload, UndecodableEntry};
use uuid::Uuid;

/// A `u64` that must fit an SQL `BIGINT`.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{what} {value} does not fit a signed 64-bit column"))
}

/// A `u64` query bound, clamped to the `BIGINT` range (no stored value is above it).
pub(crate) fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored `BIGINT` that must be a non-negative `u64`.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("stored {what} {value} is negative"))
}

/// The precision every store keeps.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

pub(crate) fn encode_metadata(metadata: &Metadata) -> Result<String, String> {
    serde_json::to_string(metadata).map_err(|e| format!("event metadata does not serialize: {e}"))
}

pub(crate) fn decode_metadata(text: &str) -> Result<Metadata, String> {
    serde_json::from_str(text).map_err(|e| format!("stored event metadata does not parse: {e}"))
}

pub(crate) fn encode_context(context: &Context) -> Result<String, String> {
    serde_json::to_string(context).map_err(|e| format!("command context does not serialize: {e}"))
}

pub(crate) fn decode_context(text: &str) -> Result<Context, String> {
    serde_json::from_str(text).map_err(|e| format!("stored command context does not parse: {e}"))
}

/// Whether the error is a unique / primary-key violation (and, where the driver reports it,
/// on which constraint).
pub(crate) fn unique_violation(err: &sqlx::Error) -> Option<Option<&str>> {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(db.constraint()),
        _ => None,
    }
}

/// The events of a committed append, with the positions the database gave them (one per
/// event, in order).
pub(crate) fn stored(request: AppendRequest, positions: Vec<u64>) -> Vec<Event> {
    let mut stored = request.events;
    for (event, position) in stored.iter_mut().zip(positions) {
        event.position = position;
        event.timestamp = micros(event.timestamp);
    }
    stored
}

/// The positions an append got back, as `(aggregate_version, position)` pairs in any order,
/// checked against `request` (one per event) and returned in event order.
pub(crate) fn positions_in_order(
    request: &AppendRequest,
    mut positions: Vec<(i64, i64)>,
) -> Result<Vec<u64>, String> {
    positions.sort_unstable();
    if positions.len() != request.events.len() {
        return Err(format!(
            "append wrote {} events but {} positions came back",
            request.events.len(),
            positions.len()
        ));
    }
    positions
        .into_iter()
        .map(|(_, position)| to_u64(position, "position"))
        .collect()
}

/// Stored JSON text that must be well-formed (SQLite keeps JSON as unchecked text).
pub(crate) fn checked_json(text: String, what: &str) -> Result<Payload, String> {
    Payload::from_json(text).map_err(|e| format!("stored event {what} is not JSON: {e}"))
}

/// A row of the events table as a log entry: the event it decoded to, or, when it did not
/// decode, an entry naming it by its position and (when they still read) its id and key. Only
/// a row whose position does not read is an error.
pub(crate) fn log_entry(
    decoded: Result<Event, String>,
    position: impl FnOnce() -> Result<i64, String>,
    id: impl FnOnce() -> Option<Uuid>,
    key: impl FnOnce() -> Option<String>,
) -> Result<LogEntry, String> {
    match decoded {
        Ok(event) => Ok(LogEntry::Decoded(event)),
        Err(message) => {
            let position = to_u64(position()?, "position")?;
            Ok(LogEntry::Undecodable(UndecodableEntry::malformed(
                position,
                id(),
                key(),
                message,
            )))
        }
    }
}

/// The events of one stream's rows, in their order: a row that does not decode fails the
/// read with the error naming it ([`fluvius_core::Error::UndecodableEvent`]); `data_error`
/// makes the error of a row whose position does not read.
pub(crate) fn stream_events<R>(
    rows: &[R],
    decode: impl Fn(&R) -> Result<LogEntry, String>,
    data_error: impl Fn(String) -> fluvius_core::Error,
) -> fluvius_core::Result<Vec<Event>> {
    rows.iter()
        .map(|row| decode(row).map_err(&data_error)?.into_event())
        .collect()
}
