//! The Redis (or Valkey) side of a cluster: one multiplexed connection, opened again after a failure,
//! and the keys of the connection leases, the nodes' heartbeats and the desired state of queue actions.
//!
//! Keys (all under `sluice:`):
//! - `sluice:lease:<domain>`: a sorted set of the connections open to a next hop, each member a lease
//!   (`<node>:<n>`) scored by its expiry on the Redis server's clock.
//! - `sluice:node:<node>`: a node's heartbeat with its queues (JSON), expiring after three intervals.
//! - `sluice:nodes`: every node ever seen, its last heartbeat without the queues (a hash; no expiry), so
//!   that a dead node is still listed.
//! - `sluice:actions`: the desired state of cluster-wide queue actions, filter → JSON; announced on the
//!   channel `sluice:actions`.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};
use serde::{Deserialize, Serialize};

/// How long a call to Redis may take before it counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failure, Redis is not tried again for this long (each delivery connection would wait otherwise).
const RETRY_AFTER: Duration = Duration::from_secs(2);

pub(crate) const ACTIONS_CHANNEL: &str = "sluice:actions";
const ACTIONS: &str = "sluice:actions";
const NODES: &str = "sluice:nodes";

/// Prunes expired leases, then adds one if fewer than the limit are held. Timed by the server's clock, so
/// that nodes whose clocks disagree still agree on expiry.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0";

/// Moves a held lease's expiry on; 0 when it had expired (and may have been taken by another node).
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0";

/// GCRA, virtual scheduling: the next hop's next free slot (microseconds on the server's clock) is taken and
/// moved one emission interval on; returns how long to wait for the slot taken, in microseconds.
const THROTTLE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', tat + interval), 'PX', math.floor((tat + interval - now) / 1000) + 1000)
return tat - now";

/// Writes a heartbeat stamped with the server's clock: the live key with its TTL and the node's entry.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], now .. ' ' .. ARGV[1], 'PX', tonumber(ARGV[3]))
redis.call('HSET', KEYS[2], ARGV[4], now .. ' ' .. ARGV[2])
return now";

/// What a node says of itself at each heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub node: String,
    pub admin_url: String,
    pub version: String,
    /// The node's queue database id: a node that comes back with another is a new node.
    pub db_id: String,
    pub draining: bool,
    /// While draining: the messages still held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_left: Option<u64>,
    /// The heartbeat interval in milliseconds (how stale the heartbeat may be).
    pub interval_ms: u64,
    /// Stamped by Redis: milliseconds since the epoch on the Redis server's clock.
    #[serde(default)]
    pub at_ms: i64,
}

/// A node's live heartbeat with its queues.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeDigest {
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    pub queues: Vec<sluice_api_types::Queue>,
}

pub(crate) use sluice_api_types::ClusterAction as Action;

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("Redis is unreachable (retrying in a moment)")]
    Backoff,
    #[error("Redis did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout,
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("bad data in Redis: {0}")]
    Data(String),
}

/// The connection to Redis, opened on first use and again after a failure.
pub(crate) struct Redis {
    client: Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    down_until: std::sync::Mutex<Option<Instant>>,
    acquire: Script,
    renew: Script,
    heartbeat: Script,
    throttle: Script,
}

impl Redis {
    pub(crate) fn new(url: &str) -> Result<Redis, RedisError> {
        Ok(Redis {
            client: Client::open(url)?,
            conn: tokio::sync::Mutex::new(None),
            down_until: std::sync::Mutex::new(None),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            heartbeat: Script::new(HEARTBEAT),
            throttle: Script::new(THROTTLE),
        })
    }

