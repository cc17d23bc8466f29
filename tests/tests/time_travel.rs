//! Time travel: state and events as of a time or a version.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use fluvius_core::prelude::*;
use fluvius_tests::*;

/// Spin until the clock (at the stores' microsecond precision) has passed `t`, so the next
/// event gets a strictly later timestamp. Not a timing assumption: it waits for a fact.
fn clock_past(t: DateTime<Utc>) {
    while Utc::now().trunc_subsecs(6) <= t {
        std::hint::spin_loop();
    }
}

#[tokio::test]
async fn load_at_a_time_between_two_events() {
    let domain = domain().await;
    let id = AggregateId::new();
    let r1 = domain
        .process_command(User::create_user_command(id, "Ann".into(), "a@x.org".into()))
        .await
        .unwrap();
    let t1 = r1.events[0].timestamp;
    clock_past(t1);
    let r2 = domain
        .process_command(User::rename_command(id, "Bea".into()))
        .await
        .unwrap();
    let t2 = r2.events[0].timestamp;
    clock_past(t2);
    let r3 = domain
        .process_command(User::rename_command(id, "Cy".into()))
        .await
        .unwrap();
    let t3 = r3.events[0].timestamp;
    assert!(t1 < t2 && t2 < t3);

    // Before anything: the default state.
    let before: User = domain.load_at(id, t1 - Duration::microseconds(1)).await.unwrap();
    assert_eq!(before, User::default());
    // At exactly t1 (inclusive) and between t1 and t2.
    let at1: User = domain.load_at(id, t1).await.unwrap();
    assert_eq!(at1.name, "Ann");
    assert!(at1.active);
    let between: User = domain.load_at(id, t2 - Duration::microseconds(1)).await.unwrap();
    assert_eq!(between.name, "Ann");
    let at2: User = domain.load_at(id, t2).await.unwrap();
    assert_eq!(at2.name, "Bea");
    let now: User = domain.load_at(id, Utc::now()).await.unwrap();
    assert_eq!(now, domain.load::<User>(id).await.unwrap());
    assert_eq!(now.name, "Cy");

    // The events themselves: `get_events_until` is inclusive.
    let store = domain.logstore();
    assert!(store
        .get_events_until("user", id, t1 - Duration::microseconds(1))
        .await
        .unwrap()
        .is_empty());
    let until1 = store.get_events_until("user", id, t1).await.unwrap();
    assert_eq!(ids(&until1), ids(&r1.events));
    let until2 = store.get_events_until("user", id, t2).await.unwrap();
    assert_eq!(
        until2.iter().map(|e| e.aggregate_version).collect::<Vec<_>>(),
        [1, 2]
    );
    let until_between = store
        .get_events_until("user", id, t3 - Duration::microseconds(1))
        .await
        .unwrap();
    assert_eq!(until_between.len(), 2);
    assert_eq!(store.get_events_until("user", id, t3).await.unwrap().len(), 3);
}

#[tokio::test]
async fn load_at_version_and_get_events_from() {
    let domain = domain().await;
    let id = open_account(&domain, 0).await;
    for amount in [10, 20, 30] {
        domain
            .process_command(Account::deposit_command(id, amount))
            .await
            .unwrap();
    }
    domain
        .process_command(Account::withdraw_command(id, 5))
        .await
        .unwrap();

    let balances: Vec<i64> = {
        let mut v = Vec::new();
        for version in 0..=6 {
            v.push(
                domain
                    .load_at_version::<Account>(id, version)
                    .await
                    .unwrap()
                    .balance,
            );
        }
        v
    };
    assert_eq!(
        balances,
        [0, 0, 10, 30, 60, 55, 55],
        "version 6 does not exist yet: latest"
    );
    assert!(!domain.load_at_version::<Account>(id, 0).await.unwrap().open);
    assert!(domain.load_at_version::<Account>(id, 1).await.unwrap().open);

    let store = domain.logstore();
    let from3 = store.get_events_from("account", id, 3).await.unwrap();
    assert_eq!(
        from3.iter().map(|e| e.aggregate_version).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(store.get_events_from("account", id, 6).await.unwrap().is_empty());
    let all = store.get_events_from("account", id, 0).await.unwrap();
    assert_eq!(all, store.get_events("account", id).await.unwrap());
    let slice = store
        .read_stream(
            "account",
            id,
            fluvius_core::StreamQuery {
                from_version: Some(2),
                to_version: Some(3),
                until: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        slice.iter().map(|e| e.aggregate_version).collect::<Vec<_>>(),
        [2, 3]
    );
}

#[tokio::test]
async fn time_travel_on_an_unknown_aggregate_is_the_default_state() {
    let domain = domain().await;
    let id = AggregateId::new();
    assert_eq!(
        domain.load_at::<User>(id, Utc::now()).await.unwrap(),
        User::default()
    );
    assert_eq!(
        domain.load_at_version::<User>(id, 3).await.unwrap(),
        User::default()
    );
    assert!(domain
        .logstore()
        .get_events_until("user", id, Utc::now())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn other_aggregates_do_not_leak_into_a_stream() {
    let domain = domain().await;
    let a = open_account(&domain, 5).await;
    let b = open_account(&domain, 7).await;
    let at = Utc::now();
    assert_eq!(domain.load_at::<Account>(a, at).await.unwrap().balance, 5);
    assert_eq!(domain.load_at::<Account>(b, at).await.unwrap().balance, 7);
    let ea = domain
        .logstore()
        .get_events_until("account", a, at)
        .await
        .unwrap();
    assert!(ea.iter().all(|e| e.aggregate_id == a));
    assert_eq!(ea.len(), 2);
}
