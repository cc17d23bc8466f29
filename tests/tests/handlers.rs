//! Handler dispatch with explicitly registered handlers: patterns, several handlers per key,
//! failure and panic isolation, retries and parking (with the domain's policy or a handler's
//! own), `wait_idle`, log order per aggregate, start-from-now, reset, configuration errors.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fluvius_core::prelude::*;
use fluvius_core::{DispatchOptions, HandlerRetry, HandlerStats, RetryPolicy, StartFrom};
use fluvius_tests::*;
use tokio::sync::Semaphore;

fn stats(domain: &Domain, name: &str) -> HandlerStats {
    domain
        .handler_stats()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no handler `{name}`"))
}

/// Open an account, deposit three times, withdraw once, create a user: 6 events.
async fn workload(domain: &Domain) {
    let acc = open_account(domain, 0).await;
    for amount in [1, 2, 3] {
        domain
            .process_command(Account::deposit_command(acc, amount))
            .await
            .unwrap();
    }
    domain
        .process_command(Account::withdraw_command(acc, 4))
        .await
        .unwrap();
    create_user(domain, "Ann").await;
}

#[tokio::test]
async fn handlers_see_the_events_their_pattern_selects_in_commit_order() {
    let (all, deposits_a, deposits_b, money, account, user_created) = (
        Seen::new(),
        Seen::new(),
        Seen::new(),
        Seen::new(),
        Seen::new(),
        Seen::new(),
    );
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .handler("all", "*", all.handler())
        .handler("deposits-a", "money-deposited", deposits_a.handler())
        .handler("deposits-b", "money-deposited", deposits_b.handler())
        .handler("money", "money-*", money.handler())
        .handler("account", "account-*", account.handler())
        .handler("user-created", "user-created", user_created.handler())
        .build()
        .await
        .unwrap();
    workload(&domain).await;
    domain.wait_idle().await;

    let log = all_events(&domain).await;
    assert_eq!(log.len(), 6);
    assert_eq!(all.ids(), ids(&log), "`*` sees every event, in commit order");
    let of = |pred: &dyn Fn(&str) -> bool| {
        log.iter()
            .filter(|e| pred(&e.key))
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    let deposits = of(&|k| k == "money-deposited");
    assert_eq!(deposits.len(), 3);
    assert_eq!(
        deposits_a.ids(),
        deposits,
        "several handlers per key: each sees all"
    );
    assert_eq!(deposits_b.ids(), deposits);
    assert_eq!(
        money.keys(),
        [
            "money-deposited",
            "money-deposited",
            "money-deposited",
            "money-withdrawn"
        ]
    );
    assert_eq!(money.ids(), of(&|k| k.starts_with("money-")));
    assert_eq!(account.keys(), ["account-opened"]);
    assert_eq!(user_created.keys(), ["user-created"]);

    let names: Vec<_> = domain.handler_stats().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "account",
            "all",
            "deposits-a",
            "deposits-b",
            "money",
            "user-created"
        ],
        "sorted by name"
    );
    assert_eq!(
        stats(&domain, "all"),
        HandlerStats {
            name: "all".into(),
            succeeded: 6,
            failed: 0,
            panicked: 0,
            parked: 0,
            claims_lost: 0,
        }
    );
    assert_eq!(stats(&domain, "money").succeeded, 4);
}

/// Three attempts, with millisecond backoffs: retries without slowing the tests down.
fn quick_retries() -> DispatchOptions {
    DispatchOptions::default().retry(RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    })
}

/// `ids` with consecutive repeats (retries of one event) collapsed.
fn distinct_in_order(ids: Vec<uuid::Uuid>) -> Vec<uuid::Uuid> {
    let mut out = ids;
    out.dedup();
    out
}

