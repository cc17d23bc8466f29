//! The benchmark report: runs every workload once, in one process, and prints a table of
//! figures and ratios (ours vs. a baseline or a peer measured in the same run).
//!
//! `cargo bench -p fluvius-benches --bench report` (add `-- --quick` for a smaller run,
//! `-- --only memory|sqlite|rss|dispatch|postgres` for one section). PostgreSQL (its own
//! section, and the dispatch figures on it) runs when `FLUVIUS_TEST_PG_URL` is set, and prints a
//! note otherwise.
//!
//! The SQLite section ends in two summaries of one-at-a-time commands (concurrency 1): against
//! the disk's sync rate (a 4 KiB write + fdatasync, [`sql::syncs_per_second`]), and against the
//! same commit in raw sqlx ([`sql::floor`]: the command record and the event of one create,
//! `BEGIN IMMEDIATE`, two prepared `INSERT`s, `COMMIT`, on one connection of a store opened
//! like the others), the floor for what Fluvius can reach on SQLite and sqlx. The floor rows
//! take turns in rounds and report medians (the machine is noisy), each contender on its own
//! store: raw sqlx, raw sqlx with both `INSERT`s as one query (the statement shape Fluvius
//! sends), and `process_command` with caller-chosen and domain-assigned ids, group commit on
//! and off. The raw commit is also set against the sync rate, which says what SQLite itself
//! costs on top of the sync (it writes a frame per changed page to the write-ahead log and
//! syncs it with `fsync`).
//!
//! The PostgreSQL section ends with the same server behind a proxy that delays every byte by
//! 0.5–1.5 ms each way ([`delay::DelayProxy`]): creates at concurrency 1 and 64, group commit
//! off and on, as if the database ran on another machine (what group commit is for: a commit
//! then costs round trips, which concurrent commands share).
//!
//! Two sections run in child processes of the report (the same binary, `--child …`), which
//! hand their figures back on stderr: the in-memory comparison, with stdout on `/dev/null`
//! (cqrs-es's `MemStore` prints two lines per command), and the peak RSS, which needs a fresh
//! high-water mark.

#![allow(missing_docs)]

mod delay;
mod dispatch;
mod peers;
mod rss;
mod sql;

use std::hint::black_box;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fluvius_benches::{BenchUser, UserCreated, UserRenamed};
use fluvius_core::{AggregateId, MemoryLogStore};

struct Row {
    section: &'static str,
    name: String,
    value: String,
    ratio: String,
}

#[derive(Clone, Copy)]
struct Workload {
    aggregates: usize,
    renames: usize,
}

impl Workload {
    fn commands(&self) -> usize {
        self.aggregates * (1 + self.renames)
    }
}

/// The prefix of the line a child process reports its figures on (stderr).
const CHILD_REPORT: &str = "CHILD-REPORT ";

/// The `key=value` figures a child process reported.
struct ChildReport(Vec<(String, f64)>);

impl ChildReport {
    fn get(&self, key: &str) -> f64 {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or(f64::NAN, |(_, v)| *v)
    }
}

/// Run this report binary again as `--child <args…>`, with stdout on `/dev/null`, and read
/// the figures it reports on stderr (see [`report_to_parent`]).
fn run_child(args: &[&str]) -> Result<ChildReport, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the report's path: {e}"))?;
    let output = std::process::Command::new(exe)
        .arg("--child")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run the child: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(CHILD_REPORT))
        .ok_or_else(|| format!("{}: {}", output.status, stderr.trim()))?;
    Ok(ChildReport(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect(),
    ))
}

/// In a child process: hand `fields` to the parent (on stderr: stdout is `/dev/null`).
fn report_to_parent(fields: &[(&str, f64)]) {
    let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("{CHILD_REPORT}{}", fields.join(" "));
}

fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn baseline(w: Workload) -> Duration {
    let start = Instant::now();
    let mut log: Vec<String> = Vec::with_capacity(w.commands());
    for a in 0..w.aggregates {
        let created = UserCreated {
            name: format!("user {a}"),
            email: format!("u{a}@example.org"),
        };
        log.push(serde_json::to_string(&created).expect("serialize"));
        for r in 0..w.renames {
            let renamed = UserRenamed {
                name: format!("user {a} v{r}"),
            };
            log.push(serde_json::to_string(&renamed).expect("serialize"));
        }
    }
    black_box(&log);
    start.elapsed()
}

