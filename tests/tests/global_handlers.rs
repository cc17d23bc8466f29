//! Handlers registered at link time with `#[event_handler]`, picked up by every domain built
//! without `.without_global_handlers()`; one with a retry policy of its own.

use std::sync::Mutex;

use fluvius_core::prelude::*;
use std::time::Duration;

use fluvius_core::{global_handlers, DispatchOptions, HandlerRetry, RetryPolicy};
use fluvius_tests::*;
use uuid::Uuid;

/// (handler, event id) for every invocation of the handlers below.
static CALLS: Mutex<Vec<(&'static str, Uuid)>> = Mutex::new(Vec::new());

fn record(handler: &'static str, event: &Event) {
    CALLS.lock().unwrap().push((handler, event.id));
}

/// The events `handler` saw among `events`, in the order it saw them.
fn seen_by(handler: &str, events: &[Event]) -> Vec<Uuid> {
    let wanted = ids(events);
    CALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|(h, id)| *h == handler && wanted.contains(id))
        .map(|(_, id)| *id)
        .collect()
}

#[event_handler("*")]
async fn on_everything(event: &Event) -> Result<(), HandlerError> {
    record("everything", event);
    Ok(())
}

#[event_handler("user-created")]
async fn on_user_created(event: &Event) -> Result<(), HandlerError> {
    record("user-created", event);
    Ok(())
}

#[event_handler("user-*", name = "user-prefix")]
async fn on_user_events(event: &Event) -> Result<(), HandlerError> {
    record("user-prefix", event);
    Ok(())
}

#[event_handler("money-withdrawn", name = "flaky-withdrawals")]
async fn on_withdrawal(event: &Event) -> Result<(), HandlerError> {
    record("flaky-withdrawals", event);
    let amount: i64 = event.payload_as::<Withdrawn>()?.amount;
    if amount % 2 == 1 {
        return Err(HandlerError::msg("odd amounts are not supported downstream"));
    }
    Ok(())
}

/// Five attempts of its own, where the domain's default (below) is three.
#[event_handler(
    "user-renamed",
    name = "flaky-renames",
    max_attempts = 5,
    base_backoff_ms = 1,
    max_backoff_ms = 2
)]
async fn on_rename(event: &Event) -> Result<(), HandlerError> {
    record("flaky-renames", event);
    Err(HandlerError::msg("renames are not supported downstream"))
}

fn global_builder() -> fluvius_core::DomainBuilder {
    Domain::builder()
        .namespace("test")
        .aggregate::<User>()
        .aggregate::<Account>()
        .retry(RetryPolicy::default())
        .dispatch(DispatchOptions::default().retry(RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        }))
        .logstore(MemoryLogStore::new())
}

#[test]
fn the_handlers_are_registered() {
    let mut regs: Vec<_> = global_handlers().map(|r| (r.name, r.pattern, r.module)).collect();
    regs.sort();
    assert_eq!(
        regs,
        [
            ("flaky-renames", "user-renamed", "global_handlers"),
            ("flaky-withdrawals", "money-withdrawn", "global_handlers"),
            ("global_handlers::on_everything", "*", "global_handlers"),
            (
                "global_handlers::on_user_created",
                "user-created",
                "global_handlers"
            ),
            ("user-prefix", "user-*", "global_handlers"),
        ]
    );
    for reg in global_handlers() {
        let own = match reg.name {
            "flaky-renames" => HandlerRetry::attempts(5)
                .base_backoff(Duration::from_millis(1))
                .max_backoff(Duration::from_millis(2)),
            _ => HandlerRetry::new(),
        };
        assert_eq!(reg.retry, own, "{}", reg.name);
    }
}

#[tokio::test]
async fn global_handlers_run_for_the_events_they_select() {
    let domain = global_builder().build().await.unwrap();
    let user = create_user(&domain, "Ann").await;
    domain
        .process_command(User::rename_command(user, "Anna".into()))
        .await
        .unwrap();
    let account = open_account(&domain, 10).await;
    domain
        .process_command(Account::withdraw_command(account, 3))
        .await
        .unwrap();
    domain
        .process_command(Account::withdraw_command(account, 4))
        .await
        .unwrap();
    domain.wait_idle().await;

    let log = all_events(&domain).await;
    assert_eq!(log.len(), 6);
    let of = |pred: &dyn Fn(&str) -> bool| {
        log.iter()
            .filter(|e| pred(&e.key))
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(seen_by("everything", &log), ids(&log));
    assert_eq!(seen_by("user-created", &log), of(&|k| k == "user-created"));
    assert_eq!(seen_by("user-prefix", &log), of(&|k| k.starts_with("user-")));
    assert_eq!(seen_by("user-prefix", &log).len(), 2);
    // The odd withdrawal fails every attempt (retried, then parked): collapse the retries.
    let mut flaky_seen = seen_by("flaky-withdrawals", &log);
    flaky_seen.dedup();
    assert_eq!(flaky_seen, of(&|k| k == "money-withdrawn"));

    let stats = domain.handler_stats();
    let find = |name: &str| stats.iter().find(|s| s.name == name).unwrap().clone();
    assert_eq!(find("global_handlers::on_everything").succeeded, 6);
    assert_eq!(find("global_handlers::on_user_created").succeeded, 1);
    assert_eq!(find("user-prefix").succeeded, 2);
    let flaky = find("flaky-withdrawals");
    assert_eq!(
        (flaky.succeeded, flaky.failed, flaky.panicked, flaky.parked),
        (1, 3, 0, 1),
        "three attempts, then parked"
    );
    let parked = domain.parked(Some("flaky-withdrawals")).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event_key, "money-withdrawn");

    // Its own policy: five attempts (the default above gave three), then parked.
    let renamed = of(&|k| k == "user-renamed");
    assert_eq!(seen_by("flaky-renames", &log), [renamed[0]; 5]);
    let renames = find("flaky-renames");
    assert_eq!(
        (
            renames.succeeded,
            renames.failed,
            renames.panicked,
            renames.parked
        ),
        (0, 5, 0, 1),
        "five attempts, then parked"
    );
    let parked = domain.parked(Some("flaky-renames")).await.unwrap();
    assert_eq!(
        parked
            .iter()
            .map(|l| (l.event_id, l.attempts))
            .collect::<Vec<_>>(),
        [(renamed[0], 5)]
    );
}

#[tokio::test]
async fn global_handlers_can_be_filtered_or_left_out() {
    let domain = global_builder()
        .global_handlers_filter(|reg| reg.pattern.starts_with("user"))
        .build()
        .await
        .unwrap();
    let names: Vec<_> = domain.handler_stats().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["flaky-renames", "global_handlers::on_user_created", "user-prefix"]
    );
    create_user(&domain, "Bo").await;
    domain.wait_idle().await;
    let log = all_events(&domain).await;
    assert_eq!(seen_by("user-created", &log), ids(&log));
    assert!(seen_by("everything", &log).is_empty(), "filtered out");

    let domain = global_builder().without_global_handlers().build().await.unwrap();
    assert!(domain.handler_stats().is_empty());

    // An explicit handler may not reuse a global handler's name.
    let err = global_builder()
        .handler("user-prefix", "*", Seen::new().handler())
        .build()
        .await
        .err()
        .expect("duplicate name");
    assert_eq!(err.code(), "config");
    assert!(err.to_string().contains("user-prefix"), "{err}");
}
