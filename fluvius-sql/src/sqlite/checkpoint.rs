//! Handler checkpoints and dead letters in SQLite (tables `fluvius_checkpoints` and
//! `fluvius_dead_letters`, migration `0003`). Lease times use this process's clock, so
//! processes sharing a database file should have roughly synchronized clocks.

use std::time::Duration;

use chrono::Utc;
use fluvius_core::DeadLetter;
use sqlx::sqlite::SqliteRow;

use super::{column, time_column, uuid_column, CoreResult, SqliteLogStore};
use crate::codec;

fn micros_now() -> i64 {
    Utc::now().timestamp_micros()
}

fn lease_micros(lease: Duration) -> i64 {
    i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2)
}

fn decode_letter(row: &SqliteRow) -> Result<DeadLetter, String> {
    let attempts: i64 = column(row, 4)?;
    Ok(DeadLetter {
        handler: column(row, 0)?,
        position: codec::to_u64(column(row, 1)?, "position")?,
        event_id: uuid_column(row, 2)?,
        event_key: column(row, 3)?,
        attempts: u32::try_from(attempts).map_err(|_| format!("stored attempts {attempts} out of range"))?,
        error: column(row, 5)?,
        parked_at: time_column(row, 6)?,
    })
}

impl SqliteLogStore {
    async fn checkpoint_impl(&self, name: &str) -> CoreResult<Option<u64>> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM fluvius_checkpoints WHERE name = ?1")
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
        let _turn = self.write_turn().await;
        let now = micros_now();
        let start = codec::to_i64(start, "checkpoint").map_err(|m| self.data_error(m))?;
        sqlx::query(
            "INSERT INTO fluvius_checkpoints (name, position, owner, lease_until, updated_at) \
             VALUES (?1, ?2, NULL, 0, ?3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(start)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(self.query_error("create checkpoint"))?;
        let position: Option<i64> = sqlx::query_scalar(
            "UPDATE fluvius_checkpoints SET owner = ?2, lease_until = ?3 + ?4 \
             WHERE name = ?1 AND (owner IS NULL OR owner = ?2 OR lease_until < ?3) RETURNING position",
        )
        .bind(name)
        .bind(owner)
        .bind(now)
        .bind(lease_micros(lease))
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
        let _turn = self.write_turn().await;
        let now = micros_now();
        let done = sqlx::query(
            "UPDATE fluvius_checkpoints SET position = ?4, lease_until = ?5 + ?6, updated_at = ?5 \
             WHERE name = ?1 AND owner = ?2 AND position = ?3",
        )
        .bind(name)
        .bind(owner)
        .bind(codec::clamp_i64(from))
        .bind(codec::to_i64(to, "checkpoint").map_err(|m| self.data_error(m))?)
        .bind(now)
        .bind(lease_micros(lease))
        .execute(&self.pool)
        .await
        .map_err(self.query_error("advance checkpoint"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_impl(&self, name: &str, owner: &str) -> CoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE fluvius_checkpoints SET owner = NULL WHERE name = ?1 AND owner = ?2")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(self.query_error("release checkpoint"))?;
        Ok(())
    }

    async fn reset_impl(&self, name: &str, position: u64) -> CoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO fluvius_checkpoints (name, position, owner, lease_until, updated_at) \
             VALUES (?1, ?2, NULL, 0, ?3) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(codec::to_i64(position, "checkpoint").map_err(|m| self.data_error(m))?)
        .bind(micros_now())
        .execute(&self.pool)
        .await
        .map_err(self.query_error("reset checkpoint"))?;
        Ok(())
    }

    async fn park_impl(&self, letter: DeadLetter) -> CoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT OR REPLACE INTO fluvius_dead_letters \
             (handler, position, event_id, event_key, attempts, error, parked_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&letter.handler)
        .bind(codec::to_i64(letter.position, "position").map_err(|m| self.data_error(m))?)
        .bind(letter.event_id.to_string())
        .bind(&letter.event_key)
        .bind(i64::from(letter.attempts))
        .bind(&letter.error)
        .bind(letter.parked_at.timestamp_micros())
        .execute(&self.pool)
        .await
        .map_err(self.query_error("park event"))?;
        Ok(())
    }

