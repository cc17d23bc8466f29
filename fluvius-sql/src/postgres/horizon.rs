//! The visibility horizon of [`read_all`](fluvius_core::LogStore::read_all): the transaction
//! id below which every append of this store has ended, computed from this store's own appends
//! only, so a transaction elsewhere on the cluster (another schema, another database, a batch
//! job) never holds readers back.
//!
//! Each append marks itself in `fluvius_reserve_positions` (migration `0005`): holding the
//! schema's reservation lock, right after taking its transaction id, it takes a shared
//! transaction-level advisory lock keyed by this schema's sequence oid (high 32 bits) and the
//! low 32 bits of its transaction id, held until it ends.
//!
//! A read is two statements, the rows' snapshot taken after the horizon's:
//! 1. [`HORIZON`]: `H` = the least of the snapshot's `xmax` and the ids of this schema's
//!    appends holding a marker in `pg_locks` (32-bit values widened to `xid8` relative to that
//!    `xmax`: a running transaction is within 2^31 of it).
//! 2. the rows with `xact_id < H`.
//!
//! Why no late commit is skipped: let `U` be an append still running when statement 2 takes
//! its snapshot, and `T` any append whose rows statement 2 returns (`xid(T) < H`). If
//! `xid(T) < xid(U)`, `T`'s positions are below `U`'s (positions follow transaction-id order
//! among appends, both being taken under the reservation lock). Otherwise `T` took its id
//! after `U` had released the reservation lock, so after `U` had taken its marker; and
//! `xid(T) < H <= xmax` means `T` had its id before statement 1's snapshot, so `U`'s marker
//! was in `pg_locks` when statement 1 read it, and `H <= xid(U) < xid(T)`: a contradiction.
//! An append that ended before statement 1 read `pg_locks` released its marker after it
//! became visible, so statement 2 sees its rows if it committed.
//!
//! Every writer of `fluvius_events` must reserve its positions with
//! `fluvius_reserve_positions` (as the store does), or readers may pass its rows.

/// Statement 1: the horizon, as a `bigint` transaction id (`xid8` fits: it is below 2^63).
pub(super) const HORIZON: &str = "\
WITH s AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax),
marks AS (
    SELECT l.objid::text::bigint AS low FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = 'fluvius_events_position_seq'::regclass::oid
)
SELECT least(s.xmax, min(s.xmax
    - (((s.xmax - m.low) % 4294967296 + 6442450944) % 4294967296 - 2147483648)))
FROM s LEFT JOIN marks m ON true GROUP BY s.xmax";

/// The horizon, read with its own statement on `executor`; the row read that follows filters
/// on `xact_id < $n::bigint::text::xid8` with it as parameter `$n`.
pub(super) async fn read<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(HORIZON).fetch_one(executor).await
}
