//! Batched stream reads: the stream reads of concurrent loads answered by one query (see the
//! [module docs](super#batched-stream-reads)).

use std::collections::HashMap;

use fluvius_core::{AggregateId, Event};

use super::{decode_event, SqliteLogStore, EVENT_COLUMNS};
use crate::group_commit::{fail_reads, PendingRead};

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
        let mut keys: Vec<(&str, AggregateId)> = batch
            .iter()
            .map(|p| (p.resource.as_str(), p.aggregate_id))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        // One statement text for every batch size (the streams go in as one JSON array), so
        // each connection prepares it once.
        let list: Vec<(&str, String)> = keys
            .iter()
            .map(|(resource, aggregate_id)| (*resource, aggregate_id.to_string()))
            .collect();
        let list = match serde_json::to_string(&list) {
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
        let query = sqlx::query(&READ_STREAMS).bind(list);
        let rows = match query.fetch_all(&self.pool).await {
            Ok(rows) => rows,
            Err(e) => {
                fail_reads(batch, &self.target, "read stream", &e.to_string());
                return;
            }
        };
        let slot: HashMap<(&str, AggregateId), usize> =
            keys.iter().enumerate().map(|(i, key)| (*key, i)).collect();
        let mut streams: Vec<Vec<Event>> = vec![Vec::new(); keys.len()];
        for row in &rows {
            let event = match decode_event(row) {
                Ok(event) => event,
                Err(message) => {
                    fail_reads(batch, &self.target, "read stream (decode an event)", &message);
                    return;
                }
            };
            let Some(&i) = slot.get(&(event.resource.as_str(), event.aggregate_id)) else {
                let message = format!(
                    "the query returned an event of a stream it did not read: {}/{}",
                    event.resource, event.aggregate_id
                );
                fail_reads(batch, &self.target, "read stream", &message);
                return;
            };
            streams[i].push(event);
        }
        for events in &mut streams {
            events.sort_unstable_by_key(|e| e.aggregate_version);
        }
        // Each caller's stream, and how many callers read it.
        let wanted: Vec<usize> = batch
            .iter()
            .map(|p| {
                slot.get(&(p.resource.as_str(), p.aggregate_id))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        let mut readers = vec![0usize; keys.len()];
        for &i in &wanted {
            readers[i] += 1;
        }
        for (p, i) in batch.into_iter().zip(wanted) {
            readers[i] -= 1;
            // The last caller of a stream takes its events, the others a copy.
            let events = if readers[i] == 0 {
                std::mem::take(&mut streams[i])
            } else {
                streams[i].clone()
            };
            p.answer(Ok(events));
        }
    }
}
