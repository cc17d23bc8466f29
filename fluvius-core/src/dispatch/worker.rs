//! A handler's task: claim its checkpoint, read the log after it, call the handler with
//! retries, park what keeps failing (or cannot be read), and move the checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use super::claim::Claim;
use super::stats::Counters;
use super::unwind::{catch_unwind, panic_message, CatchUnwind};
use super::{pause, Shared};
use crate::checkpoint::DeadLetter;
use crate::error::Result;
use crate::event::Event;
use crate::handler::HandlerEntry;
use crate::logstore::{LogEntry, UndecodableEntry};
use crate::retry::RetryPolicy;

/// What a worker task and the domain share about one handler.
pub(super) struct Worker {
    pub(super) entry: HandlerEntry,
    pub(super) retry: RetryPolicy,
    pub(super) start: u64,
    pub(super) counters: Counters,
    /// The checkpoint as this process last saw it.
    pub(super) progress: watch::Sender<u64>,
    /// Set by a reset through this domain: the task drops its claim and claims again, which
    /// reads the checkpoint where the reset put it.
    pub(super) reclaim: AtomicBool,
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
pub(super) async fn run_worker(worker: Arc<Worker>, shared: Arc<Shared>) {
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
                Ok(()) => unflushed = claim.at().is_some_and(|at| cursor.seen > at),
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
        if let Some(stored) = claim.at().filter(|&stored| to > stored) {
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
/// [`checkpoint_every`](super::DispatchOptions::checkpoint_every) events handled, and once
/// [`checkpoint_interval`](super::DispatchOptions::checkpoint_interval) has passed since it last
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

/// One invocation, counted and traced; a panic (while making or polling the handler's future)
/// is caught and reported as a failure.
pub(super) async fn invoke_once(
    worker: &Worker,
    event: Arc<Event>,
    attempt: u32,
) -> std::result::Result<(), String> {
    let span = tracing::info_span!(
        "fluvius.handler",
        handler = %worker.entry.name,
        event_key = %event.key,
        position = event.position,
        aggregate_id = %event.aggregate_id,
        attempt,
    );
    let outcome = match catch_unwind(|| (worker.entry.handler)(event)) {
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
            let message = format!("panicked: {}", panic_message(payload));
            span.in_scope(|| tracing::error!("event handler {message}"));
            Err(message)
        }
    }
}
