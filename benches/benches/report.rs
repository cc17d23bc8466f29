//! The benchmark report: runs every workload once, in one process, and prints a table of
//! figures and ratios (ours vs. a baseline or a peer measured in the same run).
//!
//! `cargo bench -p fluvius-benches --bench report` (add `-- --quick` for a smaller run,
//! `-- --only memory|sqlite|postgres|rss` for one section). The PostgreSQL section runs when
//! `FLUVIUS_TEST_PG_URL` is set, and prints a note otherwise.

#![allow(missing_docs)]

mod peers;
mod sql;

use std::hint::black_box;
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

/// Best of `runs` timings of `f` (the least disturbed run on a noisy machine).
async fn best_of<F, Fut>(runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut best = Duration::MAX;
    for _ in 0..runs {
        best = best.min(f().await);
    }
    best
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

async fn in_memory(rows: &mut Vec<Row>, quick: bool) {
    let w = Workload {
        aggregates: if quick { 1_000 } else { 5_000 },
        renames: 3,
    };
    let n = w.commands();
    let runs = if quick { 2 } else { 5 };
    let base = best_of(runs, || async { baseline(w) }).await;
    let ours = best_of(runs, || fluvius_memory(w)).await;
    let peer = best_of(runs, || cqrs_es_memory(w)).await;
    let section = "in-memory process_command (create + 3 renames per aggregate)";
    let b = ns_per(base, n);
    let o = ns_per(ours, n);
    let p = ns_per(peer, n);
    rows.push(Row {
        section,
        name: format!("baseline: serialize payload + push ({n} cmds)"),
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss-child") {
        let total = args[i + 2].parse().expect("--rss-child <url> <events>");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(sql::rss_child(&args[i + 1], total));
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
    let mut notes = Vec::new();
    let mut summary = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    runtime.block_on(async {
        if run("memory") {
            in_memory(&mut rows, quick).await;
        }
        if run("sqlite") {
            let off = sql::SqliteFiles::new(false);
            notes.push(format!("SQLite files in {}", off.dir().display()));
            let off = sql::measure(&mut rows, &off, sizes).await;
            let on = sql::measure(&mut rows, &sql::SqliteFiles::new(true), sizes).await;
            sql::summary(&mut summary, "SQLite FULL", off, on);
        }
        if run("rss") {
            let files = sql::SqliteFiles::new(true);
            sql::rss(&mut rows, &files, if quick { 100_000 } else { 1_000_000 }).await;
        }
        if run("postgres") {
            match (sql::PostgresSchemas::from_env(false), sql::PostgresSchemas::from_env(true)) {
                (Some(off_pg), Some(on_pg)) => {
                    let off = sql::measure(&mut rows, &off_pg, sizes).await;
                    off_pg.cleanup().await;
                    let on = sql::measure(&mut rows, &on_pg, sizes).await;
                    on_pg.cleanup().await;
                    sql::summary(&mut summary, "PostgreSQL", off, on);
                }
                _ => notes.push(
                    "PostgreSQL NOT RUN: set FLUVIUS_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test)"
                        .into(),
                ),
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
