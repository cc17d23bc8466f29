//! A small hand-written aggregate for tests that run a whole `Domain` on a SQL store.

use fluvius_core::{ActionCall, ActionSpec, Aggregate, DomainError, Error, FoldEvent, NewEvent};
use serde::{Deserialize, Serialize};

/// A counter: the `add` action emits `added`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    pub value: i64,
}

/// The arguments of `add` and the payload of `added`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Added {
    pub by: i64,
}

impl Aggregate for Counter {
    const RESOURCE: &'static str = "counter";

    fn actions() -> &'static [ActionSpec] {
        &[ActionSpec {
            name: "add",
            evt_key: "added",
            resources: &[],
            version: 1,
        }]
    }

    async fn execute(&self, mut call: ActionCall<'_>) -> Result<Vec<NewEvent>, Error> {
        match call.action() {
            "add" => {
                let added: Added = call.take_args()?;
                if added.by == 0 {
                    return Err(Error::rejected(DomainError::rejected("adding zero")));
                }
                Ok(vec![NewEvent::new("added", 1, added)?])
            }
            _ => Err(call.unknown_action()),
        }
    }

    fn apply(&mut self, mut event: FoldEvent<'_>) -> Result<(), Error> {
        match event.key() {
            "added" => {
                self.value += event.decode::<Added>()?.by;
                Ok(())
            }
            _ => Err(event.unknown()),
        }
    }
}

/// A domain with only the counter, on `store`, without global handlers.
pub async fn domain(store: impl fluvius_core::LogStore) -> fluvius_core::Domain {
    fluvius_core::Domain::builder()
        .namespace("counter-test")
        .aggregate::<Counter>()
        .logstore(store)
        .without_global_handlers()
        .build()
        .await
        .expect("the counter domain builds")
}
