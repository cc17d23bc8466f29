//! Log-fed dispatch of committed events to handlers.
//!
//! Each handler has a stable name, a checkpoint in the store (see [`CheckpointStore`]) and its
//! own task, which reads the global log with [`read_log`](LogStore::read_log) after the
//! checkpoint, in pages, in log order — so a handler sees one aggregate's events in version
//! order, and events committed while the process was down are caught up on start.
//!
//! - **Wake-ups**: after every commit through the domain (an in-process `Notify`), on the
//!   store's append hint if it has one (PostgreSQL `LISTEN`), and every
//!   [`poll_interval`](DispatchOptions::poll_interval) — polling is the source of truth. A
//!   wake-up costs a `read_log` (and a checkpoint advance if it found events): the claim is
//!   kept across wake-ups, and a page shorter than the page size ends the pass. Commits while
//!   a page is handled wake the task once more (coalesced), none is lost.
//! - **Panics**: a handler's future runs in its handler's task, polled under
//!   `catch_unwind`: a panic is caught and counts as a failed attempt.
//! - **At-least-once**: the checkpoint moves only after the handler succeeded (or the event was
//!   parked): after every page's worth of events read (a full page, or short pages adding up
//!   to one), once the handler has caught up and no wake-up came for a few milliseconds, and
//!   within that every [`checkpoint_every`](DispatchOptions::checkpoint_every) events or
//!   [`checkpoint_interval`](DispatchOptions::checkpoint_interval); a crash delivers again what
//!   was handled since it last moved.
//! - **Retries**: a failing or panicking invocation is retried with jittered exponential
//!   backoff ([`RetryPolicy`]: the domain's default, or a handler's own, [`HandlerRetry`]);
//!   after the last attempt the event is *parked* ([`DeadLetter`]) and the handler moves on.
//!   Parked events are listed and retried through `Domain::parked` and `Domain::retry_parked`.
//! - **Poison events**: an entry of the log that cannot be decoded or upcast
//!   ([`LogEntry::Undecodable`]) is parked for each handler it may concern at once, with its
//!   error, and delivery goes on; `retry_parked` delivers it once it reads. A projection applies
//!   the events before it and stops there ([`ProjectionStatus::stopped`], an error-level log
//!   naming the position), retrying at each wake-up or poll until it reads; `wait_idle` does not
//!   wait for a stopped projection.
//! - **One instance per handler**: before reading, a task claims its handler's checkpoint with
//!   a lease ([`lease`](DispatchOptions::lease)). The holder renews it every third of the lease:
//!   by advancing the checkpoint, between events, and in the background while a handler call
//!   (or a retry backoff, or a projection page) runs — so a call longer than the lease is never
//!   taken over. Another app instance on the same database finds the claim held and waits; it
//!   takes over when the lease expires (the holder died or stalled). A holder that finds its
//!   claim lost finishes the call under way, then stops: no further attempt, nothing parked,
//!   the checkpoint not moved (the new holder delivers the event again), a warning logged, and
//!   [`HandlerStats::claims_lost`] counts it. The lease bounds how long a dead instance's
//!   handlers wait, not how long a call may take.
//!
//! A store without checkpoints ([`LogStore::checkpoints`] is `None`) gets checkpoints in
//! memory: same semantics within the process, nothing durable.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::checkpoint::{CheckpointStore, DeadLetter, MemoryCheckpointStore};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::handler::HandlerEntry;
use crate::logstore::{LogEntry, LogStore, UndecodableEntry};
use crate::name::sort_and_find_duplicate;
use crate::projection::Projection;
use crate::retry::{HandlerRetry, RetryPolicy};

/// Counters for one handler, in this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerStats {
    /// The handler's name.
    pub name: String,
    /// Invocations that returned `Ok`.
    pub succeeded: u64,
    /// Invocations that returned an error (every attempt counts).
    pub failed: u64,
    /// Invocations that panicked (every attempt counts).
    pub panicked: u64,
    /// Events given up on after the last attempt and parked as dead letters.
    pub parked: u64,
    /// Times this process found its claim on the handler lost while working on it (another
    /// instance took the handler over, or its checkpoint was reset) and stopped without moving
    /// the checkpoint.
    pub claims_lost: u64,
}

/// Where one projection is, in this process (see `Domain::projection_status`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: String,
    /// The position of the last event applied, as this process last saw it.
    pub position: u64,
    /// Set while the projection is stopped at an entry of the log it cannot read.
    pub stopped: Option<ProjectionStop>,
}

/// Why a projection stopped: the stored event after its position cannot be decoded or
/// upcast. A projection never skips an event; it retries at every poll and goes on by itself
/// once the entry reads (the row repaired, or the domain rebuilt with a fixed upcaster).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionStop {
    /// The position of the entry it cannot read.
    pub position: u64,
    /// The event's id, when it could be read.
    pub event_id: Option<uuid::Uuid>,
    /// Why it cannot be read.
    pub error: String,
}

/// Where a handler without a checkpoint starts reading the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// From the first event: a new handler sees the whole history (the default).
    #[default]
    Beginning,
    /// From the log's head when the domain is built: only events committed afterwards.
    Now,
}

/// How the dispatcher runs handlers; pass to
/// [`DomainBuilder::dispatch`](crate::DomainBuilder::dispatch).
///
/// ```
/// use std::time::Duration;
/// use fluvius_core::{DispatchOptions, HandlerRetry, StartFrom};
/// let options = DispatchOptions::default()
///     .poll_interval(Duration::from_millis(200))
///     // Five attempts for this one, with the default backoff.
///     .handler_retry("send-welcome-email", HandlerRetry::attempts(5))
///     .handler_start("audit-export", StartFrom::Now);
/// assert_eq!(options.retry_for("send-welcome-email").max_attempts, 5);
/// assert_eq!(options.retry_for("audit-export").max_attempts, 3, "the default");
/// ```
#[derive(Clone, Debug)]
pub struct DispatchOptions {
    poll_interval: Duration,
    page_size: usize,
    checkpoint_events: usize,
    checkpoint_interval: Duration,
    lease: Duration,
    instance_id: String,
    retry: RetryPolicy,
    start: StartFrom,
    per_handler: HashMap<String, (HandlerRetry, Option<StartFrom>)>,
}

