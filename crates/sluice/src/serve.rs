//! `sluice serve`: wires the parts together in the order a message meets them — queue database, transport
//! (categorizer and delivery), receive connectors — plus the admin API, signals and a graceful stop. What
//! each part is built from in the configuration is in `wiring.rs`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use sluice_api_types as api;
use sluice_config::{Config, Loaded};
use sluice_queue_db::{FsStorage, QueueDb, RecoveryReport};
use sluice_transport::{AlertClass, Alerts, InProcess, Severity, Tracking, Transport};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::wiring;

pub fn run(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let loaded = Config::discover(config_path.as_deref())?;
    init_logging(&loaded.config);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(loaded, config_path))
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a log file or journal never gets escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match config.log.format {
        sluice_config::LogFormat::Json => builder.json().init(),
        sluice_config::LogFormat::Text => builder.init(),
    }
}

async fn serve(loaded: Loaded, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = loaded.config.clone();
    log_loaded(&loaded);

    let storage = FsStorage::new(&config.queue_database.path)
        .with_context(|| format!("creating {}", config.queue_database.path.display()))?;
    let options = wiring::queue_db_options(&config);
    let started = Instant::now();
    let alerts = wiring::alerts(&config)?;
    // What the last run had in process is read (and the file emptied) before anything is processed: a crash
    // of the last run is blamed on those messages at start.
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating {}", config.server.data_dir.display()))?;
    let in_process = InProcess::open(&config.server.data_dir.join("inprocess"))?;
    // The transport's queues are built from the recovered state while the database lends it, before its
    // writer takes it: a large queue is not copied once more at start.
    let routing_table = wiring::routing(&config);
    let (db, queues, report) =
        match QueueDb::open_with(Arc::new(storage), options, |state| Transport::load(state, &routing_table)) {
            Ok(opened) => opened,
            Err(e) => {
                alerts.raise(AlertClass::System, Severity::Critical, format!("sluice cannot start: {e}"));
                return Err(e.into());
            }
        };
    report_recovery(&alerts, &report, queues.messages(), started);
    // Certificates are read (or generated) before anything starts listening.
    let acceptors = wiring::tls_acceptors(&config)?;
    let admin_tls = wiring::admin_tls(&config)?;
    let tracking = Tracking::start(config.server.data_dir.join("tracking"), config.tracking.max_age)
        .context("starting the tracking log")?;
    let agent = wiring::delivery_agent(&config);
    let recovered = queues.messages();
    let counters = open_counters(&config.server.data_dir.join("counters.json"), &alerts)?;
    let updater_log = Arc::new(crate::updater::UpdaterLog::open(&config.server.data_dir));
    let extra_rules = Arc::new(crate::updater::rules_dir_files(config.antispam.rules_dir.as_deref())?);
    let work_queue = wiring::work_queue(&config, &updater_log, &extra_rules);
    let requests_file = config.server.data_dir.join("resubmit-requests.json");
    let resubmit_requests =
        sluice_transport::ResubmitRequests::open(requests_file).context("reading the Safety Net resubmit requests")?;
    let cluster = match &config.cluster {
        Some(c) => Some(
            sluice_cluster::Cluster::new(c, &config.queue_database.path, alerts.clone()).map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    // What peers adopted while this node was away is dropped before delivery starts.
    let adopted_elsewhere = match &cluster {
        Some(c) => c.adopted_elsewhere().await,
        None => Vec::new(),
    };
    let transport = Transport::start(sluice_transport::Parts {
        db,
        loaded: queues,
        routing: routing_table,
        agent: Arc::new(agent),
        tracking,
        server_name: config.server.name.clone(),
        hostname: config.server.hostname.clone(),
        alerts: alerts.clone(),
        resubmit_requests,
        in_process,
        fault_injection: config.debug.fault_injection,
        counters,
        work_queue,
        cluster: cluster.as_ref().map(sluice_cluster::Cluster::hooks),
        adopted_elsewhere: adopted_elsewhere.clone(),
    })
    .await
    .context("recording the crash counts of the messages in process at an unclean stop")?;
    transport.set_back_pressure_thresholds(wiring::thresholds(&config));

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let policies = sluice_receive::Policies::new(&config);
    let auth_failures = Arc::new(sluice_receive::AuthFailures::default());
    for (connector, tls) in config.receive_connectors.iter().zip(acceptors) {
        let listener = TcpListener::bind(connector.listen)
            .await
            .with_context(|| format!("receive connector {} cannot listen on {}", connector.name, connector.listen))?;
        tracing::info!(connector = %connector.name, listen = %connector.listen, "receive connector listening");
        let server = sluice_receive::Server {
            policy: policies.subscribe(&connector.name),
            transport: transport.clone(),
            shutdown: shutdown.clone(),
            tls,
            auth_failures: auth_failures.clone(),
        };
        tasks.spawn(server.run(listener));
    }

    let admin_listener = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("the admin API cannot listen on {}", config.admin.listen))?;
    let current = Arc::new(Mutex::new(config.clone()));
    let reload = reloader(config_path.clone(), loaded.source.clone(), current, transport.clone(), policies.clone());
    let admin_state = wiring::admin_state(&config, &transport, started, reload.clone(), cluster.clone());
    if let Some(cluster) = cluster {
        cluster.forget_adopted(&adopted_elsewhere).await;
        tracing::info!(node = cluster.node(), "cluster node: heartbeats every {:?}", cluster.heartbeat_interval());
        tasks.spawn(cluster.clone().run(transport.clone(), shutdown.clone()));
        tasks.spawn(sluice_admin::cluster::reconcile(admin_state.clone(), cluster, shutdown.clone()));
    }
    tasks.spawn(crate::replay::run(config.server.data_dir.join("replay"), transport.clone(), shutdown.clone()));
    tasks.spawn(crate::pickup::run(crate::pickup::Pickup::new(&config), transport.clone(), shutdown.clone()));
    tasks.spawn(crate::updater::run(transport.clone(), &config, updater_log, extra_rules, shutdown.clone()));
    if config.queue_database.online_defrag_enabled {
        tasks.spawn(scheduled_defrag(transport.clone(), config.clone(), shutdown.clone()));
    }
    // Subscribed before the first alert below, so that it goes out by mail and webhook too.
    crate::notify::spawn(&alerts, &config.alerts, &config.server.hostname, &tasks, shutdown.clone());
    // Raised before the API answers, so that the first look at the alerts finds it.
    alerts.raise(
        AlertClass::System,
        Severity::Information,
        format!("sluice {} started with {recovered} queued messages", env!("CARGO_PKG_VERSION")),
    );
    tracing::info!(listen = %config.admin.listen, tls = admin_tls.is_some(), "admin API listening");
    match admin_tls {
        Some(acceptor) => tasks.spawn(sluice_admin::serve_tls(admin_listener, acceptor, admin_state, shutdown.clone())),
        None => tasks.spawn(sluice_admin::serve(admin_listener, admin_state, shutdown.clone())),
    };
    tracing::info!(
        hostname = %config.server.hostname,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "sluice is ready"
    );

    wait_for_stop(&reload).await?;
    tracing::info!("stopping: listeners close, sessions finish their transaction");
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    transport.shutdown().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The counters saved at `path`. A file that cannot be read is moved aside (`counters.json.damaged`) with
/// a Warning alert, and the counters start from zero: statistics are not worth refusing to start for.
fn open_counters(path: &std::path::Path, alerts: &Alerts) -> anyhow::Result<sluice_transport::Counters> {
    match sluice_transport::Counters::open(path.to_owned()) {
        Ok(c) => Ok(c),
        Err(e) => {
            let aside = path.with_extension("json.damaged");
            std::fs::rename(path, &aside)
                .with_context(|| format!("moving the unreadable counters file {} aside", path.display()))?;
            alerts.raise(
                AlertClass::System,
                Severity::Warning,
                format!("the counters start from zero: {e} (moved to {})", aside.display()),
            );
            Ok(sluice_transport::Counters::open(path.to_owned())?)
        }
    }
}

/// Logs where the configuration came from and what in it is not in effect.
fn log_loaded(loaded: &Loaded) {
    match &loaded.source {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => tracing::info!("no configuration file; using built-in defaults"),
    }
    for key in &loaded.not_yet_in_effect {
        tracing::warn!(key = %key, "configuration key accepted but not yet in effect in this release");
    }
    let db = &loaded.config.queue_database;
    if db.log_path != db.path {
        tracing::warn!("queue_database.log_path is not yet in effect; the log is kept in queue_database.path");
    }
}

/// Logs what recovery found, and raises an alert when a torn write was discarded.
fn report_recovery(alerts: &Alerts, report: &RecoveryReport, messages: usize, started: Instant) {
    tracing::info!(
        messages,
        frames = report.frames,
        records = report.records,
        torn_bytes = report.torn_bytes,
        generations_removed = report.generations_removed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "queue database recovered"
    );
    if report.torn_bytes > 0 {
        alerts.raise(
            AlertClass::System,
            Severity::Information,
            format!(
                "recovery after a crash: the last, unacknowledged write ({} bytes) was torn and was discarded",
                report.torn_bytes
            ),
        );
    }
}

/// Waits for SIGTERM or SIGINT; a SIGHUP meanwhile reloads the configuration.
async fn wait_for_stop(reload: &sluice_admin::ReloadFn) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => match reload().await {
                Ok(r) => tracing::info!(restart_required = ?r.restart_required, "configuration reloaded (SIGHUP)"),
                Err(e) => tracing::error!(error = %e, "configuration not reloaded (SIGHUP); the old one stays"),
            },
        }
    }
}

