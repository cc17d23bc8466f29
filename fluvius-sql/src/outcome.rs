//! Which failures of a write leave its outcome in doubt, and the bounds of the wait that
//! resolves them (see the `postgres` and `sqlite` module docs, "Outcomes").

// Shared by both dialects; with one of them compiled out, some of it goes unused.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]

use std::borrow::Cow;
use std::time::Duration;

use fluvius_core::{AggregateId, AppendRequest, Name};
use uuid::Uuid;

/// What identifies an append in the log: its stream, the version its first event takes, and
/// that event's id (the unique stream key makes the pair decisive), kept before the request
/// is handed to a writer.
pub(crate) struct Probe {
    pub(crate) resource: Name,
    pub(crate) aggregate_id: AggregateId,
    pub(crate) first_version: i64,
    pub(crate) count: usize,
    pub(crate) first_event: Uuid,
    pub(crate) command_id: Option<Uuid>,
}

impl Probe {
    /// The probe of a request with at least one event.
    pub(crate) fn of(request: &AppendRequest) -> Option<Self> {
        let first = request.events.first()?;
        Some(Self {
            resource: request.resource.clone(),
            aggregate_id: request.aggregate_id,
            first_version: crate::codec::clamp_i64(first.aggregate_version),
            count: request.events.len(),
            first_event: first.id,
            command_id: request.command.as_ref().map(|c| c.id),
        })
    }
}

/// The default [operation timeout](crate::PostgresOptions::operation_timeout) of both stores.
pub(crate) const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a store looks for the truth after a write whose outcome is in doubt (bounded
/// by the operation timeout too).
const RESOLVE_WITHIN: Duration = Duration::from_secs(5);

/// The longest one look may take before the next is tried.
const LOOK_WITHIN: Duration = Duration::from_secs(1);

/// How long a store looks for the truth after a write in doubt, and how long each look may take.
pub(crate) fn resolve_bounds(operation_timeout: Duration) -> (Duration, Duration) {
    let total = operation_timeout.min(RESOLVE_WITHIN);
    (total, total.min(LOOK_WITHIN))
}

/// Whether a sqlx error may have happened after the server received and committed a write:
/// the connection broke (I/O, TLS), the conversation broke (protocol), or the worker running
/// the statement died. An error the database answered (`Database`), or one raised before
/// anything was sent (no connection from the pool, a value that does not encode), is not.
pub(crate) fn sqlx_unclear(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed
    )
}

/// Whether a failed append may have been stored after all: an
/// [`OutcomeUnknown`](fluvius_core::Error::OutcomeUnknown) or a
/// [`Timeout`](fluvius_core::Error::Timeout) raised on the way, or a store error caused by an
/// [unclear](sqlx_unclear) sqlx error.
pub(crate) fn unclear(error: &fluvius_core::Error) -> bool {
    match error {
        fluvius_core::Error::OutcomeUnknown { .. } | fluvius_core::Error::Timeout { .. } => true,
        fluvius_core::Error::Store { source, .. } => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> =
                source.as_deref().map(|e| e as &(dyn std::error::Error + 'static));
            while let Some(e) = cause {
                if let Some(e) = e.downcast_ref::<sqlx::Error>() {
                    return sqlx_unclear(e);
                }
                cause = e.source();
            }
            false
        }
        _ => false,
    }
}

/// The error of an append that failed before its transaction's `COMMIT` was sent (or whose
/// savepoint was rolled back): nothing was written, whatever broke, so an error that would
/// look [unclear](unclear) becomes a plain store error with the same text.
pub(crate) fn before_commit(error: fluvius_core::Error) -> fluvius_core::Error {
    if !unclear(&error) {
        return error;
    }
    match error {
        fluvius_core::Error::Store { backend, message, .. } => fluvius_core::Error::Store {
            backend,
            message,
            source: None,
        },
        fluvius_core::Error::OutcomeUnknown { message, .. } => {
            fluvius_core::Error::store("log store", message, None)
        }
        other => other,
    }
}

/// An append of unknown outcome, before the store tried to learn the truth.
pub(crate) fn in_doubt(message: impl Into<String>) -> fluvius_core::Error {
    fluvius_core::Error::OutcomeUnknown {
        command_id: None,
        message: message.into(),
        source: None,
    }
}

/// The answer when the truth could not be learned within the bounds.
pub(crate) fn unknown(
    command_id: Option<Uuid>,
    original: fluvius_core::Error,
    why: &str,
) -> fluvius_core::Error {
    let message = match &original {
        fluvius_core::Error::OutcomeUnknown { message, .. } => message.clone(),
        other => other.to_string(),
    };
    fluvius_core::Error::OutcomeUnknown {
        command_id,
        message: format!("{message} ({why})"),
        source: Some(Box::new(original)),
    }
}

/// The answer when the truth is that nothing was written: a plain store error.
pub(crate) fn not_written(
    backend: impl Into<Cow<'static, str>>,
    original: fluvius_core::Error,
) -> fluvius_core::Error {
    let message = match &original {
        fluvius_core::Error::OutcomeUnknown { message, .. } => message.clone(),
        other => other.to_string(),
    };
    fluvius_core::Error::store(
        backend,
        format!("{message} (the append was not stored: checked afterwards)"),
        Some(Box::new(original)),
    )
}

/// A store whose operations are bounded by its operation timeout.
pub(crate) trait Bounded {
    /// The database, for the error.
    fn target(&self) -> &str;
    /// The operation timeout.
    fn operation_timeout(&self) -> Duration;

    /// `future`, failing with [`Timeout`](fluvius_core::Error::Timeout) after the operation
    /// timeout.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        future: impl std::future::Future<Output = fluvius_core::Result<T>>,
    ) -> fluvius_core::Result<T> {
        let after = self.operation_timeout();
        tokio::time::timeout(after, future).await.unwrap_or_else(|_| {
            Err(fluvius_core::Error::Timeout {
                backend: self.target().to_owned().into(),
                operation: operation.into(),
                after,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answered_error_is_clear_and_a_broken_connection_is_not() {
        let io = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof"));
        assert!(sqlx_unclear(&io));
        assert!(!sqlx_unclear(&sqlx::Error::PoolTimedOut));
        let store = crate::Error::Query {
            target: "t".into(),
            operation: "append",
            source: io,
        };
        assert!(unclear(&store.into()));
        let refused = crate::Error::Query {
            target: "t".into(),
            operation: "append",
            source: sqlx::Error::PoolClosed,
        };
        assert!(!unclear(&refused.into()));
        assert!(unclear(&in_doubt("lost")));
    }
}
