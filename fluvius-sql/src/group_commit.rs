//! Group commit: concurrent appends share one transaction and one sync to disk.
//!
//! Each store with group commit on owns a writer task (PostgreSQL: a few, see
//! [`GroupCommit::writers`]). [`LogStore::append`] puts its request
//! on the writer's queue and waits for its own answer. The writer takes the first request
//! waiting, drains whatever else is queued at that moment (up to
//! [`GroupCommit::max_batch`] appends and [`GroupCommit::max_batch_events`] events), and
//! writes them all in one transaction. A conflict or a duplicate command fails that append
//! alone, and its neighbours commit. Every caller is answered only after the commit returned,
//! so an acknowledged append is as durable as without group commit.
//!
//! A batch of several appends is written in bulk: a read of the current versions of all its
//! streams and of which of its command ids are already recorded (one query each on
//! PostgreSQL, one for both on SQLite), a decision per append
//! in batch order (a command id recorded, or carried by an earlier accepted append of the same
//! batch, is a [duplicate](fluvius_core::Error::DuplicateCommand); an expected version other
//! than the stream's, counting the earlier accepted appends of the batch, is a
//! [conflict](fluvius_core::Error::Conflict) naming that version), then one multi-row insert
//! for the accepted command records and one for their events — a few statements for the
//! whole batch instead of several per append. A batch where an append carries
//! [transactional handlers](fluvius_core::transactional) is written one savepoint per append
//! instead (the handlers run inside their append's savepoint, and a refusal rolls back that
//! append alone), and so is a batch whose bulk statements fail: the store undoes them and
//! writes the batch again, append by append, where each failure is an append's own. Each
//! store's module docs say how it writes a batch.
//!
//! A lone append is written at once: the writer never waits for company, so an idle store
//! adds no latency. Batches form by themselves while a commit is in flight — exactly when
//! callers would otherwise queue for the write lock. A lone append is written on its caller's
//! task (no hand-off to the writer task and back, [`GroupCommitStats::alone`]): on SQLite when
//! nothing is queued and nobody is writing — the writer, having taken the first append of its
//! next batch, waits for that write before it takes the rest, so what queues meanwhile still
//! forms one batch; on PostgreSQL when no other append is queued, being written or written
//! alone (appends that arrive meanwhile queue for the writers, which write them beside it).
//!
//! A caller that stops waiting (its future is dropped, or the store's operation timeout
//! passed) does not withdraw an append a writer has taken: it is written, as a request
//! already sent to a server would be, and the caller learns its outcome from the log (see the
//! `postgres` and `sqlite` module docs, "Outcomes"). On SQLite, an append still queued when
//! its writer takes the write turn is dropped if its caller is gone.
//!
//! The writer runs on the tokio runtime that opened the store: use the store inside that
//! runtime (once it shuts down, appends fail with a store error saying the writer stopped),
//! or turn group commit off with [`GroupCommit::off`].
//!
//! Group commit also batches whole-stream reads: concurrent [`LogStore::read_stream`] calls
//! share one query, with the same shape (a reader task takes the first read waiting plus
//! whatever else is queued, a lone read goes at once; on PostgreSQL the only read in flight
//! runs on its caller's task, on SQLite a read while nothing is queued and nobody is writing
//! runs on its caller's task, on the writer's connection). See the `sqlite` and `postgres`
//! module docs and [`ReadBatchStats`].
//!
//! [`LogStore::append`]: fluvius_core::LogStore::append
//! [`LogStore::read_stream`]: fluvius_core::LogStore::read_stream

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fluvius_core::{AggregateId, AppendRequest, Event, LogEntry, UndecodableEntry};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

type CoreResult<T> = fluvius_core::Result<T>;

/// How a store batches concurrent appends into one transaction. On by default; see the
/// [module docs](self).
///
/// ```
/// use fluvius_sql::GroupCommit;
/// let batched = GroupCommit::default().max_batch(64);
/// assert_eq!(batched.max_appends(), 64);
/// assert!(!GroupCommit::off().is_on());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    max_batch: usize,
    max_batch_events: usize,
    writers: Option<usize>,
}

