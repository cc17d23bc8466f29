//! Per-aggregate turns: commands for one aggregate in one `Domain` run one after another.
//!
//! Without turns, concurrent commands on a hot aggregate all load the same version, all
//! decide, and all but one lose the append's version check; under enough concurrency most of
//! them exhaust their retries. With turns, the next command starts after the previous one
//! appended, on the state it left (usually straight from the aggregate cache): a hot
//! aggregate queues instead of conflicting. Commands from other processes still race, and
//! those conflicts are retried as before.
//!
//! Turns are striped locks: a fixed set of async mutexes picked by a keyed hash of the
//! aggregate id. Two aggregates that share a stripe take turns too, which costs a little
//! concurrency and nothing else; there is no allocation or map upkeep per command.

use std::hash::BuildHasher;

use tokio::sync::{Mutex, MutexGuard};

use crate::id::AggregateId;
use crate::idhash::IdHashing;

/// The number of stripes.
const STRIPES: usize = 1024;

pub(crate) struct Turns {
    stripes: Box<[Mutex<()>]>,
    /// Keyed, so ids chosen by a client cannot pile onto one stripe on purpose.
    hasher: IdHashing,
}

impl Turns {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: IdHashing::new(),
        }
    }

    /// Wait for the aggregate's turn; it lasts while the guard lives.
    pub(crate) async fn take(&self, resource: &str, aggregate_id: AggregateId) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one((resource, aggregate_id)) as usize % self.stripes.len();
        let stripe = &self.stripes[stripe];
        // The free stripe (the common case) is one atomic operation, with no waiter to set up.
        match stripe.try_lock() {
            Ok(guard) => guard,
            Err(_) => stripe.lock().await,
        }
    }
}
