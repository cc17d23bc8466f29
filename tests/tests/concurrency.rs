//! Optimistic concurrency: conflicts, the retry policy, no lost updates.
//!
//! The probe store makes interleavings deterministic: `gate_loads(n)` holds `n` commands after
//! their load until all `n` have loaded the same version; `inject_rivals(n)` lets "another
//! writer" append just before the command does.

use std::collections::HashSet;

use fluvius_core::prelude::*;
use fluvius_core::RetryPolicy;
use fluvius_tests::*;

#[tokio::test]
async fn without_retry_two_concurrent_commands_one_wins_one_conflicts() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::never()).await;
    let setup = probe_domain(&store, RetryPolicy::never()).await;
    let id = open_account(&setup, 0).await; // version 1
    store.gate_loads(2);
    let (a, b) = tokio::join!(
        domain.process_command(Account::deposit_command(id, 10)),
        domain.process_command(Account::deposit_command(id, 20)),
    );
    let (ok, err) = match (a, b) {
        (Ok(ok), Err(err)) | (Err(err), Ok(ok)) => (ok, err),
        (a, b) => panic!("expected exactly one success and one conflict, got {a:?} and {b:?}"),
    };
    assert_eq!(ok.version, 2);
    match &err {
        Error::Conflict {
            resource,
            aggregate_id,
            expected,
            actual,
        } => {
            assert_eq!(resource, "account");
            assert_eq!(*aggregate_id, id);
            assert_eq!((*expected, *actual), (1, 2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(err.code(), "conflict");
    assert!(err.is_conflict());
    assert_eq!(store.conflicts(), 1);

    let events = domain.logstore().get_events("account", id).await.unwrap();
    assert_eq!(assert_dense(&events), 2, "exactly one event per version");
    assert_eq!(events[1], ok.events[0]);
    let balance = domain.load::<Account>(id).await.unwrap().balance;
    assert_eq!(balance, ok.events[0].payload_as::<Deposited>().unwrap().amount);
}

#[tokio::test]
async fn with_the_default_retry_concurrent_deposits_all_land() {
    // The default policy makes 4 attempts; each failed attempt of a command is caused by a
    // distinct other command's commit, so 4 commands that all loaded the same version (the
    // worst case) must all succeed.
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::default()).await;
    let setup = probe_domain(&store, RetryPolicy::default()).await;
    let id = open_account(&setup, 0).await;
    let amounts = [1, 10, 100, 1000];
    store.gate_loads(amounts.len());
    let results = futures_join_all(&domain, amounts.iter().map(|&a| Account::deposit_command(id, a))).await;
    let versions: HashSet<u64> = results.iter().map(|r| r.as_ref().unwrap().version).collect();
    assert_eq!(
        versions,
        HashSet::from([2, 3, 4, 5]),
        "each command got its own version"
    );
    assert!(
        store.conflicts() >= 3,
        "all four loaded version 1, so three had to retry"
    );
    assert_eq!(
        store.appends(),
        1 + 4 + store.conflicts(),
        "one append per attempt"
    );

    let events = domain.logstore().get_events("account", id).await.unwrap();
    assert_eq!(assert_dense(&events), 5);
    assert_eq!(
        domain.load::<Account>(id).await.unwrap().balance,
        1111,
        "no lost update"
    );
}

#[tokio::test]
async fn a_retry_runs_the_action_again_on_the_fresh_state() {
    // 100 in the account, four concurrent withdrawals of 40 that all saw 100: only two may
    // succeed; the others are refused on the state they see when they retry.
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::default()).await;
    let setup = probe_domain(&store, RetryPolicy::default()).await;
    let id = open_account(&setup, 100).await;
    store.gate_loads(4);
    let results = futures_join_all(&domain, (0..4).map(|_| Account::withdraw_command(id, 40))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 2, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        match r {
            Error::Rejected(e) => assert_eq!(e.code(), "insufficient_funds"),
            other => panic!("expected insufficient funds, got {other:?}"),
        }
    }
    assert_eq!(domain.load::<Account>(id).await.unwrap().balance, 20);
    let events = domain.logstore().get_events("account", id).await.unwrap();
    assert_eq!(assert_dense(&events), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_deposits_lose_nothing() {
    const N: i64 = 64;
    // Every failed attempt is caused by another command's commit, so a bounded number of
    // attempts (generous here, whatever caching does) is enough for every command to land.
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .retry(RetryPolicy::attempts(4 * N as u32))
        .build()
        .await
        .unwrap();
    let id = open_account(&domain, 0).await;
    let tasks: Vec<_> = (1..=N)
        .map(|amount| {
            let domain = domain.clone();
            tokio::spawn(async move { domain.process_command(Account::deposit_command(id, amount)).await })
        })
        .collect();
    let mut versions = HashSet::new();
    for t in tasks {
        let resp = t.await.unwrap().expect("every deposit lands");
        assert!(
            versions.insert(resp.version),
            "version {} handed out twice",
            resp.version
        );
    }
    let events = domain.logstore().get_events("account", id).await.unwrap();
    assert_eq!(assert_dense(&events), N as u64 + 1);
    assert_eq!(domain.load::<Account>(id).await.unwrap().balance, N * (N + 1) / 2);
}

#[tokio::test]
async fn a_conflict_with_another_writer_is_retried() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::default()).await;
    let id = open_account(&domain, 0).await;
    let appends = store.appends();
    store.inject_rivals(1);
    let resp = domain
        .process_command(Account::deposit_command(id, 5))
        .await
        .unwrap();
    assert_eq!(resp.version, 3, "appended after the rival's version 2");
    assert_eq!(store.appends() - appends, 2, "one retry");
    assert_eq!(store.conflicts(), 1);
    assert_eq!(domain.load::<Account>(id).await.unwrap().balance, 10);
}

#[tokio::test]
async fn retries_stop_after_the_policy_s_attempts() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::attempts(3)).await;
    let id = open_account(&domain, 0).await;
    let appends = store.appends();
    store.inject_rivals(usize::MAX);
    let err = domain
        .process_command(Account::deposit_command(id, 5))
        .await
        .unwrap_err();
    store.inject_rivals(0);
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(store.appends() - appends, 3, "exactly three attempts");
    // Only the rivals' three deposits are in the log.
    let events = domain.logstore().get_events("account", id).await.unwrap();
    assert_eq!(assert_dense(&events), 4);
    assert_eq!(domain.load::<Account>(id).await.unwrap().balance, 15);
}

