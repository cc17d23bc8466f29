//! One attempt of the command pipeline as named steps: [`load`] (from a [`Start`]),
//! [`decide`], [`record`], [`append`], and the driver [`attempt`] that retries a guess that
//! does not hold on fresh state.

use serde_json::Value;

use crate::aggregate::{Aggregate, FoldEvent, NewEvent};
use crate::clock;
use crate::command::Command;
use crate::error::{Error, Result};
use crate::event::{Event, Metadata};
use crate::future::BoxFuture;
use crate::id::AggregateId;
use crate::logstore::{AppendRequest, CommandRecord, LogStore, Snapshot, StreamQuery};
use crate::name::Name;
use crate::payload::Payload;
use crate::transactional::TransactionalHandlers;

use super::cache::AggregateCache;
use super::registry;
use super::snapshot;

/// Everything an attempt needs that does not change between retries.
pub(crate) struct AttemptContext<'a> {
    pub(crate) namespace: &'a Name,
    pub(crate) resource: &'a Name,
    /// The action's declared name (equal to the command's).
    pub(crate) action: Name,
    pub(crate) args: Payload,
    pub(crate) max_payload_bytes: usize,
    pub(crate) cache: &'a AggregateCache,
    /// Take a snapshot every this many events (`None`: never).
    pub(crate) snapshot_every: Option<u64>,
    /// The domain's transactional handlers, if it has any.
    pub(crate) transactional: Option<&'a TransactionalHandlers>,
    /// The domain assigned the aggregate id for this command (the command came without one):
    /// no event can exist under it, so the first attempt starts from the default state
    /// without reading the store.
    pub(crate) new_aggregate: bool,
}

/// The result of a successful attempt.
pub(crate) struct Attempt {
    pub(crate) events: Vec<Event>,
    pub(crate) version: u64,
    pub(crate) state: Option<Value>,
}

/// Where an attempt's state comes from.
enum Start<A> {
    /// A guess: the cached state, or the default state for a command that expects version 0
    /// when nothing is cached. Only an append checks a guess against the store, so a guess
    /// that is refused, decides nothing, or conflicts is decided again on [`Start::Fresh`].
    Cached { state: Box<A>, version: u64 },
    /// The latest snapshot (when the aggregate takes them) plus the events after it.
    Fresh,
    /// The default state of an aggregate whose id the domain just assigned: not a guess, so a
    /// refusal on it is final (should the append still conflict, the domain's retry loads).
    New,
}

impl<A: Aggregate> Start<A> {
    /// The first attempt starts from a guess when it can; a retry (`use_cache` false) loads.
    fn first(
        ctx: &AttemptContext<'_>,
        command: &Command,
        aggregate_id: AggregateId,
        use_cache: bool,
    ) -> Self {
        if !use_cache {
            return Start::Fresh;
        }
        if ctx.new_aggregate {
            return Start::New;
        }
        // A command expecting version 0 says its aggregate is new: without a cached state it
        // is decided on the default state without reading the store.
        match ctx.cache.take::<A>(aggregate_id) {
            Some((state, version)) => Start::Cached { state, version },
            None if command.expected_version == Some(0) => Start::Cached {
                state: Box::default(),
                version: 0,
            },
            None => Start::Fresh,
        }
    }
}

/// What the decide step concluded.
enum Decision {
    /// The events to record (none: nothing to append, on a state that is not a guess).
    Events(Vec<NewEvent>),
    /// A guess that does not hold (another version than the command expects, a refusal, or
    /// no events): decide again on fresh state.
    Again,
    /// The action refused the command on a state that is not a guess: final.
    Refused(Error),
}

/// The appendable parts of a decision: what the record step produces.
struct Recorded {
    events: Vec<Event>,
    command: CommandRecord,
    snapshot: Option<Snapshot>,
    version_after: u64,
}

