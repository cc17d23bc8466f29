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

#[aggregate]
impl User {
    #[action(evt_key = "user\0created", resources = [" user"], name = "create\tuser")]
    fn create_user(&self, name: String) -> Result<UserCreated, DomainError> {
        Ok(UserCreated { name })
    }

    #[apply("user-created ")]
    fn created(&mut self, e: UserCreated) {
        self.name = e.name;
    }
}

#[event_handler("user-created", name = "welcome\0")]
async fn welcome(_event: &Event) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
