//! Idempotency: the same command id processed twice returns the first response and writes
//! nothing more.

use std::sync::Arc;

use fluvius_core::prelude::*;
use fluvius_core::RetryPolicy;
use fluvius_tests::*;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn the_same_command_id_twice_replays_the_first_response() {
    let domain = domain().await;
    let id = open_account(&domain, 10).await;
    let cmd = Account::deposit_command(id, 25);
    let again = cmd.clone();
    let first = domain.process_command(cmd).await.unwrap();
    let log = all_events(&domain).await;

    let second = domain.process_command(again).await.unwrap();
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(second.command_id, first.command_id);
    assert_eq!(second.aggregate_id, first.aggregate_id);
    assert_eq!(second.resource, first.resource);
    assert_eq!(second.version, first.version);
    assert_eq!(
        second.events, first.events,
        "the same events, ids and positions included"
    );
    assert_eq!(all_events(&domain).await, log, "nothing new in the log");
    let account: Account = domain.load(id).await.unwrap();
    assert_eq!(account.balance, 35, "deposited once");
}

#[tokio::test]
async fn a_replay_answers_with_the_first_response_even_after_later_commands() {
    let domain = domain().await;
    let id = open_account(&domain, 10).await;
    let command_id = Uuid::now_v7();
    let first = domain
        .process_command(Account::deposit_command(id, 5).with_id(command_id))
        .await
        .unwrap();
    domain
        .process_command(Account::deposit_command(id, 100))
        .await
        .unwrap();

    // Untyped, other payload, same id: still the first response; the state it returns is the
    // state right after the first run, not the current one.
    let replay = domain
        .process_command(
            Command::new("account", id, "deposit", json!({"amount": 999}))
                .with_id(command_id)
                .returning_state(),
        )
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.version, 3);
    assert_eq!(replay.events, first.events);
    assert_eq!(replay.state.unwrap()["balance"], 15);
    let account: Account = domain.load(id).await.unwrap();
    assert_eq!(account.balance, 115);
    assert_eq!(all_events(&domain).await.len(), 4);
}

#[tokio::test]
async fn a_rejected_command_records_nothing_and_can_run_again() {
    let domain = domain().await;
    let id = open_account(&domain, 10).await;
    let withdraw = Account::withdraw_command(id, 50);
    let command_id = withdraw.id;
    let log = all_events(&domain).await;

    let err = domain.process_command(withdraw.clone()).await.unwrap_err();
    assert_eq!(err.code(), "rejected");
    assert_eq!(all_events(&domain).await, log);
    assert!(
        domain.logstore().get_command(command_id).await.unwrap().is_none(),
        "a rejected command is not recorded"
    );

    // Still rejected on the same state: it really runs again, it is not a cached failure.
    assert_eq!(
        domain.process_command(withdraw.clone()).await.unwrap_err().code(),
        "rejected"
    );

    domain
        .process_command(Account::deposit_command(id, 40))
        .await
        .unwrap();
    let ok = domain.process_command(withdraw.clone()).await.unwrap();
    assert!(!ok.replayed);
    assert_eq!(ok.version, 4);
    let account: Account = domain.load(id).await.unwrap();
    assert_eq!(account.balance, 0);

    let replay = domain.process_command(withdraw).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.events, ok.events);
    assert_eq!(domain.load::<Account>(id).await.unwrap().balance, 0);
}

#[tokio::test]
async fn an_invalid_payload_records_nothing_and_the_id_stays_free() {
    let domain = domain().await;
    let id = open_account(&domain, 0).await;
    let command_id = Uuid::now_v7();
    let bad = Command::new("account", id, "deposit", json!({"amount": "ten"})).with_id(command_id);
    assert_eq!(
        domain.process_command(bad).await.unwrap_err().code(),
        "invalid_payload"
    );
    let good = Command::new("account", id, "deposit", json!({"amount": 10})).with_id(command_id);
    let resp = domain.process_command(good).await.unwrap();
    assert!(!resp.replayed);
    assert_eq!(domain.load::<Account>(id).await.unwrap().balance, 10);
}

#[tokio::test]
async fn a_create_without_id_is_idempotent_too() {
    let domain = domain().await;
    let cmd = Command::create("user", "create-user", json!({"name": "Ann", "email": "a@x.org"}));
    let again = cmd.clone();
    let first = domain.process_command(cmd).await.unwrap();
    let second = domain.process_command(again).await.unwrap();
    assert!(second.replayed);
    assert_eq!(second.aggregate_id, first.aggregate_id, "no second aggregate");
    assert_eq!(all_events(&domain).await.len(), 1);
}

