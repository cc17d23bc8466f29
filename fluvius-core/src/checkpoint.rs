//! Durable reactions: a checkpoint per handler and a dead-letter list, kept beside the log.
//!
//! A handler (or projection, or outbox) has a stable name and a *checkpoint*: the position of
//! the last event of the global log it has processed. The dispatcher feeds it from
//! [`read_log`](crate::LogStore::read_log) after that position and moves the checkpoint only
//! after the handler succeeded (at-least-once delivery).
//!
//! Several app instances may share one store: before processing, an instance *claims* the
//! handler's checkpoint with a lease. While the lease is live no other owner can claim it or
//! move it; an instance that dies simply stops renewing, and another takes over when the lease
//! has expired. Every [`advance`](CheckpointStore::advance) is a compare-and-set on
//! (owner, position) and renews the lease, so an instance that lost its claim finds out at its
//! next advance and stops. The dispatcher also renews a claim (by claiming again) every third
//! of the lease while it works, a long handler call included, so only a dead or stalled holder
//! loses it.
//!
//! Events a handler could not process after its last retry are *parked* as
//! [`DeadLetter`]s: the checkpoint moves on, and the parked events can be listed and retried
//! (see `Domain::parked` and `Domain::retry_parked`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::Result;
use crate::future::BoxFuture;

/// An event a handler gave up on after its last attempt, or a stored event it could not be
/// given because it cannot be decoded or upcast (parked at once, `error` says why).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The handler's name.
    pub handler: String,
    /// The event's global position.
    pub position: u64,
    /// The event's id (nil for a stored row whose id cannot be read).
    pub event_id: Uuid,
    /// The event's key (empty for a stored row whose key cannot be read).
    pub event_key: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The last error (or panic) message.
    pub error: String,
    /// When it was parked (microsecond precision).
    pub parked_at: DateTime<Utc>,
}

/// Where handler checkpoints and dead letters live: in the same database as the log.
///
/// A handler (projection, outbox) has a stable name and a checkpoint: the position of the last
/// event of the global log it has processed. Before processing, an app instance *claims* the
/// name with a lease; while the lease is live no other owner can claim it or move it. Every
/// [`advance`](Self::advance) is a compare-and-set on (owner, position) and renews the lease;
/// an instance that dies stops renewing, and another takes over once the lease has expired.
/// Events a handler gave up on are parked as [`DeadLetter`]s.
///
/// Implemented by [`MemoryCheckpointStore`](crate::MemoryCheckpointStore) (used by [`MemoryLogStore`](crate::MemoryLogStore))
/// and by the SQL stores of `fluvius-sql`; every implementation passes the conformance cases of
/// `fluvius_core::testing::checkpoint_conformance`. A [`LogStore`](crate::LogStore) exposes its
/// own through [`LogStore::checkpoints`](crate::LogStore::checkpoints).
///
/// Lease times are measured with the store's clock (the database server's for PostgreSQL).
pub trait CheckpointStore: Send + Sync {
    /// The checkpoint of `name`, if it has one.
    fn checkpoint<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<u64>>>;

    /// Claim `name` for `owner` for `lease`: create its checkpoint at `start` if it has none,
    /// then take the claim if nobody holds it, its lease has expired, or `owner` already holds
    /// it (which renews the lease). Returns the checkpoint, or `None` when another owner holds
    /// a live lease.
    fn claim<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        start: u64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>>>;

    /// Move the checkpoint of `name` from `from` to `to` and renew `owner`'s lease, if `owner`
    /// holds the claim (even with an expired lease nobody took over) and the checkpoint is still
    /// at `from`. Returns `false` (and changes nothing) otherwise: the claim was lost or the
    /// checkpoint was reset, and the caller must claim again.
    fn advance<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        from: u64,
        to: u64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Give up `owner`'s claim on `name` (a no-op if it does not hold it).
    fn release<'a>(&'a self, name: &'a str, owner: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Set the checkpoint of `name` to `position` whoever holds it (for a rebuild or a replay);
    /// the holder's next [`advance`](Self::advance) fails and it claims again.
    fn reset<'a>(&'a self, name: &'a str, position: u64) -> BoxFuture<'a, Result<()>>;

    /// Park an event for a handler. Parking the same (handler, position) again replaces the
    /// entry.
    fn park(&self, letter: DeadLetter) -> BoxFuture<'_, Result<()>>;

    /// The parked events of one handler, or of all handlers, by handler then position.
    fn parked<'a>(&'a self, handler: Option<&'a str>) -> BoxFuture<'a, Result<Vec<DeadLetter>>>;

    /// Remove a parked event; `false` if there was none.
    fn unpark<'a>(&'a self, handler: &'a str, position: u64) -> BoxFuture<'a, Result<bool>>;

    /// A task that calls `wake.notify_waiters()` whenever another process may have appended
    /// (e.g. PostgreSQL `LISTEN`), run by the dispatcher until it stops. Only a hint: the
    /// dispatcher also polls. `None` (the default) when the store has no such channel.
    fn append_hints(&self, wake: Arc<Notify>) -> Option<BoxFuture<'static, ()>> {
        let _ = wake;
        None
    }
}
