//! SQLite: a database kept busy by another connection past the busy timeout is a transient
//! error (nothing written), which the domain retries within its retry policy.
#![cfg(feature = "sqlite")]

mod common;

use std::time::Duration;

use fluvius_core::{testing, AggregateId, Command, LogStore};
use fluvius_sql::SqliteLogStore;
use serde_json::json;
use sqlx::{Connection, Executor, SqliteConnection};

async fn busy_store(label: &str) -> (SqliteLogStore, String) {
    let url = format!("sqlite://{}", common::temp_dir(label).join("log.db").display());
    let store = SqliteLogStore::builder(&url)
        .busy_timeout(Duration::from_millis(50))
        .open()
        .await
        .unwrap();
    (store, url)
}

#[tokio::test]
async fn an_append_past_the_busy_timeout_is_transient_and_writes_nothing() {
    let (store, url) = busy_store("busy").await;
    // Another process holding the write lock.
    let mut other = SqliteConnection::connect(&url).await.unwrap();
    other.execute("BEGIN IMMEDIATE").await.unwrap();
    let id = AggregateId::new();
    let err = store
        .append(testing::request("thing", id, 0, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "transient", "{err:?}");
    assert!(err.is_retryable());
    other.execute("ROLLBACK").await.unwrap();
    assert!(store.get_events("thing", id).await.unwrap().is_empty());
    // The store works again once the lock is free.
    store.append(testing::request("thing", id, 0, 1)).await.unwrap();
    assert_eq!(store.get_events("thing", id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_domain_retries_a_command_that_found_the_database_busy() {
    let (store, url) = busy_store("busy-domain").await;
    let domain = common::counter::domain(store).await;
    let mut other = SqliteConnection::connect(&url).await.unwrap();
    other.execute("BEGIN IMMEDIATE").await.unwrap();
    let id = AggregateId::new();
    let command = domain.process_command(Command::new("counter", id, "add", json!({ "by": 1 })));
    let release = async {
        // Long enough for the first attempt to give up (50 ms busy timeout); the retries of the
        // default policy then find the lock free.
        tokio::time::sleep(Duration::from_millis(120)).await;
        other.execute("ROLLBACK").await.unwrap();
    };
    let (response, ()) = tokio::join!(command, release);
    let response = response.unwrap();
    assert_eq!(response.version, 1);
    assert_eq!(
        domain.logstore().get_events("counter", id).await.unwrap(),
        response.events
    );
}
