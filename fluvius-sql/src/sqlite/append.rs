//! The write paths: one append alone, a batch in savepoints, and the multi-row inserts.

use fluvius_core::{AggregateId, AppendRequest, AppendTx, CommandRecord, Event, Snapshot};
use sqlx::{ConnectOptions, Executor, QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::batch::{batch_error, fail_batch, finish_batch, Pending};
use crate::codec;
use crate::error::Result;
use crate::outcome::Bounded as _;

use super::*;

/// Why an append of a batch failed: on its own (its savepoint rolled back), or because the
/// transaction itself is in doubt.
pub(super) enum SavepointFailure {
    Append(fluvius_core::Error),
    Transaction(sqlx::Error),
}

impl SqliteLogStore {
    pub(super) async fn current_version<'e, E>(
        &self,
        executor: E,
        resource: &str,
        aggregate_id: AggregateId,
    ) -> CoreResult<u64>
    where
        E: sqlx::Executor<'e, Database = Sqlite>,
    {
        let version: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(aggregate_version), 0) FROM fluvius_events \
             WHERE tenant = '' AND resource = ?1 AND aggregate_id = ?2",
        )
        .bind(resource)
        .bind(aggregate_id.to_string())
        .fetch_one(executor)
        .await
        .map_err(self.query_error("read stream version"))?;
        codec::to_u64(version, "aggregate version").map_err(|m| self.data_error(m))
    }

    pub(super) fn conflict(request: &AppendRequest, actual: u64) -> fluvius_core::Error {
        fluvius_core::Error::Conflict {
            resource: request.resource.to_string(),
            aggregate_id: request.aggregate_id,
            expected: request.expected_version,
            actual,
        }
    }

    /// The conflict of an append whose events `INSERT` failed its version check, naming the
    /// version the stream is at (read in the append's transaction `tx`).
    pub(super) async fn version_conflict(
        &self,
        tx: &mut SqliteConnection,
        request: &AppendRequest,
    ) -> fluvius_core::Error {
        match self
            .current_version(&mut *tx, &request.resource, request.aggregate_id)
            .await
        {
            Ok(actual) => Self::conflict(request, actual),
            Err(e) => e,
        }
    }

    /// An append with no events writes nothing, but still reports a known command id and a
    /// wrong expected version, like every other append.
    pub(super) async fn check_empty_append(&self, request: &AppendRequest) -> CoreResult<()> {
        if let Some(command) = &request.command {
            if self.get_command_impl(command.id).await?.is_some() {
                return Err(fluvius_core::Error::DuplicateCommand {
                    command_id: command.id,
                });
            }
        }
        let actual = self
            .current_version(&self.pool, &request.resource, request.aggregate_id)
            .await?;
        if actual != request.expected_version {
            return Err(Self::conflict(request, actual));
        }
        Ok(())
    }

    pub(super) async fn append_impl(&self, request: AppendRequest) -> CoreResult<Vec<Event>> {
        let probe = crate::outcome::Probe::of(&request);
        let written = self.bounded("append", self.write_impl(request)).await;
        // A failure that may have come with (or before) a commit: learn the truth first.
        match (written, probe) {
            (Err(e), Some(probe)) if crate::outcome::unclear(&e) => Box::pin(self.resolve(&probe, e)).await,
            (written, _) => written,
        }
    }

    /// Write an append: on the caller's task or through the group-commit writer.
    pub(super) async fn write_impl(&self, request: AppendRequest) -> CoreResult<Vec<Event>> {
        request.validate()?;
        if request.events.is_empty() {
            self.check_empty_append(&request).await?;
            return Ok(Vec::new());
        }
        if let Some(queue) = &self.queue {
            // Nothing queued and nobody writing: write it here. Through the writer it would be
            // a batch of one, plus a hand-off to the writer task and back. (The write turn is
            // fair: it is not free while the writer waits for it.)
            if queue.is_idle() {
                if let Ok(mut turn) = self.writer.try_lock() {
                    queue.wrote_alone();
                    return self.append_alone(&mut turn, request).await;
                }
            }
            return queue.submit(request).await;
        }
        // Take the write lock up front: no read-then-upgrade failures, and the version check
        // cannot go stale before the insert.
        let mut turn = self.write_turn().await;
        self.append_alone(&mut turn, request).await
    }

    /// Write one append in a transaction of its own, holding the write turn.
    pub(super) async fn append_alone(
        &self,
        slot: &mut WriterSlot,
        request: AppendRequest,
    ) -> CoreResult<Vec<Event>> {
        let mut tx = self
            .begin_write(slot)
            .await
            .map_err(self.query_error("begin append"))?;
        let positions = match self.write_append(&mut tx, &request).await {
            Ok(positions) => positions,
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        };
        tx.commit().await.map_err(self.query_error("commit append"))?;
        Ok(codec::stored(request, positions))
    }

    /// Wait for this process's turn to write (see the `writer` field).
    pub(super) async fn write_turn(&self) -> WriteTurn<'_> {
        self.writer.lock().await
    }

    /// An append's write transaction on the writer's connection, opening it if need be (see
    /// [`WriterSlot`]), begun by its first query (see [`WriteTx`]); an in-memory database's on
    /// its pool's connection, begun at once.
    pub(super) async fn begin_write<'t>(&self, slot: &'t mut WriterSlot) -> sqlx::Result<WriteTx<'t>> {
        let WriterSlot {
            options,
            conn,
            suspect,
        } = slot;
        let Some(options) = options else {
            return Ok(WriteTx::Pool(self.pool.begin_with("BEGIN IMMEDIATE").await?));
        };
        if self.pool.is_closed() {
            return Err(sqlx::Error::PoolClosed);
        }
        if std::mem::take(suspect) {
            *conn = None;
        }
        let conn = match conn {
            Some(conn) => conn,
            None => conn.insert(options.connect().await?),
        };
        Ok(WriteTx::writer(conn, suspect))
    }

    /// Write the batch of the group-commit writer in one transaction, each caller answered
    /// after the commit: in bulk when it can (several appends, none with transactional
    /// handlers), else one savepoint per append (when there are several). Returns whether it
    /// wrote the batch in bulk.
    pub(super) async fn write_batch(
        &self,
        batch: Vec<Pending>,
        mut turn: tokio::sync::OwnedMutexGuard<WriterSlot>,
    ) -> bool {
        // Holding the write turn: an append whose caller stopped waiting (it timed out and is
        // resolving, or gave up) is not written any more, so the caller's look for it, which
        // waits for this turn, can trust an absence.
        let batch: Vec<Pending> = batch.into_iter().filter(|p| !p.abandoned()).collect();
        if batch.is_empty() {
            return false;
        }
        let n = batch.len();
        let mut tx = match self.begin_write(&mut turn).await {
            Ok(tx) => tx,
            Err(e) => {
                fail_batch(batch, &self.target, "begin append", &e);
                return false;
            }
        };
        if n > 1 && batch.iter().all(|p| p.request.transactional.is_none()) {
            let requests: Vec<&AppendRequest> = batch.iter().map(|p| &p.request).collect();
            match self.write_bulk(&mut tx, &requests).await {
                Ok(outcomes) => {
                    let outcomes = batch.into_iter().zip(outcomes).collect();
                    finish_batch(tx, outcomes, &self.target).await;
                    return true;
                }
                // Its query commits too: if that may have happened (the worker died), each
                // caller learns its append's truth instead of a rewrite turning it into a
                // conflict.
                Err(e) if crate::outcome::unclear(&e) => {
                    for p in batch {
                        p.answer(Err(crate::outcome::in_doubt(e.to_string())));
                    }
                    return true;
                }
                Err(e) => {
                    // Nothing of the bulk statements may stay: start over, append by append
                    // (still holding the write turn), where each failure is an append's own.
                    tracing::debug!(error = %e, appends = n, "bulk write failed, writing the batch append by append");
                    let _ = tx.rollback().await;
                    tx = match self.begin_write(&mut turn).await {
                        Ok(tx) => tx,
                        Err(e) => {
                            fail_batch(batch, &self.target, "begin append", &e);
                            return false;
                        }
                    };
                }
            }
        }
        let mut outcomes = Vec::with_capacity(n);
        for pending in batch {
            let result = if n == 1 {
                self.write_append(&mut tx, &pending.request)
                    .await
                    .map_err(SavepointFailure::Append)
            } else {
                self.write_in_savepoint(&mut tx, &pending.request).await
            };
            match result {
                Ok(positions) => outcomes.push((pending, Ok(positions))),
                Err(SavepointFailure::Append(e)) => outcomes.push((pending, Err(e))),
                // A failed savepoint statement leaves the transaction in doubt: give up on
                // the whole batch (nothing is committed).
                Err(SavepointFailure::Transaction(e)) => {
                    let _ = tx.rollback().await;
                    pending.answer(Err(batch_error(&self.target, "append (savepoint)", &e, n)));
                    for (p, outcome) in outcomes {
                        let own =
                            outcome.and_then(|_| Err(batch_error(&self.target, "append (savepoint)", &e, n)));
                        p.answer(own);
                    }
                    return false;
                }
            }
        }
        finish_batch(tx, outcomes, &self.target).await;
        false
    }

    /// One append of a batch, inside its own savepoint: rolled back alone if it fails.
    pub(super) async fn write_in_savepoint(
        &self,
        tx: &mut WriteTx<'_>,
        request: &AppendRequest,
    ) -> Result<Vec<u64>, SavepointFailure> {
        tx.begin().await.map_err(SavepointFailure::Transaction)?;
        tx.conn()
            .execute("SAVEPOINT fluvius_append")
            .await
            .map_err(SavepointFailure::Transaction)?;
        match self.write_append(tx, request).await {
            Ok(positions) => {
                tx.conn()
                    .execute("RELEASE fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                Ok(positions)
            }
            Err(e) => {
                tx.conn()
                    .execute("ROLLBACK TO fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                tx.conn()
                    .execute("RELEASE fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                Err(SavepointFailure::Append(e))
            }
        }
    }

    /// Write one append in the open write transaction `tx`: its command row, then its events
    /// (one query for both), the first `INSERT` written only if the stream is at the expected
    /// version (no rows back: a conflict, and only then is the stream's version read). Returns
    /// the position of each event written, in event order. On error the caller rolls back (the
    /// transaction, or the append's savepoint).
    pub(super) async fn write_append(
        &self,
        tx: &mut WriteTx<'_>,
        request: &AppendRequest,
    ) -> CoreResult<Vec<u64>> {
        let prepared = self.prepare(request)?;
        let expected =
            codec::to_i64(request.expected_version, "expected version").map_err(|m| self.data_error(m))?;
        let mut positions: Vec<(i64, i64)> = Vec::with_capacity(prepared.rows.len());
        for (index, chunk) in prepared.rows.chunks(MAX_ROWS_PER_INSERT).enumerate() {
            // The transaction's first query begins it (see `WriteTx`).
            let mut query = QueryBuilder::<Sqlite>::new(tx.begin_prefix());
            // The first statement records the command too (before the events: a duplicate
            // command is what gets reported, whatever the version), sent with the events
            // `INSERT` as one query: one trip to the worker thread for both. A duplicate stops
            // the query before the events.
            let command = prepared.command.as_ref().filter(|_| index == 0);
            if let Some((record, row)) = command {
                push_insert_commands(&mut query, [(*record, row)]);
                query.push("; ");
            }
            let rows = chunk
                .iter()
                .map(|row| (row, request.resource.as_str(), prepared.aggregate_id.as_str()));
            // The first statement checks the version; the later ones continue the same append
            // in the same transaction, with the write lock held since.
            let at = (index == 0).then(|| StreamAt {
                resource: request.resource.as_str(),
                aggregate_id: prepared.aggregate_id.as_str(),
                version: expected,
            });
            push_insert_events(&mut query, rows, at);
            let returned = match query.build().fetch_all(tx.conn()).await {
                Ok(returned) if returned.is_empty() => {
                    // The version check failed (the `VALUES` are never empty): read where the
                    // stream is, for the conflict.
                    return Err(self.version_conflict(tx.conn(), request).await);
                }
                Ok(returned) => returned,
                Err(err) if is_duplicate_command(&err) => {
                    return Err(match command {
                        Some((record, _)) => fluvius_core::Error::DuplicateCommand {
                            command_id: record.id,
                        },
                        None => self.query_error("append (insert events)")(err),
                    });
                }
                // Cannot happen while we hold the write lock and the version check passed,
                // but if it does, it is a conflict.
                Err(err) if codec::unique_violation(&err).is_some() => {
                    return Err(if index == 0 {
                        self.version_conflict(tx.conn(), request).await
                    } else {
                        Self::conflict(request, request.expected_version)
                    });
                }
                Err(err) => return Err(self.query_error("append (record command, insert events)")(err)),
            };
            for row in returned {
                let position: i64 = row
                    .try_get(0)
                    .map_err(self.query_error("append (read positions)"))?;
                let version: i64 = row
                    .try_get(1)
                    .map_err(self.query_error("append (read positions)"))?;
                positions.push((version, position));
            }
        }
        if let Some(snapshot) = &request.snapshot {
            self.insert_snapshot(tx.conn(), snapshot).await?;
        }
        // Checked inside the transaction, so a mismatch rolls the append back instead of
        // failing after the commit.
        let positions = codec::positions_in_order(request, positions).map_err(|m| self.data_error(m))?;
        request
            .run_transactional(
                positions.iter().copied(),
                &mut AppendTx::new("sqlite", Some(tx.conn())),
            )
            .await?;
        Ok(positions)
    }

    /// An append's rows, converted for binding (a value that does not fit the schema fails
    /// this append alone).
    pub(super) fn prepare<'a>(&self, request: &'a AppendRequest) -> CoreResult<Prepared<'a>> {
        let rows = request
            .events
            .iter()
            .map(EventRow::new)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|m| self.data_error(m))?;
        let command = request
            .command
            .as_ref()
            .map(|record| CommandRow::new(record).map(|row| (record, row)))
            .transpose()
            .map_err(|m| self.data_error(m))?;
        Ok(Prepared {
            request,
            rows,
            command,
            aggregate_id: request.aggregate_id.to_string(),
        })
    }

    /// Write one snapshot row (inside the append's transaction).
    pub(super) async fn insert_snapshot(
        &self,
        conn: &mut SqliteConnection,
        snapshot: &Snapshot,
    ) -> CoreResult<()> {
        let version = codec::to_i64(snapshot.version, "snapshot version").map_err(|m| self.data_error(m))?;
        sqlx::query(
            "INSERT INTO fluvius_snapshots (tenant, resource, aggregate_id, aggregate_version, state_version, \
             state, recorded_at) VALUES ('', ?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(snapshot.resource.as_str())
        .bind(snapshot.aggregate_id.to_string())
        .bind(version)
        .bind(i64::from(snapshot.state_version))
        .bind(snapshot.state.as_str())
        .bind(snapshot.timestamp.timestamp_micros())
        .execute(conn)
        .await
        .map_err(self.query_error("append (write snapshot)"))?;
        Ok(())
    }
}

