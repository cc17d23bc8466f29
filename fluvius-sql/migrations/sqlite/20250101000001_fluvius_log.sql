-- The Fluvius log store, SQLite flavour.
--
-- Writers are serialized by SQLite itself (one write transaction at a time), so positions are
-- assigned in commit order: the log is dense and a reader can never see position N+1 before N.

-- The global log: one row per event.
CREATE TABLE fluvius_events (
    -- Global position (the rowid): 1, 2, 3, ... in commit order, no gaps.
    position          INTEGER PRIMARY KEY,
    id                TEXT    NOT NULL,
    namespace         TEXT    NOT NULL,
    -- Part of the stream identity. The LogStore contract has no tenant in the stream key yet,
    -- so every row carries '' for now; the tenant of the command is in `metadata`.
    tenant            TEXT    NOT NULL DEFAULT '',
    resource          TEXT    NOT NULL,
    aggregate_id      TEXT    NOT NULL,
    aggregate_version INTEGER NOT NULL CHECK (aggregate_version >= 1),
    key               TEXT    NOT NULL,
    schema_version    INTEGER NOT NULL,
    -- JSON text, stored exactly as serialized (key order and number text kept).
    payload           TEXT    NOT NULL,
    args              TEXT    NOT NULL,
    metadata          TEXT    NOT NULL,
    command_id        TEXT    NOT NULL,
    command_name      TEXT    NOT NULL,
    -- Microseconds since the Unix epoch, UTC.
    recorded_at       INTEGER NOT NULL,
    CONSTRAINT fluvius_events_stream_version UNIQUE (tenant, resource, aggregate_id, aggregate_version)
) STRICT;

-- Per-aggregate reads (and their `until` filter) use the unique index above; time queries
-- across the log use this one; `read_all` uses the primary key.
CREATE INDEX fluvius_events_recorded_at ON fluvius_events (recorded_at);

-- Processed commands: idempotency and the command log, written in the same transaction as
-- their events.
CREATE TABLE fluvius_commands (
    id             TEXT    NOT NULL PRIMARY KEY,
    namespace      TEXT    NOT NULL,
    resource       TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    args           TEXT    NOT NULL,
    context        TEXT    NOT NULL,
    version_before INTEGER NOT NULL,
    version_after  INTEGER NOT NULL,
    recorded_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
