//! Read batching: concurrent whole-stream reads answered from one query.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fluvius_core::{AggregateId, Event, LogEntry, UndecodableEntry};
use tokio::sync::{mpsc, oneshot};

use super::queue::{drain, send_and_wait, BatchCounters, Bounds, InFlight, InFlightGuard};
use super::{CoreResult, StreamKey};

/// One queued stream read (the whole stream, as a load reads it) and where its answer goes.
pub(crate) struct PendingRead {
    pub(crate) resource: String,
    pub(crate) aggregate_id: AggregateId,
    reply: oneshot::Sender<CoreResult<Vec<Event>>>,
}

impl PendingRead {
    /// Answer the caller (who may have stopped waiting: then nobody hears it).
    pub(crate) fn answer(self, result: CoreResult<Vec<Event>>) {
        let _ = self.reply.send(result);
    }
}

/// What a store's stream-read batcher has done so far (see `read_batch_stats` on the store):
/// for metrics, and for tests that need to know a batch formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadBatchStats {
    /// Stream reads queued and not yet taken by a reader.
    pub waiting: u64,
    /// Queries run (batches, including batches of one).
    pub batches: u64,
    /// Stream reads answered through the batcher.
    pub reads: u64,
    /// The most stream reads in one batch.
    pub largest_batch: u64,
    /// Stream reads run on the caller's own task, because no other read was queued or being
    /// read (on SQLite: and nobody was writing, so the read used the writer's connection; see
    /// the [module docs](crate::group_commit)). Not counted in `reads`.
    pub alone: u64,
}

/// The queue in front of a store's reader tasks, which read the streams of concurrent
/// [`read_stream`](fluvius_core::LogStore::read_stream) calls with one query per batch, as the
/// writer writes concurrent appends in one transaction. The tasks end when the last handle is
/// gone.
#[derive(Clone, Debug)]
pub(crate) struct ReadQueue {
    sender: mpsc::UnboundedSender<PendingRead>,
    backend: &'static str,
    counters: Arc<ReadCounters>,
}

#[derive(Debug, Default)]
struct ReadCounters {
    batch: BatchCounters,
    alone: AtomicU64,
    in_flight: InFlight,
}

impl ReadQueue {
    /// Start `readers` reader tasks draining one queue, batches of at most `max_batch` reads;
    /// `read` reads one batch and answers every request in it. Must be called inside a tokio
    /// runtime.
    pub(crate) fn spawn<R, F>(backend: &'static str, readers: usize, max_batch: usize, read: R) -> Self
    where
        R: FnMut(Vec<PendingRead>) -> F + Clone + Send + 'static,
        F: Future<Output = ()> + Send,
    {
        let counters = Arc::new(ReadCounters::default());
        let stats = counters.clone();
        let bounds = Bounds {
            max: max_batch.max(1),
            max_weight: usize::MAX,
            weight: |_: &PendingRead| 1,
        };
        let mut read = read;
        let sender = drain(readers, bounds, (), move |batch: Vec<PendingRead>, ()| {
            stats.batch.took(batch.len() as u64);
            read(batch)
        });
        Self {
            sender,
            backend,
            counters,
        }
    }

    /// The readers' counters.
    pub(crate) fn stats(&self) -> ReadBatchStats {
        let c = &self.counters;
        ReadBatchStats {
            waiting: c.batch.waiting.load(Ordering::Relaxed),
            batches: c.batch.batches.load(Ordering::Relaxed),
            reads: c.batch.taken.load(Ordering::Relaxed),
            largest_batch: c.batch.largest_batch.load(Ordering::Relaxed),
            alone: c.alone.load(Ordering::Relaxed),
        }
    }

    /// Nothing is queued or being read.
    pub(crate) fn is_idle(&self) -> bool {
        self.counters.in_flight.0.load(Ordering::Acquire) == 0
    }

    /// Start a stream read on the caller's task if no other read is queued or being read
    /// (PostgreSQL): the guard keeps the others queueing until it is dropped. Counted in
    /// [`ReadBatchStats::alone`].
    pub(crate) fn try_alone(&self) -> Option<InFlightGuard<'_>> {
        let guard = self.counters.in_flight.enter_alone()?;
        self.read_alone();
        Some(guard)
    }

    /// Count a stream read its caller ran itself, past the queue.
    pub(crate) fn read_alone(&self) {
        self.counters.alone.fetch_add(1, Ordering::Relaxed);
    }

    /// Queue a read of the whole stream and wait for its events.
    pub(crate) async fn submit(&self, resource: &str, aggregate_id: AggregateId) -> CoreResult<Vec<Event>> {
        let _in_flight = self.counters.in_flight.enter();
        let make = |reply| PendingRead {
            resource: resource.to_owned(),
            aggregate_id,
            reply,
        };
        send_and_wait(&self.sender, &self.counters.batch.waiting, make, || {
            self.stopped()
        })
        .await
    }

