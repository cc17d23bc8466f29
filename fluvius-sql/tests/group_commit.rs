//! Group commit on both SQL stores: appends that share one transaction keep their own outcome
//! (a conflict or a duplicate command fails only that append), and every acknowledged append
//! survives a writer process killed mid-flight.
//!
//! To make a batch form for sure, a second connection holds the write lock while the appends
//! are queued; the writer's stats say when all of them wait, and that they went in one batch.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluvius_core::testing;
use fluvius_core::{AggregateId, AppendRequest, Error, Event, LogStore};
use fluvius_sql::GroupCommitStats;

use common::child::{child_arg, CHILD_ENV};
use common::wait_for;

/// The mixed batch: which appends succeed, which fail, and how.
struct MixedBatch {
    x: AggregateId,
    y: AggregateId,
    z: AggregateId,
    w: AggregateId,
    requests: Vec<AppendRequest>,
}

fn mixed_batch() -> MixedBatch {
    let (x, y, z, w) = (
        AggregateId::new(),
        AggregateId::new(),
        AggregateId::new(),
        AggregateId::new(),
    );
    let mut y_req = testing::request("thing", y, 0, 2);
    let record = testing::command_record(&y_req);
    y_req.command = Some(record.clone());
    // Same command id as y's, on another aggregate: a duplicate.
    let mut w_req = testing::request("thing", w, 0, 1);
    let mut w_record = testing::command_record(&w_req);
    w_record.id = record.id;
    w_req.command = Some(w_record);
    let requests = vec![
        testing::request("thing", x, 0, 3), // ok
        y_req,                              // ok, records its command
        testing::request("thing", x, 0, 1), // conflict: x is at 3 within this same batch
        testing::request("thing", z, 5, 1), // conflict: z is empty
        w_req,                              // duplicate command id
        testing::request("thing", x, 3, 2), // ok: continues x after the first append
    ];
    MixedBatch { x, y, z, w, requests }
}

/// Queue `requests` one by one behind a held write lock (`release` gives it back), check they
/// went in one batch, and return each append's result, in order.
async fn run_batch<S: LogStore + Clone>(
    store: &S,
    stats: impl Fn() -> GroupCommitStats,
    release: impl std::future::Future<Output = ()>,
    requests: &[AppendRequest],
) -> Vec<Result<Vec<Event>, Error>> {
    let before = stats();
    let count = requests.len() as u64;
    let mut tasks = Vec::new();
    for request in requests.iter().cloned() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.append(request).await }));
        // One at a time, so the queue order is the order given.
        let queued = tasks.len() as u64;
        wait_for(&stats, |s| s.waiting + s.appends >= before.appends + queued).await;
    }
    wait_for(&stats, |s| s.waiting == count).await;
    release.await;
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("append task"));
    }
    let after = stats();
    assert_eq!(
        after.batches,
        before.batches + 1,
        "all appends went in one batch: {after:?}"
    );
    assert!(after.largest_batch >= count, "{after:?}");
    results
}

/// Three appends one at a time on a fresh store: with nothing else in flight, each is written
/// on its caller's task and none goes through the writer.
async fn appends_one_at_a_time_go_alone<S: LogStore>(store: &S, stats: impl Fn() -> GroupCommitStats) {
    let id = AggregateId::new();
    for version in 0..3 {
        let stored = store
            .append(testing::request("thing", id, version, 1))
            .await
            .unwrap();
        assert_eq!(stored[0].aggregate_version, version + 1);
    }
    let after = stats();
    assert_eq!(
        (after.alone, after.appends, after.batches),
        (3, 0, 0),
        "{after:?}"
    );
}