impl Default for DispatchOptions {
    /// Poll every 500 ms, pages of 256 events, checkpoints moved after each page's worth of
    /// events (or once caught up) and at least every second, 30 s leases, a random instance id, 3 attempts per event with backoff from
    /// 50 ms to 2 s, new handlers start from the beginning.
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            page_size: 256,
            checkpoint_events: usize::MAX,
            checkpoint_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            instance_id: uuid::Uuid::new_v4().to_string(),
            retry: RetryPolicy {
                max_attempts: 3,
                base_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
            },
            start: StartFrom::Beginning,
            per_handler: HashMap::new(),
        }
    }
}

impl DispatchOptions {
    /// How often an idle handler looks at the log without a wake-up (default 500 ms). An idle
    /// handler also renews its claim this often, so the wait is capped at a third of the
    /// [`lease`](Self::lease).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many events one `read_log` fetches (default 256).
    pub fn page_size(mut self, size: usize) -> Self {
        self.page_size = size.max(1);
        self
    }

    /// Move a handler's checkpoint after every `events` events it handled (at least 1), not
    /// only after each page's worth. A crash delivers again what was handled since the
    /// checkpoint last moved (and the event in flight): this bounds it to `events`, for a
    /// checkpoint write every `events` events. By default the checkpoint moves after each
    /// page's worth of events read (a full page, or short pages adding up to one; under steady
    /// load a wake-up often finds only a few events), once the handler has caught up and no
    /// wake-up came for a few milliseconds, and at least every
    /// [`checkpoint_interval`](Self::checkpoint_interval): a fast handler pays one write per
    /// page's worth, not one per wake-up.
    ///
    /// ```
    /// use fluvius_core::DispatchOptions;
    /// // Side effects that are costly to repeat: at most one event is delivered again.
    /// let options = DispatchOptions::default().checkpoint_every(1);
    /// # drop(options);
    /// ```
    pub fn checkpoint_every(mut self, events: usize) -> Self {
        self.checkpoint_events = events.max(1);
        self
    }

    /// Move a handler's checkpoint at least this often while it works (default 1 s), so that a
    /// crash during a long page, or under steady load, delivers again at most this much work.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// How long a claim on a handler's checkpoint lasts without renewal (default 30 s): after
    /// an instance dies, another takes over its handlers within this time. The holder renews
    /// its claims every third of it, also while a handler call runs, so a call may take longer
    /// than the lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(10));
        self
    }

    /// This instance's name as a checkpoint owner (default: a random UUID).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// The retry policy of every handler without its own: how many attempts an event gets,
    /// and the backoff between them, before it is parked. A handler's own policy
    /// ([`DomainBuilder::handler_with_retry`](crate::DomainBuilder::handler_with_retry),
    /// `#[event_handler("…", max_attempts = 5)]`) overrides the settings it gives.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Where every handler without a checkpoint (and without its own setting) starts.
    pub fn start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// The retry policy of one handler or projection, by name: a whole [`RetryPolicy`], or
    /// some settings ([`HandlerRetry`]). It overrides the handler's own policy (from
    /// [`DomainBuilder::handler_with_retry`](crate::DomainBuilder::handler_with_retry) or
    /// `#[event_handler]`) setting by setting, and the default ([`retry`](Self::retry)).
    pub fn handler_retry(mut self, handler: &str, retry: impl Into<HandlerRetry>) -> Self {
        self.per_handler.entry(handler.to_owned()).or_default().0 = retry.into();
        self
    }

    /// Where one handler starts if it has no checkpoint yet. (A name that matches no handler or
    /// projection of the domain makes [`DomainBuilder::build`](crate::DomainBuilder::build)
    /// fail, as it does for [`handler_retry`](Self::handler_retry).)
    pub fn handler_start(mut self, handler: &str, start: StartFrom) -> Self {
        self.per_handler.entry(handler.to_owned()).or_default().1 = Some(start);
        self
    }

    /// The retry policy these options give `handler`: what was set for its name over the
    /// default. A handler with a policy of its own gets [`retry_with`](Self::retry_with).
    pub fn retry_for(&self, handler: &str) -> RetryPolicy {
        self.retry_with(handler, HandlerRetry::new())
    }

    /// The retry policy of `handler` whose own policy is `own`: what was set for its name, over
    /// `own`, over the default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fluvius_core::{DispatchOptions, HandlerRetry, RetryPolicy};
    /// let options = DispatchOptions::default()
    ///     .retry(RetryPolicy::attempts(3))
    ///     .handler_retry("billing", HandlerRetry::attempts(10));
    /// let own = HandlerRetry::attempts(5).base_backoff(Duration::from_millis(100));
    /// assert_eq!(options.retry_with("mailer", own).max_attempts, 5, "its own beats the default");
    /// let billing = options.retry_with("billing", own);
    /// assert_eq!(billing.max_attempts, 10, "the options' word on this name beats its own");
    /// assert_eq!(billing.base_backoff, Duration::from_millis(100), "its own beats the default");
    /// ```
    pub fn retry_with(&self, handler: &str, own: HandlerRetry) -> RetryPolicy {
        self.per_handler
            .get(handler)
            .map_or(own, |h| h.0.or(own))
            .over(self.retry)
    }

    /// Where `handler` starts if it has no checkpoint.
    pub fn start_for(&self, handler: &str) -> StartFrom {
        self.per_handler
            .get(handler)
            .and_then(|h| h.1)
            .unwrap_or(self.start)
    }
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    parked: AtomicU64,
    claims_lost: AtomicU64,
}