    async fn parked_impl(&self, handler: Option<&str>) -> CoreResult<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT handler, position, event_id, event_key, attempts, error, parked_at \
             FROM fluvius_dead_letters WHERE ?1 IS NULL OR handler = ?1 ORDER BY handler, position",
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
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM fluvius_dead_letters WHERE handler = ?1 AND position = ?2")
            .bind(handler)
            .bind(codec::clamp_i64(position))
            .execute(&self.pool)
            .await
            .map_err(self.query_error("unpark event"))?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn head_position_impl(&self) -> CoreResult<u64> {
        let head: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM fluvius_events")
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_error("read head position"))?;
        codec::to_u64(head, "position").map_err(|m| self.data_error(m))
    }
}

checkpoint_store_glue!(SqliteLogStore);

fn projection_error(operation: &str, name: &str, message: impl std::fmt::Display) -> fluvius_core::Error {
    fluvius_core::Error::store(
        "sqlite",
        format!("{operation} of projection `{name}`: {message}"),
        None,
    )
}

/// Inside a projection's transaction: move its position (the `fluvius_checkpoints` row named
/// `name`) from `from` to `to`, so the rows and the position commit together. Fails — roll the
/// transaction back — if the position is no longer `from` (a rebuild or another instance
/// moved it). Creates the row when `from` is 0 and there is none.
///
/// ```no_run
/// # async fn demo(store: &fluvius_sql::SqliteLogStore, events: &[fluvius_core::Event], from: u64)
/// # -> fluvius_core::Result<()> {
/// let mut tx = store.pool().begin().await.map_err(|e| fluvius_core::Error::store("sqlite", e.to_string(), None))?;
/// // … write the read model's rows with `&mut *tx` …
/// let to = events.last().map_or(from, |e| e.position);
/// fluvius_sql::sqlite::advance_projection(&mut tx, "balances", from, to).await?;
/// tx.commit().await.map_err(|e| fluvius_core::Error::store("sqlite", e.to_string(), None))?;
/// # Ok(()) }
/// ```
pub async fn advance_projection(
    conn: &mut sqlx::SqliteConnection,
    name: &str,
    from: u64,
    to: u64,
) -> CoreResult<()> {
    let to_i64 = codec::to_i64(to, "position").map_err(|m| projection_error("advance", name, m))?;
    if from == 0 {
        sqlx::query(
            "INSERT INTO fluvius_checkpoints (name, position, owner, lease_until, updated_at) \
             VALUES (?1, 0, NULL, 0, ?2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(micros_now())
        .execute(&mut *conn)
        .await
        .map_err(|e| projection_error("advance", name, e))?;
    }
    let done = sqlx::query(
        "UPDATE fluvius_checkpoints SET position = ?3, updated_at = ?4 WHERE name = ?1 AND position = ?2",
    )
    .bind(name)
    .bind(codec::clamp_i64(from))
    .bind(to_i64)
    .bind(micros_now())
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
/// [`Projection::clear`](fluvius_core::Projection::clear), with the rows deleted in the same
/// transaction).
pub async fn reset_projection(conn: &mut sqlx::SqliteConnection, name: &str) -> CoreResult<()> {
    sqlx::query(
        "INSERT INTO fluvius_checkpoints (name, position, owner, lease_until, updated_at) \
         VALUES (?1, 0, NULL, 0, ?2) ON CONFLICT (name) DO UPDATE SET position = 0, updated_at = ?2",
    )
    .bind(name)
    .bind(micros_now())
    .execute(&mut *conn)
    .await
    .map_err(|e| projection_error("reset", name, e))?;
    Ok(())
}
