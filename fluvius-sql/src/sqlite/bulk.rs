//! The bulk path of a group-commit batch: a few statements for the whole batch instead of a
//! savepoint and four statements per append (see the [module docs](super#group-commit)).

use std::collections::{HashMap, HashSet};

use fluvius_core::AppendRequest;
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::{
    bind_event, push_insert_commands, reads, CoreResult, Prepared, SqliteLogStore, WriteTx,
    EVENT_INSERT_COLUMNS, MAX_ROWS_PER_INSERT,
};
use crate::batch::{bulk_keys, bulk_outcomes, decide, StreamKey};
use crate::codec;

/// Each append's outcome, in batch order: its positions, or its own error.
pub(super) type Outcomes = Vec<CoreResult<Vec<u64>>>;

/// What a batch is decided on, read in its write transaction with one query (one row back,
/// whatever the batch's size: one trip to the worker thread). `?1` is a JSON array of the
/// batch's streams as `[resource, aggregate_id]` pairs, `?2` one of its command ids, so one
/// statement text serves every batch size. The columns: the log's last position (`NULL` when
/// empty); `index:version` for each listed stream that has events, comma-separated; the listed
/// command ids that are recorded, comma-separated.
const BATCH_STATE: &str = "WITH s(i, resource, aggregate_id) AS \
     (SELECT key, value ->> 0, value ->> 1 FROM json_each(?1)) \
     SELECT (SELECT max(position) FROM fluvius_events), \
     (SELECT group_concat(i || ':' || v) FROM (SELECT s.i AS i, (SELECT max(e.aggregate_version) \
     FROM fluvius_events e WHERE e.tenant = '' AND e.resource = s.resource \
     AND e.aggregate_id = s.aggregate_id) AS v FROM s) WHERE v IS NOT NULL), \
     (SELECT group_concat(id) FROM fluvius_commands WHERE id IN (SELECT value FROM json_each(?2)))";

/// What [`BATCH_STATE`] says of a batch.
struct BatchState<'a> {
    /// The log's last position (0 when empty).
    last_position: i64,
    /// The version of each stream of the batch that has events (the others are at 0).
    current: HashMap<StreamKey<'a>, u64>,
    /// The command ids of the batch that are recorded already.
    recorded: HashSet<Uuid>,
}

impl SqliteLogStore {
    /// Write the appends of a batch (none with transactional handlers) in the write
    /// transaction `tx`: one query that begins it and reads the log's last position, the
    /// versions of its streams and which of its command ids are recorded; the decision in
    /// Rust; then one query with a multi-row `INSERT` for the accepted command records and one
    /// for their events (more when they exceed [`MAX_ROWS_PER_INSERT`] rows), which also
    /// commits unless snapshots follow (then written one by one). The events get their
    /// positions from the store, the next ones after the last, in batch order: nothing else
    /// can write meanwhile (the transaction holds SQLite's write lock), so they are the
    /// positions SQLite would assign, known without `RETURNING` a row per event. Each append
    /// gets the outcome the per-append path would give it.
    ///
    /// An error means a statement failed (before any `COMMIT`): the caller rolls the
    /// transaction back and writes the batch append by append instead.
    pub(super) async fn write_bulk(
        &self,
        tx: &mut WriteTx<'_>,
        batch: &[&AppendRequest],
    ) -> CoreResult<Outcomes> {
        let prepared: Vec<CoreResult<Prepared<'_>>> = batch.iter().map(|r| self.prepare(r)).collect();
        let ready: Vec<&Prepared<'_>> = prepared.iter().flatten().collect();
        let (streams, command_ids) = bulk_keys(ready.iter().map(|p| p.request));
        let state = self.batch_state(tx, &streams, &command_ids).await?;
        let verdicts = decide(ready.iter().map(|p| p.request), state.current, state.recorded);
        let accepted: Vec<&Prepared<'_>> = ready
            .iter()
            .zip(&verdicts)
            .filter(|(_, verdict)| verdict.is_ok())
            .map(|(p, _)| *p)
            .collect();

        // The positions, in batch order after the last one.
        let mut next = state.last_position;
        let mut positions = Vec::with_capacity(accepted.len());
        let mut rows = Vec::new();
        for p in &accepted {
            let mut own = Vec::with_capacity(p.rows.len());
            for row in &p.rows {
                next = next
                    .checked_add(1)
                    .ok_or_else(|| self.data_error("the log's positions are exhausted".to_owned()))?;
                own.push(codec::to_u64(next, "position").map_err(|m| self.data_error(m))?);
                rows.push((row, p.request.resource.as_str(), p.aggregate_id.as_str(), next));
            }
            positions.push(own);
        }
        let commands: Vec<_> = accepted
            .iter()
            .filter_map(|p| p.command.as_ref().map(|(record, row)| (*record, row)))
            .collect();
        // With no snapshot to write after them, the inserts commit in the same query.
        let commit = accepted.iter().all(|p| p.request.snapshot.is_none());
        if !rows.is_empty() || !commands.is_empty() {
            // Every statement in one query: one trip to the worker thread.
            let mut query = QueryBuilder::<Sqlite>::new("");
            let mut first = true;
            for chunk in commands.chunks(MAX_ROWS_PER_INSERT) {
                if !std::mem::take(&mut first) {
                    query.push("; ");
                }
                push_insert_commands(&mut query, chunk.iter().copied());
            }
            for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
                if !std::mem::take(&mut first) {
                    query.push("; ");
                }
                query
                    .push("INSERT INTO fluvius_events (position, ")
                    .push(EVENT_INSERT_COLUMNS)
                    .push(") ")
                    .push_values(chunk, |mut b, (row, resource, aggregate_id, position)| {
                        b.push_bind(*position);
                        bind_event(&mut b, row, resource, aggregate_id);
                    });
            }
            let suffix = if commit { tx.commit_suffix() } else { "" };
            query.push(suffix);
            // An `INSERT … VALUES` writes every row or fails, and a failing statement stops the
            // query before the `COMMIT` (the caller rolls back). (The rows-affected count of a
            // query of several statements says nothing more: sqlx adds up SQLite's count of
            // the last `INSERT` once per statement, the `COMMIT` included.)
            query
                .build()
                .execute(tx.conn())
                .await
                .map_err(self.query_error("append (record commands, insert events)"))?;
            if !suffix.is_empty() {
                tx.committed();
            }
        }
        for p in &accepted {
            if let Some(snapshot) = &p.request.snapshot {
                self.insert_snapshot(tx.conn(), snapshot).await?;
            }
        }

