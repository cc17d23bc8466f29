//! Claims are kept alive while the work runs: a handler call or a projection page that lasts
//! several leases is never taken over by another instance, and a holder that finds its claim
//! lost stops — no further attempt, nothing parked, the checkpoint not moved.
//!
//! Two domains on one memory store play two app instances (they share its checkpoints);
//! `fluvius-sql/tests/postgres_reactions.rs` runs the two-instance case on PostgreSQL.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fluvius_core::prelude::*;
use fluvius_core::{BoxFuture, DispatchOptions, Projection, RetryPolicy};
use fluvius_tests::*;
use tokio::sync::Semaphore;
use uuid::Uuid;

const LEASE: Duration = Duration::from_millis(300);
/// Each call or page takes three leases.
const WORK: Duration = Duration::from_millis(900);

/// Who did what, across both instances.
#[derive(Default)]
struct Journal {
    /// (instance, event id) per handler call, or per event of an applied page.
    calls: Mutex<Vec<(&'static str, Uuid)>>,
    running: AtomicBool,
    /// Calls (or pages) that started while another was running.
    overlaps: AtomicUsize,
}

impl Journal {
    /// Record `ids` as done by `instance`, taking `WORK` meanwhile.
    async fn work(&self, instance: &'static str, ids: impl IntoIterator<Item = Uuid>) {
        if self.running.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.calls
            .lock()
            .unwrap()
            .extend(ids.into_iter().map(|id| (instance, id)));
        tokio::time::sleep(WORK).await;
        self.running.store(false, Ordering::SeqCst);
    }

    fn ids(&self) -> Vec<Uuid> {
        self.calls.lock().unwrap().iter().map(|c| c.1).collect()
    }

    fn instances(&self) -> Vec<&'static str> {
        let mut instances: Vec<_> = self.calls.lock().unwrap().iter().map(|c| c.0).collect();
        instances.dedup();
        instances
    }

    /// Wait until `n` events were recorded (failing after a generous deadline).
    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.calls.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} events handled",
                self.ids().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// No overlap, every event of the log once, all in one instance.
    fn check(&self, log: &[Event]) {
        assert_eq!(
            self.overlaps.load(Ordering::SeqCst),
            0,
            "the work ran in both instances at once"
        );
        assert_eq!(
            self.ids(),
            ids(log),
            "every event once, in order: none taken over"
        );
        assert_eq!(self.instances().len(), 1, "one instance did it all");
    }
}

/// `domain.wait_idle()`, failing after a generous deadline rather than hanging.
async fn idle(domain: &Domain) {
    tokio::time::timeout(Duration::from_secs(60), domain.wait_idle())
        .await
        .expect("the handlers never caught up");
}

