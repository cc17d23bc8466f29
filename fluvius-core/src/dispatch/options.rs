//! How the dispatcher runs handlers: [`DispatchOptions`] (polling, pages, checkpoints, leases,
//! retries) and [`StartFrom`] (where a new handler starts).

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::retry::{HandlerRetry, RetryPolicy};

/// Where a handler without a checkpoint starts reading the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// From the first event: a new handler sees the whole history (the default).
    #[default]
    Beginning,
    /// From the log's head when the domain is built: only events committed afterwards.
    Now,
}

/// How the dispatcher runs handlers; pass to
/// [`DomainBuilder::dispatch`](crate::DomainBuilder::dispatch).
///
/// ```
/// use std::time::Duration;
/// use fluvius_core::{DispatchOptions, HandlerRetry, StartFrom};
/// let options = DispatchOptions::default()
///     .poll_interval(Duration::from_millis(200))
///     // Five attempts for this one, with the default backoff.
///     .handler_retry("send-welcome-email", HandlerRetry::attempts(5))
///     .handler_start("audit-export", StartFrom::Now);
/// assert_eq!(options.retry_for("send-welcome-email").max_attempts, 5);
/// assert_eq!(options.retry_for("audit-export").max_attempts, 3, "the default");
/// ```
#[derive(Clone, Debug)]
pub struct DispatchOptions {
    pub(super) poll_interval: Duration,
    pub(super) page_size: usize,
    pub(super) checkpoint_events: usize,
    pub(super) checkpoint_interval: Duration,
    pub(super) lease: Duration,
    pub(super) instance_id: String,
    retry: RetryPolicy,
    start: StartFrom,
    per_handler: HashMap<String, (HandlerRetry, Option<StartFrom>)>,
}

impl Default for DispatchOptions {
    /// Poll every 500 ms, pages of 256 events, checkpoints moved after each page's worth of
    /// events (or once caught up) and at least every second, 30 s leases, a random instance id, 3 attempts per event with backoff from
    /// 50 ms to 2 s, new handlers start from the beginning.
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            page_size: 256,
            checkpoint_events: usize::MAX,
            checkpoint_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            instance_id: uuid::Uuid::new_v4().to_string(),
            retry: RetryPolicy {
                max_attempts: 3,
                base_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
            },
            start: StartFrom::Beginning,
            per_handler: HashMap::new(),
        }
    }
}

impl DispatchOptions {
    /// How often an idle handler looks at the log without a wake-up (default 500 ms). An idle
    /// handler also renews its claim this often, so the wait is capped at a third of the
    /// [`lease`](Self::lease).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many events one `read_log` fetches (default 256).
    pub fn page_size(mut self, size: usize) -> Self {
        self.page_size = size.max(1);
        self
    }

    /// Move a handler's checkpoint after every `events` events it handled (at least 1), not
    /// only after each page's worth. A crash delivers again what was handled since the
    /// checkpoint last moved (and the event in flight): this bounds it to `events`, for a
    /// checkpoint write every `events` events. By default the checkpoint moves after each
    /// page's worth of events read (a full page, or short pages adding up to one; under steady
    /// load a wake-up often finds only a few events), once the handler has caught up and no
    /// wake-up came for a few milliseconds, and at least every
    /// [`checkpoint_interval`](Self::checkpoint_interval): a fast handler pays one write per
    /// page's worth, not one per wake-up.
    ///
    /// ```
    /// use fluvius_core::DispatchOptions;
    /// // Side effects that are costly to repeat: at most one event is delivered again.
    /// let options = DispatchOptions::default().checkpoint_every(1);
    /// # drop(options);
    /// ```
    pub fn checkpoint_every(mut self, events: usize) -> Self {
        self.checkpoint_events = events.max(1);
        self
    }

