//! The command pipeline end to end: what `process_command` records and returns.

use chrono::Utc;
use fluvius_core::prelude::*;
use fluvius_tests::*;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn a_command_records_one_event_with_every_field() {
    let domain = domain().await;
    let id = AggregateId::new();
    let ctx = Context::new()
        .with_user("u-7")
        .with_tenant("acme")
        .with_realm("staff")
        .with_header("x-request-id", "r-1")
        .with_transport("http");
    let cmd = User::create_user_command(id, "Ann".into(), "ann@example.org".into()).with_context(ctx.clone());
    let command_id = cmd.id;
    let before = Utc::now();
    let resp = domain.process_command(cmd).await.unwrap();
    let after = Utc::now();

    // The response.
    assert_eq!(resp.command_id, command_id);
    assert_eq!(resp.resource, "user");
    assert_eq!(resp.aggregate_id, id);
    assert_eq!(resp.version, 1);
    assert!(!resp.replayed);
    assert_eq!(resp.state, None, "no state unless asked for");
    assert_eq!(resp.events.len(), 1);

    // The event, as returned and as stored.
    let stored = domain.logstore().get_events("user", id).await.unwrap();
    assert_eq!(stored, resp.events, "the response carries the stored events");
    assert_eq!(all_events(&domain).await, stored);
    let e = &stored[0];
    assert_eq!(e.position, 1);
    assert_eq!(e.namespace, "test");
    assert_eq!(e.resource, "user");
    assert_eq!(e.aggregate_id, id);
    assert_eq!(e.aggregate_version, 1);
    assert_eq!(e.key, "user-created");
    assert_eq!(e.key, User::EVENT_USER_CREATED);
    assert_eq!(e.schema_version, 1);
    assert_eq!(
        e.payload_as::<UserCreated>().unwrap(),
        UserCreated {
            name: "Ann".into(),
            email: "ann@example.org".into()
        }
    );
    assert_eq!(
        e.args.to_value().unwrap(),
        json!({"name": "Ann", "email": "ann@example.org"})
    );
    assert_eq!(e.command_id, command_id);
    assert_eq!(e.command_name, "create-user");
    assert_eq!(e.command_name, User::ACTION_CREATE_USER);
    assert!(before.timestamp_micros() <= e.timestamp.timestamp_micros());
    assert!(e.timestamp <= after);
    assert_eq!(
        e.metadata.correlation_id, command_id,
        "correlation defaults to the command id"
    );
    assert_eq!(
        e.metadata.causation_id, command_id,
        "causation defaults to the command id"
    );
    assert_eq!(e.metadata.user_id.as_deref(), Some("u-7"));
    assert_eq!(e.metadata.tenant_id.as_deref(), Some("acme"));

    // The command record keeps the whole context.
    let record = domain.logstore().get_command(command_id).await.unwrap().unwrap();
    assert_eq!(record.context, ctx);
    assert_eq!(record.action, "create-user");
    assert_eq!(record.resource, "user");
    assert_eq!(record.aggregate_id, id);
    assert_eq!((record.version_before, record.version_after), (0, 1));
    assert_eq!(record.args, e.args);

    // And the state folds.
    let user: User = domain.load(id).await.unwrap();
    assert_eq!(user.name, "Ann");
    assert!(user.active);
}

#[tokio::test]
async fn explicit_correlation_and_causation_ids_are_carried() {
    let domain = domain().await;
    let id = create_user(&domain, "Ann").await;
    let (correlation, causation) = (Uuid::now_v7(), Uuid::now_v7());
    let cmd = User::rename_command(id, "Bea".into()).with_context(
        Context::new()
            .with_correlation_id(correlation)
            .with_causation_id(causation),
    );
    let resp = domain.process_command(cmd).await.unwrap();
    let e = &resp.events[0];
    assert_eq!(e.metadata.correlation_id, correlation);
    assert_eq!(e.metadata.causation_id, causation);
    assert_ne!(e.command_id, correlation);
    assert_eq!(e.metadata.user_id, None);

    // Only the correlation id given: causation still defaults to the command id.
    let cmd =
        User::rename_command(id, "Cy".into()).with_context(Context::new().with_correlation_id(correlation));
    let command_id = cmd.id;
    let resp = domain.process_command(cmd).await.unwrap();
    assert_eq!(resp.events[0].metadata.correlation_id, correlation);
    assert_eq!(resp.events[0].metadata.causation_id, command_id);
}

