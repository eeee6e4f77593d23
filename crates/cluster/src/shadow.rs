//! Shadow copies in PostgreSQL: a row per accepted message (envelope, time of receipt, body) written before
//! the `250`, deleted in batches after the message's final disposition; the nodes' last signs of life; and
//! the adoption of a dead node's rows by the survivors.
//!
//! Tables (created when missing):
//! - `sluice_shadow (node, db_id, mid)`: the shadow copies, each named by the node that holds the message,
//!   that node's queue database id and the message's MID there.
//! - `sluice_node (node)`: each node's queue database id, its last heartbeat on PostgreSQL's clock, and
//!   `released` (a drained node gave its remaining rows up).
//! - `sluice_adopted (node, db_id, mid)`: the messages taken over from a node, so that the node, should it
//!   come back, drops them instead of delivering them a second time.

use std::sync::Arc;
use std::time::Duration;

use sluice_queue_db::{Envelope, Mid};
use sluice_transport::Transport;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls};

/// How long one statement may take before the shadow copy counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sluice_shadow (
    node text NOT NULL,
    db_id text NOT NULL,
    mid bigint NOT NULL,
    received_at_ms bigint NOT NULL,
    envelope bytea NOT NULL,
    body bytea NOT NULL,
    stored timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, db_id, mid)
);
CREATE TABLE IF NOT EXISTS sluice_node (
    node text PRIMARY KEY,
    db_id text NOT NULL,
    last_seen timestamptz NOT NULL,
    released boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS sluice_adopted (
    node text NOT NULL,
    db_id text NOT NULL,
    mid bigint NOT NULL,
    by_node text NOT NULL,
    adopted timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, db_id, mid)
);";

/// A dead node's rows, or a released one's, or this node's own under an earlier queue database: taken in
/// MID order, skipping rows another survivor is adopting.
const DEAD_ROWS: &str = "
SELECT s.node, s.db_id, s.mid, s.envelope, s.body FROM sluice_shadow s
LEFT JOIN sluice_node n ON n.node = s.node
WHERE NOT (s.node = $1 AND s.db_id = $2)
  AND (n.node IS NULL OR n.db_id <> s.db_id OR n.released
       OR n.last_seen < now() - make_interval(secs => $3))
ORDER BY s.node, s.mid
LIMIT $4
FOR UPDATE OF s SKIP LOCKED";

/// Why PostgreSQL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout,
    #[error("adopting: {0}")]
    Local(String),
}

/// The connection to PostgreSQL, opened on first use and again after a failure, and the writer of this
/// node's shadow copies.
pub(crate) struct Shadows {
    url: String,
    client: tokio::sync::Mutex<Option<Conn>>,
    /// This node and its queue database id: the key of its rows.
    node: String,
    db_id: String,
    /// The writer task's queue, made on the first shadow copy (in the runtime).
    writer: std::sync::OnceLock<mpsc::Sender<Pending>>,
    /// After a failed batch, shadow copies fail at once until then: a PostgreSQL that does not answer must
    /// not hold every `250` for a timeout.
    down_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long shadow copies fail at once after a failed batch.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// A shadow copy waiting for the writer's next batch.
struct Pending {
    mid: i64,
    received_at_ms: i64,
    envelope: Vec<u8>,
    body: Vec<u8>,
    written: oneshot::Sender<Result<(), String>>,
}

/// Shadow copies written per statement at most, and the bodies' bytes gathered for one.
const BATCH: usize = 256;
const BATCH_BYTES: usize = 16 << 20;

/// A connection and the statement of the message path, prepared once per connection.
pub(crate) struct Conn {
    client: std::sync::Arc<Client>,
    insert: tokio_postgres::Statement,
}

/// A batch of shadow copies in one statement (one transaction, one WAL flush), whatever its size.
const INSERT: &str = "INSERT INTO sluice_shadow (node, db_id, mid, received_at_ms, envelope, body) \
                      SELECT $1, $2, * FROM unnest($3::bigint[], $4::bigint[], $5::bytea[], $6::bytea[]) \
                      ON CONFLICT DO NOTHING";

impl Shadows {
    pub(crate) fn new(url: &str, node: &str, db_id: &str) -> Shadows {
        Shadows {
            url: url.to_owned(),
            client: tokio::sync::Mutex::new(None),
            node: node.to_owned(),
            db_id: db_id.to_owned(),
            writer: std::sync::OnceLock::new(),
            down_until: std::sync::Mutex::new(None),
        }
    }