/// One append, converted for binding.
pub(super) struct Prepared<'a> {
    pub(super) request: &'a AppendRequest,
    pub(super) rows: Vec<EventRow<'a>>,
    pub(super) command: Option<(&'a CommandRecord, CommandRow)>,
    pub(super) aggregate_id: String,
}

/// Push a multi-row `INSERT` of command records onto `query` (at most
/// [`MAX_ROWS_PER_INSERT`] of them: 10 parameters each).
pub(super) fn push_insert_commands<'a>(
    query: &mut QueryBuilder<'a, Sqlite>,
    commands: impl IntoIterator<Item = (&'a CommandRecord, &'a CommandRow)>,
) {
    query.push(
        "INSERT INTO fluvius_commands (id, namespace, resource, aggregate_id, action, args, context, \
         version_before, version_after, recorded_at) ",
    );
    query.push_values(commands, |mut b, (record, row)| {
        b.push_bind(record.id.to_string())
            .push_bind(record.namespace.as_str())
            .push_bind(record.resource.as_str())
            .push_bind(record.aggregate_id.to_string())
            .push_bind(record.action.as_str())
            .push_bind(record.args.as_str())
            .push_bind(row.context.as_str())
            .push_bind(row.version_before)
            .push_bind(row.version_after)
            .push_bind(row.recorded_at);
    });
}

