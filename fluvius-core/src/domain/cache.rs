//! The aggregate cache: the last known state and version of recently used aggregates.
//!
//! A cached entry turns a command into one append: no read, no fold. It never makes a wrong
//! decision stick: an entry is taken out while a command uses it, a stale entry (another
//! process appended meanwhile) fails the append's expected-version check and the command is
//! retried on state loaded from the store, and a command refused on cached state is decided
//! again on fresh state before the refusal is returned.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::id::AggregateId;
use crate::idhash::IdHashing;

type Entry = (Box<dyn Any + Send>, u64);

/// A bounded map from aggregate id to (state, version), for one resource.
pub(crate) struct AggregateCache {
    capacity: usize,
    entries: Mutex<HashMap<AggregateId, Entry, IdHashing>>,
}

impl AggregateCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::with_hasher(IdHashing::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AggregateId, Entry, IdHashing>> {
        // Entries are inserted and removed whole; a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take the entry out (a concurrent command on the same aggregate loads from the store).
    /// The state stays boxed, so putting it back allocates nothing.
    pub(crate) fn take<A: 'static>(&self, id: AggregateId) -> Option<(Box<A>, u64)> {
        if self.capacity == 0 {
            return None;
        }
        let (state, version) = self.lock().remove(&id)?;
        state.downcast::<A>().ok().map(|s| (s, version))
    }

    /// Put a state back, unless a newer one is there already.
    pub(crate) fn put<A: Send + 'static>(&self, id: AggregateId, state: Box<A>, version: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(&id) {
            if entry.1 < version {
                *entry = (state, version);
            }
            return;
        }
        if entries.len() >= self.capacity {
            // Evict an arbitrary entry: cheap, and any entry is as good to reload as another.
            if let Some(victim) = entries.keys().next().copied() {
                entries.remove(&victim);
            }
        }
        entries.insert(id, (state, version));
    }
}