    /// A connection: the open one, or a new one unless Redis failed a moment ago.
    async fn conn(&self) -> Result<MultiplexedConnection, RedisError> {
        if self.down_until.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|t| Instant::now() < t) {
            return Err(RedisError::Backoff);
        }
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        match self.client.get_multiplexed_async_connection_with_config(&config).await {
            Ok(c) => {
                *slot = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                self.failed();
                Err(e.into())
            }
        }
    }

    /// Forgets the connection and holds off new ones for a moment.
    fn failed(&self) {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + RETRY_AFTER);
        if let Ok(mut slot) = self.conn.try_lock() {
            *slot = None;
        }
    }

    /// Runs one call, bounded in time; a failure drops the connection.
    async fn call<T, F>(&self, f: impl FnOnce(MultiplexedConnection) -> F) -> Result<T, RedisError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn().await?;
        match tokio::time::timeout(CALL_TIMEOUT, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.failed();
                Err(e.into())
            }
            Err(_) => {
                self.failed();
                Err(RedisError::Timeout)
            }
        }
    }

    /// Takes one of `limit` leases on connections to `domain` for `ttl`; false when all are held.
    pub(crate) async fn acquire(
        &self,
        domain: &str,
        lease: &str,
        limit: usize,
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let key = lease_key(domain);
        let ttl = ttl.as_millis() as u64;
        self.call(|mut c| async move {
            let got: i64 = self.acquire.key(key).arg(lease).arg(limit).arg(ttl).invoke_async(&mut c).await?;
            Ok(got == 1)
        })
        .await
    }

    /// Renews a lease; false when it had expired meanwhile.
    pub(crate) async fn renew(&self, domain: &str, lease: &str, ttl: Duration) -> Result<bool, RedisError> {
        let key = lease_key(domain);
        let ttl = ttl.as_millis() as u64;
        self.call(|mut c| async move {
            let held: i64 = self.renew.key(key).arg(lease).arg(ttl).invoke_async(&mut c).await?;
            Ok(held == 1)
        })
        .await
    }

    /// Takes the next slot of `domain`'s messages, one `interval` after the last taken: how long to wait.
    pub(crate) async fn throttle(&self, domain: &str, interval: Duration) -> Result<Duration, RedisError> {
        let key = hop_key("rate", domain);
        let interval = interval.as_micros() as u64;
        let wait: i64 =
            self.call(|mut c| async move { self.throttle.key(key).arg(interval).invoke_async(&mut c).await }).await?;
        Ok(Duration::from_micros(wait.max(0) as u64))
    }

    /// Says that a worker waits for one of `domain`'s leases (for the next second).
    pub(crate) async fn want_lease(&self, domain: &str) -> Result<(), RedisError> {
        let key = hop_key("lease-wanted", domain);
        self.call(|mut c| async move {
            redis::cmd("SET").arg(key).arg(1).arg("PX").arg(1000).query_async::<()>(&mut c).await
        })
        .await
    }

    /// Whether a worker waits for one of `domain`'s leases.
    pub(crate) async fn lease_wanted(&self, domain: &str) -> Result<bool, RedisError> {
        let key = hop_key("lease-wanted", domain);
        self.call(|mut c| async move { redis::cmd("EXISTS").arg(key).query_async::<i64>(&mut c).await })
            .await
            .map(|n| n > 0)
    }

    /// Gives a lease back.
    pub(crate) async fn release(&self, domain: &str, lease: &str) -> Result<(), RedisError> {
        let key = lease_key(domain);
        self.call(|mut c| async move { redis::cmd("ZREM").arg(key).arg(lease).query_async::<i64>(&mut c).await })
            .await
            .map(drop)
    }

    /// Writes this node's heartbeat and queues, live for `ttl`.
    pub(crate) async fn heartbeat(
        &self,
        beat: &Heartbeat,
        queues: &[sluice_api_types::Queue],
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let summary = serde_json::to_string(beat).map_err(|e| RedisError::Data(e.to_string()))?;
        let full = serde_json::to_string(&NodeDigest { heartbeat: beat.clone(), queues: queues.to_vec() })
            .map_err(|e| RedisError::Data(e.to_string()))?;
        let key = node_key(&beat.node);
        self.call(|mut c| async move {
            self.heartbeat
                .key(key)
                .key(NODES)
                .arg(full)
                .arg(summary)
                .arg(ttl.as_millis() as u64)
                .arg(&beat.node)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(drop)
    }

    /// The Redis server's clock, in milliseconds since the epoch.
    pub(crate) async fn now_ms(&self) -> Result<i64, RedisError> {
        let (s, us): (i64, i64) =
            self.call(|mut c| async move { redis::cmd("TIME").query_async(&mut c).await }).await?;
        Ok(s * 1000 + us / 1000)
    }

    /// Every node ever seen, with its last heartbeat.
    pub(crate) async fn nodes(&self) -> Result<Vec<Heartbeat>, RedisError> {
        let all: Vec<(String, String)> =
            self.call(|mut c| async move { redis::cmd("HGETALL").arg(NODES).query_async(&mut c).await }).await?;
        all.iter().map(|(_, v)| stamped::<Heartbeat>(v).map(|(at, b)| Heartbeat { at_ms: at, ..b })).collect()
    }

    /// The live nodes' heartbeats with their queues.
    pub(crate) async fn digests(&self, nodes: &[String]) -> Result<Vec<NodeDigest>, RedisError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = nodes.iter().map(|n| node_key(n)).collect();
        let values: Vec<Option<String>> =
            self.call(|mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await }).await?;
        values
            .iter()
            .flatten()
            .map(|v| {
                stamped::<NodeDigest>(v).map(|(at, mut d)| {
                    d.heartbeat.at_ms = at;
                    d
                })
            })
            .collect()
    }

    /// Stores a cluster-wide action (replacing any on the same filter) and announces it.
    pub(crate) async fn put_action(&self, action: &str, filter: &str, origin: &str) -> Result<Action, RedisError> {
        let id: u64 = self
            .call(|mut c| async move { redis::cmd("INCR").arg("sluice:actions:id").query_async(&mut c).await })
            .await?;
        let entry = Action { action: action.to_owned(), filter: filter.to_owned(), id, origin: origin.to_owned() };
        let json = serde_json::to_string(&entry).map_err(|e| RedisError::Data(e.to_string()))?;
        self.call(|mut c| async move {
            redis::pipe()
                .cmd("HSET")
                .arg(ACTIONS)
                .arg(filter)
                .arg(json)
                .ignore()
                .cmd("PUBLISH")
                .arg(ACTIONS_CHANNEL)
                .arg(id)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await?;
        Ok(entry)
    }

    /// The desired state: every stored action, oldest first.
    pub(crate) async fn actions(&self) -> Result<Vec<Action>, RedisError> {
        let all: Vec<(String, String)> =
            self.call(|mut c| async move { redis::cmd("HGETALL").arg(ACTIONS).query_async(&mut c).await }).await?;
        let mut actions: Vec<Action> = all
            .iter()
            .map(|(_, v)| serde_json::from_str(v).map_err(|e| RedisError::Data(e.to_string())))
            .collect::<Result<_, _>>()?;
        actions.sort_by_key(|a| a.id);
        Ok(actions)
    }

    /// A subscription to the announcements of new actions.
    pub(crate) async fn subscribe(&self) -> Result<redis::aio::PubSub, RedisError> {
        let mut pubsub = tokio::time::timeout(CALL_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| RedisError::Timeout)??;
        pubsub.subscribe(ACTIONS_CHANNEL).await?;
        Ok(pubsub)
    }
}

fn lease_key(domain: &str) -> String {
    hop_key("lease", domain)
}

/// `sluice:<kind>:<next hop>`, the next hop in lower case: one key per next hop whatever its spelling.
fn hop_key(kind: &str, domain: &str) -> String {
    format!("sluice:{kind}:{}", domain.to_ascii_lowercase())
}

fn node_key(node: &str) -> String {
    format!("sluice:node:{node}")
}

/// `<ms> <json>` as the heartbeat script writes it.
fn stamped<T: serde::de::DeserializeOwned>(value: &str) -> Result<(i64, T), RedisError> {
    let (at, json) = value.split_once(' ').ok_or_else(|| RedisError::Data(format!("not a heartbeat: {value:.40}")))?;
    let at = at.parse().map_err(|_| RedisError::Data(format!("not a time: {at:?}")))?;
    Ok((at, serde_json::from_str(json).map_err(|e| RedisError::Data(e.to_string()))?))
}