impl GroupCommit {
    /// The default batch bound: at most this many appends per transaction.
    pub const DEFAULT_MAX_BATCH: usize = 256;
    /// The default bound on the events of one batch (a single larger append still goes
    /// through, alone).
    pub const DEFAULT_MAX_BATCH_EVENTS: usize = 10_000;
    /// Writers of a PostgreSQL store, unless set with [`writers`](Self::writers). Two: with
    /// batched stream reads, on 2 cores with the server on the same machine, two writers
    /// (larger batches, fewer transactions) ran concurrent commands faster than four at
    /// concurrency 16 and 64, and eight slower still. A server with more cores may want more.
    pub const DEFAULT_POSTGRES_WRITERS: usize = 2;

    /// No batching: every append is its own transaction, written by the calling task, and
    /// every stream read its own query.
    pub const fn off() -> Self {
        Self {
            max_batch: 1,
            max_batch_events: Self::DEFAULT_MAX_BATCH_EVENTS,
            writers: None,
        }
    }

    /// At most `max` appends per transaction (at least 1; 1 turns group commit off).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// At most `max` events per transaction, counting whole appends: an append that would
    /// cross the bound waits for the next batch (an append larger than the bound goes alone).
    pub fn max_batch_events(mut self, max: usize) -> Self {
        self.max_batch_events = max.max(1);
        self
    }

    /// How many writers drain the queue, each writing its own batch in its own transaction
    /// (at least 1). PostgreSQL runs several by default
    /// ([`DEFAULT_POSTGRES_WRITERS`](Self::DEFAULT_POSTGRES_WRITERS)): the server commits
    /// concurrent transactions in parallel and flushes their WAL together, so one writer
    /// alone would serialize its round trips. SQLite always uses one (it has one write lock).
    pub fn writers(mut self, writers: usize) -> Self {
        self.writers = Some(writers.max(1));
        self
    }

    /// The number of writers set with [`writers`](Self::writers), or `default`.
    pub(crate) fn writers_or(&self, default: usize) -> usize {
        self.writers.unwrap_or(default)
    }

    /// The bound on appends per transaction.
    pub fn max_appends(&self) -> usize {
        self.max_batch
    }

    /// Whether appends are batched (a bound above 1).
    pub fn is_on(&self) -> bool {
        self.max_batch > 1
    }
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_batch: Self::DEFAULT_MAX_BATCH,
            max_batch_events: Self::DEFAULT_MAX_BATCH_EVENTS,
            writers: None,
        }
    }
}

/// One queued append and where its answer goes.
pub(crate) struct Pending {
    pub(crate) request: AppendRequest,
    pub(crate) reply: oneshot::Sender<CoreResult<Vec<Event>>>,
}

impl Pending {
    /// Answer the caller (who may have stopped waiting: then nobody hears it).
    pub(crate) fn answer(self, result: CoreResult<Vec<Event>>) {
        let _ = self.reply.send(result);
    }

    /// The caller stopped waiting for the answer (timed out, or dropped its future).
    pub(crate) fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// What a store's group-commit writer has done so far (see `group_commit_stats` on each
/// store): for metrics, and for tests that need to know a batch formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupCommitStats {
    /// Appends queued and not yet taken by the writer.
    pub waiting: u64,
    /// Transactions written (batches, including batches of one).
    pub batches: u64,
    /// Appends taken by the writer.
    pub appends: u64,
    /// The most appends in one batch.
    pub largest_batch: u64,
    /// Batches written in bulk (a few statements for the whole batch, see the
    /// [module docs](self)) rather than one savepoint per append.
    pub bulk_batches: u64,
    /// Appends written on the caller's own task, because nothing was queued and nobody was
    /// writing (see the [module docs](self)). Not counted in `appends`.
    pub alone: u64,
}

/// What a queue's draining tasks have taken so far (appends for the writer, stream reads
/// for the readers).
#[derive(Debug, Default)]
struct BatchCounters {
    waiting: AtomicU64,
    batches: AtomicU64,
    taken: AtomicU64,
    largest_batch: AtomicU64,
}

