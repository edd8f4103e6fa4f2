//! The ISO 8583 server: the listener, the connection limit, and graceful shutdown.
//!
//! A connection over `connections_max` is accepted and closed at once (and counted), so a
//! flood of connection attempts costs us one accept each and never a task. Shutdown is a
//! `CancellationToken`: the listener stops accepting, every reader stops reading, and every
//! writer answers what was already read before its connection closes.

pub mod backlog;
pub mod connection;
pub mod dispatch;
pub mod overload;
pub mod respond;
pub mod rxstamp;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::runtime::Ledger;
use crate::metrics::handles;

/// What every connection shares.
pub struct Shared {
    pub config: Config,
    pub ledger: Arc<Ledger>,
    pub request_deadline: Duration,
    /// Authorization webhook calls (pooled client, per-endpoint bounds).
    pub webhooks: webhook::WebhookClient,
}

impl Shared {
    pub fn new(config: Config, ledger: Arc<Ledger>) -> Shared {
        let request_deadline = Duration::from_millis(config.server.request_deadline_ms);
        let webhooks =
            webhook::WebhookClient::new(config.server.webhook_concurrency_per_endpoint_max);
        Shared {
            config,
            ledger,
            request_deadline,
            webhooks,
        }
    }
}

/// Binds the ISO 8583 listener (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "ISO 8583 listener bound");
    Ok(listener)
}

/// Accepts connections until `shutdown`, then waits for every connection to answer what it
/// has read.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(shared.config.server.connections_max));
    let metrics = handles();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let socket = match accepted {
            Ok((socket, _)) => socket,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.increment(1);
            drop(socket);
            continue;
        };
        metrics.connections_total.increment(1);
        metrics.connections_open.increment(1.0);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            connection::serve(socket, shared, shutdown).await;
            handles().connections_open.decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
