//! Projections: read models fed from the log, with their own checkpoint.
//!
//! A [`Projection`] receives the global log in pages, in position order, and keeps its
//! *position* (the last event applied) itself — a SQL projection in the same transaction as
//! its rows, so the read model and its position never disagree, even across a crash. The
//! dispatcher follows the log live (same wake-ups as handlers, one instance at a time through
//! the claim named after the projection) and `Domain::rebuild_projection` clears the read
//! model and replays the log from zero.
//!
//! For SQL stores, `fluvius_sql::sqlite::advance_projection` / `reset_projection` move the
//! position (the `fluvius_checkpoints` row named after the projection) inside your
//! transaction, as a compare-and-set.

use crate::error::Result;
use crate::event::Event;
use crate::future::BoxFuture;

/// A read model fed from the log, with its own position.
///
/// The dispatcher feeds a projection the global log in pages, in position order, follows the
/// log live (same wake-ups as handlers, one app instance at a time through the claim named
/// after the projection), and `Domain::rebuild_projection` clears the read model and replays
/// the log from zero. The projection keeps its position itself — a SQL projection in the same
/// transaction as its rows (`fluvius_sql::sqlite::advance_projection` / `reset_projection`
/// move the `fluvius_checkpoints` row named after it, as a compare-and-set), so the read model
/// and its position never disagree, even across a crash.
///
/// `apply` must be atomic: either every event of the page is applied *and* the position moves
/// from `from` to the last event's position, or nothing changes (return an error). Pages
/// contain every event of the log, whatever its key: ignore those you do not need.
///
/// A projection never skips an event: at an entry of the log that cannot be decoded or
/// upcast, the page ends before it and the projection stops there (see
/// `Domain::projection_status`) until the entry reads.
pub trait Projection: Send + Sync + 'static {
    /// A stable name, unique among the domain's handlers and projections.
    fn name(&self) -> &str;

    /// The position of the last event applied (0 for none).
    fn position(&self) -> BoxFuture<'_, Result<u64>>;

    /// Apply `events` (positions after `from`, in order) and move the position to the last
    /// one's, atomically; fail without changes if the position is no longer `from`.
    fn apply<'a>(&'a self, from: u64, events: &'a [Event]) -> BoxFuture<'a, Result<()>>;

    /// Empty the read model and set the position to 0, atomically.
    fn clear(&self) -> BoxFuture<'_, Result<()>>;
}
