//! The cluster endpoints (`/api/v1/cluster/...`): nodes, the merged digest, cluster-wide actions, drain.

use serde::{Deserialize, Serialize};

use crate::DigestRow;

/// A node, as `GET /api/v1/cluster/nodes` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterNode {
    pub node: String,
    /// How peers reach its admin API.
    pub admin_url: String,
    pub version: String,
    /// Its queue database's id: a node that comes back with another one is a new node.
    pub db_id: String,
    /// `active`, `draining` or `dead` (no heartbeat for three intervals).
    pub state: String,
    /// The heartbeat is older than one and a half intervals.
    pub stale: bool,
    /// Milliseconds since its last heartbeat, on the Redis server's clock.
    pub heartbeat_age_ms: i64,
    /// While draining: the messages it still holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_left: Option<u64>,
}

/// `GET /api/v1/cluster/digest`: the live nodes' queues grouped as Get-QueueDigest groups one node's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterDigest {
    pub items: Vec<DigestRow>,
    pub next: Option<String>,
    /// The nodes whose queues are counted (stale ones marked) and the dead ones, left out.
    pub nodes: Vec<ClusterNode>,
}

/// This node's part in the cluster (`GET /api/v1/cluster/status`, and `cluster` in `GET /api/v1/status`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterStatus {
    pub node: String,
    pub redis: String,
    /// Without its password; absent without shadow copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    pub admin_url: String,
    pub db_id: String,
    /// `shared` (leases in Redis) or `fallback` (Redis unreachable: this node's share of each limit).
    pub limits: String,
    /// Live nodes at the last heartbeat.
    pub live_nodes: usize,
    /// Messages accepted without a shadow copy since start.
    pub unshadowed_since_start: u64,
    /// `active`, `draining: N left`, or `released: N left` (the drain deadline passed; peers adopt).
    pub state: String,
}

/// A cluster-wide queue action, kept as desired state that every node reconciles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterAction {
    /// `suspend` or `resume`.
    pub action: String,
    /// The filter over queue properties, as `GET /api/v1/queues` takes it.
    pub filter: String,
    /// Grows with every action stored.
    pub id: u64,
    /// Who asked.
    pub origin: String,
}

/// The body of `POST /api/v1/cluster/drain`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// How long to keep delivering before the remaining mail is released to peers (default `1h`).
    #[serde(default)]
    pub deadline: Option<String>,
}
