//! `#[event_handler]` with `"*"`, a prefix, an exact key and `name = "..."`: the handlers are
//! registered, and a domain built with the global handlers runs them.

use std::sync::atomic::{AtomicUsize, Ordering};

use fluvius_core::prelude::*;
use serde::{Deserialize, Serialize};

static ALL: AtomicUsize = AtomicUsize::new(0);
static PREFIX: AtomicUsize = AtomicUsize::new(0);
static EXACT: AtomicUsize = AtomicUsize::new(0);
static NAMED: AtomicUsize = AtomicUsize::new(0);

#[event_handler("*")]
async fn on_everything(event: &Event) -> Result<(), HandlerError> {
    let _ = event;
    ALL.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[event_handler("user-*")]
async fn on_user_events(event: &Event) -> Result<(), HandlerError> {
    assert!(event.key.starts_with("user-"));
    PREFIX.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[event_handler("user-created")]
pub async fn on_user_created(event: &Event) -> Result<(), HandlerError> {
    assert_eq!(event.key, "user-created");
    EXACT.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// A handler with a stable name and a trailing comma.
#[event_handler("user-created", name = "welcome-email")]
async fn send_welcome(event: &Event) -> Result<(), HandlerError> {
    let created: UserCreated = event.payload_as()?;
    assert_eq!(created.name, "Ann");
    NAMED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

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
    #[action(evt_key = "user-created")]
    fn create_user(&self, name: String) -> Result<UserCreated, DomainError> {
        Ok(UserCreated { name })
    }

    #[apply("user-created")]
    fn created(&mut self, e: UserCreated) {
        self.name = e.name;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Call the handler directly: the macro leaves the function as written.
    on_user_created(&Event {
        key: "user-created".into(),
        ..Event::example()
    })
    .await
    .expect("handler runs");
    assert_eq!(EXACT.swap(0, Ordering::SeqCst), 1);

    let mut registered: Vec<(&str, &str)> = fluvius_core::global_handlers()
        .map(|reg| (reg.name, reg.pattern))
        .collect();
    registered.sort();
    let module = module_path!();
    let mut expected = vec![
        (format!("{module}::on_everything"), "*"),
        (format!("{module}::on_user_events"), "user-*"),
        (format!("{module}::on_user_created"), "user-created"),
        ("welcome-email".to_owned(), "user-created"),
    ];
    expected.sort();
    let expected: Vec<(&str, &str)> = expected.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    assert_eq!(registered, expected);
    for reg in fluvius_core::global_handlers() {
        assert_eq!(reg.module, module);
        assert!(reg.file.ends_with("event_handlers.rs"), "{}", reg.file);
        assert!(reg.line > 0);
    }

    let domain = Domain::builder()
        .aggregate::<User>()
        .logstore(MemoryLogStore::new())
        .build()
        .await
        .expect("domain builds");
    domain
        .process_command(User::create_user_command(AggregateId::new(), "Ann".into()))
        .await
        .expect("created");
    domain.wait_idle().await;
    assert_eq!(ALL.load(Ordering::SeqCst), 1);
    assert_eq!(PREFIX.load(Ordering::SeqCst), 1);
    assert_eq!(EXACT.load(Ordering::SeqCst), 1);
    assert_eq!(NAMED.load(Ordering::SeqCst), 1);
    let mut stats: Vec<_> = domain
        .handler_stats()
        .into_iter()
        .map(|s| (s.name, s.succeeded))
        .collect();
    stats.sort();
    assert_eq!(stats.len(), 4);
    assert!(stats.iter().all(|(_, ok)| *ok == 1), "{stats:?}");
}
