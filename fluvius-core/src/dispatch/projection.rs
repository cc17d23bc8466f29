//! A projection's task: claim it, apply pages of the log with retries, and stop at an entry it
//! cannot read until that entry reads.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::Instrument;

use super::claim::Claim;
use super::stats::ProjectionStop;
use super::{pause, Shared};
use crate::error::Result;
use crate::logstore::{LogEntry, UndecodableEntry};
use crate::projection::Projection;
use crate::retry::RetryPolicy;

/// What a projection task and the domain share about one projection.
pub(super) struct ProjectionWorker {
    pub(super) projection: Arc<dyn Projection>,
    pub(super) name: String,
    pub(super) retry: RetryPolicy,
    /// Held while applying a page, and by a rebuild.
    pub(super) busy: tokio::sync::Mutex<()>,
    pub(super) progress: watch::Sender<u64>,
    /// The unreadable entry the projection stopped at, while it stays unreadable.
    pub(super) stopped: std::sync::Mutex<Option<ProjectionStop>>,
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

    /// The unreadable entry the projection is stopped at, if any.
    pub(super) fn stop(&self) -> Option<ProjectionStop> {
        self.stopped.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A projection's task: claim it, follow the log, keep the claim across wake-ups.
pub(super) async fn run_projection(worker: Arc<ProjectionWorker>, shared: Arc<Shared>) {
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
