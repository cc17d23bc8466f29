//! Retry policies: how often, and with what pauses, a command is retried after a conflict and
//! a handler after a failure.

use std::time::Duration;

/// How `process_command` reacts to a version conflict (another writer appended to the same
/// aggregate between load and append) or a [transient](crate::Error::Transient) database
/// error; also the retry policy of handlers and projections
/// ([`DispatchOptions::retry`](crate::DispatchOptions::retry)).
///
/// The default retries: up to 4 attempts in all, with jittered exponential backoff from
/// 1 ms to 50 ms. A retry is safe because the action runs again on the fresh state, so every
/// invariant is checked again; what is never retried is a command that named its
/// [`expected version`](crate::Command::expect_version) — the caller asked to be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts (1 = never retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each retry.
    pub base_backoff: Duration,
    /// Upper bound on one backoff.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Never retry: a conflict is returned to the caller at once.
    pub const fn never() -> Self {
        Self {
            max_attempts: 1,
            base_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
        }
    }

    /// Up to `max_attempts` attempts in all, with the default backoff.
    pub fn attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            ..Self::default()
        }
    }

    /// The pause before retry number `retry` (1-based), with full jitter.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let nanos = exp.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        let random = uuid::Uuid::new_v4().as_u128() as u64;
        Duration::from_nanos(nanos / 2 + random % (nanos / 2 + 1))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(50),
        }
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
