//! Event handlers: what reacts to events after they are committed.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::future::BoxFuture;
use crate::name::sort_and_find_duplicate;
use crate::pattern::Pattern;
use crate::retry::HandlerRetry;

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
