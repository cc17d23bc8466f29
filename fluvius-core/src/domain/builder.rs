//! Building a [`Domain`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::command::Command;
use crate::dispatch::{DispatchOptions, Dispatcher};
use crate::error::DomainError;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::future::BoxFuture;
use crate::handler::{check_table, global_handlers, HandlerEntry, HandlerError, HandlerRegistration};
use crate::logstore::LogStore;
use crate::name::{validate_name, Name};
use crate::pattern::Pattern;
use crate::projection::Projection;
use crate::retry::{HandlerRetry, RetryPolicy};
use crate::transactional::{AppendTx, TransactionalFn, TransactionalHandlers};
use crate::upcast::{UpcastFn, UpcasterRegistration, Upcasters, UpcastingStore};

use super::cache::AggregateCache;
use super::registry::{ErasedAggregate, Registered};
use super::{Domain, Inner, Policy, Route};

/// The namespace of a domain that sets none.
const DEFAULT_NAMESPACE: &str = "default";

type GlobalFilter = Box<dyn Fn(&HandlerRegistration) -> bool + Send>;

/// Builder for [`Domain`]; start with [`Domain::builder`].
pub struct DomainBuilder {
    namespace: String,
    revision: u32,
    aggregates: Vec<(String, Arc<dyn ErasedAggregate>)>,
    upcasters: Vec<(String, u32, UpcastFn, String)>,
    renames: Vec<(String, String)>,
    store: Option<Arc<dyn LogStore>>,
    handlers: Vec<Result<HandlerEntry>>,
    global_handlers: bool,
    global_filter: Option<GlobalFilter>,
    policy: Option<Policy>,
    retry: RetryPolicy,
    max_payload_bytes: usize,
    cache_capacity: usize,
    snapshot_every: HashMap<std::any::TypeId, u64>,
    dispatch: DispatchOptions,
    projections: Vec<Arc<dyn Projection>>,
    transactional: Vec<Result<(String, Pattern, Box<TransactionalFn>)>>,
    aggregate_turns: bool,
    /// Filled with the domain once built, for saga handlers.
    saga_domain: tokio::sync::watch::Sender<Option<std::sync::Weak<Inner>>>,
}

/// The default number of aggregates whose state each resource keeps cached.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// The default limit on a command's arguments and on each event payload (serialized JSON).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;

