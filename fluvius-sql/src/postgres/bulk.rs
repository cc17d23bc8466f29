//! The bulk path of a group-commit batch: a few statements for the whole batch instead of a
//! savepoint and three or more statements per append (see the [module docs](super#group-commit)).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use fluvius_core::AppendRequest;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Row, Transaction};
use uuid::Uuid;

use super::{Columns, CoreResult, PostgresLogStore, Prepared};
use crate::batch::{bulk_keys, bulk_results, decide, BatchTx, StreamKey};
use crate::codec;

/// Each append's outcome, in batch order: its positions, or its own error.
pub(super) type Outcomes = Vec<CoreResult<Vec<u64>>>;

/// The current version of each stream given as `unnest($1 resources, $2 aggregate ids)`,
/// with its 1-based index.
const STREAM_VERSIONS: &str = "\
SELECT s.i, coalesce((SELECT max(v.aggregate_version) FROM fluvius_events v
                      WHERE v.tenant = '' AND v.resource = s.resource AND v.aggregate_id = s.aggregate_id), 0)
FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS s(resource, aggregate_id, i)";

const RECORDED_COMMANDS: &str = "SELECT id FROM fluvius_commands WHERE id = ANY($1::uuid[])";

/// The rows of a bulk statement are inserted in a stable order — events by stream and
/// version, command records by id — whatever the order of the batch (which sets their
/// positions): writers of different processes then take the unique keys' locks in the same
/// order, and two statements that insert a same key wait for each other instead of
/// deadlocking.
///
/// The events and the command records of a whole batch in one statement, reserving the
/// events' positions (`$1` of them) first: the first statement that writes in its
/// transaction, as `fluvius_reserve_positions` requires (the command records are inserted by
/// a `WITH` clause that reads the reserved position too, so neither insert writes before it).
/// The events of each append are consecutive in the arrays `$2`–`$14`, so they get consecutive
/// positions; `$15`–`$24` are the command records' columns.
const INSERT_BULK: &str = concat!(
    "\
WITH reserved AS MATERIALIZED (SELECT fluvius_reserve_positions($1) AS first),
commands AS (
    ",
    insert_command_rows!(),
    "
    FROM reserved,
        unnest($15::uuid[], $16::text[], $17::text[], $18::uuid[], $19::text[], $20::text[], $21::text[],
            $22::bigint[], $23::bigint[], $24::timestamptz[])
        AS c(id, namespace, resource, aggregate_id, action, args, context, version_before, version_after,
            recorded_at)
    ORDER BY c.id
)
INSERT INTO fluvius_events (position, id, namespace, resource, aggregate_id, aggregate_version, key,
    schema_version, payload, args, metadata, command_id, command_name, recorded_at)
SELECT reserved.first + e.ord - 1, e.id, e.namespace, e.resource, e.aggregate_id, e.aggregate_version, e.key,
    e.schema_version, e.payload::json, e.args::json, e.metadata::json, e.command_id, e.command_name,
    e.recorded_at
FROM reserved,
    unnest($2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::bigint[], $7::text[], $8::integer[],
        $9::text[], $10::text[], $11::text[], $12::uuid[], $13::text[], $14::timestamptz[])
    WITH ORDINALITY AS e(id, namespace, resource, aggregate_id, aggregate_version, key, schema_version,
        payload, args, metadata, command_id, command_name, recorded_at, ord)
ORDER BY e.resource, e.aggregate_id, e.aggregate_version
RETURNING position, aggregate_version, resource, aggregate_id"
);

