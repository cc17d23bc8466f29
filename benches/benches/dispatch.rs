//! Handler dispatch in the benchmark report: a no-op `"*"` handler registered on a `Domain`
//! (`DomainBuilder::handler`, default `DispatchOptions`), fed from the log by the dispatcher.
//!
//! For each store:
//! - *catch-up*: N events appended beforehand (batches of 100, timed: the append baseline),
//!   read once with `read_all` in pages of the dispatcher's size (timed: the read baseline),
//!   then a domain is built with the handler and timed from `build` until `wait_idle` returns,
//!   i.e. until the handler's checkpoint has reached the head from position 0;
//! - *live, one command at a time*: create commands processed one after another, each waiting
//!   for the handler to see its event: the lag from `process_command` returning to the
//!   handler running, and from the event's timestamp (taken before the append) to the handler;
//! - *live, under load*: 16 tasks process create commands while the handler follows: the
//!   writers' commands/s, the handler's events/s over the same window (until `wait_idle`), the
//!   lag from event timestamp to handler, and the writers' rate without the handler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluvius_benches::BenchUser;
use fluvius_core::{AggregateId, BoxFuture, Domain, Event, LogStore, MemoryLogStore};
use tokio::sync::mpsc;

use super::sql::{distinct, ms, percentile, read_through, Opener};
use super::Row;

/// The dispatcher's default page size (`DispatchOptions::default()`), used for the read
/// baseline so both read the log the same way.
const PAGE: usize = 256;
/// Events per append while filling the log for the catch-up.
const BATCH: usize = 100;
/// Writers in the concurrent measurement.
const WRITERS: usize = 16;
const HANDLER: &str = "bench-noop";
/// Runs of the measurement under load, without and with the handler (the best of each).
const ROUNDS: usize = 3;

/// Sizes of the dispatch measurements for one store.
#[derive(Clone, Copy)]
pub struct Sizes {
    /// Events appended before the catch-up.
    pub catch_up: usize,
    /// Commands processed one at a time for the lag.
    pub sequential: usize,
    /// Commands processed by the concurrent writers.
    pub concurrent: usize,
}

/// A fresh `MemoryLogStore` per measurement.
pub struct Memory;

impl Opener for Memory {
    fn label(&self) -> String {
        "in-memory (MemoryLogStore)".into()
    }
    fn open(&self) -> BoxFuture<'_, Arc<dyn LogStore>> {
        Box::pin(async { Arc::new(MemoryLogStore::new()) as Arc<dyn LogStore> })
    }
}

/// What the handler saw of one event: when it ran, and how long after the event's timestamp.
struct Seen {
    position: u64,
    at: Instant,
    since_timestamp: Duration,
}

/// A domain over `store` with the benchmark aggregate and one `"*"` handler that only reports
/// what it saw (when `seen` is given) and counts.
async fn domain_with_handler(
    store: Arc<dyn LogStore>,
    count: Arc<AtomicU64>,
    seen: Option<mpsc::UnboundedSender<Seen>>,
) -> Domain {
    Domain::builder()
        .aggregate::<BenchUser>()
        .logstore_arc(store)
        .without_global_handlers()
        .handler(HANDLER, "*", move |event: Arc<Event>| {
            let count = count.clone();
            let seen = seen.clone();
            async move {
                let at = Instant::now();
                count.fetch_add(1, Ordering::Relaxed);
                if let Some(seen) = seen {
                    let since_timestamp = (chrono::Utc::now() - event.timestamp)
                        .to_std()
                        .unwrap_or(Duration::ZERO);
                    let _ = seen.send(Seen {
                        position: event.position,
                        at,
                        since_timestamp,
                    });
                }
                Ok(())
            }
        })
        .build()
        .await
        .expect("benchmark domain with a handler")
}

fn per_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Milliseconds, or microseconds below 0.1 ms (the in-memory lags).
fn short(d: Duration) -> String {
    if d < Duration::from_micros(100) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        ms(d)
    }
}

