//! Conversions shared by the backends: Rust values to columns and back.

use chrono::{DateTime, SubsecRound, Utc};
use fluvius_core::{AppendRequest, Context, Event, Metadata};

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