    /// Move a handler's checkpoint at least this often while it works (default 1 s), so that a
    /// crash during a long page, or under steady load, delivers again at most this much work.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// How long a claim on a handler's checkpoint lasts without renewal (default 30 s): after
    /// an instance dies, another takes over its handlers within this time. The holder renews
    /// its claims every third of it, also while a handler call runs, so a call may take longer
    /// than the lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(10));
        self
    }

    /// This instance's name as a checkpoint owner (default: a random UUID).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// The retry policy of every handler without its own: how many attempts an event gets,
    /// and the backoff between them, before it is parked. A handler's own policy
    /// ([`DomainBuilder::handler_with_retry`](crate::DomainBuilder::handler_with_retry),
    /// `#[event_handler("…", max_attempts = 5)]`) overrides the settings it gives.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Where every handler without a checkpoint (and without its own setting) starts.
    pub fn start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// The retry policy of one handler or projection, by name: a whole [`RetryPolicy`], or
    /// some settings ([`HandlerRetry`]). It overrides the handler's own policy (from
    /// [`DomainBuilder::handler_with_retry`](crate::DomainBuilder::handler_with_retry) or
    /// `#[event_handler]`) setting by setting, and the default ([`retry`](Self::retry)).
    pub fn handler_retry(mut self, handler: &str, retry: impl Into<HandlerRetry>) -> Self {
        self.per_handler.entry(handler.to_owned()).or_default().0 = retry.into();
        self
    }

    /// Where one handler starts if it has no checkpoint yet. (A name that matches no handler or
    /// projection of the domain makes [`DomainBuilder::build`](crate::DomainBuilder::build)
    /// fail, as it does for [`handler_retry`](Self::handler_retry).)
    pub fn handler_start(mut self, handler: &str, start: StartFrom) -> Self {
        self.per_handler.entry(handler.to_owned()).or_default().1 = Some(start);
        self
    }

    /// The retry policy these options give `handler`: what was set for its name over the
    /// default. A handler with a policy of its own gets [`retry_with`](Self::retry_with).
    pub fn retry_for(&self, handler: &str) -> RetryPolicy {
        self.retry_with(handler, HandlerRetry::new())
    }

    /// The retry policy of `handler` whose own policy is `own`: what was set for its name, over
    /// `own`, over the default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fluvius_core::{DispatchOptions, HandlerRetry, RetryPolicy};
    /// let options = DispatchOptions::default()
    ///     .retry(RetryPolicy::attempts(3))
    ///     .handler_retry("billing", HandlerRetry::attempts(10));
    /// let own = HandlerRetry::attempts(5).base_backoff(Duration::from_millis(100));
    /// assert_eq!(options.retry_with("mailer", own).max_attempts, 5, "its own beats the default");
    /// let billing = options.retry_with("billing", own);
    /// assert_eq!(billing.max_attempts, 10, "the options' word on this name beats its own");
    /// assert_eq!(billing.base_backoff, Duration::from_millis(100), "its own beats the default");
    /// ```
    pub fn retry_with(&self, handler: &str, own: HandlerRetry) -> RetryPolicy {
        self.per_handler
            .get(handler)
            .map_or(own, |h| h.0.or(own))
            .over(self.retry)
    }

    /// Where `handler` starts if it has no checkpoint.
    pub fn start_for(&self, handler: &str) -> StartFrom {
        self.per_handler
            .get(handler)
            .and_then(|h| h.1)
            .unwrap_or(self.start)
    }

    /// Refuse settings for a name that no handler or projection has (`names`, sorted): a typo,
    /// or a handler that was removed; rather than silently run the real handler with the
    /// defaults.
    pub(super) fn refuse_unknown(&self, names: &[&str]) -> Result<()> {
        let mut unknown: Vec<&str> = self
            .per_handler
            .keys()
            .map(String::as_str)
            .filter(|name| names.binary_search(name).is_err())
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(Error::Config(format!(
                "dispatch options name {} but this domain has no handler or projection of that name \
                 (it has: {})",
                unknown
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )));
        }
        Ok(())
    }
}