#[tokio::test]
async fn a_failing_or_panicking_handler_is_retried_then_parks_and_never_fails_the_command() {
    let (witness_a, witness_z) = (Seen::new(), Seen::new());
    let attempted = Seen::new();
    let attempted_panics = Seen::new();
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .dispatch(quick_retries())
        .handler("a-witness", "*", witness_a.handler())
        .handler("failing", "*", {
            let attempted = attempted.clone();
            move |event: Arc<Event>| {
                attempted.push(event.clone());
                async move {
                    // Fail on deposits only.
                    if event.key == "money-deposited" {
                        Err(HandlerError::msg("downstream unavailable"))
                    } else {
                        Ok(())
                    }
                }
            }
        })
        .handler("panicking", "money-*", {
            let attempted = attempted_panics.clone();
            move |event: Arc<Event>| {
                attempted.push(event.clone());
                async move {
                    if event.key == "money-withdrawn" {
                        return Ok(());
                    }
                    panic!("handler bug on {}", event.key)
                }
            }
        })
        .handler("z-witness", "*", witness_z.handler())
        .build()
        .await
        .unwrap();

    // Every command succeeds although handlers fail and panic on its events.
    workload(&domain).await;
    domain.wait_idle().await;

    let log = all_events(&domain).await;
    assert_eq!(log.len(), 6);
    // The witnesses (sorted before and after the bad handlers) saw every event, in order.
    assert_eq!(witness_a.ids(), ids(&log));
    assert_eq!(witness_z.ids(), ids(&log));
    assert_eq!(
        distinct_in_order(attempted.ids()),
        ids(&log),
        "the failing handler still got every event, in order"
    );
    assert_eq!(
        attempted.len(),
        3 + 3 * 3,
        "each deposit was attempted three times"
    );
    assert_eq!(
        attempted_panics.len(),
        1 + 3 * 3,
        "a panic does not stop the next event"
    );

    assert_eq!(
        stats(&domain, "failing"),
        HandlerStats {
            name: "failing".into(),
            succeeded: 3,
            failed: 9,
            panicked: 0,
            parked: 3,
            claims_lost: 0,
        }
    );
    assert_eq!(
        stats(&domain, "panicking"),
        HandlerStats {
            name: "panicking".into(),
            succeeded: 1,
            failed: 0,
            panicked: 9,
            parked: 3,
            claims_lost: 0,
        }
    );
    for name in ["a-witness", "z-witness"] {
        let s = stats(&domain, name);
        assert_eq!(
            (s.succeeded, s.failed, s.panicked, s.parked),
            (6, 0, 0, 0),
            "{name}"
        );
    }

    // The parked events are visible, with the last error, per handler.
    let deposits: Vec<u64> = log
        .iter()
        .filter(|e| e.key == "money-deposited")
        .map(|e| e.position)
        .collect();
    let failing = domain.parked(Some("failing")).await.unwrap();
    assert_eq!(failing.iter().map(|l| l.position).collect::<Vec<_>>(), deposits);
    for letter in &failing {
        assert_eq!(
            (letter.attempts, letter.error.as_str()),
            (3, "downstream unavailable")
        );
        assert_eq!(letter.event_key, "money-deposited");
    }
    let panicking = domain.parked(Some("panicking")).await.unwrap();
    assert_eq!(panicking.len(), 3);
    assert!(
        panicking[0].error.contains("handler bug on money-deposited"),
        "{}",
        panicking[0].error
    );
    assert_eq!(domain.parked(None).await.unwrap().len(), 6);
    // Both handlers moved past the parked events.
    assert_eq!(
        domain.handler_checkpoint("failing").await.unwrap(),
        Some(log[5].position)
    );

    // The domain keeps working after handler panics.
    create_user(&domain, "Bob").await;
    domain.wait_idle().await;
    assert_eq!(stats(&domain, "a-witness").succeeded, 7);
}

/// A handler that records every attempt and always fails.
fn always_failing(attempts: &Seen) -> impl Fn(Arc<Event>) -> std::future::Ready<Result<(), HandlerError>> {
    let attempts = attempts.clone();
    move |event| {
        attempts.push(event);
        std::future::ready(Err(HandlerError::msg("downstream unavailable")))
    }
}

