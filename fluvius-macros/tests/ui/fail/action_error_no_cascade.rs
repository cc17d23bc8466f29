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

#[derive(Debug, Serialize, Deserialize)]
pub struct UserRenamed {
    name: String,
}

#[aggregate]
impl User {
    #[action(evt_key = "user-created")]
    fn create_user(&self, name: String) -> Result<UserCreated, DomainError> {
        Ok(UserCreated { name })
    }

    #[action(evt_key = "user-renamed")]
    fn rename(&mut self, name: String) -> Result<UserRenamed, DomainError> {
        Ok(UserRenamed { name })
    }

    #[apply("user-created")]
    fn created(&mut self, e: UserCreated) {
        self.name = e.name;
    }

    #[apply("user-renamed")]
    fn renamed(&mut self, e: UserRenamed) {
        self.name = e.name;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let domain = Domain::builder()
        .aggregate::<User>()
        .logstore(MemoryLogStore::new())
        .without_global_handlers()
        .build()
        .await
        .unwrap();
    let id = AggregateId::new();
    domain
        .process_command(User::create_user_command(id, "Ann".into()))
        .await
        .unwrap();
    domain
        .process_command(User::rename_command(id, "Bo".into()))
        .await
        .unwrap();
    assert_eq!(User::ACTION_RENAME, "rename");
}
