//! The aggregate cache never makes a stale decision stick, and nothing fails after a commit.

use std::collections::HashMap;
use std::sync::Arc;

use fluvius_core::prelude::*;
use fluvius_core::{ActionCall, ActionSpec, Aggregate, FoldEvent, NewEvent, RetryPolicy};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A hand-written aggregate: `add` emits an event, `ensure` emits nothing when the value is
/// already the target and refuses otherwise.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    value: i64,
    /// Serializing fails while this holds a key the JSON map cannot have (tuple keys).
    #[serde(default)]
    poison: HashMap<(i64, i64), i64>,
}

#[derive(Serialize, Deserialize)]
struct Add {
    by: i64,
}

#[derive(Serialize, Deserialize)]
struct Ensure {
    value: i64,
}

impl Aggregate for Counter {
    const RESOURCE: &'static str = "counter";

    fn actions() -> &'static [ActionSpec] {
        &[
            ActionSpec {
                name: "add",
                evt_key: "added",
                resources: &[],
                version: 1,
            },
            ActionSpec {
                name: "ensure",
                evt_key: "added",
                resources: &[],
                version: 1,
            },
        ]
    }

    async fn execute(&self, mut call: ActionCall<'_>) -> Result<Vec<NewEvent>, Error> {
        match call.action() {
            "add" => {
                let add: Add = call.take_args()?;
                Ok(vec![NewEvent::new("added", 1, add)?])
            }
            "ensure" => {
                let ensure: Ensure = call.take_args()?;
                if ensure.value == self.value {
                    Ok(Vec::new())
                } else {
                    Err(Error::rejected(DomainError::new(
                        "mismatch",
                        format!("value is {}, not {}", self.value, ensure.value),
                    )))
                }
            }
            _ => Err(call.unknown_action()),
        }
    }

    fn apply(&mut self, mut event: FoldEvent<'_>) -> Result<(), Error> {
        match event.key() {
            "added" => {
                let add: Add = event.decode()?;
                self.value += add.by;
                if add.by == 13 {
                    self.poison.insert((1, 3), 13);
                }
                Ok(())
            }
            _ => Err(event.unknown()),
        }
    }
}

/// Two "app instances" (domains) sharing one store, each with its own cache.
async fn two_instances(retry: RetryPolicy) -> (Domain, Domain) {
    let store = Arc::new(MemoryLogStore::new());
    let build = || async {
        Domain::builder()
            .aggregate::<Counter>()
            .aggregate_as::<Counter>("other-counter")
            .logstore_arc(store.clone())
            .retry(retry)
            .without_global_handlers()
            .build()
            .await
            .unwrap()
    };
    (build().await, build().await)
}

fn add(id: AggregateId, by: i64) -> Command {
    Command::new("counter", id, "add", json!({ "by": by }))
}

#[tokio::test]
async fn a_stale_cache_entry_is_not_a_conflict_even_without_retries() {
    let (a, b) = two_instances(RetryPolicy::never()).await;
    let id = AggregateId::new();
    a.process_command(add(id, 1)).await.unwrap(); // a caches v1
    b.process_command(add(id, 1)).await.unwrap(); // the store moves to v2 behind a's back
    let r = a.process_command(add(id, 1)).await.expect("no race was lost");
    assert_eq!(r.version, 3);
    let c: Counter = b.load(id).await.unwrap();
    assert_eq!(c.value, 3);
}

#[tokio::test]
async fn a_no_event_decision_on_a_stale_cache_is_made_again_on_fresh_state() {
    let (a, b) = two_instances(RetryPolicy::default()).await;
    let id = AggregateId::new();
    a.process_command(add(id, 5)).await.unwrap(); // a caches value 5
    b.process_command(add(id, 1)).await.unwrap(); // really 6 now
    let stale = a
        .process_command(Command::new("counter", id, "ensure", json!({"value": 5})).returning_state())
        .await;
    match stale {
        Err(Error::Rejected(e)) => assert_eq!(e.code(), "mismatch"),
        other => panic!("a decision on stale state stuck: {other:?}"),
    }
    let fresh = a
        .process_command(Command::new("counter", id, "ensure", json!({"value": 6})).returning_state())
        .await
        .unwrap();
    assert_eq!(
        (fresh.version, fresh.state.unwrap()["value"].clone()),
        (2, json!(6))
    );
}

