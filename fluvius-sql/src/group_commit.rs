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
//! A batch of several appends is written in bulk: one query for the current versions of all
//! its streams, one for which of its command ids are already recorded, a decision per append
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
//! callers would otherwise queue for the write lock.
//!
//! A caller that stops waiting (its future is dropped) does not withdraw its append: once
//! queued, it is written, as a request already sent to a server would be.
//!
//! The writer runs on the tokio runtime that opened the store: use the store inside that
//! runtime (once it shuts down, appends fail with a store error saying the writer stopped),
//! or turn group commit off with [`GroupCommit::off`].
//!
//! [`LogStore::append`]: fluvius_core::LogStore::append

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fluvius_core::{AggregateId, AppendRequest, Event};
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
    /// Writers of a PostgreSQL store, unless set with [`writers`](Self::writers).
    pub const DEFAULT_POSTGRES_WRITERS: usize = 4;

    /// No batching: every append is its own transaction, written by the calling task.
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
}

#[derive(Debug, Default)]
struct Counters {
    waiting: AtomicU64,
    batches: AtomicU64,
    appends: AtomicU64,
    largest_batch: AtomicU64,
    bulk_batches: AtomicU64,
}

/// The receiving end of the queue, shared by the writers.
struct Intake {
    receiver: mpsc::UnboundedReceiver<Pending>,
    /// An append that would have crossed the event bound of the previous batch.
    carried: Option<Pending>,
}

impl Intake {
    /// The first append waiting (waiting for one if need be), plus whatever else is queued
    /// right now, within the bounds. `None` when every store handle is gone.
    async fn next_batch(&mut self, config: &GroupCommit) -> Option<Vec<Pending>> {
        let first = match self.carried.take() {
            Some(p) => p,
            None => self.receiver.recv().await?,
        };
        let mut events = first.request.events.len();
        let mut batch = vec![first];
        while batch.len() < config.max_batch {
            let Ok(next) = self.receiver.try_recv() else { break };
            events += next.request.events.len();
            if events > config.max_batch_events {
                self.carried = Some(next);
                break;
            }
            batch.push(next);
        }
        Some(batch)
    }
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
    pub(crate) fn spawn<W, F>(config: GroupCommit, backend: &'static str, writers: usize, write: W) -> Self
    where
        W: FnMut(Vec<Pending>) -> F + Clone + Send + 'static,
        F: Future<Output = bool> + Send,
    {
        let (sender, receiver) = mpsc::unbounded_channel::<Pending>();
        let counters = Arc::new(Counters::default());
        let intake = Arc::new(tokio::sync::Mutex::new(Intake {
            receiver,
            carried: None,
        }));
        for _ in 0..writers.max(1) {
            let intake = intake.clone();
            let stats = counters.clone();
            let mut write = write.clone();
            tokio::spawn(async move {
                loop {
                    // One writer at a time takes a batch; the others write theirs meanwhile.
                    let Some(batch) = intake.lock().await.next_batch(&config).await else {
                        return;
                    };
                    let n = batch.len() as u64;
                    stats.waiting.fetch_sub(n, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    stats.appends.fetch_add(n, Ordering::Relaxed);
                    stats.largest_batch.fetch_max(n, Ordering::Relaxed);
                    if write(batch).await {
                        stats.bulk_batches.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
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
            waiting: c.waiting.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            appends: c.appends.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
            bulk_batches: c.bulk_batches.load(Ordering::Relaxed),
        }
    }

    /// Queue `request` and wait for its result.
    pub(crate) async fn submit(&self, request: AppendRequest) -> CoreResult<Vec<Event>> {
        let (reply, answer) = oneshot::channel();
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(Pending { request, reply }).is_err() {
            self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(self.stopped());
        }
        answer.await.unwrap_or_else(|_| Err(self.stopped()))
    }

    fn stopped(&self) -> fluvius_core::Error {
        fluvius_core::Error::store(
            self.backend,
            "the group-commit writer stopped (its runtime shut down, or it panicked); the append \
             may or may not have been written",
            None,
        )
    }
}

/// The same failure, for every caller of a batch (errors are not `Clone`).
pub(crate) fn batch_error(
    target: &str,
    operation: &str,
    error: &sqlx::Error,
    n: usize,
) -> fluvius_core::Error {
    fluvius_core::Error::store(
        target.to_owned(),
        format!("{operation} (a group of {n} appends): {error}"),
        None,
    )
}

/// Commit a written batch and answer every caller: a refused append with its own error at
/// once, a written one (its positions in `outcomes`) once the commit returned, with the
/// commit's error if it failed. With nothing written, the transaction is rolled back.
pub(crate) async fn finish_batch<DB: sqlx::Database>(
    tx: sqlx::Transaction<'_, DB>,
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
    let mut verdicts = verdicts.into_iter();
    let mut written = written.into_iter();
    prepared
        .into_iter()
        .map(|p| {
            p.and_then(|_| verdicts.next().unwrap_or(Ok(()))).and_then(|()| {
                written.next().ok_or_else(|| {
                    fluvius_core::Error::store(
                        target.to_owned(),
                        "a bulk write lost track of an accepted append".to_owned(),
                        None,
                    )
                })
            })
        })
        .collect()
}
