//! A full aggregate: async and sync actions, `name`, `resources`, `version`, a zero-arg action,
//! a custom error type; the generated constants, constructors and `Aggregate` impl are used.

use fluvius_core::prelude::*;
use fluvius_core::{ActionSpec, Aggregate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct User {
    name: String,
    email: Option<String>,
    active: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserCreated {
    name: String,
    email: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserRenamed {
    first: String,
    last: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserDeactivated {}

#[derive(Debug)]
pub struct NotActive;

impl std::fmt::Display for NotActive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("user is not active")
    }
}

impl std::error::Error for NotActive {}

#[aggregate(resource = "user")]
impl User {
    /// Async action, two arguments, restricted to the `user` resource.
    #[action(evt_key = "user-created", resources = ["user"])]
    pub async fn create_user(&self, name: String, email: Option<String>) -> Result<UserCreated, DomainError> {
        if self.active {
            return Err(DomainError::rejected("user already exists"));
        }
        Ok(UserCreated { name, email })
    }

    /// Sync action with an explicit name, a schema version and a custom error type.
    #[action(evt_key = "user-renamed", name = "rename", version = 2, resources = ["user", "admin"])]
    fn rename_user(&self, first: String, last: String) -> Result<UserRenamed, NotActive> {
        if !self.active {
            return Err(NotActive);
        }
        Ok(UserRenamed { first, last })
    }

    /// Zero-argument action, trailing comma in the attribute.
    #[action(evt_key = "user-deactivated")]
    fn deactivate(&self) -> Result<UserDeactivated, DomainError> {
        Ok(UserDeactivated {})
    }

    #[apply("user-created")]
    fn created(&mut self, e: UserCreated) {
        self.name = e.name;
        self.email = e.email;
        self.active = true;
    }

    #[apply("user-renamed")]
    fn renamed(&mut self, e: UserRenamed) {
        self.name = format!("{} {}", e.first, e.last);
    }

    #[apply("user-deactivated")]
    fn deactivated(&mut self, _: UserDeactivated) {
        self.active = false;
    }

    /// Methods without our attributes are left alone.
    pub fn display_name(&self) -> &str {
        &self.name
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(<User as Aggregate>::RESOURCE, "user");
    assert_eq!(
        <User as Aggregate>::actions(),
        &[
            ActionSpec {
                name: "create-user",
                evt_key: "user-created",
                resources: &["user"],
                version: 1,
            },
            ActionSpec {
                name: "rename",
                evt_key: "user-renamed",
                resources: &["user", "admin"],
                version: 2,
            },
            ActionSpec {
                name: "deactivate",
                evt_key: "user-deactivated",
                resources: &[],
                version: 1,
            },
        ][..]
    );
    assert_eq!(
        <User as Aggregate>::action("rename").map(|a| a.evt_key),
        Some("user-renamed")
    );

    assert_eq!(User::ACTION_CREATE_USER, "create-user");
    assert_eq!(User::EVENT_USER_CREATED, "user-created");
    assert_eq!(User::ACTION_RENAME, "rename");
    assert_eq!(User::EVENT_USER_RENAMED, "user-renamed");
    assert_eq!(User::ACTION_DEACTIVATE, "deactivate");
    assert_eq!(User::EVENT_USER_DEACTIVATED, "user-deactivated");

    let id = AggregateId::new();
    let create = User::create_user_command(id, "Ann".to_owned(), Some("ann@example.com".to_owned()));
    assert_eq!(create.resource, "user");
    assert_eq!(create.action, User::ACTION_CREATE_USER);
    assert_eq!(create.aggregate_id, Some(id));

    let domain = Domain::builder()
        .aggregate::<User>()
        .logstore(MemoryLogStore::new())
        .without_global_handlers()
        .build()
        .await
        .expect("domain builds");

    // Renaming before creation: the custom error becomes a rejection.
    let err = domain
        .process_command(User::rename_user_command(id, "A".into(), "B".into()))
        .await
        .expect_err("not active yet");
    assert!(matches!(err, Error::Rejected(_)), "{err:?}");

    let resp = domain.process_command(create).await.expect("created");
    assert_eq!(resp.version, 1);
    assert_eq!(resp.events[0].key, "user-created");
    assert_eq!(resp.events[0].schema_version, 1);

    let resp = domain
        .process_command(User::rename_user_command(id, "Ann".into(), "Lee".into()))
        .await
        .expect("renamed");
    assert_eq!(resp.version, 2);
    assert_eq!(resp.events[0].key, User::EVENT_USER_RENAMED);
    assert_eq!(resp.events[0].schema_version, 2);

    let user: User = domain.load(id).await.expect("loads");
    assert_eq!(user.display_name(), "Ann Lee");
    assert_eq!(user.email.as_deref(), Some("ann@example.com"));
    assert!(user.active);

    let err = domain
        .process_command(User::create_user_command(id, "Bob".into(), None))
        .await
        .expect_err("already exists");
    assert!(matches!(err, Error::Rejected(_)), "{err:?}");

    domain
        .process_command(User::deactivate_command(id))
        .await
        .expect("deactivated");
    let user: User = domain.load(id).await.expect("loads");
    assert!(!user.active);
    assert_eq!(
        domain
            .logstore()
            .get_events("user", id)
            .await
            .expect("events")
            .len(),
        3
    );
}
