//! sluice nodes together. Each node's own queue database stays the authority for the mail it accepted;
//! the nodes coordinate through engines administrators already run:
//!
//! - Redis (or Valkey, `coord.rs`): per-next-hop connection leases shared by every node (with a local share
//!   of the limit when Redis cannot be reached, `leases.rs`), heartbeats carrying each node's queues (the
//!   cluster digest), and the desired state of cluster-wide queue actions, announced by pub/sub.
//! - PostgreSQL (`shadow.rs`): a shadow copy of every message before its `250`, deleted after its final
//!   disposition; the survivors adopt a dead node's copies.
//!
//! The transport sees a node through [`sluice_transport::cluster::ClusterHooks`]; the admin API serves the
//! cluster endpoints from [`Cluster`] and reconciles the actions (`crates/admin/src/cluster.rs`).

mod coord;
mod leases;
mod shadow;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_api_types as api;
use sluice_config::ClusterConfig;
use sluice_queue_db::{Envelope, Mid};
use sluice_transport::cluster::{ClusterHooks, Lease};
use sluice_transport::{AlertClass, Alerts, BoxFuture, Severity, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use coord::Heartbeat;
pub use coord::RedisError;
pub use shadow::ShadowError;

/// Shadow rows adopted per transaction.
const ADOPT_BATCH: i64 = 200;
/// Disposed messages' shadow rows are deleted this often (or when this many wait).
const DELETE_EVERY: Duration = Duration::from_secs(1);
const DELETE_BATCH: usize = 1000;

/// One node of a cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.shared.config.node).finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    config: ClusterConfig,
    /// This node's queue database id (`<queue database>/cluster-id`).
    db_id: String,
    redis: coord::Redis,
    shadows: Option<Arc<shadow::Shadows>>,
    alerts: Alerts,
    /// Connection leases this node holds, per next-hop domain.
    held: Mutex<HashMap<String, usize>>,
    /// Message rate slots while Redis cannot be reached (this node's share of each rate).
    throttles: sluice_transport::Throttles,
    /// Live nodes at the last heartbeat (at least 1): the divisor of the fallback share.
    live_nodes: AtomicUsize,
    /// Redis could not be reached at the last try: limits are this node's share.
    fallback: AtomicBool,
    next_lease: AtomicU64,
    /// Messages accepted without a shadow copy since start.
    unshadowed: AtomicU64,
    /// Finally disposed messages whose shadow rows are still to be deleted.
    disposed: mpsc::UnboundedSender<Mid>,
    disposed_rx: Mutex<Option<mpsc::UnboundedReceiver<Mid>>>,
    drain: Mutex<Drain>,
    /// Woken when an action is announced (pub/sub) or stored by this node.
    actions_changed: tokio::sync::Notify,
}

/// Where a drain stands.
#[derive(Debug, Clone, Default)]
struct Drain {
    deadline: Option<Instant>,
    released: bool,
}

impl Cluster {
    /// Joins the cluster `config` describes. Nothing is contacted yet: Redis and PostgreSQL are reached on
    /// first use and again after each failure.
    pub fn new(config: &ClusterConfig, queue_db: &Path, alerts: Alerts) -> Result<Cluster, String> {
        let db_id = db_id(queue_db).map_err(|e| format!("{}: {e}", queue_db.join(DB_ID_FILE).display()))?;
        let redis = coord::Redis::new(&config.redis).map_err(|e| format!("[cluster] redis: {e}"))?;
        let (disposed, rx) = mpsc::unbounded_channel();
        let shadows = config.postgres.as_deref().map(|url| Arc::new(shadow::Shadows::new(url, &config.node, &db_id)));
        Ok(Cluster {
            shared: Arc::new(Shared {
                config: config.clone(),
                db_id,
                redis,
                shadows,
                alerts,
                held: Mutex::new(HashMap::new()),
                throttles: Default::default(),
                live_nodes: AtomicUsize::new(1),
                fallback: AtomicBool::new(false),
                next_lease: AtomicU64::new(0),
                unshadowed: AtomicU64::new(0),
                disposed,
                disposed_rx: Mutex::new(Some(rx)),
                drain: Mutex::new(Drain::default()),
                actions_changed: tokio::sync::Notify::new(),
            }),
        })
    }

