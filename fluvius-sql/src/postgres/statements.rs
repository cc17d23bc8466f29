//! The SQL text of the PostgreSQL store: statements, columns and constraint names.

/// The start of the `WITH` clause that inserts command records from `unnest(…)` rows aliased
/// `c`, shared by [`INSERT_EVENTS_AND_COMMAND`] and the bulk statements (which add their own
/// `FROM` and `WHERE`).
macro_rules! insert_command_rows {
    () => {
        "INSERT INTO fluvius_commands (id, namespace, resource, aggregate_id, action, args, context,
        version_before, version_after, recorded_at)
    SELECT c.id, c.namespace, c.resource, c.aggregate_id, c.action, c.args::json, c.context::json,
        c.version_before, c.version_after, c.recorded_at"
    };
}

pub(super) const EVENTS_STREAM_KEY: &str = "fluvius_events_stream_version_key";
pub(super) const COMMANDS_KEY: &str = "fluvius_commands_pkey";

pub(super) const EVENT_COLUMNS: &str =
    "position, id, namespace, resource, aggregate_id, aggregate_version, key, \
     schema_version, payload::text, args::text, metadata::text, command_id, command_name, recorded_at";

/// The statement that appends all events of one request; see [`INSERT_EVENTS`],
/// [`INSERT_EVENTS_AT`] and [`INSERT_EVENTS_AND_COMMAND`].
macro_rules! insert_events {
    ($with:literal, $first:literal, $from:literal) => {
        insert_events!($with, $first, $from, "")
    };
    ($with:literal, $first:literal, $from:literal, $end:expr) => {
        concat!(
            $with,
            "INSERT INTO fluvius_events (position, id, namespace, resource, aggregate_id, aggregate_version, key,
    schema_version, payload, args, metadata, command_id, command_name, recorded_at)
SELECT ",
            $first,
            " + e.ord - 1, e.id, e.namespace, $1, $2, e.aggregate_version, e.key,
    e.schema_version, e.payload::json, e.args::json, e.metadata::json, e.command_id, e.command_name,
    e.recorded_at
FROM ",
            $from,
            "
    unnest($5::uuid[], $6::text[], $7::bigint[], $8::text[], $9::integer[], $10::text[], $11::text[],
        $12::text[], $13::uuid[], $14::text[], $15::timestamptz[])
    WITH ORDINALITY AS e(id, namespace, aggregate_version, key, schema_version, payload, args, metadata,
        command_id, command_name, recorded_at, ord)
WHERE (SELECT coalesce(max(v.aggregate_version), 0) FROM fluvius_events v
       WHERE v.tenant = '' AND v.resource = $1 AND v.aggregate_id = $2) = $3
RETURNING position, aggregate_version",
            $end
        )
    };
}

/// Appends all events of one request in one statement, reserving `$4` positions. The version
/// check is an uncorrelated subquery (a one-time filter): when the stream is not at `$3`,
/// nothing is inserted and no positions are reserved.
pub(super) const INSERT_EVENTS: &str = insert_events!(
    "WITH reserved AS MATERIALIZED (SELECT fluvius_reserve_positions($4) AS first)\n",
    "reserved.first",
    "reserved,"
);

/// [`INSERT_EVENTS`] and the command record (`$16`–`$25`: the columns of [`INSERT_COMMAND`] as
/// arrays of one element, or of none when the append has no command record) in one
/// statement, committed on its own: a lone append with no snapshot and no transactional
/// handlers, one round trip instead of four (`BEGIN`, the two inserts, `COMMIT`). The command
/// is recorded only if the events were written (the version check passed); a recorded command
/// id fails the whole statement with the commands table's unique violation.
pub(super) const INSERT_EVENTS_AND_COMMAND: &str = insert_events!(
    "WITH reserved AS MATERIALIZED (SELECT fluvius_reserve_positions($4) AS first),\nwritten AS (\n",
    "reserved.first",
    "reserved,",
    concat!(
        "
),
recorded AS (
    ",
        insert_command_rows!(),
        "
    FROM unnest($16::uuid[], $17::text[], $18::text[], $19::uuid[], $20::text[], $21::text[], $22::text[],
        $23::bigint[], $24::bigint[], $25::timestamptz[])
        AS c(id, namespace, resource, aggregate_id, action, args, context, version_before, version_after,
            recorded_at)
    WHERE EXISTS (SELECT 1 FROM written)
)
SELECT position, aggregate_version FROM written"
    )
);

/// The same, at positions from `$4` on, reserved beforehand for a whole group commit (only the
/// first statement that writes in a transaction may reserve positions).
pub(super) const INSERT_EVENTS_AT: &str = insert_events!("", "$4::bigint", "");

pub(super) const INSERT_SNAPSHOT: &str = "\
INSERT INTO fluvius_snapshots (tenant, resource, aggregate_id, aggregate_version, state_version, state,
    recorded_at)
VALUES ('', $1, $2, $3, $4, $5::json, $6)";

pub(super) const INSERT_COMMAND: &str = "\
INSERT INTO fluvius_commands (id, namespace, resource, aggregate_id, action, args, context, version_before,
    version_after, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6::json, $7::json, $8, $9, $10)";
