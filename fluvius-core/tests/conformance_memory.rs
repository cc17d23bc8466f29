//! The log store conformance suite, run against `MemoryLogStore`
//! (`cargo test -p fluvius-core --features testing`).
#![cfg(feature = "testing")]

fluvius_core::conformance_tests!(|| async { fluvius_core::MemoryLogStore::new() });