impl BatchCounters {
    /// A task took a batch of `n` requests off the queue.
    fn took(&self, n: u64) {
        self.waiting.fetch_sub(n, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.taken.fetch_add(n, Ordering::Relaxed);
        self.largest_batch.fetch_max(n, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Counters {
    batch: BatchCounters,
    bulk_batches: AtomicU64,
    alone: AtomicU64,
    in_flight: InFlight,
}

/// Requests submitted to a queue, or run beside it on their callers' tasks, and not yet
/// answered: a request may run on its caller's task only when it would be the only one
/// (PostgreSQL), and SQLite's reads look for none before reading on the writer's connection.
#[derive(Debug, Default)]
struct InFlight(AtomicU64);

impl InFlight {
    /// Count one more request until the guard is dropped.
    fn enter(&self) -> InFlightGuard<'_> {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self)
    }

    /// Count this request only if there is no other: the guard says it may run alone.
    fn enter_alone(&self) -> Option<InFlightGuard<'_>> {
        self.0
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| InFlightGuard(self))
    }
}

/// Counts its request in flight (also when the caller stops waiting: dropping the guard ends it).
#[must_use]
pub(crate) struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The receiving end of a queue, shared by the tasks that drain it.
struct Intake<T> {
    receiver: mpsc::UnboundedReceiver<T>,
    /// A request that would have crossed the weight bound of the previous batch.
    carried: Option<T>,
}

/// How big a batch may grow: at most `max` requests and `max_weight` in total weight (a
/// request heavier than that goes alone).
struct Bounds<T> {
    max: usize,
    max_weight: usize,
    weight: fn(&T) -> usize,
}

impl<T> Intake<T> {
    /// The first request waiting (waiting for one if need be), plus whatever else is queued
    /// right now, within the bounds. `None` when every sender is gone.
    async fn next_batch<G: Gate>(&mut self, bounds: &Bounds<T>, gate: &G) -> Option<(Vec<T>, G::Guard)> {
        let first = match self.carried.take() {
            Some(p) => p,
            None => self.receiver.recv().await?,
        };
        // Wait for the gate with the first request in hand: what queues meanwhile joins it.
        let guard = gate.enter().await;
        let mut weight = (bounds.weight)(&first);
        let mut batch = vec![first];
        while batch.len() < bounds.max {
            let Ok(next) = self.receiver.try_recv() else { break };
            weight += (bounds.weight)(&next);
            if weight > bounds.max_weight {
                self.carried = Some(next);
                break;
            }
            batch.push(next);
        }
        Some((batch, guard))
    }
}

/// What a draining task waits for after taking the first request of a batch and before taking
/// the rest (so requests that queue meanwhile join the batch); the guard goes to the handler.
pub(crate) trait Gate: Send + Sync + 'static {
    /// Held while the batch is handled.
    type Guard: Send + 'static;
    /// Wait until the gate lets this task through.
    fn enter(&self) -> impl Future<Output = Self::Guard> + Send;
}

/// No gate: the batch is taken at once.
impl Gate for () {
    type Guard = ();
    async fn enter(&self) {}
}

/// A lock shared with callers that write on their own task when the queue is idle (SQLite's
/// write turn): the batch waits for it.
impl<S: Send + 'static> Gate for Arc<tokio::sync::Mutex<S>> {
    type Guard = tokio::sync::OwnedMutexGuard<S>;
    fn enter(&self) -> impl Future<Output = Self::Guard> + Send {
        self.clone().lock_owned()
    }
}

/// Start `tasks` tasks draining one new queue batch by batch (one task at a time takes a
/// batch, the others handle theirs meanwhile); `handle` handles one batch. The tasks end when
/// the returned sender and all its clones are gone. Must be called inside a tokio runtime.
fn drain<T, G, H, F>(tasks: usize, bounds: Bounds<T>, gate: G, handle: H) -> mpsc::UnboundedSender<T>
where
    T: Send + 'static,
    G: Gate + Clone,
    H: FnMut(Vec<T>, G::Guard) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send,
{
    let (sender, receiver) = mpsc::unbounded_channel::<T>();
    let intake = Arc::new(tokio::sync::Mutex::new(Intake {
        receiver,
        carried: None,
    }));
    let bounds = Arc::new(bounds);
    for _ in 0..tasks.max(1) {
        let intake = intake.clone();
        let bounds = bounds.clone();
        let mut handle = handle.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            loop {
                let Some((batch, guard)) = intake.lock().await.next_batch(&bounds, &gate).await else {
                    return;
                };
                handle(batch, guard).await;
            }
        });
    }
    sender
}

