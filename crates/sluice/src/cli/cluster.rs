//! `sluice cluster status|nodes|digest|suspend|resume|drain`: the nodes of a cluster seen from one of them
//! (`/api/v1/cluster/...`).

use std::process::ExitCode;

use clap::Subcommand;
use sluice_api_types as api;

use super::table::Table;
use super::{DigestArgs, Output, query, say};

#[derive(Subcommand, Debug)]
pub enum ClusterVerb {
    /// This node's part in the cluster, and every node with its state.
    Status,
    /// The queues of every live node, grouped as `queue digest` groups one node's (Get-QueueDigest -Dag).
    Digest {
        #[command(flatten)]
        digest: DigestArgs,
    },
    /// Suspends, on every node, the queues --filter selects, including those made later.
    Suspend {
        #[arg(long)]
        filter: String,
    },
    /// Resumes, on every node, the suspended queues --filter selects.
    Resume {
        #[arg(long)]
        filter: String,
    },
    /// Drains this node: new mail is refused, queued mail is delivered until --deadline (default 1h), then
    /// released for the other nodes to adopt.
    Drain {
        #[arg(long)]
        deadline: Option<String>,
    },
}

pub(super) fn cluster(out: &Output<'_>, verb: ClusterVerb) -> anyhow::Result<ExitCode> {
    match verb {
        ClusterVerb::Status => {
            let r = out.call("GET", "/api/v1/cluster/status", None)?;
            if out.json {
                return out.print(&r, |_| Ok(()));
            }
            let status: api::ClusterStatus = serde_json::from_value(r.json()?)?;
            let nodes = out.call("GET", "/api/v1/cluster/nodes", None)?;
            let nodes: api::List<api::ClusterNode> = serde_json::from_value(nodes.json()?)?;
            show_status(&status, &nodes.items);
            Ok(ExitCode::SUCCESS)
        }
        ClusterVerb::Digest { digest } => {
            let r = out.call("GET", &format!("/api/v1/cluster/digest{}", digest.query()), None)?;
            out.print(&r, |v| {
                let digest: api::ClusterDigest = serde_json::from_value(v)?;
                super::show::digest(&api::List { items: digest.items, next: digest.next })?;
                for n in digest.nodes.iter().filter(|n| n.state == "dead" || n.stale) {
                    let why = if n.state == "dead" { "dead, not counted" } else { "stale heartbeat" };
                    say!("{}: {why} (last heartbeat {} s ago)", n.node, n.heartbeat_age_ms / 1000);
                }
                Ok(())
            })
        }
        ClusterVerb::Suspend { filter } => action(out, "suspend", filter),
        ClusterVerb::Resume { filter } => action(out, "resume", filter),
        ClusterVerb::Drain { deadline } => {
            let body = serde_json::json!({ "deadline": deadline });
            let r = out.call("POST", "/api/v1/cluster/drain", Some(&body))?;
            out.print(&r, |v| {
                let status: api::ClusterStatus = serde_json::from_value(v)?;
                say!("{}: {}", status.node, status.state);
                Ok(())
            })
        }
    }
}

fn action(out: &Output<'_>, verb: &str, filter: String) -> anyhow::Result<ExitCode> {
    let r = out.call("POST", &format!("/api/v1/cluster/queues/{verb}{}", query(&[("filter", Some(filter))])), None)?;
    out.print(&r, |v| {
        let a: api::ClusterAction = serde_json::from_value(v)?;
        say!("cluster-wide {} stored as action {}: every node applies it within a heartbeat", a.action, a.id);
        Ok(())
    })
}

fn show_status(s: &api::ClusterStatus, nodes: &[api::ClusterNode]) {
    say!("node:        {} ({})", s.node, s.state);
    say!("admin URL:   {}", s.admin_url);
    say!("redis:       {} (limits {}, {} live nodes)", s.redis, s.limits, s.live_nodes);
    match &s.postgres {
        Some(p) => say!("postgres:    {p} (unshadowed since start: {})", s.unshadowed_since_start),
        None => say!("postgres:    none (no shadow copies)"),
    }
    say!("database id: {}", s.db_id);
    say!("");
    let mut t = Table::new(&["Node", "State", "Heartbeat", "AdminUrl", "Version"]).right(&["Heartbeat"]);
    for n in nodes {
        let mut state = n.state.clone();
        if let Some(left) = n.draining_left {
            state = format!("{state}: {left} left");
        }
        if n.stale && n.state != "dead" {
            state.push_str(" (stale)");
        }
        t.row(vec![
            n.node.clone(),
            state,
            format!("{:.1}s ago", n.heartbeat_age_ms as f64 / 1000.0),
            n.admin_url.clone(),
            n.version.clone(),
        ]);
    }
    t.print();
}
