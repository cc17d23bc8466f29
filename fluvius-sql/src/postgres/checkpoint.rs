//! Handler checkpoints and dead letters in PostgreSQL (tables `fluvius_checkpoints` and
//! `fluvius_dead_letters`, migration `0003`), and the `LISTEN fluvius_events` wake-up hint.
//!
//! Claims are leases measured with the server's clock (`now()`), so app instances need no
//! clock agreement. A claim is one `UPDATE … WHERE owner IS NULL OR owner = $me OR
//! lease_until < now()`: row locking makes racing claims take turns, and the second sees the
//! first's live lease.

use std::sync::Arc;
use std::time::Duration;

use fluvius_core::DeadLetter;
use sqlx::postgres::{PgListener, PgRow};

use super::{column, CoreResult, PostgresLogStore};
use crate::codec;

/// The channel notified after appends commit (payload: the schema name). See
/// [the module docs](super#waking-other-instances).
pub const APPEND_CHANNEL: &str = "fluvius_events";

fn lease_secs(lease: Duration) -> f64 {
    lease.as_secs_f64().min(1e9)
}

fn decode_letter(row: &PgRow) -> Result<DeadLetter, String> {
    let attempts: i32 = column(row, 4)?;
    Ok(DeadLetter {
        handler: column(row, 0)?,
        position: codec::to_u64(column(row, 1)?, "position")?,
        event_id: column(row, 2)?,
        event_key: column(row, 3)?,
        attempts: u32::try_from(attempts).map_err(|_| format!("stored attempts {attempts} out of range"))?,
        error: column(row, 5)?,
        parked_at: column(row, 6)?,
    })
}

