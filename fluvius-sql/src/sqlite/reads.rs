//! Batched stream reads: the stream reads of concurrent loads answered by one query (see the
//! [module docs](super#batched-stream-reads)).

use super::*;
use crate::batch::{answer_reads, fail_reads, read_keys, PendingRead, StreamKey};

/// Reader tasks of a store with group commit on. One: while its query runs, the next batch
/// gathers, and one query reads many streams (more readers, each with its own query in
/// flight, made concurrent commands slower: see BENCHMARKS.md).
pub(super) const READERS: usize = 1;

/// At most this many stream reads go into one query.
pub(super) const MAX_READ_BATCH: usize = 256;

/// The whole streams listed in `?1`, a JSON array of `[resource, aggregate_id]` pairs: the
/// join (`CROSS JOIN`: the list drives) searches the stream index once per listed stream.
static READ_STREAMS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let columns = EVENT_COLUMNS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH s(resource, aggregate_id) AS (SELECT value ->> 0, value ->> 1 FROM json_each(?1)) \
         SELECT {columns} FROM s CROSS JOIN fluvius_events e ON e.tenant = '' \
         AND e.resource = s.resource AND e.aggregate_id = s.aggregate_id"
    )
});

impl SqliteLogStore {
    /// Read the whole streams of a batch with one query, and answer each caller with its
    /// stream's events in version order (none for a stream without events). A failing query
    /// answers every caller with the store error.
    pub(super) async fn read_batch(&self, batch: Vec<PendingRead>) {
        // One statement text for every batch size (the streams go in as one JSON array), so
        // each connection prepares it once.
        let list = match stream_list(read_keys(&batch)) {
            Ok(list) => list,
            Err(e) => {
                fail_reads(
                    batch,
                    &self.target,
                    "read stream (list the streams)",
                    &e.to_string(),
                );
                return;
            }
        };
        match sqlx::query(&READ_STREAMS).bind(list).fetch_all(&self.pool).await {
            Ok(rows) => answer_reads(batch, &rows, decode_entry, stream_of, &self.target),
            Err(e) => fail_reads(batch, &self.target, "read stream", &e.to_string()),
        }
    }
}

/// Streams as the JSON array of `[resource, aggregate_id]` pairs that the batch queries
/// ([`READ_STREAMS`], the bulk write's batch state) read with `json_each`.
pub(super) fn stream_list<'a>(
    streams: impl IntoIterator<Item = StreamKey<'a>>,
) -> serde_json::Result<String> {
    let list: Vec<(&str, String)> = streams
        .into_iter()
        .map(|(resource, aggregate_id)| (resource, aggregate_id.to_string()))
        .collect();
    serde_json::to_string(&list)
}

impl SqliteLogStore {
    pub(super) async fn load_snapshot_impl(
        &self,
        resource: &str,
        aggregate_id: AggregateId,
        query: SnapshotQuery,
    ) -> CoreResult<Option<Snapshot>> {
        let row = sqlx::query(
            "SELECT aggregate_version, state_version, state, recorded_at FROM fluvius_snapshots \
             WHERE tenant = '' AND resource = ?1 AND aggregate_id = ?2 \
             AND aggregate_version <= ?3 AND recorded_at <= ?4 \
             ORDER BY aggregate_version DESC LIMIT 1",
        )
        .bind(resource)
        .bind(aggregate_id.to_string())
        .bind(query.max_version.map_or(i64::MAX, codec::clamp_i64))
        .bind(query.until.map_or(i64::MAX, |t| t.timestamp_micros()))
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error("load snapshot"))?;
        row.map(|row| -> Result<Snapshot, String> {
            let state_version: i64 = column(&row, 1)?;
            Ok(Snapshot {
                resource: resource.to_owned(),
                aggregate_id,
                version: codec::to_u64(column(&row, 0)?, "snapshot version")?,
                state_version: u32::try_from(state_version)
                    .map_err(|_| format!("stored state version {state_version} is out of range"))?,
                state: Payload::from_json_unchecked(column::<String>(&row, 2)?),
                timestamp: time_column(&row, 3)?,
            })
        })
        .transpose()
        .map_err(|m| self.data_error(m))
    }

    pub(super) async fn read_stream_impl(
        &self,
        resource: &str,
        aggregate_id: AggregateId,
        query: StreamQuery,
    ) -> CoreResult<Vec<Event>> {
        // Nobody writing and nothing queued: read on the writer's connection. Its page cache
        // holds what the last appends wrote, while a pooled connection drops its whole cache
        // after every write of another connection and reads the pages again.
        let idle = self.queue.as_ref().is_none_or(Queue::is_idle)
            && self.reads.as_ref().is_none_or(ReadQueue::is_idle);
        // Without a writer's connection to read on (none opened yet, or suspect) the turn is
        // given back at once, and the read goes like any other.
        let mut turn = idle
            .then(|| self.writer.try_lock().ok())
            .flatten()
            .filter(|turn| turn.can_read());
        let writer = turn.as_mut().and_then(|turn| turn.conn.as_mut());
        if let Some(reads) = &self.reads {
            if writer.is_some() {
                reads.read_alone();
            } else if query == StreamQuery::default() {
                return reads.submit(resource, aggregate_id).await;
            }
        }
        let from = query.from_version.map_or(0, codec::clamp_i64);
        let to = query.to_version.map_or(i64::MAX, codec::clamp_i64);
        let until = query.until.map_or(i64::MAX, |t| t.timestamp_micros());
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM fluvius_events \
             WHERE tenant = '' AND resource = ?1 AND aggregate_id = ?2 \
             AND aggregate_version >= ?3 AND aggregate_version <= ?4 AND recorded_at <= ?5 \
             ORDER BY aggregate_version"
        );
        let read = sqlx::query(&sql)
            .bind(resource)
            .bind(aggregate_id.to_string())
            .bind(from)
            .bind(to)
            .bind(until);
        let rows = match writer {
            Some(conn) => read.fetch_all(conn).await,
            None => read.fetch_all(&self.pool).await,
        };
        if rows
            .as_ref()
            .is_err_and(|e| !matches!(e, sqlx::Error::Database(_)))
        {
            // Read on the writer's connection (the turn is only kept for that), as after a
            // failed `BEGIN`: the next append opens a new one.
            if let Some(turn) = turn.as_mut() {
                turn.suspect = true;
            }
        }
        drop(turn);
        let rows = rows.map_err(self.query_error("read stream"))?;
        codec::stream_events(&rows, decode_entry, |m| self.data_error(m))
    }

    pub(super) async fn read_all_impl(&self, after: u64, limit: usize) -> CoreResult<Vec<LogEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM fluvius_events WHERE position > ?1 ORDER BY position LIMIT ?2"
        );
        let rows = sqlx::query(&sql)
            .bind(codec::clamp_i64(after))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error("read all"))?;
        rows.iter()
            .map(decode_entry)
            .collect::<Result<_, _>>()
            .map_err(|m| self.data_error(m))
    }

    pub(super) async fn get_command_impl(&self, command_id: Uuid) -> CoreResult<Option<CommandRecord>> {
        let row = sqlx::query(
            "SELECT id, namespace, resource, aggregate_id, action, args, context, version_before, \
             version_after, recorded_at FROM fluvius_commands WHERE id = ?1",
        )
        .bind(command_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error("get command"))?;
        row.as_ref()
            .map(decode_command)
            .transpose()
            .map_err(|m| self.data_error(m))
    }
}
