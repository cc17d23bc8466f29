//! The domain: routes commands to aggregates and runs the command pipeline.

mod builder;
mod cache;
mod pipeline;
mod registry;
mod snapshot;
mod traced;
mod turns;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use builder::{DomainBuilder, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_PAYLOAD_BYTES};

use crate::aggregate::{ActionSpec, Aggregate};
use crate::checkpoint::DeadLetter;
use crate::command::Command;
use crate::dispatch::{Dispatcher, HandlerStats, ProjectionStatus};
use crate::error::{Error, Result};
use crate::id::AggregateId;
use crate::logstore::{CommandRecord, LogStore, StreamQuery};
use crate::name::Name;
use crate::response::Response;
use crate::retry::RetryPolicy;
use crate::transactional::TransactionalHandlers;
use crate::upcast::Upcasters;

pub(crate) use pipeline::fold_new;
use registry::ErasedAggregate;

/// One registered resource: its aggregate type, that resource's cache and snapshot interval.
struct Route {
    /// The resource name, shared by every event of the resource.
    resource: Name,
    aggregate: Arc<dyn ErasedAggregate>,
    cache: cache::AggregateCache,
    snapshot_every: Option<u64>,
}

pub(crate) type Policy = Arc<dyn Fn(&Command) -> std::result::Result<(), String> + Send + Sync>;

/// An event-sourced domain: aggregates, a log store, handlers.
///
/// Cheap to clone (shared inside). See the crate docs for a full example.
#[derive(Clone)]
pub struct Domain {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: Name,
    revision: u32,
    aggregates: HashMap<String, Route>,
    store: Arc<dyn LogStore>,
    /// The store without the upcasting view, for schema checks.
    raw_store: Arc<dyn LogStore>,
    upcasters: Arc<Upcasters>,
    policy: Option<Policy>,
    retry: RetryPolicy,
    dispatcher: Dispatcher,
    max_payload_bytes: usize,
    /// Run inside the transaction of appends they want (`None`: there are none).
    transactional: Option<TransactionalHandlers>,
    /// Per-aggregate turns (`None`: commands on one aggregate race, see
    /// [`DomainBuilder::aggregate_turns`]).
    turns: Option<turns::Turns>,
}

impl Domain {
    /// Start building a domain.
    pub fn builder() -> DomainBuilder {
        DomainBuilder::new()
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The revision.
    pub fn revision(&self) -> u32 {
        self.inner.revision
    }

    /// The log store: the audit trail (`get_events`, `get_events_until`, `read_all`, …).
    pub fn logstore(&self) -> &Arc<dyn LogStore> {
        &self.inner.store
    }

    /// Process one command: route, load, decide, record, append (with optimistic concurrency
    /// and the retry policy), respond, and hand the new events to the handlers.
    ///
    /// On any error but [`Error::OutcomeUnknown`] nothing is written. That one (named after
    /// the command's id) means the store could not tell whether the command was stored:
    /// resend it with the same id. A command id that was already processed returns the first
    /// response (with `replayed: true`) and writes nothing.
    ///
    /// A command without an aggregate id (e.g. [`Command::create`]) gets a new id from the
    /// domain; nothing can be stored under it yet, so it is decided on the default state
    /// without reading the store.
    pub fn process_command(&self, command: Command) -> impl Future<Output = Result<Response>> + Send + '_ {
        let span = tracing::info_span!(
            "fluvius.command",
            namespace = %self.inner.namespace,
            resource = %command.resource,
            action = %command.action,
            command_id = %command.id,
            aggregate_id = tracing::field::Empty,
            version = tracing::field::Empty,
            attempts = tracing::field::Empty,
        );
        // Not an `async fn`: the command moves straight into `process`'s future, which
        // `Traced` polls in place (an outer async wrapper would keep a second copy of the
        // command and move the whole inner future once more per command).
        traced::Traced::new(self.process(command), span)
    }

