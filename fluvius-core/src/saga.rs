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

impl Command {
    /// Make this command a consequence of `event`, as step `step` of a saga: same correlation
    /// id and user / tenant as the event, the event's id as causation id, and a command id
    /// derived from (event id, step) — the same event and step always give the same command id,
    /// so redelivery is idempotent. The id is the name-based UUID (version 5, RFC 9562) of the
    /// step in the event id's namespace.
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
        self.id = uuid::Uuid::new_v5(&event.id, step.as_bytes());
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
        assert_eq!(id(&a, "one").get_version_num(), 5);
    }

    #[test]
    fn ids_are_stable_across_builds() {
        // A redelivered event after an upgrade must give the same command id as before it
        // (the expected value computed independently, with Python's uuid.uuid5).
        let mut event = Event::example();
        event.id = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
        let cmd = Command::new("x", crate::AggregateId::new(), "y", serde_json::json!({}))
            .caused_by(&event, "reserve-inventory");
        assert_eq!(cmd.id, uuid::Uuid::new_v5(&event.id, b"reserve-inventory"));
        assert_eq!(cmd.id.to_string(), "bee033c3-405c-5554-8a48-afe691fd8052");
    }
}
