//! The in-memory stores, for tests, examples and single-process tools: [`MemoryLogStore`]
//! (the log, with its checkpoints) and [`MemoryCheckpointStore`] (checkpoints and dead letters
//! alone; the dispatcher's fallback for a store without checkpoints). Nothing survives the
//! process.

mod checkpoint;
mod log;

pub use checkpoint::MemoryCheckpointStore;
pub use log::MemoryLogStore;