/// [`INSERT_BULK`] without the reads before it, for a batch in which no two appends share a
/// stream: each event row carries its append's expected version (`$25`) and is inserted only
/// if the stream is at that version — version `expected` is stored (or `expected` is 0), and
/// the unique stream key refuses version `expected + 1` if it is stored too, failing the
/// statement. All rows of one append are decided alike (one snapshot), so an append is written
/// whole or not at all; the command records are inserted only for the appends written (`$26`:
/// the row number, in the event arrays, of the first event of each command record's append,
/// which gives the position that event was written at). A recorded command id, or a stream
/// already past an append's expected version, fails the statement with a unique violation.
const INSERT_BULK_CHECKED: &str = concat!(
    "\
WITH reserved AS MATERIALIZED (SELECT fluvius_reserve_positions($1) AS first),
written AS (
    INSERT INTO fluvius_events (position, id, namespace, resource, aggregate_id, aggregate_version, key,
        schema_version, payload, args, metadata, command_id, command_name, recorded_at)
    SELECT reserved.first + e.ord - 1, e.id, e.namespace, e.resource, e.aggregate_id, e.aggregate_version,
        e.key, e.schema_version, e.payload::json, e.args::json, e.metadata::json, e.command_id,
        e.command_name, e.recorded_at
    FROM reserved,
        unnest($2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::bigint[], $7::text[], $8::integer[],
            $9::text[], $10::text[], $11::text[], $12::uuid[], $13::text[], $14::timestamptz[],
            $25::bigint[])
        WITH ORDINALITY AS e(id, namespace, resource, aggregate_id, aggregate_version, key, schema_version,
            payload, args, metadata, command_id, command_name, recorded_at, expected, ord)
    WHERE e.expected = 0 OR EXISTS (SELECT 1 FROM fluvius_events v
        WHERE v.tenant = '' AND v.resource = e.resource AND v.aggregate_id = e.aggregate_id
            AND v.aggregate_version = e.expected)
    ORDER BY e.resource, e.aggregate_id, e.aggregate_version
    RETURNING position, aggregate_version, resource, aggregate_id
),
commands AS (
    ",
    insert_command_rows!(),
    "
    FROM reserved,
        unnest($15::uuid[], $16::text[], $17::text[], $18::uuid[], $19::text[], $20::text[], $21::text[],
            $22::bigint[], $23::bigint[], $24::timestamptz[], $26::bigint[])
        AS c(id, namespace, resource, aggregate_id, action, args, context, version_before, version_after,
            recorded_at, first_row)
    WHERE reserved.first + c.first_row - 1 IN (SELECT position FROM written)
    ORDER BY c.id
)
SELECT position, aggregate_version, resource, aggregate_id FROM written"
);

/// How a batch written in bulk ends (see [`PostgresLogStore::write_bulk`]).
pub(super) enum BulkTx {
    /// Its one writing statement ran on its own and is committed (or it wrote nothing).
    Done,
    /// The transaction it wrote in, to commit: a batch with snapshots.
    Open(Transaction<'static, Postgres>),
}

impl BatchTx for BulkTx {
    async fn commit(self) -> sqlx::Result<()> {
        match self {
            Self::Done => Ok(()),
            Self::Open(tx) => tx.commit().await,
        }
    }

    async fn rollback(self) -> sqlx::Result<()> {
        match self {
            Self::Done => Ok(()),
            Self::Open(tx) => tx.rollback().await,
        }
    }
}

impl PostgresLogStore {
    /// Write the appends of a batch (none with transactional handlers). Appends on different
    /// streams with different command ids, without snapshots: one statement that checks each
    /// append's version itself ([`INSERT_BULK_CHECKED`]); an append it refuses is a conflict
    /// naming the version read after it. Otherwise: one query for the
    /// versions of its streams, one for which of its command ids are recorded, the decision in
    /// Rust, then one statement for the events of the accepted appends (reserving their
    /// positions) and their command records, committed on its own — no `BEGIN` or `COMMIT`
    /// (each a round trip): one statement is atomic, and the reads need no transaction, as
    /// under `READ COMMITTED` each statement of one sees a new snapshot anyway. A batch with
    /// snapshots is written in a transaction instead, left open for the caller to commit: the
    /// same statement, then the snapshots.
    /// Each append gets the outcome the per-append path would give it, as of those two reads
    /// (or of the checked statement's snapshot).
    ///
    /// An error means a statement failed — typically a unique violation, when a writer of
    /// another transaction recorded a version or a command id of this batch after the reads —
    /// and nothing was written (rolled back): the caller writes the batch append by append.
    pub(super) async fn write_bulk(&self, batch: &[&AppendRequest]) -> CoreResult<(BulkTx, Outcomes)> {
        if batch.iter().any(|r| r.snapshot.is_some()) {
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(self.query_error("begin append"))?;
            return match self.write_bulk_in(&mut tx, batch, true).await {
                Ok(outcomes) => Ok((BulkTx::Open(tx), outcomes)),
                Err(e) => {
                    let _ = tx.rollback().await;
                    Err(e)
                }
            };
        }
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(self.query_error("append (connect)"))?;
        let outcomes = self.write_bulk_in(&mut conn, batch, false).await?;
        Ok((BulkTx::Done, outcomes))
    }

