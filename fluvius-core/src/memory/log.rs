//! The in-memory log store: for tests, examples and single-process tools.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::RwLock;

use uuid::Uuid;

use super::MemoryCheckpointStore;
use crate::checkpoint::CheckpointStore;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::future::BoxFuture;
use crate::id::AggregateId;
use crate::idhash::IdHashing;
use crate::logstore::{
    AppendRequest, CommandRecord, LogEntry, LogStore, Snapshot, SnapshotQuery, StreamQuery,
};
use crate::name::Name;
use crate::transactional::AppendTx;

/// A log store in process memory. Safe under concurrent use; nothing survives the process.
///
/// ```
/// # tokio_test_block_on(async {
/// use fluvius_core::{LogStore, MemoryLogStore, AggregateId};
/// let store = MemoryLogStore::new();
/// assert!(store.get_events("user", AggregateId::new()).await.unwrap().is_empty());
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Default)]
pub struct MemoryLogStore {
    inner: RwLock<Inner>,
    checkpoints: MemoryCheckpointStore,
    /// Held by every append; across the transactional handlers' awaits by an append that has
    /// some, so no other append can make it fail after its handlers said yes.
    gate: tokio::sync::Mutex<()>,
}

/// The global log in fixed-size chunks: appending never moves stored events (no large copies
/// as the log grows) and costs no allocation per event.
#[derive(Default)]
struct Log {
    chunks: Vec<Vec<Event>>,
    len: usize,
}

