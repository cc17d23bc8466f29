-- The Fluvius log store, PostgreSQL flavour (PostgreSQL 13 or later: xid8).
--
-- Global order without a table lock: see the `postgres` module docs of fluvius-sql.
--  * Positions come from `fluvius_events_position_seq`, reserved in one block per append by
--    `fluvius_reserve_positions(n)`, which also assigns the transaction its id, both under a
--    short advisory lock. Hence position order = transaction-id order among writers, and the
--    events of one append get consecutive positions.
--  * Each row records its writer's transaction id (`xact_id`). `read_all` only returns rows
--    whose transaction is older than every transaction still running
--    (`xact_id < pg_snapshot_xmin(pg_current_snapshot())`), so a transaction that commits
--    late can never leave a hole a reader has already skipped.

CREATE SEQUENCE fluvius_events_position_seq AS bigint START WITH 1 CACHE 1;

CREATE TABLE fluvius_events (
    position          bigint      NOT NULL PRIMARY KEY,
    id                uuid        NOT NULL,
    namespace         text        NOT NULL,
    -- Part of the stream identity. The LogStore contract has no tenant in the stream key yet,
    -- so every row carries '' for now; the tenant of the command is in `metadata`.
    tenant            text        NOT NULL DEFAULT '',
    resource          text        NOT NULL,
    aggregate_id      uuid        NOT NULL,
    aggregate_version bigint      NOT NULL CHECK (aggregate_version >= 1),
    key               text        NOT NULL,
    schema_version    integer     NOT NULL,
    -- `json`, not `jsonb`: validated, but stored as the exact text written (key order,
    -- duplicate keys and the digits of big numbers survive).
    payload           json        NOT NULL,
    args              json        NOT NULL,
    metadata          json        NOT NULL,
    command_id        uuid        NOT NULL,
    command_name      text        NOT NULL,
    recorded_at       timestamptz NOT NULL,
    xact_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT fluvius_events_stream_version_key UNIQUE (tenant, resource, aggregate_id, aggregate_version)
);

ALTER SEQUENCE fluvius_events_position_seq OWNED BY fluvius_events.position;

-- Per-aggregate reads (and their `until` filter) use the unique index above; time queries
-- across the log use this one; `read_all` uses the primary key.
CREATE INDEX fluvius_events_recorded_at_idx ON fluvius_events (recorded_at);

-- Processed commands: idempotency and the command log, written in the same transaction as
-- their events.
CREATE TABLE fluvius_commands (
    id             uuid        NOT NULL,
    namespace      text        NOT NULL,
    resource       text        NOT NULL,
    aggregate_id   uuid        NOT NULL,
    action         text        NOT NULL,
    args           json        NOT NULL,
    context        json        NOT NULL,
    version_before bigint      NOT NULL,
    version_after  bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL,
    CONSTRAINT fluvius_commands_pkey PRIMARY KEY (id)
);

-- Reserve `n` consecutive positions and return the first.
--
-- Must be the first thing that writes in its transaction: it assigns the transaction id while
-- holding the lock, which is what ties position order to transaction-id order. The advisory
-- lock is session-level and released before returning, so it serializes only this function
-- (microseconds), never whole write transactions.
CREATE FUNCTION fluvius_reserve_positions(n integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    seq   regclass := 'fluvius_events_position_seq'::regclass;
    -- 'flvs' in the high half, the sequence's oid in the low half: one lock per schema.
    lock_key bigint := (x'666c7673'::bigint << 32) | seq::oid::bigint;
    first bigint;
BEGIN
    IF n < 1 THEN
        RAISE EXCEPTION 'fluvius_reserve_positions: n must be at least 1, got %', n;
    END IF;
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'fluvius_reserve_positions must run before the transaction writes anything else';
    END IF;
    PERFORM pg_advisory_lock(lock_key);
    BEGIN
        PERFORM pg_current_xact_id();
        first := nextval(seq);
        IF n > 1 THEN
            PERFORM setval(seq, first + n - 1);
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock(lock_key);
        RAISE;
    END;
    PERFORM pg_advisory_unlock(lock_key);
    RETURN first;
END
$$;
