//! SQLite helpers: holding a store's write turn from a test.

use fluvius_core::{testing, AggregateId, Error, Event, LogStore};
use fluvius_sql::SqliteLogStore;
use sqlx::{Connection, Executor, SqliteConnection};

use super::wait_for;

/// Take SQLite's write lock from another connection (`BEGIN IMMEDIATE`, open until the
/// returned connection commits or is dropped) and start one append of a fresh stream of
/// `resource` behind it: with nothing queued it is written on its own task, holding the
/// store's write turn, and waits for the lock (the busy timeout is 5 s; tests take
/// milliseconds). Returns once that append holds the turn, with its task and the locking
/// connection.
pub async fn hold_write_turn(
    store: &SqliteLogStore,
    url: &str,
    resource: &'static str,
) -> (
    tokio::task::JoinHandle<Result<Vec<Event>, Error>>,
    SqliteConnection,
) {
    let mut locker = SqliteConnection::connect(url).await.unwrap();
    locker.execute("BEGIN IMMEDIATE").await.unwrap();
    let stats = || store.group_commit_stats().expect("group commit is on");
    let before = stats().alone;
    let append = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append(testing::request(resource, AggregateId::new(), 0, 1))
                .await
        })
    };
    wait_for(stats, |s| s.alone > before).await;
    (append, locker)
}
