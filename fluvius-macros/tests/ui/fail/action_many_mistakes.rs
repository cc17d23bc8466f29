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

// Every mistake is reported at once, each on its own token.
#[aggregate]
impl User {
    #[action(evt_key = "user-created", version = 0, name = "a", name = "b")]
    fn create_user(&mut self, name: &str) -> UserCreated {
        UserCreated {
            name: name.to_owned(),
        }
    }

    #[apply("user-created")]
    fn created(&mut self, e: UserCreated) {
        self.name = e.name;
    }
}

fn main() {}
