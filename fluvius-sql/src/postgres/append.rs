//! The write paths: one append alone, a batch in savepoints, and what a failed append was.

use fluvius_core::{AggregateId, AppendRequest, AppendTx, CommandRecord, Event, Snapshot};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Executor, Postgres, Row};

use crate::batch::{batch_error, batch_refused, finish_batch, refuse_batch, Pending};
use crate::codec;
use crate::error::Result;
use crate::outcome::Bounded as _;

use super::*;

/// Why one append failed inside its transaction.
pub(super) enum AppendFailure {
    /// The stream was not at the expected version: a conflict, or a duplicate command whose
    /// events are already there. Told apart by reading outside the transaction.
    ConflictOrDuplicate,
    /// Anything else.
    Error(fluvius_core::Error),
}

impl From<fluvius_core::Error> for AppendFailure {
    fn from(e: fluvius_core::Error) -> Self {
        AppendFailure::Error(e)
    }
}

/// Why an append of a batch failed: on its own (its savepoint rolled back), or because the
/// transaction itself is in doubt.
pub(super) enum SavepointFailure {
    Append(AppendFailure),
    Transaction(sqlx::Error),
}

/// One of the [`insert_events!`] statements with an append's parameters `$1`–`$15` bound: its
/// stream, expected version, `fourth` (how many positions to reserve, or the first one
/// reserved beforehand) and its events column by column.
pub(super) fn bind_append<'q, T>(
    sql: &'q str,
    request: &'q AppendRequest,
    expected: i64,
    fourth: T,
    columns: &'q Columns<'q>,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>
where
    T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>,
{
    sqlx::query(sql)
        .bind(request.resource.as_str())
        .bind(request.aggregate_id.as_uuid())
        .bind(expected)
        .bind(fourth)
        .bind(&columns.ids)
        .bind(&columns.namespaces)
        .bind(&columns.versions)
        .bind(&columns.keys)
        .bind(&columns.schema_versions)
        .bind(&columns.payloads)
        .bind(&columns.args)
        .bind(&columns.metadata)
        .bind(&columns.command_ids)
        .bind(&columns.command_names)
        .bind(&columns.recorded_at)
}