/// Five appends of fresh streams queued behind a held write lock (`release` gives it back):
/// one batch (`run_batch` checks it), every append written.
async fn five_queued_appends_form_one_batch<S: LogStore + Clone>(
    store: &S,
    stats: impl Fn() -> GroupCommitStats,
    release: impl std::future::Future<Output = ()>,
) {
    let requests: Vec<_> = (0..5)
        .map(|_| testing::request("thing", AggregateId::new(), 0, 1))
        .collect();
    let results = run_batch(store, stats, release, &requests).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// Queue the mixed batch behind a held write lock (`hold` takes it, `release` gives it back)
/// and check each append's own outcome and what was stored.
async fn check_mixed_batch<S: LogStore + Clone>(
    store: S,
    stats: impl Fn() -> GroupCommitStats,
    release: impl std::future::Future<Output = ()>,
) {
    let batch = mixed_batch();
    let results = run_batch(&store, &stats, release, &batch.requests).await;

    let ok = |i: usize| {
        results[i]
            .as_ref()
            .unwrap_or_else(|e| panic!("append {i} failed: {e}"))
    };
    let x1 = ok(0);
    let y1 = ok(1);
    let x2 = ok(5);
    // The version seen inside the batch, after the first append of x.
    assert!(
        matches!(
            &results[2],
            Err(Error::Conflict {
                expected: 0,
                actual: 3,
                ..
            })
        ),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(
            &results[3],
            Err(Error::Conflict {
                expected: 5,
                actual: 0,
                ..
            })
        ),
        "{:?}",
        results[3]
    );
    assert!(
        matches!(&results[4], Err(Error::DuplicateCommand { .. })),
        "{:?}",
        results[4]
    );

    // What the successful appends returned is exactly what is stored.
    let x_events: Vec<Event> = x1.iter().chain(x2).cloned().collect();
    assert_eq!(store.get_events("thing", batch.x).await.unwrap(), x_events);
    assert_eq!(store.get_events("thing", batch.y).await.unwrap(), *y1);
    assert!(store.get_events("thing", batch.z).await.unwrap().is_empty());
    assert!(store.get_events("thing", batch.w).await.unwrap().is_empty());
    let record = store
        .get_command(batch.requests[1].command.as_ref().unwrap().id)
        .await
        .unwrap()
        .expect("y's command was recorded");
    assert_eq!(record.aggregate_id, batch.y, "the duplicate did not overwrite it");
    // Each append's events have consecutive positions, in queue order.
    for events in [x1, y1, x2] {
        for pair in events.windows(2) {
            assert_eq!(pair[1].position, pair[0].position + 1);
        }
    }
    assert!(x1[2].position < y1[0].position && y1[1].position < x2[0].position);
    let versions: Vec<u64> = x_events.iter().map(|e| e.aggregate_version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
}

/// What [`seed_bulk`] stored before the bulk batch.
struct Seed {
    /// A stream at version 2.
    stored: AggregateId,
    /// The aggregate of the recorded command.
    recorded_on: AggregateId,
    /// A recorded command id.
    recorded: uuid::Uuid,
    /// The last position before the batch.
    head: u64,
}

/// Rows the bulk batch must find already stored: a stream at version 2 and a recorded command.
async fn seed_bulk<S: LogStore>(store: &S) -> Seed {
    let stored = AggregateId::new();
    store
        .append(testing::request("thing", stored, 0, 2))
        .await
        .unwrap();
    let recorded_on = AggregateId::new();
    let mut request = testing::request("thing", recorded_on, 0, 1);
    let record = testing::command_record(&request);
    let recorded = record.id;
    request.command = Some(record);
    let events = store.append(request).await.unwrap();
    Seed {
        stored,
        recorded_on,
        recorded,
        head: events[0].position,
    }
}

/// `request` with a fresh command record, or with `id` as its command id.
fn with_command(mut request: AppendRequest, id: Option<uuid::Uuid>) -> AppendRequest {
    let mut record = testing::command_record(&request);
    if let Some(id) = id {
        record.id = id;
    }
    request.command = Some(record);
    request
}

/// `request` with a snapshot at its last event.
fn with_snapshot(mut request: AppendRequest) -> AppendRequest {
    let last = request.events.last().expect("an event");
    request.snapshot = Some(fluvius_core::Snapshot {
        resource: request.resource.to_string(),
        aggregate_id: request.aggregate_id,
        version: last.aggregate_version,
        state_version: 1,
        state: fluvius_core::Payload::from_json_unchecked(r#"{"n":1}"#),
        timestamp: last.timestamp,
    });
    request
}

fn command_id(request: &AppendRequest) -> uuid::Uuid {
    request.command.as_ref().expect("a command").id
}

/// A small deterministic generator (xorshift64*), so a failing random batch is replayed by its
/// seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// A random case: appends stored first, then a batch of 12 over three aggregates (two with
/// history) with random expected versions, sizes and command ids drawn from a small pool
/// (one of them recorded by the history), so chains, conflicts and duplicates mix.
struct RandomCase {
    aggregates: Vec<AggregateId>,
    commands: [uuid::Uuid; 8],
    history: Vec<AppendRequest>,
    batch: Vec<AppendRequest>,
}

impl RandomCase {
    /// The command id pool, and what is stored before the batch: the first aggregate at
    /// version 2, the second at version 1 with the pool's first command id recorded.
    fn history(aggregates: &[AggregateId]) -> ([uuid::Uuid; 8], Vec<AppendRequest>) {
        let commands = [(); 8].map(|()| uuid::Uuid::new_v4());
        let history = vec![
            testing::request("thing", aggregates[0], 0, 2),
            with_command(testing::request("thing", aggregates[1], 0, 1), Some(commands[0])),
        ];
        (commands, history)
    }

    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let aggregates = vec![AggregateId::new(), AggregateId::new(), AggregateId::new()];
        let (commands, history) = Self::history(&aggregates);
        // The version each aggregate reaches if every append so far went through: most appends
        // expect it (so chains form), the others a random version (conflicts).
        let mut reached = [2u64, 1, 0];
        let batch = (0..12)
            .map(|_| {
                let which = rng.below(3) as usize;
                let events = 1 + rng.below(2);
                let expected = match rng.below(3) {
                    0 => rng.below(4),
                    _ => reached[which],
                };
                reached[which] = reached[which].max(expected + events);
                let request = testing::request("thing", aggregates[which], expected, events);
                match rng.below(3) {
                    0 => request,
                    _ => with_command(request, Some(commands[rng.below(commands.len() as u64) as usize])),
                }
            })
            .collect();
        Self {
            aggregates,
            commands,
            history,
            batch,
        }
    }

    /// A random case of 12 appends on 12 aggregates (two with the same history as in
    /// [`Self::new`]), one append each, with random expected versions, mostly fresh command
    /// ids and now and then the recorded one: the batches PostgreSQL writes with its checked
    /// statement, and the ones whose statement fails and are written append by append.
    fn distinct_streams(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let aggregates: Vec<AggregateId> = (0..12).map(|_| AggregateId::new()).collect();
        let (commands, history) = Self::history(&aggregates);
        let reached = |i: usize| match i {
            0 => 2,
            1 => 1,
            _ => 0,
        };
        let batch = aggregates
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let expected = match rng.below(4) {
                    0 => rng.below(4),
                    _ => reached(i),
                };
                let request = testing::request("thing", id, expected, 1 + rng.below(2));
                match rng.below(12) {
                    0 => with_command(request, Some(commands[0])),
                    1..=3 => request,
                    _ => with_command(request, None),
                }
            })
            .collect();
        Self {
            aggregates,
            commands,
            history,
            batch,
        }
    }

    /// What an append's outcome says, without the positions (the stores number differently).
    fn outcome(result: &Result<Vec<Event>, Error>) -> String {
        match result {
            Ok(events) => format!(
                "ok {:?}",
                events
                    .iter()
                    .map(|e| (e.id, e.aggregate_version))
                    .collect::<Vec<_>>()
            ),
            Err(Error::Conflict { expected, actual, .. }) => format!("conflict {expected} → {actual}"),
            Err(Error::DuplicateCommand { command_id }) => format!("duplicate {command_id}"),
            Err(other) => format!("other error: {other}"),
        }
    }

    /// Write the history to `store`, then queue the batch behind the write lock `hold` takes
    /// (it also starts a first append, of its own), write it in bulk and check it.
    async fn run<S, R>(
        &self,
        seed: u64,
        store: &S,
        stats: impl Fn() -> GroupCommitStats,
        hold: impl std::future::Future<Output = (tokio::task::JoinHandle<Result<Vec<Event>, Error>>, R)>,
    ) where
        S: LogStore + Clone,
        R: std::future::Future<Output = ()>,
    {
        self.write_history(store).await;
        let (first, release) = hold.await;
        let before = stats().bulk_batches;
        let results = run_batch(store, &stats, release, &self.batch).await;
        // The writer counts a bulk batch once it has answered every caller (a batch whose
        // stream versions come from the checked statement may instead be written append by
        // append: no bulk batch).
        if self.batch.len() > self.aggregates.len() {
            wait_for(&stats, |s| s.bulk_batches == before + 1).await;
        }
        first.await.unwrap().expect("the first append");
        self.check(seed, store, &results).await;
    }

    /// Write the history to `store` (appends one by one).
    async fn write_history<S: LogStore>(&self, store: &S) {
        for request in self.history.iter().cloned() {
            store.append(request).await.expect("history");
        }
    }

    /// Check the batch's outcomes on `store` against the same appends written one by one on a
    /// memory store, and the streams and command records both end with.
    async fn check<S: LogStore>(&self, seed: u64, store: &S, results: &[Result<Vec<Event>, Error>]) {
        let reference = fluvius_core::MemoryLogStore::new();
        self.write_history(&reference).await;
        for (i, request) in self.batch.iter().cloned().enumerate() {
            let expected = Self::outcome(&reference.append(request).await);
            assert_eq!(Self::outcome(&results[i]), expected, "seed {seed}, append {i}");
        }
        for &id in &self.aggregates {
            let events = |stored: Vec<Event>| -> Vec<_> {
                stored.iter().map(|e| (e.id, e.aggregate_version)).collect()
            };
            let ours = events(store.read_stream("thing", id, Default::default()).await.unwrap());
            let theirs = events(
                reference
                    .read_stream("thing", id, Default::default())
                    .await
                    .unwrap(),
            );
            assert_eq!(ours, theirs, "seed {seed}: stream of {id}");
        }
        let batch_commands = self.batch.iter().filter_map(|r| r.command.as_ref().map(|c| c.id));
        for id in self.commands.into_iter().chain(batch_commands) {
            let ours = store
                .get_command(id)
                .await
                .unwrap()
                .map(|c| (c.aggregate_id, c.version_after));
            let theirs = reference
                .get_command(id)
                .await
                .unwrap()
                .map(|c| (c.aggregate_id, c.version_after));
            assert_eq!(ours, theirs, "seed {seed}: command record {id}");
        }
    }
}