#[tokio::test]
async fn two_concurrent_runs_of_one_command_write_once() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::default()).await;
    let setup = probe_domain(&store, RetryPolicy::default()).await;
    let id = open_account(&setup, 10).await;
    let cmd = Account::deposit_command(id, 7);
    // Both runs look the id up (not seen), load version 2, then race to append.
    store.gate_loads(2);
    let (a, b) = tokio::join!(domain.process_command(cmd.clone()), domain.process_command(cmd));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        [a.replayed, b.replayed].iter().filter(|r| **r).count(),
        1,
        "exactly one run is a replay"
    );
    assert_eq!(a.events, b.events);
    assert_eq!(a.version, 3);
    let events = domain.logstore().get_events("account", id).await.unwrap();
    assert_eq!(assert_dense(&events), 3);
    assert_eq!(domain.load::<Account>(id).await.unwrap().balance, 17);
}

/// A repeated command runs on the state its first run produced (the id is only looked up once
/// an attempt did not append): it must answer with the first response, even though the action
/// now refuses (here: the user already exists).
#[tokio::test]
async fn a_duplicate_that_loses_the_race_replays_instead_of_failing() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::default()).await;
    let id = AggregateId::new();
    let cmd = User::create_user_command(id, "Ann".into(), "a@x.org".into());
    let again = cmd.clone();
    let first = domain.process_command(cmd).await.unwrap();
    let second = domain
        .process_command(again)
        .await
        .expect("the first response, replayed");
    assert!(second.replayed);
    assert_eq!(second.events, first.events);
    assert_eq!(all_events(&domain).await.len(), 1);
}

/// Same, for a command that named its expected version (now a conflict).
#[tokio::test]
async fn a_duplicate_with_expected_version_that_loses_the_race_replays() {
    let store: Arc<ProbeStore> = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::default()).await;
    let id = open_account(&domain, 10).await;
    let cmd = Account::deposit_command(id, 1).expect_version(2);
    let again = cmd.clone();
    let first = domain.process_command(cmd).await.unwrap();
    let second = domain
        .process_command(again)
        .await
        .expect("the first response, replayed");
    assert!(second.replayed);
    assert_eq!(second.version, first.version);
    assert_eq!(domain.load::<Account>(id).await.unwrap().balance, 11);
}

/// A command without an aggregate id gets a new id from the domain: nothing can be stored
/// under it, so the command is decided on the default state without reading the store. A
/// command naming its id reads (no cache here), and a repeated id-less command still replays.
#[tokio::test]
async fn a_command_without_id_decides_on_the_default_state_without_a_read() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::default()).await;
    let cmd = Command::create("user", "create-user", json!({"name": "Ann", "email": "a@x.org"}));
    let again = cmd.clone();
    let first = domain.process_command(cmd).await.unwrap();
    assert_eq!((first.version, first.events.len()), (1, 1));
    assert_eq!(store.reads(), 0, "no read for a new aggregate");

    domain
        .process_command(User::create_user_command(
            AggregateId::new(),
            "Bo".into(),
            "b@x.org".into(),
        ))
        .await
        .unwrap();
    assert_eq!(store.reads(), 1, "a command naming its aggregate loads it");

    let second = domain.process_command(again).await.unwrap();
    assert!(second.replayed);
    assert_eq!(second.aggregate_id, first.aggregate_id);
    assert_eq!(all_events(&domain).await.len(), 2);
}

/// A command expecting version 0 says its aggregate is new: it is decided on the default state
/// without reading the store. If the aggregate exists after all, the append is refused and the
/// command, decided again on what is stored, fails with a conflict naming the stored version
/// (nothing written; not retried).
#[tokio::test]
async fn expecting_version_zero_decides_without_a_read_and_conflicts_on_an_existing_aggregate() {
    let store = ProbeStore::new();
    let domain = probe_domain(&store, RetryPolicy::default()).await;
    let id = AggregateId::new();
    let create = |name: &str| User::create_user_command(id, name.into(), "a@x.org".into()).expect_version(0);
    let first = domain.process_command(create("Ann")).await.unwrap();
    assert_eq!((first.version, first.events.len()), (1, 1));
    assert_eq!(store.reads(), 0, "no read for an aggregate expected to be new");

    // A second domain on the same store has nothing cached: its guess is wrong.
    let other = probe_domain(&store, RetryPolicy::default()).await;
    match other.process_command(create("Bo")).await {
        Err(fluvius_core::Error::Conflict { expected, actual, .. }) => assert_eq!((expected, actual), (0, 1)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.conflicts(),
        1,
        "the guess was refused by the append's version check"
    );
    assert_eq!(store.reads(), 1, "then the aggregate was read, once");
    assert_eq!(all_events(&domain).await.len(), 1, "nothing else was written");
}
