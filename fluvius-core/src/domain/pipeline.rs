//! One attempt of the command pipeline: load, decide, record, append.

use serde_json::Value;

use crate::aggregate::{Aggregate, FoldEvent};
use crate::clock;
use crate::command::Command;
use crate::error::{Error, Result};
use crate::event::{Event, Metadata};
use crate::id::AggregateId;
use crate::logstore::{AppendRequest, CommandRecord, LogStore, StreamQuery};
use crate::name::Name;
use crate::payload::Payload;
use crate::transactional::TransactionalHandlers;

use super::cache::AggregateCache;
use super::registry::decide;
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

/// One attempt. A conflict on an attempt that started from the cache means the entry was
/// stale (another process appended): that is not a race this command lost, so it gets one
/// more try on fresh state that does not count against the retry policy.
pub(crate) async fn attempt<A: Aggregate>(
    ctx: &AttemptContext<'_>,
    store: &dyn LogStore,
    command: &mut Command,
    aggregate_id: AggregateId,
    use_cache: bool,
) -> Result<Attempt> {
    if use_cache {
        match attempt_once::<A>(ctx, store, command, aggregate_id, true).await {
            Err((Error::Conflict { .. }, true)) => {
                tracing::debug!("stale cache entry, reloading from the store");
            }
            other => return other.map_err(|(e, _)| e),
        }
    }
    attempt_once::<A>(ctx, store, command, aggregate_id, false)
        .await
        .map_err(|(e, _)| e)
}

/// The attempt proper; on error also says whether it started from a cached state.
async fn attempt_once<A: Aggregate>(
    ctx: &AttemptContext<'_>,
    store: &dyn LogStore,
    command: &mut Command,
    aggregate_id: AggregateId,
    use_cache: bool,
) -> std::result::Result<Attempt, (Error, bool)> {
    // Load: the cached state if there is one, else the latest snapshot (when the aggregate
    // takes them) plus the events after it. Decisions made on cached state are only trusted
    // when they lead to an append (checked by the expected version); a refusal or a version
    // mismatch on cached state is decided again on fresh state.
    // A command expecting version 0 says its aggregate is new: without a cached state it is
    // decided on the default state without reading the store, as on a cached guess (checked by
    // the append's expected version; a refusal, or an aggregate that exists after all, is
    // decided again on what is stored).
    let mut cached = if use_cache && !ctx.new_aggregate {
        ctx.cache
            .take::<A>(aggregate_id)
            .or_else(|| (command.expected_version == Some(0)).then(|| (Box::default(), 0)))
    } else {
        None
    };
    let mut new_aggregate = use_cache && ctx.new_aggregate;
    let (mut state, version, mut decided, used_cache) = loop {
        let from_cache = cached.is_some();
        let (state, version) = match cached.take() {
            Some(entry) => entry,
            // Not a guess like a cached state: the id is new, so this is the true state, and
            // a refusal on it is final. (Should the append still conflict, the retry loads.)
            None if std::mem::take(&mut new_aggregate) => (Box::default(), 0),
            None => snapshot::load::<A>(
                store,
                ctx.resource,
                aggregate_id,
                StreamQuery::default(),
                ctx.snapshot_every.is_some(),
            )
            .await
            .map(|(state, version)| (Box::new(state), version))
            .map_err(|e| (e, false))?,
        };
        if let Some(expected) = command.expected_version {
            if expected != version {
                if from_cache {
                    continue;
                }
                return Err((
                    Error::Conflict {
                        resource: ctx.resource.to_string(),
                        aggregate_id,
                        expected,
                        actual: version,
                    },
                    false,
                ));
            }
        }
        // Decide.
        // Only an append checks a cached state against the store, so a decision on cached
        // state that appends nothing (a refusal, or no events) is made again on fresh state.
        match decide(&*state, ctx.resource, command).await {
            Ok(decided) if decided.is_empty() && from_cache => continue,
            Ok(decided) => break (state, version, decided, from_cache),
            Err(_) if from_cache => continue,
            Err(e) => {
                ctx.cache.put(aggregate_id, state, version);
                return Err((e, false));
            }
        }
    };
    let fail = |e: Error| (e, used_cache);
    if decided.is_empty() {
        let state_json = command
            .return_state
            .then(|| state_value(&*state))
            .transpose()
            .map_err(fail)?;
        ctx.cache.put(aggregate_id, state, version);
        return Ok(Attempt {
            events: Vec::new(),
            version,
            state: state_json,
        });
    }

    // Record, folding each new event first: an event the aggregate cannot apply is never stored.
    let timestamp = clock::now();
    let millis = u64::try_from(timestamp.timestamp_millis()).unwrap_or(0);
    let correlation_id = command.context.correlation_id.unwrap_or(command.id);
    let causation_id = command.context.causation_id.unwrap_or(command.id);
    let mut events = Vec::with_capacity(decided.len());
    for (i, new) in decided.iter_mut().enumerate() {
        if new.payload.len() > ctx.max_payload_bytes {
            return Err(fail(Error::PayloadTooLarge {
                what: "event payload",
                size: new.payload.len(),
                limit: ctx.max_payload_bytes,
            }));
        }
        let event_version = version + 1 + i as u64;
        state
            .apply(FoldEvent::fresh(ctx.resource, event_version, new))
            .map_err(fail)?;
        events.push(Event {
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
        });
    }
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

    // A snapshot of the new state, when this append reaches a multiple of the interval.
    let snapshot = match ctx.snapshot_every {
        Some(every) if snapshot::crosses(every, version, version_after) => snapshot::take(&*state, &events),
        _ => None,
    };

    // Append with the expected version (the snapshot in the same transaction). Built in
    // place: the request (with its command record) is ~500 bytes, and builder calls move it.
    let transactional = ctx.transactional.filter(|h| h.wants(&events)).cloned();
    let request = AppendRequest {
        resource: ctx.resource.clone(),
        aggregate_id,
        expected_version: version,
        events,
        command: Some(record),
        snapshot,
        transactional,
    };
    // Everything that can fail is done before the append: after it, the command has happened.
    let state_json = command
        .return_state
        .then(|| state_value(&*state))
        .transpose()
        .map_err(fail)?;
    let stored = store.append(request).await.map_err(fail)?;
    ctx.cache.put(aggregate_id, state, version_after);
    Ok(Attempt {
        events: stored,
        version: version_after,
        state: state_json,
    })
}

fn state_value<A: Aggregate>(state: &A) -> Result<Value> {
    serde_json::to_value(state).map_err(|e| Error::serialization("aggregate state", e))
}