    async fn process(&self, mut command: Command) -> Result<Response> {
        let inner = &*self.inner;
        command.validate_names()?;
        // 1. Route.
        if let Some(ns) = &command.namespace {
            if *ns != inner.namespace {
                return Err(Error::UnknownNamespace {
                    expected: inner.namespace.to_string(),
                    got: ns.clone(),
                });
            }
        }
        let route =
            inner
                .aggregates
                .get(command.resource.as_str())
                .ok_or_else(|| Error::UnknownResource {
                    resource: command.resource.to_string(),
                })?;
        let aggregate = &route.aggregate;
        let spec = ActionSpec::route(aggregate.action(&command.action), &command)?;
        let args = command.args.to_payload().map_err(|e| match e {
            Error::InvalidPayload { path, message, .. } => Error::InvalidPayload {
                action: command.action.to_string(),
                path,
                message,
            },
            other => other,
        })?;
        if args.len() > inner.max_payload_bytes {
            return Err(Error::PayloadTooLarge {
                what: "command arguments",
                size: args.len(),
                limit: inner.max_payload_bytes,
            });
        }
        if let Some(policy) = &inner.policy {
            policy(&command).map_err(|reason| Error::Forbidden { reason })?;
        }

        // Idempotency: a command id seen before gets its first response. The store records
        // command ids in the append's transaction and refuses a second append with the same id
        // (`DuplicateCommand`), so the lookup waits until an attempt did not append: a fresh
        // command (the common case) costs no extra read.

        let new_aggregate = command.aggregate_id.is_none();
        let aggregate_id = command.aggregate_id.unwrap_or_default();
        let span = tracing::Span::current();
        span.record("aggregate_id", tracing::field::display(aggregate_id));
        let resource = route.resource.clone();
        let ctx = pipeline::AttemptContext {
            namespace: &inner.namespace,
            resource: &resource,
            action: Name::from_static(spec.name),
            args,
            max_payload_bytes: inner.max_payload_bytes,
            cache: &route.cache,
            snapshot_every: route.snapshot_every,
            transactional: inner.transactional.as_ref(),
            new_aggregate,
        };
        // Wait for this aggregate's turn (held until the outcome is known).
        let turn = match &inner.turns {
            Some(turns) => Some(turns.take(&resource, aggregate_id).await),
            None => None,
        };
        let mut attempts = 1;
        let outcome = loop {
            match aggregate
                .attempt(
                    &ctx,
                    inner.store.as_ref(),
                    &mut command,
                    aggregate_id,
                    attempts == 1,
                )
                .await
            {
                Ok(outcome) => break outcome,
                Err(Error::Conflict { expected, actual, .. })
                    if command.expected_version.is_none() && attempts < inner.retry.max_attempts =>
                {
                    tracing::debug!(expected, actual, attempt = attempts, "version conflict, retrying");
                    // Boxed, like the other rare paths below: this future is moved at least
                    // once per command, so what only failures need stays out of it.
                    Box::pin(tokio::time::sleep(inner.retry.backoff(attempts))).await;
                    attempts += 1;
                }
                // Nothing was written, so trying again is safe even for a command that named
                // its version: the next attempt checks the same expected version.
                Err(Error::Transient { message, .. }) if attempts < inner.retry.max_attempts => {
                    tracing::debug!(%message, attempt = attempts, "transient store failure, retrying");
                    Box::pin(tokio::time::sleep(inner.retry.backoff(attempts))).await;
                    attempts += 1;
                }
                Err(e) => {
                    // This command may have been processed before (a retry by the caller), or
                    // concurrently: then this run saw that run's state or writes (and was
                    // refused, or conflicted), or the store refused it as a duplicate. Answer
                    // as the first run did.
                    let duplicate = matches!(e, Error::DuplicateCommand { .. });
                    // An append in doubt: the caller is to resend with this id, so name it.
                    let e = match e {
                        Error::OutcomeUnknown {
                            command_id: None,
                            message,
                            source,
                        } => Error::OutcomeUnknown {
                            command_id: Some(command.id),
                            message,
                            source,
                        },
                        e => e,
                    };
                    return match self.first_response(command.id, command.return_state).await {
                        Ok(Some(response)) => Ok(response),
                        Ok(None) if duplicate => Err(Error::store(
                            inner.store.backend(),
                            format!("command {} reported as duplicate but not found", command.id),
                            None,
                        )),
                        Err(lookup) if duplicate => Err(lookup),
                        Ok(None) | Err(_) => Err(e),
                    };
                }
            }
        };
        drop(turn);
        span.record("attempts", attempts);
        if outcome.events.is_empty() {
            // No append, so no duplicate check: a repeated command that decided nothing this
            // time gets its first response if it had one.
            if let Some(first) = self.first_response(command.id, command.return_state).await? {
                return Ok(first);
            }
        }

        // 7. Dispatch after commit.
        inner.dispatcher.dispatch(&outcome.events);
        Ok(Response {
            command_id: command.id,
            resource: command.resource,
            aggregate_id,
            version: outcome.version,
            events: outcome.events,
            state: outcome.state,
            replayed: false,
        })
    }