#[tokio::test]
async fn versions_and_positions_grow_across_commands_and_aggregates() {
    let domain = domain().await;
    let ann = create_user(&domain, "Ann").await;
    let acc = open_account(&domain, 0).await;
    let r = domain
        .process_command(User::rename_command(ann, "Anna".into()))
        .await
        .unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(r.events[0].aggregate_version, 2);
    assert_eq!(r.events[0].position, 3);
    let r = domain
        .process_command(Account::deposit_command(acc, 5))
        .await
        .unwrap();
    assert_eq!((r.version, r.events[0].position), (2, 4));
    let r = domain
        .process_command(User::deactivate_command(ann))
        .await
        .unwrap();
    assert_eq!((r.version, r.events[0].position), (3, 5));

    let log = all_events(&domain).await;
    assert_eq!(
        log.iter().map(|e| e.position).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        assert_dense(&domain.logstore().get_events("user", ann).await.unwrap()),
        3
    );
    assert_eq!(
        assert_dense(&domain.logstore().get_events("account", acc).await.unwrap()),
        2
    );
    let user: User = domain.load(ann).await.unwrap();
    assert_eq!(
        (user.name.as_str(), user.active, user.deactivated),
        ("Anna", false, true)
    );
    // Reading part of the log.
    let tail = domain.logstore().read_all(3, 10).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.position).collect::<Vec<_>>(), [4, 5]);
    let page = domain.logstore().read_all(1, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), [2, 3]);
}

#[tokio::test]
async fn schema_version_comes_from_the_action() {
    let domain = domain().await;
    let id = create_user(&domain, "Ann").await;
    let resp = domain
        .process_command(User::change_email_command(id, "new@example.org".into()))
        .await
        .unwrap();
    assert_eq!(resp.events[0].key, "user-email-changed");
    assert_eq!(resp.events[0].schema_version, 2);
    let user: User = domain.load(id).await.unwrap();
    assert_eq!(user.email, "new@example.org");
}

/// Strip what differs between two runs of the same command on different aggregates.
fn shape(e: &Event) -> (String, String, u64, u32, Value, Value, String) {
    (
        e.resource.to_string(),
        e.key.to_string(),
        e.aggregate_version,
        e.schema_version,
        e.payload.to_value().unwrap(),
        e.args.to_value().unwrap(),
        e.command_name.to_string(),
    )
}

#[tokio::test]
async fn typed_and_untyped_commands_give_the_same_result() {
    let domain = domain().await;
    let (a, b) = (AggregateId::new(), AggregateId::new());
    let address = Address {
        street: "1 Main St".into(),
        city: "Springfield".into(),
    };
    let typed = [
        User::create_user_command(a, "Ann".into(), "ann@example.org".into()),
        User::rename_command(a, "Bea".into()),
        User::set_address_command(a, address.clone()),
        User::change_email_command(a, "bea@example.org".into()),
        User::deactivate_command(a),
    ];
    let untyped = [
        Command::new(
            "user",
            b,
            "create-user",
            json!({"name": "Ann", "email": "ann@example.org"}),
        ),
        Command::new("user", b, "rename", json!({"name": "Bea"})),
        Command::new(
            "user",
            b,
            "set-address",
            json!({"address": {"street": "1 Main St", "city": "Springfield"}}),
        ),
        Command::new("user", b, "change-email", json!({"email": "bea@example.org"})),
        Command::new("user", b, "deactivate", json!({})),
    ];
    for (t, u) in typed.into_iter().zip(untyped) {
        let rt = domain.process_command(t).await.unwrap();
        let ru = domain.process_command(u).await.unwrap();
        assert_eq!(rt.version, ru.version);
        assert_eq!(rt.events.len(), ru.events.len());
        for (et, eu) in rt.events.iter().zip(&ru.events) {
            assert_eq!(shape(et), shape(eu));
        }
    }
    let ua: User = domain.load(a).await.unwrap();
    let ub: User = domain.load(b).await.unwrap();
    assert_eq!(ua, ub);
    assert_eq!(ua.address, Some(address));
    assert!(ua.deactivated);
}

