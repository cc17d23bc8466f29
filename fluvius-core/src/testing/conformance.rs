//! The log store conformance suite: one set of cases, run by every backend.
//!
//! A backend is done when every case passes on it. Each case is an `async fn` taking a
//! [`StoreFactory`] (anything that makes a fresh, empty store); the
//! [`conformance_tests!`](crate::conformance_tests) macro turns the whole list into one
//! `#[test]` per case:
//!
//! ```
//! use fluvius_core::MemoryLogStore;
//!
//! fluvius_core::conformance_tests!(|| async { MemoryLogStore::new() });
//! # fn main() {}
//! ```
//!
//! The macro's argument is evaluated inside each test's `async` body, so it may `.await`, and
//! it may `return` to end the test early — e.g. a backend whose server is not reachable prints
//! why and returns (and a CI run should fail instead).
//!
//! # What the cases check
//! The contract in [`LogStore`]'s module docs: empty and invalid appends, all-or-nothing,
//! dense versions, version and time windows (`until` inclusive), positions strictly increasing
//! and consecutive within an append, `read_all` paging with an exclusive `after`, real
//! concurrency (one winner among racing writers, readers that see every event exactly once and
//! in order while writers run, concurrent batches not interleaved), command idempotency
//! records, and exact round trips of payloads (unicode, `u64::MAX`, `i64::MIN`, nesting, key
//! order, 1 MiB) and timestamps (microseconds), and snapshots (exact round trip, written in the
//! same transaction as their events, the latest at or before a version and a time), and
//! transactional handlers (run inside the append at the stored positions, a refusal rolls back
//! its append alone).
//!
//! `read_all` may lag behind commits on some backends (PostgreSQL hides transactions newer
//! than the oldest one still running, so a reader never skips a late commit). The cases that
//! read the global log right after appending therefore wait, up to [`SETTLE_TIMEOUT`], for the
//! events to become visible, then check exactly.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{command_record, now, request, snapshot_of};
use crate::error::Error;
use crate::event::Event;
use crate::future::BoxFuture;
use crate::id::AggregateId;
use crate::logstore::{AppendRequest, LogStore, Snapshot, SnapshotQuery, StreamQuery};
use crate::payload::Payload;
use crate::transactional::{boxed, AppendTx, TransactionalHandlers};
use crate::DomainError;

/// How long a case waits for appended events to become visible to `read_all`.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one case may run in all.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(180);

/// Makes fresh, empty stores for the cases. Implemented for every `Fn() -> impl Future<Output =
/// impl LogStore>`, so a closure such as `|| async { MemoryLogStore::new() }` is a factory.
pub trait StoreFactory: Send + Sync {
    /// The store type.
    type Store: LogStore;

    /// A fresh, empty store.
    fn create(&self) -> BoxFuture<'_, Self::Store>;
}

impl<F, Fut, S> StoreFactory for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = S> + Send + 'static,
    S: LogStore,
{
    type Store = S;

    fn create(&self) -> BoxFuture<'_, S> {
        Box::pin(self())
    }
}

/// Run one case on a fresh multi-threaded runtime (4 workers), failing it after
/// [`CASE_TIMEOUT`]. Used by [`conformance_tests!`](crate::conformance_tests).
pub fn run(case: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime");
    runtime.block_on(async {
        if tokio::time::timeout(CASE_TIMEOUT, case).await.is_err() {
            panic!("conformance case did not finish within {CASE_TIMEOUT:?}");
        }
    });
}

/// Run every conformance case as its own `#[test]`, with stores from the given factory
/// expression (see the [module docs](crate::testing::conformance)).
///
/// The expression is evaluated in each test's `async` body: it may `.await`, and it may
/// `return` to end a test early.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::__conformance_cases!(
            ($factory)
            empty_append_is_a_no_op
            unknown_aggregate_reads_empty
            append_returns_stored_events
            streams_are_keyed_by_resource_and_id
            append_is_all_or_nothing
            versions_are_dense_and_bad_shapes_rejected
            version_windows
            until_is_inclusive
            positions_increase_and_batches_are_consecutive
            read_all_pages_with_exclusive_after
            read_log_reads_what_read_all_reads
            racing_writers_one_wins
            readers_see_every_event_once_in_order_under_concurrent_writers
            concurrent_batches_get_contiguous_positions
            duplicate_command_writes_nothing
            command_record_round_trip
            payload_fidelity
            large_payload_round_trip
            timestamps_round_trip
            snapshot_round_trip
            snapshot_is_written_with_its_events_or_not_at_all
            latest_snapshot_at_or_before_version_and_time
            transactional_handlers_see_events_at_their_positions
            transactional_refusal_writes_nothing
            transactional_refusal_fails_only_its_append
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (($factory:expr) $($case:ident)*) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::conformance::run(async {
                    let factory = $factory;
                    $crate::testing::conformance::$case(&factory).await;
                });
            }
        )*
    };
}

// ----- helpers ------------------------------------------------------------------------------

/// Every event of the log, in pages of 500.
pub async fn read_everything<S: LogStore + ?Sized>(store: &S) -> Vec<Event> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 500).await.expect("read_all failed");
        let Some(last) = page.last() else { return all };
        after = last.position;
        all.extend(page);
    }
}

