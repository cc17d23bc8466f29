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

#[aggregate(resource = "us\0er")]
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

fn main() {}