    /// A connected client (the tables made on first connection); the guard keeps others out only while a
    /// connection is made or a transaction runs.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Conn>>, ShadowError> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            let client = self.connect().await?;
            tokio::time::timeout(CALL_TIMEOUT, client.batch_execute(SCHEMA))
                .await
                .map_err(|_| ShadowError::Timeout)??;
            let insert = tokio::time::timeout(CALL_TIMEOUT, client.prepare(INSERT))
                .await
                .map_err(|_| ShadowError::Timeout)??;
            *slot = Some(Conn { client: std::sync::Arc::new(client), insert });
        }
        Ok(slot)
    }

    /// A new connection, its I/O driven by a task of its own.
    async fn connect(&self) -> Result<Client, ShadowError> {
        let (client, connection) = tokio::time::timeout(CALL_TIMEOUT, tokio_postgres::connect(&self.url, NoTls))
            .await
            .map_err(|_| ShadowError::Timeout)??;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    /// Runs one statement on the shared connection (statements from many tasks are pipelined on it).
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, ShadowError> {
        let client = self.shared().await?;
        Ok(tokio::time::timeout(CALL_TIMEOUT, client.execute(sql, params))
            .await
            .map_err(|_| ShadowError::Timeout)??)
    }

    /// A clone of the connected client: clones share the connection, and the lock is not held while a
    /// statement runs, so that statements from many sessions are pipelined.
    async fn shared(&self) -> Result<std::sync::Arc<Client>, ShadowError> {
        let guard = self.client().await?;
        guard.as_ref().map(|c| c.client.clone()).ok_or(ShadowError::Timeout)
    }

    /// Stores a message's shadow copy. Copies from concurrent sessions are written together, in one
    /// statement per batch, by one writer task: PostgreSQL flushes its log once per batch instead of once per
    /// message (the group commit the queue database does for its own frames).
    pub(crate) async fn insert(
        self: &Arc<Self>,
        mid: Mid,
        envelope: &Envelope,
        body: Vec<u8>,
    ) -> Result<(), ShadowError> {
        let down = *self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_some_and(|t| std::time::Instant::now() < t) {
            return Err(ShadowError::Local("PostgreSQL failed a moment ago (trying again shortly)".into()));
        }
        let writer = self.writer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(BATCH * 4);
            tokio::spawn(self.clone().write(rx));
            tx
        });
        let (written, answer) = oneshot::channel();
        let pending = Pending {
            mid: mid as i64,
            received_at_ms: envelope.received_at_ms,
            envelope: envelope.to_bytes(),
            body,
            written,
        };
        writer.send(pending).await.map_err(|_| ShadowError::Local("the shadow writer stopped".into()))?;
        match tokio::time::timeout(CALL_TIMEOUT * 2, answer).await {
            Ok(Ok(result)) => result.map_err(ShadowError::Local),
            Ok(Err(_)) => Err(ShadowError::Local("the shadow writer stopped".into())),
            Err(_) => Err(ShadowError::Timeout),
        }
    }

    /// The writer: takes what waits (up to a batch), writes it in one statement, answers each copy.
    async fn write(self: Arc<Self>, mut rx: mpsc::Receiver<Pending>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let mut bytes: usize = batch.iter().map(|p| p.body.len()).sum();
            while bytes < BATCH_BYTES && batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(p) => {
                        bytes += p.body.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let result = self.write_batch(&mut batch).await.map_err(|e| e.to_string());
            if result.is_err() {
                *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now() + RETRY_AFTER);
            }
            for p in batch.drain(..) {
                let _ = p.written.send(result.clone());
            }
        }
    }

    async fn write_batch(&self, batch: &mut [Pending]) -> Result<(), ShadowError> {
        let (client, statement) = {
            let guard = self.client().await?;
            let conn = guard.as_ref().ok_or(ShadowError::Timeout)?;
            (conn.client.clone(), conn.insert.clone())
        };
        let mids: Vec<i64> = batch.iter().map(|p| p.mid).collect();
        let times: Vec<i64> = batch.iter().map(|p| p.received_at_ms).collect();
        let envelopes: Vec<Vec<u8>> = batch.iter_mut().map(|p| std::mem::take(&mut p.envelope)).collect();
        let bodies: Vec<Vec<u8>> = batch.iter_mut().map(|p| std::mem::take(&mut p.body)).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&self.node, &self.db_id, &mids, &times, &envelopes, &bodies];
        let run = client.execute(&statement, &params);
        tokio::time::timeout(CALL_TIMEOUT, run).await.map_err(|_| ShadowError::Timeout)??;
        Ok(())
    }

    /// Deletes the shadow copies of messages finally disposed of.
    pub(crate) async fn delete(&self, node: &str, db_id: &str, mids: &[Mid]) -> Result<u64, ShadowError> {
        let mids: Vec<i64> = mids.iter().map(|m| *m as i64).collect();
        self.execute(
            "DELETE FROM sluice_shadow WHERE node = $1 AND db_id = $2 AND mid = ANY($3)",
            &[&node, &db_id, &mids],
        )
        .await
    }

    /// This node is alive (with this queue database); `released` says whether a drain gave its rows up.
    pub(crate) async fn beat(&self, node: &str, db_id: &str, released: bool) -> Result<(), ShadowError> {
        let sql = "INSERT INTO sluice_node (node, db_id, last_seen, released) VALUES ($1, $2, now(), $3) \
                   ON CONFLICT (node) DO UPDATE SET db_id = $2, last_seen = now(), released = $3";
        self.execute(sql, &[&node, &db_id, &released]).await.map(drop)
    }

    /// A drained node gives its remaining rows up for adoption now.
    pub(crate) async fn release(&self, node: &str) -> Result<(), ShadowError> {
        self.execute("UPDATE sluice_node SET released = true WHERE node = $1", &[&node]).await.map(drop)
    }

    /// The MIDs of this node's messages that a peer adopted.
    pub(crate) async fn adopted_from(&self, node: &str, db_id: &str) -> Result<Vec<Mid>, ShadowError> {
        let client = self.shared().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&node, &db_id];
        let run = client.query("SELECT mid FROM sluice_adopted WHERE node = $1 AND db_id = $2", &params);
        let rows = tokio::time::timeout(CALL_TIMEOUT, run).await.map_err(|_| ShadowError::Timeout)??;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as Mid).collect())
    }

    /// Forgets adoption records once their node has dropped the messages.
    pub(crate) async fn forget_adopted(&self, node: &str, db_id: &str, mids: &[Mid]) -> Result<(), ShadowError> {
        let mids: Vec<i64> = mids.iter().map(|m| *m as i64).collect();
        let sql = "DELETE FROM sluice_adopted WHERE node = $1 AND db_id = $2 AND mid = ANY($3)";
        self.execute(sql, &[&node, &db_id, &mids]).await.map(drop)
    }

    /// Adopts up to `limit` rows of dead nodes in one transaction: each message is stored locally first
    /// (durably, under a new MID, with its original time of receipt), then its row is handed to this node
    /// and the adoption recorded for its old node. A crash between the two leaves the row where it was, to
    /// be adopted again: a message may be delivered twice, never lost. Returns how many were adopted.
    pub(crate) async fn adopt(
        &self,
        me: &str,
        my_db: &str,
        takeover_after: Duration,
        limit: i64,
        transport: &Transport,
    ) -> Result<usize, ShadowError> {
        // A connection of its own: a transaction needs one, and it must not hold up the shadow copies.
        drop(self.client().await?);
        let mut client = self.connect().await?;
        let tx = client.transaction().await?;
        let secs = takeover_after.as_secs_f64();
        let rows = tx.query(DEAD_ROWS, &[&me, &my_db, &secs, &limit]).await?;
        let mut adopted = 0;
        for row in &rows {
            let (node, db_id, mid): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
            let envelope: Vec<u8> = row.get(3);
            let body: Vec<u8> = row.get(4);
            let Some(envelope) = Envelope::from_bytes(&envelope) else {
                tracing::error!(node, mid, "a shadow row's envelope does not decode; left in place");
                continue;
            };
            let from = format!("{node} (MID {mid})");
            let new_mid =
                transport.adopt(envelope, body, &from).await.map_err(|e| ShadowError::Local(e.to_string()))?;
            let moved =
                "UPDATE sluice_shadow SET node = $4, db_id = $5, mid = $6 WHERE node = $1 AND db_id = $2 AND mid = $3";
            tx.execute(moved, &[&node, &db_id, &mid, &me, &my_db, &(new_mid as i64)]).await?;
            let record =
                "INSERT INTO sluice_adopted (node, db_id, mid, by_node) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
            tx.execute(record, &[&node, &db_id, &mid, &me]).await?;
            adopted += 1;
        }
        tx.commit().await?;
        Ok(adopted)
    }
}