#[tokio::test]
async fn a_refusal_on_a_stale_cache_is_made_again_on_fresh_state() {
    let (a, b) = two_instances(RetryPolicy::default()).await;
    let id = AggregateId::new();
    a.process_command(add(id, 5)).await.unwrap();
    b.process_command(add(id, 1)).await.unwrap();
    // On a's stale state (5) this would be refused; on the store's state (6) it passes.
    let r = a
        .process_command(Command::new("counter", id, "ensure", json!({"value": 6})))
        .await
        .unwrap();
    assert_eq!(r.version, 2);
}

#[tokio::test]
async fn a_state_that_cannot_be_returned_fails_before_anything_is_written() {
    let (a, _) = two_instances(RetryPolicy::default()).await;
    let id = AggregateId::new();
    let cmd = add(id, 13).returning_state();
    let command_id = cmd.id;
    let err = a
        .process_command(cmd)
        .await
        .expect_err("the state does not serialize");
    assert_eq!(err.code(), "serialization");
    assert!(a.logstore().get_events("counter", id).await.unwrap().is_empty());
    assert!(a.logstore().get_command(command_id).await.unwrap().is_none());
    // Without asking for the state, the same change goes through.
    assert_eq!(a.process_command(add(id, 13)).await.unwrap().version, 1);
}

#[tokio::test]
async fn a_replay_folds_with_the_aggregate_of_the_recorded_resource() {
    let (a, _) = two_instances(RetryPolicy::default()).await;
    let id = AggregateId::new();
    let first = a.process_command(add(id, 2)).await.unwrap();
    // The same command id, now aimed at the other resource: the first response comes back.
    let again = Command::new("other-counter", AggregateId::new(), "add", json!({"by": 7}))
        .with_id(first.command_id)
        .returning_state();
    let replayed = a.process_command(again).await.unwrap();
    assert!(replayed.replayed);
    assert_eq!(replayed.resource, "counter");
    assert_eq!(replayed.state.unwrap()["value"], json!(2));
}

#[tokio::test]
async fn an_append_at_a_huge_version_is_refused_not_overflowed() {
    let store = MemoryLogStore::new();
    let id = AggregateId::new();
    let mut event = Event::example();
    event.resource = "counter".into();
    event.aggregate_id = id;
    event.aggregate_version = 0; // what u64::MAX + 1 would wrap to
    let request = fluvius_core::AppendRequest::new("counter", id, u64::MAX, vec![event]);
    match store.append(request).await {
        Err(Error::InvalidAppend(msg)) => assert!(msg.contains("too large"), "{msg}"),
        other => panic!("expected InvalidAppend, got {other:?}"),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Versioned {
    n: i64,
}

#[derive(Serialize, Deserialize)]
struct Bumped {
    n: i64,
}

#[aggregate(resource = "versioned")]
impl Versioned {
    #[action(evt_key = "bumped", version = 2)]
    fn bump(&self, n: i64) -> Result<Bumped, DomainError> {
        Ok(Bumped { n })
    }

    #[apply("bumped")]
    fn bumped(&mut self, e: Bumped) {
        self.n = e.n;
    }
}

#[tokio::test]
async fn an_upcaster_past_the_version_actions_write_is_refused() {
    fn lift(v: serde_json::Value) -> Result<serde_json::Value, fluvius_core::UpcastError> {
        Ok(v)
    }
    let err = Domain::builder()
        .aggregate::<Versioned>()
        .logstore(MemoryLogStore::new())
        .upcaster("bumped", 1, lift)
        .upcaster("bumped", 2, lift)
        .without_global_handlers()
        .build()
        .await
        .err()
        .expect("an upcaster from the current version must be refused");
    assert_eq!(err.code(), "config");
    assert!(err.to_string().contains("upcaster from version 2"), "{err}");
}