impl PostgresLogStore {
    pub(super) async fn current_version(&self, resource: &str, aggregate_id: AggregateId) -> CoreResult<u64> {
        let version: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(aggregate_version), 0) FROM fluvius_events \
             WHERE tenant = '' AND resource = $1 AND aggregate_id = $2",
        )
        .bind(resource)
        .bind(aggregate_id.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(self.query_error("read stream version"))?;
        codec::to_u64(version, "aggregate version").map_err(|m| self.data_error(m))
    }

    /// After an append found the stream at another version: a known command id wins (the
    /// caller answers it from the record), else it is a conflict.
    pub(super) async fn conflict_or_duplicate(&self, request: &AppendRequest) -> fluvius_core::Error {
        if let Some(command) = &request.command {
            match self.get_command_impl(command.id).await {
                Ok(Some(_)) => {
                    return fluvius_core::Error::DuplicateCommand {
                        command_id: command.id,
                    }
                }
                Ok(None) => {}
                Err(e) => return e,
            }
        }
        match self
            .current_version(&request.resource, request.aggregate_id)
            .await
        {
            Ok(actual) => fluvius_core::Error::Conflict {
                resource: request.resource.to_string(),
                aggregate_id: request.aggregate_id,
                expected: request.expected_version,
                actual,
            },
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
            .current_version(&request.resource, request.aggregate_id)
            .await?;
        if actual != request.expected_version {
            return Err(fluvius_core::Error::Conflict {
                resource: request.resource.to_string(),
                aggregate_id: request.aggregate_id,
                expected: request.expected_version,
                actual,
            });
        }
        Ok(())
    }

    pub(super) async fn append_impl(&self, request: AppendRequest) -> CoreResult<Vec<Event>> {
        request.validate()?;
        if request.events.is_empty() {
            self.check_empty_append(&request).await?;
            return Ok(Vec::new());
        }
        let probe = crate::outcome::Probe::of(&request);
        let write = async {
            match &self.queue {
                // The only append in flight: written here, as the writer would write a batch
                // of one, without the hand-off to a writer task and back.
                Some(queue) => match queue.try_alone() {
                    Some(_alone) => self.append_alone(request).await,
                    None => queue.submit(request).await,
                },
                None => self.append_alone(request).await,
            }
        };
        let written = self.bounded("append", write).await;
        // A failure that may have come after the commit: learn the truth before answering.
        let stored = match (written, probe) {
            (Err(e), Some(probe)) if crate::outcome::unclear(&e) => Box::pin(self.resolve(&probe, e)).await,
            (written, _) => written,
        }?;
        if let Some(hints) = &self.hints {
            hints.appended();
        }
        Ok(stored)
    }

    /// One append in a transaction of its own.
    pub(super) async fn append_alone(&self, request: AppendRequest) -> CoreResult<Vec<Event>> {
        if request.snapshot.is_none() && request.transactional.is_none() {
            return match self.append_in_one_statement(&request).await {
                Ok(positions) => Ok(codec::stored(request, positions)),
                Err(failure) => Err(self.failed(&request, failure).await),
            };
        }
        // Nothing is committed without the `COMMIT`: a failure before it wrote nothing.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| crate::outcome::before_commit(self.query_error("begin append")(e)))?;
        match self.write_append(&mut tx, &request, None).await {
            Ok(positions) => {
                tx.commit().await.map_err(self.query_error("commit append"))?;
                Ok(codec::stored(request, positions))
            }
            Err(failure) => {
                let _ = tx.rollback().await;
                Err(crate::outcome::before_commit(
                    self.failed(&request, failure).await,
                ))
            }
        }
    }

    /// Write the batch of the group-commit writer in one transaction, each caller answered
    /// after the commit: a lone append in one statement, several in bulk when none has
    /// transactional handlers, else one savepoint per append. Returns whether it wrote the
    /// batch in bulk.
    pub(super) async fn write_batch(&self, batch: Vec<Pending>) -> bool {
        if batch.len() == 1 {
            for Pending { request, reply } in batch {
                let _ = reply.send(self.append_alone(request).await);
            }
            return false;
        }
        if batch.iter().all(|p| p.request.transactional.is_none()) {
            let requests: Vec<&AppendRequest> = batch.iter().map(|p| &p.request).collect();
            // A batch with snapshots is written in a transaction: a failure before its
            // `COMMIT` wrote nothing.
            let requests_without_snapshots = requests.iter().all(|r| r.snapshot.is_none());
            match self.write_bulk(&requests).await {
                Ok((tx, outcomes)) => {
                    let outcomes = batch.into_iter().zip(outcomes).collect();
                    finish_batch(tx, outcomes, &self.target).await;
                    return true;
                }
                // The statement may have committed (the connection broke after sending it):
                // writing the batch again would turn its appends into conflicts. Each caller
                // learns its append's truth instead.
                Err(e) if crate::outcome::unclear(&e) && requests_without_snapshots => {
                    for p in batch {
                        p.answer(Err(crate::outcome::in_doubt(e.to_string())));
                    }
                    return true;
                }
                // Rolled back: typically a writer of another transaction recorded a version
                // or a command id of this batch after our reads. Append by append, each
                // failure is an append's own.
                Err(e) => {
                    tracing::debug!(error = %e, appends = batch.len(), "bulk write failed, writing the batch append by append");
                }
            }
        }
        self.write_in_savepoints(batch).await;
        false
    }

    /// Write a batch in one transaction that reserves the positions of every append first,
    /// one savepoint per append.
    pub(super) async fn write_in_savepoints(&self, batch: Vec<Pending>) {
        let n = batch.len();
        let total: usize = batch.iter().map(|p| p.request.events.len()).sum();
        let begun = async {
            let mut tx = self.pool.begin().await.map_err(|e| ("begin append", e))?;
            let first: i64 = sqlx::query_scalar("SELECT fluvius_reserve_positions($1)")
                .bind(i32::try_from(total).unwrap_or(i32::MAX))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| ("append (reserve positions)", e))?;
            Ok::<_, (&str, sqlx::Error)>((tx, first))
        };
        let (mut tx, mut next_position) = match begun.await {
            Ok(begun) => begun,
            // Nothing is committed without the `COMMIT`: a failure before it wrote nothing.
            Err((operation, e)) => return refuse_batch(batch, &self.target, operation, &e),
        };
        let mut written = Vec::with_capacity(n);
        let mut failed = Vec::new();
        for pending in batch {
            let first = next_position;
            next_position += pending.request.events.len() as i64;
            match self.write_in_savepoint(&mut tx, &pending.request, first).await {
                Ok(positions) => written.push((pending, positions)),
                Err(SavepointFailure::Append(failure)) => failed.push((pending, failure)),
                // A failed savepoint statement leaves the transaction in doubt: give up on
                // the whole batch (nothing is committed).
                Err(SavepointFailure::Transaction(e)) => {
                    let _ = tx.rollback().await;
                    pending.answer(Err(batch_refused(&self.target, "append (savepoint)", &e, n)));
                    for (p, _) in written {
                        p.answer(Err(batch_refused(&self.target, "append (savepoint)", &e, n)));
                    }
                    for (p, failure) in failed {
                        let error = self.failed(&p.request, failure).await;
                        p.answer(Err(crate::outcome::before_commit(error)));
                    }
                    return;
                }
            }
        }
        match tx.commit().await {
            Ok(()) => {
                for (Pending { request, reply }, positions) in written {
                    let _ = reply.send(Ok(codec::stored(request, positions)));
                }
            }
            Err(e) => {
                for (p, _) in written {
                    p.answer(Err(batch_error(&self.target, "commit append", &e, n)));
                }
            }
        }
        // After the commit, so a command recorded earlier in this batch is seen as a duplicate.
        // Their savepoints were rolled back: nothing of them was written.
        for (p, failure) in failed {
            let error = self.failed(&p.request, failure).await;
            p.answer(Err(crate::outcome::before_commit(error)));
        }
    }

    /// One append of a batch, inside its own savepoint: rolled back alone if it fails.
    pub(super) async fn write_in_savepoint(
        &self,
        tx: &mut PgConnection,
        request: &AppendRequest,
        first_position: i64,
    ) -> Result<Vec<u64>, SavepointFailure> {
        tx.execute("SAVEPOINT fluvius_append")
            .await
            .map_err(SavepointFailure::Transaction)?;
        match self.write_append(tx, request, Some(first_position)).await {
            Ok(positions) => {
                tx.execute("RELEASE SAVEPOINT fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                Ok(positions)
            }
            Err(failure) => {
                tx.execute("ROLLBACK TO SAVEPOINT fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                tx.execute("RELEASE SAVEPOINT fluvius_append")
                    .await
                    .map_err(SavepointFailure::Transaction)?;
                Err(SavepointFailure::Append(failure))
            }
        }
    }

    /// The error for a failed append: resolving a version mismatch into a conflict or a
    /// duplicate command (read outside the failed transaction).
    pub(super) async fn failed(
        &self,
        request: &AppendRequest,
        failure: AppendFailure,
    ) -> fluvius_core::Error {
        match failure {
            AppendFailure::ConflictOrDuplicate => self.conflict_or_duplicate(request).await,
            AppendFailure::Error(e) => e,
        }
    }

    /// An append's expected version and event count, as bound.
    pub(super) fn expected_and_count(&self, request: &AppendRequest) -> CoreResult<(i64, i32)> {
        let expected =
            codec::to_i64(request.expected_version, "expected version").map_err(|m| self.data_error(m))?;
        let count = i32::try_from(request.events.len()).map_err(|_| {
            self.data_error(format!(
                "{} events in one append is too many",
                request.events.len()
            ))
        })?;
        Ok((expected, count))
    }

    /// Write one append with no snapshot and no transactional handlers in one statement of
    /// its own ([`INSERT_EVENTS_AND_COMMAND`]), outside any transaction: atomic, and committed
    /// when it returns.
    pub(super) async fn append_in_one_statement(
        &self,
        request: &AppendRequest,
    ) -> Result<Vec<u64>, AppendFailure> {
        let Prepared { columns, command, .. } = self.prepare(request)?;
        let (expected, count) = self.expected_and_count(request)?;
        let record = command.as_ref();
        let inserted = bind_append(INSERT_EVENTS_AND_COMMAND, request, expected, count, &columns)
            .bind(record.map(|(r, ..)| r.id).as_slice())
            .bind(record.map(|(r, ..)| r.namespace.as_str()).as_slice())
            .bind(record.map(|(r, ..)| r.resource.as_str()).as_slice())
            .bind(record.map(|(r, ..)| *r.aggregate_id.as_uuid()).as_slice())
            .bind(record.map(|(r, ..)| r.action.as_str()).as_slice())
            .bind(record.map(|(r, ..)| r.args.as_str()).as_slice())
            .bind(record.map(|(_, context, ..)| context.as_str()).as_slice())
            .bind(record.map(|(_, _, before, _)| *before).as_slice())
            .bind(record.map(|(_, _, _, after)| *after).as_slice())
            .bind(record.map(|(r, ..)| r.timestamp).as_slice())
            .fetch_all(&self.pool)
            .await;
        let returned = match inserted {
            // The version check failed: the stream is elsewhere (nothing was written).
            Ok(rows) if rows.is_empty() => return Err(AppendFailure::ConflictOrDuplicate),
            Ok(rows) => rows,
            Err(err) => {
                return Err(match codec::unique_violation(&err) {
                    Some(Some(COMMANDS_KEY)) => match record {
                        Some((r, ..)) => {
                            AppendFailure::Error(fluvius_core::Error::DuplicateCommand { command_id: r.id })
                        }
                        None => self.query_error("append (insert events, record command)")(err).into(),
                    },
                    // A concurrent writer committed this version after the check.
                    Some(c) if c.is_none_or(|c| c == EVENTS_STREAM_KEY) => AppendFailure::ConflictOrDuplicate,
                    _ => self.query_error("append (insert events, record command)")(err).into(),
                });
            }
        };
        // The statement committed: a failure to read the positions back cannot undo it.
        let positions = self.returned_positions(request, &returned).map_err(|e| {
            crate::outcome::in_doubt(format!(
                "the append was committed, but its positions could not be read back: {e}"
            ))
        })?;
        Ok(positions)
    }

    /// Write one append in the open transaction `tx`: its events (with the version check), then
    /// its command row. Positions come from `first_position` on when given (reserved
    /// beforehand), else are reserved here. Returns `(version, position)` of each event
    /// written. On error the caller rolls back (the transaction, or the append's savepoint).
    pub(super) async fn write_append(
        &self,
        tx: &mut PgConnection,
        request: &AppendRequest,
        first_position: Option<i64>,
    ) -> Result<Vec<u64>, AppendFailure> {
        let Prepared { columns, command, .. } = self.prepare(request)?;
        let (expected, count) = self.expected_and_count(request)?;

        let insert = match first_position {
            None => bind_append(INSERT_EVENTS, request, expected, count, &columns),
            Some(first) => bind_append(INSERT_EVENTS_AT, request, expected, first, &columns),
        };
        let inserted = insert.fetch_all(&mut *tx).await;
        let returned = match inserted {
            Ok(rows) if rows.is_empty() => {
                // The one-time version check failed: the stream is elsewhere.
                return Err(AppendFailure::ConflictOrDuplicate);
            }
            Ok(rows) => rows,
            Err(err) => {
                if codec::unique_violation(&err).is_some_and(|c| c.is_none_or(|c| c == EVENTS_STREAM_KEY)) {
                    // A concurrent writer committed this version after our check.
                    return Err(AppendFailure::ConflictOrDuplicate);
                }
                return Err(self.query_error("append (insert events)")(err).into());
            }
        };

        if let Some((record, context, before, after)) = &command {
            let result = sqlx::query(INSERT_COMMAND)
                .bind(record.id)
                .bind(record.namespace.as_str())
                .bind(record.resource.as_str())
                .bind(record.aggregate_id.as_uuid())
                .bind(record.action.as_str())
                .bind(record.args.as_str())
                .bind(context.as_str())
                .bind(*before)
                .bind(*after)
                .bind(record.timestamp)
                .execute(&mut *tx)
                .await;
            if let Err(err) = result {
                if codec::unique_violation(&err).is_some_and(|c| c.is_none_or(|c| c == COMMANDS_KEY)) {
                    return Err(AppendFailure::Error(fluvius_core::Error::DuplicateCommand {
                        command_id: record.id,
                    }));
                }
                return Err(self.query_error("append (record command)")(err).into());
            }
        }
        if let Some(snapshot) = &request.snapshot {
            self.insert_snapshot(&mut *tx, snapshot).await?;
        }

        let positions = self.returned_positions(request, &returned)?;
        request
            .run_transactional(
                positions.iter().copied(),
                &mut AppendTx::new("postgres", Some(&mut *tx)),
            )
            .await?;
        Ok(positions)
    }

    /// An append's rows, converted for binding (a value that does not fit the schema fails
    /// this append alone).
    pub(super) fn prepare<'a>(&self, request: &'a AppendRequest) -> CoreResult<Prepared<'a>> {
        let columns = Columns::new(&request.events).map_err(|m| self.data_error(m))?;
        let command = match &request.command {
            Some(record) => Some((
                record,
                codec::encode_context(&record.context).map_err(|m| self.data_error(m))?,
                codec::to_i64(record.version_before, "version").map_err(|m| self.data_error(m))?,
                codec::to_i64(record.version_after, "version").map_err(|m| self.data_error(m))?,
            )),
            None => None,
        };
        Ok(Prepared {
            request,
            columns,
            command,
        })
    }

    /// The positions of `request`'s events from the rows its insert returned (`position,
    /// aggregate_version`), checked by [`codec::positions_in_order`].
    pub(super) fn returned_positions(&self, request: &AppendRequest, rows: &[PgRow]) -> CoreResult<Vec<u64>> {
        let positions = rows
            .iter()
            .map(|row| Ok((row.try_get(1)?, row.try_get(0)?)))
            .collect::<sqlx::Result<Vec<(i64, i64)>>>()
            .map_err(self.query_error("append (read positions)"))?;
        codec::positions_in_order(request, positions).map_err(|m| self.data_error(m))
    }

    /// Write one snapshot row (inside the append's transaction).
    pub(super) async fn insert_snapshot(
        &self,
        conn: &mut PgConnection,
        snapshot: &Snapshot,
    ) -> CoreResult<()> {
        let version = codec::to_i64(snapshot.version, "snapshot version").map_err(|m| self.data_error(m))?;
        let state_version = i32::try_from(snapshot.state_version).map_err(|_| {
            self.data_error(format!(
                "state version {} does not fit an integer column",
                snapshot.state_version
            ))
        })?;
        sqlx::query(INSERT_SNAPSHOT)
            .bind(snapshot.resource.as_str())
            .bind(snapshot.aggregate_id.as_uuid())
            .bind(version)
            .bind(state_version)
            .bind(snapshot.state.as_str())
            .bind(codec::micros(snapshot.timestamp))
            .execute(conn)
            .await
            .map_err(self.query_error("append (write snapshot)"))?;
        Ok(())
    }
}

/// One append, converted for binding.
pub(super) struct Prepared<'a> {
    pub(super) request: &'a AppendRequest,
    pub(super) columns: Columns<'a>,
    /// The command record, its context as JSON, its versions before and after.
    pub(super) command: Option<(&'a CommandRecord, String, i64, i64)>,
}
