//! What the domain reports about its followers: a handler's counters ([`HandlerStats`]) and
//! where a projection is ([`ProjectionStatus`], [`ProjectionStop`]).

use std::sync::atomic::{AtomicU64, Ordering};

use super::Dispatcher;

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

/// A handler's counters as its task updates them (read out as [`HandlerStats`]).
#[derive(Default)]
pub(super) struct Counters {
    pub(super) succeeded: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) panicked: AtomicU64,
    pub(super) parked: AtomicU64,
    pub(super) claims_lost: AtomicU64,
}

impl Dispatcher {
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
}
