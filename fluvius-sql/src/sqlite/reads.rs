//! Batched stream reads: the stream reads of concurrent loads answered by one query (see the
//! [module docs](super#batched-stream-reads)).

use super::{decode_entry, stream_of, SqliteLogStore, EVENT_COLUMNS};
use crate::batch::{answer_reads, fail_reads, read_keys, PendingRead, StreamKey};

/// Reader tasks of a store with group commit on. One: while its query runs, the next batch
/// gathers, and one query reads many streams; in the benchmark report (2 cores) two or four
/// readers, each with its own query in flight, made concurrent commands slower, not faster.
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