#[tokio::test]
async fn a_transient_store_failure_is_retried_like_a_conflict() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::default()).await;
    let id = open_account(&domain, 0).await;
    let appends = store.appends();
    store.fail_appends_transiently(2);
    let resp = domain
        .process_command(Account::deposit_command(id, 5))
        .await
        .unwrap();
    assert_eq!(resp.version, 2);
    assert_eq!(store.appends() - appends, 3, "two retries");
    assert_eq!(domain.load::<Account>(id).await.unwrap().balance, 5);

    // Also when the command named its version: nothing was written, so the retry checks the
    // same expectation against the same stream.
    let appends = store.appends();
    store.fail_appends_transiently(1);
    let resp = domain
        .process_command(Account::deposit_command(id, 5).expect_version(2))
        .await
        .unwrap();
    assert_eq!(resp.version, 3);
    assert_eq!(store.appends() - appends, 2, "one retry");
    let events = domain.logstore().get_events("account", id).await.unwrap();
    assert_eq!(assert_dense(&events), 3, "each command appended once");
}

#[tokio::test]
async fn transient_failures_stop_after_the_policy_s_attempts() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::attempts(3)).await;
    let id = open_account(&domain, 0).await;
    let log = all_events(&domain).await;
    let appends = store.appends();
    store.fail_appends_transiently(usize::MAX);
    let err = domain
        .process_command(Account::deposit_command(id, 5))
        .await
        .unwrap_err();
    store.fail_appends_transiently(0);
    assert_eq!(err.code(), "transient", "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(store.appends() - appends, 3, "exactly three attempts");
    assert_eq!(all_events(&domain).await, log, "nothing written");
}

