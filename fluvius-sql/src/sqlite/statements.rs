//! The SQL text of the SQLite store: the columns its statements read and write.

pub(super) const EVENT_COLUMNS: &str =
    "position, id, namespace, resource, aggregate_id, aggregate_version, key, \
     schema_version, payload, args, metadata, command_id, command_name, recorded_at";

/// The columns of `fluvius_events` an `INSERT` binds for each event (all but the position).
pub(super) const EVENT_INSERT_COLUMNS: &str =
    "id, namespace, resource, aggregate_id, aggregate_version, key, \
     schema_version, payload, args, metadata, command_id, command_name, recorded_at";