    /// The first response to `command_id` if it was processed before, rebuilt from its
    /// record. Boxed: only the rare paths (a failure, a command that decided nothing) look,
    /// and the command's own future stays small.
    fn first_response(
        &self,
        command_id: uuid::Uuid,
        with_state: bool,
    ) -> crate::future::BoxFuture<'_, Result<Option<Response>>> {
        Box::pin(async move {
            match self.inner.store.get_command(command_id).await? {
                Some(record) => self.replay(record, with_state).await.map(Some),
                None => Ok(None),
            }
        })
    }

    /// The first response to an already processed command, rebuilt from its record. The
    /// state (if asked for) is folded by the aggregate of the record's own resource, which may
    /// differ from the resource the repeated command names.
    async fn replay(&self, record: CommandRecord, with_state: bool) -> Result<Response> {
        let store = &self.inner.store;
        let events = store
            .read_stream(
                &record.resource,
                record.aggregate_id,
                StreamQuery {
                    from_version: Some(record.version_before + 1),
                    to_version: Some(record.version_after),
                    until: None,
                },
            )
            .await?;
        let state = if with_state {
            let history = store
                .read_stream(
                    &record.resource,
                    record.aggregate_id,
                    StreamQuery {
                        to_version: Some(record.version_after),
                        ..StreamQuery::default()
                    },
                )
                .await?;
            let route = self
                .inner
                .aggregates
                .get(record.resource.as_str())
                .ok_or_else(|| Error::UnknownResource {
                    resource: record.resource.to_string(),
                })?;
            Some(route.aggregate.state_json(&history)?)
        } else {
            None
        };
        Ok(Response {
            command_id: record.id,
            resource: record.resource,
            aggregate_id: record.aggregate_id,
            version: record.version_after,
            events,
            state,
            replayed: true,
        })
    }

    /// The current state of an aggregate (registered under `A::RESOURCE`): its latest snapshot
    /// (when the aggregate takes them) plus the events after it. An aggregate with no events is
    /// `A::default()`.
    pub async fn load<A: Aggregate>(&self, id: AggregateId) -> Result<A> {
        self.load_query(A::RESOURCE, id, StreamQuery::default()).await
    }

    /// Time travel: the state as it was at `at` (events with `timestamp <= at`), from the latest
    /// snapshot at or before `at` plus the events after it up to `at`. (This assumes event
    /// timestamps do not go backwards within one aggregate, which holds for a single clock.)
    pub async fn load_at<A: Aggregate>(&self, id: AggregateId, at: DateTime<Utc>) -> Result<A> {
        self.load_query(
            A::RESOURCE,
            id,
            StreamQuery {
                until: Some(at),
                ..StreamQuery::default()
            },
        )
        .await
    }

    /// The state as it was at `version` (events 1..=version), from the latest snapshot at or
    /// before `version` plus the events after it.
    pub async fn load_at_version<A: Aggregate>(&self, id: AggregateId, version: u64) -> Result<A> {
        self.load_query(
            A::RESOURCE,
            id,
            StreamQuery {
                to_version: Some(version),
                ..StreamQuery::default()
            },
        )
        .await
    }

    /// Load from a stream named by resource, with any [`StreamQuery`] (for aggregates
    /// registered under a second resource name with [`DomainBuilder::aggregate_as`]).
    ///
    /// Snapshots are used when `A` is the aggregate registered under `resource` and takes
    /// them, and the query has no `from_version` (which asks for a fold from that version on).
    pub async fn load_query<A: Aggregate>(
        &self,
        resource: &str,
        id: AggregateId,
        query: StreamQuery,
    ) -> Result<A> {
        let use_snapshots = self.inner.aggregates.get(resource).is_some_and(|route| {
            route.snapshot_every.is_some() && route.aggregate.type_id() == std::any::TypeId::of::<A>()
        });
        let (state, _) =
            snapshot::load::<A>(self.inner.store.as_ref(), resource, id, query, use_snapshots).await?;
        Ok(state)
    }

    /// Check that every (key, schema version) in the log can be lifted to the current version
    /// by the registered upcasters, so a missing upcaster is found at start-up rather than on
    /// the first read of an old event. Scans the log once, in pages.
    pub async fn check_schema_versions(&self) -> Result<()> {
        const PAGE: usize = 1000;
        let mut seen = std::collections::HashSet::new();
        let mut problems = Vec::new();
        let mut after = 0;
        loop {
            let page = self.inner.raw_store.read_all(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            for e in &page {
                if seen.insert((e.key.clone(), e.schema_version)) {
                    if let Err(problem) = self.inner.upcasters.check(&e.key, e.schema_version) {
                        problems.push(problem);
                    }
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "stored events cannot be read: {}",
                problems.join("; ")
            )))
        }
    }

    /// Wait until every handler's checkpoint has reached the head of the log as of the call:
    /// each event committed before the call has been handled (or parked). With handlers
    /// claimed by another app instance, waits for that instance. A projection stopped at an
    /// entry it cannot read is not waited for: [`projection_status`](Self::projection_status)
    /// says where and why it stopped.
    pub async fn wait_idle(&self) {
        self.inner.dispatcher.wait_idle().await
    }

    /// Success / failure / panic / parked counts per handler in this process, sorted by handler
    /// name.
    pub fn handler_stats(&self) -> Vec<HandlerStats> {
        self.inner.dispatcher.stats()
    }

    /// Where each projection is in this process, sorted as registered: its position, and
    /// whether it is stopped at a stored event it cannot decode or upcast (it never skips
    /// one; it goes on by itself once the entry reads).
    pub fn projection_status(&self) -> Vec<ProjectionStatus> {
        self.inner.dispatcher.projection_status()
    }

    /// A handler's stored checkpoint: the last log position it has processed.
    pub async fn handler_checkpoint(&self, handler: &str) -> Result<Option<u64>> {
        self.inner.dispatcher.checkpoint(handler).await
    }

    /// Events parked (dead letters) for one handler, or for all handlers of the store.
    pub async fn parked(&self, handler: Option<&str>) -> Result<Vec<DeadLetter>> {
        self.inner.dispatcher.parked(handler).await
    }

    /// Run a parked event through its handler once more. `Ok(true)`: it succeeded and is no
    /// longer parked; `Ok(false)`: it failed again and stays parked with the new error.
    pub async fn retry_parked(&self, handler: &str, position: u64) -> Result<bool> {
        self.inner.dispatcher.retry_parked(handler, position).await
    }

    /// Rebuild a projection: clear its read model (and position) and replay the whole log into
    /// it, in the background; [`wait_idle`](Self::wait_idle) waits for the replay.
    pub async fn rebuild_projection(&self, name: &str) -> Result<()> {
        self.inner.dispatcher.rebuild(name).await
    }

    /// Move a handler's checkpoint to `position` (0 replays the whole log to it). The handler
    /// picks up from there at once, in whichever instance holds it.
    pub async fn reset_handler(&self, handler: &str, position: u64) -> Result<()> {
        self.inner.dispatcher.reset(handler, position).await
    }
}