/// One attempt: load, decide, record, append. A guess (the cached state, or the default
/// state of a command expecting version 0) that does not hold gets one more try on fresh state
/// that does not count against the retry policy: a conflict there means the cache entry was
/// stale (another process appended), not a race this command lost.
pub(crate) async fn attempt<A: Aggregate>(
    ctx: &AttemptContext<'_>,
    store: &dyn LogStore,
    command: &mut Command,
    aggregate_id: AggregateId,
    use_cache: bool,
) -> Result<Attempt> {
    let mut start = Start::first(ctx, command, aggregate_id, use_cache);
    loop {
        let guess = matches!(start, Start::Cached { .. });
        let (mut state, version) = load::<A>(ctx, store, aggregate_id, start).await?;
        let mut decided = match decide(ctx, command, aggregate_id, &*state, version, guess).await? {
            Decision::Events(decided) => decided,
            Decision::Again => {
                start = Start::Fresh;
                continue;
            }
            Decision::Refused(e) => {
                ctx.cache.put(aggregate_id, state, version);
                return Err(e);
            }
        };
        if decided.is_empty() {
            let state_json = return_state(command, &*state)?;
            ctx.cache.put(aggregate_id, state, version);
            return Ok(Attempt {
                events: Vec::new(),
                version,
                state: state_json,
            });
        }
        // Everything that can fail is done before the append: after it, the command has
        // happened.
        let prepared = record(ctx, command, aggregate_id, &mut *state, version, &mut decided)
            .and_then(|recorded| Ok((recorded, return_state(command, &*state)?)));
        let appended = match prepared {
            Ok((recorded, state_json)) => {
                let version_after = recorded.version_after;
                append(ctx, store, aggregate_id, version, recorded)
                    .await
                    .map(|stored| (stored, version_after, state_json))
            }
            Err(e) => Err(e),
        };
        match appended {
            Ok((stored, version_after, state_json)) => {
                ctx.cache.put(aggregate_id, state, version_after);
                return Ok(Attempt {
                    events: stored,
                    version: version_after,
                    state: state_json,
                });
            }
            Err(Error::Conflict { .. }) if guess => {
                tracing::debug!("stale cache entry, reloading from the store");
                start = Start::Fresh;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Load: the state and version `start` names; versions must be dense (`corrupt_stream`).
async fn load<A: Aggregate>(
    ctx: &AttemptContext<'_>,
    store: &dyn LogStore,
    aggregate_id: AggregateId,
    start: Start<A>,
) -> Result<(Box<A>, u64)> {
    match start {
        Start::Cached { state, version } => Ok((state, version)),
        Start::New => Ok((Box::default(), 0)),
        Start::Fresh => snapshot::load::<A>(
            store,
            ctx.resource,
            aggregate_id,
            StreamQuery::default(),
            ctx.snapshot_every.is_some(),
        )
        .await
        .map(|(state, version)| (Box::new(state), version)),
    }
}

/// Decide: check the command's expected version, then run the action on `state`.
async fn decide<A: Aggregate>(
    ctx: &AttemptContext<'_>,
    command: &mut Command,
    aggregate_id: AggregateId,
    state: &A,
    version: u64,
    guess: bool,
) -> Result<Decision> {
    if let Some(expected) = command.expected_version {
        if expected != version {
            if guess {
                return Ok(Decision::Again);
            }
            return Err(Error::Conflict {
                resource: ctx.resource.to_string(),
                aggregate_id,
                expected,
                actual: version,
            });
        }
    }
    // Only an append checks a guess against the store, so a decision on a guess that appends
    // nothing (a refusal, or no events) is made again on fresh state.
    Ok(match registry::decide(state, ctx.resource, command).await {
        Ok(decided) if decided.is_empty() && guess => Decision::Again,
        Ok(decided) => Decision::Events(decided),
        Err(_) if guess => Decision::Again,
        Err(e) => Decision::Refused(e),
    })
}

/// Record: the `Event`s (each folded into `state` first, see [`fold_new`]), the
/// `CommandRecord` and, when the append reaches a multiple of `snapshot_every`, a `Snapshot`.
fn record<A: Aggregate>(
    ctx: &AttemptContext<'_>,
    command: &Command,
    aggregate_id: AggregateId,
    state: &mut A,
    version: u64,
    decided: &mut [NewEvent],
) -> Result<Recorded> {
    let timestamp = clock::now();
    let millis = u64::try_from(timestamp.timestamp_millis()).unwrap_or(0);
    let correlation_id = command.context.correlation_id.unwrap_or(command.id);
    let causation_id = command.context.causation_id.unwrap_or(command.id);
    let events = fold_new(state, ctx.resource, version, decided, |new, event_version| {
        if new.payload.len() > ctx.max_payload_bytes {
            return Err(Error::PayloadTooLarge {
                what: "event payload",
                size: new.payload.len(),
                limit: ctx.max_payload_bytes,
            });
        }
        Ok(Event {
            id: crate::id::uuid_v7_at(millis),
            position: 0,
            namespace: ctx.namespace.clone(),
            resource: ctx.resource.clone(),
            aggregate_id,
            aggregate_version: event_version,
            key: Name::from_static(new.key),
            schema_version: new.schema_version,
            payload: new.payload.clone(),
            args: ctx.args.clone(),
            command_id: command.id,
            command_name: ctx.action.clone(),
            timestamp,
            metadata: Metadata {
                correlation_id,
                causation_id,
                user_id: command.context.user_id.clone(),
                tenant_id: command.context.tenant_id.clone(),
                extra: Default::default(),
            },
        })
    })?;
    let version_after = version + events.len() as u64;
    let record = CommandRecord {
        id: command.id,
        namespace: ctx.namespace.clone(),
        resource: ctx.resource.clone(),
        aggregate_id,
        action: ctx.action.clone(),
        args: ctx.args.clone(),
        context: command.context.clone(),
        version_before: version,
        version_after,
        timestamp,
    };
    let snapshot = match ctx.snapshot_every {
        Some(every) if snapshot::crosses(every, version, version_after) => snapshot::take(state, &events),
        _ => None,
    };
    Ok(Recorded {
        events,
        command: record,
        snapshot,
        version_after,
    })
}

/// The record step's fold, shared with [`AggregateTest`](crate::harness::AggregateTest): for
/// each decided event in order, `make` turns it into what is recorded (given the event's
/// version), then the event is folded into `state`. An event the aggregate cannot apply fails
/// the step, so it is never recorded.
pub(crate) fn fold_new<A: Aggregate, T>(
    state: &mut A,
    resource: &str,
    version: u64,
    decided: &mut [NewEvent],
    mut make: impl FnMut(&NewEvent, u64) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(decided.len());
    for (i, new) in decided.iter_mut().enumerate() {
        let event_version = version + 1 + i as u64;
        let made = make(new, event_version)?;
        state.apply(FoldEvent::fresh(resource, event_version, new))?;
        out.push(made);
    }
    Ok(out)
}

/// Append: one request with the expected version (the snapshot in the same transaction, the
/// transactional handlers that want the events). Built in place: the request (with its
/// command record) is ~500 bytes, and builder calls move it.
fn append<'a>(
    ctx: &AttemptContext<'_>,
    store: &'a dyn LogStore,
    aggregate_id: AggregateId,
    version: u64,
    recorded: Recorded,
) -> BoxFuture<'a, Result<Vec<Event>>> {
    let transactional = ctx.transactional.filter(|h| h.wants(&recorded.events)).cloned();
    store.append(AppendRequest {
        resource: ctx.resource.clone(),
        aggregate_id,
        expected_version: version,
        events: recorded.events,
        command: Some(recorded.command),
        snapshot: recorded.snapshot,
        transactional,
        // The domain's namespace, the resource and the event keys were checked when the domain
        // was built, the command's names and context when it arrived.
        names_checked: true,
    })
}

/// The state as JSON when the command asks for it.
fn return_state<A: Aggregate>(command: &Command, state: &A) -> Result<Option<Value>> {
    command.return_state.then(|| state_value(state)).transpose()
}

fn state_value<A: Aggregate>(state: &A) -> Result<Value> {
    serde_json::to_value(state).map_err(|e| Error::serialization("aggregate state", e))
}