    /// The bulk write on `tx`: a transaction (`in_tx`), or a connection outside one.
    async fn write_bulk_in(
        &self,
        tx: &mut PgConnection,
        batch: &[&AppendRequest],
        in_tx: bool,
    ) -> CoreResult<Outcomes> {
        let mut prepared: Vec<CoreResult<Prepared<'_>>> = batch.iter().map(|r| self.prepare(r)).collect();
        let (streams, command_ids) = bulk_keys(prepared.iter().flatten().map(|p| p.request));
        // No two appends on one stream or with one command id, outside a transaction: no reads
        // first, the statement checks each append's version itself (`INSERT_BULK_CHECKED`).
        let appends = prepared.iter().flatten().count();
        let checked = !in_tx
            && streams.len() == appends
            && command_ids.iter().collect::<HashSet<_>>().len() == command_ids.len();
        let verdicts = if checked {
            // Every append goes to the statement, which decides it.
            (0..appends).map(|_| Ok(())).collect()
        } else {
            let current = self.stream_versions(tx, &streams).await?;
            let recorded = self.recorded_commands(tx, &command_ids).await?;
            decide(prepared.iter().flatten().map(|p| p.request), current, recorded)
        };

        // The accepted appends, in batch order, their events and commands column by column.
        let mut accepted = Vec::new();
        let mut events = Columns::default();
        let mut resources = Vec::new();
        let mut aggregate_ids = Vec::new();
        let mut commands = CommandColumns::default();
        let mut expected = Vec::new();
        let mut first_rows = Vec::new();
        let mut verdict_of = verdicts.iter();
        for (i, p) in prepared.iter_mut().enumerate() {
            let Ok(p) = p else { continue };
            if !verdict_of.next().is_some_and(Result::is_ok) {
                continue;
            }
            let columns = std::mem::take(&mut p.columns);
            resources.extend(std::iter::repeat_n(
                p.request.resource.as_str(),
                columns.ids.len(),
            ));
            aggregate_ids.extend(std::iter::repeat_n(
                *p.request.aggregate_id.as_uuid(),
                columns.ids.len(),
            ));
            expected.extend(std::iter::repeat_n(
                codec::clamp_i64(p.request.expected_version),
                columns.ids.len(),
            ));
            // 1-based, as `WITH ORDINALITY` numbers the rows.
            let first_row = events.ids.len() as i64 + 1;
            events.extend(columns);
            if let Some((record, context, before, after)) = p.command.take() {
                commands.push(record, context, before, after);
                first_rows.push(first_row);
            }
            accepted.push(i);
        }

        let mut returned = Vec::new();
        if !events.ids.is_empty() {
            let total = i32::try_from(events.ids.len()).map_err(|_| {
                self.data_error(format!("{} events in one batch is too many", events.ids.len()))
            })?;
            let statement = if checked { INSERT_BULK_CHECKED } else { INSERT_BULK };
            let query = sqlx::query(statement)
                .bind(total)
                .bind(&events.ids)
                .bind(&events.namespaces)
                .bind(&resources)
                .bind(&aggregate_ids)
                .bind(&events.versions)
                .bind(&events.keys)
                .bind(&events.schema_versions)
                .bind(&events.payloads)
                .bind(&events.args)
                .bind(&events.metadata)
                .bind(&events.command_ids)
                .bind(&events.command_names)
                .bind(&events.recorded_at)
                .bind(&commands.ids)
                .bind(&commands.namespaces)
                .bind(&commands.resources)
                .bind(&commands.aggregate_ids)
                .bind(&commands.actions)
                .bind(&commands.args)
                .bind(&commands.contexts)
                .bind(&commands.before)
                .bind(&commands.after)
                .bind(&commands.recorded_at);
            let query = if checked {
                query.bind(&expected).bind(&first_rows)
            } else {
                query
            };
            returned = query
                .fetch_all(&mut *tx)
                .await
                .map_err(self.query_error("append (insert events, record commands)"))?;
        }
        // Outside a transaction the batch is committed now: a failure to read its positions
        // back cannot undo it, so it is each accepted append's error (saying so), not a reason
        // to write the batch again.
        let written = match self.positions_of(batch, &accepted, &returned) {
            Ok(written) => written,
            Err(e) if !in_tx => {
                // A checked batch may also have refused an append by its version check.
                let committed = |_| {
                    Err(crate::outcome::in_doubt(if checked {
                        format!(
                            "the batch was committed, but whether this append was written (or refused \
                             by its version check) could not be read back: {e}"
                        )
                    } else {
                        format!("the append was committed, but its positions could not be read back: {e}")
                    }))
                };
                let written = accepted.iter().map(committed).collect();
                return Ok(bulk_results(prepared, verdicts, written, &self.target));
            }
            Err(e) => return Err(e),
        };
        for &i in &accepted {
            if let Some(snapshot) = &batch[i].snapshot {
                self.insert_snapshot(&mut *tx, snapshot).await?;
            }
        }
        // Appends the checked statement refused (their streams were behind the expected
        // version): conflicts naming the version read now, on this connection. The batch is
        // committed, so a failing read is each refused append's error, never the batch's.
        let refused: Vec<StreamKey<'_>> = accepted
            .iter()
            .zip(&written)
            .filter(|(_, positions)| checked && positions.is_none())
            .map(|(&i, _)| (batch[i].resource.as_str(), batch[i].aggregate_id))
            .collect();
        let actual = if refused.is_empty() {
            Ok(HashMap::new())
        } else {
            self.stream_versions(tx, &refused).await
        };
        let mut results = Vec::with_capacity(written.len());
        for (&i, positions) in accepted.iter().zip(written) {
            let request = batch[i];
            results.push(match (positions, &actual) {
                (Some(positions), _) => Ok(positions),
                (None, _) if !checked => Err(self.data_error(format!(
                    "append wrote {} events but no positions came back",
                    request.events.len()
                ))),
                (None, Ok(actual)) => Err(fluvius_core::Error::Conflict {
                    resource: request.resource.to_string(),
                    aggregate_id: request.aggregate_id,
                    expected: request.expected_version,
                    actual: actual
                        .get(&(request.resource.as_str(), request.aggregate_id))
                        .copied()
                        .unwrap_or(0),
                }),
                (None, Err(e)) => Err(self.data_error(format!(
                    "the append was refused by its version check (nothing written), but its \
                     stream's version could not be read: {e}"
                ))),
            });
        }
        Ok(bulk_results(prepared, verdicts, results, &self.target))
    }