    fn stopped(&self) -> fluvius_core::Error {
        fluvius_core::Error::store(
            self.backend,
            "the stream-read batcher stopped (its runtime shut down, or it panicked)",
            None,
        )
    }
}

/// Answer every caller of a read batch with the same failure.
pub(crate) fn fail_reads(batch: Vec<PendingRead>, target: &str, operation: &str, error: &str) {
    let n = batch.len();
    for p in batch {
        p.answer(Err(fluvius_core::Error::store(
            target.to_owned(),
            format!("{operation} (a group of {n} stream reads): {error}"),
            None,
        )));
    }
}

/// Answer each caller of a read batch with its stream's events in version order (none for a
/// stream without events), from `rows`: the events of every stream of the batch, in any order,
/// each decoded with `decode`. A row that does not decode fails the reads of its stream
/// (`stream_of` tells which) with the error naming it, and only those; a row of no stream of
/// the batch, or one whose stream or position cannot be read, fails every read of the batch
/// (`target` names the database).
pub(crate) fn answer_reads<R>(
    batch: Vec<PendingRead>,
    rows: &[R],
    decode: impl Fn(&R) -> Result<LogEntry, String>,
    stream_of: impl Fn(&R) -> Option<(String, AggregateId)>,
    target: &str,
) {
    // Each distinct stream's slot, and each caller's.
    let mut slot: HashMap<StreamKey<'_>, usize> = HashMap::with_capacity(batch.len());
    let wanted: Vec<usize> = batch
        .iter()
        .map(|p| {
            let next = slot.len();
            *slot.entry((p.resource.as_str(), p.aggregate_id)).or_insert(next)
        })
        .collect();
    let mut streams: Vec<Vec<Event>> = vec![Vec::new(); slot.len()];
    // The first (lowest position) row of each stream that does not decode.
    let mut undecodable: Vec<Option<UndecodableEntry>> = (0..slot.len()).map(|_| None).collect();
    let mut failure = None;
    for row in rows {
        let event = match decode(row) {
            Ok(LogEntry::Decoded(event)) => event,
            Ok(LogEntry::Undecodable(bad)) => {
                let at =
                    stream_of(row).and_then(|(resource, id)| slot.get(&(resource.as_str(), id)).copied());
                let Some(i) = at else {
                    failure = Some(("read stream (decode an event)", bad.error.to_string()));
                    break;
                };
                if undecodable[i]
                    .as_ref()
                    .is_none_or(|first| bad.position < first.position)
                {
                    undecodable[i] = Some(bad);
                }
                continue;
            }
            Err(message) => {
                failure = Some(("read stream (decode an event)", message));
                break;
            }
        };
        let Some(&i) = slot.get(&(event.resource.as_str(), event.aggregate_id)) else {
            let message = format!(
                "the query returned an event of a stream it did not read: {}/{}",
                event.resource, event.aggregate_id
            );
            failure = Some(("read stream", message));
            break;
        };
        streams[i].push(event);
    }
    drop(slot);
    if let Some((operation, message)) = failure {
        fail_reads(batch, target, operation, &message);
        return;
    }
    for events in &mut streams {
        events.sort_unstable_by_key(|e| e.aggregate_version);
    }
    // How many callers read each stream: the last one takes its events, the others a copy.
    let mut readers = vec![0usize; streams.len()];
    for &i in &wanted {
        readers[i] += 1;
    }
    for (p, i) in batch.into_iter().zip(wanted) {
        readers[i] -= 1;
        if let Some(bad) = &undecodable[i] {
            // Errors are not `Clone`: each caller gets its own, naming the same row.
            p.answer(Err(match &bad.error {
                fluvius_core::Error::UndecodableEvent { message, .. } => {
                    fluvius_core::Error::UndecodableEvent {
                        position: bad.position,
                        event_id: bad.event_id,
                        message: message.clone(),
                    }
                }
                other => fluvius_core::Error::store(target.to_owned(), other.to_string(), None),
            }));
            continue;
        }
        let events = if readers[i] == 0 {
            std::mem::take(&mut streams[i])
        } else {
            streams[i].clone()
        };
        p.answer(Ok(events));
    }
}

/// The distinct streams of a read batch, sorted: what its query lists.
pub(crate) fn read_keys(batch: &[PendingRead]) -> Vec<StreamKey<'_>> {
    let mut keys: Vec<StreamKey<'_>> = batch
        .iter()
        .map(|p| (p.resource.as_str(), p.aggregate_id))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}
