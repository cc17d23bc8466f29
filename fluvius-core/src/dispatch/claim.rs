//! The lease on a follower's checkpoint: claimed, renewed when due (also while work runs),
//! advanced with the checkpoint, and found lost when another instance took over.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Instant;

use super::worker::Worker;
use super::Shared;
use crate::error::Result;

/// This instance's claim on a follower's checkpoint, kept alive by time.
///
/// It is renewed once a third of the lease has passed since it was taken or last renewed (a
/// checkpoint advance renews it too): between events, and in the background while a handler
/// call, a retry backoff or a projection page runs ([`Claim::keep`]), so that work longer than
/// the lease is never taken over by another instance. Once found lost (another instance took
/// over, or the checkpoint was reset) it stays lost: the follower stops without moving the
/// checkpoint, and claims again.
pub(super) struct Claim<'a> {
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
    /// Counts the claims found lost (a handler's
    /// [`HandlerStats::claims_lost`](super::HandlerStats::claims_lost)).
    losses: Option<&'a AtomicU64>,
}

impl<'a> Claim<'a> {
    /// A projection's claim, taken by a request sent at `asked`.
    pub(super) fn projection(shared: &'a Shared, name: &'a str, asked: Instant) -> Self {
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
    pub(super) fn handler(shared: &'a Shared, worker: &'a Worker, asked: Instant, at: u64) -> Self {
        Self {
            start: worker.start,
            at: Some(at),
            losses: Some(&worker.counters.claims_lost),
            ..Self::projection(shared, &worker.entry.name, asked)
        }
    }

    /// For a handler, the checkpoint as this holder stored it (`None` for a projection).
    pub(super) fn at(&self) -> Option<u64> {
        self.at
    }

    pub(super) fn is_lost(&self) -> bool {
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
    pub(super) async fn renew_if_due(&mut self) -> Result<bool> {
        if !self.lost && Instant::now() >= self.due {
            self.renew().await?;
        }
        Ok(!self.lost)
    }

    /// On an idle poll: renew if it is due; otherwise check that the stored checkpoint is still
    /// where this holder put it (another instance may have reset it). Whether the claim is
    /// still good to follow the log with; if not, the caller claims again.
    pub(super) async fn verify(&mut self) -> Result<bool> {
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
    pub(super) async fn advance(&mut self, from: u64, to: u64) -> Result<bool> {
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
    pub(super) async fn keep<F: Future>(&mut self, work: F) -> F::Output {
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