#[tokio::test]
async fn never_retry_returns_the_first_conflict() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::never()).await;
    let id = open_account(&domain, 0).await;
    store.inject_rivals(1);
    let err = domain
        .process_command(Account::deposit_command(id, 5))
        .await
        .unwrap_err();
    match err {
        Error::Conflict { expected, actual, .. } => assert_eq!((expected, actual), (1, 2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.conflicts(), 1);
}

#[tokio::test]
async fn expect_version_mismatch_is_a_conflict_and_not_retried() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::default()).await;
    let id = open_account(&domain, 10).await; // version 2
    let log = all_events(&domain).await;

    let appends = store.appends();
    let err = domain
        .process_command(Account::deposit_command(id, 5).expect_version(1))
        .await
        .unwrap_err();
    match err {
        Error::Conflict { expected, actual, .. } => assert_eq!((expected, actual), (1, 2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.appends(), appends, "refused before any append");
    assert_eq!(all_events(&domain).await, log);

    // The version matched at load, but another writer got in before the append: still not
    // retried, because the caller asked to be told.
    let appends = store.appends();
    store.inject_rivals(1);
    let err = domain
        .process_command(Account::deposit_command(id, 5).expect_version(2))
        .await
        .unwrap_err();
    match err {
        Error::Conflict { expected, actual, .. } => assert_eq!((expected, actual), (2, 3)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.appends() - appends, 1, "not retried");
    assert_eq!(
        domain.load::<Account>(id).await.unwrap().balance,
        15,
        "only the rival's deposit"
    );

    // The right version runs.
    let resp = domain
        .process_command(Account::deposit_command(id, 5).expect_version(3))
        .await
        .unwrap();
    assert_eq!(resp.version, 4);
    // Expecting version 0 of a new aggregate: create-if-absent.
    let fresh = AggregateId::new();
    let resp = domain
        .process_command(Account::open_account_command(fresh, "Bo".into()).expect_version(0))
        .await
        .unwrap();
    assert_eq!(resp.version, 1);
    let err = domain
        .process_command(Account::open_account_command(fresh, "Bo".into()).expect_version(0))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
}

#[tokio::test]
async fn conflicts_on_one_aggregate_do_not_touch_another() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::never()).await;
    let setup = probe_domain(&store, RetryPolicy::never()).await;
    let a = open_account(&setup, 0).await;
    let b = open_account(&setup, 0).await;
    // Both load (one each) before either appends: different streams never conflict.
    store.gate_loads(2);
    let (ra, rb) = tokio::join!(
        domain.process_command(Account::deposit_command(a, 1)),
        domain.process_command(Account::deposit_command(b, 2)),
    );
    assert_eq!(ra.unwrap().version, 2);
    assert_eq!(rb.unwrap().version, 2);
    assert_eq!(store.conflicts(), 0);
}

/// Run commands concurrently on the current task (so `gate_loads` can line them up).
async fn futures_join_all(
    domain: &Domain,
    commands: impl Iterator<Item = Command>,
) -> Vec<fluvius_core::Result<Response>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, cmd) in commands.enumerate() {
        let domain = domain.clone();
        set.spawn(async move { (i, domain.process_command(cmd).await) });
    }
    let mut out: Vec<_> = set.join_all().await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Inside one domain, commands on one aggregate take turns (the default): 32 concurrent
/// deposits on a hot account all succeed with no retry allowed, none of them conflicts, and
/// each got its own version — although every append takes a while (without turns, they would
/// all load one version and all but one conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_on_one_aggregate_take_turns_in_one_domain() {
    let store = ProbeStore::new();
    let domain = builder()
        .logstore_arc(store.clone())
        .retry(RetryPolicy::never())
        .build()
        .await
        .unwrap();
    let id = open_account(&domain, 0).await;
    store.delay_appends(std::time::Duration::from_millis(2));
    let tasks: Vec<_> = (1..=32)
        .map(|amount| {
            let domain = domain.clone();
            tokio::spawn(async move { domain.process_command(Account::deposit_command(id, amount)).await })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().expect("no deposit conflicts").version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=33).collect::<Vec<u64>>());
    assert_eq!(store.conflicts(), 0);
    assert_eq!(
        domain.load::<Account>(id).await.unwrap().balance,
        (1..=32).sum::<i64>()
    );
}