/// The whole log, once at least `count` events are visible. Panics if they are not within
/// [`SETTLE_TIMEOUT`].
pub async fn read_all_settled<S: LogStore + ?Sized>(store: &S, count: usize) -> Vec<Event> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let all = read_everything(store).await;
        if all.len() >= count {
            return all;
        }
        if Instant::now() > deadline {
            panic!(
                "read_all shows {} of {count} appended events after {SETTLE_TIMEOUT:?} (PostgreSQL: is a \
                 long transaction open on the cluster? see pg_stat_activity)",
                all.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn append_ok<S: LogStore + ?Sized>(store: &S, request: AppendRequest) -> Vec<Event> {
    let what = format!(
        "append of {} events to {}/{} at version {}",
        request.events.len(),
        request.resource,
        request.aggregate_id,
        request.expected_version
    );
    match store.append(request).await {
        Ok(events) => events,
        Err(e) => panic!("{what} failed: {e} ({e:?})"),
    }
}

fn assert_conflict(result: crate::Result<Vec<Event>>, expected: u64, actual: u64) {
    match result {
        Err(Error::Conflict {
            expected: e,
            actual: a,
            ..
        }) => {
            assert_eq!((e, a), (expected, actual), "conflict reports (expected, actual)");
        }
        Err(other) => panic!("expected a version conflict, got {other} ({other:?})"),
        Ok(events) => panic!(
            "expected a version conflict, but {} events were appended",
            events.len()
        ),
    }
}

fn assert_invalid(result: crate::Result<Vec<Event>>) {
    match result {
        Err(Error::InvalidAppend(_)) => {}
        Err(other) => panic!("expected InvalidAppend, got {other} ({other:?})"),
        Ok(events) => panic!(
            "expected InvalidAppend, but {} events were appended",
            events.len()
        ),
    }
}

fn versions(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.aggregate_version).collect()
}

fn positions(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn assert_consecutive(events: &[Event], what: &str) {
    for pair in events.windows(2) {
        assert_eq!(
            pair[1].position,
            pair[0].position + 1,
            "{what}: positions of one append must be consecutive, got {:?}",
            positions(events)
        );
    }
}

/// The events as stored: the request's events with positions taken from `stored`.
fn assert_stored_as_sent(sent: &[Event], stored: &[Event]) {
    assert_eq!(
        sent.len(),
        stored.len(),
        "append returns one event per event sent"
    );
    for (s, r) in sent.iter().zip(stored) {
        assert!(r.position > 0, "stored events have a position");
        let mut expected = s.clone();
        expected.position = r.position;
        assert_eq!(
            &expected, r,
            "the stored event is the event sent, plus its position"
        );
    }
}

// ----- cases --------------------------------------------------------------------------------

/// An append without events writes nothing (not even its command record), but still reports a
/// wrong expected version.
pub async fn empty_append_is_a_no_op<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let mut empty = request("thing", id, 0, 0);
    let record = command_record(&empty);
    empty.command = Some(record.clone());
    let stored = store.append(empty).await.expect("an empty append succeeds");
    assert!(stored.is_empty());
    assert!(store.get_events("thing", id).await.unwrap().is_empty());
    assert!(
        read_everything(&store).await.is_empty(),
        "nothing reaches the global log"
    );
    assert_eq!(
        store.get_command(record.id).await.unwrap(),
        None,
        "no command record"
    );

    append_ok(&store, request("thing", id, 0, 2)).await;
    let stored = store
        .append(request("thing", id, 2, 0))
        .await
        .expect("empty append at the head");
    assert!(stored.is_empty());
    assert_conflict(store.append(request("thing", id, 1, 0)).await, 1, 2);
    assert_eq!(versions(&store.get_events("thing", id).await.unwrap()), [1, 2]);
}

/// Reads of something never written are empty, not errors.
pub async fn unknown_aggregate_reads_empty<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    assert!(store.get_events("thing", id).await.unwrap().is_empty());
    assert!(store.get_events_from("thing", id, 1).await.unwrap().is_empty());
    assert!(store
        .get_events_until("thing", id, now())
        .await
        .unwrap()
        .is_empty());
    assert!(store.read_all(0, 10).await.unwrap().is_empty());
    assert!(store.read_all(u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(store.get_command(Uuid::now_v7()).await.unwrap(), None);

    append_ok(&store, request("thing", AggregateId::new(), 0, 1)).await;
    assert!(
        store.get_events("thing", id).await.unwrap().is_empty(),
        "another aggregate's events"
    );
}

/// Append returns the events as stored (positions filled in), and every read returns exactly
/// those events: all fields, metadata included.
pub async fn append_returns_stored_events<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let req = request("thing", id, 0, 3);
    let sent = req.events.clone();
    let stored = append_ok(&store, req).await;
    assert_stored_as_sent(&sent, &stored);
    assert_eq!(store.get_events("thing", id).await.unwrap(), stored);
    assert_eq!(read_all_settled(&store, 3).await, stored);

    let req = request("thing", id, 3, 1);
    let sent = req.events.clone();
    let more = append_ok(&store, req).await;
    assert_stored_as_sent(&sent, &more);
    let all = store.get_events("thing", id).await.unwrap();
    assert_eq!(versions(&all), [1, 2, 3, 4]);
    assert_eq!(all[3], more[0]);
}

/// A stream is (resource, aggregate id): the same id under two resources is two streams.
pub async fn streams_are_keyed_by_resource_and_id<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    append_ok(&store, request("left", id, 0, 2)).await;
    append_ok(&store, request("right", id, 0, 1)).await;
    let left = store.get_events("left", id).await.unwrap();
    let right = store.get_events("right", id).await.unwrap();
    assert_eq!(versions(&left), [1, 2]);
    assert_eq!(versions(&right), [1]);
    assert!(left.iter().all(|e| e.resource == "left"));
    assert_eq!(right[0].resource, "right");
}

/// A batch whose expected version is wrong stores none of its events, nor its command.
pub async fn append_is_all_or_nothing<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let first = append_ok(&store, request("thing", id, 0, 2)).await;

    // Stale writer: it read version 1.
    let mut stale = request("thing", id, 1, 3);
    let record = command_record(&stale);
    stale.command = Some(record.clone());
    assert_conflict(store.append(stale).await, 1, 2);
    // A writer from the future.
    assert_conflict(store.append(request("thing", id, 5, 1)).await, 5, 2);
    // A writer that thinks the stream is new.
    assert_conflict(store.append(request("thing", id, 0, 1)).await, 0, 2);

    assert_eq!(store.get_events("thing", id).await.unwrap(), first);
    assert_eq!(
        store.get_command(record.id).await.unwrap(),
        None,
        "no command record"
    );
    let next = append_ok(&store, request("thing", id, 2, 1)).await;
    assert_eq!(versions(&next), [3]);
    let all = read_all_settled(&store, 3).await;
    assert_eq!(all.len(), 3, "only the accepted events are in the log");
}

