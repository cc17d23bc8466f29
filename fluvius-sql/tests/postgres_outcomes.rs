//! PostgreSQL: the outcome contract under a broken network. A command answered `Ok` is in the
//! log; one answered `outcome_unknown` is in the log at most once, and its resend with the same
//! command id answers `Ok` (replayed or fresh) and leaves it there exactly once; one answered
//! with any other error is not in the log. And no operation waits past its timeout on a
//! connection that stalls.
//!
//! Every connection of the stores under test goes through a TCP proxy (`common::pg::Proxy`)
//! that cuts every open connection, or stalls them, while commands are in flight. Needs
//! `FLUVIUS_TEST_PG_URL`, like `postgres.rs`.
#![cfg(feature = "postgres")]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluvius_core::{AggregateId, Command, Domain, LogStore};
use fluvius_sql::{GroupCommit, PostgresLogStore};
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use common::counter;
use common::pg::{self, Proxy, SchemaGuard};

const TASKS: usize = 12;
const AGGREGATES: usize = 40;
const COMMANDS_PER_TASK: usize = 100;

/// A store in `schema`, every connection through `proxy`.
async fn store_behind(
    proxy: &Proxy,
    url: &str,
    schema: &str,
    group_commit: GroupCommit,
    timeout: Duration,
) -> PostgresLogStore {
    fluvius_sql::PostgresOptions::from_connect_options(proxy.connect_options(url))
        .schema(schema)
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .operation_timeout(timeout)
        .group_commit(group_commit)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect through the proxy: {}", e.full_message()))
}

/// How many events each command id has in the log, read straight from the server.
async fn events_per_command(url: &str, schema: &str) -> HashMap<Uuid, i64> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
        .await
        .unwrap();
    let rows: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT command_id, count(*) FROM fluvius_events GROUP BY command_id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let _ = conn.close().await;
    rows.into_iter().collect()
}

fn add(aggregate_id: AggregateId, command_id: Uuid) -> Command {
    Command::new("counter", aggregate_id, "add", json!({ "by": 1 })).with_id(command_id)
}

/// What one command was answered: `None` for `Ok`, else the error's code and text.
type Answer = (Uuid, AggregateId, Option<(&'static str, String)>);

/// Every command sent by `TASKS` tasks at once, spread over `AGGREGATES` aggregates, with
/// what each was answered.
async fn send_all(domain: &Arc<Domain>, aggregates: &[AggregateId]) -> Vec<Answer> {
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let domain = domain.clone();
        let aggregates = aggregates.to_vec();
        tasks.spawn(async move {
            let mut answers = Vec::with_capacity(COMMANDS_PER_TASK);
            for i in 0..COMMANDS_PER_TASK {
                let aggregate_id = aggregates[(t * 7 + i * 3) % aggregates.len()];
                let command_id = Uuid::now_v7();
                let answer = match domain.process_command(add(aggregate_id, command_id)).await {
                    Ok(_) => None,
                    Err(e) => Some((e.code(), e.to_string())),
                };
                answers.push((command_id, aggregate_id, answer));
            }
            answers
        });
    }
    let mut all = Vec::new();
    while let Some(answers) = tasks.join_next().await {
        all.extend(answers.unwrap());
    }
    all
}

/// Check every answer against the log: `Ok` ⇒ stored once; `outcome_unknown` ⇒ the resend
/// with the same id answers `Ok` and the command is stored once; any other error ⇒ not stored.
/// Returns how many commands were answered each way.
async fn check_answers(
    domain: &Domain,
    url: &str,
    schema: &str,
    answers: &[Answer],
) -> HashMap<&'static str, usize> {
    let mut tally: HashMap<&'static str, usize> = HashMap::new();
    let mut resent = Vec::new();
    for (command_id, aggregate_id, answer) in answers {
        let code = answer.as_ref().map_or("ok", |(code, _)| *code);
        *tally.entry(code).or_default() += 1;
        if code == "outcome_unknown" {
            let resend = domain
                .process_command(add(*aggregate_id, *command_id))
                .await
                .unwrap_or_else(|e| panic!("the resend of {command_id} failed: {e}"));
            assert_eq!(resend.command_id, *command_id);
            resent.push(*command_id);
        }
    }
    let stored = events_per_command(url, schema).await;
    let mut falsely_failed = Vec::new();
    for (command_id, _, answer) in answers {
        let count = stored.get(command_id).copied().unwrap_or(0);
        match answer {
            None => assert_eq!(
                count, 1,
                "command {command_id} answered Ok is stored {count} times"
            ),
            Some(("outcome_unknown", _)) => {
                assert_eq!(
                    count, 1,
                    "command {command_id} resent after outcome_unknown is stored {count} times"
                )
            }
            Some((code, text)) => {
                if count != 0 {
                    falsely_failed.push(format!("{command_id}: {code}: {text}"));
                }
            }
        }
    }
    assert!(
        falsely_failed.is_empty(),
        "{} commands answered with an error are in the log:\n{}",
        falsely_failed.len(),
        falsely_failed.join("\n")
    );
    tally
}

