//! A poison event on the in-memory store: an old event that its upcaster cannot lift is
//! surfaced per entry, parked for a handler while delivery goes on, stops a projection
//! (visibly, without hanging `wait_idle`), and fails the load of its aggregate with a typed
//! error; after the upcaster is fixed (a new release: a new domain on the same store) the
//! parked event is delivered on retry and the projection goes on. (The raw-row cases run on
//! SQLite and PostgreSQL in `fluvius-sql/tests/poison.rs`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fluvius_core::prelude::*;
use fluvius_core::testing::RecordingProjection;
use fluvius_core::{AppendRequest, DispatchOptions, LogEntry, Metadata, Payload, UpcastError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Memo {
    text: String,
}

/// Version 2 of `memo-written`: v1 was `{"body": "…"}`.
#[derive(Debug, Serialize, Deserialize)]
struct MemoWritten {
    text: String,
}

#[aggregate(resource = "memo")]
impl Memo {
    #[action(evt_key = "memo-written", version = 2)]
    fn write(&self, text: String) -> Result<MemoWritten, DomainError> {
        Ok(MemoWritten { text })
    }

    #[apply("memo-written")]
    fn written(&mut self, e: MemoWritten) {
        self.text = e.text;
    }
}

/// The upcaster of the first release: it refuses a v1 payload without a `body`.
fn strict(v1: Value) -> Result<Value, UpcastError> {
    let body = v1
        .get("body")
        .and_then(Value::as_str)
        .ok_or_else(|| UpcastError::msg("v1 memo has no `body`"))?;
    Ok(json!({ "text": body }))
}

/// The fixed upcaster: a memo without a body is empty.
fn lenient(v1: Value) -> Result<Value, UpcastError> {
    Ok(json!({ "text": v1.get("body").and_then(Value::as_str).unwrap_or("") }))
}

/// Write a v1 row straight into the store, as an old release would have.
async fn insert_v1(store: &MemoryLogStore, id: AggregateId, payload: Value) -> Event {
    let command_id = uuid::Uuid::now_v7();
    let event = Event {
        id: uuid::Uuid::now_v7(),
        position: 0,
        namespace: "default".into(),
        resource: "memo".into(),
        aggregate_id: id,
        aggregate_version: 1,
        key: "memo-written".into(),
        schema_version: 1,
        payload: Payload::from(payload),
        args: Payload::null(),
        command_id,
        command_name: "write".into(),
        timestamp: chrono::Utc::now(),
        metadata: Metadata::default(),
    };
    let request = AppendRequest::new("memo", id, 0, vec![event]);
    store.append(request).await.unwrap().remove(0)
}

/// A domain of `upcaster` on `store`, with a recording handler and `projection`.
async fn reactor(
    store: Arc<MemoryLogStore>,
    upcaster: fluvius_core::UpcastFn,
    seen: Arc<Mutex<Vec<u64>>>,
    projection: RecordingProjection,
) -> Domain {
    Domain::builder()
        .aggregate::<Memo>()
        .upcaster("memo-written", 1, upcaster)
        .logstore_arc(store)
        .without_global_handlers()
        .dispatch(
            DispatchOptions::default()
                .poll_interval(Duration::from_millis(20))
                .instance_id("one"),
        )
        .handler("audit", "memo-*", move |event| {
            seen.lock().unwrap().push(event.position);
            async { Ok(()) }
        })
        .projection(projection)
        .build()
        .await
        .expect("the domain builds")
}

#[tokio::test]
async fn an_event_that_cannot_be_upcast_is_parked_and_stops_projections() {
    let store = Arc::new(MemoryLogStore::new());
    let (a, b, c) = (AggregateId::new(), AggregateId::new(), AggregateId::new());
    let first = insert_v1(&store, a, json!({ "body": "one" })).await;
    let bad = insert_v1(&store, b, json!({ "title": "no body" })).await;
    let last = insert_v1(&store, c, json!({ "body": "three" })).await;
    let all = [first.position, bad.position, last.position];

    let seen = Arc::new(Mutex::new(Vec::new()));
    let projection = RecordingProjection::new("memos");
    let domain = reactor(store.clone(), strict, seen.clone(), projection.clone()).await;

    // Per entry: the bad event is named, the others are read in the current shape.
    let entries = domain.logstore().read_log(0, 10).await.unwrap();
    assert_eq!(entries.iter().map(LogEntry::position).collect::<Vec<_>>(), all);
    match &entries[1] {
        LogEntry::Undecodable(entry) => {
            assert_eq!((entry.position, entry.event_id), (bad.position, Some(bad.id)));
            assert!(
                matches!(entry.error, Error::Upcast { event_id, .. } if event_id == bad.id),
                "{:?}",
                entry.error
            );
        }
        other => panic!("the bad event read as {other:?}"),
    }
    let err = domain
        .logstore()
        .read_all(0, 10)
        .await
        .expect_err("read_all names it");
    assert!(
        matches!(err, Error::Upcast { event_id, .. } if event_id == bad.id),
        "{err:?}"
    );
    let err = domain.load::<Memo>(b).await.expect_err("b does not load");
    assert!(
        matches!(err, Error::Upcast { event_id, .. } if event_id == bad.id),
        "{err:?}"
    );
    assert_eq!(domain.load::<Memo>(c).await.unwrap().text, "three");

    tokio::time::timeout(Duration::from_secs(60), domain.wait_idle())
        .await
        .expect("wait_idle returns despite the poison event");
    assert_eq!(*seen.lock().unwrap(), [first.position, last.position]);
    let parked = domain.parked(Some("audit")).await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!((parked[0].position, parked[0].event_id), (bad.position, bad.id));
    assert_eq!(parked[0].event_key, "memo-written");
    assert!(
        parked[0].error.contains("v1 memo has no `body`"),
        "{}",
        parked[0].error
    );
    assert_eq!(
        domain.handler_checkpoint("audit").await.unwrap(),
        Some(last.position)
    );
    assert!(
        !domain.retry_parked("audit", bad.position).await.unwrap(),
        "still unreadable"
    );
    assert_eq!(projection.applied(), [first.position]);
    let status = domain.projection_status();
    let stop = status[0].stopped.as_ref().expect("stopped");
    assert_eq!((stop.position, stop.event_id), (bad.position, Some(bad.id)));
    assert!(stop.error.contains("cannot upcast"), "{}", stop.error);

    // The fixed release: the parked event is delivered on retry, the projection goes on.
    drop(domain);
    let domain = reactor(store.clone(), lenient, seen.clone(), projection.clone()).await;
    assert!(domain.retry_parked("audit", bad.position).await.unwrap());
    assert!(domain.parked(Some("audit")).await.unwrap().is_empty());
    assert_eq!(
        *seen.lock().unwrap(),
        [first.position, last.position, bad.position]
    );
    tokio::time::timeout(Duration::from_secs(60), domain.wait_idle())
        .await
        .expect("wait_idle returns");
    assert_eq!(projection.applied(), all);
    assert!(domain.projection_status()[0].stopped.is_none());
    assert_eq!(domain.load::<Memo>(b).await.unwrap().text, "");
}
