//! What an operator does to followers through the domain: read or reset a handler's
//! checkpoint, list parked events and run one again, rebuild a projection.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::worker::invoke_once;
use super::Dispatcher;
use crate::checkpoint::DeadLetter;
use crate::error::{Error, Result};
use crate::logstore::LogEntry;

impl Dispatcher {
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
