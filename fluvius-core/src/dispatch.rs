//! In-process dispatch of committed events to handlers.
//!
//! Each handler has its own worker task and queue, so it sees events in commit order and a
//! slow or failing handler never holds up another. Every invocation runs in its own task: a
//! panic is caught, logged and counted like an error. The dispatcher is fed a sequence of
//! committed events, so it can equally be fed from the log (`read_all`) by a checkpointed
//! driver.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tracing::Instrument;

use crate::event::Event;
use crate::handler::HandlerEntry;

/// Counters for one handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerStats {
    /// The handler's name.
    pub name: String,
    /// Invocations that returned `Ok`.
    pub succeeded: u64,
    /// Invocations that returned an error.
    pub failed: u64,
    /// Invocations that panicked.
    pub panicked: u64,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
}

#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

impl Pending {
    fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::SeqCst);
    }

    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

struct Worker {
    entry: HandlerEntry,
    counters: Arc<Counters>,
    queue: mpsc::UnboundedSender<Arc<Event>>,
}

pub(crate) struct Dispatcher {
    workers: Vec<Worker>,
    pending: Arc<Pending>,
}

impl Dispatcher {
    /// Start one worker task per handler. Must run inside a tokio runtime.
    pub(crate) fn start(entries: Vec<HandlerEntry>) -> Self {
        let pending = Arc::new(Pending::default());
        let workers = entries
            .into_iter()
            .map(|entry| {
                let (tx, rx) = mpsc::unbounded_channel();
                let counters = Arc::new(Counters::default());
                tokio::spawn(run_worker(entry.clone(), counters.clone(), pending.clone(), rx));
                Worker {
                    entry,
                    counters,
                    queue: tx,
                }
            })
            .collect();
        Self { workers, pending }
    }

    /// Queue committed events for every handler whose pattern matches.
    pub(crate) fn dispatch(&self, events: &[Event]) {
        if self.workers.is_empty() {
            return;
        }
        for event in events {
            let event = Arc::new(event.clone());
            for worker in &self.workers {
                if worker.entry.pattern.matches(&event.key) {
                    self.pending.add(1);
                    if worker.queue.send(event.clone()).is_err() {
                        // The worker is gone (runtime shutting down): nothing will run it.
                        self.pending.done();
                    }
                }
            }
        }
    }

    /// Wait until every queued invocation has finished.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.pending.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn stats(&self) -> Vec<HandlerStats> {
        self.workers
            .iter()
            .map(|w| HandlerStats {
                name: w.entry.name.clone(),
                succeeded: w.counters.succeeded.load(Ordering::Relaxed),
                failed: w.counters.failed.load(Ordering::Relaxed),
                panicked: w.counters.panicked.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub(crate) fn handler_names(&self) -> impl Iterator<Item = &str> {
        self.workers.iter().map(|w| w.entry.name.as_str())
    }
}

async fn run_worker(
    entry: HandlerEntry,
    counters: Arc<Counters>,
    pending: Arc<Pending>,
    mut rx: mpsc::UnboundedReceiver<Arc<Event>>,
) {
    while let Some(event) = rx.recv().await {
        let span = tracing::info_span!(
            "fluvius.handler",
            handler = %entry.name,
            event_key = %event.key,
            position = event.position,
            aggregate_id = %event.aggregate_id,
        );
        let fut = (entry.handler)(event);
        match tokio::spawn(fut.instrument(span.clone())).await {
            Ok(Ok(())) => {
                counters.succeeded.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(err)) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                span.in_scope(|| tracing::warn!(error = %err, "event handler failed"));
            }
            Err(join) => {
                counters.panicked.fetch_add(1, Ordering::Relaxed);
                let what = if join.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                span.in_scope(|| tracing::error!("event handler {what}"));
            }
        }
        pending.done();
    }
}
