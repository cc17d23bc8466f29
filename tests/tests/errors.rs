//! Bad input: every error variant, its stable code, and an unchanged log afterwards.

use std::collections::HashSet;

use fluvius_core::prelude::*;
use fluvius_core::CommandRecord;
use fluvius_tests::*;
use serde_json::{json, Value};

/// Run `cmd`, expect an error, and check that neither the log nor the command records changed.
async fn fails(domain: &Domain, cmd: Command) -> Error {
    let before = all_events(domain).await;
    let command_id = cmd.id;
    let err = domain
        .process_command(cmd)
        .await
        .expect_err("the command must fail");
    assert_eq!(all_events(domain).await, before, "the log changed after {err:?}");
    let record: Option<CommandRecord> = domain.logstore().get_command(command_id).await.unwrap();
    assert!(record.is_none(), "a failed command was recorded: {err:?}");
    err
}

/// A domain with some history, so "unchanged" means something.
async fn busy_domain() -> (Domain, AggregateId, AggregateId) {
    let domain = domain().await;
    let user = create_user(&domain, "Ann").await;
    let account = open_account(&domain, 50).await;
    (domain, user, account)
}

#[tokio::test]
async fn unknown_namespace() {
    let (domain, user, _) = busy_domain().await;
    let err = fails(
        &domain,
        User::rename_command(user, "Bea".into()).with_namespace("billing"),
    )
    .await;
    match &err {
        Error::UnknownNamespace { expected, got } => {
            assert_eq!((expected.as_str(), got.as_str()), ("test", "billing"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.code(), "unknown_namespace");
}

#[tokio::test]
async fn unknown_resource() {
    let (domain, user, _) = busy_domain().await;
    let err = fails(
        &domain,
        Command::new("robot", user, "rename", json!({"name": "x"})),
    )
    .await;
    assert!(
        matches!(&err, Error::UnknownResource { resource } if resource == "robot"),
        "{err:?}"
    );
    assert_eq!(err.code(), "unknown_resource");
}

#[tokio::test]
async fn unknown_action() {
    let (domain, user, _) = busy_domain().await;
    let err = fails(&domain, Command::new("user", user, "fly", json!({}))).await;
    assert!(
        matches!(&err, Error::UnknownAction { resource, action } if resource == "user" && action == "fly"),
        "{err:?}"
    );
    assert_eq!(err.code(), "unknown_action");
    // An action of another aggregate is unknown here too.
    let err = fails(
        &domain,
        Command::new("user", user, "deposit", json!({"amount": 1})),
    )
    .await;
    assert_eq!(err.code(), "unknown_action");
}

#[tokio::test]
async fn resource_not_allowed() {
    let domain = builder()
        .aggregate_as::<User>("other")
        .logstore(MemoryLogStore::new())
        .build()
        .await
        .unwrap();
    create_user(&domain, "Ann").await;
    let id = AggregateId::new();
    let err = fails(
        &domain,
        Command::new(
            "other",
            id,
            "create-user",
            json!({"name": "Bo", "email": "b@x.org"}),
        ),
    )
    .await;
    match &err {
        Error::ResourceNotAllowed {
            action,
            resource,
            allowed,
        } => {
            assert_eq!(action, "create-user");
            assert_eq!(resource, "other");
            assert_eq!(allowed, &["user".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.code(), "resource_not_allowed");
    // The same command under the allowed resource runs.
    domain
        .process_command(Command::new(
            "user",
            id,
            "create-user",
            json!({"name": "Bo", "email": "b@x.org"}),
        ))
        .await
        .unwrap();
}

/// The `InvalidPayload` fields, or a panic.
fn invalid(err: &Error) -> (&str, &str, &str) {
    assert_eq!(err.code(), "invalid_payload");
    match err {
        Error::InvalidPayload {
            action,
            path,
            message,
        } => (action, path, message),
        other => panic!("expected an invalid payload, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_payload_missing_field() {
    let (domain, _, _) = busy_domain().await;
    let err = fails(
        &domain,
        Command::new("user", AggregateId::new(), "create-user", json!({"name": "Ann"})),
    )
    .await;
    let (action, _path, message) = invalid(&err);
    assert_eq!(action, "create-user");
    assert!(
        message.contains("email"),
        "the message names the missing field: {message}"
    );
}

#[tokio::test]
async fn invalid_payload_wrong_type_names_the_field() {
    let (domain, user, account) = busy_domain().await;
    let err = fails(&domain, Command::new("user", user, "rename", json!({"name": 42}))).await;
    let (action, path, message) = invalid(&err);
    assert_eq!((action, path), ("rename", "name"), "{message}");

    let err = fails(
        &domain,
        Command::new("account", account, "deposit", json!({"amount": "ten"})),
    )
    .await;
    assert_eq!(invalid(&err).1, "amount");

    // Nested: the path goes down to the field.
    let err = fails(
        &domain,
        Command::new(
            "user",
            user,
            "set-address",
            json!({"address": {"street": "1 Main St", "city": 5}}),
        ),
    )
    .await;
    let (action, path, _) = invalid(&err);
    assert_eq!((action, path), ("set-address", "address.city"));

    // Out of range for the argument's type.
    let err = fails(
        &domain,
        Command::new("account", account, "deposit", json!({"amount": u64::MAX})),
    )
    .await;
    assert_eq!(invalid(&err).1, "amount");
    let err = fails(
        &domain,
        Command::new("account", account, "deposit", json!({"amount": 1.5})),
    )
    .await;
    assert_eq!(invalid(&err).1, "amount");
}

#[tokio::test]
async fn invalid_payload_unknown_field() {
    let (domain, user, _) = busy_domain().await;
    let err = fails(
        &domain,
        Command::new("user", user, "rename", json!({"name": "Bea", "admin": true})),
    )
    .await;
    let (action, _, message) = invalid(&err);
    assert_eq!(action, "rename");
    assert!(
        message.contains("admin"),
        "the message names the unknown field: {message}"
    );

    let err = fails(
        &domain,
        Command::new("user", user, "deactivate", json!({"reason": "spam"})),
    )
    .await;
    assert!(invalid(&err).2.contains("reason"));
}

#[tokio::test]
async fn invalid_payload_not_an_object() {
    let (domain, user, _) = busy_domain().await;
    for payload in [json!(null), json!("Bea"), json!(7), json!(true), json!(["Bea"])] {
        let err = fails(&domain, Command::new("user", user, "rename", payload.clone())).await;
        let (action, path, message) = invalid(&err);
        assert_eq!((action, path), ("rename", "."), "{payload}");
        assert!(message.contains("expected a JSON object"), "{payload}: {message}");
    }
}

#[tokio::test]
async fn payload_too_large_for_arguments_and_for_events() {
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .max_payload_bytes(64)
        .build()
        .await
        .unwrap();
    let user = create_user(&domain, "Ann").await;
    let long = "x".repeat(100);
    for cmd in [
        User::rename_command(user, long.clone()),
        Command::new("user", user, "rename", json!({ "name": long })),
    ] {
        let err = fails(&domain, cmd).await;
        match &err {
            Error::PayloadTooLarge { what, size, limit } => {
                assert_eq!(*what, "command arguments");
                assert_eq!(*size, json!({ "name": long }).to_string().len());
                assert_eq!(*limit, 64);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.code(), "payload_too_large");
    }

    // Small arguments, large event.
    let note = AggregateId::new();
    let err = fails(&domain, Note::write_command(note, "ab".into(), 40)).await;
    match &err {
        Error::PayloadTooLarge { what, size, limit } => {
            assert_eq!(*what, "event payload");
            assert_eq!(*size, json!({ "text": "ab".repeat(40) }).to_string().len());
            assert_eq!(*limit, 64);
        }
        other => panic!("{other:?}"),
    }
    // At the limit is fine.
    let ok = Note::write_command(note, "ab".into(), 25); // {"text":"…50…"} = 61 bytes
    domain.process_command(ok).await.unwrap();
}

#[tokio::test]
async fn rejected_carries_the_domain_code_and_message() {
    let (domain, user, account) = busy_domain().await;
    let err = fails(&domain, Account::withdraw_command(account, 51)).await;
    assert_eq!(err.code(), "rejected");
    match &err {
        Error::Rejected(e) => {
            assert_eq!(e.code(), "insufficient_funds");
            assert_eq!(e.message(), "balance 50 is below 51");
        }
        other => panic!("{other:?}"),
    }
    let err = fails(
        &domain,
        User::create_user_command(user, "Ann".into(), "a@x.org".into()),
    )
    .await;
    assert!(
        matches!(&err, Error::Rejected(e) if e.code() == "already_exists"),
        "{err:?}"
    );
    let err = fails(&domain, Account::deposit_command(account, 0)).await;
    assert!(
        matches!(&err, Error::Rejected(e) if e.code() == "invalid_amount"),
        "{err:?}"
    );
    // An action on an aggregate that does not exist yet sees the default state.
    let err = fails(&domain, Account::deposit_command(AggregateId::new(), 5)).await;
    assert!(
        matches!(&err, Error::Rejected(e) if e.code() == "not_open"),
        "{err:?}"
    );
}

#[tokio::test]
async fn forbidden_by_the_policy() {
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .authorize(|cmd| match cmd.context.user_id.as_deref() {
            Some("mallory") => Err("mallory may not do anything".into()),
            _ => Ok(()),
        })
        .build()
        .await
        .unwrap();
    let user = create_user(&domain, "Ann").await;
    let err = fails(
        &domain,
        User::rename_command(user, "Eve".into()).with_context(Context::new().with_user("mallory")),
    )
    .await;
    assert!(
        matches!(&err, Error::Forbidden { reason } if reason == "mallory may not do anything"),
        "{err:?}"
    );
    assert_eq!(err.code(), "forbidden");
}

#[tokio::test]
async fn every_variant_has_its_own_code() {
    let domain = builder()
        .aggregate_as::<User>("other")
        .logstore(MemoryLogStore::new())
        .max_payload_bytes(200)
        .authorize(|cmd| {
            if cmd.context.user_id.as_deref() == Some("mallory") {
                Err("no".into())
            } else {
                Ok(())
            }
        })
        .build()
        .await
        .unwrap();
    let user = create_user(&domain, "Ann").await;
    let id = AggregateId::new();
    let cases: Vec<(Command, &str)> = vec![
        (
            User::rename_command(user, "B".into()).with_namespace("x"),
            "unknown_namespace",
        ),
        (Command::new("robot", id, "rename", json!({})), "unknown_resource"),
        (Command::new("user", id, "fly", json!({})), "unknown_action"),
        (
            Command::new("other", id, "create-user", json!({"name": "a", "email": "b"})),
            "resource_not_allowed",
        ),
        (Command::new("user", user, "rename", json!({})), "invalid_payload"),
        (User::rename_command(user, "y".repeat(300)), "payload_too_large"),
        (User::deactivate_command(id), "rejected"),
        (
            User::rename_command(user, "E".into()).with_context(Context::new().with_user("mallory")),
            "forbidden",
        ),
        (
            User::rename_command(user, "C".into()).expect_version(7),
            "conflict",
        ),
    ];
    let mut codes = HashSet::new();
    for (cmd, code) in cases {
        let err = fails(&domain, cmd).await;
        assert_eq!(err.code(), code, "{err:?}");
        assert!(codes.insert(err.code()), "code {code} used twice");
        // Errors render for humans, too.
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(codes.len(), 9);
    let user_state: User = domain.load(user).await.unwrap();
    assert_eq!(user_state.name, "Ann");
}

#[tokio::test]
async fn the_first_routing_error_wins() {
    // Routing is checked before the policy.
    let domain = builder()
        .logstore(MemoryLogStore::new())
        .authorize(|_| Err("closed".into()))
        .build()
        .await
        .unwrap();
    let id = AggregateId::new();
    let bad: Value = json!({"nope": 1});
    let err = fails(&domain, Command::new("robot", id, "fly", bad.clone())).await;
    assert_eq!(err.code(), "unknown_resource");
    let err = fails(&domain, Command::new("user", id, "fly", bad.clone())).await;
    assert_eq!(err.code(), "unknown_action");
    let err = fails(&domain, Command::new("user", id, "rename", json!({"name": "x"}))).await;
    assert_eq!(err.code(), "forbidden");
}
