//! Criterion: one in-memory `process_command` (create on a fresh aggregate) against the
//! serialize-and-push floor.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use fluvius_benches::{BenchUser, UserCreated};
use fluvius_core::{AggregateId, MemoryLogStore};

fn commands(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let domain = rt.block_on(fluvius_benches::domain(MemoryLogStore::new()));
    let mut group = c.benchmark_group("create");
    group.bench_function("baseline_serialize_push", |b| {
        let mut log = Vec::new();
        b.iter(|| {
            let e = UserCreated {
                name: "Ann".into(),
                email: "ann@example.org".into(),
            };
            log.push(serde_json::to_string(&e).expect("serialize"));
        })
    });
    group.bench_function("fluvius_memory", |b| {
        b.to_async(&rt).iter(|| async {
            domain
                .process_command(BenchUser::create_command(
                    AggregateId::new(),
                    "Ann".into(),
                    "ann@example.org".into(),
                ))
                .await
                .expect("create")
        })
    });
    group.finish();
}

criterion_group!(benches, commands);
criterion_main!(benches);
