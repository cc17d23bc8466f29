//! The machinery of group commit and batched stream reads, behind the public face
//! [`group_commit`](crate::group_commit): configuration, the queues and their draining tasks,
//! read batching, batch completion, and the verdicts of a bulk batch.

// Shared by both dialects; with one of them compiled out, some of it goes unused.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports)
)]

mod config;
mod finish;
mod queue;
mod reads;
mod verdicts;

pub use config::GroupCommit;
pub(crate) use finish::{batch_error, batch_refused, fail_batch, finish_batch, refuse_batch, BatchTx};
pub use queue::GroupCommitStats;
pub(crate) use queue::{Pending, Queue};
pub use reads::ReadBatchStats;
pub(crate) use reads::{answer_reads, fail_reads, read_keys, PendingRead, ReadQueue};
pub(crate) use verdicts::{bulk_keys, bulk_outcomes, bulk_results, decide, StreamKey};

type CoreResult<T> = fluvius_core::Result<T>;