/// Versions must continue the stream densely; requests of the wrong shape are rejected
/// before anything is written.
pub async fn versions_are_dense_and_bad_shapes_rejected<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();

    let mut gap = request("thing", id, 0, 2);
    gap.events[1].aggregate_version = 3;
    assert_invalid(store.append(gap).await);

    let mut late_start = request("thing", id, 0, 1);
    late_start.events[0].aggregate_version = 2;
    assert_invalid(store.append(late_start).await);

    let mut zero = request("thing", id, 0, 1);
    zero.events[0].aggregate_version = 0;
    assert_invalid(store.append(zero).await);

    let mut foreign_id = request("thing", id, 0, 2);
    foreign_id.events[1].aggregate_id = AggregateId::new();
    assert_invalid(store.append(foreign_id).await);

    let mut foreign_resource = request("thing", id, 0, 1);
    foreign_resource.events[0].resource = "other".into();
    assert_invalid(store.append(foreign_resource).await);

    assert!(store.get_events("thing", id).await.unwrap().is_empty());
    assert!(read_everything(&store).await.is_empty());

    let stored = append_ok(&store, request("thing", id, 0, 3)).await;
    assert_eq!(versions(&stored), [1, 2, 3]);
}

/// `from_version` and `to_version` are inclusive bounds, alone and together.
pub async fn version_windows<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    append_ok(&store, request("thing", id, 0, 3)).await;
    append_ok(&store, request("thing", id, 3, 2)).await;
    let window = |from: Option<u64>, to: Option<u64>| StreamQuery {
        from_version: from,
        to_version: to,
        until: None,
    };
    let read = |q: StreamQuery| {
        let store = &store;
        async move { versions(&store.read_stream("thing", id, q).await.unwrap()) }
    };
    assert_eq!(read(window(None, None)).await, [1, 2, 3, 4, 5]);
    assert_eq!(read(window(Some(2), None)).await, [2, 3, 4, 5]);
    assert_eq!(read(window(None, Some(3))).await, [1, 2, 3]);
    assert_eq!(read(window(Some(2), Some(4))).await, [2, 3, 4]);
    assert_eq!(read(window(Some(3), Some(3))).await, [3]);
    assert_eq!(read(window(Some(0), None)).await, [1, 2, 3, 4, 5]);
    assert_eq!(read(window(Some(6), None)).await, Vec::<u64>::new());
    assert_eq!(read(window(None, Some(0))).await, Vec::<u64>::new());
    assert_eq!(read(window(Some(4), Some(2))).await, Vec::<u64>::new());
    assert_eq!(read(window(Some(u64::MAX), None)).await, Vec::<u64>::new());
    assert_eq!(read(window(None, Some(u64::MAX))).await, [1, 2, 3, 4, 5]);
    assert_eq!(
        versions(&store.get_events_from("thing", id, 4).await.unwrap()),
        [4, 5]
    );
}

/// `until` keeps events with `timestamp <= until`: the boundary is included.
pub async fn until_is_inclusive<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let t1: DateTime<Utc> = "2024-03-01T10:00:00.000001Z".parse().unwrap();
    let t2 = t1 + TimeDelta::milliseconds(1500);
    let t3 = t2 + TimeDelta::microseconds(1);
    let mut req = request("thing", id, 0, 3);
    for (e, t) in req.events.iter_mut().zip([t1, t2, t3]) {
        e.timestamp = t;
    }
    append_ok(&store, req).await;
    let until = |t: DateTime<Utc>| {
        let store = &store;
        async move { versions(&store.get_events_until("thing", id, t).await.unwrap()) }
    };
    assert_eq!(until(t1 - TimeDelta::microseconds(1)).await, Vec::<u64>::new());
    assert_eq!(until(t1).await, [1]);
    assert_eq!(until(t2 - TimeDelta::microseconds(1)).await, [1]);
    assert_eq!(until(t2).await, [1, 2]);
    assert_eq!(until(t3).await, [1, 2, 3]);
    assert_eq!(until(t3 + TimeDelta::days(365 * 100)).await, [1, 2, 3]);
    let combined = StreamQuery {
        from_version: Some(2),
        to_version: None,
        until: Some(t2),
    };
    assert_eq!(
        versions(&store.read_stream("thing", id, combined).await.unwrap()),
        [2]
    );
}

/// Positions strictly increase across the log and are consecutive within one append; what
/// append returned is what `read_all` shows.
pub async fn positions_increase_and_batches_are_consecutive<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let (a, b) = (AggregateId::new(), AggregateId::new());
    let mut returned = Vec::new();
    for (id, expected, count) in [(a, 0, 3), (b, 0, 1), (a, 3, 2), (b, 1, 4), (a, 5, 1)] {
        let stored = append_ok(&store, request("thing", id, expected, count)).await;
        assert_consecutive(&stored, "append result");
        if let Some(prev) = returned.last().map(|e: &Event| e.position) {
            assert!(stored[0].position > prev, "a later append gets higher positions");
        }
        returned.extend(stored);
    }
    let all = read_all_settled(&store, returned.len()).await;
    assert_eq!(
        all, returned,
        "read_all shows the appended events, in append order"
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert!(all[0].position >= 1, "positions start at 1");
}

/// `read_all(after, limit)`: events with `position > after`, at most `limit`, in order.
pub async fn read_all_pages_with_exclusive_after<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    for _ in 0..5 {
        append_ok(&store, request("thing", AggregateId::new(), 0, 2)).await;
    }
    let all = read_all_settled(&store, 10).await;
    assert_eq!(all.len(), 10);

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 3).await.unwrap();
        assert!(page.len() <= 3, "a page holds at most `limit` events");
        let Some(last) = page.last() else { break };
        assert!(page[0].position > after, "`after` is exclusive");
        after = last.position;
        paged.extend(page);
    }
    assert_eq!(paged, all, "pages concatenate to the whole log");

    for (i, e) in all.iter().enumerate() {
        let next = store.read_all(e.position, 1).await.unwrap();
        assert_eq!(
            next.first(),
            all.get(i + 1),
            "read_all({}, 1) is the next event",
            e.position
        );
    }
    if all[0].position > 1 {
        assert_eq!(store.read_all(all[0].position - 1, 10).await.unwrap(), all);
    }
    assert!(
        store.read_all(0, 0).await.unwrap().is_empty(),
        "limit 0 reads nothing"
    );
    assert!(store.read_all(all[9].position, 10).await.unwrap().is_empty());
    assert_eq!(store.read_all(0, usize::MAX).await.unwrap(), all);
}

