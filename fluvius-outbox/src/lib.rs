//! # fluvius-outbox — forward the event log to a broker
//!
//! An outbox publisher is a [`Projection`](fluvius_core::Projection): the dispatcher feeds it
//! the global log in pages from its position, follows the log live, and runs it in one app
//! instance at a time. Its position is the checkpoint named after it in the log store (so a
//! restart resumes where the last acknowledged page ended).
//!
//! Delivery is **at least once**: a page is published, every acknowledgement awaited, and only
//! then does the position move; a crash in between publishes the page again. The broker
//! removes those duplicates: each message carries the event id as its de-duplication id.
//!
//! | feature | default | what it enables |
//! |---------|---------|-----------------|
//! | `nats`  | no      | [`NatsOutbox`]: NATS JetStream, `Nats-Msg-Id` = event id |

#[cfg(feature = "nats")]
mod nats;

#[cfg(feature = "nats")]
pub use nats::NatsOutbox;
