//! Transactional handlers: code that runs inside the append's transaction and can refuse it.
//!
//! An ordinary handler ([`DomainBuilder::handler`](crate::DomainBuilder::handler)) runs after
//! the commit and can never undo a command. A *transactional* handler runs while the events
//! are being written, after the store checked the expected version and before the commit, and
//! an error from it rolls the append back: the command fails with
//! [`Error::RefusedByHandler`], nothing of it is stored, and the caller sees the handler's
//! reason. The typical use is a uniqueness check across aggregates ("no two users with the
//! same e-mail"), done with an insert into a table that has a unique index, in the same
//! transaction as the events.
//!
//! ```
//! use fluvius_core::{AppendTx, DomainError, Event};
//! # fn demo(builder: fluvius_core::DomainBuilder) -> fluvius_core::DomainBuilder {
//! builder.transactional_handler("no-shouting", "user-created", |event: &Event, _tx: &mut AppendTx<'_>| {
//!     let shouting = event.payload.as_str().contains("!!!");
//!     Box::pin(async move {
//!         if shouting {
//!             return Err(DomainError::new("no_shouting", "names may not shout"));
//!         }
//!         Ok(())
//!     })
//! })
//! # }
//! ```
//!
//! # What a handler gets
//! Each event of the append that matches the handler's [`Pattern`], in version order, with
//! the global position it is being written at, and the append's [`AppendTx`]. On a SQL store
//! [`AppendTx::connection`] hands out the open transaction's connection
//! (`sqlx::SqliteConnection` or `sqlx::PgConnection`; `fluvius_sql::AppendTxExt` has typed
//! shortcuts), so the handler's own writes commit or roll back with the events. On the
//! in-memory store there is no connection; appends are serialized while handlers run, so a
//! handler that returned `Ok` is never followed by a failed append on that store.
//!
//! # Rules
//! - A handler may run more than once for one command: the domain retries a version conflict
//!   ([`RetryPolicy`](crate::RetryPolicy)), and a rolled-back attempt runs again on fresh
//!   state. Effects outside the transaction are not undone — keep handlers to checks and
//!   writes through the transaction.
//! - Return the error of a failed SQL statement instead of swallowing it: PostgreSQL refuses
//!   every later statement of a transaction after an error until it is rolled back.
//! - Handlers run while the store's write lock (SQLite) or the append's row locks are held,
//!   and with group commit inside the batch's transaction: keep them short, and write only
//!   through the [`AppendTx`] — not through the store or another connection to the same
//!   database, which would wait for the lock the append holds.
//! - A domain refuses to build with transactional handlers on a store that cannot run them
//!   ([`LogStore::runs_transactional_handlers`](crate::LogStore::runs_transactional_handlers)).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use tracing::Instrument;

use crate::error::{DomainError, Error, Result};
use crate::event::Event;
use crate::future::BoxFuture;
use crate::name::sort_and_find_duplicate;
use crate::pattern::Pattern;

/// The transaction an append is being written in, as a [transactional
/// handler](crate::transactional) sees it.
pub struct AppendTx<'t> {
    backend: &'static str,
    connection: Option<&'t mut (dyn Any + Send)>,
}

impl<'t> AppendTx<'t> {
    /// The transaction of a store of kind `backend`, with the database connection the append
    /// is written through, if the store has one. For log store implementations.
    pub fn new(backend: &'static str, connection: Option<&'t mut (dyn Any + Send)>) -> Self {
        Self { backend, connection }
    }

    /// The kind of store writing the append, e.g. `"sqlite"`, `"postgres"` or `"memory"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The connection of the open transaction, if the store has one of type `C`
    /// (`sqlx::SqliteConnection` on SQLite, `sqlx::PgConnection` on PostgreSQL). Statements
    /// run through it commit or roll back with the events.
    pub fn connection<C: Any>(&mut self) -> Option<&mut C> {
        self.connection.as_deref_mut()?.downcast_mut::<C>()
    }
}

impl fmt::Debug for AppendTx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendTx")
            .field("backend", &self.backend)
            .field("connection", &self.connection.is_some())
            .finish()
    }
}

/// The function type of a transactional handler: an event of the append and the append's
/// transaction in, a refusal out.
pub type TransactionalFn = dyn for<'a, 'b> Fn(&'a Event, &'a mut AppendTx<'b>) -> BoxFuture<'a, Result<(), DomainError>>
    + Send
    + Sync;

/// Box a closure as a [`TransactionalFn`] (passing it through this bound is what lets the
/// compiler infer its higher-ranked signature).
pub(crate) fn boxed<F>(f: F) -> Box<TransactionalFn>
where
    F: for<'a, 'b> Fn(&'a Event, &'a mut AppendTx<'b>) -> BoxFuture<'a, Result<(), DomainError>>
        + Send
        + Sync
        + 'static,
{
    Box::new(f)
}

struct Entry {
    name: String,
    pattern: Pattern,
    handler: Box<TransactionalFn>,
}

/// The transactional handlers of a domain, attached to an
/// [`AppendRequest`](crate::AppendRequest) for the store to run inside the append's
/// transaction. Cheap to clone.
#[derive(Clone, Default)]
pub struct TransactionalHandlers {
    entries: Arc<[Entry]>,
}

impl TransactionalHandlers {
    pub(crate) fn new(mut entries: Vec<(String, Pattern, Box<TransactionalFn>)>) -> Result<Self> {
        if let Some((a, _)) = sort_and_find_duplicate(&mut entries, |e| &e.0) {
            return Err(Error::Config(format!(
                "transactional handler `{}` is registered twice",
                a.0
            )));
        }
        let entries: Vec<Entry> = entries
            .into_iter()
            .map(|(name, pattern, handler)| Entry {
                name,
                pattern,
                handler,
            })
            .collect();
        Ok(Self {
            entries: entries.into(),
        })
    }

    /// Whether there are no handlers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The handler names, in the order they run (by name).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Whether any handler wants any of `events`.
    pub fn wants(&self, events: &[Event]) -> bool {
        events
            .iter()
            .any(|e| self.entries.iter().any(|h| h.pattern.matches(&e.key)))
    }

    /// Run every handler on every event it wants, events in the order given, handlers by
    /// name. The first refusal stops the run: it is returned as
    /// [`Error::RefusedByHandler`], and the store must roll the append back.
    ///
    /// Log stores call this inside the append's transaction, after the version check, with
    /// the events carrying the positions they are being written at.
    pub async fn run(&self, events: &[Event], tx: &mut AppendTx<'_>) -> Result<()> {
        for event in events {
            for entry in self.entries.iter().filter(|h| h.pattern.matches(&event.key)) {
                let span = tracing::debug_span!(
                    "fluvius.transactional_handler",
                    handler = %entry.name,
                    key = %event.key,
                    aggregate_id = %event.aggregate_id,
                    version = event.aggregate_version,
                );
                if let Err(reason) = (entry.handler)(event, tx).instrument(span).await {
                    tracing::debug!(handler = %entry.name, %reason, "transactional handler refused the append");
                    return Err(Error::RefusedByHandler {
                        handler: entry.name.clone(),
                        reason,
                    });
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TransactionalHandlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