    /// The hooks the transport calls.
    pub fn hooks(&self) -> Arc<dyn ClusterHooks> {
        Arc::new(self.clone())
    }

    pub fn node(&self) -> &str {
        &self.shared.config.node
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.shared.config.heartbeat_interval
    }

    /// The MIDs of this node's messages that peers adopted while it was away: to be dropped before
    /// delivery starts. Empty without shadow copies, or (with a warning) when PostgreSQL cannot be reached;
    /// then the heartbeat drops them later.
    pub async fn adopted_elsewhere(&self) -> Vec<Mid> {
        let s = &self.shared;
        let Some(shadows) = &s.shadows else { return Vec::new() };
        match shadows.adopted_from(&s.config.node, &s.db_id).await {
            Ok(mids) => mids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask PostgreSQL which messages peers adopted; asking again at the next heartbeat");
                Vec::new()
            }
        }
    }

    /// Forgets the adoption records of the messages dropped at start (`Parts::adopted_elsewhere`).
    pub async fn forget_adopted(&self, mids: &[Mid]) {
        let s = &self.shared;
        if let (Some(shadows), false) = (&s.shadows, mids.is_empty())
            && let Err(e) = shadows.forget_adopted(&s.config.node, &s.db_id, mids).await
        {
            tracing::warn!(error = %e, "cannot clear the adoption records");
        }
    }

    /// Runs the node's side of the cluster until shutdown: the heartbeat (queues to Redis, life to
    /// PostgreSQL), adoption of dead nodes' shadow copies, dropping what peers adopted from this node,
    /// deleting disposed messages' shadow rows, and following the drain.
    pub async fn run(self, transport: Transport, shutdown: CancellationToken) {
        let rx = self.shared.disposed_rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (Some(rx), Some(_)) = (rx, &self.shared.shadows) {
            tokio::spawn(self.clone().delete_disposed(rx, shutdown.clone()));
        }
        let mut tick = tokio::time::interval(self.shared.config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            self.beat(&transport).await;
        }
    }

    /// One heartbeat.
    async fn beat(&self, transport: &Transport) {
        let s = &self.shared;
        let left = transport.message_count() as u64;
        self.follow_drain(transport, left).await;
        let beat = Heartbeat {
            node: s.config.node.clone(),
            admin_url: s.config.admin_url.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            db_id: s.db_id.clone(),
            draining: transport.draining(),
            draining_left: transport.draining().then_some(left),
            interval_ms: s.config.heartbeat_interval.as_millis() as u64,
            at_ms: 0,
        };
        let ttl = s.config.heartbeat_interval * 3;
        match s.redis.heartbeat(&beat, &transport.queues(), ttl).await {
            Ok(()) => {
                if let Ok(nodes) = self.nodes().await {
                    let live = nodes.iter().filter(|n| n.state != "dead").count();
                    s.live_nodes.store(live.max(1), Ordering::Relaxed);
                }
                self.redis_reachable();
            }
            Err(e) => self.redis_unreachable(&e),
        }
        let Some(shadows) = &s.shadows else { return };
        let released = s.drain.lock().unwrap_or_else(|e| e.into_inner()).released;
        if let Err(e) = shadows.beat(&s.config.node, &s.db_id, released).await {
            tracing::warn!(error = %e, "cannot write the heartbeat to PostgreSQL");
            return;
        }
        self.drop_adopted(transport).await;
        if !transport.draining() {
            self.adopt(transport).await;
        }
    }

    /// Takes over dead nodes' shadow copies, a batch per transaction, until none is left.
    async fn adopt(&self, transport: &Transport) {
        let s = &self.shared;
        let Some(shadows) = &s.shadows else { return };
        loop {
            let takeover = s.config.shadow_takeover_after;
            match shadows.adopt(&s.config.node, &s.db_id, takeover, ADOPT_BATCH, transport).await {
                Ok(0) => return,
                Ok(n) => {
                    tracing::info!(messages = n, "adopted shadow copies of a dead or drained node");
                    s.alerts.raise(
                        AlertClass::System,
                        Severity::Warning,
                        format!("cluster: adopted {n} messages from the shadow copies of a dead or drained node"),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "adopting shadow copies failed; trying again at the next heartbeat");
                    return;
                }
            }
        }
    }

    /// Drops, without delivering them, this node's messages that a peer adopted.
    async fn drop_adopted(&self, transport: &Transport) {
        let s = &self.shared;
        let Some(shadows) = &s.shadows else { return };
        let mids = match shadows.adopted_from(&s.config.node, &s.db_id).await {
            Ok(mids) if mids.is_empty() => return,
            Ok(mids) => mids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask PostgreSQL which messages peers adopted");
                return;
            }
        };
        transport.drop_adopted(&mids).await;
        if let Err(e) = shadows.forget_adopted(&s.config.node, &s.db_id, &mids).await {
            tracing::warn!(error = %e, "cannot clear the adoption records");
        }
    }

    /// Deletes the shadow rows of disposed messages in batches.
    async fn delete_disposed(self, mut rx: mpsc::UnboundedReceiver<Mid>, shutdown: CancellationToken) {
        let s = &self.shared;
        let Some(shadows) = &s.shadows else { return };
        let mut batch: Vec<Mid> = Vec::new();
        loop {
            let stop = tokio::select! {
                n = rx.recv_many(&mut batch, DELETE_BATCH) => n == 0,
                _ = shutdown.cancelled() => true,
            };
            if !stop && batch.len() < DELETE_BATCH {
                // Gathers a batch for a moment (or until it is full).
                let _ = tokio::time::timeout(DELETE_EVERY, async {
                    while batch.len() < DELETE_BATCH {
                        let room = DELETE_BATCH - batch.len();
                        if rx.recv_many(&mut batch, room).await == 0 {
                            break;
                        }
                    }
                })
                .await;
            }
            while let Ok(mid) = rx.try_recv() {
                batch.push(mid);
            }
            if !batch.is_empty() {
                match shadows.delete(&s.config.node, &s.db_id, &batch).await {
                    Ok(_) => batch.clear(),
                    // Kept, and tried again with the next batch: a row left behind would be adopted by a
                    // survivor should this node die, and its message delivered again.
                    Err(e) => tracing::warn!(error = %e, pending = batch.len(), "cannot delete shadow copies"),
                }
            }
            if stop {
                return;
            }
        }
    }

    /// Starts draining: intake stops (`421 4.3.2`, `/health` 503); delivery goes on until the node is empty
    /// or `deadline` passed, then the remaining shadow rows are released for peers to adopt.
    pub fn drain(&self, transport: &Transport, deadline: Duration) {
        transport.start_draining();
        let mut drain = self.shared.drain.lock().unwrap_or_else(|e| e.into_inner());
        let at = Instant::now() + deadline;
        drain.deadline = Some(drain.deadline.map_or(at, |d| d.min(at)));
        tracing::warn!(deadline = ?deadline, "draining: new mail is refused, queued mail is delivered");
    }

    /// At each heartbeat while draining: past the deadline with mail left, queues are suspended (this node
    /// stops delivering) and the shadow rows released for adoption.
    async fn follow_drain(&self, transport: &Transport, left: u64) {
        let s = &self.shared;
        let due = {
            let drain = s.drain.lock().unwrap_or_else(|e| e.into_inner());
            drain.deadline.is_some_and(|d| Instant::now() >= d) && !drain.released && left > 0
        };
        if !due {
            return;
        }
        let Some(shadows) = &s.shadows else { return };
        let ids: Vec<String> = transport
            .queues()
            .into_iter()
            .filter(|q| q.status != "Suspended" && !q.identity.ends_with("\\Poison"))
            .map(|q| q.identity)
            .collect();
        if !ids.is_empty()
            && let Err(e) = transport.suspend_queues(&ids, "cluster drain").await
        {
            tracing::error!(error = %e, "drain: cannot suspend the queues; shadow copies not released");
            return;
        }
        match shadows.release(&s.config.node).await {
            Ok(()) => {
                s.drain.lock().unwrap_or_else(|e| e.into_inner()).released = true;
                s.alerts.raise(
                    AlertClass::System,
                    Severity::Warning,
                    format!("cluster: drain deadline passed with {left} messages left; released for peers to adopt"),
                );
            }
            Err(e) => tracing::error!(error = %e, "drain: cannot release the shadow copies"),
        }
    }

    /// This node as status shows it.
    pub fn status(&self, transport: &Transport) -> api::ClusterStatus {
        let s = &self.shared;
        let left = transport.message_count();
        let released = s.drain.lock().unwrap_or_else(|e| e.into_inner()).released;
        api::ClusterStatus {
            node: s.config.node.clone(),
            redis: s.config.redis.clone(),
            postgres: s.config.postgres.as_deref().map(redact),
            admin_url: s.config.admin_url.clone(),
            db_id: s.db_id.clone(),
            limits: if s.fallback.load(Ordering::Relaxed) { "fallback" } else { "shared" }.to_owned(),
            live_nodes: s.live_nodes.load(Ordering::Relaxed),
            unshadowed_since_start: s.unshadowed.load(Ordering::Relaxed),
            state: match (transport.draining(), released) {
                (false, _) => "active".to_owned(),
                (true, false) => format!("draining: {left} left"),
                (true, true) => format!("released: {left} left"),
            },
        }
    }

    /// Every node Redis knows, with its state on the Redis server's clock.
    pub async fn nodes(&self) -> Result<Vec<api::ClusterNode>, RedisError> {
        let s = &self.shared;
        let now = s.redis.now_ms().await?;
        let mut nodes: Vec<api::ClusterNode> = s
            .redis
            .nodes()
            .await?
            .into_iter()
            .map(|beat| {
                let age = now.saturating_sub(beat.at_ms);
                let interval = beat.interval_ms.max(1) as i64;
                let state = if age > 3 * interval {
                    "dead"
                } else if beat.draining {
                    "draining"
                } else {
                    "active"
                };
                api::ClusterNode {
                    node: beat.node,
                    admin_url: beat.admin_url,
                    version: beat.version,
                    db_id: beat.db_id,
                    state: state.to_owned(),
                    stale: age > interval * 3 / 2,
                    heartbeat_age_ms: age,
                    draining_left: beat.draining_left,
                }
            })
            .collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }

    /// The nodes, and the live ones' queues, each tagged with its node (a node's entry expires three
    /// intervals after its last heartbeat).
    pub async fn digests(&self) -> Result<(Vec<api::ClusterNode>, Vec<(String, Vec<api::Queue>)>), RedisError> {
        let nodes = self.nodes().await?;
        let live: Vec<String> = nodes.iter().filter(|n| n.state != "dead").map(|n| n.node.clone()).collect();
        let digests = self.shared.redis.digests(&live).await?;
        Ok((nodes, digests.into_iter().map(|d| (d.heartbeat.node, d.queues)).collect()))
    }

    /// Stores a cluster-wide queue action as desired state and announces it.
    pub async fn put_action(&self, action: &str, filter: &str, origin: &str) -> Result<api::ClusterAction, RedisError> {
        let stored = self.shared.redis.put_action(action, filter, origin).await?;
        self.shared.actions_changed.notify_one();
        Ok(stored)
    }

    /// The desired state of cluster-wide actions.
    pub async fn actions(&self) -> Result<Vec<api::ClusterAction>, RedisError> {
        self.shared.redis.actions().await
    }

    /// Waits until an action is announced, or `at_most` passed (pub/sub can drop messages: the caller
    /// looks at the desired state either way). Keeps a subscription open while Redis answers.
    pub async fn watch_actions(&self, shutdown: CancellationToken, changed: Arc<tokio::sync::Notify>) {
        use futures_util::StreamExt;
        loop {
            match self.shared.redis.subscribe().await {
                Ok(mut pubsub) => {
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(_) => changed.notify_one(),
                                None => break,
                            },
                            _ = self.shared.actions_changed.notified() => changed.notify_one(),
                            _ = shutdown.cancelled() => return,
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot subscribe to cluster actions"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    fn redis_reachable(&self) {
        if self.shared.fallback.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis is reachable again: per-next-hop limits are shared");
            self.shared.alerts.raise(
                AlertClass::System,
                Severity::Information,
                "cluster: Redis is reachable again; per-next-hop connection limits are shared by the cluster",
            );
        }
    }

    fn redis_unreachable(&self, why: &RedisError) {
        if !self.shared.fallback.swap(true, Ordering::Relaxed) {
            let live = self.shared.live_nodes.load(Ordering::Relaxed);
            tracing::warn!(error = %why, live, "Redis is unreachable: each limit falls back to this node's share");
            self.shared.alerts.raise_keyed(
                "cluster-redis",
                AlertClass::System,
                Severity::Warning,
                format!(
                    "cluster: Redis is unreachable ({why}); per-next-hop connection limits fall back to this node's \
                     share (limit / {live} live nodes, at least 1) until it answers again"
                ),
            );
        }
    }
}