/// The checkpoints in use: the store's own, or a private in-memory set.
#[derive(Clone)]
struct Checkpoints {
    store: Arc<dyn LogStore>,
    fallback: Option<Arc<MemoryCheckpointStore>>,
}

impl Checkpoints {
    fn get(&self) -> &dyn CheckpointStore {
        match &self.fallback {
            Some(memory) => memory.as_ref(),
            None => self
                .store
                .checkpoints()
                .expect("a store that reported checkpoints keeps them"),
        }
    }
}

/// What a worker task and the domain share about one handler.
struct Worker {
    entry: HandlerEntry,
    retry: RetryPolicy,
    start: u64,
    counters: Counters,
    /// The checkpoint as this process last saw it.
    progress: watch::Sender<u64>,
    /// Set by a reset through this domain: the task drops its claim and claims again, which
    /// reads the checkpoint where the reset put it.
    reclaim: AtomicBool,
}

/// What a projection task and the domain share about one projection.
struct ProjectionWorker {
    projection: Arc<dyn Projection>,
    name: String,
    retry: RetryPolicy,
    /// Held while applying a page, and by a rebuild.
    busy: tokio::sync::Mutex<()>,
    progress: watch::Sender<u64>,
    /// The unreadable entry the projection stopped at, while it stays unreadable.
    stopped: std::sync::Mutex<Option<ProjectionStop>>,
}

impl ProjectionWorker {
    /// Record what the last read found: the unreadable entry the projection stops at, or
    /// none (a stop before is over). A new stop is logged at error level, and wakes
    /// `wait_idle` (which does not wait for a stopped projection).
    fn stopped_at(&self, bad: Option<UndecodableEntry>) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        match bad {
            None => {
                if let Some(was) = stopped.take() {
                    tracing::info!(projection = %self.name, position = was.position, "projection resumed past the entry it had stopped at");
                }
            }
            Some(bad) => {
                let error = bad.error.to_string();
                if stopped
                    .as_ref()
                    .is_none_or(|s| s.position != bad.position || s.error != error)
                {
                    tracing::error!(
                        projection = %self.name,
                        position = bad.position,
                        event_id = ?bad.event_id,
                        error = %error,
                        "projection stopped: the stored event at this position cannot be read; \
                         it resumes once the row or the upcaster is fixed"
                    );
                }
                *stopped = Some(ProjectionStop {
                    position: bad.position,
                    event_id: bad.event_id,
                    error,
                });
                drop(stopped);
                self.progress.send_modify(|_| {});
            }
        }
    }

    fn stop(&self) -> Option<ProjectionStop> {
        self.stopped.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Shared {
    store: Arc<dyn LogStore>,
    checkpoints: Checkpoints,
    wake: Arc<Notify>,
    owner: String,
    poll_interval: Duration,
    page_size: usize,
    checkpoint_events: usize,
    checkpoint_interval: Duration,
    lease: Duration,
}

pub(crate) struct Dispatcher {
    workers: Vec<Arc<Worker>>,
    projections: Vec<Arc<ProjectionWorker>>,
    shared: Arc<Shared>,
    /// The highest position committed through this domain.
    committed: AtomicU64,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Dispatcher {
    /// Stop the handler tasks and, if a runtime is still there, release their claims so
    /// another instance need not wait for the leases to expire.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if self.workers.is_empty() && self.projections.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            let names: Vec<String> = self
                .workers
                .iter()
                .map(|w| w.entry.name.clone())
                .chain(self.projections.iter().map(|p| p.name.clone()))
                .collect();
            runtime.spawn(async move {
                for name in names {
                    if let Err(e) = shared.checkpoints.get().release(&name, &shared.owner).await {
                        tracing::debug!(handler = %name, error = %e, "cannot release the claim");
                    }
                }
            });
        }
    }
}

