//! Quickstart: the user aggregate of the Fluvius docs — create, update, deactivate — with a
//! `user-created` handler and a `*` handler, the event log, and a time-travel load.
//!
//! ```text
//! cargo run --example quickstart                 # embedded SQLite file under target/
//! cargo run --example quickstart -- --memory     # in-memory store
//! DATABASE_URL=postgres://postgres@127.0.0.1/test cargo run --example quickstart
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

/// The state of one user.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct User {
    name: String,
    email: String,
    active: bool,
}

/// Payload of `user-created`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCreated {
    name: String,
    email: String,
}

/// Payload of `user-updated`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserUpdated {
    name: Option<String>,
    email: Option<String>,
}

/// Payload of `user-deactivated`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserDeactivated {
    reason: String,
}

#[aggregate(resource = "user")]
impl User {
    /// Create the user; refused if it exists.
    #[action(evt_key = "user-created", resources = ["user"])]
    async fn create_user(&self, name: String, email: String) -> Result<UserCreated, DomainError> {
        if self.active {
            return Err(DomainError::new("user_exists", "user already exists"));
        }
        if !email.contains('@') {
            return Err(DomainError::new(
                "invalid_email",
                format!("`{email}` is not an email address"),
            ));
        }
        Ok(UserCreated { name, email })
    }

    /// Change name and/or email of an active user.
    #[action(evt_key = "user-updated", resources = ["user"])]
    async fn update_user(
        &self,
        name: Option<String>,
        email: Option<String>,
    ) -> Result<UserUpdated, DomainError> {
        if !self.active {
            return Err(DomainError::new(
                "user_inactive",
                "only active users can be updated",
            ));
        }
        Ok(UserUpdated { name, email })
    }

    /// Deactivate an active user.
    #[action(evt_key = "user-deactivated", resources = ["user"])]
    fn deactivate_user(&self, reason: String) -> Result<UserDeactivated, DomainError> {
        if !self.active {
            return Err(DomainError::new("user_inactive", "user is not active"));
        }
        Ok(UserDeactivated { reason })
    }

    #[apply("user-created")]
    fn created(&mut self, e: UserCreated) {
        self.name = e.name;
        self.email = e.email;
        self.active = true;
    }

    #[apply("user-updated")]
    fn updated(&mut self, e: UserUpdated) {
        if let Some(name) = e.name {
            self.name = name;
        }
        if let Some(email) = e.email {
            self.email = email;
        }
    }

    #[apply("user-deactivated")]
    fn deactivated(&mut self, _e: UserDeactivated) {
        self.active = false;
    }
}

static WELCOMES: AtomicUsize = AtomicUsize::new(0);
static SEEN: AtomicUsize = AtomicUsize::new(0);

/// Runs after every `user-created` commit.
#[event_handler("user-created")]
async fn send_welcome_email(event: &Event) -> Result<(), HandlerError> {
    let user: UserCreated = event.payload_as()?;
    println!("  [handler] welcome mail to {} <{}>", user.name, user.email);
    WELCOMES.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Sees every event (e.g. to stream them to a broker).
#[event_handler("*")]
async fn stream_everything(event: &Event) -> Result<(), HandlerError> {
    println!(
        "  [handler *] #{} {} v{}",
        event.position, event.key, event.aggregate_version
    );
    SEEN.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = fluvius_examples::store_from_args("quickstart").await?;
    let domain = Domain::builder()
        .namespace("user-profile")
        .aggregate::<User>()
        .logstore_arc(store)
        .build()
        .await?;

    let id = AggregateId::new();
    println!("user {id}");
    let created = domain
        .process_command(User::create_user_command(
            id,
            "Ann".into(),
            "ann@example.org".into(),
        ))
        .await?;
    println!("created: version {}", created.version);
    let cutoff = created.events[0].timestamp;

    // The untyped form, as from an HTTP body.
    let updated = domain
        .process_command(Command::new(
            "user",
            id,
            "update-user",
            serde_json::json!({ "name": "Ann Lee", "email": null }),
        ))
        .await?;
    println!("updated: version {}", updated.version);

    // A refused command: a typed error with a stable code, nothing written.
    match domain
        .process_command(User::create_user_command(
            id,
            "Ann".into(),
            "ann@example.org".into(),
        ))
        .await
    {
        Err(Error::Rejected(e)) => println!("second create refused: [{}] {}", e.code(), e),
        other => return Err(format!("expected a rejection, got {other:?}").into()),
    }

    domain
        .process_command(User::deactivate_user_command(id, "left the company".into()))
        .await?;

    domain.wait_idle().await;

    println!("event log:");
    for e in domain.logstore().get_events("user", id).await? {
        println!(
            "  v{} {:<17} {} {}",
            e.aggregate_version,
            e.key,
            e.timestamp.format("%H:%M:%S%.6f"),
            e.payload
        );
    }
    let now: User = domain.load(id).await?;
    let then: User = domain.load_at(id, cutoff).await?;
    println!("now:          {now:?}");
    println!("at {}: {then:?}", cutoff.format("%H:%M:%S%.6f"));
    println!(
        "handlers: {} welcome mail(s), {} event(s) streamed",
        WELCOMES.load(Ordering::SeqCst),
        SEEN.load(Ordering::SeqCst)
    );
    if now.active || !then.active || then.name != "Ann" || now.name != "Ann Lee" {
        return Err("unexpected state".into());
    }
    Ok(())
}
