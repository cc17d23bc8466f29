//! Event handlers: what reacts to events after they are committed.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::RetryPolicy;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::future::BoxFuture;

/// The error a handler returns. Any `std::error::Error` converts into it, so `?` works.
///
/// Like [`DomainError`](crate::DomainError) it does not implement `std::error::Error` itself,
/// which is what makes the blanket conversion possible.
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// A failure with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandlerError({:?})", self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(err: E) -> Self {
        Self::msg(err.to_string())
    }
}

/// A handler's own retry policy: how often an event is tried, and how long to wait between
/// tries, before it is parked for that handler.
///
/// Each setting left unset comes from the layer below. From the top:
///
/// 1. [`DispatchOptions::handler_retry`](crate::DispatchOptions::handler_retry), set by name
///    where the domain is built (the deployment has the last word, as
///    [`DomainBuilder::snapshot_every`](crate::DomainBuilder::snapshot_every) has over
///    `#[aggregate(snapshot_every = …)]`);
/// 2. the handler's own policy, given with
///    [`DomainBuilder::handler_with_retry`](crate::DomainBuilder::handler_with_retry) or
///    `#[event_handler("…", max_attempts = 5, base_backoff_ms = 100, max_backoff_ms = 2000)]`;
/// 3. the domain's default, [`DispatchOptions::retry`](crate::DispatchOptions::retry).
///
/// The pause before retry *n* is `base_backoff · 2ⁿ⁻¹`, capped at `max_backoff`, with jitter
/// (see [`RetryPolicy`]).
///
/// ```
/// use std::time::Duration;
/// use fluvius_core::{HandlerRetry, RetryPolicy};
///
/// let domain_default = RetryPolicy {
///     max_attempts: 3,
///     base_backoff: Duration::from_millis(50),
///     max_backoff: Duration::from_secs(2),
/// };
/// // Five attempts; the backoff stays the domain's.
/// let own = HandlerRetry::attempts(5);
/// assert_eq!(own.over(domain_default), RetryPolicy { max_attempts: 5, ..domain_default });
/// // A full policy replaces every setting.
/// let full = HandlerRetry::from(RetryPolicy::never());
/// assert_eq!(full.over(domain_default), RetryPolicy::never());
/// // Nothing set: the default as it is.
/// assert_eq!(HandlerRetry::new().over(domain_default), domain_default);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HandlerRetry {
    max_attempts: Option<u32>,
    base_backoff: Option<Duration>,
    max_backoff: Option<Duration>,
}

impl HandlerRetry {
    /// Nothing set: the handler follows the domain's default.
    pub const fn new() -> Self {
        Self {
            max_attempts: None,
            base_backoff: None,
            max_backoff: None,
        }
    }

    /// Up to `max_attempts` attempts in all (at least 1: 1 means no retry); the backoff is left
    /// to the domain's default.
    pub const fn attempts(max_attempts: u32) -> Self {
        Self::new().max_attempts(max_attempts)
    }

    /// Set the number of attempts in all, the first included (0 counts as 1).
    pub const fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(if max_attempts == 0 { 1 } else { max_attempts });
        self
    }

    /// Set the pause before the first retry; it doubles with each retry.
    pub const fn base_backoff(mut self, backoff: Duration) -> Self {
        self.base_backoff = Some(backoff);
        self
    }

    /// Set the upper bound on one pause.
    pub const fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = Some(backoff);
        self
    }

    /// The settings of `self`, and those of `below` where `self` has none.
    pub(crate) fn or(self, below: Self) -> Self {
        Self {
            max_attempts: self.max_attempts.or(below.max_attempts),
            base_backoff: self.base_backoff.or(below.base_backoff),
            max_backoff: self.max_backoff.or(below.max_backoff),
        }
    }

    /// The policy that results from laying these settings over `default`.
    pub fn over(self, default: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(default.max_attempts),
            base_backoff: self.base_backoff.unwrap_or(default.base_backoff),
            max_backoff: self.max_backoff.unwrap_or(default.max_backoff),
        }
    }
}

impl From<RetryPolicy> for HandlerRetry {
    /// Every setting taken from `policy`.
    fn from(policy: RetryPolicy) -> Self {
        Self {
            max_attempts: Some(policy.max_attempts),
            base_backoff: Some(policy.base_backoff),
            max_backoff: Some(policy.max_backoff),
        }
    }
}

/// The shim `#[event_handler]` generates around a user's `async fn(&Event)`.
pub type HandlerFn = for<'a> fn(&'a Event) -> BoxFuture<'a, Result<(), HandlerError>>;

