//! The administrator's commands, `sluice <noun> <verb>`, over the admin API: tables for people, `--json`
//! for scripts (the API's JSON as it came), one clear line on standard error and a sysexits code when
//! something fails.

mod client;
mod cluster;
mod ctime;
mod mailq;
mod quarantine;
mod show;
mod status;
mod table;
mod workqueue;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use sluice_api_types as api;

use crate::fail;
use client::{Api, Response, Target};
pub use quarantine::QuarantineVerb;
pub use workqueue::{EngineName, WorkqueueVerb};

/// `println!` for the commands' output: a reader that goes away (`sluice mailq | head`) ends the command
/// quietly instead of a panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::write_out(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use say;

/// Writes `text` to standard output; exits 0 when the reader has gone, 74 on any other failure.
pub(crate) fn write_out(text: &str) {
    write_out_bytes(text.as_bytes());
}

/// [`write_out`] for bytes as they came (a log read in pieces may cut a character in two).
pub(crate) fn write_out_bytes(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("sluice: cannot write to standard output: {e}");
        std::process::exit(74);
    }
}

/// The exit codes of the administrator's commands (sysexits.h).
pub mod exit {
    /// A wrong argument, or a request the API refused as malformed (`400`, e.g. a filter that does not parse).
    pub const USAGE: u8 = 64;
    /// The object is not in a state the action applies to (`409`, e.g. resuming a queue that is not suspended).
    pub const DATAERR: u8 = 65;
    /// No such queue, message or request (`404`).
    pub const NOINPUT: u8 = 66;
    /// The admin API cannot be reached, or is not ready (`503`).
    pub const UNAVAILABLE: u8 = 69;
    /// The server failed (`5xx`) or gave an answer that cannot be read.
    pub const SOFTWARE: u8 = 70;
    /// A file cannot be written (`message export -o`).
    pub const CANTCREAT: u8 = 73;
    /// No token, or the wrong one (`401`, `403`).
    pub const NOPERM: u8 = 77;
    /// The configuration file cannot be read.
    pub const CONFIG: u8 = 78;
}

/// Printed under `sluice --help`.
pub const EXIT_CODES: &str = "Exit codes of the commands that talk to the admin API: 0 done; 64 bad arguments or a \
request the API refused (a filter that does not parse); 65 not in a state the action applies to (409); 66 no such \
queue, message or request (404); 69 the admin API cannot be reached; 70 the server failed; 73 a file cannot be \
written; 77 no token or the wrong one (401); 78 the configuration file cannot be read.";

/// How the commands find the admin API, and how they answer.
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// The admin API, `http://HOST:PORT` or `https://HOST:PORT` (default: `[admin] listen` of the
    /// configuration file).
    #[arg(long, global = true, env = "SLUICE_API", value_name = "URL")]
    api: Option<String>,
    /// The bearer token (default: `[admin] token` of the configuration file).
    #[arg(long, global = true, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The configuration file (default: $SLUICE_CONFIG, /etc/sluice/sluice.toml, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the API's JSON as it came, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

