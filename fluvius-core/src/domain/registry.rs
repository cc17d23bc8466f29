//! Type-erased access to the registered aggregates.

use std::marker::PhantomData;

use crate::aggregate::{ActionCall, ActionSpec, Aggregate};
use crate::command::Command;
use crate::error::Result;
use crate::event::Event;
use crate::future::BoxFuture;
use crate::id::AggregateId;
use crate::logstore::LogStore;

use super::pipeline::{self, Attempt};

/// What the domain needs from an aggregate type, without knowing the type.
pub(crate) trait ErasedAggregate: Send + Sync {
    fn type_resource(&self) -> &'static str;
    fn type_id(&self) -> std::any::TypeId;
    fn snapshot_every(&self) -> Option<u64>;
    fn action(&self, name: &str) -> Option<&'static ActionSpec>;
    fn actions(&self) -> &'static [ActionSpec];
    fn attempt<'a>(
        &'a self,
        ctx: &'a pipeline::AttemptContext<'a>,
        store: &'a dyn LogStore,
        command: &'a mut Command,
        aggregate_id: AggregateId,
        use_cache: bool,
    ) -> BoxFuture<'a, Result<Attempt>>;
    fn state_json(&self, events: &[Event]) -> Result<serde_json::Value>;
}

pub(crate) struct Registered<A>(PhantomData<fn() -> A>);

impl<A> Registered<A> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<A: Aggregate> ErasedAggregate for Registered<A> {
    fn type_resource(&self) -> &'static str {
        A::RESOURCE
    }

    fn type_id(&self) -> std::any::TypeId {
        std::any::TypeId::of::<A>()
    }

    fn snapshot_every(&self) -> Option<u64> {
        A::SNAPSHOT_EVERY.filter(|&n| n > 0)
    }

    fn action(&self, name: &str) -> Option<&'static ActionSpec> {
        A::action(name)
    }

    fn actions(&self) -> &'static [ActionSpec] {
        A::actions()
    }

    fn attempt<'a>(
        &'a self,
        ctx: &'a pipeline::AttemptContext<'a>,
        store: &'a dyn LogStore,
        command: &'a mut Command,
        aggregate_id: AggregateId,
        use_cache: bool,
    ) -> BoxFuture<'a, Result<Attempt>> {
        Box::pin(pipeline::attempt::<A>(
            ctx,
            store,
            command,
            aggregate_id,
            use_cache,
        ))
    }

    fn state_json(&self, events: &[Event]) -> Result<serde_json::Value> {
        let state: A = fold(events)?;
        serde_json::to_value(&state).map_err(|e| crate::Error::serialization("aggregate state", e))
    }
}

/// Fold stored events (a stream from version 1) into a fresh state.
pub(crate) fn fold<A: Aggregate>(events: &[Event]) -> Result<A> {
    let mut state = A::default();
    super::snapshot::fold_into(&mut state, 1, events)?;
    Ok(state)
}

/// Run the decide step (kept apart so its future's borrow of the state ends before the fold).
pub(crate) async fn decide<A: Aggregate>(
    state: &A,
    resource: &str,
    command: &mut Command,
) -> Result<Vec<crate::aggregate::NewEvent>> {
    state
        .execute(ActionCall::new(resource, &command.action, &mut command.args))
        .await
}
