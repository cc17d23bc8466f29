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

/// Statement 1: the snapshot's `xmax` (`xid8` as `bigint`: it is below 2^63) and the low 32
/// bits of the transaction ids of this schema's appends still running (their marks). On a hot
/// standby, whose `pg_locks` does not show the primary's advisory locks, the snapshot's `xmin`
/// instead (the cluster-wide horizon: correct, but held back by any transaction running).
const HORIZON: &str = "\
SELECT CASE WHEN pg_is_in_recovery() THEN pg_snapshot_xmin(pg_current_snapshot())
            ELSE pg_snapshot_xmax(pg_current_snapshot()) END::text::bigint,
    array(SELECT l.objid::text::bigint FROM pg_locks l
          WHERE NOT pg_is_in_recovery() AND l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.classid = 'fluvius_events_position_seq'::regclass::oid)";

/// The horizon, read with its own statement on `executor`; the row read that follows filters
/// on `xact_id < $n::bigint::text::xid8` with it as parameter `$n`.
pub(super) async fn read<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    let (xmax, marks): (i64, Vec<i64>) = sqlx::query_as(HORIZON).fetch_one(executor).await?;
    Ok(horizon(xmax, &marks))
}

/// The least of `xmax` and the running transactions whose ids end in the 32 bits of `marks`.
/// A running transaction's id is within 2^31 of `xmax` (PostgreSQL stops assigning ids long
/// before they could wrap around), so each is widened to the 64-bit id nearest `xmax` with
/// those low bits; ids at or above `xmax` do not lower the horizon.
fn horizon(xmax: i64, marks: &[i64]) -> i64 {
    marks
        .iter()
        .map(|&low| {
            // The distance from the mark back to xmax, modulo 2^32, as a signed 32-bit value.
            let behind = (xmax as u32).wrapping_sub(low as u32) as i32;
            xmax - i64::from(behind)
        })
        .fold(xmax, i64::min)
}

#[cfg(test)]
mod tests {
    use super::horizon;

    const EPOCH: i64 = 1 << 32;

    #[test]
    fn no_running_append_leaves_xmax() {
        assert_eq!(horizon(1000, &[]), 1000);
    }

    #[test]
    fn the_oldest_running_append_is_the_horizon() {
        assert_eq!(horizon(1000, &[990, 995]), 990);
        // Marks at or above xmax (ids taken after the snapshot's last completed one) do not
        // move it.
        assert_eq!(horizon(1000, &[1000, 1003]), 1000);
    }

    #[test]
    fn ids_are_widened_across_an_epoch_boundary() {
        // xmax just past a wraparound of the 32-bit counter; the append started just before.
        let xmax = 3 * EPOCH + 5;
        let before_wrap = (EPOCH - 10) & 0xffff_ffff;
        assert_eq!(horizon(xmax, &[before_wrap]), 3 * EPOCH - 10);
        // An id just past xmax in the same epoch, with the low bits of a small number.
        assert_eq!(horizon(3 * EPOCH - 2, &[3]), 3 * EPOCH - 2);
        assert_eq!(horizon(xmax, &[2, before_wrap]), 3 * EPOCH - 10);
    }
}
