//! A command whose append ends in doubt (the store answers `outcome_unknown`): the caller is
//! told exactly that, with the command's id; the aggregate's cached state is dropped; and the
//! resend with the same command id is answered from the command record, never applied twice.

use fluvius_core::prelude::*;
use fluvius_tests::*;
use uuid::Uuid;

#[tokio::test]
async fn an_append_in_doubt_is_answered_outcome_unknown_and_its_resend_replays() {
    let store = ProbeStore::new();
    let domain = builder().logstore_arc(store.clone()).build().await.unwrap();
    let id = open_account(&domain, 10).await;

    // The append is stored but its answer is lost, and the domain's own lookup of the command
    // record fails too: the caller must hear `outcome_unknown`, naming the command.
    store.doubt_next_append();
    store.fail_next_lookups(1);
    let command_id = Uuid::now_v7();
    let err = domain
        .process_command(Account::deposit_command(id, 5).with_id(command_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "outcome_unknown", "{err}");
    assert!(err.is_outcome_unknown());
    match &err {
        Error::OutcomeUnknown {
            command_id: named, ..
        } => assert_eq!(*named, Some(command_id)),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("same command id"), "{err}");

    // The aggregate's cached state is unknown: the next command loads it from the store, and
    // decides on the stored deposit.
    let reads = store.reads();
    let next = domain
        .process_command(Account::deposit_command(id, 1))
        .await
        .unwrap();
    assert!(store.reads() > reads, "the command did not load the aggregate");
    assert_eq!(
        store.conflicts(),
        0,
        "the command was decided on the stale cached state"
    );
    assert_eq!(next.version, 4, "open, 10, 5 (in doubt, but stored), 1");

    // The resend with the same id is answered from the record: nothing is applied twice.
    let resend = domain
        .process_command(Account::deposit_command(id, 5).with_id(command_id))
        .await
        .unwrap();
    assert!(resend.replayed);
    assert_eq!(resend.version, 3);
    let account: Account = domain.load(id).await.unwrap();
    assert_eq!(account.balance, 16, "deposited 10, 5 and 1, each once");
    let stored = all_events(&domain)
        .await
        .into_iter()
        .filter(|e| e.command_id == command_id)
        .count();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn an_append_in_doubt_that_is_recorded_answers_from_the_record_at_once() {
    let store = ProbeStore::new();
    let domain = builder().logstore_arc(store.clone()).build().await.unwrap();
    let id = open_account(&domain, 10).await;
    store.doubt_next_append();
    let command_id = Uuid::now_v7();
    let answer = domain
        .process_command(Account::deposit_command(id, 5).with_id(command_id))
        .await
        .unwrap();
    assert!(answer.replayed, "answered from the record the append wrote");
    assert_eq!(answer.command_id, command_id);
    let account: Account = domain.load(id).await.unwrap();
    assert_eq!(account.balance, 15);
}