async fn fluvius_memory(w: Workload) -> Duration {
    let domain = fluvius_benches::domain(MemoryLogStore::new()).await;
    let start = Instant::now();
    for a in 0..w.aggregates {
        let id = AggregateId::new();
        domain
            .process_command(BenchUser::create_command(
                id,
                format!("user {a}"),
                format!("u{a}@example.org"),
            ))
            .await
            .expect("create");
        for r in 0..w.renames {
            domain
                .process_command(BenchUser::rename_command(id, format!("user {a} v{r}")))
                .await
                .expect("rename");
        }
    }
    start.elapsed()
}

async fn cqrs_es_memory(w: Workload) -> Duration {
    use peers::{CqCommand, CqUser};
    let cqrs = cqrs_es::CqrsFramework::new(cqrs_es::mem_store::MemStore::<CqUser>::default(), vec![], ());
    let start = Instant::now();
    for a in 0..w.aggregates {
        let id = AggregateId::new().to_string();
        cqrs.execute(
            &id,
            CqCommand::Create {
                name: format!("user {a}"),
                email: format!("u{a}@example.org"),
            },
        )
        .await
        .expect("create");
        for r in 0..w.renames {
            cqrs.execute(
                &id,
                CqCommand::Rename {
                    name: format!("user {a} v{r}"),
                },
            )
            .await
            .expect("rename");
        }
    }
    start.elapsed()
}

/// The two lines cqrs-es's `MemStore` prints per command (`loading: …` in `load_events`,
/// `storing: …` in `commit`), alone: what they cost even with stdout on `/dev/null`.
fn cqrs_es_prints(w: Workload) -> Duration {
    let start = Instant::now();
    for _ in 0..w.aggregates {
        let id = AggregateId::new().to_string();
        for version in 0..=w.renames {
            println!("loading: {} events for aggregate ID '{}'", version, &id);
            println!("storing: {} new events for aggregate ID '{}'", 1, &id);
        }
    }
    start.elapsed()
}

/// In a child process with stdout on `/dev/null`: the baseline, Fluvius and cqrs-es on the same
/// workload, the best of `runs` each (the least disturbed run on a noisy machine). The
/// contenders take turns, one run each per round, so a noisy stretch of the machine (or a
/// warming heap) touches them alike instead of one contender's whole series.
async fn in_memory_child(aggregates: usize, runs: usize) {
    let w = Workload {
        aggregates,
        renames: 3,
    };
    let [mut base, mut ours, mut peer, mut prints] = [Duration::MAX; 4];
    for _ in 0..runs {
        base = base.min(baseline(w));
        ours = ours.min(fluvius_memory(w).await);
        peer = peer.min(cqrs_es_memory(w).await);
        prints = prints.min(cqrs_es_prints(w));
    }
    let n = w.commands();
    report_to_parent(&[
        ("commands", n as f64),
        ("baseline", ns_per(base, n)),
        ("fluvius", ns_per(ours, n)),
        ("cqrs_es", ns_per(peer, n)),
        ("prints", ns_per(prints, n)),
    ]);
}

fn in_memory(rows: &mut Vec<Row>, quick: bool) {
    let aggregates = if quick { 1_000 } else { 5_000 };
    let runs = if quick { 4 } else { 20 };
    let section =
        "in-memory process_command (create + 3 renames per aggregate; child process, stdout on /dev/null)";
    let r = match run_child(&["memory", &aggregates.to_string(), &runs.to_string()]) {
        Ok(r) => r,
        Err(e) => {
            rows.push(Row {
                section,
                name: "in-memory comparison".into(),
                value: format!("child failed: {e}"),
                ratio: String::new(),
            });
            return;
        }
    };
    let (b, o, p, prints) = (
        r.get("baseline"),
        r.get("fluvius"),
        r.get("cqrs_es"),
        r.get("prints"),
    );
    rows.push(Row {
        section,
        name: format!(
            "baseline: serialize payload + push ({} cmds, best of {runs})",
            r.get("commands")
        ),
        value: format!("{b:.0} ns/cmd"),
        ratio: "1.00x".into(),
    });
    rows.push(Row {
        section,
        name: "fluvius MemoryLogStore".into(),
        value: format!("{o:.0} ns/cmd ({:.0} cmds/s)", 1e9 / o),
        ratio: format!("{:.2}x baseline", o / b),
    });
    rows.push(Row {
        section,
        name: "cqrs-es 0.5 MemStore".into(),
        value: format!("{p:.0} ns/cmd ({:.0} cmds/s)", 1e9 / p),
        ratio: format!("{:.2}x baseline; fluvius is {:.2}x its speed", p / b, p / o),
    });
    rows.push(Row {
        section,
        name: "of which cqrs-es's two println! per command, to /dev/null (measured alone)".into(),
        value: format!("{prints:.0} ns/cmd"),
        ratio: format!(
            "{:.0}% of cqrs-es's time; estimate without them: fluvius is {:.2}x its speed",
            100.0 * prints / p,
            (p - prints) / o
        ),
    });
}

