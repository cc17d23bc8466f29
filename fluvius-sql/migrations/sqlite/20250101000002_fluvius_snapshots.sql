-- Snapshots: the folded state of an aggregate at one version, written in the same transaction
-- as the event at that version. Loads read the latest snapshot at or before their target plus
-- the events after it. Every snapshot is kept (time travel uses older ones).
CREATE TABLE fluvius_snapshots (
    -- Stream identity, as in fluvius_events.
    tenant            TEXT    NOT NULL DEFAULT '',
    resource          TEXT    NOT NULL,
    aggregate_id      TEXT    NOT NULL,
    -- The state after folding events 1..=aggregate_version.
    aggregate_version INTEGER NOT NULL CHECK (aggregate_version >= 1),
    -- The version of the state type's shape (Aggregate::STATE_VERSION).
    state_version     INTEGER NOT NULL,
    -- JSON text, stored exactly as serialized.
    state             TEXT    NOT NULL,
    -- The timestamp of the event at aggregate_version, microseconds since the Unix epoch, UTC.
    recorded_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant, resource, aggregate_id, aggregate_version)
) STRICT, WITHOUT ROWID;
