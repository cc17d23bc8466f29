//! The one error type of `fluvius-core`, with stable codes.

use std::borrow::Cow;
use std::fmt;

use uuid::Uuid;

use crate::id::AggregateId;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while routing, deciding, storing or replaying.
///
/// Each variant has a stable, machine-readable [`code`](Error::code) that clients can act on.
///
/// A command ends in exactly one of three outcomes:
/// - `Ok`: it was stored (or it had been, and this is the replayed first answer);
/// - any error but [`Error::OutcomeUnknown`]: it was refused and **nothing was written**;
/// - [`Error::OutcomeUnknown`]: the store could not tell whether it was stored. Resend it with
///   the same command id; the resend is answered from the command record if it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command names a namespace this domain does not serve.
    #[error("unknown namespace `{got}`: this domain serves `{expected}`")]
    UnknownNamespace {
        /// The domain's namespace.
        expected: String,
        /// The namespace named by the command.
        got: String,
    },
    /// No aggregate is registered for the command's resource.
    #[error("unknown resource `{resource}`")]
    UnknownResource {
        /// The resource named by the command.
        resource: String,
    },
    /// The aggregate has no action with this name.
    #[error("unknown action `{action}` for resource `{resource}`")]
    UnknownAction {
        /// The resource named by the command.
        resource: String,
        /// The action named by the command.
        action: String,
    },
    /// The action's `resources = [...]` allow-list does not include the command's resource.
    #[error("action `{action}` does not accept resource `{resource}` (allowed: {allowed:?})")]
    ResourceNotAllowed {
        /// The action named by the command.
        action: String,
        /// The resource named by the command.
        resource: String,
        /// The resources the action accepts.
        allowed: Vec<String>,
    },
    /// The command's payload does not deserialize into the action's arguments.
    #[error("invalid payload for action `{action}` at `{path}`: {message}")]
    InvalidPayload {
        /// The action named by the command.
        action: String,
        /// Where in the payload the problem is (`.` for the whole payload).
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// A payload (command arguments or event data) is larger than the domain accepts.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Which payload.
        what: &'static str,
        /// Its size in bytes (serialized JSON).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The action refused the command (its own error, with its message).
    #[error("command rejected: {0}")]
    Rejected(DomainError),
    /// A [transactional handler](crate::transactional) refused the append: the command was
    /// rolled back and nothing of it was stored.
    #[error("refused by transactional handler `{handler}`: {reason}")]
    RefusedByHandler {
        /// The handler's name.
        handler: String,
        /// Its reason (code and message).
        reason: DomainError,
    },
    /// The authorization policy refused the command.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why the policy refused.
        reason: String,
    },
    /// Optimistic concurrency: the aggregate is not at the version the writer expected.
    #[error("version conflict on {resource}/{aggregate_id}: expected version {expected}, found {actual}")]
    Conflict {
        /// The resource of the stream.
        resource: String,
        /// The aggregate of the stream.
        aggregate_id: AggregateId,
        /// The version the writer expected the stream to be at.
        expected: u64,
        /// The version the stream is at (as far as the store could tell).
        actual: u64,
    },
    /// A command with this id was already recorded (stores report this; the domain answers
    /// such a command with the first response instead).
    #[error("command {command_id} was already processed")]
    DuplicateCommand {
        /// The command id.
        command_id: Uuid,
    },
    /// A stored event could not be folded into the aggregate state.
    #[error("cannot apply event `{key}` (version {version}) to `{resource}`: {message}")]
    Apply {
        /// The resource of the aggregate.
        resource: String,
        /// The event key.
        key: String,
        /// The aggregate version of the event.
        version: u64,
        /// What went wrong.
        message: String,
    },
    /// A stored event could not be lifted to the current schema version of its key.
    #[error("cannot upcast event {event_id} `{key}` from version {from} to {to}: {message}")]
    Upcast {
        /// The event id.
        event_id: Uuid,
        /// The event key (after any rename).
        key: String,
        /// The stored schema version.
        from: u32,
        /// The current schema version.
        to: u32,
        /// What went wrong.
        message: String,
    },
    /// A value could not be serialized or deserialized.
    #[error("serialization failed ({context}): {source}")]
    Serialization {
        /// What was being (de)serialized.
        context: Cow<'static, str>,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// An append request was malformed (versions not dense, events of another stream, …).
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// The log store failed (connection lost, disk full, …) and **nothing was written**: a
    /// store that cannot tell whether a write was stored answers
    /// [`Error::OutcomeUnknown`] instead.
    #[error("log store `{backend}` failed: {message}")]
    Store {
        /// Which backend (and target, without credentials).
        backend: Cow<'static, str>,
        /// What went wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The domain was configured inconsistently (duplicate resource or handler, bad pattern, …).
    #[error("configuration error: {0}")]
    Config(String),
    /// The store lost track of a write: the connection broke (or the operation timed out)
    /// while the write may have been committed, and the store could not learn in time whether
    /// it was. The command may or may not be in the log.
    ///
    /// Resend the command **with the same command id**: if the first attempt was stored, the
    /// resend is answered from its command record (`replayed = true`) and nothing is written
    /// twice; if it was not, the resend runs it. Never retry with a new id.
    #[error(
        "outcome unknown{}: {message}; resend the command with the same command id (a stored command is answered from its record, never applied twice)",
        command_id.map(|id| format!(" for command {id}")).unwrap_or_default()
    )]
    OutcomeUnknown {
        /// The command whose outcome is unknown, when the write carried one.
        command_id: Option<Uuid>,
        /// What happened.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// An operation of the log store took longer than its operation timeout. Nothing was
    /// written (a write whose outcome cannot be told is [`Error::OutcomeUnknown`] instead).
    #[error("{operation} on log store `{backend}` timed out after {after:?}")]
    Timeout {
        /// Which backend (and target, without credentials).
        backend: Cow<'static, str>,
        /// What the store was doing, e.g. `"append"`.
        operation: Cow<'static, str>,
        /// The timeout that passed.
        after: std::time::Duration,
    },
    /// A transient database failure (a serialization failure, a deadlock, a database busy past
    /// its timeout): nothing was written, and the same request may succeed when tried again.
    /// The domain retries it like a conflict, within its [`RetryPolicy`](crate::RetryPolicy).
    #[error("transient failure of log store `{backend}`: {message}")]
    Transient {
        /// Which backend (and target, without credentials).
        backend: Cow<'static, str>,
        /// What went wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// A stored event cannot be decoded (a malformed row: JSON that does not parse, metadata of
    /// the wrong shape, …). It names the event so an operator can find and repair it.
    #[error(
        "stored event at position {position}{} cannot be decoded: {message}",
        event_id.map(|id| format!(" (id {id})")).unwrap_or_default()
    )]
    UndecodableEvent {
        /// The event's global position.
        position: u64,
        /// The event's id, when it could be read.
        event_id: Option<Uuid>,
        /// What is wrong with it.
        message: String,
    },
    /// A stream's stored versions are not dense from 1 (a gap or a repeat): the log was
    /// changed behind the store's back, and folding it would give a wrong state.
    #[error("corrupt stream {resource}/{aggregate_id}: {message}")]
    CorruptStream {
        /// The resource of the stream.
        resource: String,
        /// The aggregate of the stream.
        aggregate_id: AggregateId,
        /// What is wrong, e.g. `"version 3 follows version 1"`.
        message: String,
    },
    /// A name (resource, namespace, event key, action, tenant, handler) is not acceptable to
    /// every store: empty, too long, or with control characters such as a NUL byte.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// Which kind of name, e.g. `"resource"`.
        what: &'static str,
        /// The name as given (its first 64 characters).
        name: String,
        /// Why it is refused.
        reason: String,
    },
}

