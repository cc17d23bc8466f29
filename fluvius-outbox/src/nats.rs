//! The NATS JetStream outbox.

use std::sync::Arc;

use async_nats::jetstream;
use async_nats::HeaderMap;
use fluvius_core::{BoxFuture, Error, Event, LogStore, Projection, Result};

/// Publishes every event of the log to NATS JetStream, in log order, at least once.
///
/// Each event becomes one message on subject `{prefix}.{resource}.{key}` whose payload is
/// the event as JSON (the [`Event`] serde shape) and whose `Nats-Msg-Id` header is the event
/// id: within the stream's duplicate window, JetStream stores a re-published event once.
/// Headers `Fluvius-Position` and `Fluvius-Correlation-Id` carry the position and the
/// correlation id. The stream that captures `{prefix}.>` must exist.
///
/// Register it with [`DomainBuilder::projection`](fluvius_core::DomainBuilder::projection);
/// the log store must keep checkpoints ([`LogStore::checkpoints`]), where the outbox's
/// position lives.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn fluvius_core::LogStore>) -> Result<(), Box<dyn std::error::Error>> {
/// let client = async_nats::connect("127.0.0.1:4222").await?;
/// let outbox = fluvius_outbox::NatsOutbox::new("nats-outbox", async_nats::jetstream::new(client), "app", store.clone());
/// let domain = fluvius_core::Domain::builder().logstore_arc(store).projection(outbox).build().await?;
/// # Ok(()) }
/// ```
pub struct NatsOutbox {
    name: String,
    jetstream: jetstream::Context,
    prefix: String,
    store: Arc<dyn LogStore>,
}

impl NatsOutbox {
    /// An outbox named `name` (its checkpoint's name), publishing under `prefix`, keeping its
    /// position in `store`'s checkpoints.
    pub fn new(
        name: impl Into<String>,
        jetstream: jetstream::Context,
        prefix: impl Into<String>,
        store: Arc<dyn LogStore>,
    ) -> Self {
        Self {
            name: name.into(),
            jetstream,
            prefix: prefix.into(),
            store,
        }
    }

    /// The subject an event is published on.
    pub fn subject(&self, event: &Event) -> String {
        format!("{}.{}.{}", self.prefix, event.resource, event.key)
    }

    fn broker_error(&self, what: &str, err: impl std::fmt::Display) -> Error {
        Error::store("nats", format!("outbox `{}`: {what}: {err}", self.name), None)
    }

    fn checkpoints(&self) -> Result<&dyn fluvius_core::CheckpointStore> {
        self.store.checkpoints().ok_or_else(|| {
            Error::Config(format!(
                "outbox `{}`: the `{}` store keeps no checkpoints",
                self.name,
                self.store.backend()
            ))
        })
    }

    async fn publish_page(&self, from: u64, events: &[Event]) -> Result<()> {
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let payload =
                serde_json::to_vec(event).map_err(|e| self.broker_error("serialize an event", e))?;
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.to_string().as_str());
            headers.insert("Fluvius-Position", event.position.to_string().as_str());
            headers.insert(
                "Fluvius-Correlation-Id",
                event.metadata.correlation_id.to_string().as_str(),
            );
            let ack = self
                .jetstream
                .publish_with_headers(self.subject(event), headers, payload.into())
                .await
                .map_err(|e| self.broker_error("publish", e))?;
            acks.push(ack);
        }
        let mut duplicates = 0;
        for ack in acks {
            let ack = ack.await.map_err(|e| self.broker_error("acknowledgement", e))?;
            duplicates += usize::from(ack.duplicate);
        }
        if duplicates > 0 {
            tracing::debug!(outbox = %self.name, duplicates, "the broker dropped re-published events");
        }
        let to = events.last().map_or(from, |e| e.position);
        self.checkpoints()?.reset(&self.name, to).await
    }
}

impl Projection for NatsOutbox {
    fn name(&self) -> &str {
        &self.name
    }

    fn position(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move { Ok(self.checkpoints()?.checkpoint(&self.name).await?.unwrap_or(0)) })
    }

    fn apply<'a>(&'a self, from: u64, events: &'a [Event]) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.publish_page(from, events))
    }

    /// Republish from the start: set the position to 0 (the broker de-duplicates what is
    /// still within its duplicate window).
    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.checkpoints()?.reset(&self.name, 0).await })
    }
}