/// `read_log(after, limit)` reads the entries `read_all` reads, one event per entry, with the
/// same paging (a well-formed log has no undecodable entry).
pub async fn read_log_reads_what_read_all_reads<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    for _ in 0..4 {
        append_ok(&store, request("thing", AggregateId::new(), 0, 2)).await;
    }
    let all = read_all_settled(&store, 8).await;
    assert_eq!(all.len(), 8);
    for (after, limit) in [
        (0, usize::MAX),
        (0, 3),
        (all[2].position, 2),
        (all[7].position, 5),
        (0, 0),
    ] {
        let entries = store.read_log(after, limit).await.unwrap();
        let positions: Vec<u64> = entries.iter().map(crate::LogEntry::position).collect();
        let events = crate::events_of(entries).expect("every entry is an event");
        assert_eq!(
            events,
            store.read_all(after, limit).await.unwrap(),
            "read_log({after}, {limit})"
        );
        assert_eq!(positions, events.iter().map(|e| e.position).collect::<Vec<_>>());
    }
}

/// N tasks race to append version k of one aggregate: exactly one wins, the others get a
/// conflict, and the stream holds the winner's event.
pub async fn racing_writers_one_wins<F: StoreFactory>(factory: &F) {
    const RACERS: usize = 8;
    let store = Arc::new(factory.create().await);
    let id = AggregateId::new();
    append_ok(&*store, request("thing", id, 0, 2)).await;

    for round in 0..3u64 {
        let expected = 2 + round;
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|_| {
                let store = store.clone();
                let barrier = barrier.clone();
                let mut req = request("thing", id, expected, 1);
                req.command = Some(command_record(&req));
                tokio::spawn(async move {
                    let event_id = req.events[0].id;
                    barrier.wait().await;
                    (event_id, store.append(req).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (event_id, result) = task.await.expect("racer panicked");
            match result {
                Ok(stored) => winners.push((event_id, stored)),
                Err(Error::Conflict {
                    expected: e,
                    actual: a,
                    ..
                }) => {
                    assert_eq!(e, expected);
                    assert!(a > expected, "a loser sees the winner's version, got {a}");
                }
                Err(other) => panic!("a racer failed with {other} ({other:?}), not a conflict"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one racer wins round {round}");
        let (winner_id, stored) = &winners[0];
        let stream = store.get_events("thing", id).await.unwrap();
        assert_eq!(versions(&stream), (1..=expected + 1).collect::<Vec<_>>());
        assert_eq!(stream.last().unwrap().id, *winner_id);
        assert_eq!(stream.last().unwrap(), &stored[0]);
    }
}

/// M writers append to their own aggregates while readers page through `read_all` from a
/// checkpoint: nobody fails, and every reader sees every event exactly once, in position order.
pub async fn readers_see_every_event_once_in_order_under_concurrent_writers<F: StoreFactory>(factory: &F) {
    const WRITERS: u64 = 4;
    const APPENDS: u64 = 20;
    const READERS: usize = 2;
    let store = Arc::new(factory.create().await);
    // Each writer appends batches of 1, 2, 3, 1, 2, 3, … events.
    let per_writer: u64 = (0..APPENDS).map(|i| i % 3 + 1).sum();
    let total = (WRITERS * per_writer) as usize;

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + SETTLE_TIMEOUT + Duration::from_secs(60);
                let mut seen: Vec<Event> = Vec::new();
                let mut after = 0;
                while seen.len() < total && Instant::now() < deadline {
                    let page = store
                        .read_all(after, 7 + r)
                        .await
                        .expect("read_all failed under load");
                    match page.last() {
                        Some(last) => {
                            after = last.position;
                            seen.extend(page);
                        }
                        None => tokio::time::sleep(Duration::from_millis(2)).await,
                    }
                }
                seen
            })
        })
        .collect();

    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = AggregateId::new();
                let mut version = 0;
                let mut ids = Vec::new();
                for i in 0..APPENDS {
                    let count = i % 3 + 1;
                    let stored = append_ok(&*store, request("thing", id, version, count)).await;
                    assert_consecutive(&stored, "concurrent append");
                    version += count;
                    ids.extend(stored.iter().map(|e| e.id));
                    tokio::task::yield_now().await;
                }
                ids
            })
        })
        .collect();

    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.expect("writer panicked"));
    }
    assert_eq!(written.len(), total);

    for (r, reader) in readers.into_iter().enumerate() {
        let seen = reader.await.expect("reader panicked");
        assert_eq!(
            seen.len(),
            total,
            "reader {r} saw {} of {total} events",
            seen.len()
        );
        assert!(
            seen.windows(2).all(|w| w[0].position < w[1].position),
            "reader {r} saw positions out of order"
        );
        let ids: HashSet<Uuid> = seen.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), total, "reader {r} saw an event twice");
        assert_eq!(ids, written, "reader {r} saw exactly the written events");
        let mut last_version: HashMap<AggregateId, u64> = HashMap::new();
        for e in &seen {
            let prev = last_version
                .insert(e.aggregate_id, e.aggregate_version)
                .unwrap_or(0);
            assert_eq!(
                e.aggregate_version,
                prev + 1,
                "reader {r}: versions of one aggregate in order"
            );
        }
    }
    let all = read_all_settled(&*store, total).await;
    assert_eq!(all.len(), total);
}

/// Batches appended at the same time each get a contiguous run of positions: another batch
/// never lands in the middle.
pub async fn concurrent_batches_get_contiguous_positions<F: StoreFactory>(factory: &F) {
    const TASKS: usize = 4;
    const ROUNDS: u64 = 10;
    const BATCH: u64 = 5;
    let store = Arc::new(factory.create().await);
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = AggregateId::new();
                let mut batches = Vec::new();
                for round in 0..ROUNDS {
                    let stored = append_ok(&*store, request("thing", id, round * BATCH, BATCH)).await;
                    assert_consecutive(&stored, "concurrent batch");
                    batches.push(stored);
                }
                batches
            })
        })
        .collect();
    let mut batches = Vec::new();
    for t in tasks {
        batches.extend(t.await.expect("writer panicked"));
    }
    let total = TASKS * (ROUNDS * BATCH) as usize;
    let all = read_all_settled(&*store, total).await;
    assert_eq!(all.len(), total);
    let index: HashMap<u64, usize> = all.iter().enumerate().map(|(i, e)| (e.position, i)).collect();
    for batch in &batches {
        let start = index[&batch[0].position];
        assert_eq!(
            &all[start..start + batch.len()],
            &batch[..],
            "a batch is contiguous in read_all"
        );
    }
}