/// Sort `d` and describe its median and 99th percentile.
fn p50_p99(d: &mut [Duration]) -> String {
    d.sort_unstable();
    format!(
        "p50 {} p99 {}",
        short(percentile(d, 0.50)),
        short(percentile(d, 0.99))
    )
}

/// Every dispatch measurement for one store kind.
pub async fn measure(rows: &mut Vec<Row>, opener: &dyn Opener, sizes: Sizes) {
    let section: &'static str = Box::leak(format!("dispatch: {}", opener.label()).into_boxed_str());
    catch_up(rows, section, opener, sizes.catch_up).await;
    one_at_a_time(rows, section, opener, sizes.sequential).await;
    under_load(rows, section, opener, sizes.concurrent).await;
}

async fn catch_up(rows: &mut Vec<Row>, section: &'static str, opener: &dyn Opener, events: usize) {
    let store = opener.open().await;
    let requests: Vec<_> = (0..events)
        .step_by(BATCH)
        .map(|first| {
            let n = (events - first).min(BATCH) as u64;
            fluvius_core::testing::request("bench", AggregateId::new(), 0, n)
        })
        .collect();
    let start = Instant::now();
    for request in requests {
        store.append(request).await.expect("append");
    }
    let append = per_s(events, start.elapsed());

    let start = Instant::now();
    let (read, head) = read_through(&*store, PAGE, |_| {}).await;
    let read_all = per_s(events, start.elapsed());
    assert_eq!(read, events, "read_all returns every appended event");

    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let domain = domain_with_handler(store.clone(), count.clone(), None).await;
    domain.wait_idle().await;
    let elapsed = start.elapsed();
    let handled = count.load(Ordering::Relaxed);
    assert_eq!(handled, events as u64, "the handler saw every event once");
    let checkpoint = domain.handler_checkpoint(HANDLER).await.expect("checkpoint");
    assert_eq!(checkpoint, Some(head), "the checkpoint reached the head");
    let dispatch = per_s(events, elapsed);

    rows.push(Row {
        section,
        name: format!("append baseline: LogStore::append, batches of {BATCH}, sequential ({events} events)"),
        value: format!("{append:.0} events/s"),
        ratio: "1.00x".into(),
    });
    rows.push(Row {
        section,
        name: format!("read baseline: read_all, pages of {PAGE} (same events)"),
        value: format!("{read_all:.0} events/s"),
        ratio: format!("{:.2}x append", read_all / append),
    });
    rows.push(Row {
        section,
        name: format!("catch-up: no-op \"*\" handler, position 0 → head ({events} events)"),
        value: format!("{dispatch:.0} events/s ({:.2} s)", elapsed.as_secs_f64()),
        ratio: format!(
            "{:.2}x append; {:.2}x read_all",
            dispatch / append,
            dispatch / read_all
        ),
    });
}

async fn one_at_a_time(rows: &mut Vec<Row>, section: &'static str, opener: &dyn Opener, commands: usize) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let domain = domain_with_handler(opener.open().await, Arc::new(AtomicU64::new(0)), Some(tx)).await;
    let mut command_latency = Vec::with_capacity(commands);
    let mut after_return = Vec::with_capacity(commands);
    let mut after_timestamp = Vec::with_capacity(commands);
    let mut before_return = 0;
    // A few commands first, so the handler's task is running and its checkpoint claimed.
    let warm_up = 5;
    for i in 0..warm_up + commands {
        let start = Instant::now();
        let response = domain
            .process_command(fluvius_benches::create_fresh())
            .await
            .expect("create");
        let returned = Instant::now();
        let position = response.events.last().expect("one event").position;
        let seen = loop {
            let seen = rx.recv().await.expect("the handler is running");
            if seen.position == position {
                break seen;
            }
        };
        if i < warm_up {
            continue;
        }
        command_latency.push(returned - start);
        if seen.at < returned {
            before_return += 1;
        }
        after_return.push(seen.at.saturating_duration_since(returned));
        after_timestamp.push(seen.since_timestamp);
    }
    let command = p50_p99(&mut command_latency);
    let lag = p50_p99(&mut after_return);
    rows.push(Row {
        section,
        name: format!("one command at a time ({commands} creates): process_command latency"),
        value: command,
        ratio: String::new(),
    });
    rows.push(Row {
        section,
        name: "one command at a time: process_command returned → handler ran".into(),
        value: format!(
            "{lag}; the handler ran before the return for {before_return} of {commands} (counted as 0)"
        ),
        ratio: format!(
            "p50 = {:.2}x the command's p50 latency",
            percentile(&after_return, 0.50).as_secs_f64() / percentile(&command_latency, 0.50).as_secs_f64()
        ),
    });
    rows.push(Row {
        section,
        name: "one command at a time: event timestamp (before the append) → handler ran".into(),
        value: p50_p99(&mut after_timestamp),
        ratio: String::new(),
    });
}

