//! The checkpoint conformance cases, run against `MemoryLogStore`
//! (`cargo test -p fluvius-core --features testing`).
#![cfg(feature = "testing")]

fluvius_core::checkpoint_conformance_tests!(|| async { fluvius_core::MemoryLogStore::new() });
