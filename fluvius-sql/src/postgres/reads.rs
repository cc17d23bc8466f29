//! Batched stream reads: the stream reads of concurrent loads answered by one query (see the
//! [module docs](super#batched-stream-reads)).

use fluvius_core::AggregateId;
use uuid::Uuid;

use super::{decode_entry, stream_of, PostgresLogStore, EVENT_COLUMNS};
use crate::batch::{answer_reads, fail_reads, read_keys, PendingRead};

/// Reader tasks of a store with group commit on. One: while its query runs, the next batch
/// gathers, and one query reads many streams. Measured on 2 cores with the server on the same
/// machine (4,000 creates at concurrency 64, six alternating rounds): a median of 9,700
/// commands/s with one reader, 9,200 with two, 8,700 with four.
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
