//! Every mistake in an attribute's arguments is reported at once, not only the first.
use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct User {
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserCreated {
    name: String,
}

#[aggregate(snapshot_every = 0, state_version = "2", colour = "red", resource = "user", resource = "u")]
impl User {
    #[action(evt_key = "user-created")]
    fn create_user(&self, name: String) -> Result<UserCreated, DomainError> {
        Ok(UserCreated { name })
    }

    #[apply("user-created")]
    fn created(&mut self, e: UserCreated) {
        self.name = e.name;
    }
}

#[event_handler("user-*", max_attempts = 0, name = "", colour = 1, base_backoff_ms)]
async fn audit(_event: &Event) -> Result<(), HandlerError> {
    Ok(())
}

#[upcast("user-created", from = "one", to = 2)]
fn lift(payload: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    Ok(payload)
}

fn main() {}
