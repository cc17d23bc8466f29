//! Batched stream reads: the stream reads of concurrent loads answered by one query (see the
//! [module docs](super#batched-stream-reads)).

use super::*;
use crate::batch::{answer_reads, fail_reads, read_keys, PendingRead};

/// Reader tasks of a store with group commit on. One: while its query runs, the next batch
/// gathers, and one query reads many streams (BENCHMARKS.md has the comparison with more).
pub(super) const READERS: usize = 1;

/// At most this many stream reads go into one query.
pub(super) const MAX_READ_BATCH: usize = 256;

/// The whole streams listed as `unnest($1 resources, $2 aggregate ids)`, each read as the
/// single-stream read reads it. The lateral subquery is ordered, so PostgreSQL cannot flatten
/// it into a join it might run as a hash join over the whole table: whatever the statistics
/// say, each listed stream is one scan of the stream key's index, which yields the stream in
/// version order.
static READ_STREAMS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT e.* FROM unnest($1::text[], $2::uuid[]) AS s(resource, aggregate_id) \
         CROSS JOIN LATERAL (SELECT {EVENT_COLUMNS} FROM fluvius_events \
         WHERE tenant = '' AND resource = s.resource AND aggregate_id = s.aggregate_id \
         ORDER BY aggregate_version) AS e"
    )
});

impl PostgresLogStore {
    /// Read the whole streams of a batch with one query, and answer each caller with its
    /// stream's events in version order (none for a stream without events). A failing query
    /// answers every caller with the store error.
    pub(super) async fn read_batch(&self, batch: Vec<PendingRead>) {
        // One statement text for every batch size (the streams go in as two arrays), so each
        // connection prepares it once.
        let (resources, aggregate_ids): (Vec<&str>, Vec<Uuid>) = read_keys(&batch)
            .into_iter()
            .map(|(resource, aggregate_id): (&str, AggregateId)| (resource, *aggregate_id.as_uuid()))
            .unzip();
        let rows = sqlx::query(&READ_STREAMS)
            .bind(&resources)
            .bind(&aggregate_ids)
            .fetch_all(&self.pool)
            .await;
        match rows {
            Ok(rows) => answer_reads(batch, &rows, decode_entry, stream_of, &self.target),
            Err(e) => fail_reads(batch, &self.target, "read stream", &e.to_string()),
        }
    }
}

impl PostgresLogStore {
    pub(super) async fn load_snapshot_impl(
        &self,
        resource: &str,
        aggregate_id: AggregateId,
        query: SnapshotQuery,
    ) -> CoreResult<Option<Snapshot>> {
        let row = sqlx::query(
            "SELECT aggregate_version, state_version, state::text, recorded_at FROM fluvius_snapshots \
             WHERE tenant = '' AND resource = $1 AND aggregate_id = $2 AND aggregate_version <= $3 \
             AND ($4::timestamptz IS NULL OR recorded_at <= $4) \
             ORDER BY aggregate_version DESC LIMIT 1",
        )
        .bind(resource)
        .bind(aggregate_id.as_uuid())
        .bind(query.max_version.map_or(i64::MAX, codec::clamp_i64))
        .bind(query.until.map(codec::micros))
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error("load snapshot"))?;
        row.map(|row| -> Result<Snapshot, String> {
            let state_version: i32 = column(&row, 1)?;
            Ok(Snapshot {
                resource: resource.to_owned(),
                aggregate_id,
                version: codec::to_u64(column(&row, 0)?, "snapshot version")?,
                state_version: u32::try_from(state_version)
                    .map_err(|_| format!("stored state version {state_version} is negative"))?,
                state: Payload::from_json_unchecked(column::<String>(&row, 2)?),
                timestamp: column(&row, 3)?,
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
        // The only whole-stream read in flight runs here (below), as a reader would run a
        // batch of one; others queue for the readers meanwhile.
        let _alone = match &self.reads {
            Some(reads) if query == StreamQuery::default() => match reads.try_alone() {
                Some(guard) => Some(guard),
                None => return reads.submit(resource, aggregate_id).await,
            },
            _ => None,
        };
        let from = query.from_version.map_or(0, codec::clamp_i64);
        let to = query.to_version.map_or(i64::MAX, codec::clamp_i64);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM fluvius_events \
             WHERE tenant = '' AND resource = $1 AND aggregate_id = $2 \
             AND aggregate_version BETWEEN $3 AND $4 AND ($5::timestamptz IS NULL OR recorded_at <= $5) \
             ORDER BY aggregate_version"
        );
        let rows = sqlx::query(&sql)
            .bind(resource)
            .bind(aggregate_id.as_uuid())
            .bind(from)
            .bind(to)
            .bind(query.until.map(codec::micros))
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error("read stream"))?;
        codec::stream_events(&rows, decode_entry, |m| self.data_error(m))
    }

    pub(super) async fn read_all_impl(&self, after: u64, limit: usize) -> CoreResult<Vec<LogEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let horizon = horizon::read(&self.pool)
            .await
            .map_err(self.query_error("read all"))?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM fluvius_events \
             WHERE position > $1 AND xact_id < $3::bigint::text::xid8 \
             ORDER BY position LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(codec::clamp_i64(after))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(horizon)
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
            "SELECT id, namespace, resource, aggregate_id, action, args::text, context::text, version_before, \
             version_after, recorded_at FROM fluvius_commands WHERE id = $1",
        )
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error("get command"))?;
        row.as_ref()
            .map(decode_command)
            .transpose()
            .map_err(|m| self.data_error(m))
    }
}
