//! PostgreSQL test support: the server from `FLUVIUS_TEST_PG_URL`, one schema per store.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use fluvius_core::testing::WithCleanup;
use fluvius_sql::PostgresLogStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::announce;

/// The URL of the test server, if `FLUVIUS_TEST_PG_URL` is set and the server answers.
/// Otherwise prints "PostgreSQL suite NOT RUN: <reason>" and returns `None` — or panics when
/// `CI=true`, where the suite must run.
pub async fn url() -> Option<String> {
    let reason = match std::env::var("FLUVIUS_TEST_PG_URL") {
        Ok(url) if !url.trim().is_empty() => match reachable(&url).await {
            Ok(()) => return Some(url),
            Err(e) => e,
        },
        _ => "FLUVIUS_TEST_PG_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)".to_owned(),
    };
    let message = format!("PostgreSQL suite NOT RUN: {reason}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message} — CI=true requires the PostgreSQL suite");
    }
    announce(&message);
    None
}

async fn reachable(url: &str) -> Result<(), String> {
    let options =
        PgConnectOptions::from_str(url).map_err(|e| format!("FLUVIUS_TEST_PG_URL does not parse: {e}"))?;
    let target = format!("{}:{}", options.get_host(), options.get_port());
    match tokio::time::timeout(Duration::from_secs(5), options.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(format!("cannot connect to {target}: {e}")),
        Err(_) => Err(format!("no answer from {target} within 5 s")),
    }
}

/// A fresh schema name.
pub fn schema_name() -> String {
    format!("fluvius_test_{}", uuid::Uuid::new_v4().simple())
}

/// Drop a schema and everything in it.
pub async fn drop_schema(url: &str, schema: &str) {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to drop a test schema");
    conn.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
        .await
        .expect("drop a test schema");
    let _ = conn.close().await;
}

/// Drop a schema from synchronous code (a `Drop`), on a thread of its own.
pub fn drop_schema_blocking(url: String, schema: String) {
    let dropped = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime to drop a test schema")
            .block_on(drop_schema(&url, &schema))
    })
    .join();
    if dropped.is_err() {
        announce("warning: a test schema could not be dropped");
    }
}

/// A store in a fresh schema, dropped with the store.
pub async fn store(url: &str) -> WithCleanup<PostgresLogStore> {
    let schema = schema_name();
    let store = PostgresLogStore::builder(url)
        .schema(&schema)
        .max_connections(8)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect a test store: {}", e.full_message()));
    let url = url.to_owned();
    WithCleanup::new(store, move || drop_schema_blocking(url, schema))
}

/// Drops a schema when it goes out of scope (also when the test panics).
pub struct SchemaGuard {
    pub url: String,
    pub schema: String,
}

impl SchemaGuard {
    /// A fresh schema name on the server of `url`, dropped with the guard.
    pub fn fresh(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            schema: schema_name(),
        }
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        drop_schema_blocking(self.url.clone(), self.schema.clone());
    }
}

/// A TCP proxy in front of the server, which the test can stop and start again on the same
/// port: the database "goes away" and "comes back" for the clients that use the proxy. It can
/// also [cut](Proxy::cut) every open connection at once while still accepting new ones, and
/// [stall](Proxy::stall): keep every socket open but forward no byte until
/// [resumed](Proxy::resume) (a half-open network path).
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Bumped to cut every open connection.
    cuts: watch::Sender<u64>,
    /// While `true`, no byte is forwarded either way (bytes read meanwhile are held).
    stalled: watch::Sender<bool>,
}

/// Forward bytes from `from` to `to`, holding each chunk while the proxy is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalled.wait_for(|stalled| !*stalled).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Proxy {
    /// Listen on a free local port, forwarding to the server of `url`.
    pub async fn start(url: &str) -> Self {
        let options = PgConnectOptions::from_str(url).expect("the test URL parses");
        let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .expect("resolve the test server")
            .next()
            .expect("the test server has an address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let mut proxy = Self {
            addr,
            upstream,
            task: None,
            cuts: watch::channel(0).0,
            stalled: watch::channel(false).0,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream;
        let cuts = self.cuts.subscribe();
        let stalled = self.stalled.subscribe();
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every forwarding task, which
            // closes both sides of every proxied connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let mut cut = cuts.clone();
                cut.mark_unchanged();
                let stalled = stalled.clone();
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let forward = async {
                        tokio::join!(
                            pump(client_read, server_write, stalled.clone()),
                            pump(server_read, client_write, stalled)
                        )
                    };
                    // A cut drops both sockets: each side sees its connection end.
                    tokio::select! {
                        _ = forward => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        }));
    }

    /// Close every proxied connection and stop listening: connections are refused.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Close every proxied connection now, as a network failure would; new connections are
    /// accepted at once.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Stop forwarding bytes, on open and new connections alike, keeping every socket open:
    /// the clients' requests and the server's answers are held until [`resume`](Self::resume).
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Forward again, starting with every byte held during the stall.
    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// Listen again on the same port.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("re-bind the proxy port");
        self.serve(listener);
    }

    /// Connect options for the server, through the proxy.
    pub fn connect_options(&self, url: &str) -> PgConnectOptions {
        PgConnectOptions::from_str(url)
            .expect("the test URL parses")
            .host("127.0.0.1")
            .port(self.addr.port())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