        Ok(bulk_outcomes(prepared, verdicts, positions, &self.target))
    }

    /// Read [`BATCH_STATE`] for `streams` and `command_ids` in `tx`.
    async fn batch_state<'a>(
        &self,
        tx: &mut WriteTx<'_>,
        streams: &[StreamKey<'a>],
        command_ids: &[Uuid],
    ) -> CoreResult<BatchState<'a>> {
        let what = "read the batch's streams and commands";
        let list = reads::stream_list(streams.iter().copied()).map_err(|e| self.data_error(e.to_string()))?;
        let ids: Vec<String> = command_ids.iter().map(Uuid::to_string).collect();
        let ids = serde_json::to_string(&ids).map_err(|e| self.data_error(e.to_string()))?;
        // The batch's first query: it begins the transaction (see `WriteTx`).
        let sql = format!("{}{BATCH_STATE}", tx.begin_prefix());
        let row = sqlx::query(&sql)
            .bind(list)
            .bind(ids)
            .fetch_one(tx.conn())
            .await
            .map_err(self.query_error(what))?;
        let last_position: Option<i64> = row.try_get(0).map_err(self.query_error(what))?;
        let versions: Option<&str> = row.try_get(1).map_err(self.query_error(what))?;
        let recorded: Option<&str> = row.try_get(2).map_err(self.query_error(what))?;

        let mut current = HashMap::new();
        for pair in versions.into_iter().flat_map(|v| v.split(',')) {
            let parsed = pair
                .split_once(':')
                .and_then(|(i, v)| Some((i.parse::<usize>().ok()?, v.parse::<i64>().ok()?)));
            let (i, version) =
                parsed.ok_or_else(|| self.data_error(format!("unexpected stream version {pair:?}")))?;
            let stream = streams
                .get(i)
                .ok_or_else(|| self.data_error(format!("stream index {i} out of range")))?;
            let version = codec::to_u64(version, "aggregate version").map_err(|m| self.data_error(m))?;
            current.insert(*stream, version);
        }
        let recorded = recorded
            .into_iter()
            .flat_map(|ids| ids.split(','))
            .map(|id| {
                Uuid::parse_str(id)
                    .map_err(|e| self.data_error(format!("stored command id is not a UUID: {e}")))
            })
            .collect::<CoreResult<HashSet<Uuid>>>()?;
        Ok(BatchState {
            last_position: last_position.unwrap_or(0),
            current,
            recorded,
        })
    }
}
