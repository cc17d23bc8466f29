//! Snapshots in the pipeline: taken every N events in the same append, loads start from the
//! latest usable one, time travel picks the one at or before its target, and a snapshot of
//! another state version (or one that does not decode) is ignored in favour of the events.

use std::sync::Arc;

use chrono::TimeDelta;
use fluvius_core::prelude::*;
use fluvius_core::{AppendRequest, Payload, Snapshot, SnapshotQuery};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Tally {
    total: u64,
    folded: u64,
    /// Only ever set by a planted snapshot: shows that a load started from it.
    #[serde(default)]
    marker: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Added {
    n: u64,
}

#[aggregate(resource = "tally", snapshot_every = 10, state_version = 2)]
impl Tally {
    #[action(evt_key = "added")]
    fn add(&self, n: u64) -> Result<Added, DomainError> {
        Ok(Added { n })
    }

    #[apply("added")]
    fn added(&mut self, e: Added) {
        self.total += e.n;
        self.folded += 1;
    }
}

async fn domain(store: Arc<dyn LogStore>) -> Domain {
    Domain::builder()
        .aggregate::<Tally>()
        .logstore_arc(store)
        .without_global_handlers()
        .build()
        .await
        .expect("domain builds")
}

/// `count` commands adding 1, 2, 3, … to a new tally.
async fn run(domain: &Domain, count: u64) -> AggregateId {
    let id = AggregateId::new();
    for n in 1..=count {
        domain
            .process_command(Tally::add_command(id, n))
            .await
            .expect("command succeeds");
    }
    id
}

async fn latest(store: &dyn LogStore, id: AggregateId, max_version: Option<u64>) -> Option<Snapshot> {
    store
        .load_snapshot(
            "tally",
            id,
            SnapshotQuery {
                max_version,
                until: None,
            },
        )
        .await
        .unwrap()
}

/// Append one more event (a copy of the last, one version on, `delay` later) carrying
/// `snapshot_state` as a snapshot at that version, as a store would hold it.
async fn plant(store: &dyn LogStore, id: AggregateId, state_version: u32, state: serde_json::Value) -> u64 {
    let events = store.get_events("tally", id).await.unwrap();
    let last = events.last().expect("the tally has events");
    let mut event = last.clone();
    event.id = uuid::Uuid::now_v7();
    event.command_id = uuid::Uuid::now_v7();
    event.position = 0;
    event.aggregate_version += 1;
    event.payload = Payload::from(json!({ "n": 0 }));
    event.timestamp = last.timestamp + TimeDelta::milliseconds(1);
    let snapshot = Snapshot {
        resource: "tally".into(),
        aggregate_id: id,
        version: event.aggregate_version,
        state_version,
        state: Payload::from(state),
        timestamp: event.timestamp,
    };
    let version = event.aggregate_version;
    store
        .append(AppendRequest::new("tally", id, last.aggregate_version, vec![event]).with_snapshot(snapshot))
        .await
        .expect("the planted append succeeds");
    version
}

fn truth(count: u64) -> Tally {
    Tally {
        total: count * (count + 1) / 2,
        folded: count,
        marker: None,
    }
}

async fn snapshots_every_n_events(store: Arc<dyn LogStore>) {
    let domain = domain(store.clone()).await;
    let id = run(&domain, 25).await;
    let snap = latest(store.as_ref(), id, None)
        .await
        .expect("snapshots were taken");
    assert_eq!(snap.version, 20);
    assert_eq!(snap.state_version, 2);
    assert_eq!(snap.state.decode::<Tally>().unwrap(), truth(20));
    let events = store.get_events("tally", id).await.unwrap();
    assert_eq!(
        snap.timestamp, events[19].timestamp,
        "the timestamp of the event at its version"
    );
    assert_eq!(latest(store.as_ref(), id, Some(19)).await.unwrap().version, 10);
    assert_eq!(latest(store.as_ref(), id, Some(9)).await, None);

    // A fresh domain (empty cache) loads snapshot + tail into the same state, and goes on.
    let fresh = domain_again(store.clone()).await;
    assert_eq!(fresh.load::<Tally>(id).await.unwrap(), truth(25));
    for n in 26..=30 {
        fresh.process_command(Tally::add_command(id, n)).await.unwrap();
    }
    assert_eq!(latest(store.as_ref(), id, None).await.unwrap().version, 30);
    assert_eq!(fresh.load::<Tally>(id).await.unwrap(), truth(30));
    assert_eq!(fresh.load_at_version::<Tally>(id, 17).await.unwrap(), truth(17));
}

async fn domain_again(store: Arc<dyn LogStore>) -> Domain {
    domain(store).await
}

#[tokio::test]
async fn snapshots_every_n_events_in_memory() {
    snapshots_every_n_events(Arc::new(MemoryLogStore::new())).await;
}

#[tokio::test]
async fn snapshots_every_n_events_in_sqlite() {
    let store = fluvius_sql::SqliteLogStore::open("sqlite::memory:")
        .await
        .unwrap();
    snapshots_every_n_events(Arc::new(store)).await;
}

#[tokio::test]
async fn loads_start_from_the_latest_snapshot_at_or_before_their_target() {
    let store: Arc<dyn LogStore> = Arc::new(MemoryLogStore::new());
    let id = run(&domain(store.clone()).await, 25).await;
    let planted = plant(
        store.as_ref(),
        id,
        2,
        json!({ "total": 1000, "folded": 0, "marker": "planted" }),
    )
    .await;
    assert_eq!(planted, 26);
    let events = store.get_events("tally", id).await.unwrap();

    let domain = domain(store.clone()).await;
    let loaded: Tally = domain.load(id).await.unwrap();
    assert_eq!(
        loaded.marker.as_deref(),
        Some("planted"),
        "load starts from the latest snapshot"
    );
    assert_eq!(loaded.total, 1000);
    // Before the planted snapshot, the real ones (at 10 and 20) plus the tail.
    assert_eq!(domain.load_at_version::<Tally>(id, 25).await.unwrap(), truth(25));
    assert_eq!(
        domain.load_at::<Tally>(id, events[24].timestamp).await.unwrap(),
        truth(25)
    );
    assert_eq!(
        domain
            .load_at::<Tally>(id, events[25].timestamp)
            .await
            .unwrap()
            .marker
            .as_deref(),
        Some("planted")
    );

    // A command decides on snapshot + tail, and the next snapshot follows the interval.
    let resp = domain.process_command(Tally::add_command(id, 5)).await.unwrap();
    assert_eq!(resp.version, 27);
    let loaded: Tally = domain_again(store.clone()).await.load(id).await.unwrap();
    assert_eq!(
        (loaded.total, loaded.folded, loaded.marker.as_deref()),
        (1005, 1, Some("planted"))
    );
}

#[tokio::test]
async fn snapshots_of_another_state_version_or_shape_are_ignored() {
    let store: Arc<dyn LogStore> = Arc::new(MemoryLogStore::new());
    let id = run(&domain(store.clone()).await, 25).await;
    // Written by a release whose state was version 1: never decoded into today's shape.
    plant(
        store.as_ref(),
        id,
        1,
        json!({ "total": 1000, "folded": 0, "marker": "old" }),
    )
    .await;
    let domain = domain(store.clone()).await;
    let mut expected = truth(25);
    expected.folded += 1; // the planted event adds 0
    assert_eq!(domain.load::<Tally>(id).await.unwrap(), expected);

    // The right version but a state that does not decode: rebuilt from the events.
    plant(store.as_ref(), id, 2, json!({ "total": "a lot" })).await;
    expected.folded += 1;
    assert_eq!(domain.load::<Tally>(id).await.unwrap(), expected);
    let resp = domain.process_command(Tally::add_command(id, 4)).await.unwrap();
    assert_eq!(resp.version, 28);
    expected.total += 4;
    expected.folded += 1;
    assert_eq!(
        domain_again(store).await.load::<Tally>(id).await.unwrap(),
        expected
    );
}

#[tokio::test]
async fn the_builder_overrides_the_interval() {
    let store: Arc<dyn LogStore> = Arc::new(MemoryLogStore::new());
    let off = Domain::builder()
        .aggregate::<Tally>()
        .logstore_arc(store.clone())
        .snapshot_every::<Tally>(0)
        .without_global_handlers()
        .build()
        .await
        .unwrap();
    let id = run(&off, 25).await;
    assert_eq!(
        latest(store.as_ref(), id, None).await,
        None,
        "0 turns snapshots off"
    );
    assert_eq!(off.load::<Tally>(id).await.unwrap(), truth(25));

    let every_four = Domain::builder()
        .aggregate::<Tally>()
        .logstore_arc(store.clone())
        .snapshot_every::<Tally>(4)
        .without_global_handlers()
        .build()
        .await
        .unwrap();
    let id = run(&every_four, 10).await;
    assert_eq!(latest(store.as_ref(), id, None).await.unwrap().version, 8);
    assert_eq!(latest(store.as_ref(), id, Some(7)).await.unwrap().version, 4);
}
