//! Input limits: payload depth, names. Bad input is refused with a typed error on every store,
//! never crashes the process, and writes nothing.

use std::sync::Arc;

use fluvius_core::prelude::*;
use fluvius_core::{AppendRequest, DomainBuilder, Payload, Response, MAX_PAYLOAD_DEPTH};
use fluvius_sql::SqliteLogStore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A document holding any JSON body.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    body: Value,
}

/// Payload of `doc-put`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocPut {
    body: Value,
}

#[aggregate(resource = "doc")]
impl Doc {
    #[action(evt_key = "doc-put")]
    async fn put(&self, body: Value) -> Result<DocPut, DomainError> {
        Ok(DocPut { body })
    }

    #[apply("doc-put")]
    fn put_applied(&mut self, e: DocPut) {
        self.body = e.body;
    }
}

async fn doc_domain(store: Arc<dyn LogStore>) -> Domain {
    Domain::builder()
        .namespace("test")
        .aggregate::<Doc>()
        .without_global_handlers()
        .logstore_arc(store)
        .build()
        .await
        .expect("domain builds")
}

fn sqlite_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fluvius-limits-{label}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

async fn sqlite_store(label: &str) -> Arc<dyn LogStore> {
    let url = format!("sqlite://{}", sqlite_dir(label).join("log.db").display());
    Arc::new(SqliteLogStore::open(&url).await.expect("open SQLite"))
}

