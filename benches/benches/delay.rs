//! A TCP proxy that delays every byte by a fixed time in each direction: the PostgreSQL server
//! as if it were on another machine, for the report's "network delay" rows. Bytes keep their
//! order and the connection its pipelining (a chunk is due `delay` after it was read, whatever
//! is still in flight); the delay is tokio's timer, so each way takes between `delay` and
//! `delay` + 1 ms.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A running proxy (its tasks end with the runtime).
pub struct DelayProxy {
    /// Where to connect instead of the server.
    pub addr: SocketAddr,
}

impl DelayProxy {
    /// Listen on a free local port and forward each connection to `server`.
    pub async fn start(server: SocketAddr, delay: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(server).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = upstream.into_split();
                tokio::spawn(delay_line(client_read, server_write, delay));
                tokio::spawn(delay_line(server_read, client_write, delay));
            }
        });
        Ok(Self { addr })
    }
}

/// Copy `from` to `to`, each chunk written `delay` after it was read.
async fn delay_line(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (due, mut chunks) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((at, chunk)) = chunks.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if due.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
}