impl PostgresLogStore {
    async fn checkpoint_impl(&self, name: &str) -> CoreResult<Option<u64>> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM fluvius_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.query_error("read checkpoint"))?;
        position
            .map(|p| codec::to_u64(p, "checkpoint"))
            .transpose()
            .map_err(|m| self.data_error(m))
    }

    async fn claim_impl(
        &self,
        name: &str,
        owner: &str,
        start: u64,
        lease: Duration,
    ) -> CoreResult<Option<u64>> {
        let start = codec::to_i64(start, "checkpoint").map_err(|m| self.data_error(m))?;
        sqlx::query(
            "INSERT INTO fluvius_checkpoints (name, position, owner, lease_until, updated_at) \
             VALUES ($1, $2, NULL, '-infinity', now()) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(start)
        .execute(&self.pool)
        .await
        .map_err(self.query_error("create checkpoint"))?;
        let position: Option<i64> = sqlx::query_scalar(
            "UPDATE fluvius_checkpoints SET owner = $2, lease_until = now() + make_interval(secs => $3) \
             WHERE name = $1 AND (owner IS NULL OR owner = $2 OR lease_until < now()) RETURNING position",
        )
        .bind(name)
        .bind(owner)
        .bind(lease_secs(lease))
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error("claim checkpoint"))?;
        position
            .map(|p| codec::to_u64(p, "checkpoint"))
            .transpose()
            .map_err(|m| self.data_error(m))
    }

    async fn advance_impl(
        &self,
        name: &str,
        owner: &str,
        from: u64,
        to: u64,
        lease: Duration,
    ) -> CoreResult<bool> {
        let done = sqlx::query(
            "UPDATE fluvius_checkpoints \
             SET position = $4, lease_until = now() + make_interval(secs => $5), updated_at = now() \
             WHERE name = $1 AND owner = $2 AND position = $3",
        )
        .bind(name)
        .bind(owner)
        .bind(codec::clamp_i64(from))
        .bind(codec::to_i64(to, "checkpoint").map_err(|m| self.data_error(m))?)
        .bind(lease_secs(lease))
        .execute(&self.pool)
        .await
        .map_err(self.query_error("advance checkpoint"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_impl(&self, name: &str, owner: &str) -> CoreResult<()> {
        sqlx::query("UPDATE fluvius_checkpoints SET owner = NULL WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(self.query_error("release checkpoint"))?;
        Ok(())
    }

    async fn reset_impl(&self, name: &str, position: u64) -> CoreResult<()> {
        sqlx::query(
            "INSERT INTO fluvius_checkpoints (name, position, owner, lease_until, updated_at) \
             VALUES ($1, $2, NULL, '-infinity', now()) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(codec::to_i64(position, "checkpoint").map_err(|m| self.data_error(m))?)
        .execute(&self.pool)
        .await
        .map_err(self.query_error("reset checkpoint"))?;
        Ok(())
    }

    async fn park_impl(&self, letter: DeadLetter) -> CoreResult<()> {
        sqlx::query(
            "INSERT INTO fluvius_dead_letters (handler, position, event_id, event_key, attempts, error, parked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (handler, position) DO UPDATE SET event_id = excluded.event_id, \
             event_key = excluded.event_key, attempts = excluded.attempts, error = excluded.error, \
             parked_at = excluded.parked_at",
        )
        .bind(&letter.handler)
        .bind(codec::to_i64(letter.position, "position").map_err(|m| self.data_error(m))?)
        .bind(letter.event_id)
        .bind(&letter.event_key)
        .bind(i32::try_from(letter.attempts).unwrap_or(i32::MAX))
        .bind(&letter.error)
        .bind(codec::micros(letter.parked_at))
        .execute(&self.pool)
        .await
        .map_err(self.query_error("park event"))?;
        Ok(())
    }

    async fn parked_impl(&self, handler: Option<&str>) -> CoreResult<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT handler, position, event_id, event_key, attempts, error, parked_at \
             FROM fluvius_dead_letters WHERE $1::text IS NULL OR handler = $1 ORDER BY handler, position",
        )
        .bind(handler)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error("list parked events"))?;
        rows.iter()
            .map(decode_letter)
            .collect::<Result<_, _>>()
            .map_err(|m| self.data_error(m))
    }

    async fn unpark_impl(&self, handler: &str, position: u64) -> CoreResult<bool> {
        let done = sqlx::query("DELETE FROM fluvius_dead_letters WHERE handler = $1 AND position = $2")
            .bind(handler)
            .bind(codec::clamp_i64(position))
            .execute(&self.pool)
            .await
            .map_err(self.query_error("unpark event"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The last position `read_all` can return now: the same visibility rule.
    pub(super) async fn head_position_impl(&self) -> CoreResult<u64> {
        let horizon = super::horizon::read(&self.pool)
            .await
            .map_err(self.query_error("read head position"))?;
        let head: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(position), 0) FROM fluvius_events \
             WHERE xact_id < $1::bigint::text::xid8",
        )
        .bind(horizon)
        .fetch_one(&self.pool)
        .await
        .map_err(self.query_error("read head position"))?;
        codec::to_u64(head, "position").map_err(|m| self.data_error(m))
    }

    async fn listen(pool: sqlx::PgPool, wake: Arc<tokio::sync::Notify>) {
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection failed; polling meanwhile");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(APPEND_CHANNEL).await {
                tracing::debug!(error = %e, "LISTEN failed; polling meanwhile");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // A reconnect may have missed notifications: wake once.
            wake.notify_waiters();
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => wake.notify_waiters(),
                    // The connection was lost and re-established: wake for what was missed.
                    Ok(None) => wake.notify_waiters(),
                    Err(e) => {
                        tracing::debug!(error = %e, "LISTEN connection lost");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    }
}

checkpoint_store_glue!(PostgresLogStore, {
    fn append_hints(&self, wake: Arc<tokio::sync::Notify>) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin(Self::listen(self.pool.clone(), wake)))
    }
});

fn projection_error(operation: &str, name: &str, message: impl std::fmt::Display) -> fluvius_core::Error {
    fluvius_core::Error::store(
        "postgres",
        format!("{operation} of projection `{name}`: {message}"),
        None,
    )
}

/// Inside a projection's transaction: move its position (the `fluvius_checkpoints` row named
/// `name`) from `from` to `to`, so the rows and the position commit together. Fails — roll the
/// transaction back — if the position is no longer `from`. Creates the row when `from` is 0
/// and there is none. The PostgreSQL twin of `fluvius_sql::sqlite::advance_projection`.
pub async fn advance_projection(
    conn: &mut sqlx::PgConnection,
    name: &str,
    from: u64,
    to: u64,
) -> CoreResult<()> {
    let to_i64 = codec::to_i64(to, "position").map_err(|m| projection_error("advance", name, m))?;
    if from == 0 {
        sqlx::query(
            "INSERT INTO fluvius_checkpoints (name, position, owner, lease_until, updated_at) \
             VALUES ($1, 0, NULL, '-infinity', now()) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(|e| projection_error("advance", name, e))?;
    }
    let done = sqlx::query(
        "UPDATE fluvius_checkpoints SET position = $3, updated_at = now() WHERE name = $1 AND position = $2",
    )
    .bind(name)
    .bind(codec::clamp_i64(from))
    .bind(to_i64)
    .execute(&mut *conn)
    .await
    .map_err(|e| projection_error("advance", name, e))?;
    if done.rows_affected() != 1 {
        return Err(projection_error(
            "advance",
            name,
            format!("the position is no longer {from}"),
        ));
    }
    Ok(())
}

/// Inside a projection's transaction: set its position to 0 (for
/// [`Projection::clear`](fluvius_core::Projection::clear)).
pub async fn reset_projection(conn: &mut sqlx::PgConnection, name: &str) -> CoreResult<()> {
    sqlx::query(
        "INSERT INTO fluvius_checkpoints (name, position, owner, lease_until, updated_at) \
         VALUES ($1, 0, NULL, '-infinity', now()) \
         ON CONFLICT (name) DO UPDATE SET position = 0, updated_at = now()",
    )
    .bind(name)
    .execute(&mut *conn)
    .await
    .map_err(|e| projection_error("reset", name, e))?;
    Ok(())
}
