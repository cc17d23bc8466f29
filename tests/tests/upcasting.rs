//! Event versioning: old rows stay untouched and are read in the current shape.

use fluvius_core::prelude::*;
use fluvius_core::{AppendRequest, Metadata, Payload, UpcastError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Person {
    first: String,
    last: String,
}

/// Version 2 of `person-registered`: the name is split.
#[derive(Debug, Serialize, Deserialize)]
struct PersonRegistered {
    first: String,
    last: String,
}

#[aggregate(resource = "person")]
impl Person {
    #[action(evt_key = "person-registered", version = 2)]
    fn register(&self, first: String, last: String) -> Result<PersonRegistered, DomainError> {
        Ok(PersonRegistered { first, last })
    }

    #[apply("person-registered")]
    fn registered(&mut self, e: PersonRegistered) {
        self.first = e.first;
        self.last = e.last;
    }
}

fn split_name(v1: Value) -> Result<Value, UpcastError> {
    let name = v1
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| UpcastError::msg("v1 payload has no `name`"))?
        .to_owned();
    let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
    Ok(json!({ "first": first, "last": last }))
}

/// Write a version-1 row straight into the store, as an old release would have.
async fn insert_old(store: &MemoryLogStore, key: &str, id: AggregateId, payload: Value) -> Event {
    let command_id = uuid::Uuid::now_v7();
    let event = Event {
        id: uuid::Uuid::now_v7(),
        position: 0,
        namespace: "default".into(),
        resource: "person".into(),
        aggregate_id: id,
        aggregate_version: 1,
        key: key.into(),
        schema_version: 1,
        payload: Payload::from(payload),
        args: Payload::null(),
        command_id,
        command_name: "register".into(),
        timestamp: chrono::Utc::now(),
        metadata: Metadata::default(),
    };
    let stored = store
        .append(AppendRequest::new("person", id, 0, vec![event]))
        .await
        .unwrap();
    stored.into_iter().next().unwrap()
}

#[tokio::test]
async fn old_events_are_read_in_the_current_shape_everywhere() {
    let store = Arc::new(MemoryLogStore::new());
    let id = AggregateId::new();
    let old = insert_old(&store, "person-registered", id, json!({"name": "Ada Lovelace"})).await;

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let domain = Domain::builder()
        .aggregate::<Person>()
        .logstore_arc(store.clone())
        .upcaster("person-registered", 1, split_name)
        .without_global_handlers()
        .handler("collect", "*", move |e: Arc<Event>| {
            let seen = seen2.clone();
            async move {
                seen.lock().unwrap().push((e.key.to_string(), e.schema_version));
                Ok(())
            }
        })
        .build()
        .await
        .unwrap();
    domain.check_schema_versions().await.unwrap();

    // get_events and read_all through the domain see version 2 ...
    let events = domain.logstore().get_events("person", id).await.unwrap();
    assert_eq!(events[0].schema_version, 2);
    assert_eq!(
        events[0].payload.to_value().unwrap(),
        json!({"first": "Ada", "last": "Lovelace"})
    );
    assert_eq!(events[0].id, old.id);
    let all = domain.logstore().read_all(0, 10).await.unwrap();
    assert_eq!(all[0].schema_version, 2);
    // ... the aggregate loads from it ...
    let p: Person = domain.load(id).await.unwrap();
    assert_eq!((p.first.as_str(), p.last.as_str()), ("Ada", "Lovelace"));
    // ... while the stored row is untouched.
    let raw = store.get_events("person", id).await.unwrap();
    assert_eq!(raw[0].schema_version, 1);
    assert_eq!(
        raw[0].payload.to_value().unwrap(),
        json!({"name": "Ada Lovelace"})
    );

    // New events are written at version 2; handlers are fed from the log (a new handler
    // catches up from the start), so the old event and the new one both reach it at version 2.
    let other = AggregateId::new();
    let resp = domain
        .process_command(Person::register_command(other, "Grace".into(), "Hopper".into()))
        .await
        .unwrap();
    assert_eq!(resp.events[0].schema_version, 2);
    domain.wait_idle().await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            ("person-registered".to_string(), 2),
            ("person-registered".to_string(), 2)
        ]
    );
}

#[tokio::test]
async fn a_missing_upcaster_is_a_clear_error_at_start_up_and_at_read() {
    let store = Arc::new(MemoryLogStore::new());
    let id = AggregateId::new();
    let old = insert_old(&store, "person-registered", id, json!({"name": "Ada Lovelace"})).await;
    let domain = Domain::builder()
        .aggregate::<Person>()
        .logstore_arc(store.clone())
        .without_global_handlers()
        .build()
        .await
        .unwrap();
    let err = domain.check_schema_versions().await.unwrap_err();
    assert_eq!(err.code(), "config");
    assert!(err.to_string().contains("no upcaster from v1"), "{err}");

    match domain.load::<Person>(id).await {
        Err(Error::Upcast {
            event_id,
            key,
            from,
            to,
            ..
        }) => {
            assert_eq!(
                (event_id, key.as_str(), from, to),
                (old.id, "person-registered", 1, 2)
            );
        }
        other => panic!("expected an upcast error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failing_upcaster_names_the_event() {
    let store = Arc::new(MemoryLogStore::new());
    let id = AggregateId::new();
    let old = insert_old(&store, "person-registered", id, json!({"nom": "Ada"})).await;
    let domain = Domain::builder()
        .aggregate::<Person>()
        .logstore_arc(store)
        .upcaster("person-registered", 1, split_name)
        .without_global_handlers()
        .build()
        .await
        .unwrap();
    let err = domain.logstore().get_events("person", id).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&old.id.to_string()) && text.contains("has no `name`"),
        "{text}"
    );
}

#[tokio::test]
async fn renamed_keys_are_mapped_before_upcasting() {
    let store = Arc::new(MemoryLogStore::new());
    let id = AggregateId::new();
    insert_old(&store, "person-created", id, json!({"name": "Alan Turing"})).await;
    let domain = Domain::builder()
        .aggregate::<Person>()
        .logstore_arc(store)
        .rename_event("person-created", "person-registered")
        .upcaster("person-registered", 1, split_name)
        .without_global_handlers()
        .build()
        .await
        .unwrap();
    domain.check_schema_versions().await.unwrap();
    let p: Person = domain.load(id).await.unwrap();
    assert_eq!((p.first.as_str(), p.last.as_str()), ("Alan", "Turing"));
}

#[tokio::test]
async fn duplicate_upcasters_are_refused() {
    let err = Domain::builder()
        .aggregate::<Person>()
        .logstore(MemoryLogStore::new())
        .upcaster("person-registered", 1, split_name)
        .upcaster("person-registered", 1, split_name)
        .build()
        .await
        .err()
        .expect("two upcasters for one step must be refused");
    assert_eq!(err.code(), "config");
}