#[tokio::test]
async fn a_handler_with_its_own_retry_policy_is_tried_that_often_then_parked() {
    let (own, default, never, overridden) = (Seen::new(), Seen::new(), Seen::new(), Seen::new());
    let quick = |attempts| {
        HandlerRetry::attempts(attempts)
            .base_backoff(Duration::from_millis(1))
            .max_backoff(Duration::from_millis(2))
    };
    let domain = builder()
        .logstore(MemoryLogStore::new())
        // The domain's default: three attempts.
        .dispatch(quick_retries().handler_retry("overridden", HandlerRetry::attempts(2)))
        .handler_with_retry("own", "account-opened", quick(5), always_failing(&own))
        .handler("default", "account-opened", always_failing(&default))
        .handler_with_retry(
            "never",
            "account-opened",
            RetryPolicy::never(),
            always_failing(&never),
        )
        // Its own five attempts, but the options set two for its name: the options win.
        .handler_with_retry(
            "overridden",
            "account-opened",
            quick(5),
            always_failing(&overridden),
        )
        .build()
        .await
        .unwrap();
    open_account(&domain, 0).await;
    open_account(&domain, 0).await;
    domain.wait_idle().await;

    let opened: Vec<Event> = all_events(&domain).await;
    assert_eq!(opened.len(), 2);
    for (name, seen, attempts) in [
        ("own", &own, 5),
        ("default", &default, 3),
        ("never", &never, 1),
        ("overridden", &overridden, 2),
    ] {
        let expected: Vec<uuid::Uuid> = opened
            .iter()
            .flat_map(|e| std::iter::repeat_n(e.id, attempts as usize))
            .collect();
        assert_eq!(
            seen.ids(),
            expected,
            "{name}: {attempts} attempts per event, in order"
        );
        let s = stats(&domain, name);
        assert_eq!(
            (s.succeeded, s.failed, s.parked),
            (0, 2 * u64::from(attempts), 2),
            "{name}"
        );
        let parked = domain.parked(Some(name)).await.unwrap();
        assert_eq!(
            parked
                .iter()
                .map(|l| (l.position, l.attempts))
                .collect::<Vec<_>>(),
            opened.iter().map(|e| (e.position, attempts)).collect::<Vec<_>>(),
            "{name}: every event parked after its last attempt"
        );
        assert_eq!(
            domain.handler_checkpoint(name).await.unwrap(),
            Some(opened[1].position),
            "{name} moved on"
        );
    }
}

