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

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Wrapper<T> {
    inner: T,
}

#[aggregate(resource = "wrapper")]
impl<T> Wrapper<T> {
    #[action(evt_key = "user-created")]
    fn create_user(&self, name: String) -> Result<UserCreated, DomainError> {
        Ok(UserCreated { name })
    }
}

fn main() {}