/// A command id seen before is refused with `DuplicateCommand`, and nothing of that append is
/// written — also when its expected version is wrong too, and also for an empty append.
pub async fn duplicate_command_writes_nothing<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let mut first = request("thing", id, 0, 2);
    let record = command_record(&first);
    first.command = Some(record.clone());
    let stored = append_ok(&store, first).await;

    let duplicate_of = |req: AppendRequest| {
        let mut req = req;
        let mut r = command_record(&req);
        r.id = record.id;
        req.command = Some(r);
        req
    };
    let expect_duplicate = |result: crate::Result<Vec<Event>>| match result {
        Err(Error::DuplicateCommand { command_id }) => assert_eq!(command_id, record.id),
        Err(other) => panic!("expected DuplicateCommand, got {other} ({other:?})"),
        Ok(events) => panic!(
            "expected DuplicateCommand, but {} events were appended",
            events.len()
        ),
    };

    // Same id, the stream's next version: would otherwise succeed.
    expect_duplicate(store.append(duplicate_of(request("thing", id, 2, 1))).await);
    // Same id, another aggregate.
    let other = AggregateId::new();
    expect_duplicate(store.append(duplicate_of(request("thing", other, 0, 3))).await);
    // Same id and a stale version: the duplicate is what gets reported.
    expect_duplicate(store.append(duplicate_of(request("thing", id, 0, 1))).await);
    // Same id, nothing to append.
    expect_duplicate(store.append(duplicate_of(request("thing", id, 2, 0))).await);

    assert_eq!(store.get_events("thing", id).await.unwrap(), stored);
    assert!(store.get_events("thing", other).await.unwrap().is_empty());
    assert_eq!(store.get_command(record.id).await.unwrap(), Some(record));
    let all = read_all_settled(&store, 2).await;
    assert_eq!(all, stored, "only the first append reached the log");
}

/// A command record comes back exactly as written, and only for its own id.
pub async fn command_record_round_trip<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let mut req = request("thing", id, 0, 2);
    let mut record = command_record(&req);
    record.args = Payload::from_json_unchecked(r#"{"z":1,"a":{"big":18446744073709551615},"ü":"✓"}"#);
    record.context = record
        .context
        .with_causation_id(Uuid::now_v7())
        .with_header("accept-language", "vi-VN");
    req.command = Some(record.clone());
    append_ok(&store, req).await;
    let back = store
        .get_command(record.id)
        .await
        .unwrap()
        .expect("the command was recorded");
    assert_eq!(back, record);
    assert_eq!(
        back.args.as_str(),
        record.args.as_str(),
        "arguments are kept as written"
    );

    let mut next = request("thing", id, 2, 1);
    let second = command_record(&next);
    next.command = Some(second.clone());
    append_ok(&store, next).await;
    assert_eq!(store.get_command(second.id).await.unwrap(), Some(second));
    assert_eq!(store.get_command(record.id).await.unwrap(), Some(record));
}

/// Payloads and arguments come back as the exact JSON text written: unicode, integers beyond
/// what a double holds, key order, nesting, escapes.
pub async fn payload_fidelity<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let texts = [
        r#"{"name":"Nguyễn Thị Ánh","emoji":"🌊🦀","cjk":"流れ","rtl":"שלום","escaped":"tab\t nl\n quote\" bs\\ nul\u0000"}"#
            .to_owned(),
        format!(r#"{{"max_u64":{},"min_i64":{},"max_i64":{}}}"#, u64::MAX, i64::MIN, i64::MAX),
        r#"{"z":1,"y":{"x":[1,2,{"w":null,"v":[true,false]}],"a":"last"},"a":0.1,"e":1e-7,"neg":-0}"#.to_owned(),
        r#"[1,"two",{"three":[3]},null]"#.to_owned(),
        r#""just a string""#.to_owned(),
        "12345678901234567890123456789".to_owned(),
        "null".to_owned(),
        "{}".to_owned(),
    ];
    let mut req = request("thing", id, 0, texts.len() as u64);
    for (e, text) in req.events.iter_mut().zip(&texts) {
        e.payload = Payload::from_json(text.clone()).expect("test payloads are JSON");
        e.args = Payload::from_json(text.clone()).expect("test payloads are JSON");
    }
    let stored = append_ok(&store, req).await;
    let back = store.get_events("thing", id).await.unwrap();
    assert_eq!(back, stored);
    for (e, text) in back.iter().zip(&texts) {
        assert_eq!(e.payload.as_str(), text, "payload text is kept as written");
        assert_eq!(e.args.as_str(), text, "argument text is kept as written");
    }
    let numbers: serde_json::Value = back[1].payload.decode().unwrap();
    assert_eq!(numbers["max_u64"].as_u64(), Some(u64::MAX));
    assert_eq!(numbers["min_i64"].as_i64(), Some(i64::MIN));
    let unicode: serde_json::Value = back[0].payload.decode().unwrap();
    assert_eq!(unicode["emoji"], "🌊🦀");
    assert_eq!(unicode["escaped"], "tab\t nl\n quote\" bs\\ nul\u{0}");
    let all = read_all_settled(&store, texts.len()).await;
    assert_eq!(all, stored, "read_all returns the same text");
}

/// A 1 MiB payload is stored and read back intact.
pub async fn large_payload_round_trip<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let blob: String = (0..(1 << 20))
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let payload = Payload::from_value(&serde_json::json!({ "blob": blob, "tail": "ĳ" })).unwrap();
    assert!(payload.len() > 1 << 20);
    let mut req = request("thing", id, 0, 2);
    req.events[0].payload = payload.clone();
    req.events[1].args = payload.clone();
    let stored = append_ok(&store, req).await;
    let back = store.get_events("thing", id).await.unwrap();
    assert_eq!(back, stored);
    assert_eq!(back[0].payload, payload);
    assert_eq!(back[1].args, payload);
    assert_eq!(read_all_settled(&store, 2).await, stored);
}

