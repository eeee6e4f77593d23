//! Receive connectors: SMTP listeners, each with its own policy (spec 03). A session reads commands in
//! order, answers pipelined commands in one write, and answers `250` to DATA only after the message is
//! durable in the queue database.

mod message;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use sluice_config::{Config, ReceiveConnector};
use sluice_transport::Transport;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a session needs to know of its connector.
#[derive(Debug, Clone)]
pub struct Policy {
    pub connector: ReceiveConnector,
    /// Our name in the banner, EHLO and `Received:`.
    pub hostname: String,
}

/// The current policy of every connector, updated on reload; sessions read it when they start.
#[derive(Clone)]
pub struct Policies {
    senders: Arc<HashMap<String, watch::Sender<Arc<Policy>>>>,
}

impl Policies {
    pub fn new(config: &Config) -> Policies {
        let senders = config
            .receive_connectors
            .iter()
            .map(|c| {
                let policy = Policy { connector: c.clone(), hostname: config.server.hostname.clone() };
                (c.name.clone(), watch::channel(Arc::new(policy)).0)
            })
            .collect();
        Policies { senders: Arc::new(senders) }
    }

    /// The policy channel of a connector.
    ///
    /// # Panics
    /// When no connector has that name; the binary only asks for names it took from the same config.
    pub fn subscribe(&self, name: &str) -> watch::Receiver<Arc<Policy>> {
        self.senders.get(name).map(watch::Sender::subscribe).expect("a connector of the configuration")
    }

    /// Applies a reloaded configuration to connectors that still exist (listen addresses need a restart).
    pub fn update(&self, config: &Config) {
        for c in &config.receive_connectors {
            if let Some(tx) = self.senders.get(&c.name) {
                let mut connector = c.clone();
                connector.listen = tx.borrow().connector.listen;
                tx.send_replace(Arc::new(Policy { connector, hostname: config.server.hostname.clone() }));
            }
        }
    }
}

/// One listening receive connector.
pub struct Server {
    pub policy: watch::Receiver<Arc<Policy>>,
    pub transport: Transport,
    pub shutdown: CancellationToken,
}

impl Server {
    /// Accepts connections until shutdown, then waits for sessions to finish their transaction.
    pub async fn run(self, listener: TcpListener) {
        let max = self.policy.borrow().connector.max_connections.max(1) as usize;
        let slots = Arc::new(Semaphore::new(max));
        let sessions = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = self.shutdown.cancelled() => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let policy = self.policy.borrow().clone();
            let transport = self.transport.clone();
            let shutdown = self.shutdown.clone();
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    sessions.spawn(async move {
                        session::run(stream, peer, policy, transport, shutdown).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    sessions.spawn(refuse(stream, peer, policy));
                }
            }
        }
        drop(listener);
        sessions.close();
        sessions.wait().await;
    }
}

async fn refuse(mut stream: tokio::net::TcpStream, peer: SocketAddr, policy: Arc<Policy>) {
    use tokio::io::AsyncWriteExt;
    tracing::info!(%peer, connector = %policy.connector.name, "too many connections; refused");
    let _ = stream.write_all(b"421 4.7.0 Too many connections, try again later\r\n").await;
}