impl Log {
    const CHUNK: usize = 4096;

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, event: Event) {
        if self.len.is_multiple_of(Self::CHUNK) {
            self.chunks.push(Vec::with_capacity(Self::CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(event);
            self.len += 1;
        }
    }

    fn get(&self, index: usize) -> Option<&Event> {
        self.chunks.get(index / Self::CHUNK)?.get(index % Self::CHUNK)
    }

    /// The events at indexes `start..end` (clamped to the log).
    fn range(&self, start: usize, end: usize) -> impl Iterator<Item = &Event> {
        let end = end.min(self.len);
        (start.min(end)..end).filter_map(|i| self.get(i))
    }
}

/// One stream of an aggregate id: its resource and the indexes of its events in the log.
type Stream = (Name, Vec<usize>);

/// The streams of one aggregate id: nearly always one resource, kept inline (one allocation
/// per new aggregate: its index list).
struct Streams {
    first: Stream,
    more: Vec<Stream>,
}

impl Streams {
    fn new(resource: Name) -> Self {
        Self {
            first: (resource, Vec::new()),
            more: Vec::new(),
        }
    }

    fn get(&self, resource: &str) -> Option<&[usize]> {
        std::iter::once(&self.first)
            .chain(&self.more)
            .find(|(r, _)| **r == *resource)
            .map(|(_, indexes)| indexes.as_slice())
    }

    fn get_or_insert(&mut self, resource: Name) -> &mut Vec<usize> {
        if *self.first.0 == *resource {
            return &mut self.first.1;
        }
        let at = match self.more.iter().position(|(r, _)| **r == *resource) {
            Some(i) => i,
            None => {
                self.more.push((resource, Vec::new()));
                self.more.len() - 1
            }
        };
        &mut self.more[at].1
    }
}

#[derive(Default)]
struct Inner {
    /// The global log; position `p` is at index `p - 1`.
    log: Log,
    /// Per aggregate id, its streams (one per resource, nearly always one): the indexes of
    /// each stream's events in `log`, in version order. Keyed by id alone so a lookup hashes
    /// 16 bytes and allocates nothing.
    streams: HashMap<AggregateId, Streams, IdHashing>,
    commands: HashMap<Uuid, Box<CommandRecord>, IdHashing>,
    /// Per stream, its snapshots in version order.
    snapshots: HashMap<(String, AggregateId), Vec<Snapshot>>,
}

impl Inner {
    /// The event indexes of one stream, if it has events.
    fn stream(&self, resource: &str, aggregate_id: AggregateId) -> Option<&[usize]> {
        self.streams.get(&aggregate_id)?.get(resource)
    }
}

impl MemoryLogStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-written (appends validate
        // before mutating), so a poisoned lock is safe to keep using.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuse a duplicate command or a version mismatch (under the lock of the caller).
    fn check(inner: &Inner, request: &AppendRequest) -> Result<()> {
        if let Some(cmd) = &request.command {
            if inner.commands.contains_key(&cmd.id) {
                return Err(Error::DuplicateCommand { command_id: cmd.id });
            }
        }
        let actual = inner
            .stream(&request.resource, request.aggregate_id)
            .map_or(0, |v| v.len() as u64);
        if actual != request.expected_version {
            return Err(Error::Conflict {
                resource: request.resource.to_string(),
                aggregate_id: request.aggregate_id,
                expected: request.expected_version,
                actual,
            });
        }
        Ok(())
    }

    /// Validate, then append; the caller holds the gate.
    fn append_sync(&self, request: AppendRequest) -> Result<Vec<Event>> {
        request.validate()?;
        self.write_validated(request)
    }

    /// Append a request that passed [`AppendRequest::validate`], under the write lock; the
    /// caller holds the gate.
    fn write_validated(&self, request: AppendRequest) -> Result<Vec<Event>> {
        let mut inner = self.write();
        let inner = &mut *inner;
        Self::check(inner, &request)?;
        if request.events.is_empty() {
            return Ok(Vec::new());
        }
        let stream = match inner.streams.entry(request.aggregate_id) {
            Entry::Occupied(streams) => streams.into_mut().get_or_insert(request.resource),
            Entry::Vacant(slot) => &mut slot.insert(Streams::new(request.resource)).first.1,
        };
        let mut stored = Vec::with_capacity(request.events.len());
        for mut event in request.events {
            let index = inner.log.len();
            event.position = index as u64 + 1;
            stream.push(index);
            stored.push(event.clone());
            inner.log.push(event);
        }
        if let Some(cmd) = request.command {
            inner.commands.insert(cmd.id, Box::new(cmd));
        }
        if let Some(snapshot) = request.snapshot {
            let key = (snapshot.resource.clone(), snapshot.aggregate_id);
            // Versions only grow, so pushing keeps the list in version order.
            inner.snapshots.entry(key).or_default().push(snapshot);
        }
        Ok(stored)
    }
}

impl MemoryLogStore {
    /// An append with transactional handlers: check, run the handlers on the events at the
    /// positions they will get, then append. The gate keeps every other append out meanwhile,
    /// so the append cannot fail after the handlers accepted it.
    async fn append_transactional(&self, request: AppendRequest) -> Result<Vec<Event>> {
        request.validate()?;
        let _gate = self.gate.lock().await;
        let head = {
            let inner = self.read();
            Self::check(&inner, &request)?;
            inner.log.len() as u64
        };
        let positions = head + 1..=head + request.events.len() as u64;
        request
            .run_transactional(positions, &mut AppendTx::new("memory", None))
            .await?;
        self.write_validated(request)
    }
}

impl LogStore for MemoryLogStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn append(&self, request: AppendRequest) -> BoxFuture<'_, Result<Vec<Event>>> {
        if request.transactional.is_some() {
            return Box::pin(self.append_transactional(request));
        }
        // The common case: the gate is free, append at once.
        if let Ok(_gate) = self.gate.try_lock() {
            let result = self.append_sync(request);
            return Box::pin(async move { result });
        }
        Box::pin(async move {
            let _gate = self.gate.lock().await;
            self.append_sync(request)
        })
    }

    fn runs_transactional_handlers(&self) -> bool {
        true
    }

    fn read_stream<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: StreamQuery,
    ) -> BoxFuture<'a, Result<Vec<Event>>> {
        let inner = self.read();
        let events = match inner.stream(resource, aggregate_id) {
            None => Vec::new(),
            Some(indexes) => {
                let start = query.from_version.map_or(0, |v| v.saturating_sub(1) as usize);
                indexes
                    .iter()
                    .skip(start)
                    .filter_map(|&i| inner.log.get(i))
                    .take_while(|e| query.to_version.is_none_or(|v| e.aggregate_version <= v))
                    .filter(|e| query.matches(e))
                    .cloned()
                    .collect()
            }
        };
        drop(inner);
        Box::pin(async move { Ok(events) })
    }

    /// Every entry of the in-memory log is an event it holds (nothing to decode).
    fn read_log(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<LogEntry>>> {
        let inner = self.read();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(inner.log.len());
        let end = start.saturating_add(limit).min(inner.log.len());
        let entries = inner
            .log
            .range(start, end)
            .cloned()
            .map(LogEntry::Decoded)
            .collect();
        drop(inner);
        Box::pin(async move { Ok(entries) })
    }

    fn get_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<CommandRecord>>> {
        let record = self
            .read()
            .commands
            .get(&command_id)
            .map(|r| CommandRecord::clone(r));
        Box::pin(async move { Ok(record) })
    }

    fn load_snapshot<'a>(
        &'a self,
        resource: &'a str,
        aggregate_id: AggregateId,
        query: SnapshotQuery,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        let snapshot = self
            .read()
            .snapshots
            .get(&(resource.to_owned(), aggregate_id))
            .and_then(|list| list.iter().rev().find(|s| query.matches(s)).cloned());
        Box::pin(async move { Ok(snapshot) })
    }

    fn checkpoints(&self) -> Option<&dyn CheckpointStore> {
        Some(&self.checkpoints)
    }

    fn head_position(&self) -> BoxFuture<'_, Result<u64>> {
        let head = self.read().log.len() as u64;
        Box::pin(async move { Ok(head) })
    }
}
