-- The append hint moves out of the appending transaction.
--
-- A transaction that has called NOTIFY takes a cluster-wide lock at commit and holds it until
-- its commit is flushed (notifications are queued in commit order). With the statement trigger
-- of migration 0003, every append of every app instance took that lock, so appends committed
-- one at a time, each waiting for its own flush, and PostgreSQL could not flush several
-- commits at once. The store now sends the notification itself after the append has
-- committed (see `fluvius-sql/src/postgres/hints.rs`); listeners are unchanged.
DROP TRIGGER IF EXISTS fluvius_events_notify ON fluvius_events;
DROP FUNCTION IF EXISTS fluvius_notify_append();