fn print(rows: &[Row]) {
    let mut section = "";
    for row in rows {
        if row.section != section {
            section = row.section;
            println!("\n### {section}\n");
            println!("| measurement | value | ratio |");
            println!("|---|---|---|");
        }
        println!("| {} | {} | {} |", row.name, row.value, row.ratio);
    }
}

/// Run the child process named by `args` (after `--child`).
fn child(args: &[String]) {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let number = |i: usize| -> usize { arg(i).parse().expect("a number") };
    match arg(0) {
        "memory" => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(in_memory_child(number(1), number(2))),
        "rss" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(rss::child(arg(1), number(2), arg(3))),
        other => panic!("unknown child process `{other}`"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1..]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let run = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let sizes = sql::Sizes {
        commands: if quick { 400 } else { 2_000 },
        append_events: if quick { 2_000 } else { 10_000 },
    };
    let dispatch_memory = dispatch::Sizes {
        catch_up: if quick { 20_000 } else { 200_000 },
        sequential: if quick { 200 } else { 1_000 },
        concurrent: if quick { 2_000 } else { 50_000 },
    };
    let dispatch_sql = dispatch::Sizes {
        catch_up: if quick { 10_000 } else { 50_000 },
        sequential: if quick { 100 } else { 500 },
        concurrent: if quick { 400 } else { 2_000 },
    };
    let mut notes = Vec::new();
    let mut summary = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    if (run("postgres") || run("dispatch")) && sql::PostgresSchemas::from_env(true).is_none() {
        notes.push(
            "PostgreSQL NOT RUN: set FLUVIUS_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test)"
                .to_owned(),
        );
    }
    runtime.block_on(async {
        if run("memory") {
            in_memory(&mut rows, quick);
        }
        if run("sqlite") {
            let off_files = sql::SqliteFiles::new(false);
            notes.push(format!("SQLite files in {}", off_files.dir().display()));
            let off = sql::measure(&mut rows, &off_files, sizes).await;
            let files = sql::SqliteFiles::new(true);
            let on = sql::measure(&mut rows, &files, sizes).await;
            let syncs = sql::syncs_per_second(files.dir(), if quick { 200 } else { 1_000 });
            let (rounds, per_round) = if quick { (6, 50) } else { (20, 100) };
            let mut floor = Vec::new();
            let raw = sql::floor(&mut floor, &files, &off_files, rounds, per_round).await;
            sql::summary(&mut summary, "SQLite FULL", off, on);
            sql::sync_bound(&mut summary, "SQLite FULL, group commit on", syncs, on.conc1);
            sql::sync_bound(&mut summary, "SQLite FULL, raw sqlx commit", syncs, raw);
            summary.append(&mut floor);
        }
        if run("rss") {
            let files = sql::SqliteFiles::new(true);
            rss::measure(&mut rows, &files, if quick { 100_000 } else { 1_000_000 }).await;
        }
        if run("dispatch") {
            dispatch::measure(&mut rows, &dispatch::Memory, dispatch_memory).await;
            dispatch::measure(&mut rows, &sql::SqliteFiles::new(true), dispatch_sql).await;
            if let Some(pg) = sql::PostgresSchemas::from_env(true) {
                dispatch::measure(&mut rows, &pg, dispatch_sql).await;
                pg.cleanup().await;
            }
        }
        if run("postgres") {
            if let (Some(off_pg), Some(on_pg)) = (
                sql::PostgresSchemas::from_env(false),
                sql::PostgresSchemas::from_env(true),
            ) {
                let off = sql::measure(&mut rows, &off_pg, sizes).await;
                off_pg.cleanup().await;
                let on = sql::measure(&mut rows, &on_pg, sizes).await;
                on_pg.cleanup().await;
                sql::summary(&mut summary, "PostgreSQL", off, on);
                sql::over_network(
                    &mut rows,
                    &mut summary,
                    Duration::from_micros(500),
                    sizes.commands,
                )
                .await;
            }
        }
    });
    println!(
        "# Fluvius benchmark report ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for note in &notes {
        println!("\n> {note}");
    }
    print(&rows);
    print(&summary);
}
