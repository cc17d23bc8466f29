-- Durable reactions, PostgreSQL flavour: a checkpoint per handler (projection, outbox), the
-- events handlers gave up on, and a wake-up notification on append.

-- One row per handler name. `position` is the last log position processed (read_all starts
-- after it). A claim is `owner` + `lease_until` (the server's clock): while the lease is live,
-- no other owner can claim the row or move it; an instance that dies stops renewing, and
-- another takes over once the lease has expired.
CREATE TABLE fluvius_checkpoints (
    name        text        NOT NULL PRIMARY KEY,
    position    bigint      NOT NULL CHECK (position >= 0),
    owner       text,
    lease_until timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Parked events (dead letters): one row per handler and event position.
CREATE TABLE fluvius_dead_letters (
    handler   text        NOT NULL,
    position  bigint      NOT NULL,
    event_id  uuid        NOT NULL,
    event_key text        NOT NULL,
    attempts  integer     NOT NULL,
    error     text        NOT NULL,
    parked_at timestamptz NOT NULL,
    PRIMARY KEY (handler, position)
);

-- A hint for dispatchers (LISTEN fluvius_events): something was appended in this schema.
-- Polling stays the source of truth; a lost notification only delays a handler.
CREATE FUNCTION fluvius_notify_append() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('fluvius_events', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;

CREATE TRIGGER fluvius_events_notify
    AFTER INSERT ON fluvius_events
    FOR EACH STATEMENT EXECUTE FUNCTION fluvius_notify_append();
