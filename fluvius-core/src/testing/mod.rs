//! Test support for log store backends (feature `testing`).
//!
//! - [`conformance`]: the one suite every [`LogStore`] implementation must pass, and the
//!   [`conformance_tests!`](crate::conformance_tests) macro that runs each case as its own test.
//! - [`WithCleanup`]: a store that runs a clean-up closure when dropped (delete a temporary
//!   directory, drop a test schema), even when the test panics.
//! - [`event`], [`request`], [`command_record`] and [`snapshot_of`]: sample values to append.
//! - [`RecordingProjection`]: a projection that records the positions it applied, in memory.

pub mod checkpoint_conformance;
pub mod conformance;

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use crate::context::Context;
use crate::error::Result;
use crate::event::{Event, Metadata};
use crate::future::BoxFuture;
use crate::id::AggregateId;
use crate::logstore::{AppendRequest, CommandRecord, LogStore, Snapshot};
use crate::payload::Payload;

/// The current time at the precision stores keep (microseconds).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A sample event at `version` of a stream, with a small payload, metadata filled in and the
/// current time (microseconds).
///
/// ```
/// use fluvius_core::{testing, AggregateId};
/// let e = testing::event("account", AggregateId::new(), 1);
/// assert_eq!(e.aggregate_version, 1);
/// assert_eq!(e.position, 0);
/// ```
pub fn event(resource: &str, aggregate_id: AggregateId, version: u64) -> Event {
    let command_id = Uuid::now_v7();
    Event {
        id: Uuid::now_v7(),
        position: 0,
        namespace: "conformance".into(),
        resource: resource.into(),
        aggregate_id,
        aggregate_version: version,
        key: "thing-happened".into(),
        schema_version: 1,
        payload: Payload::from_value(&serde_json::json!({ "version": version, "note": "sample" }))
            .expect("a JSON literal serializes"),
        args: Payload::from_json_unchecked(r#"{"by":"conformance"}"#),
        command_id,
        command_name: "do-thing".into(),
        timestamp: now(),
        metadata: Metadata {
            correlation_id: command_id,
            causation_id: command_id,
            user_id: Some("user-1".into()),
            tenant_id: Some("tenant-1".into()),
            extra: BTreeMap::from([("trace".to_owned(), serde_json::json!({ "span": 7 }))]),
        },
    }
}

/// `count` sample events continuing a stream that is at `expected_version`, as one request
/// (without a command record).
pub fn request(
    resource: &str,
    aggregate_id: AggregateId,
    expected_version: u64,
    count: u64,
) -> AppendRequest {
    AppendRequest {
        resource: resource.into(),
        aggregate_id,
        expected_version,
        events: (1..=count)
            .map(|i| event(resource, aggregate_id, expected_version + i))
            .collect(),
        command: None,
        snapshot: None,
        transactional: None,
        names_checked: false,
    }
}

/// A command record matching `request` (fresh id, full context), to attach to it.
pub fn command_record(request: &AppendRequest) -> CommandRecord {
    CommandRecord {
        id: Uuid::now_v7(),
        namespace: "conformance".into(),
        resource: request.resource.clone(),
        aggregate_id: request.aggregate_id,
        action: "do-thing".into(),
        args: Payload::from_json_unchecked(r#"{"by":"conformance","n":[1,2,3]}"#),
        context: Context::new()
            .with_user("user-1")
            .with_tenant("tenant-1")
            .with_realm("staff")
            .with_header("x-request-id", "r-42")
            .with_source("conformance-suite")
            .with_transport("test")
            .with_correlation_id(Uuid::now_v7()),
        version_before: request.expected_version,
        version_after: request.expected_version + request.events.len() as u64,
        timestamp: now(),
    }
}

/// A [`LogStore`] that runs a closure once when dropped: for test stores that own a temporary
/// file or a database schema. Everything else is delegated to the wrapped store.
pub struct WithCleanup<S> {
    store: S,
    cleanup: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl<S: LogStore> WithCleanup<S> {
    /// Wrap `store`; `cleanup` runs when the wrapper is dropped (also while a test unwinds).
    pub fn new(store: S, cleanup: impl FnOnce() + Send + 'static) -> Self {
        Self {
            store,
            cleanup: Mutex::new(Some(Box::new(cleanup))),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.store
    }
}

impl<S> Drop for WithCleanup<S> {
    fn drop(&mut self) {
        let cleanup = self.cleanup.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(cleanup) = cleanup {
            cleanup();
        }
    }
}

impl<S: LogStore> LogStore for WithCleanup<S> {
    crate::forward_log_store!(|s| &s.store =>
        backend, append, read_stream, read_all, read_log, get_command,
        load_snapshot, checkpoints, runs_transactional_handlers, head_position);
}

/// A snapshot of the stream of `request` at its last event (state `{"at": version}`), to
/// attach to it.
pub fn snapshot_of(request: &AppendRequest, state_version: u32) -> Snapshot {
    let last = request.events.last().expect("a snapshot needs an appended event");
    Snapshot {
        resource: request.resource.to_string(),
        aggregate_id: request.aggregate_id,
        version: last.aggregate_version,
        state_version,
        state: Payload::from_value(&serde_json::json!({ "at": last.aggregate_version, "ü": "✓" }))
            .expect("a JSON literal serializes"),
        timestamp: last.timestamp,
    }
}

/// A projection for tests that records the positions of the events it applied, in memory.
/// Clones share the record, so a test can keep one and give the other to a domain (or to a
/// second domain that takes over).
#[derive(Clone)]
pub struct RecordingProjection {
    name: String,
    state: std::sync::Arc<Mutex<(u64, Vec<u64>)>>,
}

impl RecordingProjection {
    /// An empty projection named `name`, at position 0.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: Default::default(),
        }
    }

    /// The positions applied so far, in order.
    pub fn applied(&self) -> Vec<u64> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1.clone()
    }
}

impl crate::Projection for RecordingProjection {
    fn name(&self) -> &str {
        &self.name
    }

    fn position(&self) -> BoxFuture<'_, Result<u64>> {
        let position = self.state.lock().unwrap_or_else(|e| e.into_inner()).0;
        Box::pin(async move { Ok(position) })
    }

    fn apply<'a>(&'a self, from: u64, events: &'a [Event]) -> BoxFuture<'a, Result<()>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let result = if state.0 == from {
            state.1.extend(events.iter().map(|e| e.position));
            state.0 = events.last().map_or(from, |e| e.position);
            Ok(())
        } else {
            Err(crate::Error::Config(format!(
                "projection `{}` is at {}, not {from}",
                self.name, state.0
            )))
        };
        Box::pin(async move { result })
    }

    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (0, Vec::new());
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::logstore::{SnapshotQuery, StreamQuery};
    use crate::upcast::{Upcasters, UpcastingStore};
    use crate::{CheckpointStore, MemoryLogStore};

    /// The wrappers of this crate over one memory store: each must answer as the store does.
    fn wrappers(inner: &Arc<MemoryLogStore>) -> Vec<(&'static str, Box<dyn LogStore>)> {
        vec![
            ("Arc", Box::new(inner.clone())),
            (
                "UpcastingStore",
                Box::new(UpcastingStore {
                    inner: inner.clone(),
                    upcasters: Arc::new(Upcasters::default()),
                }),
            ),
            ("WithCleanup", Box::new(WithCleanup::new(inner.clone(), || {}))),
        ]
    }

    fn address(checkpoints: Option<&dyn CheckpointStore>) -> Option<*const u8> {
        checkpoints.map(|c| c as *const dyn CheckpointStore as *const u8)
    }

    #[tokio::test]
    async fn every_wrapper_forwards_writes_reads_and_capabilities_to_its_store() {
        for index in 0..3 {
            let inner = Arc::new(MemoryLogStore::new());
            let (name, store) = wrappers(&inner).swap_remove(index);
            let id = AggregateId::new();
            let mut first = request("thing", id, 0, 3);
            first.snapshot = Some(snapshot_of(&first, 1));
            let record = command_record(&first);
            let command_id = record.id;
            first.command = Some(record);
            let stored = store.append(first).await.expect("append through the wrapper");
            assert_eq!(stored.last().map(|e| e.position), Some(3), "{name}");

            assert_eq!(store.backend(), "memory", "{name}");
            assert!(store.runs_transactional_handlers(), "{name}");
            assert!(address(store.checkpoints()).is_some(), "{name}");
            assert_eq!(
                address(store.checkpoints()),
                address(inner.checkpoints()),
                "{name}"
            );
            assert_eq!(store.head_position().await.unwrap(), 3, "{name}");
            let snapshot = store
                .load_snapshot("thing", id, SnapshotQuery::default())
                .await
                .unwrap();
            assert_eq!(snapshot.map(|s| s.version), Some(3), "{name}: the snapshot");
            let command = store.get_command(command_id).await.unwrap();
            assert_eq!(
                command.map(|c| c.version_after),
                Some(3),
                "{name}: the command record"
            );
            let stream = store
                .read_stream("thing", id, StreamQuery::default())
                .await
                .unwrap();
            assert_eq!(stream.len(), 3, "{name}");
            assert_eq!(store.read_all(1, 10).await.unwrap().len(), 2, "{name}");
            assert_eq!(store.read_log(2, 10).await.unwrap().len(), 1, "{name}");
        }
    }
}