/// One run of the writers with the handler following.
struct Followed {
    writers: f64,
    handler: f64,
    tail: Duration,
    lags: Vec<Duration>,
}

async fn followed(opener: &dyn Opener, commands: usize) -> Followed {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicU64::new(0));
    let domain = Arc::new(domain_with_handler(opener.open().await, count.clone(), Some(tx)).await);
    let start = Instant::now();
    let (writers_elapsed, done) =
        distinct(domain.clone(), WRITERS, commands, fluvius_benches::create_fresh).await;
    let writers_done = start.elapsed();
    domain.wait_idle().await;
    let idle = start.elapsed();
    let handled = count.load(Ordering::Relaxed) as usize;
    assert_eq!(handled, done.len(), "the handler saw every event once");
    let mut lags = Vec::with_capacity(handled);
    while let Ok(seen) = rx.try_recv() {
        lags.push(seen.since_timestamp);
    }
    Followed {
        writers: per_s(done.len(), writers_elapsed),
        handler: per_s(handled, idle),
        tail: idle.saturating_sub(writers_done),
        lags,
    }
}

async fn under_load(rows: &mut Vec<Row>, section: &'static str, opener: &dyn Opener, commands: usize) {
    // The best of `ROUNDS` consecutive runs without the handler, then with it. Consecutive,
    // not interleaved: a run that follows the other kind's (larger or smaller) freed heap
    // pays page faults the other did not, which alone moved the in-memory ratio 2x.
    let mut without = 0.0f64;
    for _ in 0..ROUNDS {
        let domain = Arc::new(fluvius_benches::domain(opener.open().await).await);
        let (elapsed, done) = distinct(domain, WRITERS, commands, fluvius_benches::create_fresh).await;
        without = without.max(per_s(done.len(), elapsed));
    }
    let mut best: Option<Followed> = None;
    for _ in 0..ROUNDS {
        let round = followed(opener, commands).await;
        if best.as_ref().is_none_or(|b| round.writers > b.writers) {
            best = Some(round);
        }
    }
    let Followed {
        writers,
        handler,
        tail,
        mut lags,
    } = best.expect("at least one round");
    rows.push(Row {
        section,
        name: format!(
            "under load: {WRITERS} tasks × create ({commands} commands) while the handler follows (best of {ROUNDS})"
        ),
        value: format!(
            "writers {writers:.0} cmds/s; handler {handler:.0} events/s until idle ({} after the last command)",
            short(tail)
        ),
        ratio: format!("handler {:.2}x writers", handler / writers),
    });
    rows.push(Row {
        section,
        name: "under load: event timestamp → handler ran (same run)".into(),
        value: p50_p99(&mut lags),
        ratio: String::new(),
    });
    rows.push(Row {
        section,
        name: format!("under load: the same writers, domain without the handler (best of {ROUNDS})"),
        value: format!("{without:.0} cmds/s"),
        ratio: format!("with the handler: {:.2}x", writers / without),
    });
}
