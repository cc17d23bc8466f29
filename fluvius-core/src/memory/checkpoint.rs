//! Checkpoints and dead letters in process memory: [`MemoryCheckpointStore`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::checkpoint::{CheckpointStore, DeadLetter};
use crate::error::Result;
use crate::future::BoxFuture;

#[derive(Debug)]
struct Row {
    position: u64,
    owner: Option<String>,
    lease_until: DateTime<Utc>,
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

/// Checkpoints and dead letters in process memory.
#[derive(Debug, Default)]
pub struct MemoryCheckpointStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    rows: HashMap<String, Row>,
    parked: BTreeMap<(String, u64), DeadLetter>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // Every critical section below leaves the maps consistent, so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim_sync(&self, name: &str, owner: &str, start: u64, lease: Duration) -> Option<u64> {
        let now = Utc::now();
        let mut inner = self.lock();
        let row = inner.rows.entry(name.to_owned()).or_insert_with(|| Row {
            position: start,
            owner: None,
            lease_until: now,
        });
        let free = match &row.owner {
            None => true,
            Some(o) => o == owner || row.lease_until < now,
        };
        if !free {
            return None;
        }
        row.owner = Some(owner.to_owned());
        row.lease_until = lease_end(now, lease);
        Some(row.position)
    }

    fn advance_sync(&self, name: &str, owner: &str, from: u64, to: u64, lease: Duration) -> bool {
        let mut inner = self.lock();
        match inner.rows.get_mut(name) {
            Some(row) if row.owner.as_deref() == Some(owner) && row.position == from => {
                row.position = to;
                row.lease_until = lease_end(Utc::now(), lease);
                true
            }
            _ => false,
        }
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn checkpoint<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        let position = self.lock().rows.get(name).map(|r| r.position);
        Box::pin(async move { Ok(position) })
    }

    fn claim<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        start: u64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>>> {
        let claimed = self.claim_sync(name, owner, start, lease);
        Box::pin(async move { Ok(claimed) })
    }

    fn advance<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        from: u64,
        to: u64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        let moved = self.advance_sync(name, owner, from, to, lease);
        Box::pin(async move { Ok(moved) })
    }

    fn release<'a>(&'a self, name: &'a str, owner: &'a str) -> BoxFuture<'a, Result<()>> {
        if let Some(row) = self.lock().rows.get_mut(name) {
            if row.owner.as_deref() == Some(owner) {
                row.owner = None;
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn reset<'a>(&'a self, name: &'a str, position: u64) -> BoxFuture<'a, Result<()>> {
        let now = Utc::now();
        self.lock()
            .rows
            .entry(name.to_owned())
            .or_insert_with(|| Row {
                position,
                owner: None,
                lease_until: now,
            })
            .position = position;
        Box::pin(async { Ok(()) })
    }

    fn park(&self, letter: DeadLetter) -> BoxFuture<'_, Result<()>> {
        self.lock()
            .parked
            .insert((letter.handler.clone(), letter.position), letter);
        Box::pin(async { Ok(()) })
    }

    fn parked<'a>(&'a self, handler: Option<&'a str>) -> BoxFuture<'a, Result<Vec<DeadLetter>>> {
        let letters = self
            .lock()
            .parked
            .values()
            .filter(|l| handler.is_none_or(|h| h == l.handler))
            .cloned()
            .collect();
        Box::pin(async move { Ok(letters) })
    }

    fn unpark<'a>(&'a self, handler: &'a str, position: u64) -> BoxFuture<'a, Result<bool>> {
        let removed = self
            .lock()
            .parked
            .remove(&(handler.to_owned(), position))
            .is_some();
        Box::pin(async move { Ok(removed) })
    }
}