/// Queue the request `make` builds around its reply channel (counted in `waiting` until a task
/// takes it) and wait for its answer; `stopped` is the error when the tasks are gone.
async fn send_and_wait<T>(
    sender: &mpsc::UnboundedSender<T>,
    waiting: &AtomicU64,
    make: impl FnOnce(oneshot::Sender<CoreResult<Vec<Event>>>) -> T,
    stopped: impl Fn() -> fluvius_core::Error,
) -> CoreResult<Vec<Event>> {
    let (reply, answer) = oneshot::channel();
    waiting.fetch_add(1, Ordering::Relaxed);
    if sender.send(make(reply)).is_err() {
        waiting.fetch_sub(1, Ordering::Relaxed);
        return Err(stopped());
    }
    answer.await.unwrap_or_else(|_| Err(stopped()))
}

/// The queue in front of a store's writer task. The task ends when the last handle is gone.
#[derive(Clone, Debug)]
pub(crate) struct Queue {
    sender: mpsc::UnboundedSender<Pending>,
    backend: &'static str,
    counters: Arc<Counters>,
}

impl Queue {
    /// Start `writers` writer tasks draining one queue; `write` writes one batch, answers
    /// every request in it, and says whether it wrote the batch in bulk. Must be called inside
    /// a tokio runtime.
    pub(crate) fn spawn<G, W, F>(
        config: GroupCommit,
        backend: &'static str,
        writers: usize,
        gate: G,
        write: W,
    ) -> Self
    where
        G: Gate + Clone,
        W: FnMut(Vec<Pending>, G::Guard) -> F + Clone + Send + 'static,
        F: Future<Output = bool> + Send,
    {
        let counters = Arc::new(Counters::default());
        let stats = counters.clone();
        let bounds = Bounds {
            max: config.max_batch,
            max_weight: config.max_batch_events,
            weight: |p: &Pending| p.request.events.len(),
        };
        let mut write = write;
        let sender = drain(writers, bounds, gate, move |batch: Vec<Pending>, guard| {
            stats.batch.took(batch.len() as u64);
            let written = write(batch, guard);
            let stats = stats.clone();
            async move {
                if written.await {
                    stats.bulk_batches.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            sender,
            backend,
            counters,
        }
    }

    /// The writer's counters.
    pub(crate) fn stats(&self) -> GroupCommitStats {
        let c = &self.counters;
        GroupCommitStats {
            waiting: c.batch.waiting.load(Ordering::Relaxed),
            batches: c.batch.batches.load(Ordering::Relaxed),
            appends: c.batch.taken.load(Ordering::Relaxed),
            largest_batch: c.batch.largest_batch.load(Ordering::Relaxed),
            bulk_batches: c.bulk_batches.load(Ordering::Relaxed),
            alone: c.alone.load(Ordering::Relaxed),
        }
    }

    /// Nothing is queued or being gathered into a batch (a writer holding a batch's first
    /// append while it waits for the gate still counts it as waiting).
    pub(crate) fn is_idle(&self) -> bool {
        self.counters.batch.waiting.load(Ordering::Relaxed) == 0
    }

    /// Count an append written on its caller's task.
    pub(crate) fn wrote_alone(&self) {
        self.counters.alone.fetch_add(1, Ordering::Relaxed);
    }

    /// Start an append on the caller's task if no other append is queued, being written, or
    /// written alone (PostgreSQL): the guard keeps the others queueing until it is dropped.
    /// Counted in [`GroupCommitStats::alone`].
    pub(crate) fn try_alone(&self) -> Option<InFlightGuard<'_>> {
        let guard = self.counters.in_flight.enter_alone()?;
        self.wrote_alone();
        Some(guard)
    }

    /// Queue `request` and wait for its result.
    pub(crate) async fn submit(&self, request: AppendRequest) -> CoreResult<Vec<Event>> {
        let _in_flight = self.counters.in_flight.enter();
        let make = |reply| Pending { request, reply };
        send_and_wait(&self.sender, &self.counters.batch.waiting, make, || {
            self.stopped()
        })
        .await
    }

    fn stopped(&self) -> fluvius_core::Error {
        crate::outcome::in_doubt(format!(
            "the group-commit writer of {} gave up on the append (its write timed out, its runtime \
             shut down, or it panicked)",
            self.backend
        ))
    }
}

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
    /// the [module docs](self)). Not counted in `reads`.
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

/// The same failure, for every caller of a batch (errors are not `Clone`): an
/// [`OutcomeUnknown`](fluvius_core::Error::OutcomeUnknown) when the error leaves the batch's
/// outcome in doubt (the store then learns each append's truth); a
/// [transient](crate::error::is_transient) one (the batch was rolled back) is each caller's
/// own [`Transient`](fluvius_core::Error::Transient), which the domain retries; else a store
/// error.
pub(crate) fn batch_error(
    target: &str,
    operation: &str,
    error: &sqlx::Error,
    n: usize,
) -> fluvius_core::Error {
    if crate::outcome::sqlx_unclear(error) {
        return crate::outcome::in_doubt(format!(
            "{operation} (a group of {n} appends) on {target}: {error}"
        ));
    }
    batch_refused(target, operation, error, n)
}

/// How [`finish_batch`] ends a batch's transaction: a sqlx transaction, or SQLite's
/// writer-connection transaction (begun with the batch's first query).
pub(crate) trait BatchTx: Send {
    /// Commit.
    fn commit(self) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// Roll back.
    fn rollback(self) -> impl Future<Output = sqlx::Result<()>> + Send;
}

impl<DB: sqlx::Database> BatchTx for sqlx::Transaction<'_, DB> {
    fn commit(self) -> impl Future<Output = sqlx::Result<()>> + Send {
        sqlx::Transaction::commit(self)
    }

    fn rollback(self) -> impl Future<Output = sqlx::Result<()>> + Send {
        sqlx::Transaction::rollback(self)
    }
}

/// Commit a written batch and answer every caller: a refused append with its own error at
/// once, a written one (its positions in `outcomes`) once the commit returned, with the
/// commit's error if it failed. With nothing written, the transaction is rolled back.
pub(crate) async fn finish_batch(
    tx: impl BatchTx,
    outcomes: Vec<(Pending, CoreResult<Vec<u64>>)>,
    target: &str,
) {
    let n = outcomes.len();
    let mut written = Vec::with_capacity(n);
    for (pending, outcome) in outcomes {
        match outcome {
            Ok(positions) => written.push((pending, positions)),
            Err(e) => pending.answer(Err(e)),
        }
    }
    if written.is_empty() {
        let _ = tx.rollback().await;
        return;
    }
    if let Err(e) = tx.commit().await {
        for (p, _) in written {
            p.answer(Err(batch_error(target, "commit append", &e, n)));
        }
        return;
    }
    for (Pending { request, reply }, positions) in written {
        let _ = reply.send(Ok(crate::codec::stored(request, positions)));
    }
}

/// The same failure before the batch's `COMMIT` was sent, for every caller: a store error (an
/// explicit transaction commits nothing without its `COMMIT`, whatever broke), or each
/// caller's own [`Transient`](fluvius_core::Error::Transient) when the database rolled the
/// batch back for a deadlock or a serialization failure (the domain retries it).
pub(crate) fn batch_refused(
    target: &str,
    operation: &str,
    error: &sqlx::Error,
    n: usize,
) -> fluvius_core::Error {
    let message = format!("{operation} (a group of {n} appends): {error}");
    if crate::error::is_transient(error) {
        fluvius_core::Error::Transient {
            backend: target.to_owned().into(),
            message,
            source: None,
        }
    } else {
        fluvius_core::Error::store(target.to_owned(), message, None)
    }
}

/// Answer every caller of a batch with [`batch_refused`].
pub(crate) fn refuse_batch(batch: Vec<Pending>, target: &str, operation: &str, error: &sqlx::Error) {
    let n = batch.len();
    for p in batch {
        p.answer(Err(batch_refused(target, operation, error, n)));
    }
}

/// Answer every caller of a batch with the same failure.
pub(crate) fn fail_batch(batch: Vec<Pending>, target: &str, operation: &str, error: &sqlx::Error) {
    let n = batch.len();
    for p in batch {
        p.answer(Err(batch_error(target, operation, error, n)));
    }
}

/// One stream of a bulk batch: resource and aggregate.
pub(crate) type StreamKey<'a> = (&'a str, AggregateId);