impl ClusterHooks for Cluster {
    fn lease(&self, domain: &str, limit: usize) -> BoxFuture<'static, Lease> {
        let shared = self.shared.clone();
        let domain = domain.to_ascii_lowercase();
        Box::pin(async move { Box::new(leases::acquire(shared, domain, limit).await) as Lease })
    }

    fn lease_wanted(&self, domain: &str) -> BoxFuture<'static, bool> {
        let shared = self.shared.clone();
        let domain = domain.to_ascii_lowercase();
        Box::pin(async move { shared.redis.lease_wanted(&domain).await.unwrap_or(false) })
    }

    fn throttle(&self, domain: &str, per_minute: u32) -> BoxFuture<'static, Duration> {
        let shared = self.shared.clone();
        let domain = domain.to_ascii_lowercase();
        Box::pin(async move {
            match shared.redis.throttle(&domain, sluice_transport::emission_interval(per_minute)).await {
                Ok(wait) => {
                    Cluster { shared }.redis_reachable();
                    wait
                }
                Err(e) => {
                    // This node's share of the rate, on its own clock.
                    let cluster = Cluster { shared: shared.clone() };
                    cluster.redis_unreachable(&e);
                    let live = shared.live_nodes.load(Ordering::Relaxed).max(1) as u32;
                    let share = (per_minute / live).max(1);
                    shared.throttles.reserve(&domain, share, Instant::now())
                }
            }
        })
    }

    fn shadows(&self) -> bool {
        self.shared.shadows.is_some()
    }

    fn shadow(&self, mid: Mid, envelope: Arc<Envelope>, body: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let Some(shadows) = &shared.shadows else { return Ok(()) };
            let written = shadows.insert(mid, &envelope, body).await;
            written.map_err(|e| {
                shared.unshadowed.fetch_add(1, Ordering::Relaxed);
                e.to_string()
            })
        })
    }

    fn disposed(&self, mid: Mid) {
        let _ = self.shared.disposed.send(mid);
    }

    fn reject_on_shadow_failure(&self) -> bool {
        self.shared.config.reject_on_shadow_failure
    }
}

const DB_ID_FILE: &str = "cluster-id";

/// The queue database's id: made once, beside its files, so that a node whose database was replaced
/// (lost disk, new install) is known as a new node and its old shadow copies adopted.
fn db_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join(DB_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let id = format!(
        "{:016x}{:016x}",
        std::collections::hash_map::RandomState::new().hash_one(nanos),
        std::collections::hash_map::RandomState::new().hash_one(std::process::id())
    );
    let tmp = dir.join(".cluster-id.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(id.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(id)
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redact("postgres://sluice:secret@db.example/sluice"), "postgres://sluice@db.example/sluice");
        assert_eq!(redact("postgres://db.example/sluice"), "postgres://db.example/sluice");
    }

    #[test]
    fn the_database_id_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = db_id(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(db_id(dir.path()).unwrap(), first);
        std::fs::remove_file(dir.path().join(DB_ID_FILE)).unwrap();
        assert_ne!(db_id(dir.path()).unwrap(), first, "a new database is a new node");
    }
}