/// `[[…[1]…]]`, `depth` arrays deep, built without recursion.
fn nested(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

async fn events(domain: &Domain) -> Vec<Event> {
    domain.logstore().read_all(0, usize::MAX).await.expect("read_all")
}

/// A command with arguments `depth` levels deep, through `Command::new`.
async fn put_nested(domain: &Domain, depth: usize) -> Result<Response, Error> {
    // `{"body": …}` is one level itself. (Not built with `json!`, which would copy the
    // value through `serde_json::to_value`, recursively.)
    let args = Value::Object([("body".to_owned(), nested(depth - 1))].into_iter().collect());
    domain
        .process_command(Command::new("doc", AggregateId::new(), "put", args))
        .await
}

async fn deep_payloads_are_refused_on(store: Arc<dyn LogStore>) {
    let domain = doc_domain(store).await;
    for depth in [100_000, 10_000, MAX_PAYLOAD_DEPTH + 1] {
        let err = put_nested(&domain, depth).await.expect_err("too deep");
        assert_eq!(err.code(), "invalid_payload", "depth {depth}: {err}");
        assert!(err.to_string().contains("deeper than the limit of 127"), "{err}");
    }
    assert!(events(&domain).await.is_empty(), "a refused command wrote");

    // The deepest accepted payload is stored and reads back as it was written.
    let response = put_nested(&domain, MAX_PAYLOAD_DEPTH)
        .await
        .expect("at the limit");
    let stored = events(&domain).await;
    assert_eq!(stored.len(), 1);
    let body: DocPut = stored[0].payload.decode().expect("the stored payload reads back");
    let expected = nested(MAX_PAYLOAD_DEPTH - 1);
    assert_eq!(body.body, expected);
    assert_eq!(stored[0].args.to_value().unwrap()["body"], expected);
    let doc: Doc = domain.load(response.aggregate_id).await.expect("load");
    assert_eq!(doc.body, expected);
}

#[tokio::test]
async fn deep_payloads_are_refused_on_memory() {
    deep_payloads_are_refused_on(Arc::new(MemoryLogStore::new())).await;
}

#[tokio::test]
async fn deep_payloads_are_refused_on_sqlite() {
    deep_payloads_are_refused_on(sqlite_store("depth").await).await;
}

/// `Payload::from` a JSON value of any depth neither recurses nor drops recursively.
#[test]
fn a_payload_converts_from_a_value_of_any_depth() {
    let depth = 100_000;
    let deep = nested(depth);
    let by_ref = Payload::from(&deep);
    let owned = Payload::from(deep);
    let expected = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    assert_eq!(by_ref.as_str(), expected);
    assert_eq!(owned.as_str(), expected);
    // The same text as `Value`'s own (recursive) serializer.
    let doc = json!({"a": [1, "x\"y\n", {"b": null, "c": [true, 2.5, -3]}], "é": {}, "e": []});
    assert_eq!(Payload::from(&doc).as_str(), doc.to_string());
}

// ----- names --------------------------------------------------------------------------------

/// A PostgreSQL store in a fresh schema, and the schema's name (`None`, with a "NOT RUN" line,
/// without `FLUVIUS_TEST_PG_URL`).
async fn postgres_store() -> Option<(Arc<dyn LogStore>, String, String)> {
    let Ok(url) = std::env::var("FLUVIUS_TEST_PG_URL") else {
        eprintln!("PostgreSQL name checks NOT RUN: FLUVIUS_TEST_PG_URL is not set");
        return None;
    };
    let schema = format!("fluvius_limits_{}", uuid::Uuid::new_v4().simple());
    let store = fluvius_sql::PostgresLogStore::builder(&url)
        .schema(&schema)
        .max_connections(4)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {}", e.full_message()));
    Some((Arc::new(store), url, schema))
}

async fn drop_schema(url: &str, schema: &str) {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    conn.execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
        .await
        .expect("drop the test schema");
}

/// Names no store can hold alike, and why each is refused.
fn bad_names() -> Vec<(String, &'static str)> {
    vec![
        ("ac\0me".to_owned(), "control character"),
        ("x".repeat(fluvius_core::MAX_NAME_LEN + 1), "over the limit"),
        (String::new(), "empty"),
        ("tab\there".to_owned(), "control character"),
        (" padded".to_owned(), "whitespace"),
    ]
}

fn assert_invalid_name(err: &Error, what: &str, why: &str) {
    assert_eq!(err.code(), "invalid_name", "{err}");
    assert!(
        matches!(err, Error::InvalidName { what: w, .. } if *w == what),
        "{err:?}"
    );
    assert!(err.to_string().contains(why), "{err}");
}

/// Every name a command carries, and every name of a direct append, is checked before
/// anything is written.
async fn bad_names_are_refused_on(store: Arc<dyn LogStore>) {
    let domain = doc_domain(store.clone()).await;
    let id = AggregateId::new();
    let put = || Command::new("doc", id, "put", json!({"body": 1}));
    for (name, why) in bad_names() {
        let commands: Vec<(&str, Command)> = vec![
            ("tenant", put().with_context(Context::new().with_tenant(&name))),
            ("user id", put().with_context(Context::new().with_user(&name))),
            ("namespace", put().with_namespace(&name)),
            (
                "resource",
                Command::new(name.as_str(), id, "put", json!({"body": 1})),
            ),
            (
                "action",
                Command::new("doc", id, name.as_str(), json!({"body": 1})),
            ),
        ];
        for (what, command) in commands {
            let command_id = command.id;
            let err = domain.process_command(command).await.expect_err(what);
            assert_invalid_name(&err, what, why);
            assert!(
                store.get_command(command_id).await.unwrap().is_none(),
                "{what}: recorded"
            );
        }

        // A direct append, with the name in each place it would be stored.
        type Spoil = fn(&mut AppendRequest, &str);
        let spoils: [(&str, Spoil); 4] = [
            ("event key", |r, n| r.events[0].key = n.into()),
            ("tenant", |r, n| r.events[0].metadata.tenant_id = Some(n.into())),
            ("namespace", |r, n| r.events[0].namespace = n.into()),
            ("tenant", |r, n| {
                let record = r.command.as_mut().unwrap();
                record.context.tenant_id = Some(n.into());
            }),
        ];
        for (what, spoil) in spoils {
            let mut request = fluvius_core::testing::request("thing", AggregateId::new(), 0, 2);
            request.command = Some(fluvius_core::testing::command_record(&request));
            spoil(&mut request, &name);
            let err = store.append(request).await.expect_err(what);
            assert_invalid_name(&err, what, why);
        }
        let mut request = fluvius_core::testing::request(&name, AggregateId::new(), 0, 1);
        request.events.clear();
        let err = store.append(request).await.expect_err("resource");
        assert_invalid_name(&err, "resource", why);
    }
    assert!(events(&domain).await.is_empty(), "a refused name was written");

    // Good names of every kind still go through.
    let command = put().with_context(Context::new().with_tenant("acme corp").with_user("u-1"));
    domain.process_command(command).await.expect("good names");
    assert_eq!(events(&domain).await.len(), 1);
}

#[tokio::test]
async fn bad_names_are_refused_on_memory() {
    bad_names_are_refused_on(Arc::new(MemoryLogStore::new())).await;
}

#[tokio::test]
async fn bad_names_are_refused_on_sqlite() {
    bad_names_are_refused_on(sqlite_store("names").await).await;
}

#[tokio::test]
async fn bad_names_are_refused_on_postgres() {
    let Some((store, url, schema)) = postgres_store().await else {
        return;
    };
    bad_names_are_refused_on(store).await;
    drop_schema(&url, &schema).await;
}

/// Names given to the builder are checked when the domain is built.
#[tokio::test]
async fn a_domain_with_a_bad_name_is_not_built() {
    let base = || {
        Domain::builder()
            .without_global_handlers()
            .logstore(MemoryLogStore::new())
    };
    let cases: Vec<(&str, DomainBuilder)> = vec![
        ("namespace", base().namespace("te\0st").aggregate::<Doc>()),
        ("namespace", base().namespace("").aggregate::<Doc>()),
        ("resource", base().aggregate_as::<Doc>("do\0c")),
        ("resource", base().aggregate_as::<Doc>("")),
        (
            "handler",
            base()
                .aggregate::<Doc>()
                .handler("wel\0come", "*", |_e: Arc<Event>| async { Ok(()) }),
        ),
    ];
    for (what, builder) in cases {
        let err = builder.build().await.err().expect(what);
        assert_eq!(err.code(), "invalid_name", "{what}: {err}");
        assert!(
            matches!(&err, Error::InvalidName { what: w, .. } if *w == what),
            "{err:?}"
        );
    }
}