/// Timestamps come back exactly (microsecond precision), far in the past or future too.
pub async fn timestamps_round_trip<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let stamps: Vec<DateTime<Utc>> = [
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00Z",
        "2000-02-29T12:34:56.000001Z",
        "2024-10-27T01:30:00.123456Z",
        "2262-04-11T23:47:16.854775Z",
        "9999-12-31T23:59:59.999999Z",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .chain([now()])
    .collect();
    let mut req = request("thing", id, 0, stamps.len() as u64);
    for (e, t) in req.events.iter_mut().zip(&stamps) {
        e.timestamp = *t;
    }
    let record = command_record(&req);
    req.command = Some(record.clone());
    let stored = append_ok(&store, req).await;
    let back = store.get_events("thing", id).await.unwrap();
    assert_eq!(back, stored);
    for (e, t) in back.iter().zip(&stamps) {
        assert_eq!(e.timestamp, *t, "timestamp kept to the microsecond");
    }
    assert_eq!(store.get_command(record.id).await.unwrap(), Some(record));

    // A timestamp finer than microseconds: what append returns is what reads return.
    let mut fine = request("thing", id, stamps.len() as u64, 1);
    fine.events[0].timestamp = "2024-01-01T00:00:00.123456789Z".parse().unwrap();
    let stored = append_ok(&store, fine).await;
    let back = store
        .get_events_from("thing", id, stamps.len() as u64 + 1)
        .await
        .unwrap();
    assert_eq!(back, stored, "append returns the event as it reads back");
    let micros: DateTime<Utc> = "2024-01-01T00:00:00.123456Z".parse().unwrap();
    let nanos: DateTime<Utc> = "2024-01-01T00:00:00.123456789Z".parse().unwrap();
    assert!(back[0].timestamp == micros || back[0].timestamp == nanos);
}

// ----- snapshots ----------------------------------------------------------------------------

async fn latest<S: LogStore + ?Sized>(
    store: &S,
    resource: &str,
    id: AggregateId,
    max_version: Option<u64>,
    until: Option<DateTime<Utc>>,
) -> Option<Snapshot> {
    store
        .load_snapshot(resource, id, SnapshotQuery { max_version, until })
        .await
        .expect("load_snapshot failed")
}

/// A snapshot comes back exactly as written (state text, state version, timestamp), only for
/// its own stream; a snapshot that does not sit on one of the append's events is refused with
/// the whole append.
pub async fn snapshot_round_trip<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    assert_eq!(
        latest(&store, "thing", id, None, None).await,
        None,
        "no snapshot yet"
    );

    let mut req = request("thing", id, 0, 3);
    let mut snapshot = snapshot_of(&req, 7);
    snapshot.state =
        Payload::from_json_unchecked(r#"{"z":1,"big":18446744073709551615,"name":"Ánh 🌊","a":[null]}"#);
    req.snapshot = Some(snapshot.clone());
    append_ok(&store, req).await;
    let back = latest(&store, "thing", id, None, None)
        .await
        .expect("the snapshot was stored");
    assert_eq!(back, snapshot);
    assert_eq!(
        back.state.as_str(),
        snapshot.state.as_str(),
        "state text is kept as written"
    );
    assert_eq!(
        latest(&store, "other", id, None, None).await,
        None,
        "keyed by resource"
    );
    assert_eq!(
        latest(&store, "thing", AggregateId::new(), None, None).await,
        None,
        "keyed by aggregate"
    );

    // A snapshot in the middle of a batch.
    let mut req = request("thing", id, 3, 3);
    let mut middle = snapshot_of(&req, 7);
    middle.version = 5;
    middle.timestamp = req.events[1].timestamp;
    req.snapshot = Some(middle.clone());
    append_ok(&store, req).await;
    assert_eq!(
        latest(&store, "thing", id, None, None).await,
        Some(middle.clone())
    );

    // Snapshots that do not sit on an appended event: refused, nothing written.
    let bad: [fn(&mut Snapshot); 5] = [
        |s| s.version = 6,
        |s| s.version = 9,
        |s| s.aggregate_id = AggregateId::new(),
        |s| s.resource = "other".into(),
        |s| s.timestamp += TimeDelta::seconds(1),
    ];
    for (i, spoil) in bad.iter().enumerate() {
        let mut req = request("thing", id, 6, 2);
        let mut snapshot = snapshot_of(&req, 1);
        spoil(&mut snapshot);
        req.snapshot = Some(snapshot);
        assert_invalid(store.append(req).await);
        assert_eq!(
            versions(&store.get_events("thing", id).await.unwrap()),
            [1, 2, 3, 4, 5, 6],
            "bad snapshot {i}: no event written"
        );
        assert_eq!(
            latest(&store, "thing", id, None, None).await,
            Some(middle.clone()),
            "bad snapshot {i}: not stored"
        );
    }

    // Appends without a snapshot leave the latest one as it was.
    append_ok(&store, request("thing", id, 6, 2)).await;
    assert_eq!(latest(&store, "thing", id, None, None).await, Some(middle));
}