/// What the bulk path reads before deciding a batch: the distinct streams of its appends (in
/// first-seen order) and their command ids.
pub(crate) fn bulk_keys<'a>(
    requests: impl IntoIterator<Item = &'a AppendRequest>,
) -> (Vec<StreamKey<'a>>, Vec<Uuid>) {
    let mut seen = HashSet::new();
    let mut streams = Vec::new();
    let mut commands = Vec::new();
    for request in requests {
        let key = (request.resource.as_str(), request.aggregate_id);
        if seen.insert(key) {
            streams.push(key);
        }
        if let Some(command) = &request.command {
            commands.push(command.id);
        }
    }
    (streams, commands)
}

/// Decide the appends of a bulk batch in batch order, as one savepoint per append would: a
/// command id already recorded, or carried by an earlier accepted append of the batch, is a
/// [`DuplicateCommand`](fluvius_core::Error::DuplicateCommand) (checked first, as the command
/// row is written first); an expected version other than the stream's current one — as
/// stored (`current`, a missing stream is at 0) plus the earlier accepted appends of the batch
/// — is a [`Conflict`](fluvius_core::Error::Conflict) naming that version. A refused append
/// changes nothing for the ones after it.
pub(crate) fn decide<'a>(
    requests: impl IntoIterator<Item = &'a AppendRequest>,
    mut current: HashMap<StreamKey<'a>, u64>,
    mut recorded: HashSet<Uuid>,
) -> Vec<CoreResult<()>> {
    requests
        .into_iter()
        .map(|request| {
            if let Some(command) = &request.command {
                if recorded.contains(&command.id) {
                    return Err(fluvius_core::Error::DuplicateCommand {
                        command_id: command.id,
                    });
                }
            }
            let version = current
                .entry((request.resource.as_str(), request.aggregate_id))
                .or_insert(0);
            if *version != request.expected_version {
                return Err(fluvius_core::Error::Conflict {
                    resource: request.resource.to_string(),
                    aggregate_id: request.aggregate_id,
                    expected: request.expected_version,
                    actual: *version,
                });
            }
            *version = request
                .expected_version
                .saturating_add(request.events.len() as u64);
            if let Some(command) = &request.command {
                recorded.insert(command.id);
            }
            Ok(())
        })
        .collect()
}