#[tokio::test]
async fn create_without_an_id_gets_one_assigned() {
    let domain = domain().await;
    let cmd = Command::create("user", "create-user", json!({"name": "Ann", "email": "a@x.org"}));
    assert!(cmd.aggregate_id.is_none());
    let r1 = domain.process_command(cmd).await.unwrap();
    let r2 = domain
        .process_command(Command::create(
            "user",
            "create-user",
            json!({"name": "Bob", "email": "b@x.org"}),
        ))
        .await
        .unwrap();
    assert_ne!(r1.aggregate_id, r2.aggregate_id, "each create gets its own id");
    assert_eq!(r1.version, 1);
    assert_eq!(r1.events[0].aggregate_id, r1.aggregate_id);
    let ann: User = domain.load(r1.aggregate_id).await.unwrap();
    let bob: User = domain.load(r2.aggregate_id).await.unwrap();
    assert_eq!((ann.name.as_str(), bob.name.as_str()), ("Ann", "Bob"));
    // The assigned id addresses the aggregate from then on.
    let r = domain
        .process_command(User::rename_command(r1.aggregate_id, "Anna".into()))
        .await
        .unwrap();
    assert_eq!(r.version, 2);
}

#[tokio::test]
async fn returning_state_gives_the_new_state() {
    let domain = domain().await;
    let id = open_account(&domain, 100).await;
    let resp = domain
        .process_command(Account::withdraw_command(id, 30).returning_state())
        .await
        .unwrap();
    let state = resp.state.expect("state was asked for");
    let loaded: Account = domain.load(id).await.unwrap();
    assert_eq!(loaded.balance, 70);
    assert_eq!(state, serde_json::to_value(&loaded).unwrap());
    assert_eq!(state["balance"], 70);

    // Untyped too.
    let resp = domain
        .process_command(Command::new("account", id, "deposit", json!({"amount": 5})).returning_state())
        .await
        .unwrap();
    assert_eq!(resp.state.unwrap()["balance"], 75);
}

#[tokio::test]
async fn namespace_addressed_commands() {
    let domain = domain().await;
    let id = AggregateId::new();
    let resp = domain
        .process_command(User::create_user_command(id, "Ann".into(), "a@x.org".into()).with_namespace("test"))
        .await
        .unwrap();
    assert_eq!(resp.events[0].namespace, "test");
    assert_eq!(domain.namespace(), "test");
}

#[tokio::test]
async fn one_aggregate_under_two_resource_names_keeps_two_streams() {
    let domain = builder()
        .aggregate_as::<User>("member")
        .logstore(MemoryLogStore::new())
        .build()
        .await
        .unwrap();
    let id = create_user(&domain, "Ann").await;
    // `rename` has no allow-list, so the second resource name accepts it; it is another
    // stream, where this user does not exist.
    let err = domain
        .process_command(Command::new("member", id, "rename", json!({"name": "Bea"})))
        .await
        .unwrap_err();
    match err {
        Error::Rejected(e) => assert_eq!(e.code(), "inactive"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(domain
        .logstore()
        .get_events("member", id)
        .await
        .unwrap()
        .is_empty());
    let user: User = domain.load(id).await.unwrap();
    assert_eq!(user.name, "Ann");
    let member: User = domain.load_query("member", id, Default::default()).await.unwrap();
    assert_eq!(member, User::default());
}