/// A snapshot is part of its append: an append refused for a version conflict or a duplicate
/// command stores neither its events nor its snapshot.
pub async fn snapshot_is_written_with_its_events_or_not_at_all<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let mut first = request("thing", id, 0, 2);
    let record = command_record(&first);
    first.command = Some(record.clone());
    let first_snapshot = snapshot_of(&first, 1);
    first.snapshot = Some(first_snapshot.clone());
    let stored = append_ok(&store, first).await;

    // A stale writer (it read version 1) with a snapshot at version 2 and 3.
    let mut stale = request("thing", id, 1, 2);
    let mut at_two = snapshot_of(&stale, 2);
    at_two.version = 2;
    at_two.timestamp = stale.events[0].timestamp;
    stale.snapshot = Some(at_two);
    assert_conflict(store.append(stale).await, 1, 2);
    let mut stale = request("thing", id, 1, 2);
    stale.snapshot = Some(snapshot_of(&stale, 2));
    assert_conflict(store.append(stale).await, 1, 2);

    // A duplicate command at the right version, with a snapshot.
    let mut duplicate = request("thing", id, 2, 1);
    let mut dup_record = command_record(&duplicate);
    dup_record.id = record.id;
    duplicate.command = Some(dup_record);
    duplicate.snapshot = Some(snapshot_of(&duplicate, 2));
    match store.append(duplicate).await {
        Err(Error::DuplicateCommand { command_id }) => assert_eq!(command_id, record.id),
        Err(other) => panic!("expected DuplicateCommand, got {other} ({other:?})"),
        Ok(events) => panic!(
            "expected DuplicateCommand, but {} events were appended",
            events.len()
        ),
    }

    assert_eq!(store.get_events("thing", id).await.unwrap(), stored);
    assert_eq!(
        latest(&store, "thing", id, None, None).await,
        Some(first_snapshot.clone()),
        "only the accepted append's snapshot is stored"
    );
    assert_eq!(latest(&store, "thing", id, Some(1), None).await, None);

    // Racing writers with snapshots: the winner's snapshot is the one stored.
    const RACERS: usize = 6;
    let store = Arc::new(store);
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            let mut req = request("thing", id, 2, 1);
            let mut snapshot = snapshot_of(&req, 1);
            snapshot.state = Payload::from_value(&serde_json::json!({ "racer": i })).unwrap();
            req.snapshot = Some(snapshot.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                (snapshot, store.append(req).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (snapshot, result) = task.await.expect("racer panicked");
        match result {
            Ok(_) => winners.push(snapshot),
            Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("a racer failed with {other} ({other:?}), not a conflict"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one racer wins");
    assert_eq!(
        latest(&*store, "thing", id, None, None).await.as_ref(),
        Some(&winners[0]),
        "the stored snapshot is the winner's"
    );
}

/// `load_snapshot` returns the snapshot with the highest version among those with
/// `version <= max_version` and `timestamp <= until` (both inclusive, alone or together).
pub async fn latest_snapshot_at_or_before_version_and_time<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let id = AggregateId::new();
    let t0: DateTime<Utc> = "2024-05-01T08:00:00.000001Z".parse().unwrap();
    // Snapshots at versions 2, 5 and 8; event v has timestamp t0 + v seconds.
    let mut taken = HashMap::new();
    for (expected, count) in [(0, 2), (2, 3), (5, 3), (8, 2)] {
        let mut req = request("thing", id, expected, count);
        for e in &mut req.events {
            e.timestamp = t0 + TimeDelta::seconds(e.aggregate_version as i64);
        }
        if expected < 8 {
            let snapshot = snapshot_of(&req, 1);
            taken.insert(snapshot.version, snapshot.clone());
            req.snapshot = Some(snapshot);
        }
        append_ok(&store, req).await;
    }
    let at = |v: u64| t0 + TimeDelta::seconds(v as i64);
    let version_of = |s: Option<Snapshot>| s.map(|s| s.version);
    // (max_version, until, the version of the snapshot expected)
    type Case = (Option<u64>, Option<DateTime<Utc>>, Option<u64>);
    let cases: [Case; 14] = [
        (None, None, Some(8)),
        (Some(10), None, Some(8)),
        (Some(8), None, Some(8)),
        (Some(7), None, Some(5)),
        (Some(5), None, Some(5)),
        (Some(4), None, Some(2)),
        (Some(1), None, None),
        (Some(0), None, None),
        (None, Some(at(8)), Some(8)),
        (None, Some(at(8) - TimeDelta::microseconds(1)), Some(5)),
        (None, Some(at(2)), Some(2)),
        (None, Some(at(2) - TimeDelta::microseconds(1)), None),
        (Some(7), Some(at(3)), Some(2)),
        (Some(4), Some(at(9)), Some(2)),
    ];
    for (max_version, until, want) in cases {
        let got = latest(&store, "thing", id, max_version, until).await;
        assert_eq!(
            version_of(got.clone()),
            want,
            "latest snapshot with version <= {max_version:?} and timestamp <= {until:?}"
        );
        if let (Some(got), Some(want)) = (got, want) {
            assert_eq!(got, taken[&want], "the snapshot comes back whole");
        }
    }
    assert_eq!(
        latest(&store, "thing", id, Some(u64::MAX), None)
            .await
            .map(|s| s.version),
        Some(8)
    );
}

// ----- transactional handlers ----------------------------------------------------------------

/// What a recording transactional handler saw: (backend, aggregate, version, position).
type Seen = Arc<std::sync::Mutex<Vec<(&'static str, AggregateId, u64, u64)>>>;

/// One handler, `"recorder"`, on every event: records what it sees, and refuses an event
/// whose version is `refuse_version` or whose aggregate is in `refuse_aggregates`.
fn recorder(
    seen: Seen,
    refuse_version: Option<u64>,
    refuse_aggregates: HashSet<AggregateId>,
) -> TransactionalHandlers {
    let refuse_aggregates = Arc::new(refuse_aggregates);
    let handler = boxed(move |event: &Event, tx: &mut AppendTx<'_>| {
        let seen = seen.clone();
        let refuse_aggregates = refuse_aggregates.clone();
        Box::pin(async move {
            seen.lock().unwrap().push((
                tx.backend(),
                event.aggregate_id,
                event.aggregate_version,
                event.position,
            ));
            if Some(event.aggregate_version) == refuse_version
                || refuse_aggregates.contains(&event.aggregate_id)
            {
                return Err(DomainError::new(
                    "refused_here",
                    format!("no version {}", event.aggregate_version),
                ));
            }
            Ok(())
        })
    });
    let never = boxed(|event: &Event, _tx: &mut AppendTx<'_>| {
        let key = event.key.clone();
        Box::pin(async move { Err(DomainError::rejected(format!("`other-*` must not see `{key}`"))) })
    });
    TransactionalHandlers::new(vec![
        ("recorder".into(), crate::pattern::Pattern::All, handler),
        (
            "other".into(),
            crate::pattern::Pattern::Prefix("other-".into()),
            never,
        ),
    ])
    .expect("two distinct names")
}

fn assert_refused(result: crate::Result<Vec<Event>>, what: &str) {
    match result {
        Err(Error::RefusedByHandler { handler, reason }) => {
            assert_eq!(handler, "recorder", "{what}: the refusing handler is named");
            assert_eq!(
                reason.code(),
                "refused_here",
                "{what}: the handler's reason is kept"
            );
        }
        Err(other) => panic!("{what}: expected RefusedByHandler, got {other} ({other:?})"),
        Ok(events) => panic!(
            "{what}: expected a refusal, but {} events were appended",
            events.len()
        ),
    }
}

/// A store runs the request's transactional handlers inside the append: each matching event
/// once, in version order, at the position it is stored at; handlers whose pattern does not
/// match are not called.
pub async fn transactional_handlers_see_events_at_their_positions<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    assert!(
        store.runs_transactional_handlers(),
        "every backend runs transactional handlers"
    );
    let seen = Seen::default();
    let handlers = recorder(seen.clone(), None, HashSet::new());
    let id = AggregateId::new();
    append_ok(&store, request("thing", id, 0, 2)).await;
    let stored = append_ok(
        &store,
        request("thing", id, 2, 3).with_transactional(handlers.clone()),
    )
    .await;
    let want: Vec<_> = stored
        .iter()
        .map(|e| (store.backend(), id, e.aggregate_version, e.position))
        .collect();
    assert_eq!(
        *seen.lock().unwrap(),
        want,
        "one call per event, at its version and position"
    );
    assert_eq!(versions(&stored), vec![3, 4, 5]);
    assert_eq!(store.get_events("thing", id).await.unwrap().len(), 5);
}

