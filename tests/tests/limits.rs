//! Input limits: payload depth, names. Bad input is refused with a typed error on every store,
//! never crashes the process, and writes nothing.

use std::sync::Arc;

use fluvius_core::prelude::*;
use fluvius_core::{Payload, Response, MAX_PAYLOAD_DEPTH};
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
