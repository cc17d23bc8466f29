//! The append queue: intake, draining tasks, requests in flight, and the writer's counters.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fluvius_core::{AppendRequest, Event};
use tokio::sync::{mpsc, oneshot};

use super::{CoreResult, GroupCommit};

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
    /// [module docs](crate::group_commit)) rather than one savepoint per append.
    pub bulk_batches: u64,
    /// Appends written on the caller's own task, because nothing was queued and nobody was
    /// writing (see the [module docs](crate::group_commit)). Not counted in `appends`.
    pub alone: u64,
}

/// What a queue's draining tasks have taken so far (appends for the writer, stream reads
/// for the readers).
#[derive(Debug, Default)]
pub(super) struct BatchCounters {
    pub(super) waiting: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) taken: AtomicU64,
    pub(super) largest_batch: AtomicU64,
}

impl BatchCounters {
    /// A task took a batch of `n` requests off the queue.
    pub(super) fn took(&self, n: u64) {
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
pub(super) struct InFlight(pub(super) AtomicU64);

impl InFlight {
    /// Count one more request until the guard is dropped.
    pub(super) fn enter(&self) -> InFlightGuard<'_> {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self)
    }

    /// Count this request only if there is no other: the guard says it may run alone.
    pub(super) fn enter_alone(&self) -> Option<InFlightGuard<'_>> {
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
pub(super) struct Bounds<T> {
    pub(super) max: usize,
    pub(super) max_weight: usize,
    pub(super) weight: fn(&T) -> usize,
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
pub(super) fn drain<T, G, H, F>(
    tasks: usize,
    bounds: Bounds<T>,
    gate: G,
    handle: H,
) -> mpsc::UnboundedSender<T>
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
pub(super) async fn send_and_wait<T>(
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
