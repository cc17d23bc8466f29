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
//!   backoff ([`RetryPolicy`](crate::RetryPolicy): the domain's default, or a handler's own,
//!   [`HandlerRetry`](crate::HandlerRetry)); after the last attempt the event is *parked*
//!   ([`DeadLetter`](crate::DeadLetter)) and the handler moves on. Parked events are listed
//!   and retried through `Domain::parked` and `Domain::retry_parked`.
//! - **Poison events**: an entry of the log that cannot be decoded or upcast
//!   ([`LogEntry::Undecodable`](crate::LogEntry::Undecodable)) is parked for each handler it
//!   may concern at once, with its error, and delivery goes on; `retry_parked` delivers it once
//!   it reads. A projection applies the events before it and stops there
//!   ([`ProjectionStatus::stopped`], an error-level log naming the position), retrying at each
//!   wake-up or poll until it reads; `wait_idle` does not wait for a stopped projection.
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
//!
//! The parts: [`options`] (what the builder sets), [`stats`] (what the domain reports),
//! [`claim`] (the leased claim on a follower's checkpoint), [`worker`] (a handler's task:
//! read, call, retry, park, advance), [`projection`] (a projection's task), [`unwind`] (user
//! code's panics caught), [`control`] (an operator's reset, retry of parked events and
//! rebuild). This module starts and stops the tasks and wakes them.

mod claim;
mod control;
mod options;
mod projection;
mod stats;
mod unwind;
mod worker;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::checkpoint::CheckpointStore;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::handler::HandlerEntry;
use crate::logstore::LogStore;
use crate::memory::MemoryCheckpointStore;
use crate::name::sort_and_find_duplicate;
use crate::projection::Projection;

pub use options::{DispatchOptions, StartFrom};
pub use stats::{HandlerStats, ProjectionStatus, ProjectionStop};

use projection::{run_projection, ProjectionWorker};
use stats::Counters;
use worker::{run_worker, Worker};

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

/// What every follower's task shares: the store, the checkpoints, the wake-up, this instance's
/// name as an owner, and the options the tasks run by.
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

/// The followers of one domain (handlers and projections) and their tasks.
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
        options.refuse_unknown(&names)?;
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

    pub(crate) fn handler_names(&self) -> impl Iterator<Item = &str> {
        self.workers.iter().map(|w| w.entry.name.as_str())
    }

    fn worker(&self, handler: &str) -> Result<&Arc<Worker>> {
        self.workers
            .iter()
            .find(|w| w.entry.name == handler)
            .ok_or_else(|| Error::Config(format!("no handler named `{handler}` in this domain")))
    }
}

/// Wait for a wake-up or the poll interval; whether it was a wake-up.
async fn pause(notified: Pin<&mut tokio::sync::futures::Notified<'_>>, poll: Duration) -> bool {
    tokio::select! {
        _ = notified => true,
        _ = tokio::time::sleep(poll) => false,
    }
}
