//! Transactional handlers through a whole `Domain` on the in-memory store: a refusal fails the
//! command with nothing stored and nothing cached; handlers see only the events they match;
//! an accepted run is never followed by a failed append, even with other writers on the same
//! store; and a domain refuses to build when its handlers could not run.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fluvius_core::prelude::*;
use fluvius_core::{AppendTx, BoxFuture};
use fluvius_tests::*;
use uuid::Uuid;

/// Refuse users whose e-mail is on a block list.
fn blocklist<'a>(event: &'a Event, _tx: &'a mut AppendTx<'_>) -> BoxFuture<'a, Result<(), DomainError>> {
    Box::pin(async move {
        let created: UserCreated = event.payload.decode()?;
        if created.email.ends_with("@blocked.example") {
            return Err(DomainError::new(
                "blocked_domain",
                format!("{} is blocked", created.email),
            ));
        }
        Ok(())
    })
}

#[tokio::test]
async fn a_refusal_fails_the_command_and_stores_nothing() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .transactional_handler("blocklist", "user-created", blocklist)
        .transactional_handler("spy", "*", move |event: &Event, tx: &mut AppendTx<'_>| {
            seen.lock()
                .unwrap()
                .push((event.key.clone(), event.position, tx.backend()));
            Box::pin(async { Ok(()) })
        })
        .build()
        .await
        .unwrap();

    let ann = create_user(&domain, "ann").await;
    let before = all_events(&domain).await;
    let bob = AggregateId::new();
    let err = domain
        .process_command(User::create_user_command(
            bob,
            "Bob".into(),
            "bob@blocked.example".into(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "refused_by_handler");
    match &err {
        Error::RefusedByHandler { handler, reason } => {
            assert_eq!(handler, "blocklist");
            assert_eq!(reason.code(), "blocked_domain");
            assert_eq!(reason.message(), "bob@blocked.example is blocked");
        }
        other => panic!("expected RefusedByHandler, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "refused by transactional handler `blocklist`: bob@blocked.example is blocked"
    );
    assert_eq!(all_events(&domain).await, before, "the log is unchanged");

    // Nothing of the refused command lingers: not in the cache, not as a command record.
    let created = domain
        .process_command(User::create_user_command(
            bob,
            "Bob".into(),
            "bob@example.org".into(),
        ))
        .await
        .expect("bob registers with another address");
    assert_eq!(created.version, 1);
    let renamed = domain
        .process_command(User::rename_command(ann, "Anna".into()))
        .await
        .unwrap();
    assert_eq!(renamed.version, 2);

    // The spy saw every event that was stored, at its position, plus the refused one; the
    // block list ran before it (handlers run by name) on the refused event, so the spy never
    // saw that one.
    let stored: Vec<_> = all_events(&domain)
        .await
        .into_iter()
        .map(|e| (e.key, e.position, "memory"))
        .collect();
    assert_eq!(*calls.lock().unwrap(), stored);
}

#[tokio::test]
async fn handlers_only_see_the_events_they_match() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = keys.clone();
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .transactional_handler(
            "money",
            "money-*",
            move |event: &Event, _tx: &mut AppendTx<'_>| {
                seen.lock().unwrap().push(event.key.clone());
                Box::pin(async { Ok(()) })
            },
        )
        .build()
        .await
        .unwrap();
    let account = open_account(&domain, 50).await;
    domain
        .process_command(Account::withdraw_command(account, 20))
        .await
        .unwrap();
    create_user(&domain, "ann").await;
    assert_eq!(*keys.lock().unwrap(), vec!["money-deposited", "money-withdrawn"]);
}

/// Domain A's handler takes its time; domain B (no handlers) writes to the same aggregates on
/// the same store meanwhile. Every event A's handler accepted must be in the log: the store
/// keeps other appends out while handlers run, so an accepted append cannot conflict after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_accepted_append_is_never_lost_to_another_writer() {
    let store = Arc::new(MemoryLogStore::new());
    let accepted: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let record = accepted.clone();
    let slow = builder()
        .logstore_arc(store.clone())
        .transactional_handler("slow", "*", move |event: &Event, _tx: &mut AppendTx<'_>| {
            let record = record.clone();
            let id = event.id;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                record.lock().unwrap().insert(id);
                Ok(())
            })
        })
        .build()
        .await
        .unwrap();
    let fast = builder()
        .logstore_arc(store.clone())
        .aggregate_cache(0)
        .build()
        .await
        .unwrap();
    let accounts: Vec<AggregateId> = {
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(open_account(&fast, 1_000).await);
        }
        ids
    };
    let mut tasks = Vec::new();
    for (i, domain) in [slow.clone(), fast.clone(), slow, fast].into_iter().enumerate() {
        let accounts = accounts.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..25 {
                let account = accounts[(i + round) % accounts.len()];
                domain
                    .process_command(Account::deposit_command(account, 1))
                    .await
                    .expect("a deposit succeeds (conflicts are retried)");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let logged: HashSet<Uuid> = store
        .read_all(0, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let accepted = accepted.lock().unwrap();
    assert!(!accepted.is_empty());
    let lost: Vec<_> = accepted.difference(&logged).collect();
    assert!(
        lost.is_empty(),
        "{} accepted events are not in the log",
        lost.len()
    );
    assert_eq!(
        logged.len(),
        4 * 2 + 100,
        "opens, initial deposits and 100 deposits"
    );
}

#[tokio::test]
async fn a_domain_with_handlers_its_store_cannot_run_does_not_build() {
    // The probe store says it does not run transactional handlers.
    let err = builder()
        .logstore_arc(ProbeStore::new())
        .transactional_handler("blocklist", "user-created", blocklist)
        .build()
        .await
        .err()
        .expect("the build is refused");
    assert_eq!(err.code(), "config");
    assert!(
        err.to_string().contains("cannot run transactional handlers"),
        "{err}"
    );

    let twice = builder()
        .logstore(MemoryLogStore::new())
        .transactional_handler("blocklist", "user-created", blocklist)
        .transactional_handler("blocklist", "user-*", blocklist)
        .build()
        .await
        .err()
        .expect("a duplicate name is refused");
    assert!(
        twice.to_string().contains("`blocklist` is registered twice"),
        "{twice}"
    );

    let pattern = builder()
        .logstore(MemoryLogStore::new())
        .transactional_handler("bad", "user-*-x", blocklist)
        .build()
        .await
        .err()
        .expect("a bad pattern is refused");
    assert_eq!(pattern.code(), "config");
}