#[tokio::test]
async fn a_parked_event_can_be_retried_through_the_api() {
    let calls = Arc::new(AtomicU32::new(0));
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .dispatch(quick_retries())
        .handler("flaky", "account-opened", {
            let (calls, healthy) = (calls.clone(), healthy.clone());
            move |_event: Arc<Event>| {
                calls.fetch_add(1, Ordering::SeqCst);
                let ok = healthy.load(Ordering::SeqCst);
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err(HandlerError::msg("still down"))
                    }
                }
            }
        })
        .build()
        .await
        .unwrap();
    open_account(&domain, 0).await;
    domain.wait_idle().await;
    let parked = domain.parked(Some("flaky")).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let position = parked[0].position;

    // Still failing: stays parked, with one more attempt recorded.
    assert!(!domain.retry_parked("flaky", position).await.unwrap());
    let parked = domain.parked(Some("flaky")).await.unwrap();
    assert_eq!((parked.len(), parked[0].attempts), (1, 4));

    healthy.store(true, Ordering::SeqCst);
    assert!(domain.retry_parked("flaky", position).await.unwrap());
    assert!(domain.parked(None).await.unwrap().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let s = stats(&domain, "flaky");
    assert_eq!((s.succeeded, s.failed, s.parked), (1, 4, 1));

    // Unknown handler or position: an error, nothing runs.
    assert!(domain.retry_parked("flaky", position).await.is_err());
    assert!(domain.retry_parked("nobody", position).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_handler_added_later_catches_up_from_the_log_or_starts_from_now() {
    let store: Arc<MemoryLogStore> = Arc::new(MemoryLogStore::new());
    let first = builder().logstore_arc(store.clone()).build().await.unwrap();
    workload(&first).await;
    let history = all_events(&first).await;

    // A new application version on the same store, with two new handlers.
    let (catch_up, from_now) = (Seen::new(), Seen::new());
    let second = builder()
        .logstore_arc(store.clone())
        .dispatch(DispatchOptions::default().handler_start("from-now", StartFrom::Now))
        .handler("catch-up", "*", catch_up.handler())
        .handler("from-now", "*", from_now.handler())
        .build()
        .await
        .unwrap();
    second.wait_idle().await;
    assert_eq!(
        catch_up.ids(),
        ids(&history),
        "a new handler sees the whole history"
    );
    assert!(from_now.is_empty(), "started from now: no history");
    let later = create_user(&second, "Cy").await;
    second.wait_idle().await;
    let log = all_events(&second).await;
    assert_eq!(from_now.ids(), ids(&log[history.len()..]));
    assert_eq!(from_now.len(), 1);
    assert_eq!(log.last().unwrap().aggregate_id, later);

    // Reset replays the log to the handler (at-least-once: it sees everything again).
    second.reset_handler("from-now", 0).await.unwrap();
    second.wait_idle().await;
    assert_eq!(from_now.len(), 1 + log.len());
    assert!(second.reset_handler("nobody", 0).await.is_err());
}

#[tokio::test]
async fn handlers_resume_from_their_checkpoint_in_a_new_domain() {
    let store: Arc<MemoryLogStore> = Arc::new(MemoryLogStore::new());
    let before = Seen::new();
    let first = builder()
        .logstore_arc(store.clone())
        .handler("audit", "*", before.handler())
        .build()
        .await
        .unwrap();
    workload(&first).await;
    first.wait_idle().await;
    assert_eq!(before.len(), 6);
    drop(first);

    let after = Seen::new();
    let second = builder()
        .logstore_arc(store.clone())
        .handler("audit", "*", after.handler())
        .build()
        .await
        .unwrap();
    create_user(&second, "Di").await;
    second.wait_idle().await;
    let log = all_events(&second).await;
    assert_eq!(
        after.ids(),
        ids(&log[6..]),
        "only the new event: the checkpoint was kept"
    );
}

/// Six events in one page; the handler "crashes" (hangs for good) on the fourth, and the domain
/// is dropped. A new domain's handler of the same name starts from the checkpoint: what it gets
/// again is what was handled since the checkpoint last moved, plus the event in flight.
async fn redelivered_after_a_crash(options: DispatchOptions) -> (Option<u64>, Vec<String>) {
    let store: Arc<MemoryLogStore> = Arc::new(MemoryLogStore::new());
    workload(&builder().logstore_arc(store.clone()).build().await.unwrap()).await;
    let (before, gate) = (Seen::new(), Arc::new(Semaphore::new(3)));
    let first = builder()
        .logstore_arc(store.clone())
        .dispatch(options.checkpoint_interval(Duration::from_secs(3600)))
        .handler("h", "*", {
            let (before, gate) = (before.clone(), gate.clone());
            move |event: Arc<Event>| {
                before.push(event);
                let gate = gate.clone();
                async move {
                    // The fourth call never ends (the semaphore is closed at the end).
                    let _ = gate.acquire().await.map(|permit| permit.forget());
                    Ok(())
                }
            }
        })
        .build()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while before.len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the fourth call never started"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let at_crash = first.handler_checkpoint("h").await.unwrap();
    drop(first);

    let after = Seen::new();
    let second = builder()
        .logstore_arc(store.clone())
        .handler("h", "*", after.handler())
        .build()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), second.wait_idle())
        .await
        .expect("the new domain caught up");
    gate.close();
    (at_crash, after.keys())
}