/// A handler registered at link time by `#[event_handler]` (collected with `inventory`).
#[derive(Clone, Copy, Debug)]
pub struct HandlerRegistration {
    /// Stable handler name: `module::path::fn_name` unless `name = "…"` was given.
    pub name: &'static str,
    /// The event-key pattern: an exact key, `"*"`, or a prefix such as `"user-*"`.
    pub pattern: &'static str,
    /// The module that declared it.
    pub module: &'static str,
    /// The source file that declared it.
    pub file: &'static str,
    /// The line that declared it.
    pub line: u32,
    /// The handler's own retry policy (`max_attempts`, `base_backoff_ms`, `max_backoff_ms`);
    /// unset when the attribute gives none.
    pub retry: HandlerRetry,
    /// The handler.
    pub handler: HandlerFn,
}

inventory::collect!(HandlerRegistration);

/// Every handler registered with `#[event_handler]` in this binary, in unspecified order.
pub fn global_handlers() -> impl Iterator<Item = &'static HandlerRegistration> {
    inventory::iter::<HandlerRegistration>.into_iter()
}

/// Which event keys a handler wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `"*"`: every event.
    All,
    /// An exact key.
    Exact(String),
    /// `"prefix*"`: every key starting with the prefix.
    Prefix(String),
}

impl Pattern {
    /// Parse a pattern: `"*"`, `"user-*"` or `"user-created"`. A `*` anywhere but at the end,
    /// or an empty pattern, is an error.
    ///
    /// ```
    /// use fluvius_core::Pattern;
    /// assert!(Pattern::parse("user-*").unwrap().matches("user-created"));
    /// assert!(!Pattern::parse("user-created").unwrap().matches("user-deleted"));
    /// assert!(Pattern::parse("a*b").is_err());
    /// ```
    pub fn parse(pattern: &str) -> Result<Self> {
        if pattern.is_empty() {
            return Err(Error::Config("empty handler pattern".into()));
        }
        if pattern == "*" {
            return Ok(Pattern::All);
        }
        match pattern.find('*') {
            None => Ok(Pattern::Exact(pattern.to_owned())),
            Some(i) if i == pattern.len() - 1 => Ok(Pattern::Prefix(pattern[..i].to_owned())),
            Some(_) => Err(Error::Config(format!(
                "handler pattern `{pattern}`: `*` is only allowed at the end"
            ))),
        }
    }

    /// Whether the pattern selects `key`.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Exact(k) => k == key,
            Pattern::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

pub(crate) type DynHandler =
    Arc<dyn Fn(Arc<Event>) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// One entry of the checked handler table.
#[derive(Clone)]
pub(crate) struct HandlerEntry {
    pub(crate) name: String,
    pub(crate) pattern: Pattern,
    pub(crate) origin: String,
    /// The handler's own retry policy.
    pub(crate) retry: HandlerRetry,
    pub(crate) handler: DynHandler,
}

impl HandlerEntry {
    pub(crate) fn from_registration(reg: &'static HandlerRegistration) -> Result<Self> {
        let f = reg.handler;
        Ok(Self {
            name: reg.name.to_owned(),
            pattern: Pattern::parse(reg.pattern)?,
            origin: format!("{} ({}:{})", reg.module, reg.file, reg.line),
            retry: reg.retry,
            handler: Arc::new(move |event: Arc<Event>| Box::pin(async move { f(&event).await })),
        })
    }

    pub(crate) fn from_fn<F, Fut>(name: &str, pattern: &str, retry: HandlerRetry, f: F) -> Result<Self>
    where
        F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        Ok(Self {
            name: name.to_owned(),
            pattern: Pattern::parse(pattern)?,
            origin: "registered explicitly".into(),
            retry,
            handler: Arc::new(move |event| Box::pin(f(event))),
        })
    }
}

/// Sort `items` by name; the first two with the same name, if any. The one duplicate check of
/// every name table (handlers, transactional handlers, dispatch names).
pub(crate) fn sort_and_find_duplicate<T>(items: &mut [T], name: impl Fn(&T) -> &str) -> Option<(&T, &T)> {
    items.sort_by(|a, b| name(a).cmp(name(b)));
    items
        .windows(2)
        .find(|pair| name(&pair[0]) == name(&pair[1]))
        .map(|pair| (&pair[0], &pair[1]))
}

/// Sort by name and refuse duplicates, saying where each came from.
pub(crate) fn check_table(mut entries: Vec<HandlerEntry>) -> Result<Vec<HandlerEntry>> {
    for entry in &entries {
        crate::name::validate_name("handler", &entry.name)?;
    }
    if let Some((a, b)) = sort_and_find_duplicate(&mut entries, |e| &e.name) {
        return Err(Error::Config(format!(
            "handler `{}` is registered twice: {} and {}",
            a.name, a.origin, b.origin
        )));
    }
    Ok(entries)
}
