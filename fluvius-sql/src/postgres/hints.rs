//! The sending side of the append hint: after an append commits, one `pg_notify` on
//! [`APPEND_CHANNEL`](super::APPEND_CHANNEL), sent by a task of the store, outside the append's
//! transaction.
//!
//! Why not from the append's transaction: a transaction that has called `NOTIFY` takes a lock
//! on the whole cluster when it commits and holds it until its commit is on disk, so that
//! notifications are queued in commit order. Every appending transaction of every app instance
//! would then commit one after the other, each waiting for its own flush, and PostgreSQL could
//! not flush several commits at once.
//!
//! Here the notification is its own statement, committed with `synchronous_commit` off for
//! that statement only: the lock is held for microseconds, not for a flush (the notification
//! carries no data; the events were flushed by the append's commit before it is sent). Hints
//! are coalesced: appends that commit while one is being sent are covered by one more
//! notification after it, and at most one is sent per [`MIN_INTERVAL`], so a busy store sends
//! a few hundred per second rather than one per append (an idle store's first append is
//! notified at once). A hint that cannot be sent is logged at `debug`; listeners also poll, so a
//! lost hint only delays a handler.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;

use super::APPEND_CHANNEL;

/// The statement: notify, and do not wait for the flush of this (data-less) commit.
const NOTIFY_APPENDED: &str =
    "SELECT pg_notify($1, current_schema()), set_config('synchronous_commit', 'off', true)";

/// The least time between two notifications: appends committed within it share the next one.
const MIN_INTERVAL: Duration = Duration::from_millis(2);

/// The handle the store keeps; cheap to clone. The sending task ends when every handle is gone.
#[derive(Clone, Debug)]
pub(super) struct AppendHints {
    wake: mpsc::Sender<()>,
}

impl AppendHints {
    /// Start the sending task on the current tokio runtime (`None` outside one: listeners then
    /// rely on polling).
    pub(super) fn spawn(pool: PgPool) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        // Capacity 1: a hint already waiting covers every append that commits before it is
        // taken.
        let (wake, rx) = mpsc::channel(1);
        runtime.spawn(send_hints(pool, rx));
        Some(Self { wake })
    }

    /// Something was appended (and committed): make sure a notification follows.
    pub(super) fn appended(&self) {
        // Full: a hint is already pending. Closed: the task is gone (runtime shut down).
        let _ = self.wake.try_send(());
    }
}

async fn send_hints(pool: PgPool, mut rx: mpsc::Receiver<()>) {
    while rx.recv().await.is_some() {
        if pool.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query(NOTIFY_APPENDED)
            .bind(APPEND_CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "append notification not sent; listeners will poll");
        }
        tokio::time::sleep(MIN_INTERVAL).await;
    }
}
