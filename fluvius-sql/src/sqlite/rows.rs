//! The row codec: events and commands to bind values, and rows back to events, entries and commands.

use chrono::{DateTime, Utc};
use fluvius_core::{AggregateId, CommandRecord, Event, LogEntry, Payload};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite};
use uuid::Uuid;

use crate::codec;
use crate::error::Result;

/// One event, converted for binding.
pub(super) struct EventRow<'a> {
    pub(super) event: &'a Event,
    pub(super) version: i64,
    pub(super) metadata: String,
    pub(super) recorded_at: i64,
}

impl<'a> EventRow<'a> {
    pub(super) fn new(event: &'a Event) -> Result<Self, String> {
        Ok(Self {
            event,
            version: codec::to_i64(event.aggregate_version, "aggregate version")?,
            metadata: codec::encode_metadata(&event.metadata)?,
            recorded_at: event.timestamp.timestamp_micros(),
        })
    }
}

/// The parts of a command record that need converting before binding.
pub(super) struct CommandRow {
    pub(super) context: String,
    pub(super) version_before: i64,
    pub(super) version_after: i64,
    pub(super) recorded_at: i64,
}

impl CommandRow {
    pub(super) fn new(record: &CommandRecord) -> Result<Self, String> {
        Ok(Self {
            context: codec::encode_context(&record.context)?,
            version_before: codec::to_i64(record.version_before, "version")?,
            version_after: codec::to_i64(record.version_after, "version")?,
            recorded_at: record.timestamp.timestamp_micros(),
        })
    }
}

pub(super) fn column<'r, T>(row: &'r SqliteRow, index: usize) -> Result<T, String>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(index).map_err(|e| format!("column {index}: {e}"))
}

pub(super) fn uuid_column(row: &SqliteRow, index: usize) -> Result<Uuid, String> {
    let text: &str = column(row, index)?;
    Uuid::parse_str(text).map_err(|e| format!("column {index} is not a UUID: {e}"))
}

pub(super) fn time_column(row: &SqliteRow, index: usize) -> Result<DateTime<Utc>, String> {
    let micros: i64 = column(row, index)?;
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| format!("column {index}: timestamp {micros} out of range"))
}

pub(super) fn decode_event(row: &SqliteRow) -> Result<Event, String> {
    let schema_version: i64 = column(row, 7)?;
    Ok(Event {
        position: codec::to_u64(column(row, 0)?, "position")?,
        id: uuid_column(row, 1)?,
        namespace: column::<&str>(row, 2)?.into(),
        resource: column::<&str>(row, 3)?.into(),
        aggregate_id: AggregateId::from_uuid(uuid_column(row, 4)?),
        aggregate_version: codec::to_u64(column(row, 5)?, "aggregate version")?,
        key: column::<&str>(row, 6)?.into(),
        schema_version: u32::try_from(schema_version)
            .map_err(|_| format!("stored schema version {schema_version} is out of range"))?,
        payload: codec::checked_json(column::<String>(row, 8)?, "payload")?,
        args: codec::checked_json(column::<String>(row, 9)?, "args")?,
        metadata: codec::decode_metadata(column(row, 10)?)?,
        command_id: uuid_column(row, 11)?,
        command_name: column::<&str>(row, 12)?.into(),
        timestamp: time_column(row, 13)?,
    })
}

/// A row of [`EVENT_COLUMNS`] as a log entry (see [`codec::log_entry`]).
pub(super) fn decode_entry(row: &SqliteRow) -> Result<LogEntry, String> {
    codec::log_entry(
        decode_event(row),
        || column(row, 0),
        || uuid_column(row, 1).ok(),
        || column(row, 6).ok(),
    )
}

/// The stream a row of [`EVENT_COLUMNS`] belongs to, if that much of it reads.
pub(super) fn stream_of(row: &SqliteRow) -> Option<(String, AggregateId)> {
    Some((
        column(row, 3).ok()?,
        AggregateId::from_uuid(uuid_column(row, 4).ok()?),
    ))
}

pub(super) fn decode_command(row: &SqliteRow) -> Result<CommandRecord, String> {
    Ok(CommandRecord {
        id: uuid_column(row, 0)?,
        namespace: column::<&str>(row, 1)?.into(),
        resource: column::<&str>(row, 2)?.into(),
        aggregate_id: AggregateId::from_uuid(uuid_column(row, 3)?),
        action: column::<&str>(row, 4)?.into(),
        args: Payload::from_json_unchecked(column::<String>(row, 5)?),
        context: codec::decode_context(column(row, 6)?)?,
        version_before: codec::to_u64(column(row, 7)?, "version")?,
        version_after: codec::to_u64(column(row, 8)?, "version")?,
        timestamp: time_column(row, 9)?,
    })
}