/// One batch with every case the bulk path decides on its own (chained appends on one
/// aggregate, conflicts within the batch and against stored rows, duplicate commands within
/// the batch and against a recorded one, snapshots), queued behind a held write lock after
/// [`seed_bulk`]: each append gets its own outcome, the accepted ones are stored at the
/// positions they were given, the refused ones left nothing.
async fn check_bulk_batch<S: LogStore + Clone>(
    store: S,
    stats: impl Fn() -> GroupCommitStats,
    release: impl std::future::Future<Output = ()>,
    seed: Seed,
) {
    let (a, b, p, q, r, s, t) = (
        AggregateId::new(),
        AggregateId::new(),
        AggregateId::new(),
        AggregateId::new(),
        AggregateId::new(),
        AggregateId::new(),
        AggregateId::new(),
    );
    let q_req = with_command(testing::request("thing", q, 0, 1), None);
    let s_req = with_snapshot(with_command(testing::request("thing", s, 5, 1), None));
    let requests = vec![
        testing::request("thing", a, 0, 2),                          // 0 ok
        testing::request("thing", a, 2, 1),                          // 1 ok: chained on 0
        testing::request("thing", a, 2, 1),                          // 2 conflict: a is at 3 after 1
        testing::request("thing", b, 0, 1),                          // 3 ok
        testing::request("thing", b, 0, 1),                          // 4 conflict: b is at 1 after 3
        testing::request("thing", b, 1, 2),                          // 5 ok: chained on 3
        testing::request("thing", seed.stored, 0, 1),                // 6 conflict: stored at 2
        with_snapshot(testing::request("thing", seed.stored, 2, 1)), // 7 ok, with a snapshot
        with_command(testing::request("thing", p, 0, 1), Some(seed.recorded)), // 8 duplicate: recorded
        q_req.clone(),                                               // 9 ok, records its command
        with_command(testing::request("thing", r, 0, 1), Some(command_id(&q_req))), // 10 duplicate of 9
        s_req.clone(), // 11 conflict (s is empty): neither its command nor its snapshot is stored
        with_command(testing::request("thing", t, 0, 1), Some(command_id(&s_req))), // 12 ok: 11 recorded nothing
    ];
    let before = stats();
    let results = run_batch(&store, &stats, release, &requests).await;
    // The writer counts a bulk batch once it has answered every caller: wait for the count.
    wait_for(&stats, |s| s.bulk_batches == before.bulk_batches + 1).await;

    let conflict = |i: usize, aggregate: AggregateId, expected: u64, actual: u64| {
        assert!(
            matches!(
                &results[i],
                Err(Error::Conflict { resource, aggregate_id, expected: e, actual: a })
                    if resource == "thing" && *aggregate_id == aggregate && *e == expected && *a == actual
            ),
            "append {i}: {:?}",
            results[i]
        );
    };
    conflict(2, a, 2, 3);
    conflict(4, b, 0, 1);
    conflict(6, seed.stored, 0, 2);
    conflict(11, s, 5, 0);
    let duplicate = |i: usize, id: uuid::Uuid| {
        assert!(
            matches!(&results[i], Err(Error::DuplicateCommand { command_id }) if *command_id == id),
            "append {i}: {:?}",
            results[i]
        );
    };
    duplicate(8, seed.recorded);
    duplicate(10, command_id(&q_req));
    let accepted = [0, 1, 3, 5, 7, 9, 12];
    let ok = |i: usize| -> Vec<Event> {
        results[i]
            .as_ref()
            .unwrap_or_else(|e| panic!("append {i} failed: {e}"))
            .clone()
    };
    for i in accepted {
        let events = ok(i);
        let sent: Vec<_> = requests[i]
            .events
            .iter()
            .map(|e| (e.id, e.aggregate_version))
            .collect();
        let got: Vec<_> = events.iter().map(|e| (e.id, e.aggregate_version)).collect();
        assert_eq!(got, sent, "append {i} returned its own events");
        for pair in events.windows(2) {
            assert_eq!(
                pair[1].position,
                pair[0].position + 1,
                "append {i}: consecutive positions"
            );
        }
    }

    // Every accepted event is in the global log at the position its append returned, and
    // nothing else was written.
    let mut written: Vec<Event> = accepted.iter().flat_map(|&i| ok(i)).collect();
    written.sort_by_key(|e| e.position);
    // (PostgreSQL's read_all lags behind transactions open elsewhere on the server: wait.)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log: Vec<Event> = testing::conformance::read_everything(&store)
            .await
            .into_iter()
            // (The append that held the writer is in resource `first`.)
            .filter(|e| e.position > seed.head && e.resource == "thing")
            .collect();
        if log.len() >= written.len() || Instant::now() > deadline {
            assert_eq!(log, written);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Positions follow the batch order.
    let firsts: Vec<u64> = accepted.iter().map(|&i| ok(i)[0].position).collect();
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{firsts:?}");

    let stream = |id: AggregateId| {
        let store = store.clone();
        async move { store.get_events("thing", id).await.unwrap() }
    };
    assert_eq!(stream(a).await, [ok(0), ok(1)].concat());
    assert_eq!(stream(b).await, [ok(3), ok(5)].concat());
    let stored = stream(seed.stored).await;
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[2..], ok(7));
    for refused in [p, r, s] {
        assert!(
            stream(refused).await.is_empty(),
            "a refused append wrote no events"
        );
    }
    let recorded = |id: uuid::Uuid| {
        let store = store.clone();
        async move { store.get_command(id).await.unwrap() }
    };
    assert_eq!(
        recorded(seed.recorded)
            .await
            .expect("still recorded")
            .aggregate_id,
        seed.recorded_on,
        "the duplicate did not overwrite the recorded command"
    );
    assert_eq!(
        recorded(command_id(&q_req))
            .await
            .expect("9 recorded")
            .aggregate_id,
        q,
        "the duplicate in the batch did not overwrite it"
    );
    assert_eq!(
        recorded(command_id(&s_req))
            .await
            .expect("12 recorded")
            .aggregate_id,
        t,
        "the refused append 11 did not record its command"
    );
    let snapshot = |id: AggregateId| {
        let store = store.clone();
        async move {
            store
                .load_snapshot("thing", id, fluvius_core::SnapshotQuery::default())
                .await
                .unwrap()
        }
    };
    assert_eq!(snapshot(seed.stored).await, requests[7].snapshot);
    assert_eq!(snapshot(s).await, None, "a refused append wrote no snapshot");
}