/// Each append's outcome in batch order, for the bulk path: `prepared` says which appends could
/// be converted for binding, `verdicts` what [`decide`] said of those (in order), `written` the
/// positions of the accepted ones (in order).
pub(crate) fn bulk_outcomes<P>(
    prepared: Vec<CoreResult<P>>,
    verdicts: Vec<CoreResult<()>>,
    written: Vec<Vec<u64>>,
    target: &str,
) -> Vec<CoreResult<Vec<u64>>> {
    bulk_results(prepared, verdicts, written.into_iter().map(Ok).collect(), target)
}

/// [`bulk_outcomes`] with a result for each accepted append instead of its positions.
pub(crate) fn bulk_results<P>(
    prepared: Vec<CoreResult<P>>,
    verdicts: Vec<CoreResult<()>>,
    written: Vec<CoreResult<Vec<u64>>>,
    target: &str,
) -> Vec<CoreResult<Vec<u64>>> {
    let mut verdicts = verdicts.into_iter();
    let mut written = written.into_iter();
    prepared
        .into_iter()
        .map(|p| {
            p.and_then(|_| verdicts.next().unwrap_or(Ok(()))).and_then(|()| {
                written.next().unwrap_or_else(|| {
                    Err(fluvius_core::Error::store(
                        target.to_owned(),
                        "a bulk write lost track of an accepted append".to_owned(),
                        None,
                    ))
                })
            })
        })
        .collect()
}