/// A refusal rolls the whole append back (events, command record, snapshot) and is reported
/// as `RefusedByHandler`; a stale or duplicate append fails as before, without running the
/// handlers; the stream can then be appended to as if the refused append never happened.
pub async fn transactional_refusal_writes_nothing<F: StoreFactory>(factory: &F) {
    let store = factory.create().await;
    let seen = Seen::default();
    let id = AggregateId::new();
    let first = append_ok(&store, request("thing", id, 0, 1)).await;

    let mut refused =
        request("thing", id, 1, 3).with_transactional(recorder(seen.clone(), Some(3), HashSet::new()));
    let record = command_record(&refused);
    refused.command = Some(record.clone());
    refused.snapshot = Some(snapshot_of(&refused, 1));
    assert_refused(store.append(refused).await, "refused at version 3");
    assert_eq!(
        seen.lock().unwrap().iter().map(|s| s.2).collect::<Vec<_>>(),
        vec![2, 3],
        "handlers stop at the first refusal"
    );
    assert_eq!(
        store.get_events("thing", id).await.unwrap(),
        first,
        "no event of a refused append is stored"
    );
    assert_eq!(
        store.get_command(record.id).await.unwrap(),
        None,
        "nor its command record"
    );
    assert_eq!(
        latest(&store, "thing", id, None, None).await,
        None,
        "nor its snapshot"
    );

    // Failures found before the handlers run do not run them.
    seen.lock().unwrap().clear();
    let stale = request("thing", id, 0, 1).with_transactional(recorder(seen.clone(), None, HashSet::new()));
    assert_conflict(store.append(stale).await, 0, 1);
    let mut accepted = request("thing", id, 1, 1);
    let accepted_record = command_record(&accepted);
    accepted.command = Some(accepted_record.clone());
    append_ok(&store, accepted).await;
    let mut duplicate =
        request("thing", id, 2, 1).with_transactional(recorder(seen.clone(), None, HashSet::new()));
    let mut dup_record = command_record(&duplicate);
    dup_record.id = accepted_record.id;
    duplicate.command = Some(dup_record);
    match store.append(duplicate).await {
        Err(Error::DuplicateCommand { command_id }) => assert_eq!(command_id, accepted_record.id),
        other => panic!("expected DuplicateCommand, got {other:?}"),
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "a conflict or duplicate is found before the handlers run"
    );

    // The refused versions are free: the stream continues at version 3.
    let next = append_ok(
        &store,
        request("thing", id, 2, 1).with_transactional(recorder(seen.clone(), None, HashSet::new())),
    )
    .await;
    assert_eq!(versions(&next), vec![3]);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// Concurrent appends on different streams (which a store may write in one transaction):
/// a refusal fails its own append only; every other append is stored, and the log holds
/// exactly the accepted events.
pub async fn transactional_refusal_fails_only_its_append<F: StoreFactory>(factory: &F) {
    const WRITERS: usize = 24;
    let store = Arc::new(factory.create().await);
    let ids: Vec<AggregateId> = (0..WRITERS).map(|_| AggregateId::new()).collect();
    let refused: HashSet<AggregateId> = ids.iter().copied().step_by(3).collect();
    let seen = Seen::default();
    let handlers = recorder(seen.clone(), None, refused.clone());
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks: Vec<_> = ids
        .iter()
        .map(|&id| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let mut req = request("thing", id, 0, 2).with_transactional(handlers.clone());
            req.command = Some(command_record(&req));
            tokio::spawn(async move {
                barrier.wait().await;
                (id, store.append(req).await)
            })
        })
        .collect();
    for task in tasks {
        let (id, result) = task.await.expect("writer panicked");
        if refused.contains(&id) {
            assert_refused(result, "a refused writer");
        } else {
            let stored = result.unwrap_or_else(|e| panic!("an accepted writer failed: {e} ({e:?})"));
            assert_eq!(versions(&stored), vec![1, 2]);
        }
    }
    let accepted = WRITERS - refused.len();
    let all = read_all_settled(&*store, accepted * 2).await;
    assert_eq!(
        all.len(),
        accepted * 2,
        "exactly the accepted appends are in the log"
    );
    assert!(
        all.iter().all(|e| !refused.contains(&e.aggregate_id)),
        "no refused event is in the log"
    );
    for id in &ids {
        let n = store.get_events("thing", *id).await.unwrap().len();
        assert_eq!(n, if refused.contains(id) { 0 } else { 2 });
    }
}