fn options(instance: &str) -> DispatchOptions {
    DispatchOptions::default()
        .instance_id(instance)
        .lease(LEASE)
        .poll_interval(Duration::from_millis(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_call_longer_than_the_lease_is_never_taken_over() {
    let store = Arc::new(MemoryLogStore::new());
    let journal = Arc::new(Journal::default());
    let instance = |name: &'static str| {
        let journal = journal.clone();
        builder()
            .logstore_arc(store.clone())
            .dispatch(options(name))
            .handler("slow", "*", move |event: Arc<Event>| {
                let journal = journal.clone();
                async move {
                    journal.work(name, [event.id]).await;
                    Ok::<(), HandlerError>(())
                }
            })
            .build()
    };
    let a = instance("a").await.unwrap();
    let b = instance("b").await.unwrap();
    open_account(&a, 5).await;
    create_user(&b, "Ann").await;
    journal.wait_for(3).await;
    idle(&a).await;
    idle(&b).await;

    let log = all_events(&a).await;
    assert_eq!(log.len(), 3);
    journal.check(&log);
    for domain in [&a, &b] {
        let stats = &domain.handler_stats()[0];
        assert_eq!(stats.claims_lost, 0, "no claim lost");
    }
    assert_eq!(a.handler_checkpoint("slow").await.unwrap(), Some(log[2].position));
}

/// A read model shared by both instances (as a database would be), with its position moved by
/// compare-and-set.
struct SlowModel {
    instance: &'static str,
    journal: Arc<Journal>,
    position: Arc<Mutex<u64>>,
}

impl Projection for SlowModel {
    fn name(&self) -> &str {
        "slow-model"
    }

    fn position(&self) -> BoxFuture<'_, fluvius_core::Result<u64>> {
        Box::pin(async move { Ok(*self.position.lock().unwrap()) })
    }

    fn apply<'a>(&'a self, from: u64, events: &'a [Event]) -> BoxFuture<'a, fluvius_core::Result<()>> {
        Box::pin(async move {
            self.journal
                .work(self.instance, events.iter().map(|e| e.id))
                .await;
            let mut position = self.position.lock().unwrap();
            if *position != from {
                return Err(Error::store("test", "the position moved meanwhile", None));
            }
            *position = events.last().map_or(from, |e| e.position);
            Ok(())
        })
    }

    fn clear(&self) -> BoxFuture<'_, fluvius_core::Result<()>> {
        Box::pin(async move {
            *self.position.lock().unwrap() = 0;
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_page_longer_than_the_lease_is_never_taken_over() {
    let store = Arc::new(MemoryLogStore::new());
    let journal = Arc::new(Journal::default());
    let position = Arc::new(Mutex::new(0));
    let instance = |name: &'static str| {
        builder()
            .logstore_arc(store.clone())
            // One event per page: three pages.
            .dispatch(options(name).page_size(1))
            .projection(SlowModel {
                instance: name,
                journal: journal.clone(),
                position: position.clone(),
            })
            .build()
    };
    let a = instance("a").await.unwrap();
    let b = instance("b").await.unwrap();
    open_account(&a, 5).await;
    create_user(&b, "Ann").await;
    let log = all_events(&a).await;
    assert_eq!(log.len(), 3);
    // (`wait_idle` cannot tell where another instance's projection is: it keeps its position.)
    let deadline = Instant::now() + Duration::from_secs(60);
    while *position.lock().unwrap() < log[2].position {
        assert!(Instant::now() < deadline, "the projection never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    journal.check(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_lost_its_claim_stops_without_retrying_parking_or_moving_the_checkpoint() {
    let store = Arc::new(MemoryLogStore::new());
    let attempts = Seen::new();
    let gate = Arc::new(Semaphore::new(0));
    let domain = builder()
        .logstore_arc(store.clone())
        .dispatch(options("a").retry(RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }))
        .handler("gated", "*", {
            let (attempts, gate) = (attempts.clone(), gate.clone());
            move |event: Arc<Event>| {
                let (attempts, gate) = (attempts.clone(), gate.clone());
                attempts.push(event);
                async move {
                    // The first call waits for the gate, then fails; later calls succeed.
                    if attempts.len() == 1 {
                        gate.acquire().await.unwrap().forget();
                        return Err(HandlerError::msg("failed while its claim was taken"));
                    }
                    Ok(())
                }
            }
        })
        .build()
        .await
        .unwrap();
    let stats = || domain.handler_stats()[0].clone();
    open_account(&domain, 5).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while attempts.is_empty() {
        assert!(Instant::now() < deadline, "the handler never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // While the first call runs, another owner takes the claim (as after a stall longer than
    // the lease).
    let cps = store.checkpoints().unwrap();
    cps.release("gated", "a").await.unwrap();
    let long = Duration::from_secs(600);
    assert_eq!(cps.claim("gated", "thief", 0, long).await.unwrap(), Some(0));
    // The holder's next renewal, during the call, finds the claim lost.
    while stats().claims_lost == 0 {
        assert!(Instant::now() < deadline, "the loss was never noticed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gate.add_permits(1);
    // The call fails: no second attempt, nothing parked, the checkpoint where the thief has it.
    while stats().failed == 0 {
        assert!(Instant::now() < deadline, "the call never ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = stats();
    assert_eq!((s.failed, s.succeeded, s.parked, s.claims_lost), (1, 0, 0, 1));
    assert!(domain.parked(None).await.unwrap().is_empty());
    assert_eq!(cps.checkpoint("gated").await.unwrap(), Some(0));
    assert_eq!(attempts.len(), 1);

    // The thief gives the claim up; the holder claims again and delivers everything (the
    // failed event again: at least once).
    cps.release("gated", "thief").await.unwrap();
    idle(&domain).await;
    let log = all_events(&domain).await;
    assert_eq!(log.len(), 2);
    assert_eq!(attempts.ids(), [log[0].id, log[0].id, log[1].id]);
    let s = stats();
    assert_eq!((s.failed, s.succeeded, s.parked, s.claims_lost), (1, 2, 0, 1));
    assert_eq!(
        domain.handler_checkpoint("gated").await.unwrap(),
        Some(log[1].position)
    );
}