/// 12 tasks on 40 aggregates while the proxy cuts every connection every 30–150 ms.
async fn commands_survive_cut_connections(group_commit: GroupCommit) {
    let Some(url) = pg::url().await else { return };
    let guard = SchemaGuard::fresh(&url);
    let proxy = Arc::new(Proxy::start(&url).await);
    let store = store_behind(&proxy, &url, &guard.schema, group_commit, Duration::from_secs(10)).await;
    let domain = Arc::new(counter::domain(store.clone()).await);
    let aggregates: Vec<AggregateId> = (0..AGGREGATES).map(|_| AggregateId::new()).collect();

    let cutting = Arc::new(AtomicBool::new(true));
    let cutter = {
        let (proxy, cutting) = (proxy.clone(), cutting.clone());
        tokio::spawn(async move {
            let mut cuts = 0u32;
            let mut next = 50u64;
            while cutting.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(next)).await;
                proxy.cut();
                cuts += 1;
                next = 30 + (next * 37 + 11) % 120;
            }
            cuts
        })
    };
    let answers = send_all(&domain, &aggregates).await;
    cutting.store(false, Ordering::Relaxed);
    let cuts = cutter.await.unwrap();

    let tally = check_answers(&domain, &url, &guard.schema, &answers).await;
    common::announce(&format!(
        "group commit {}: {} commands, {cuts} cuts, answers {tally:?}",
        if group_commit.is_on() { "on" } else { "off" },
        answers.len()
    ));
    assert!(cuts >= 3, "the proxy cut the connections only {cuts} times");
    // Every aggregate's state is its stored history: one `add` per stored command.
    let stored = events_per_command(&url, &guard.schema).await;
    let total: i64 = stored.values().sum();
    let mut folded = 0;
    for id in &aggregates {
        let events = domain.logstore().get_events("counter", *id).await.unwrap();
        folded += events.len() as i64;
    }
    assert_eq!(folded, total);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_never_report_a_stored_command_as_failed_with_group_commit() {
    commands_survive_cut_connections(GroupCommit::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_never_report_a_stored_command_as_failed_without_group_commit() {
    commands_survive_cut_connections(GroupCommit::off()).await;
}

/// The proxy stalls for longer than the operation timeout: every command in flight is answered
/// within a bound, with `timeout` or `outcome_unknown` (or `Ok`, had it finished first); after
/// the stall, the resends with the same ids answer `Ok` and nothing is stored twice.
async fn a_stall_is_bounded(group_commit: GroupCommit) {
    let Some(url) = pg::url().await else { return };
    let guard = SchemaGuard::fresh(&url);
    let proxy = Arc::new(Proxy::start(&url).await);
    let timeout = Duration::from_millis(800);
    let store = store_behind(&proxy, &url, &guard.schema, group_commit, timeout).await;
    let domain = Arc::new(counter::domain(store.clone()).await);
    let aggregates: Vec<AggregateId> = (0..TASKS).map(|_| AggregateId::new()).collect();
    // Warm up: every aggregate exists, the pool has connections.
    for id in &aggregates {
        domain.process_command(add(*id, Uuid::now_v7())).await.unwrap();
    }

    proxy.stall();
    let started = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for id in &aggregates {
        let (domain, id) = (domain.clone(), *id);
        in_flight.spawn(async move {
            let command_id = Uuid::now_v7();
            let answer = domain.process_command(add(id, command_id)).await;
            (
                command_id,
                id,
                answer.map(drop).map_err(|e| (e.code(), e.to_string())),
                started.elapsed(),
            )
        });
    }
    let mut answers = Vec::new();
    // Far more than the bound (a timeout for the command's store calls, then at most one more
    // for resolving a write), far less than the stall would last without the timeout.
    let all_answered = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(answer) = in_flight.join_next().await {
            answers.push(answer.unwrap());
        }
    })
    .await;
    proxy.resume();
    assert!(
        all_answered.is_ok(),
        "commands still waiting on the stalled connections"
    );
    let read = domain.logstore().get_events("counter", aggregates[0]).await;
    assert!(read.is_ok(), "after the stall: {read:?}");

    let mut checked = Vec::new();
    for (command_id, id, answer, _) in &answers {
        if let Err((code, text)) = answer {
            assert!(
                matches!(*code, "timeout" | "outcome_unknown"),
                "a command in flight during the stall answered {code}: {text}"
            );
        }
        checked.push((
            *command_id,
            *id,
            answer.clone().err().map(|_| ("outcome_unknown", String::new())),
        ));
    }
    assert!(
        answers.iter().any(|(_, _, answer, _)| answer.is_err()),
        "no command noticed the stall"
    );
    let mut tally: HashMap<&str, usize> = HashMap::new();
    for (_, _, answer, _) in &answers {
        *tally
            .entry(answer.as_ref().err().map_or("ok", |(code, _)| *code))
            .or_default() += 1;
    }
    common::announce(&format!(
        "stall, group commit {}: answers {tally:?}, the last after {:?}",
        if group_commit.is_on() { "on" } else { "off" },
        answers.iter().map(|a| a.3).max().unwrap_or_default()
    ));
    // Every command that did not answer Ok is resent with its id (a timeout means nothing was
    // written, so its resend is a first run; outcome_unknown may be either).
    check_answers(&domain, &url, &guard.schema, &checked).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_is_bounded_by_the_operation_timeout_with_group_commit() {
    a_stall_is_bounded(GroupCommit::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_is_bounded_by_the_operation_timeout_without_group_commit() {
    a_stall_is_bounded(GroupCommit::off()).await;
}