#[tokio::test]
async fn checkpoint_every_bounds_what_a_crash_delivers_again() {
    let log = {
        let store = MemoryLogStore::new();
        let domain = builder().logstore(store).build().await.unwrap();
        workload(&domain).await;
        all_events(&domain).await
    };
    assert_eq!(log.len(), 6);
    // Positions and keys are the same in every fresh memory store: the events from the n-th on.
    let from = |n: usize| {
        let keys: Vec<String> = log[n - 1..].iter().map(|e| e.key.to_string()).collect();
        (Some(log[..n - 1].last().map_or(0, |e| e.position)), keys)
    };

    // By page (the time bound is out of reach here): the whole page again.
    let again = redelivered_after_a_crash(DispatchOptions::default()).await;
    assert_eq!(again, from(1));

    // Every event: only the one in flight again.
    let again = redelivered_after_a_crash(DispatchOptions::default().checkpoint_every(1)).await;
    assert_eq!(again, from(4));

    // Every second event: the third (handled, not yet recorded) and the one in flight again.
    let again = redelivered_after_a_crash(DispatchOptions::default().checkpoint_every(2)).await;
    assert_eq!(again, from(3));
}

#[tokio::test]
async fn wait_idle_waits_for_handlers_still_running() {
    let gate = Arc::new(Semaphore::new(0));
    let done = Seen::new();
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .handler("gated", "*", {
            let (gate, done) = (gate.clone(), done.clone());
            move |event: Arc<Event>| {
                let (gate, done) = (gate.clone(), done.clone());
                async move {
                    gate.acquire().await.unwrap().forget();
                    done.push(event);
                    Ok(())
                }
            }
        })
        .build()
        .await
        .unwrap();
    let id = open_account(&domain, 5).await; // 2 events
    assert!(done.is_empty(), "the handler cannot have run: it is gated");

    let idle = domain.wait_idle();
    tokio::pin!(idle);
    tokio::select! {
        biased;
        _ = &mut idle => panic!("wait_idle returned while two invocations were pending"),
        _ = std::future::ready(()) => {}
    }
    gate.add_permits(1);
    // Still one invocation pending.
    tokio::select! {
        biased;
        _ = &mut idle => panic!("wait_idle returned while an invocation was pending"),
        _ = tokio::task::yield_now() => {}
    }
    gate.add_permits(1);
    idle.await;
    assert_eq!(done.len(), 2);
    assert_eq!(stats(&domain, "gated").succeeded, 2);

    // Idle with nothing pending returns at once; dispatch resumes afterwards.
    domain.wait_idle().await;
    gate.add_permits(1);
    domain
        .process_command(Account::deposit_command(id, 1))
        .await
        .unwrap();
    domain.wait_idle().await;
    assert_eq!(done.len(), 3);
}

#[tokio::test]
async fn wait_idle_covers_slow_asynchronous_handlers() {
    let seen = Seen::new();
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .handler("slow", "*", {
            let seen = seen.clone();
            move |event: Arc<Event>| {
                let seen = seen.clone();
                async move {
                    for _ in 0..20 {
                        tokio::task::yield_now().await;
                    }
                    seen.push(event);
                    Ok(())
                }
            }
        })
        .build()
        .await
        .unwrap();
    workload(&domain).await;
    domain.wait_idle().await;
    assert_eq!(seen.ids(), ids(&all_events(&domain).await));
}

