//! `#[event_handler]` with a retry policy of its own (in any order with `name`, with a trailing
//! comma, a backoff of zero): the registration carries it as a `HandlerRetry`; a handler without
//! one carries an unset policy (the domain's default applies). `tests/tests/global_handlers.rs`
//! runs such a handler in a domain.

use std::time::Duration;

use fluvius_core::prelude::*;
use fluvius_core::HandlerRetry;

#[event_handler("user-created", name = "own-policy", max_attempts = 2, base_backoff_ms = 10, max_backoff_ms = 500)]
async fn own_policy(event: &Event) -> Result<(), HandlerError> {
    let _ = event;
    Err(HandlerError::msg("always down"))
}

#[event_handler("user-created", name = "default-policy")]
async fn default_policy(event: &Event) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

#[event_handler("user-*", base_backoff_ms = 0, name = "any-order", max_attempts = 1,)]
async fn any_order(event: &Event) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

#[event_handler("*", max_backoff_ms = 60000)]
async fn only_the_cap(event: &Event) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

fn main() {
    let retry_of = |name: &str| {
        fluvius_core::global_handlers()
            .find(|reg| reg.name.ends_with(name))
            .unwrap_or_else(|| panic!("`{name}` is registered"))
            .retry
    };
    assert_eq!(
        retry_of("own-policy"),
        HandlerRetry::attempts(2)
            .base_backoff(Duration::from_millis(10))
            .max_backoff(Duration::from_millis(500))
    );
    assert_eq!(retry_of("default-policy"), HandlerRetry::new());
    assert_eq!(
        retry_of("any-order"),
        HandlerRetry::attempts(1).base_backoff(Duration::ZERO)
    );
    assert_eq!(
        retry_of("::only_the_cap"),
        HandlerRetry::new().max_backoff(Duration::from_secs(60))
    );
}