fn reloader(
    explicit: Option<PathBuf>,
    source: Option<PathBuf>,
    current: Arc<Mutex<Config>>,
    transport: Transport,
    policies: sluice_receive::Policies,
) -> sluice_admin::ReloadFn {
    Arc::new(move || {
        let explicit = explicit.clone();
        let source = source.clone();
        let current = current.clone();
        let transport = transport.clone();
        let policies = policies.clone();
        Box::pin(async move {
            let loaded = match (&explicit, &source) {
                (Some(p), _) | (None, Some(p)) => Config::from_file(p),
                (None, None) => Config::discover(None),
            }
            .map_err(|e| {
                let why = e.to_string();
                transport.alerts().raise(
                    AlertClass::System,
                    Severity::Warning,
                    format!("configuration not reloaded, the old one stays: {why}"),
                );
                why
            })?;
            let (new, restart_required) = {
                let mut cur = current.lock().unwrap_or_else(|e| e.into_inner());
                let restart_required = cur.restart_required_changes(&loaded.config);
                let new = loaded.config.with_restart_keys_from(&cur);
                *cur = new.clone();
                (new, restart_required)
            };
            for key in &restart_required {
                tracing::warn!(key = %key, "changed, but takes effect only after a restart");
            }
            policies.update(&new);
            transport.set_routing(wiring::routing(&new)).await;
            transport.set_back_pressure_thresholds(wiring::thresholds(&new));
            transport.tracking().set_max_age(new.tracking.max_age);
            Ok(api::ReloadResult { reloaded: true, restart_required, not_yet_in_effect: loaded.not_yet_in_effect })
        })
    })
}

/// Runs online defragmentation every day at `online_defrag_schedule` (UTC) for at most
/// `online_defrag_time_to_run`.
async fn scheduled_defrag(transport: Transport, config: Config, shutdown: CancellationToken) {
    let at = &config.queue_database.online_defrag_schedule;
    let at_secs = u64::from(at.hour) * 3600 + u64::from(at.minute) * 60 + u64::from(at.second);
    loop {
        let now = (sluice_queue_db::now_ms() / 1000).rem_euclid(86_400) as u64;
        let wait = (at_secs + 86_400 - now) % 86_400;
        let wait = if wait == 0 { 86_400 } else { wait };
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
            _ = shutdown.cancelled() => return,
        }
        match transport.defrag(config.queue_database.online_defrag_time_to_run).await {
            Ok(r) => tracing::info!(?r, "scheduled online defragmentation done"),
            Err(e) => tracing::warn!(error = %e, "scheduled online defragmentation failed"),
        }
    }
}