/// Whether `err` is the refusal of a command id recorded already (the primary key of
/// `fluvius_commands`; SQLite names the table and column in the message).
pub(super) fn is_duplicate_command(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if db.is_unique_violation() && db.message().contains("fluvius_commands.id"))
}

/// A stream at a version: the condition of a checked events `INSERT`.
pub(super) struct StreamAt<'a> {
    pub(super) resource: &'a str,
    pub(super) aggregate_id: &'a str,
    pub(super) version: i64,
}

/// Push a multi-row `INSERT` of events onto `query`, each with its stream's resource and
/// aggregate id (at most [`MAX_ROWS_PER_INSERT`] of them), returning `position,
/// aggregate_version, resource, aggregate_id` of each row, in no particular order. With `at`,
/// the rows are written only if that stream is at that version (`INSERT … SELECT * FROM
/// (VALUES …) WHERE <its version> = ?`): else nothing is written and no row comes back.
pub(super) fn push_insert_events<'a>(
    query: &mut QueryBuilder<'a, Sqlite>,
    rows: impl IntoIterator<Item = (&'a EventRow<'a>, &'a str, &'a str)>,
    at: Option<StreamAt<'a>>,
) {
    query
        .push("INSERT INTO fluvius_events (")
        .push(EVENT_INSERT_COLUMNS)
        .push(") ");
    if at.is_some() {
        query.push("SELECT * FROM (");
    }
    query.push_values(rows, |mut b, (row, resource, aggregate_id)| {
        bind_event(&mut b, row, resource, aggregate_id);
    });
    if let Some(at) = at {
        // An uncorrelated subquery: SQLite evaluates it once, before the first row.
        query
            .push(
                ") WHERE coalesce((SELECT max(aggregate_version) FROM fluvius_events \
                 WHERE tenant = '' AND resource = ",
            )
            .push_bind(at.resource)
            .push(" AND aggregate_id = ")
            .push_bind(at.aggregate_id)
            .push("), 0) = ")
            .push_bind(at.version);
    }
    query.push(" RETURNING position, aggregate_version, resource, aggregate_id");
}

/// The columns an event row binds, in the order of [`EVENT_INSERT_COLUMNS`].
pub(super) fn bind_event<'a>(
    b: &mut sqlx::query_builder::Separated<'_, 'a, Sqlite, &'static str>,
    row: &'a EventRow<'a>,
    resource: &'a str,
    aggregate_id: &'a str,
) {
    b.push_bind(row.event.id.to_string())
        .push_bind(row.event.namespace.as_str())
        .push_bind(resource)
        .push_bind(aggregate_id)
        .push_bind(row.version)
        .push_bind(row.event.key.as_str())
        .push_bind(i64::from(row.event.schema_version))
        .push_bind(row.event.payload.as_str())
        .push_bind(row.event.args.as_str())
        .push_bind(row.metadata.as_str())
        .push_bind(row.event.command_id.to_string())
        .push_bind(row.event.command_name.as_str())
        .push_bind(row.recorded_at);
}
