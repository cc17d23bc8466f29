//! The checkpoint store conformance cases: every [`LogStore`] that keeps checkpoints
//! ([`LogStore::checkpoints`] returns `Some`) must pass them.
//!
//! ```
//! use fluvius_core::MemoryLogStore;
//!
//! fluvius_core::checkpoint_conformance_tests!(|| async { MemoryLogStore::new() });
//! # fn main() {}
//! ```
//!
//! Like [`conformance_tests!`](crate::conformance_tests), the factory expression is evaluated
//! in each test's `async` body and may `return` to end a test early.
//!
//! # What the cases check
//! Claims create the checkpoint at the start position once; a live lease keeps other owners
//! out, an expired one lets them in; `advance` is a compare-and-set on owner and position and
//! renews the lease; `release` and `reset`; head position; dead letters park (replacing the
//! same handler and position), list by handler, and unpark; checkpoints of different names
//! are independent; and among racing owners exactly one wins a claim.

use std::collections::HashSet;
use std::time::Duration;

use chrono::SubsecRound;
use uuid::Uuid;

use super::conformance::StoreFactory;
use super::request;
use crate::checkpoint::{CheckpointStore, DeadLetter};
use crate::id::AggregateId;
use crate::logstore::LogStore;

/// A lease long enough never to expire during a case.
pub const LONG: Duration = Duration::from_secs(600);

/// Run every checkpoint conformance case as its own `#[test]`, with stores from the given
/// factory expression (see the [module docs](crate::testing::checkpoint_conformance)).
#[macro_export]
macro_rules! checkpoint_conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::__checkpoint_cases!(
            ($factory)
            claim_creates_the_checkpoint_at_start_once
            a_live_lease_keeps_other_owners_out
            an_expired_lease_can_be_taken_over
            advance_is_a_compare_and_set_that_renews_the_lease
            release_and_reset
            checkpoints_are_independent_per_name
            head_position_follows_appends
            dead_letters_park_list_and_unpark
            racing_owners_one_wins
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __checkpoint_cases {
    (($factory:expr) $($case:ident)*) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::conformance::run(async {
                    let factory = $factory;
                    $crate::testing::checkpoint_conformance::$case(&factory).await;
                });
            }
        )*
    };
}

fn cps<S: LogStore>(store: &S) -> &dyn CheckpointStore {
    store
        .checkpoints()
        .unwrap_or_else(|| panic!("the `{}` store keeps no checkpoints", store.backend()))
}

async fn claim(
    cps: &dyn CheckpointStore,
    name: &str,
    owner: &str,
    start: u64,
    lease: Duration,
) -> Option<u64> {
    cps.claim(name, owner, start, lease)
        .await
        .unwrap_or_else(|e| panic!("claim {name} for {owner}: {e}"))
}

async fn advance(cps: &dyn CheckpointStore, name: &str, owner: &str, from: u64, to: u64) -> bool {
    cps.advance(name, owner, from, to, LONG)
        .await
        .unwrap_or_else(|e| panic!("advance {name} for {owner}: {e}"))
}

/// The first claim creates the checkpoint at `start`; later claims keep the stored position.
pub async fn claim_creates_the_checkpoint_at_start_once<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let cps = cps(&store);
    assert_eq!(
        cps.checkpoint("h").await.unwrap(),
        None,
        "no checkpoint before a claim"
    );
    assert_eq!(claim(cps, "h", "a", 7, LONG).await, Some(7));
    assert_eq!(cps.checkpoint("h").await.unwrap(), Some(7));
    assert_eq!(
        claim(cps, "h", "a", 0, LONG).await,
        Some(7),
        "start only applies once"
    );
    assert!(advance(cps, "h", "a", 7, 9).await);
    assert_eq!(
        claim(cps, "h", "a", 100, LONG).await,
        Some(9),
        "renewing keeps the position"
    );
}

/// While `a` holds a live lease, `b` can neither claim nor advance.
pub async fn a_live_lease_keeps_other_owners_out<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let cps = cps(&store);
    assert_eq!(claim(cps, "h", "a", 0, LONG).await, Some(0));
    assert_eq!(claim(cps, "h", "b", 0, LONG).await, None, "held by a");
    assert!(!advance(cps, "h", "b", 0, 5).await, "b does not hold the claim");
    assert_eq!(cps.checkpoint("h").await.unwrap(), Some(0));
    assert!(advance(cps, "h", "a", 0, 5).await);
    assert_eq!(claim(cps, "h", "b", 0, LONG).await, None, "still held by a");
}

/// An owner that stops renewing loses the claim once its lease has expired; it then cannot
/// advance any more.
pub async fn an_expired_lease_can_be_taken_over<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let cps = cps(&store);
    assert_eq!(claim(cps, "h", "a", 0, Duration::from_millis(200)).await, Some(0));
    assert!(cps
        .advance("h", "a", 0, 3, Duration::from_millis(200))
        .await
        .unwrap());
    // Poll: the lease is measured with the store's clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let taken = loop {
        if let Some(position) = claim(cps, "h", "b", 0, LONG).await {
            break position;
        }
        assert!(std::time::Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(taken, 3, "b takes over at a's checkpoint");
    assert!(!advance(cps, "h", "a", 3, 4).await, "a lost its claim");
    assert_eq!(claim(cps, "h", "a", 0, LONG).await, None, "b holds a live lease");
    assert!(advance(cps, "h", "b", 3, 4).await);
    assert_eq!(cps.checkpoint("h").await.unwrap(), Some(4));
}

