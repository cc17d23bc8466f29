-- Readers wait only for this store's own appends, not for every transaction on the cluster.
--
-- `read_all` used to return rows of transactions older than the cluster-wide snapshot xmin,
-- so any transaction anywhere on the server that held an id (a migration, a batch job,
-- another schema or database) held every handler back until it ended. Now each append marks
-- itself: while holding the reservation lock, just after taking its transaction id, it takes
-- a transaction-level shared advisory lock keyed by (this schema's sequence oid, the low 32
-- bits of its transaction id), held until it commits or rolls back. A reader finds this
-- schema's appends still running in `pg_locks` (see `fluvius-sql/src/postgres/horizon.rs`).
CREATE OR REPLACE FUNCTION fluvius_reserve_positions(n integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    seq   regclass := 'fluvius_events_position_seq'::regclass;
    -- 'flvs' in the high half, the sequence's oid in the low half: one lock per schema.
    lock_key bigint := (x'666c7673'::bigint << 32) | seq::oid::bigint;
    xid   bigint;
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
        xid := pg_current_xact_id()::text::bigint;
        -- The marker: the sequence's oid in the high half, the low half of the transaction id
        -- in the low half. Taken before the reservation lock is released, so before any later
        -- append of this schema gets its transaction id.
        PERFORM pg_advisory_xact_lock_shared((seq::oid::bigint << 32) | (xid & x'ffffffff'::bigint));
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
