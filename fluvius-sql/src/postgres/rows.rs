//! The row codec: events to bind columns, and rows back to events, entries and commands.

use chrono::{DateTime, Utc};
use fluvius_core::{AggregateId, CommandRecord, Event, LogEntry, Payload};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use crate::codec;
use crate::error::Result;

/// The events of one append, column by column, for `unnest`.
#[derive(Default)]
pub(super) struct Columns<'a> {
    pub(super) ids: Vec<Uuid>,
    pub(super) namespaces: Vec<&'a str>,
    pub(super) versions: Vec<i64>,
    pub(super) keys: Vec<&'a str>,
    pub(super) schema_versions: Vec<i32>,
    pub(super) payloads: Vec<&'a str>,
    pub(super) args: Vec<&'a str>,
    pub(super) metadata: Vec<String>,
    pub(super) command_ids: Vec<Uuid>,
    pub(super) command_names: Vec<&'a str>,
    pub(super) recorded_at: Vec<DateTime<Utc>>,
}

impl<'a> Columns<'a> {
    pub(super) fn new(events: &'a [Event]) -> Result<Self, String> {
        let n = events.len();
        let mut c = Columns {
            ids: Vec::with_capacity(n),
            namespaces: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            args: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            command_ids: Vec::with_capacity(n),
            command_names: Vec::with_capacity(n),
            recorded_at: Vec::with_capacity(n),
        };
        for e in events {
            c.ids.push(e.id);
            c.namespaces.push(&e.namespace);
            c.versions
                .push(codec::to_i64(e.aggregate_version, "aggregate version")?);
            c.keys.push(&e.key);
            c.schema_versions
                .push(i32::try_from(e.schema_version).map_err(|_| {
                    format!(
                        "schema version {} does not fit an integer column",
                        e.schema_version
                    )
                })?);
            c.payloads.push(e.payload.as_str());
            c.args.push(e.args.as_str());
            c.metadata.push(codec::encode_metadata(&e.metadata)?);
            c.command_ids.push(e.command_id);
            c.command_names.push(&e.command_name);
            c.recorded_at.push(codec::micros(e.timestamp));
        }
        Ok(c)
    }
}

impl<'a> Columns<'a> {
    /// Add the events of `other` after these.
    pub(super) fn extend(&mut self, other: Columns<'a>) {
        self.ids.extend(other.ids);
        self.namespaces.extend(other.namespaces);
        self.versions.extend(other.versions);
        self.keys.extend(other.keys);
        self.schema_versions.extend(other.schema_versions);
        self.payloads.extend(other.payloads);
        self.args.extend(other.args);
        self.metadata.extend(other.metadata);
        self.command_ids.extend(other.command_ids);
        self.command_names.extend(other.command_names);
        self.recorded_at.extend(other.recorded_at);
    }
}

pub(super) fn column<'r, T>(row: &'r PgRow, index: usize) -> Result<T, String>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(index).map_err(|e| format!("column {index}: {e}"))
}

pub(super) fn decode_event(row: &PgRow) -> Result<Event, String> {
    let schema_version: i32 = column(row, 7)?;
    Ok(Event {
        position: codec::to_u64(column(row, 0)?, "position")?,
        id: column(row, 1)?,
        namespace: column::<&str>(row, 2)?.into(),
        resource: column::<&str>(row, 3)?.into(),
        aggregate_id: AggregateId::from_uuid(column(row, 4)?),
        aggregate_version: codec::to_u64(column(row, 5)?, "aggregate version")?,
        key: column::<&str>(row, 6)?.into(),
        schema_version: u32::try_from(schema_version)
            .map_err(|_| format!("stored schema version {schema_version} is negative"))?,
        payload: Payload::from_json_unchecked(column::<String>(row, 8)?),
        args: Payload::from_json_unchecked(column::<String>(row, 9)?),
        metadata: codec::decode_metadata(column(row, 10)?)?,
        command_id: column(row, 11)?,
        command_name: column::<&str>(row, 12)?.into(),
        timestamp: column(row, 13)?,
    })
}

/// A row of [`EVENT_COLUMNS`] as a log entry (see [`codec::log_entry`]).
pub(super) fn decode_entry(row: &PgRow) -> Result<LogEntry, String> {
    codec::log_entry(
        decode_event(row),
        || column(row, 0),
        || column(row, 1).ok(),
        || column(row, 6).ok(),
    )
}

/// The stream a row of [`EVENT_COLUMNS`] belongs to, if that much of it reads.
pub(super) fn stream_of(row: &PgRow) -> Option<(String, AggregateId)> {
    Some((column(row, 3).ok()?, AggregateId::from_uuid(column(row, 4).ok()?)))
}

pub(super) fn decode_command(row: &PgRow) -> Result<CommandRecord, String> {
    Ok(CommandRecord {
        id: column(row, 0)?,
        namespace: column::<&str>(row, 1)?.into(),
        resource: column::<&str>(row, 2)?.into(),
        aggregate_id: AggregateId::from_uuid(column(row, 3)?),
        action: column::<&str>(row, 4)?.into(),
        args: Payload::from_json_unchecked(column::<String>(row, 5)?),
        context: codec::decode_context(column(row, 6)?)?,
        version_before: codec::to_u64(column(row, 7)?, "version")?,
        version_after: codec::to_u64(column(row, 8)?, "version")?,
        timestamp: column(row, 9)?,
    })
}