impl Error {
    /// A stable, machine-readable code for the error, e.g. `"conflict"` or `"unknown_action"`.
    ///
    /// ```
    /// # use fluvius_core::{Error, DomainError};
    /// let err = Error::Rejected(DomainError::rejected("overdrawn"));
    /// assert_eq!(err.code(), "rejected");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownNamespace { .. } => "unknown_namespace",
            Error::UnknownResource { .. } => "unknown_resource",
            Error::UnknownAction { .. } => "unknown_action",
            Error::ResourceNotAllowed { .. } => "resource_not_allowed",
            Error::InvalidPayload { .. } => "invalid_payload",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::Rejected(_) => "rejected",
            Error::RefusedByHandler { .. } => "refused_by_handler",
            Error::Forbidden { .. } => "forbidden",
            Error::Conflict { .. } => "conflict",
            Error::DuplicateCommand { .. } => "duplicate_command",
            Error::Apply { .. } => "apply_failed",
            Error::Upcast { .. } => "upcast_failed",
            Error::Serialization { .. } => "serialization",
            Error::InvalidAppend(_) => "invalid_append",
            Error::Store { .. } => "store",
            Error::Config(_) => "config",
            Error::OutcomeUnknown { .. } => "outcome_unknown",
            Error::Timeout { .. } => "timeout",
            Error::Transient { .. } => "transient",
            Error::UndecodableEvent { .. } => "undecodable_event",
            Error::CorruptStream { .. } => "corrupt_stream",
            Error::InvalidName { .. } => "invalid_name",
        }
    }

    /// Wrap the error an action returned as [`Error::Rejected`].
    pub fn rejected(err: impl Into<DomainError>) -> Self {
        Error::Rejected(err.into())
    }

    /// Build a [`Error::Store`] from a backend name, a message and an optional source.
    pub fn store(
        backend: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Store {
            backend: backend.into(),
            message: message.into(),
            source,
        }
    }

    pub(crate) fn serialization(context: impl Into<Cow<'static, str>>, source: serde_json::Error) -> Self {
        Error::Serialization {
            context: context.into(),
            source,
        }
    }

    /// Whether the error is an optimistic-concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether the same request may succeed when tried again with nothing changed: a
    /// conflict (on fresh state) or a [transient](Error::Transient) database failure. Nothing
    /// was written in either case. The domain retries both within its retry policy.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict { .. } | Error::Transient { .. })
    }

    /// Whether the command this error answers may have been stored after all
    /// ([`Error::OutcomeUnknown`]): resend it with the same command id. Every other error
    /// means nothing of the command was written.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }
}

/// The error an action returns to refuse a command: a stable code and a human-readable message.
///
/// Any `std::error::Error` converts into it (its `Display` becomes the message), so actions can
/// return their own error enums. Like `anyhow::Error`, `DomainError` itself does not implement
/// `std::error::Error`, which is what makes that blanket conversion possible.
///
/// ```
/// use fluvius_core::DomainError;
/// let e = DomainError::new("insufficient_funds", "balance 10 is below 25");
/// assert_eq!(e.code(), "insufficient_funds");
/// assert_eq!(e.to_string(), "balance 10 is below 25");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DomainError {
    code: Cow<'static, str>,
    message: String,
}

impl DomainError {
    /// A rejection with the generic code `"rejected"`.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new("rejected", message)
    }

    /// A rejection with a specific, stable code.
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainError")
            .field("code", &self.code)
            .field("message", &self.message)
            .finish()
    }
}

impl<E> From<E> for DomainError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        DomainError::rejected(err.to_string())
    }
}