/// A store in a child process appends from many tasks and prints each acknowledged append;
/// the parent kills it (SIGKILL) mid-flight, reopens the database and finds every
/// acknowledged append, with dense versions per aggregate.
fn crash_while_appending(child_test: &str, arg: &str) -> BTreeMap<AggregateId, u64> {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            child_test,
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked: BTreeMap<AggregateId, u64> = BTreeMap::new();
    let mut lines = 0;
    for line in stdout.lines() {
        let line = line.expect("read the child's output");
        let Some(ack) = line.strip_prefix("ACK ") else {
            continue;
        };
        let (id, version) = ack.split_once(' ').expect("ACK <id> <version>");
        let version: u64 = version.parse().unwrap();
        let entry = acked.entry(id.parse().unwrap()).or_default();
        *entry = (*entry).max(version);
        lines += 1;
        if lines == 300 {
            child.kill().expect("kill the child"); // SIGKILL
            break;
        }
    }
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child was killed, not finished: {status}");
    assert_eq!(lines, 300, "the child stopped early");
    acked
}

/// The child's work: 16 tasks, each appending 1 to 3 events at a time to its own aggregate,
/// printing `ACK <aggregate> <version>` once the append returned.
async fn append_forever(store: Arc<dyn LogStore>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            let id = AggregateId::new();
            let mut version = 0;
            loop {
                let n = 1 + version % 3;
                store
                    .append(testing::request("crash", id, version, n))
                    .await
                    .expect("append");
                version += n;
                println!("ACK {id} {version}");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// After the crash: every acknowledged append is there, versions are dense.
async fn check_after_crash(store: &dyn LogStore, acked: &BTreeMap<AggregateId, u64>) {
    assert!(!acked.is_empty());
    for (id, version) in acked {
        let events = store.get_events("crash", *id).await.unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e.aggregate_version).collect();
        let dense: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(versions, dense, "versions of {id} are dense");
        assert!(
            versions.len() as u64 >= *version,
            "{id}: acknowledged up to version {version}, found {}",
            versions.len()
        );
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use fluvius_sql::SqliteLogStore;
    use sqlx::{Connection, Executor};

    fn url(dir: &std::path::Path) -> String {
        format!("sqlite://{}", dir.join("log.db").display())
    }

    #[tokio::test]
    async fn a_conflict_or_duplicate_in_a_batch_fails_only_that_append() {
        let dir = common::temp_dir("group-commit");
        let url = url(&dir);
        let store = SqliteLogStore::open(&url).await.unwrap();
        // The first append takes the writer, which waits for the lock; the batch queues
        // behind it. (The busy timeout is 5 s; the queueing takes milliseconds.)
        let (first, release) = hold_writer(&store, &url).await;
        let stats = || store.group_commit_stats().expect("group commit is on by default");
        check_mixed_batch(store.clone(), stats, release).await;
        first.await.unwrap().expect("the first append");
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Take the write lock from another connection and start one append behind it (with
    /// nothing queued it is written on its own task, holding the store's write turn, and
    /// waits for the lock): the writer waits for that write with the first append queued
    /// next, and what is queued next forms one batch. Returns the first append's task and
    /// what gives the lock back.
    async fn hold_writer(
        store: &SqliteLogStore,
        url: &str,
    ) -> (
        tokio::task::JoinHandle<Result<Vec<Event>, Error>>,
        impl std::future::Future<Output = ()>,
    ) {
        let (first, mut locker) = common::sqlite::hold_write_turn(store, url, "first").await;
        let release = async move {
            locker.execute("COMMIT").await.unwrap();
            let _ = locker.close().await;
        };
        (first, release)
    }

    #[tokio::test]
    async fn a_lone_append_is_written_on_its_callers_task_and_batches_still_form() {
        let dir = common::temp_dir("group-commit-alone");
        let url = url(&dir);
        let store = SqliteLogStore::open(&url).await.unwrap();
        let stats = || store.group_commit_stats().expect("group commit is on by default");
        appends_one_at_a_time_go_alone(&store, stats).await;
        // A lone append holding the write turn: the appends queued meanwhile form one batch
        // behind it (`run_batch` checks the batch).
        let (first, release) = hold_writer(&store, &url).await;
        five_queued_appends_form_one_batch(&store, stats, release).await;
        first.await.unwrap().expect("the first append");
        let after = stats();
        assert_eq!(
            (after.alone, after.appends, after.batches),
            (4, 5, 1),
            "{after:?}"
        );
        assert_eq!(store.read_all(0, 100).await.unwrap().len(), 9);
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_bulk_batch_decides_each_append_as_alone() {
        let dir = common::temp_dir("group-commit-bulk");
        let url = url(&dir);
        let store = SqliteLogStore::open(&url).await.unwrap();
        let seed = seed_bulk(&store).await;
        let (first, release) = hold_writer(&store, &url).await;
        let stats = || store.group_commit_stats().expect("group commit is on by default");
        check_bulk_batch(store.clone(), stats, release, seed).await;
        first.await.unwrap().expect("the first append");
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Random batches written in bulk end exactly as the same appends written one by one.
    #[tokio::test]
    async fn random_bulk_batches_match_appends_written_one_by_one() {
        for seed in 0..12 {
            let dir = common::temp_dir("group-commit-random");
            let url = url(&dir);
            let store = SqliteLogStore::open(&url).await.unwrap();
            let stats = || store.group_commit_stats().expect("group commit is on by default");
            RandomCase::new(seed)
                .run(seed, &store, stats, hold_writer(&store, &url))
                .await;
            store.close().await;
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[tokio::test]
    async fn without_group_commit_appends_are_written_alone() {
        let dir = common::temp_dir("no-group-commit");
        let store = SqliteLogStore::builder(url(&dir))
            .group_commit(fluvius_sql::GroupCommit::off())
            .open()
            .await
            .unwrap();
        assert_eq!(store.group_commit_stats(), None);
        let stored = store
            .append(testing::request("thing", AggregateId::new(), 0, 2))
            .await
            .unwrap();
        assert_eq!(stored[1].position, 2);
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[ignore = "child process of acknowledged_appends_survive_a_kill; run that test instead"]
    fn child_appends_until_killed() {
        let url = child_arg().expect("run by acknowledged_appends_survive_a_kill, not directly");
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let store = SqliteLogStore::open(&url).await.unwrap();
            append_forever(Arc::new(store)).await;
        });
    }

    #[test]
    fn acknowledged_appends_survive_a_kill() {
        let dir = common::temp_dir("group-commit-crash");
        let url = url(&dir);
        let acked = crash_while_appending("sqlite::child_appends_until_killed", &url);
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let store = SqliteLogStore::open(&url).await.unwrap();
            check_after_crash(&store, &acked).await;
            // The global log is dense after recovery too.
            let all = testing::conformance::read_everything(&store).await;
            let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
            let dense: Vec<u64> = (1..=positions.len() as u64).collect();
            assert_eq!(positions, dense);
            store.close().await;
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::pg;
    use fluvius_sql::PostgresLogStore;
    use sqlx::{Connection, Executor};

    /// A fresh schema, dropped when the guard goes.
    fn fresh_schema(url: &str) -> (String, pg::SchemaGuard) {
        let schema = pg::schema_name();
        let guard = pg::SchemaGuard {
            url: url.to_owned(),
            schema: schema.clone(),
        };
        (schema, guard)
    }

    /// A store in `schema` with one group-commit writer.
    fn one_writer(url: &str, schema: &str) -> fluvius_sql::PostgresOptions {
        PostgresLogStore::builder(url)
            .schema(schema)
            .group_commit(fluvius_sql::GroupCommit::default().writers(1))
    }

    #[tokio::test]
    async fn a_conflict_or_duplicate_in_a_batch_fails_only_that_append() {
        let Some(url) = pg::url().await else { return };
        let (schema, _guard) = fresh_schema(&url);
        // One writer: the first append holds it while the rest queue up as one batch.
        let store = one_writer(&url, &schema).connect().await.unwrap();
        let (first, release) = hold_writer(&store, &url, &schema).await;
        let stats = || store.group_commit_stats().expect("group commit is on by default");
        check_mixed_batch(store.clone(), stats, release).await;
        first.await.unwrap().expect("the first append");
        store.close().await;
    }

    /// Lock the events table from another connection and start two appends behind it: the
    /// first, the only append in flight, is written on its own task and waits for the lock;
    /// the second queues, and the (single) writer waits for the lock with it, so what is queued
    /// next forms one batch. Returns a task ending with both appends (the first error, if any)
    /// and what gives the lock back.
    async fn hold_writer(
        store: &PostgresLogStore,
        url: &str,
        schema: &str,
    ) -> (
        tokio::task::JoinHandle<Result<Vec<Event>, Error>>,
        impl std::future::Future<Output = ()>,
    ) {
        let mut locker = sqlx::PgConnection::connect(url).await.unwrap();
        locker.execute("BEGIN").await.unwrap();
        locker
            .execute(format!("LOCK TABLE \"{schema}\".fluvius_events IN EXCLUSIVE MODE").as_str())
            .await
            .unwrap();
        let stats = || store.group_commit_stats().unwrap();
        let append_first = || {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(testing::request("first", AggregateId::new(), 0, 1))
                    .await
            })
        };
        let before = stats();
        let alone = append_first();
        wait_for(stats, |s| s.alone > before.alone).await;
        let queued = append_first();
        wait_for(stats, |s| s.appends > before.appends).await;
        let first = tokio::spawn(async move {
            let alone = alone.await.expect("the lone append's task");
            let queued = queued.await.expect("the queued append's task");
            alone.and(queued)
        });
        let release = async move {
            locker.execute("COMMIT").await.unwrap();
            let _ = locker.close().await;
        };
        (first, release)
    }

    #[tokio::test]
    async fn a_lone_append_is_written_on_its_callers_task_and_batches_still_form() {
        let Some(url) = pg::url().await else { return };
        let (schema, _guard) = fresh_schema(&url);
        let store = one_writer(&url, &schema).connect().await.unwrap();
        let stats = || store.group_commit_stats().expect("group commit is on by default");
        appends_one_at_a_time_go_alone(&store, stats).await;
        // A lone append and the writer's first both held by a table lock: the appends queued
        // meanwhile form one batch (`run_batch` checks the batch).
        let (first, release) = hold_writer(&store, &url, &schema).await;
        five_queued_appends_form_one_batch(&store, stats, release).await;
        first.await.unwrap().expect("the first appends");
        let after = stats();
        assert_eq!(
            (after.alone, after.appends, after.batches),
            (4, 6, 2),
            "{after:?}"
        );
        // (Not `read_all`: it stops short of transactions still open anywhere in the database,
        // such as other tests' held locks.)
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM fluvius_events")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(stored, 10);
        store.close().await;
    }

    /// A bulk batch inserts its rows in stream order, whatever the order its appends came in
    /// (which still sets their positions): writers of different processes take the stream
    /// key's locks in the same order and cannot deadlock on them. Checked on the rows'
    /// physical order (`ctid`: the order they were inserted in), for the checked statement
    /// (distinct streams) and the one after the reads (a stream twice).
    #[tokio::test]
    async fn a_bulk_batch_inserts_its_rows_in_stream_order() {
        let Some(url) = pg::url().await else { return };
        for same_stream_twice in [false, true] {
            let (schema, _guard) = fresh_schema(&url);
            let store = one_writer(&url, &schema).connect().await.unwrap();
            let ids: Vec<AggregateId> = (1..=4u128)
                .rev()
                .map(|n| uuid::Uuid::from_u128(n).into())
                .collect();
            let mut requests: Vec<_> = ids
                .iter()
                .map(|&id| with_command(testing::request("thing", id, 0, 2), None))
                .collect();
            if same_stream_twice {
                requests.push(testing::request("thing", ids[0], 2, 1));
            }
            let (first, release) = hold_writer(&store, &url, &schema).await;
            let stats = || store.group_commit_stats().unwrap();
            let before = stats();
            let results = run_batch(&store, stats, release, &requests).await;
            wait_for(stats, |s| s.bulk_batches == before.bulk_batches + 1).await;
            first.await.unwrap().expect("the first appends");
            let results: Vec<Vec<Event>> = results.into_iter().map(Result::unwrap).collect();
            let positions: Vec<u64> = results.iter().flatten().map(|e| e.position).collect();
            assert!(
                positions.windows(2).all(|p| p[0] < p[1]),
                "positions in batch order: {positions:?}"
            );

            let inserted: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
                "SELECT aggregate_id, aggregate_version FROM fluvius_events WHERE resource = 'thing' ORDER BY ctid",
            )
            .fetch_all(store.pool())
            .await
            .unwrap();
            let mut sorted = inserted.clone();
            sorted.sort();
            assert_eq!(
                inserted, sorted,
                "rows inserted by stream (same_stream_twice: {same_stream_twice})"
            );
            assert_eq!(inserted.len(), 8 + usize::from(same_stream_twice));
            store.close().await;
        }
    }

    #[tokio::test]
    async fn a_bulk_batch_decides_each_append_as_alone() {
        let Some(url) = pg::url().await else { return };
        let (schema, _guard) = fresh_schema(&url);
        let store = one_writer(&url, &schema).connect().await.unwrap();
        let seed = seed_bulk(&store).await;
        let (first, release) = hold_writer(&store, &url, &schema).await;
        let stats = || store.group_commit_stats().expect("group commit is on by default");
        check_bulk_batch(store.clone(), stats, release, seed).await;
        first.await.unwrap().expect("the first append");
        store.close().await;
    }

    /// A bulk batch whose appends are all on different streams, with different command ids, is
    /// written without reading first: its one statement checks each append's expected version
    /// and records only the commands of the appends it wrote. An append expecting a version its
    /// stream has not reached is refused alone (a conflict naming the stored version), leaves no
    /// command record, and leaves a gap at the position reserved for it (which the path that
    /// reads first would not reserve).
    #[tokio::test]
    async fn a_bulk_batch_of_distinct_streams_checks_versions_in_its_statement() {
        let Some(url) = pg::url().await else { return };
        let (schema, _guard) = fresh_schema(&url);
        let store = one_writer(&url, &schema).connect().await.unwrap();
        let seed = seed_bulk(&store).await;
        let (a, z, e, b) = (
            AggregateId::new(),
            AggregateId::new(),
            AggregateId::new(),
            AggregateId::new(),
        );
        let requests = vec![
            with_command(testing::request("thing", a, 0, 1), None),
            // Continues the stored stream (at version 2).
            with_command(testing::request("thing", seed.stored, 2, 2), None),
            // Ahead of its empty stream: refused by the statement.
            with_command(testing::request("thing", z, 4, 1), None),
            with_command(testing::request("thing", e, 0, 1), None),
            testing::request("thing", b, 0, 2),
        ];
        let (held, release) = hold_writer(&store, &url, &schema).await;
        let stats = || store.group_commit_stats().expect("group commit is on by default");
        let before = stats();
        let results = run_batch(&store, stats, release, &requests).await;
        held.await.unwrap().expect("the first appends");
        assert_eq!(
            stats().bulk_batches,
            before.bulk_batches + 1,
            "written in bulk, not append by append: {:?}",
            stats()
        );

        let ok = |i: usize| {
            results[i]
                .as_ref()
                .unwrap_or_else(|e| panic!("append {i} failed: {e}"))
        };
        assert_eq!(store.get_events("thing", a).await.unwrap(), *ok(0));
        let stored = store.get_events("thing", seed.stored).await.unwrap();
        assert_eq!(stored.len(), 4);
        assert_eq!(stored[2..], ok(1)[..]);
        assert_eq!(store.get_events("thing", e).await.unwrap(), *ok(3));
        assert_eq!(store.get_events("thing", b).await.unwrap(), *ok(4));
        assert!(
            matches!(
                &results[2],
                Err(Error::Conflict {
                    expected: 4,
                    actual: 0,
                    ..
                })
            ),
            "{:?}",
            results[2]
        );
        assert!(store.get_events("thing", z).await.unwrap().is_empty());
        assert_eq!(
            ok(3)[0].position,
            ok(1)[1].position + 2,
            "the refused append's reserved position is skipped"
        );
        for (i, recorded) in [(0, true), (1, true), (2, false), (3, true)] {
            let found = store.get_command(command_id(&requests[i])).await.unwrap();
            assert_eq!(found.is_some(), recorded, "command of append {i}: {found:?}");
            if let Some(found) = found {
                assert_eq!(found.aggregate_id, requests[i].aggregate_id);
            }
        }
        store.close().await;
    }

    /// A command id carried by two appends of one batch: when the first is refused (its stream
    /// is behind), nothing recorded the id, so the second is written, as it would be alone.
    #[tokio::test]
    async fn a_command_id_whose_first_append_is_refused_is_written_by_the_next() {
        let Some(url) = pg::url().await else { return };
        let (schema, _guard) = fresh_schema(&url);
        let store = one_writer(&url, &schema).connect().await.unwrap();
        let (z, e) = (AggregateId::new(), AggregateId::new());
        let refused = with_command(testing::request("thing", z, 3, 1), None);
        let requests = vec![
            refused.clone(),
            with_command(testing::request("thing", e, 0, 1), Some(command_id(&refused))),
        ];
        let (held, release) = hold_writer(&store, &url, &schema).await;
        let stats = || store.group_commit_stats().expect("group commit is on by default");
        let results = run_batch(&store, stats, release, &requests).await;
        held.await.unwrap().expect("the first appends");
        assert!(
            matches!(
                &results[0],
                Err(Error::Conflict {
                    expected: 3,
                    actual: 0,
                    ..
                })
            ),
            "{:?}",
            results[0]
        );
        let written = results[1].as_ref().expect("the second carrier is written");
        assert_eq!(store.get_events("thing", e).await.unwrap(), *written);
        let record = store.get_command(command_id(&refused)).await.unwrap().unwrap();
        assert_eq!(record.aggregate_id, e);
        store.close().await;
    }

    /// Twelve random cases made by `case`, each on a fresh schema, checked against the same
    /// appends written one by one.
    async fn random_cases(url: &str, case: fn(u64) -> RandomCase) {
        for seed in 0..12 {
            let (schema, _guard) = fresh_schema(url);
            let store = one_writer(url, &schema).connect().await.unwrap();
            let stats = || store.group_commit_stats().expect("group commit is on by default");
            case(seed)
                .run(seed, &store, stats, hold_writer(&store, url, &schema))
                .await;
            store.close().await;
        }
    }

    /// Random batches written in bulk end exactly as the same appends written one by one.
    #[tokio::test]
    async fn random_bulk_batches_match_appends_written_one_by_one() {
        let Some(url) = pg::url().await else { return };
        random_cases(&url, RandomCase::new).await;
    }

    /// Random batches of appends on distinct streams (the checked statement) end exactly as the
    /// same appends written one by one.
    #[tokio::test]
    async fn random_batches_on_distinct_streams_match_appends_written_one_by_one() {
        let Some(url) = pg::url().await else { return };
        random_cases(&url, RandomCase::distinct_streams).await;
    }

    /// Start a transaction on another connection that writes version 1 of `aggregate` in
    /// `schema` and stays open: an append of that version waits for it.
    async fn uncommitted_version_1(url: &str, schema: &str, aggregate: AggregateId) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        conn.execute("BEGIN").await.unwrap();
        let event = testing::event("thing", aggregate, 1);
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".fluvius_events (position, id, namespace, resource, aggregate_id, \
             aggregate_version, key, schema_version, payload, args, metadata, command_id, command_name, \
             recorded_at) VALUES ((SELECT nextval('\"{schema}\".fluvius_events_position_seq')), $1, 'x', \
             'thing', $2, 1, 'k', 1, '{{}}', '{{}}', '{{}}', $3, 'c', now())"
        ))
        .bind(event.id)
        .bind(aggregate.as_uuid())
        .bind(event.command_id)
        .execute(&mut conn)
        .await
        .unwrap();
        conn
    }

    #[tokio::test]
    async fn a_unique_violation_in_a_bulk_batch_fails_only_its_append() {
        let Some(url) = pg::url().await else { return };
        let (schema, _guard) = fresh_schema(&url);
        let app = format!("bulk-{}", uuid::Uuid::new_v4().simple());
        let store = one_writer(&url, &schema)
            .application_name(&app)
            .connect()
            .await
            .unwrap();
        let stats = || store.group_commit_stats().expect("group commit is on by default");
        // The writer is stuck on a first append (its version 1 is being written by another
        // transaction) while the batch queues. The batch's reads do not see the uncommitted
        // version 1 of `x`, so it accepts `x`; its insert then waits for that transaction,
        // which commits: a unique violation, after which the batch is written append by
        // append, and only `x` fails.
        let (w, x, a, b) = (
            AggregateId::new(),
            AggregateId::new(),
            AggregateId::new(),
            AggregateId::new(),
        );
        let mut holds_w = uncommitted_version_1(&url, &schema, w).await;
        let mut holds_x = uncommitted_version_1(&url, &schema, x).await;
        let append_w = || {
            let store = store.clone();
            tokio::spawn(async move { store.append(testing::request("thing", w, 0, 1)).await })
        };
        // The first append of w is the only one in flight, written on its own task; the second
        // goes to the writer. Both wait for the transaction writing version 1 of w.
        let alone = append_w();
        wait_for(stats, |s| s.alone == 1).await;
        let first = append_w();
        wait_for(stats, |s| s.appends == 1).await;
        let release = async move {
            holds_w.execute("COMMIT").await.unwrap();
        };
        let requests = [
            testing::request("thing", a, 0, 1),
            testing::request("thing", x, 0, 2),
            testing::request("thing", b, 0, 1),
        ];
        let batch = {
            let store = store.clone();
            let requests = requests.clone();
            tokio::spawn(async move {
                let stats = || store.group_commit_stats().expect("group commit is on");
                run_batch(&store, stats, release, &requests).await
            })
        };
        assert!(
            matches!(alone.await.unwrap(), Err(Error::Conflict { actual: 1, .. })),
            "the lone append lost to the committed version 1 of w"
        );
        assert!(
            matches!(first.await.unwrap(), Err(Error::Conflict { actual: 1, .. })),
            "the first append lost to the committed version 1 of w"
        );
        // Wait until the batch's insert waits for the transaction writing x.
        let mut watcher = sqlx::PgConnection::connect(&url).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
            )
            .bind(&app)
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the batch never waited for x");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        holds_x.execute("COMMIT").await.unwrap();
        let results = batch.await.unwrap();
        let after = stats();
        assert_eq!(after.bulk_batches, 0, "the bulk write was given up: {after:?}");
        assert!(
            matches!(
                &results[1],
                Err(Error::Conflict {
                    expected: 0,
                    actual: 1,
                    ..
                })
            ),
            "{:?}",
            results[1]
        );
        for (i, id) in [(0, a), (2, b)] {
            let events = results[i]
                .as_ref()
                .unwrap_or_else(|e| panic!("append {i} failed: {e}"));
            assert_eq!(store.get_events("thing", id).await.unwrap(), *events);
        }
        let x_events = store.get_events("thing", x).await.unwrap();
        assert_eq!(x_events.len(), 1, "only the other transaction's version 1 of x");
        let _ = watcher.close().await;
        store.close().await;
    }

    #[test]
    #[ignore = "child process of acknowledged_appends_survive_a_kill; run that test instead"]
    fn child_appends_until_killed() {
        let arg = child_arg().expect("run by acknowledged_appends_survive_a_kill, not directly");
        let (url, schema) = arg.split_once('|').unwrap();
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let store = PostgresLogStore::builder(url)
                .schema(schema)
                .connect()
                .await
                .unwrap();
            append_forever(Arc::new(store)).await;
        });
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn acknowledged_appends_survive_a_kill() {
        let Some(url) = pg::url().await else { return };
        let schema = pg::schema_name();
        let _guard = pg::SchemaGuard {
            url: url.clone(),
            schema: schema.clone(),
        };
        let arg = format!("{url}|{schema}");
        let acked = tokio::task::spawn_blocking(move || {
            crash_while_appending("postgres::child_appends_until_killed", &arg)
        })
        .await
        .unwrap();
        let store = PostgresLogStore::builder(&url)
            .schema(&schema)
            .connect()
            .await
            .unwrap();
        check_after_crash(&store, &acked).await;
        store.close().await;
    }
}