    /// The positions of each accepted append (`accepted`: their indexes in `batch`, in
    /// order), from the rows the bulk insert returned, matched by stream and version; `None`
    /// for an append that got no row back.
    fn positions_of(
        &self,
        batch: &[&AppendRequest],
        accepted: &[usize],
        returned: &[PgRow],
    ) -> CoreResult<Vec<Option<Vec<u64>>>> {
        let mut owner: HashMap<(&str, Uuid, i64), usize> = HashMap::with_capacity(returned.len());
        for &i in accepted {
            let request = batch[i];
            for event in &request.events {
                let version = codec::clamp_i64(event.aggregate_version);
                owner.insert(
                    (
                        request.resource.as_str(),
                        *request.aggregate_id.as_uuid(),
                        version,
                    ),
                    i,
                );
            }
        }
        let mut positions: HashMap<usize, Vec<(i64, i64)>> = HashMap::with_capacity(accepted.len());
        for row in returned {
            let (position, version, resource, aggregate_id) =
                returned_event(row).map_err(self.query_error("append (read positions)"))?;
            let i = owner.get(&(resource, aggregate_id, version)).ok_or_else(|| {
                self.data_error(format!(
                    "the insert returned an event this batch did not write: {resource}/{aggregate_id} \
                     version {version}"
                ))
            })?;
            positions.entry(*i).or_default().push((version, position));
        }
        accepted
            .iter()
            .map(|&i| match positions.remove(&i) {
                Some(rows) => codec::positions_in_order(batch[i], rows)
                    .map(Some)
                    .map_err(|m| self.data_error(m)),
                None => Ok(None),
            })
            .collect()
    }

