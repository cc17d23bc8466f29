-- Snapshots: the folded state of an aggregate at one version, written in the same transaction
-- as the event at that version. Loads read the latest snapshot at or before their target plus
-- the events after it. Every snapshot is kept (time travel uses older ones).
CREATE TABLE fluvius_snapshots (
    -- Stream identity, as in fluvius_events.
    tenant            text        NOT NULL DEFAULT '',
    resource          text        NOT NULL,
    aggregate_id      uuid        NOT NULL,
    -- The state after folding events 1..=aggregate_version.
    aggregate_version bigint      NOT NULL CHECK (aggregate_version >= 1),
    -- The version of the state type's shape (Aggregate::STATE_VERSION).
    state_version     integer     NOT NULL,
    -- `json`, not `jsonb`: stored as the exact text written.
    state             json        NOT NULL,
    -- The timestamp of the event at aggregate_version.
    recorded_at       timestamptz NOT NULL,
    CONSTRAINT fluvius_snapshots_pkey PRIMARY KEY (tenant, resource, aggregate_id, aggregate_version)
);
