//! Sagas (process managers): handlers that react to events by issuing commands.
//!
//! Register one with [`DomainBuilder::saga`](crate::DomainBuilder::saga): it is an ordinary
//! log-fed handler (checkpoint, retries, parking, one instance at a time) that also receives
//! the [`Domain`](crate::Domain), so it can call `process_command`. Build each command with
//! [`Command::caused_by`]: it carries the event's correlation id, takes the event's id as its
//! causation id, and gets a command id derived from the event and the step, so a redelivered
//! event (at-least-once) replays the first result instead of acting twice.

use crate::command::Command;
use crate::event::Event;

/// FNV-1a, 64 bits: a stable hash of the step name (std's hasher is not stable across builds).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Command {
    /// Make this command a consequence of `event`, as step `step` of a saga: same correlation
    /// id and user / tenant as the event, the event's id as causation id, and a command id
    /// derived from (event id, step) — the same event and step always give the same command id,
    /// so redelivery is idempotent.
    ///
    /// ```
    /// use fluvius_core::{AggregateId, Command, Event};
    /// use serde_json::json;
    /// let event = Event::example();
    /// let cmd = Command::new("inventory", AggregateId::new(), "reserve", json!({}))
    ///     .caused_by(&event, "reserve-inventory");
    /// assert_eq!(cmd.context.correlation_id, Some(event.metadata.correlation_id));
    /// assert_eq!(cmd.context.causation_id, Some(event.id));
    /// let again = Command::new("inventory", AggregateId::new(), "reserve", json!({}))
    ///     .caused_by(&event, "reserve-inventory");
    /// assert_eq!(cmd.id, again.id);
    /// ```
    pub fn caused_by(mut self, event: &Event, step: &str) -> Self {
        let mixed =
            event.id.as_u128() ^ (u128::from(fnv1a(step)) << 64 | u128::from(fnv1a(step).rotate_left(29)));
        // Keep the RFC 4122 variant and mark the id as version 8 (custom).
        let bytes = mixed.to_be_bytes();
        self.id = uuid::Builder::from_custom_bytes(bytes).into_uuid();
        self.context.correlation_id = Some(event.metadata.correlation_id);
        self.context.causation_id = Some(event.id);
        if self.context.user_id.is_none() {
            self.context.user_id = event.metadata.user_id.clone();
        }
        if self.context.tenant_id.is_none() {
            self.context.tenant_id = event.metadata.tenant_id.clone();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_events_give_distinct_ids() {
        let (a, b) = (Event::example(), Event::example());
        let id = |e: &Event, step: &str| {
            Command::new("x", crate::AggregateId::new(), "y", serde_json::json!({}))
                .caused_by(e, step)
                .id
        };
        assert_eq!(id(&a, "one"), id(&a, "one"));
        assert_ne!(id(&a, "one"), id(&a, "two"));
        assert_ne!(id(&a, "one"), id(&b, "one"));
        assert_eq!(id(&a, "one").get_version_num(), 8);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
