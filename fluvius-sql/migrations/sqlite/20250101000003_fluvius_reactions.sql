-- Durable reactions, SQLite flavour: a checkpoint per handler (projection, outbox) and the
-- events handlers gave up on.

-- One row per handler name. `position` is the last log position processed (read_all starts
-- after it). A claim is `owner` + `lease_until`: while the lease is live, no other owner can
-- claim the row or move it. Times are microseconds since the Unix epoch, UTC.
CREATE TABLE fluvius_checkpoints (
    name        TEXT    NOT NULL PRIMARY KEY,
    position    INTEGER NOT NULL CHECK (position >= 0),
    owner       TEXT,
    lease_until INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Parked events (dead letters): one row per handler and event position.
CREATE TABLE fluvius_dead_letters (
    handler   TEXT    NOT NULL,
    position  INTEGER NOT NULL,
    event_id  TEXT    NOT NULL,
    event_key TEXT    NOT NULL,
    attempts  INTEGER NOT NULL,
    error     TEXT    NOT NULL,
    parked_at INTEGER NOT NULL,
    PRIMARY KEY (handler, position)
) STRICT, WITHOUT ROWID;