/// The commands that talk to a running server.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Queues: list, show, suspend, resume, retry, digest (Get-Queue, Suspend-Queue, Resume-Queue,
    /// Retry-Queue, Get-QueueDigest).
    Queue {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        verb: QueueVerb,
    },
    /// Messages: list, show, suspend, resume, remove, export (Get-Message, Suspend-Message,
    /// Resume-Message, Remove-Message, Export-Message).
    Message {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        verb: MessageVerb,
    },
    /// Safety Net resubmit requests: add, list, remove, enable, disable (Add-ResubmitRequest and its kin).
    Resubmit {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        verb: ResubmitVerb,
    },
    /// The server's status, counters and gauges (the appliance's `status`; `--detail`: `status detail`).
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// Every counter with its reset, uptime and lifetime columns, the gauges, rates and back pressure.
        #[arg(long)]
        detail: bool,
    },
    /// Counters: `reset` starts their reset column again (the appliance's `resetcounters`).
    Counters {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        verb: CountersVerb,
    },
    /// Recent alerts, newest first.
    Alerts {
        #[command(flatten)]
        api: ApiArgs,
        /// This severity and the more urgent ones: Information, Warning or Critical.
        #[arg(long)]
        severity: Option<String>,
        /// Only this class: System, Hardware, Updater, AntiVirus, AntiSpam, Queue.
        #[arg(long)]
        class: Option<String>,
        /// Only alerts raised at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// The running server's configuration: `reload` (as SIGHUP).
    Config {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        verb: ConfigVerb,
    },
    /// Message tracking (Get-MessageTrackingLog): each event of the messages found, oldest first, one line
    /// each (RECEIVE, ... DELIVER, DEFER, FAIL, DSN).
    Track {
        #[command(flatten)]
        api: ApiArgs,
        /// The envelope sender (`*` is a wildcard).
        #[arg(long)]
        sender: Option<String>,
        /// A recipient (`*` is a wildcard).
        #[arg(long)]
        recipient: Option<String>,
        /// The `Message-ID:` header.
        #[arg(long)]
        message_id: Option<String>,
        #[arg(long)]
        mid: Option<u64>,
        /// Only this event: RECEIVE, SUBMIT, ROUTE, DELIVER, DEFER, FAIL, DSN, SUSPEND, RESUME, REMOVE, ...
        #[arg(long)]
        event: Option<String>,
        /// From this time (RFC 3339).
        #[arg(long)]
        start: Option<String>,
        /// Until this time (RFC 3339).
        #[arg(long)]
        end: Option<String>,
        /// At most this many events (default 1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Where the previous page ended (its `next`), with the same criteria.
        #[arg(long)]
        bookmark: Option<String>,
    },
    /// The destinations with the most recipients waiting, or the sort given (the appliance's `tophosts`).
    Tophosts {
        #[command(flatten)]
        api: ApiArgs,
        /// active (default), connections, delivered, soft_bounced or hard_bounced.
        #[arg(long)]
        sort: Option<String>,
        /// At most this many (default 20).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// One destination: its counters, gauges, last activity and queues (the appliance's `hoststatus`).
    Hoststatus {
        #[command(flatten)]
        api: ApiArgs,
        /// The next hop domain (for a smart host: `host:port`).
        domain: String,
    },
    /// Every queued message, as Postfix's `mailq` shows it.
    Mailq {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The work queue, where messages are scanned: status, rate, pause, resume (the appliance's
    /// `workqueue`).
    Workqueue {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        verb: WorkqueueVerb,
    },
    /// The scanning engines: kind, rule set version, status, last update and error (the appliance's
    /// `antispamstatus`, `antivirusstatus`).
    Engines {
        #[command(flatten)]
        api: ApiArgs,
        /// The built-in anti-spam engine's rules instead: loaded, skipped (by reason) and the costliest.
        #[arg(long)]
        rules: bool,
        /// With --rules: how many of the costliest rules to list.
        #[arg(long, default_value_t = 20, requires = "rules")]
        slowest: u32,
    },
    /// Updates an engine's rules now; the progress goes to the updater log (`antispamupdate`,
    /// `antivirusupdate`).
    Update {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(value_enum)]
        engine: EngineName,
        /// Install the source's rules even when they are the version in force.
        #[arg(long)]
        force: bool,
    },
    /// A server log: `updater` (the appliance's `tail updater_logs`).
    Log {
        #[command(flatten)]
        api: ApiArgs,
        /// The log: updater.
        name: String,
        /// The last lines shown (default 100).
        #[arg(long, default_value_t = 100)]
        tail: u32,
        /// Keep showing what is added, until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
    /// Quarantined messages: list, release, delete.
    Quarantine {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        verb: QuarantineVerb,
    },
    /// The cluster this node is part of: status, digest, cluster-wide suspend and resume, drain.
    Cluster {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        verb: cluster::ClusterVerb,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueueVerb {
    /// The queues, as a table (Identity, DeliveryType, Status, MessageCount, Velocity, NextHopDomain, LastError).
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Only these (comma-separated): Empty, External, Internal or a delivery type.
        #[arg(long)]
        include: Option<String>,
        /// Not these (comma-separated), as --include.
        #[arg(long)]
        exclude: Option<String>,
    },
    /// One queue, every property.
    Show { identity: String },
    /// No new connections for the queue (or every queue --filter selects).
    Suspend {
        identity: Option<String>,
        #[arg(long)]
        filter: Option<String>,
    },
    /// Resumes a suspended queue (or every queue --filter selects).
    Resume {
        identity: Option<String>,
        #[arg(long)]
        filter: Option<String>,
    },
    /// Connects now instead of at the next retry; --resubmit routes the queue's messages again.
    Retry {
        identity: Option<String>,
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        resubmit: bool,
    },
    /// The queues summed by next hop domain, last error, delivery type, status or queue name (Get-QueueDigest).
    Digest {
        #[command(flatten)]
        digest: DigestArgs,
    },
}

/// The options of a digest (`queue digest`, `cluster digest`).
#[derive(clap::Args, Debug)]
pub struct DigestArgs {
    /// next_hop_domain (default), last_error, delivery_type, status or queue_name (and, for the cluster, node).
    #[arg(long)]
    group_by: Option<String>,
    #[arg(long)]
    filter: Option<String>,
    /// Delivery queues count from this many messages (default: `[transport] digest_threshold`).
    #[arg(long)]
    threshold: Option<u32>,
    /// None, Normal or Verbose.
    #[arg(long)]
    details: Option<String>,
    #[arg(long)]
    limit: Option<u32>,
}

impl DigestArgs {
    /// The digest query these options ask for.
    fn query(self) -> String {
        query(&[
            ("group_by", self.group_by),
            ("filter", self.filter),
            ("digest_threshold", self.threshold.map(|t| t.to_string())),
            ("details_level", self.details),
            ("result_size", self.limit.map(|l| l.to_string())),
        ])
    }
}

#[derive(Subcommand, Debug)]
pub enum MessageVerb {
    /// Message copies, as a table (Identity, FromAddress, Status, Size, MessageSourceName, SCL, Queue, Subject).
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Only the copies in this queue (an identity, e.g. `mx\16` or `Submission`).
        #[arg(long)]
        queue: Option<String>,
        /// With each copy's recipients.
        #[arg(long)]
        recipients: bool,
    },
    /// One message (`<server>\*\<mid>`: every copy), with its recipients.
    Show { identity: String },
    /// Holds copies where they are.
    Suspend {
        identities: Vec<String>,
        #[arg(long)]
        filter: Option<String>,
    },
    /// Releases suspended copies; a copy in Poison goes back to the categorizer.
    Resume {
        identities: Vec<String>,
        #[arg(long)]
        filter: Option<String>,
    },
    /// Removes copies, with a non-delivery report to the sender unless --no-ndr. By --filter it asks first
    /// on a terminal, and needs --yes otherwise.
    Remove {
        identities: Vec<String>,
        #[arg(long)]
        filter: Option<String>,
        /// No non-delivery report.
        #[arg(long)]
        no_ndr: bool,
        /// Do not ask.
        #[arg(long, short)]
        yes: bool,
    },
    /// Writes a suspended copy as an .eml file (to standard output without -o).
    Export {
        identity: String,
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// A filter, e.g. "FromAddress -like '*@example.com' -and Size -gt 1MB" (docs/operations.md).
    #[arg(long)]
    filter: Option<String>,
    /// Properties, `-` for descending: "-MessageCount,NextHopDomain".
    #[arg(long, allow_hyphen_values = true)]
    sort: Option<String>,
    /// At most this many (default 1000).
    #[arg(long)]
    limit: Option<u32>,
    /// Where the previous page ended (its `next`).
    #[arg(long)]
    bookmark: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ResubmitVerb {
    /// Resubmits what the Safety Net holds from a time window (Add-ResubmitRequest).
    Add {
        /// RFC 3339, e.g. 2026-12-03T06:00:00Z.
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        #[arg(long)]
        sender: Option<String>,
        #[arg(long)]
        recipient: Option<String>,
        #[arg(long)]
        message_id: Option<String>,
    },
    /// Every request with its progress.
    List,
    /// Removes a request.
    Remove { id: u64 },
    /// Lets a disabled request run again.
    Enable { id: u64 },
    /// Stops a request where it is.
    Disable { id: u64 },
}

#[derive(Subcommand, Debug)]
pub enum CountersVerb {
    /// Starts the reset column of every counter again.
    Reset,
}

#[derive(Subcommand, Debug)]
pub enum ConfigVerb {
    /// Reloads the configuration file; keys that need a restart are named and keep their running value.
    Reload,
}

impl AdminCommand {
    fn api_args(&self) -> &ApiArgs {
        match self {
            AdminCommand::Queue { api, .. }
            | AdminCommand::Message { api, .. }
            | AdminCommand::Resubmit { api, .. }
            | AdminCommand::Status { api, .. }
            | AdminCommand::Counters { api, .. }
            | AdminCommand::Alerts { api, .. }
            | AdminCommand::Config { api, .. }
            | AdminCommand::Track { api, .. }
            | AdminCommand::Tophosts { api, .. }
            | AdminCommand::Hoststatus { api, .. }
            | AdminCommand::Mailq { api }
            | AdminCommand::Workqueue { api, .. }
            | AdminCommand::Engines { api, .. }
            | AdminCommand::Update { api, .. }
            | AdminCommand::Log { api, .. }
            | AdminCommand::Quarantine { api, .. }
            | AdminCommand::Cluster { api, .. } => api,
        }
    }
}

/// Runs one administrator's command.
pub fn run(command: AdminCommand) -> anyhow::Result<ExitCode> {
    let a = command.api_args();
    let json = a.json;
    let api = Api::find(Target { api: a.api.clone(), token: a.token.clone(), config: a.config.clone() })?;
    let out = Output { api: &api, json };
    match command {
        AdminCommand::Queue { verb, .. } => queue(&out, verb),
        AdminCommand::Message { verb, .. } => message(&out, verb),
        AdminCommand::Resubmit { verb, .. } => resubmit(&out, verb),
        AdminCommand::Status { detail, .. } => {
            let r = out.call("GET", "/api/v1/status", None)?;
            out.print(&r, |v| show::status(&serde_json::from_value(v)?, detail))
        }
        AdminCommand::Counters { verb: CountersVerb::Reset, .. } => {
            let r = out.call("POST", "/api/v1/counters/reset", None)?;
            out.print(&r, |_| {
                say!("counters reset");
                Ok(())
            })
        }
        AdminCommand::Alerts { severity, class, since, limit, .. } => {
            let q = query(&[
                ("severity", severity),
                ("class", class),
                ("since", since),
                ("result_size", limit.map(|l| l.to_string())),
            ]);
            let r = out.call("GET", &format!("/api/v1/alerts{q}"), None)?;
            out.print(&r, |v| show::alerts(&serde_json::from_value(v)?))
        }
        AdminCommand::Config { verb: ConfigVerb::Reload, .. } => {
            let r = out.call("POST", "/api/v1/config/reload", None)?;
            out.print(&r, |v| show::reload(&serde_json::from_value(v)?))
        }
        AdminCommand::Track { sender, recipient, message_id, mid, event, start, end, limit, bookmark, .. } => {
            let q = query(&[
                ("sender", sender),
                ("recipient", recipient),
                ("internet_message_id", message_id),
                ("mid", mid.map(|m| m.to_string())),
                ("event_id", event),
                ("start", start),
                ("end", end),
                ("result_size", limit.map(|l| l.to_string())),
                ("bookmark", bookmark),
            ]);
            let r = out.call("GET", &format!("/api/v1/tracking{q}"), None)?;
            out.print(&r, |v| show::tracking(&serde_json::from_value(v)?))
        }
        AdminCommand::Tophosts { sort, limit, .. } => {
            let q = query(&[("sort", sort), ("result_size", limit.map(|l| l.to_string()))]);
            let r = out.call("GET", &format!("/api/v1/tophosts{q}"), None)?;
            out.print(&r, |v| show::tophosts(&serde_json::from_value(v)?))
        }
        AdminCommand::Hoststatus { domain, .. } => {
            let r = out.call("GET", &format!("/api/v1/hosts/{}", encode(&domain)), None)?;
            out.print(&r, |v| show::hoststatus(&serde_json::from_value(v)?))
        }
        AdminCommand::Mailq { .. } => mailq::run(&api, json),
        AdminCommand::Workqueue { verb, .. } => workqueue::workqueue(&out, verb),
        AdminCommand::Engines { rules: false, .. } => workqueue::engines(&out),
        AdminCommand::Engines { rules: true, slowest, .. } => workqueue::rules(&out, slowest),
        AdminCommand::Update { engine, force, .. } => workqueue::update(&out, engine, force),
        AdminCommand::Log { name, tail, follow, .. } => workqueue::log(&out, &name, tail, follow),
        AdminCommand::Quarantine { verb, .. } => quarantine::quarantine(&out, verb),
        AdminCommand::Cluster { verb, .. } => cluster::cluster(&out, verb),
    }
}

/// Where answers go: the API's JSON as it came, or what `human` makes of it.
struct Output<'a> {
    api: &'a Api,
    json: bool,
}

impl Output<'_> {
    /// One request; anything but a 2xx is an error with its exit code.
    fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> anyhow::Result<Response> {
        checked(self.api.request(method, path, body)?)
    }

    fn print(
        &self,
        r: &Response,
        human: impl FnOnce(serde_json::Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<ExitCode> {
        if self.json {
            let text = String::from_utf8_lossy(&r.body);
            write_out(&text);
            if !text.ends_with('\n') {
                write_out("\n");
            }
        } else {
            human(r.json()?)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// A 2xx answer as it is; any other as the error it names, with the exit code its status calls for.
pub(crate) fn checked(r: Response) -> anyhow::Result<Response> {
    if (200..300).contains(&r.status) {
        return Ok(r);
    }
    let body: Option<api::ErrorBody> = serde_json::from_slice(&r.body).ok();
    let mut message = match &body {
        Some(e) => e.error.clone(),
        None => String::from_utf8_lossy(&r.body).trim().chars().take(200).collect(),
    };
    if let Some(detail) = body.as_ref().and_then(|e| e.detail.as_ref()).filter(|d| !d.is_null()) {
        message.push_str(&format!(" ({detail})"));
    }
    let code = match r.status {
        400 | 405 | 413 | 422 => exit::USAGE,
        401 | 403 => exit::NOPERM,
        404 => exit::NOINPUT,
        409 => exit::DATAERR,
        503 => exit::UNAVAILABLE,
        _ => exit::SOFTWARE,
    };
    Err(fail(code, format!("{message} [HTTP {}]", r.status)))
}

/// `?k=v&...` of the given values, percent-encoded; empty when none is given.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// Percent-encoding for a path segment or a query value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn list_query(list: &ListArgs, extra: &[(&str, Option<String>)]) -> String {
    let mut pairs = vec![
        ("filter", list.filter.clone()),
        ("sort_order", list.sort.clone()),
        ("result_size", list.limit.map(|l| l.to_string())),
        ("bookmark", list.bookmark.clone()),
    ];
    pairs.extend(extra.iter().cloned());
    query(&pairs)
}

fn queue(out: &Output<'_>, verb: QueueVerb) -> anyhow::Result<ExitCode> {
    match verb {
        QueueVerb::List { list, include, exclude } => {
            let q = list_query(&list, &[("include", include), ("exclude", exclude)]);
            let r = out.call("GET", &format!("/api/v1/queues{q}"), None)?;
            out.print(&r, |v| show::queues(&serde_json::from_value(v)?))
        }
        QueueVerb::Show { identity } => {
            let r = out.call("GET", &format!("/api/v1/queues/{}", encode(&identity)), None)?;
            out.print(&r, |v| show::properties(&v))
        }
        QueueVerb::Suspend { identity, filter } => act(out, "queues", "suspend", one_or_filter(identity, filter)?, ""),
        QueueVerb::Resume { identity, filter } => act(out, "queues", "resume", one_or_filter(identity, filter)?, ""),
        QueueVerb::Retry { identity, filter, resubmit } => {
            let option = if resubmit { "resubmit=true" } else { "" };
            act(out, "queues", "retry", one_or_filter(identity, filter)?, option)
        }
        QueueVerb::Digest { digest } => {
            let r = out.call("GET", &format!("/api/v1/queue-digest{}", digest.query()), None)?;
            out.print(&r, |v| show::digest(&serde_json::from_value(v)?))
        }
    }
}

/// What an action applies to.
enum Selection {
    One(String),
    Many(Vec<String>),
    Filter(String),
}

fn one_or_filter(identity: Option<String>, filter: Option<String>) -> anyhow::Result<Selection> {
    selection(identity.into_iter().collect(), filter)
}

fn selection(identities: Vec<String>, filter: Option<String>) -> anyhow::Result<Selection> {
    match (identities.len(), filter) {
        (0, Some(f)) => Ok(Selection::Filter(f)),
        (0, None) => Err(fail(exit::USAGE, "name what to act on: an identity, or --filter")),
        (_, Some(_)) => Err(fail(exit::USAGE, "give identities or --filter, not both")),
        (1, None) => Ok(Selection::One(identities.into_iter().next().expect("one"))),
        (_, None) => Ok(Selection::Many(identities)),
    }
}

/// A queue or message action on one object, a list or a filter; `option` is a `key=value` query or empty.
fn act(out: &Output<'_>, noun: &str, verb: &str, what: Selection, option: &str) -> anyhow::Result<ExitCode> {
    let join = |q: String| {
        if option.is_empty() {
            q
        } else if q.is_empty() {
            format!("?{option}")
        } else {
            format!("{q}&{option}")
        }
    };
    let r = match what {
        Selection::One(id) => out.call("POST", &join(format!("/api/v1/{noun}/{}/{verb}", encode(&id))), None)?,
        Selection::Many(ids) => {
            let body = serde_json::json!({ "identities": ids });
            out.call("POST", &join(format!("/api/v1/{noun}/{verb}")), Some(&body))?
        }
        Selection::Filter(f) => {
            out.call("POST", &join(format!("/api/v1/{noun}/{verb}{}", query(&[("filter", Some(f))]))), None)?
        }
    };
    out.print(&r, |v| show::action(verb, &v))
}

fn message(out: &Output<'_>, verb: MessageVerb) -> anyhow::Result<ExitCode> {
    match verb {
        MessageVerb::List { list, queue, recipients } => {
            let q = list_query(
                &list,
                &[("queue", queue), ("include_recipient_info", recipients.then(|| "true".to_owned()))],
            );
            let r = out.call("GET", &format!("/api/v1/messages{q}"), None)?;
            out.print(&r, |v| show::messages(&serde_json::from_value(v)?, recipients))
        }
        MessageVerb::Show { identity } => {
            let r = out.call("GET", &format!("/api/v1/messages/{}", encode(&identity)), None)?;
            out.print(&r, |v| show::message_detail(&v))
        }
        MessageVerb::Suspend { identities, filter } => {
            act(out, "messages", "suspend", selection(identities, filter)?, "")
        }
        MessageVerb::Resume { identities, filter } => {
            act(out, "messages", "resume", selection(identities, filter)?, "")
        }
        MessageVerb::Remove { identities, filter, no_ndr, yes } => {
            let what = selection(identities, filter)?;
            if let Selection::Filter(f) = &what {
                confirm(&format!("Remove every message copy matching {f:?}"), yes)?;
            }
            let ndr = if no_ndr { "with_ndr=false" } else { "with_ndr=true" };
            match what {
                // The single form is DELETE, as Remove-Message.
                Selection::One(id) => {
                    let r = out.call("DELETE", &format!("/api/v1/messages/{}?{ndr}", encode(&id)), None)?;
                    out.print(&r, |v| show::action("remove", &v))
                }
                what => act(out, "messages", "remove", what, ndr),
            }
        }
        MessageVerb::Export { identity, output } => {
            let r = out.call("GET", &format!("/api/v1/messages/{}/export", encode(&identity)), None)?;
            match output {
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&r.body).and_then(|()| stdout.flush()).map_err(|e| fail(exit::CANTCREAT, e))?;
                }
                Some(path) => {
                    std::fs::write(&path, &r.body)
                        .map_err(|e| fail(exit::CANTCREAT, format!("{}: {e}", path.display())))?;
                    eprintln!("{} bytes written to {}", r.body.len(), path.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Asks on a terminal; elsewhere a destructive action by filter needs `--yes`.
fn confirm(what: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(fail(exit::USAGE, format!("{what}? Not asked without a terminal: add --yes")));
    }
    eprint!("{what}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") { Ok(()) } else { Err(fail(1, "nothing done")) }
}

fn resubmit(out: &Output<'_>, verb: ResubmitVerb) -> anyhow::Result<ExitCode> {
    match verb {
        ResubmitVerb::Add { start, end, sender, recipient, message_id } => {
            let body = serde_json::json!({
                "start_time": start, "end_time": end, "sender": sender,
                "recipient": recipient, "internet_message_id": message_id,
            });
            let r = out.call("POST", "/api/v1/resubmit-requests", Some(&body))?;
            out.print(&r, |v| show::resubmit_requests(&[serde_json::from_value(v)?]))
        }
        ResubmitVerb::List => {
            let r = out.call("GET", "/api/v1/resubmit-requests", None)?;
            out.print(&r, |v| {
                show::resubmit_requests(&serde_json::from_value::<api::List<api::ResubmitRequest>>(v)?.items)
            })
        }
        ResubmitVerb::Remove { id } => {
            let r = out.call("DELETE", &format!("/api/v1/resubmit-requests/{id}"), None)?;
            out.print(&r, |_| {
                say!("resubmit request {id} removed");
                Ok(())
            })
        }
        ResubmitVerb::Enable { id } | ResubmitVerb::Disable { id } => {
            let enabled = matches!(verb, ResubmitVerb::Enable { .. });
            let body = serde_json::json!({ "enabled": enabled });
            let r = out.call("PATCH", &format!("/api/v1/resubmit-requests/{id}"), Some(&body))?;
            out.print(&r, |v| show::resubmit_requests(&[serde_json::from_value(v)?]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded_and_absent_ones_left_out() {
        assert_eq!(query(&[("a", None)]), "");
        assert_eq!(
            query(&[("filter", Some("Size -gt 1MB".into())), ("x", None), ("queue", Some("mx\\16".into()))]),
            "?filter=Size%20-gt%201MB&queue=mx%5C16"
        );
    }

    #[test]
    fn an_action_needs_identities_or_a_filter_but_not_both() {
        assert!(selection(vec![], None).is_err());
        assert!(selection(vec!["a".into()], Some("f".into())).is_err());
        assert!(matches!(selection(vec!["a".into()], None), Ok(Selection::One(_))));
        assert!(matches!(selection(vec!["a".into(), "b".into()], None), Ok(Selection::Many(_))));
        assert!(matches!(selection(vec![], Some("f".into())), Ok(Selection::Filter(_))));
    }
}