impl Dispatcher {
    /// Start one task per handler. Must run inside a tokio runtime when there are handlers.
    pub(crate) async fn start(
        entries: Vec<HandlerEntry>,
        projections: Vec<Arc<dyn Projection>>,
        store: Arc<dyn LogStore>,
        options: DispatchOptions,
    ) -> Result<Self> {
        let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        names.extend(projections.iter().map(|p| p.name()));
        if let Some((name, _)) = sort_and_find_duplicate(&mut names, |n| n) {
            return Err(Error::Config(format!(
                "`{name}` names two handlers or projections: names must be unique"
            )));
        }
        // A setting for a name no handler has is a typo (or a handler that was removed):
        // refuse it rather than silently run the real handler with the defaults.
        let mut unknown: Vec<&str> = options
            .per_handler
            .keys()
            .map(String::as_str)
            .filter(|name| names.binary_search(name).is_err())
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(Error::Config(format!(
                "dispatch options name {} but this domain has no handler or projection of that name \
                 (it has: {})",
                unknown
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )));
        }
        let checkpoints = Checkpoints {
            fallback: store
                .checkpoints()
                .is_none()
                .then(|| Arc::new(MemoryCheckpointStore::new())),
            store: store.clone(),
        };
        let shared = Arc::new(Shared {
            store: store.clone(),
            checkpoints,
            wake: Arc::new(Notify::new()),
            owner: options.instance_id.clone(),
            poll_interval: options.poll_interval.min(options.lease / 3),
            page_size: options.page_size,
            checkpoint_events: options.checkpoint_events,
            checkpoint_interval: options.checkpoint_interval,
            lease: options.lease,
        });
        let now_head = if entries
            .iter()
            .any(|e| options.start_for(&e.name) == StartFrom::Now)
        {
            store.head_position().await?
        } else {
            0
        };
        let mut tasks = Vec::new();
        let workers: Vec<Arc<Worker>> = entries
            .into_iter()
            .map(|entry| {
                let start = match options.start_for(&entry.name) {
                    StartFrom::Beginning => 0,
                    StartFrom::Now => now_head,
                };
                Arc::new(Worker {
                    retry: options.retry_with(&entry.name, entry.retry),
                    entry,
                    start,
                    counters: Counters::default(),
                    progress: watch::Sender::new(0),
                    reclaim: AtomicBool::new(false),
                })
            })
            .collect();
        let projections: Vec<Arc<ProjectionWorker>> = projections
            .into_iter()
            .map(|projection| {
                Arc::new(ProjectionWorker {
                    name: projection.name().to_owned(),
                    retry: options.retry_for(projection.name()),
                    projection,
                    busy: tokio::sync::Mutex::new(()),
                    progress: watch::Sender::new(0),
                    stopped: std::sync::Mutex::new(None),
                })
            })
            .collect();
        if !workers.is_empty() || !projections.is_empty() {
            if let Some(hints) = shared.checkpoints.get().append_hints(shared.wake.clone()) {
                tasks.push(tokio::spawn(hints));
            }
            for worker in &workers {
                tasks.push(tokio::spawn(run_worker(worker.clone(), shared.clone())));
            }
            for projection in &projections {
                tasks.push(tokio::spawn(run_projection(projection.clone(), shared.clone())));
            }
        }
        Ok(Self {
            workers,
            projections,
            shared,
            committed: AtomicU64::new(0),
            tasks,
        })
    }

    /// Events were committed through the domain: wake the handlers.
    pub(crate) fn dispatch(&self, events: &[Event]) {
        if let Some(last) = events.iter().map(|e| e.position).max() {
            self.committed.fetch_max(last, Ordering::SeqCst);
        }
        let has_followers = !self.workers.is_empty() || !self.projections.is_empty();
        if has_followers && !events.is_empty() {
            self.shared.wake.notify_waiters();
        }
    }

    /// Wait until every handler's checkpoint has reached the log's head as of the call (and
    /// every event committed through this domain before the call).
    pub(crate) async fn wait_idle(&self) {
        if self.workers.is_empty() && self.projections.is_empty() {
            return;
        }
        let committed = self.committed.load(Ordering::SeqCst);
        let head = match self.shared.store.head_position().await {
            Ok(head) => head.max(committed),
            Err(e) => {
                tracing::warn!(error = %e, "wait_idle: cannot read the log head; waiting for this domain's commits only");
                committed
            }
        };
        let followers = self
            .workers
            .iter()
            .map(|w| (w.entry.name.as_str(), &w.progress, None))
            .chain(
                self.projections
                    .iter()
                    .map(|p| (p.name.as_str(), &p.progress, Some(p))),
            );
        for (name, progress, projection) in followers {
            let mut progress = progress.subscribe();
            loop {
                if *progress.borrow_and_update() >= head {
                    break;
                }
                // A stopped projection does not move until its entry is fixed: do not wait
                // for it (`projection_status` says why it stopped).
                if projection.is_some_and(|p| p.stop().is_some()) {
                    break;
                }
                tokio::select! {
                    _ = progress.changed() => {}
                    _ = tokio::time::sleep(self.shared.poll_interval) => {
                        // Another instance may hold it: look at the stored checkpoint.
                        let stored = self.shared.checkpoints.get().checkpoint(name).await;
                        if matches!(stored, Ok(Some(p)) if p >= head) {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Clear a projection's read model and replay the log into it (the replay runs in the
    /// background; `wait_idle` waits for it).
    pub(crate) async fn rebuild(&self, projection: &str) -> Result<()> {
        let worker = self
            .projections
            .iter()
            .find(|p| p.name == projection)
            .ok_or_else(|| Error::Config(format!("no projection named `{projection}` in this domain")))?;
        let busy = worker.busy.lock().await;
        worker.projection.clear().await?;
        *worker.stopped.lock().unwrap_or_else(|e| e.into_inner()) = None;
        worker.progress.send_replace(0);
        drop(busy);
        self.shared.wake.notify_waiters();
        Ok(())
    }

    pub(crate) fn stats(&self) -> Vec<HandlerStats> {
        self.workers
            .iter()
            .map(|w| HandlerStats {
                name: w.entry.name.clone(),
                succeeded: w.counters.succeeded.load(Ordering::Relaxed),
                failed: w.counters.failed.load(Ordering::Relaxed),
                panicked: w.counters.panicked.load(Ordering::Relaxed),
                parked: w.counters.parked.load(Ordering::Relaxed),
                claims_lost: w.counters.claims_lost.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub(crate) fn projection_status(&self) -> Vec<ProjectionStatus> {
        self.projections
            .iter()
            .map(|p| ProjectionStatus {
                name: p.name.clone(),
                position: *p.progress.borrow(),
                stopped: p.stop(),
            })
            .collect()
    }

    pub(crate) fn handler_names(&self) -> impl Iterator<Item = &str> {
        self.workers.iter().map(|w| w.entry.name.as_str())
    }

    fn worker(&self, handler: &str) -> Result<&Arc<Worker>> {
        self.workers
            .iter()
            .find(|w| w.entry.name == handler)
            .ok_or_else(|| Error::Config(format!("no handler named `{handler}` in this domain")))
    }

    /// The stored checkpoint of a handler.
    pub(crate) async fn checkpoint(&self, handler: &str) -> Result<Option<u64>> {
        self.worker(handler)?;
        self.shared.checkpoints.get().checkpoint(handler).await
    }

    /// The parked events of one handler, or of all.
    pub(crate) async fn parked(&self, handler: Option<&str>) -> Result<Vec<DeadLetter>> {
        self.shared.checkpoints.get().parked(handler).await
    }

    /// Run a parked event through its handler once more: on success it is unparked (`true`);
    /// on failure it stays parked with the new error and attempt count (`false`).
    pub(crate) async fn retry_parked(&self, handler: &str, position: u64) -> Result<bool> {
        let worker = self.worker(handler)?;
        let cps = self.shared.checkpoints.get();
        let letter = cps
            .parked(Some(handler))
            .await?
            .into_iter()
            .find(|l| l.position == position)
            .ok_or_else(|| Error::Config(format!("no event parked at {position} for `{handler}`")))?;
        // A letter parked for a row whose id could not be read has the nil id.
        let entry = self
            .shared
            .store
            .read_log(position.saturating_sub(1), 1)
            .await?
            .into_iter()
            .find(|e| match e {
                LogEntry::Decoded(e) => {
                    e.position == position && (letter.event_id.is_nil() || e.id == letter.event_id)
                }
                LogEntry::Undecodable(bad) => bad.position == position,
            })
            .ok_or_else(|| {
                Error::store(
                    self.shared.store.backend(),
                    format!("parked event {} at {position} is not in the log", letter.event_id),
                    None,
                )
            })?;
        let attempt = letter.attempts + 1;
        let outcome = match entry {
            LogEntry::Decoded(event) => invoke_once(worker, Arc::new(event), attempt).await,
            // Still unreadable: it stays parked, with the error as it is now.
            LogEntry::Undecodable(bad) => Err(bad.error.to_string()),
        };
        match outcome {
            Ok(()) => cps.unpark(handler, position).await.map(|_| true),
            Err(error) => {
                cps.park(DeadLetter {
                    attempts: attempt,
                    error,
                    parked_at: crate::clock::now(),
                    ..letter
                })
                .await?;
                Ok(false)
            }
        }
    }

    /// Move a handler's checkpoint (0 replays the whole log to it).
    pub(crate) async fn reset(&self, handler: &str, position: u64) -> Result<()> {
        let worker = self.worker(handler)?;
        self.shared.checkpoints.get().reset(handler, position).await?;
        worker.reclaim.store(true, Ordering::SeqCst);
        worker.progress.send_replace(position);
        self.shared.wake.notify_waiters();
        Ok(())
    }
}

/// This instance's claim on a follower's checkpoint, kept alive by time.
///
/// It is renewed once a third of the lease has passed since it was taken or last renewed (a
/// checkpoint advance renews it too): between events, and in the background while a handler
/// call, a retry backoff or a projection page runs ([`Claim::keep`]), so that work longer than
/// the lease is never taken over by another instance. Once found lost (another instance took
/// over, or the checkpoint was reset) it stays lost: the follower stops without moving the
/// checkpoint, and claims again.
struct Claim<'a> {
    shared: &'a Shared,
    name: &'a str,
    /// Where a handler without a checkpoint starts (claiming creates it there).
    start: u64,
    /// For a handler, the checkpoint as this holder stored it: the claim is kept only while the
    /// checkpoint stays there. `None` for a projection, which keeps its own position.
    at: Option<u64>,
    /// When the next renewal is due.
    due: Instant,
    lost: bool,
    /// Counts the claims found lost (a handler's [`HandlerStats::claims_lost`]).
    losses: Option<&'a AtomicU64>,
}

impl<'a> Claim<'a> {
    /// A projection's claim, taken by a request sent at `asked`.
    fn projection(shared: &'a Shared, name: &'a str, asked: Instant) -> Self {
        Self {
            shared,
            name,
            start: 0,
            at: None,
            due: asked + shared.lease / 3,
            lost: false,
            losses: None,
        }
    }

    /// A handler's claim, taken by a request sent at `asked`, with its checkpoint at `at`.
    fn handler(shared: &'a Shared, worker: &'a Worker, asked: Instant, at: u64) -> Self {
        Self {
            start: worker.start,
            at: Some(at),
            losses: Some(&worker.counters.claims_lost),
            ..Self::projection(shared, &worker.entry.name, asked)
        }
    }

    fn is_lost(&self) -> bool {
        self.lost
    }

    /// Record the outcome of a renewal or an advance sent at `asked`. The store measures the
    /// new lease from when it got the request, no earlier than `asked`: the next renewal is
    /// due a third of the lease after `asked`.
    fn settle(&mut self, asked: Instant, kept: bool) {
        if kept {
            self.due = asked + self.shared.lease / 3;
        } else {
            self.lost = true;
            if let Some(losses) = self.losses {
                losses.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(follower = self.name, "lost the claim on the checkpoint");
        }
    }

    /// Claim again, which renews the lease if this instance still holds it. On an error the
    /// next try is due a little later.
    async fn renew(&mut self) -> Result<()> {
        let cps = self.shared.checkpoints.get();
        let asked = Instant::now();
        match cps
            .claim(self.name, &self.shared.owner, self.start, self.shared.lease)
            .await
        {
            Ok(position) => {
                self.settle(
                    asked,
                    position.is_some() && (self.at.is_none() || position == self.at),
                );
                Ok(())
            }
            Err(e) => {
                self.due = Instant::now() + self.shared.lease / 12;
                Err(e)
            }
        }
    }

    /// Renew if it is due. Whether the claim is still held.
    async fn renew_if_due(&mut self) -> Result<bool> {
        if !self.lost && Instant::now() >= self.due {
            self.renew().await?;
        }
        Ok(!self.lost)
    }

    /// On an idle poll: renew if it is due; otherwise check that the stored checkpoint is still
    /// where this holder put it (another instance may have reset it). Whether the claim is
    /// still good to follow the log with; if not, the caller claims again.
    async fn verify(&mut self) -> Result<bool> {
        if self.lost {
            return Ok(false);
        }
        if Instant::now() >= self.due {
            self.renew().await?;
            return Ok(!self.lost);
        }
        match self.at {
            Some(at) => Ok(self.shared.checkpoints.get().checkpoint(self.name).await? == Some(at)),
            None => Ok(true),
        }
    }

    /// Move a handler's checkpoint from `from` to `to` (renewing the claim). Whether the claim
    /// is still held; if not, nothing moved.
    async fn advance(&mut self, from: u64, to: u64) -> Result<bool> {
        if self.lost {
            return Ok(false);
        }
        let cps = self.shared.checkpoints.get();
        let asked = Instant::now();
        let kept = cps
            .advance(self.name, &self.shared.owner, from, to, self.shared.lease)
            .await?;
        if kept {
            self.at = Some(to);
        }
        self.settle(asked, kept);
        Ok(kept)
    }

    /// Run `work` to its end, renewing the claim whenever it is due meanwhile. A renewal that
    /// fails is tried again; one that finds the claim lost is logged and not tried again (the
    /// caller checks [`is_lost`](Self::is_lost) afterwards).
    async fn keep<F: Future>(&mut self, work: F) -> F::Output {
        tokio::pin!(work);
        // Most work (a fast handler's call) is done at its first poll: no timer for it.
        if let Poll::Ready(output) = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
            return output;
        }
        loop {
            if self.lost {
                return work.await;
            }
            tokio::select! {
                biased;
                output = &mut work => return output,
                () = tokio::time::sleep_until(self.due.into()) => {
                    match self.renew().await {
                        Ok(()) if self.lost => tracing::warn!(
                            follower = self.name,
                            "lost the claim while working (another instance took over, or the \
                             checkpoint was reset): the checkpoint will not move"
                        ),
                        Ok(()) => {}
                        Err(e) => tracing::warn!(
                            follower = self.name,
                            error = %e,
                            "cannot renew the claim while working; trying again"
                        ),
                    }
                }
            }
        }
    }
}

async fn run_projection(worker: Arc<ProjectionWorker>, shared: Arc<Shared>) {
    let name = worker.name.as_str();
    let cps = shared.checkpoints.get();
    let notified = shared.wake.notified();
    tokio::pin!(notified);
    // The claim held since an earlier cycle, while it stays held.
    let mut held: Option<Claim<'_>> = None;
    loop {
        notified.set(shared.wake.notified());
        notified.as_mut().enable();
        if held.as_ref().is_none_or(Claim::is_lost) {
            held = None;
            let asked = Instant::now();
            match cps.claim(name, &shared.owner, 0, shared.lease).await {
                Ok(Some(_)) => held = Some(Claim::projection(&shared, name, asked)),
                Ok(None) => {}
                Err(e) => tracing::warn!(projection = name, error = %e, "cannot claim the projection"),
            }
        }
        if let Some(claim) = held.as_mut() {
            if let Err(e) = follow(&worker, &shared, claim).await {
                tracing::warn!(projection = name, error = %e, "projection stopped; retrying later");
                held = None;
            }
        }
        pause(notified.as_mut(), shared.poll_interval).await;
    }
}

/// Apply pages until the log is exhausted (or the claim is lost), each with retries.
async fn follow(worker: &ProjectionWorker, shared: &Shared, claim: &mut Claim<'_>) -> Result<()> {
    let name = worker.name.as_str();
    let _busy = worker.busy.lock().await;
    let mut position = worker.projection.position().await?;
    worker.progress.send_replace(position);
    loop {
        if !claim.renew_if_due().await? {
            return Ok(());
        }
        let entries = shared.store.read_log(position, shared.page_size).await?;
        let short = entries.len() < shared.page_size;
        // A projection must not skip: it applies the events before an unreadable entry, and
        // stops there until the entry reads (the row or the upcaster was fixed).
        let mut page = Vec::with_capacity(entries.len());
        let mut stop = None;
        for entry in entries {
            match entry {
                LogEntry::Decoded(event) => page.push(event),
                LogEntry::Undecodable(bad) => {
                    stop = Some(bad);
                    break;
                }
            }
        }
        let Some(last) = page.last().map(|e| e.position) else {
            worker.stopped_at(stop);
            return Ok(());
        };
        let max = worker.retry.max_attempts.max(1);
        let apply = async {
            let mut attempt = 1;
            loop {
                let span = tracing::info_span!(
                    "fluvius.projection",
                    projection = name,
                    from = position,
                    to = last,
                    events = page.len(),
                    attempt,
                );
                match worker.projection.apply(position, &page).instrument(span).await {
                    Ok(()) => return Ok(()),
                    Err(e) if attempt < max => {
                        tracing::warn!(projection = name, attempt, error = %e, "projection page failed; retrying");
                        tokio::time::sleep(worker.retry.backoff(attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        // The projection moves its own position with the page: once applied, it counts.
        claim.keep(apply).await?;
        position = last;
        worker.progress.send_replace(position);
        let stopped = stop.is_some();
        worker.stopped_at(stop);
        // A short page was the end of the log when read; what was committed since woke the
        // task (or the next poll finds it).
        if claim.is_lost() || short || stopped {
            return Ok(());
        }
    }
}

/// Wait for a wake-up or the poll interval; whether it was a wake-up.
async fn pause(notified: Pin<&mut tokio::sync::futures::Notified<'_>>, poll: Duration) -> bool {
    tokio::select! {
        _ = notified => true,
        _ = tokio::time::sleep(poll) => false,
    }
}

/// How long a handler that caught up waits for more events before it moves its checkpoint
/// over what it handled in short pages (capped by the checkpoint interval and the poll
/// interval): under steady load, the checkpoint moves once per page's worth of events rather
/// than once per wake-up.
const LINGER: Duration = Duration::from_millis(5);

/// A handler's task: claim its checkpoint, follow the log, and keep the claim across wake-ups
/// while it stays held, so that a wake-up costs a read (and, if it found events, an advance)
/// and no claim round trip; the claim is renewed when due (every third of the lease).
///
/// The next wake-up is armed before the log is read: a commit while a page is handled wakes
/// the task once more (several coalesce into one), and none is lost.
async fn run_worker(worker: Arc<Worker>, shared: Arc<Shared>) {
    let name = worker.entry.name.as_str();
    let cps = shared.checkpoints.get();
    let linger = LINGER.min(shared.checkpoint_interval).min(shared.poll_interval);
    let notified = shared.wake.notified();
    tokio::pin!(notified);
    // The claim held since an earlier cycle, while it stays held, and how far the handler got.
    let mut held: Option<(Claim<'_>, Cursor)> = None;
    // Whether this cycle follows a wake-up (rather than an idle poll).
    let mut woken = true;
    loop {
        notified.set(shared.wake.notified());
        notified.as_mut().enable();
        if worker.reclaim.swap(false, Ordering::SeqCst) {
            held = None;
        }
        if let (Some((claim, _)), false) = (held.as_mut(), woken) {
            // An idle poll: a reset by another instance shows only in the store (a busy
            // holder finds it at its next advance). One read, unless a renewal is due.
            match claim.verify().await {
                Ok(true) => {}
                Ok(false) => held = None,
                Err(e) => {
                    tracing::warn!(handler = name, error = %e, "cannot read the handler's checkpoint");
                    held = None;
                }
            }
        }
        if held.as_ref().is_none_or(|(claim, _)| claim.is_lost()) {
            held = None;
            let asked = Instant::now();
            match cps.claim(name, &shared.owner, worker.start, shared.lease).await {
                Ok(Some(position)) => {
                    worker.progress.send_replace(position);
                    held = Some((
                        Claim::handler(&shared, &worker, asked, position),
                        Cursor::at(position),
                    ));
                }
                // Another instance holds this handler.
                Ok(None) => {}
                Err(e) => tracing::warn!(handler = name, error = %e, "cannot claim the handler's checkpoint"),
            }
        }
        let mut unflushed = false;
        if let Some((claim, cursor)) = held.as_mut() {
            match drain(&worker, &shared, claim, cursor).await {
                Ok(()) if claim.is_lost() => held = None,
                Ok(()) => unflushed = claim.at.is_some_and(|at| cursor.seen > at),
                Err(e) => {
                    tracing::warn!(handler = name, error = %e, "handler dispatch interrupted");
                    // Claim again: that reads the checkpoint where it is.
                    held = None;
                }
            }
        }
        if unflushed {
            if pause(notified.as_mut(), linger).await {
                woken = true;
                continue;
            }
            // Caught up and nothing new: move the checkpoint over the short pages handled.
            if let Some((claim, cursor)) = held.as_mut() {
                let to = cursor.seen;
                match cursor.flush(&worker, claim, to).await {
                    Ok(true) => {}
                    Ok(false) => held = None,
                    Err(e) => {
                        tracing::warn!(handler = name, error = %e, "cannot move the handler's checkpoint");
                        held = None;
                    }
                }
            }
        }
        woken = pause(notified.as_mut(), shared.poll_interval).await;
    }
}

/// How far a handler got since its checkpoint last moved.
struct Cursor {
    /// The last position handled (or passed over, not selected).
    seen: u64,
    /// Events handled since the checkpoint last moved (for `checkpoint_every`).
    handled: usize,
    /// Events read since the checkpoint last moved, selected or not.
    read: usize,
    /// When the checkpoint last moved (or the claim was taken).
    flushed: Instant,
}

impl Cursor {
    fn at(position: u64) -> Self {
        Self {
            seen: position,
            handled: 0,
            read: 0,
            flushed: Instant::now(),
        }
    }

    /// Move the checkpoint to `to` (if it is not there yet). Whether the claim is still held;
    /// if not, nothing moved.
    async fn flush(&mut self, worker: &Worker, claim: &mut Claim<'_>, to: u64) -> Result<bool> {
        if let Some(stored) = claim.at.filter(|&stored| to > stored) {
            if !claim.advance(stored, to).await? {
                return Ok(false);
            }
            worker.progress.send_replace(to);
        }
        (self.flushed, self.handled, self.read) = (Instant::now(), 0, 0);
        Ok(true)
    }
}

/// Process pages from where the handler got until the log is exhausted: a page shorter than
/// the page size was its end when read (what was committed since wakes the task again).
/// Returns early (Ok) if the claim was lost, without moving the checkpoint.
///
/// The checkpoint moves after every page's worth of events read (a full page, or short pages
/// adding up to one), after every
/// [`checkpoint_every`](DispatchOptions::checkpoint_every) events handled, and once
/// [`checkpoint_interval`](DispatchOptions::checkpoint_interval) has passed since it last
/// moved; what short pages handled since is flushed by the caller once no wake-up came for a
/// moment ([`LINGER`]). A crash delivers again at most that much, and a fast handler pays one
/// checkpoint write per page's worth rather than per event or per wake-up.
async fn drain(worker: &Worker, shared: &Shared, claim: &mut Claim<'_>, cursor: &mut Cursor) -> Result<()> {
    loop {
        if !claim.renew_if_due().await? {
            return Ok(());
        }
        let page = shared.store.read_log(cursor.seen, shared.page_size).await?;
        let short = page.len() < shared.page_size;
        let Some(last) = page.last().map(LogEntry::position) else {
            return Ok(());
        };
        cursor.read += page.len();
        for entry in page {
            // An entry whose key cannot be read may be for any handler: it is parked for each.
            let key = match &entry {
                LogEntry::Decoded(event) => Some(event.key.as_str()),
                LogEntry::Undecodable(bad) => bad.key.as_deref(),
            };
            if key.is_some_and(|key| !worker.entry.pattern.matches(key)) {
                continue;
            }
            if !claim.renew_if_due().await? {
                return Ok(());
            }
            let position = entry.position();
            match entry {
                LogEntry::Decoded(event) => deliver(worker, shared, claim, Arc::new(event)).await?,
                LogEntry::Undecodable(bad) => park_undecodable(worker, shared, claim, &bad).await?,
            }
            if claim.is_lost() {
                return Ok(());
            }
            cursor.seen = position;
            cursor.handled += 1;
            if (cursor.handled >= shared.checkpoint_events
                || cursor.flushed.elapsed() >= shared.checkpoint_interval)
                && !cursor.flush(worker, claim, position).await?
            {
                return Ok(());
            }
        }
        // The rest of the page: events not selected.
        cursor.seen = last;
        if (cursor.read >= shared.page_size || cursor.flushed.elapsed() >= shared.checkpoint_interval)
            && !cursor.flush(worker, claim, last).await?
        {
            return Ok(());
        }
        if short {
            return Ok(());
        }
    }
}

/// Run the handler on one event with retries, keeping the claim meanwhile; park it after the
/// last attempt. Stops early, parking nothing, if the claim is lost (the new holder delivers
/// the event again). Errors only when the event could not be parked (the checkpoint must not
/// move then).
async fn deliver(worker: &Worker, shared: &Shared, claim: &mut Claim<'_>, event: Arc<Event>) -> Result<()> {
    let max = worker.retry.max_attempts.max(1);
    let mut last_error = String::new();
    for attempt in 1..=max {
        match claim.keep(invoke_once(worker, event.clone(), attempt)).await {
            Ok(()) => return Ok(()),
            Err(e) => last_error = e,
        }
        if claim.is_lost() {
            return Ok(());
        }
        if attempt < max {
            claim
                .keep(tokio::time::sleep(worker.retry.backoff(attempt)))
                .await;
        }
    }
    if claim.is_lost() {
        return Ok(());
    }
    let letter = DeadLetter {
        handler: worker.entry.name.clone(),
        position: event.position,
        event_id: event.id,
        event_key: event.key.to_string(),
        attempts: max,
        error: last_error,
        parked_at: crate::clock::now(),
    };
    claim.keep(shared.checkpoints.get().park(letter)).await?;
    worker.counters.parked.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        handler = %worker.entry.name,
        event_key = %event.key,
        position = event.position,
        attempts = max,
        "event parked after the last attempt"
    );
    Ok(())
}

/// Park an entry that cannot be decoded or upcast for the handler, at once (trying it again
/// cannot help until the row or the upcaster is fixed; then `retry_parked` delivers it), so
/// that delivery goes on with the next event. Errors only when it could not be parked.
async fn park_undecodable(
    worker: &Worker,
    shared: &Shared,
    claim: &mut Claim<'_>,
    bad: &UndecodableEntry,
) -> Result<()> {
    let letter = DeadLetter {
        handler: worker.entry.name.clone(),
        position: bad.position,
        event_id: bad.event_id.unwrap_or_default(),
        event_key: bad.key.clone().unwrap_or_default(),
        attempts: 1,
        error: bad.error.to_string(),
        parked_at: crate::clock::now(),
    };
    claim.keep(shared.checkpoints.get().park(letter)).await?;
    worker.counters.parked.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        handler = %worker.entry.name,
        position = bad.position,
        event_id = ?bad.event_id,
        error = %bad.error,
        "stored event cannot be read: parked for the handler"
    );
    Ok(())
}

/// A future that turns a panic while polling `F` into `Err(payload)`, so that a handler runs
/// in the dispatcher's task (no task spawned per call) and its panic is still caught. After a
/// panic the inner future is dropped (a panic while dropping it is caught too) and never
/// polled again, so nothing observes state the panic left half-updated.
struct CatchUnwind<F> {
    inner: Option<F>,
}

impl<F> CatchUnwind<F> {
    fn new(inner: F) -> Self {
        Self { inner: Some(inner) }
    }
}

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(Box::new("polled after completion")));
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.inner = None;
                Poll::Ready(Ok(output))
            }
            Err(payload) => {
                let inner = self.inner.take();
                let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(inner)));
                Poll::Ready(Err(payload))
            }
        }
    }
}

/// One invocation, counted and traced; a panic (while making or polling the handler's future)
/// is caught and reported as a failure.
async fn invoke_once(worker: &Worker, event: Arc<Event>, attempt: u32) -> std::result::Result<(), String> {
    let span = tracing::info_span!(
        "fluvius.handler",
        handler = %worker.entry.name,
        event_key = %event.key,
        position = event.position,
        aggregate_id = %event.aggregate_id,
        attempt,
    );
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| (worker.entry.handler)(event))) {
        Ok(fut) => CatchUnwind::new(fut.instrument(span.clone())).await,
        Err(payload) => Err(payload),
    };
    match outcome {
        Ok(Ok(())) => {
            worker.counters.succeeded.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Ok(Err(err)) => {
            worker.counters.failed.fetch_add(1, Ordering::Relaxed);
            span.in_scope(|| tracing::warn!(error = %err, "event handler failed"));
            Err(err.to_string())
        }
        Err(payload) => {
            worker.counters.panicked.fetch_add(1, Ordering::Relaxed);
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            let message = format!("panicked: {text}");
            // The payload may panic when dropped: do not let that escape either.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
            span.in_scope(|| tracing::error!("event handler {message}"));
            Err(message)
        }
    }
}