#[tokio::test]
async fn replays_and_failed_commands_dispatch_nothing() {
    let seen = Seen::new();
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .handler("all", "*", seen.handler())
        .build()
        .await
        .unwrap();
    let id = open_account(&domain, 0).await;
    let cmd = Account::deposit_command(id, 3);
    domain.process_command(cmd.clone()).await.unwrap();
    assert!(domain.process_command(cmd).await.unwrap().replayed);
    assert!(domain
        .process_command(Account::withdraw_command(id, 100))
        .await
        .is_err());
    domain.wait_idle().await;
    assert_eq!(seen.ids(), ids(&all_events(&domain).await));
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn duplicate_handler_names_are_a_config_error() {
    let seen = Seen::new();
    let err = builder()
        .logstore(MemoryLogStore::new())
        .handler("audit", "*", seen.handler())
        .handler("audit", "user-created", seen.handler())
        .build()
        .await
        .err()
        .expect("duplicate names are refused");
    assert_eq!(err.code(), "config");
    assert!(matches!(&err, Error::Config(m) if m.contains("audit")), "{err}");
}

#[tokio::test]
async fn bad_patterns_and_missing_store_are_config_errors() {
    let seen = Seen::new();
    for pattern in ["", "user-*-x", "*user"] {
        let err = builder()
            .logstore(MemoryLogStore::new())
            .handler("h", pattern, seen.handler())
            .build()
            .await
            .err()
            .unwrap_or_else(|| panic!("pattern {pattern:?} is refused"));
        assert_eq!(err.code(), "config", "{pattern:?}");
    }
    let err = builder().build().await.err().expect("a store is required");
    assert_eq!(err.code(), "config");
    let err = builder()
        .aggregate::<User>()
        .logstore(MemoryLogStore::new())
        .build()
        .await
        .err()
        .expect("a resource registered twice is refused");
    assert_eq!(err.code(), "config");
}

/// Two commands on one aggregate: the first commits version 2 but its caller hears back only
/// after the second has committed version 3 and returned. A handler must still see version 2
/// before version 3 ("in order per aggregate", DESIGN.md).
///
/// Handlers are fed from the log (`read_all` after their checkpoint), not from responses, so
/// they follow log order.
#[tokio::test]
async fn handlers_see_one_aggregate_s_events_in_version_order_even_when_commits_return_late() {
    let store = ProbeStore::new();
    let seen = Seen::new();
    // No per-aggregate turns: the two commands must interleave as if from two processes.
    let domain = builder()
        .logstore_arc(store.clone())
        .handler("all", "*", seen.handler())
        .aggregate_turns(false)
        .build()
        .await
        .unwrap();
    let id = open_account(&domain, 0).await;
    let release = store.hold_next_append();
    let committed = store.committed();
    let slow = tokio::spawn({
        let domain = domain.clone();
        async move { domain.process_command(Account::deposit_command(id, 1)).await }
    });
    committed.notified().await;
    let fast = domain
        .process_command(Account::deposit_command(id, 2))
        .await
        .unwrap();
    assert_eq!(fast.version, 3);
    release.add_permits(1);
    assert_eq!(slow.await.unwrap().unwrap().version, 2);
    domain.wait_idle().await;
    let log = all_events(&domain).await;
    let versions: Vec<u64> = seen
        .ids()
        .iter()
        .map(|id| log.iter().find(|e| e.id == *id).unwrap().aggregate_version)
        .collect();
    assert_eq!(versions, [1, 2, 3]);
}

/// Dispatch options for a handler name the domain does not have (a typo) fail the build,
/// naming the unknown name and the handlers there are.
#[tokio::test]
async fn options_for_an_unknown_handler_name_fail_the_build() {
    let seen = Seen::new();
    let err = builder()
        .logstore(MemoryLogStore::new())
        .handler("welcome-email", "user-created", seen.handler())
        .dispatch(
            DispatchOptions::default()
                .handler_retry("welcome-emial", RetryPolicy::never())
                .handler_start("welcome-email", StartFrom::Now),
        )
        .build()
        .await
        .err()
        .expect("the typo is refused");
    assert_eq!(err.code(), "config");
    let message = err.to_string();
    assert!(message.contains("`welcome-emial`"), "{message}");
    assert!(message.contains("it has: welcome-email"), "{message}");
}