    /// The current version of each stream (0 for a stream with no events), read in `tx`.
    async fn stream_versions<'a>(
        &self,
        tx: &mut PgConnection,
        streams: &[StreamKey<'a>],
    ) -> CoreResult<HashMap<StreamKey<'a>, u64>> {
        let resources: Vec<&str> = streams.iter().map(|(resource, _)| *resource).collect();
        let ids: Vec<Uuid> = streams.iter().map(|(_, id)| *id.as_uuid()).collect();
        let rows = sqlx::query(STREAM_VERSIONS)
            .bind(&resources)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.query_error("read stream versions"))?;
        let mut current = HashMap::with_capacity(streams.len());
        for row in rows {
            let i: i64 = row.try_get(0).map_err(self.query_error("read stream versions"))?;
            let version: i64 = row.try_get(1).map_err(self.query_error("read stream versions"))?;
            let stream = usize::try_from(i - 1)
                .ok()
                .and_then(|i| streams.get(i))
                .ok_or_else(|| self.data_error(format!("stream index {i} out of range")))?;
            let version = codec::to_u64(version, "aggregate version").map_err(|m| self.data_error(m))?;
            current.insert(*stream, version);
        }
        Ok(current)
    }

    /// Which of `ids` are recorded commands, read in `tx`.
    async fn recorded_commands(&self, tx: &mut PgConnection, ids: &[Uuid]) -> CoreResult<HashSet<Uuid>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let recorded: Vec<Uuid> = sqlx::query_scalar(RECORDED_COMMANDS)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.query_error("read recorded commands"))?;
        Ok(recorded.into_iter().collect())
    }
}

/// The command records of a batch, column by column, for `unnest`.
#[derive(Default)]
struct CommandColumns<'a> {
    ids: Vec<Uuid>,
    namespaces: Vec<&'a str>,
    resources: Vec<&'a str>,
    aggregate_ids: Vec<Uuid>,
    actions: Vec<&'a str>,
    args: Vec<&'a str>,
    contexts: Vec<String>,
    before: Vec<i64>,
    after: Vec<i64>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl<'a> CommandColumns<'a> {
    fn push(&mut self, record: &'a fluvius_core::CommandRecord, context: String, before: i64, after: i64) {
        self.ids.push(record.id);
        self.namespaces.push(record.namespace.as_str());
        self.resources.push(record.resource.as_str());
        self.aggregate_ids.push(*record.aggregate_id.as_uuid());
        self.actions.push(record.action.as_str());
        self.args.push(record.args.as_str());
        self.contexts.push(context);
        self.before.push(before);
        self.after.push(after);
        self.recorded_at.push(record.timestamp);
    }
}

/// `position, aggregate_version, resource, aggregate_id` of a row the events insert returned.
fn returned_event(row: &PgRow) -> Result<(i64, i64, &str, Uuid), sqlx::Error> {
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?))
}