impl DomainBuilder {
    pub(crate) fn new() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.into(),
            revision: 1,
            aggregates: Vec::new(),
            upcasters: Vec::new(),
            renames: Vec::new(),
            store: None,
            handlers: Vec::new(),
            global_handlers: true,
            global_filter: None,
            policy: None,
            retry: RetryPolicy::default(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            snapshot_every: HashMap::new(),
            dispatch: DispatchOptions::default(),
            projections: Vec::new(),
            transactional: Vec::new(),
            aggregate_turns: true,
            saga_domain: tokio::sync::watch::Sender::new(None),
        }
    }

    /// The domain's namespace (default `"default"`), e.g. `"user-profile"`. Commands that name
    /// another namespace are refused; events record it.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The domain's revision (default 1), for your own bookkeeping.
    pub fn revision(mut self, revision: u32) -> Self {
        self.revision = revision;
        self
    }

    /// Register an aggregate under its own resource name (`A::RESOURCE`).
    pub fn aggregate<A: Aggregate>(self) -> Self {
        self.aggregate_as::<A>(A::RESOURCE)
    }

    /// Register an aggregate under another resource name as well; actions whose
    /// `resources = [...]` list does not include it refuse commands addressed to it.
    pub fn aggregate_as<A: Aggregate>(mut self, resource: impl Into<String>) -> Self {
        self.aggregates
            .push((resource.into(), Arc::new(Registered::<A>::new())));
        self
    }

    /// Register an upcaster for `key` from schema version `from` to `from + 1` (in addition to
    /// those declared with `#[upcast]`).
    pub fn upcaster(mut self, key: &str, from: u32, upcast: UpcastFn) -> Self {
        self.upcasters
            .push((key.to_owned(), from, upcast, "registered explicitly".into()));
        self
    }

    /// Read events stored under the key `old` as `new` (before upcasting).
    pub fn rename_event(mut self, old: &str, new: &str) -> Self {
        self.renames.push((old.to_owned(), new.to_owned()));
        self
    }

    /// The log store (required).
    pub fn logstore(self, store: impl LogStore) -> Self {
        self.logstore_arc(Arc::new(store))
    }

    /// The log store, shared.
    pub fn logstore_arc(mut self, store: Arc<dyn LogStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Register a handler explicitly. `pattern` is an event key, `"*"` or a prefix such as
    /// `"user-*"`; `name` must be unique in the domain. It is retried as
    /// [`DispatchOptions`] say; [`handler_with_retry`](Self::handler_with_retry) gives it a
    /// policy of its own.
    pub fn handler<F, Fut>(self, name: &str, pattern: &str, handler: F) -> Self
    where
        F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
    {
        self.handler_with_retry(name, pattern, HandlerRetry::new(), handler)
    }

    /// Register a handler explicitly with its own retry policy: how many attempts an event
    /// gets, and the backoff between them, before it is parked for this handler. Settings left
    /// unset in `retry` come from [`DispatchOptions::retry`]; a policy set for this name with
    /// [`DispatchOptions::handler_retry`] overrides it (see [`HandlerRetry`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use fluvius_core::{Domain, Event, HandlerError, HandlerRetry, MemoryLogStore, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fluvius_core::Error> {
    /// let domain = Domain::builder()
    ///     .logstore(MemoryLogStore::new())
    ///     .without_global_handlers()
    ///     // Five attempts, 100 ms then 200 ms, 400 ms, … (at most 5 s) between them.
    ///     .handler_with_retry(
    ///         "send-welcome-email",
    ///         "user-created",
    ///         HandlerRetry::attempts(5)
    ///             .base_backoff(Duration::from_millis(100))
    ///             .max_backoff(Duration::from_secs(5)),
    ///         |event: Arc<Event>| async move { Ok::<(), HandlerError>(()) },
    ///     )
    ///     // A whole `RetryPolicy` works too: one attempt, then parked.
    ///     .handler_with_retry("audit", "*", RetryPolicy::never(), |event: Arc<Event>| async move {
    ///         Ok::<(), HandlerError>(())
    ///     })
    ///     .build()
    ///     .await?;
    /// # drop(domain);
    /// # Ok(()) }
    /// ```
    pub fn handler_with_retry<F, Fut>(
        mut self,
        name: &str,
        pattern: &str,
        retry: impl Into<HandlerRetry>,
        handler: F,
    ) -> Self
    where
        F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
    {
        self.handlers
            .push(HandlerEntry::from_fn(name, pattern, retry.into(), handler));
        self
    }

    /// Register a transactional handler: it runs inside the transaction of every append whose
    /// events match `pattern` (an event key, `"*"` or a prefix such as `"user-*"`), after the
    /// version check and before the commit, and an `Err` refuses the command
    /// ([`Error::RefusedByHandler`]) with nothing stored. See [`crate::transactional`] for what
    /// it gets and the rules; `name` must be unique among the domain's transactional handlers.
    ///
    /// The handler is a closure taking the event and the append's [`AppendTx`] and returning a
    /// boxed future (`Box::pin(async move { … })`) that may borrow both:
    ///
    /// ```
    /// # use fluvius_core::{AppendTx, DomainError, Event};
    /// # fn demo(builder: fluvius_core::DomainBuilder) -> fluvius_core::DomainBuilder {
    /// builder.transactional_handler("audit-backend", "*", |event: &Event, tx: &mut AppendTx<'_>| {
    ///     Box::pin(async move {
    ///         tracing::debug!(key = %event.key, backend = tx.backend(), "inside the append");
    ///         Ok::<(), DomainError>(())
    ///     })
    /// })
    /// # }
    /// ```
    pub fn transactional_handler<F>(mut self, name: &str, pattern: &str, handler: F) -> Self
    where
        F: for<'a, 'b> Fn(
                &'a Event,
                &'a mut AppendTx<'b>,
            ) -> BoxFuture<'a, std::result::Result<(), DomainError>>
            + Send
            + Sync
            + 'static,
    {
        let entry = Pattern::parse(pattern)
            .map(|pattern| (name.to_owned(), pattern, crate::transactional::boxed(handler)));
        self.transactional.push(entry);
        self
    }

    /// Register a saga (process manager): a handler that also gets the [`Domain`], to issue
    /// commands in reaction to events (build them with [`Command::caused_by`]). Delivery is
    /// at-least-once, like every handler; a command built with `caused_by` is idempotent.
    pub fn saga<F, Fut>(mut self, name: &str, pattern: &str, saga: F) -> Self
    where
        F: Fn(Domain, Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
    {
        let saga = Arc::new(saga);
        let domain = self.saga_domain.subscribe();
        self.handlers.push(HandlerEntry::from_fn(
            name,
            pattern,
            HandlerRetry::new(),
            move |event| {
                let (saga, mut domain) = (saga.clone(), domain.clone());
                async move {
                    let weak = domain
                        .wait_for(Option::is_some)
                        .await
                        .map_err(|_| HandlerError::msg("the domain was never built"))?
                        .clone()
                        .expect("waited for Some");
                    let inner = weak
                        .upgrade()
                        .ok_or_else(|| HandlerError::msg("the domain is gone"))?;
                    saga(Domain { inner }, event).await
                }
            },
        ));
        self
    }

    /// Do not pick up the handlers registered with `#[event_handler]` in this binary (tests
    /// that need isolation; users who prefer no global state).
    pub fn without_global_handlers(mut self) -> Self {
        self.global_handlers = false;
        self
    }

    /// Pick up only those `#[event_handler]`s for which `filter` returns true (e.g. by module).
    pub fn global_handlers_filter(
        mut self,
        filter: impl Fn(&HandlerRegistration) -> bool + Send + 'static,
    ) -> Self {
        self.global_handlers = true;
        self.global_filter = Some(Box::new(filter));
        self
    }

    /// An authorization policy, checked before a command runs: `Err(reason)` refuses it with
    /// [`Error::Forbidden`] and nothing is written.
    pub fn authorize(
        mut self,
        policy: impl Fn(&Command) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// The conflict retry policy (see [`RetryPolicy`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The largest command arguments / event payload accepted, in bytes of JSON
    /// (default [`DEFAULT_MAX_PAYLOAD_BYTES`]).
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    /// How many aggregates per resource keep their state and version cached between commands
    /// (default [`DEFAULT_CACHE_CAPACITY`]; 0 turns the cache off). A cached state spares the
    /// load and fold; it is safe with many processes on one store, because a stale entry fails
    /// the append's version check and the command is retried on state read from the store.
    pub fn aggregate_cache(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Whether commands for the same aggregate take turns inside this domain (default: on).
    ///
    /// With turns, a command starts once the previous command on its aggregate has appended,
    /// so a hot aggregate queues instead of conflicting (commands from other processes still
    /// race and are retried per the [`RetryPolicy`]). Off, concurrent commands on one aggregate
    /// race like commands from different processes: all but one conflict, and are retried.
    pub fn aggregate_turns(mut self, on: bool) -> Self {
        self.aggregate_turns = on;
        self
    }

    /// Take a snapshot of aggregate `A` every `n` events, whatever
    /// [`Aggregate::SNAPSHOT_EVERY`] says (0 turns its snapshots off). Applies to every resource
    /// `A` is registered under.
    pub fn snapshot_every<A: Aggregate>(mut self, n: u64) -> Self {
        self.snapshot_every.insert(std::any::TypeId::of::<A>(), n);
        self
    }

    /// How handlers are fed from the log: poll interval, leases, retries and start position,
    /// per handler or for all (see [`DispatchOptions`]).
    pub fn dispatch(mut self, options: DispatchOptions) -> Self {
        self.dispatch = options;
        self
    }

    /// Register a projection: a read model fed from the log with its own position (see
    /// [`Projection`]).
    pub fn projection(mut self, projection: impl Projection) -> Self {
        self.projections.push(Arc::new(projection));
        self
    }

    /// Check the configuration and start the dispatcher. Must be called inside a tokio runtime.
    pub async fn build(self) -> Result<Domain> {
        let store = self
            .store
            .ok_or_else(|| Error::Config("no log store: call `.logstore(...)` on the builder".into()))?;
        // Every name the domain writes is checked here, once, for every store alike.
        validate_name("namespace", &self.namespace)?;
        let mut aggregates = HashMap::new();
        for (resource, agg) in self.aggregates {
            validate_name("resource", &resource)?;
            for spec in agg.actions() {
                validate_name("action", spec.name)?;
                validate_name("event key", spec.evt_key)?;
            }
            let snapshot_every = match self.snapshot_every.get(&agg.type_id()) {
                Some(&n) => Some(n).filter(|&n| n > 0),
                None => agg.snapshot_every(),
            };
            // The aggregate's own resource name is a literal: events and records then carry it
            // without reference counting.
            let name = if resource == agg.type_resource() {
                Name::from_static(agg.type_resource())
            } else {
                Name::from(resource.as_str())
            };
            let route = Route {
                resource: name,
                aggregate: agg,
                cache: AggregateCache::new(self.cache_capacity),
                snapshot_every,
            };
            if let Some(prev) = aggregates.insert(resource.clone(), route) {
                return Err(Error::Config(format!(
                    "resource `{resource}` is registered twice (first by the aggregate of resource `{}`)",
                    prev.aggregate.type_resource()
                )));
            }
        }
        let mut upcasters = Upcasters::default();
        for route in aggregates.values() {
            for spec in route.aggregate.actions() {
                upcasters.declare_current(spec.evt_key, spec.version);
            }
        }
        for (key, from, f, origin) in self.upcasters {
            upcasters.add(&key, from, f, origin)?;
        }
        for reg in inventory::iter::<UpcasterRegistration> {
            upcasters.add(reg.key, reg.from, reg.upcast, reg.origin.to_owned())?;
        }
        for (old, new) in &self.renames {
            upcasters.rename(old, new)?;
        }
        let gaps = upcasters.gaps();
        if !gaps.is_empty() {
            return Err(Error::Config(format!(
                "incomplete upcaster chains: {}",
                gaps.join("; ")
            )));
        }
        let upcasters = Arc::new(upcasters);
        let transactional = self.transactional.into_iter().collect::<Result<Vec<_>>>()?;
        for (name, _, _) in &transactional {
            validate_name("transactional handler", name)?;
        }
        for projection in &self.projections {
            validate_name("projection", projection.name())?;
        }
        let transactional = TransactionalHandlers::new(transactional)?;
        if !transactional.is_empty() && !store.runs_transactional_handlers() {
            return Err(Error::Config(format!(
                "the `{}` log store cannot run transactional handlers ({:?})",
                store.backend(),
                transactional
            )));
        }
        let raw_store = store.clone();
        let store: Arc<dyn LogStore> = if upcasters.is_empty() {
            store
        } else {
            Arc::new(UpcastingStore {
                inner: store,
                upcasters: upcasters.clone(),
            })
        };
        let mut entries = self.handlers.into_iter().collect::<Result<Vec<_>>>()?;
        if self.global_handlers {
            for reg in global_handlers() {
                if self.global_filter.as_ref().is_none_or(|f| f(reg)) {
                    entries.push(HandlerEntry::from_registration(reg)?);
                }
            }
        }
        let entries = check_table(entries)?;
        if !(entries.is_empty() && self.projections.is_empty())
            && tokio::runtime::Handle::try_current().is_err()
        {
            return Err(Error::Config(
                "Domain::build must run inside a tokio runtime when handlers are registered".into(),
            ));
        }
        let dispatcher = Dispatcher::start(entries, self.projections, store.clone(), self.dispatch).await?;
        tracing::debug!(
            namespace = %self.namespace,
            store = store.backend(),
            handlers = ?dispatcher.handler_names().collect::<Vec<_>>(),
            "domain built"
        );
        let domain = Domain {
            inner: Arc::new(Inner {
                namespace: if self.namespace == DEFAULT_NAMESPACE {
                    Name::from_static(DEFAULT_NAMESPACE)
                } else {
                    Name::from(self.namespace)
                },
                revision: self.revision,
                aggregates,
                store,
                raw_store,
                upcasters,
                policy: self.policy,
                retry: self.retry,
                dispatcher,
                max_payload_bytes: self.max_payload_bytes,
                transactional: (!transactional.is_empty()).then_some(transactional),
                turns: self.aggregate_turns.then(super::turns::Turns::new),
            }),
        };
        self.saga_domain.send_replace(Some(Arc::downgrade(&domain.inner)));
        Ok(domain)
    }
}