/// `advance` moves only from the current position, and keeps the lease alive.
pub async fn advance_is_a_compare_and_set_that_renews_the_lease<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let cps = cps(&store);
    assert!(!advance(cps, "h", "a", 0, 1).await, "no checkpoint, no claim");
    assert_eq!(claim(cps, "h", "a", 0, Duration::from_millis(300)).await, Some(0));
    assert!(advance(cps, "h", "a", 0, 2).await);
    assert!(!advance(cps, "h", "a", 0, 3).await, "stale `from`");
    assert_eq!(cps.checkpoint("h").await.unwrap(), Some(2));
    // The advance above renewed the lease for LONG: b stays out well past the first lease.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(claim(cps, "h", "b", 0, LONG).await, None, "the lease was renewed");
}

/// `release` frees the claim at once; `reset` moves the checkpoint whoever holds it, and the
/// holder's next advance fails.
pub async fn release_and_reset<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let cps = cps(&store);
    assert_eq!(claim(cps, "h", "a", 0, LONG).await, Some(0));
    assert!(advance(cps, "h", "a", 0, 10).await);
    cps.release("h", "b").await.unwrap();
    assert_eq!(
        claim(cps, "h", "b", 0, LONG).await,
        None,
        "b could not release a's claim"
    );
    cps.release("h", "a").await.unwrap();
    assert_eq!(claim(cps, "h", "b", 0, LONG).await, Some(10), "released");

    cps.reset("h", 0).await.unwrap();
    assert_eq!(cps.checkpoint("h").await.unwrap(), Some(0));
    assert!(
        !advance(cps, "h", "b", 10, 11).await,
        "the reset invalidates b's `from`"
    );
    assert_eq!(
        claim(cps, "h", "b", 99, LONG).await,
        Some(0),
        "b still holds it, at 0"
    );
    assert!(advance(cps, "h", "b", 0, 1).await);

    cps.reset("fresh", 42).await.unwrap();
    assert_eq!(cps.checkpoint("fresh").await.unwrap(), Some(42), "reset creates");
    assert_eq!(claim(cps, "fresh", "c", 0, LONG).await, Some(42));
}

/// Names do not share positions or claims.
pub async fn checkpoints_are_independent_per_name<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let cps = cps(&store);
    let names = ["a", "a::b", "user-created", "名前", "x'; DROP TABLE y; --"];
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            claim(cps, name, "o", i as u64, LONG).await,
            Some(i as u64),
            "{name}"
        );
    }
    assert!(advance(cps, "a", "o", 0, 100).await);
    for (i, name) in names.iter().enumerate().skip(1) {
        assert_eq!(cps.checkpoint(name).await.unwrap(), Some(i as u64), "{name}");
        assert_eq!(claim(cps, name, "other", 0, LONG).await, None, "{name}");
    }
    assert_eq!(cps.checkpoint("a").await.unwrap(), Some(100));
    assert_eq!(cps.checkpoint("b").await.unwrap(), None);
}

/// `head_position` is 0 on an empty log and the last position after appends.
pub async fn head_position_follows_appends<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    assert_eq!(store.head_position().await.unwrap(), 0);
    let stored = store
        .append(request("account", AggregateId::new(), 0, 3))
        .await
        .unwrap();
    let last = stored.last().unwrap().position;
    // Visible to read_all may lag on some backends: wait for it, then compare.
    let deadline = std::time::Instant::now() + super::conformance::SETTLE_TIMEOUT;
    loop {
        let head = store.head_position().await.unwrap();
        assert!(head <= last, "head {head} beyond the last append {last}");
        if head == last {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "head stuck at {head}, want {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = super::conformance::read_everything(&store).await;
    assert_eq!(all.last().map(|e| e.position), Some(last));
}

fn letter(handler: &str, position: u64, error: &str) -> DeadLetter {
    DeadLetter {
        handler: handler.into(),
        position,
        event_id: Uuid::now_v7(),
        event_key: "money-deposited".into(),
        attempts: 3,
        error: error.into(),
        parked_at: chrono::Utc::now().trunc_subsecs(6),
    }
}

/// Parked events round-trip, list by handler then position, replace on the same key, unpark.
pub async fn dead_letters_park_list_and_unpark<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let cps = cps(&store);
    assert!(cps.parked(None).await.unwrap().is_empty());
    let b7 = letter("b", 7, "boom: ünïcödé \"quoted\"\nsecond line");
    let a9 = letter("a", 9, "x");
    let a2 = letter("a", 2, "y");
    for l in [&b7, &a9, &a2] {
        cps.park(l.clone()).await.unwrap();
    }
    assert_eq!(
        cps.parked(None).await.unwrap(),
        [a2.clone(), a9.clone(), b7.clone()]
    );
    assert_eq!(cps.parked(Some("a")).await.unwrap(), [a2.clone(), a9.clone()]);
    assert_eq!(cps.parked(Some("c")).await.unwrap(), []);

    let mut again = letter("a", 9, "second failure");
    again.attempts = 5;
    cps.park(again.clone()).await.unwrap();
    assert_eq!(cps.parked(Some("a")).await.unwrap(), [a2.clone(), again]);

    assert!(cps.unpark("a", 2).await.unwrap());
    assert!(!cps.unpark("a", 2).await.unwrap(), "already gone");
    assert!(
        !cps.unpark("b", 9).await.unwrap(),
        "keyed by handler and position"
    );
    assert_eq!(cps.parked(None).await.unwrap().len(), 2);
}

/// Many owners race for one name: exactly one holds it.
pub async fn racing_owners_one_wins<F: StoreFactory>(factory: &F)
where
    F::Store: 'static,
{
    let store = std::sync::Arc::new(factory.create().await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("owner-{i}");
            let won = cps(&*store).claim("contended", &owner, 0, LONG).await.unwrap();
            won.map(|_| owner)
        }));
    }
    let mut winners = HashSet::new();
    for t in tasks {
        if let Some(owner) = t.await.unwrap() {
            winners.insert(owner);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
}
