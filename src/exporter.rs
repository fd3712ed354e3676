//! The long-running exporter: sweep the inventory every interval, feed every
//! result to the sinks as it completes, serve HTTP, reload on SIGHUP or
//! `POST /-/reload`, and stop gracefully on SIGTERM/SIGINT.
//!
//! Sweeps never overlap: the next one starts at `start + interval`, or at
//! once if the last overran (counted in `pharox_sweep_overruns_total`).
//! A reload validates the whole new file first; only a valid config replaces
//! the running one, and it takes effect at the next sweep.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::{Config, ConfigError, Overrides};
use crate::inventory;
use crate::inventory::shard::Shard;
use crate::model::Proxy;
use crate::server::{self, AppState, ReloadRequest};
use crate::sinks::db_writer::ResultWriter;
use crate::sinks::metrics::Metrics;
use crate::state::StateStore;
use crate::sweep::{self, Shutdown, SweepGauges, SweepParams};

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The concurrency cannot be held within the file-descriptor limit.
    #[error("{0}")]
    Limits(String),
    /// The PostgreSQL sink could not start (bad spill directory, webhook URL).
    #[error(transparent)]
    Postgres(#[from] crate::pharox_db::Error),
}

/// File descriptors kept free for the server, logs, the database and scrapes.
const FD_RESERVE: u64 = 64;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit and check that
/// `concurrency` sockets (one per check in flight) fit. Returns the limit.
pub fn ensure_fd_limit(concurrency: usize) -> Result<u64, String> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Ok(u64::MAX);
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
        let soft = lim.rlim_cur as u64;
        let need = concurrency as u64 + FD_RESERVE;
        if soft < need {
            return Err(format!(
                "concurrency {concurrency} needs about {need} file descriptors but the limit is {soft} (hard limit {}); \
                 lower --concurrency to at most {} or raise the limit (ulimit -n, or LimitNOFILE= in systemd)",
                lim.rlim_max,
                soft.saturating_sub(FD_RESERVE)
            ));
        }
        Ok(soft)
    }
    #[cfg(not(unix))]
    {
        let _ = concurrency;
        Ok(u64::MAX)
    }
}

/// Warn when a sweep cannot finish within its interval even in the worst
/// case (every proxy timing out on every attempt).
fn warn_if_undersized(cfg: &Config, n: usize) {
    let s = &cfg.sweep;
    let worst_check = cfg
        .options
        .for_protocol(crate::model::ProxyProtocol::Http)
        .timeout
        .mul_f64(
            cfg.options
                .for_protocol(crate::model::ProxyProtocol::Http)
                .attempts as f64,
        );
    let worst = worst_check.mul_f64(n as f64 / s.concurrency as f64);
    if worst > s.interval {
        let need = (n as f64 * worst_check.as_secs_f64() / s.interval.as_secs_f64()).ceil() as u64;
        tracing::warn!(
            proxies = n,
            concurrency = s.concurrency,
            interval_seconds = s.interval.as_secs_f64(),
            worst_case_sweep_seconds = worst.as_secs_f64(),
            suggested_concurrency = need,
            "if every proxy timed out, a sweep would not finish within its interval; sweeps would overrun"
        );
    }
}

/// Keep this replica's share of a freshly read inventory and make it the
/// current one: new proxies appear unchecked, missing ones leave the gauges.
fn install_inventory(
    list: Vec<Proxy>,
    shard: Shard,
    state: &StateStore,
    metrics: &Metrics,
) -> Arc<[Arc<Proxy>]> {
    let proxies: Arc<[Arc<Proxy>]> = list
        .into_iter()
        .filter(|p| shard.owns(&p.id))
        .map(Arc::new)
        .collect();
    state.sync(&proxies);
    metrics.exporter.inventory_size.set(proxies.len() as i64);
    proxies
}

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

fn apply_config(cfg: &Config, state: &StateStore, metrics: &Metrics) {
    state.set_policy(cfg.policy);
    metrics
        .per_proxy
        .set(cfg.metrics.per_proxy, cfg.metrics.per_proxy_limit);
    metrics
        .exporter
        .interval
        .set(cfg.sweep.interval.as_secs_f64());
}

/// Run the exporter until SIGTERM/SIGINT (or `shutdown` triggers). Returns
/// after in-flight checks finished (within the grace) and sinks flushed.
pub async fn run(
    config_path: Option<PathBuf>,
    overrides: Overrides,
    shutdown: Shutdown,
) -> Result<(), ExporterError> {
    let cfg = Arc::new(Config::load(config_path.as_deref(), &overrides)?);
    // pharox's database as inventory and result store. The sink is built
    // once: a reload that changes the database takes effect at restart.
    let pg_stats = Arc::new(crate::pharox_db::Stats::default());
    let pg_sink = match &cfg.db {
        Some(p) => Some(ResultWriter::spawn_with_stats(p.clone(), pg_stats.clone())?),
        None => None,
    };
    let mut pg_source: Option<(String, inventory::pharox_db::PharoxDbSource)> = None;
    let fd_limit = ensure_fd_limit(cfg.sweep.concurrency).map_err(ExporterError::Limits)?;
    tracing::debug!(fd_limit, "file descriptor limit");

    let state = Arc::new(StateStore::new());
    let gauges = Arc::new(SweepGauges::default());
    let metrics = Arc::new(Metrics::new(
        &cfg.metrics.latency_buckets,
        state.clone(),
        gauges.clone(),
        match &cfg.db {
            Some(_) => {
                vec![Box::new(crate::sinks::metrics::StorageCollector(pg_stats.clone())) as Box<_>]
            }
            None => Vec::new(),
        },
    ));
    apply_config(&cfg, &state, &metrics);
    metrics.exporter.reload_ok.set(1);
    metrics.exporter.reload_ts.set(unix_now());
    // Until a sweep completes, "last completed" is the start: a stalled first
    // sweep then ages like any other instead of looking 55 years old.
    metrics.exporter.last_sweep_ts.set(unix_now());

    let addr = cfg.web.listen_address.clone();
    let listener = server::bind(&addr)
        .await
        .map_err(|source| ExporterError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(8);
    let config = Arc::new(RwLock::new(cfg.clone()));
    let app = Arc::new(AppState {
        metrics: metrics.clone(),
        state: state.clone(),
        gauges: gauges.clone(),
        config: config.clone(),
        ready: false.into(),
        reload: reload_tx.clone(),
        started: Instant::now(),
    });
    tracing::info!(address = %local, version = env!("CARGO_PKG_VERSION"), "listening");
    let server_task = tokio::spawn(server::serve(listener, app.clone(), shutdown.clone()));

    // Signals: SIGTERM/SIGINT stop, SIGHUP reloads.
    {
        let shutdown = shutdown.clone();
        let reload_tx = reload_tx.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::hangup()),
                ) else {
                    tracing::error!("cannot install signal handlers");
                    return;
                };
                loop {
                    tokio::select! {
                        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); shutdown.trigger(); return; }
                        _ = int.recv() => { tracing::info!("SIGINT: shutting down"); shutdown.trigger(); return; }
                        _ = hup.recv() => {
                            let (tx, _rx) = tokio::sync::oneshot::channel();
                            if reload_tx.send(tx).await.is_err() { return; }
                        }
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
                shutdown.trigger();
            }
        });
    }

    // Reloads are validated at once (so /-/reload answers immediately) and
    // swapped in whole; the sweep loop picks up the new config at its next start.
    {
        let (config, metrics, state, shutdown) = (
            config.clone(),
            metrics.clone(),
            state.clone(),
            shutdown.clone(),
        );
        let path = config_path.clone();
        tokio::spawn(async move {
            loop {
                let req = tokio::select! {
                    r = reload_rx.recv() => match r { Some(r) => r, None => return },
                    _ = shutdown.wait() => return,
                };
                let outcome = match Config::load(path.as_deref(), &overrides) {
                    Ok(new) => {
                        let old = config.read().unwrap_or_else(|e| e.into_inner()).clone();
                        // These are fixed when the listener and registry are built.
                        if new.web.listen_address != old.web.listen_address {
                            tracing::warn!(
                                "web.listen_address changed: takes effect only after a restart"
                            );
                        }
                        if new.metrics.latency_buckets != old.metrics.latency_buckets {
                            tracing::warn!(
                                "metrics.latency_buckets changed: takes effect only after a restart"
                            );
                        }
                        apply_config(&new, &state, &metrics);
                        *config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
                        metrics.exporter.reload_ok.set(1);
                        metrics.exporter.reload_ts.set(unix_now());
                        tracing::info!("configuration reloaded; takes effect at the next sweep");
                        Ok(())
                    }
                    Err(e) => {
                        metrics.exporter.reload_ok.set(0);
                        tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
                        Err(e.to_string())
                    }
                };
                let _ = req.send(outcome);
            }
        });
    }

    let mut proxies: Arc<[Arc<Proxy>]> = Arc::from(Vec::new());
    // What the last inventory read depended on: path, format and shard (all
    // reloadable), and the file's mtime and size.
    type Stamp = (
        (PathBuf, inventory::Format, Shard),
        (std::time::SystemTime, u64),
    );
    let mut last_inventory: Option<Stamp> = None;
    let mut warned_size = None;
    let mut first = true;
    let mut inventory_loaded = false;
    while !shutdown.is_triggered() {
        let cfg = config.read().unwrap_or_else(|e| e.into_inner()).clone();
        let started = Instant::now();

        // pharox's database: lease cleanup, burst check, then the proxies.
        let mut paused = false;
        if let Some(pg) = &cfg.db {
            let key = format!("{pg:?}");
            if pg_source.as_ref().is_none_or(|(k, _)| *k != key) {
                match inventory::pharox_db::PharoxDbSource::new(pg.clone()) {
                    Ok(src) => pg_source = Some((key, src.with_stats(pg_stats.clone()))),
                    Err(e) => tracing::error!(error = %e, "postgres inventory"),
                }
            }
            if let Some((_, src)) = &pg_source {
                let skipped_before = src.rows_skipped_total();
                match src.before_sweep().await {
                    Ok(inventory::pharox_db::SweepPlan::Sweep(list)) => {
                        let skipped = src.rows_skipped_total() - skipped_before;
                        if skipped > 0 {
                            metrics.inventory_error("row", skipped);
                        }
                        let shard = cfg.inventory.shard;
                        proxies = install_inventory(list, shard, &state, &metrics);
                        inventory_loaded = true;
                        tracing::debug!(proxies = proxies.len(), shard = %shard, "inventory loaded from postgres");
                    }
                    // The database answered: the inventory we hold is real.
                    Ok(inventory::pharox_db::SweepPlan::Paused(_)) => {
                        paused = true;
                        inventory_loaded = true;
                    }
                    Err(e) => {
                        metrics.inventory_error("read", 1);
                        tracing::error!(error = %e, "inventory read failed; keeping the previous inventory");
                    }
                }
            }
        }
        // Re-read the inventory when it changed (or the path did).
        match &cfg.inventory.path {
            _ if cfg.db.is_some() => {}
            None => tracing::error!(
                "no inventory configured: pass --inventory FILE or set inventory.path"
            ),
            Some(path) => {
                let stamp = std::fs::metadata(path)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())));
                let read_key =
                    stamp.map(|s| ((path.clone(), cfg.inventory.format, cfg.inventory.shard), s));
                let unchanged = read_key.is_some() && read_key == last_inventory;
                if !unchanged {
                    match inventory::load_file_shard(
                        path,
                        cfg.inventory.format,
                        cfg.inventory.shard,
                    ) {
                        Ok(loaded) => {
                            for e in &loaded.errors {
                                tracing::warn!(error = %e, "inventory entry skipped");
                            }
                            if !loaded.errors.is_empty() {
                                metrics.inventory_error("row", loaded.errors.len() as u64);
                            }
                            if loaded.duplicates > 0 {
                                tracing::warn!(
                                    duplicates = loaded.duplicates,
                                    "inventory entries with an id already seen were ignored"
                                );
                                metrics.inventory_error("duplicate", loaded.duplicates as u64);
                            }
                            let shard = cfg.inventory.shard;
                            proxies = install_inventory(loaded.proxies, shard, &state, &metrics);
                            tracing::info!(proxies = proxies.len(), skipped = loaded.errors.len(), shard = %shard, path = %path.display(), "inventory loaded");
                            last_inventory = read_key;
                            inventory_loaded = true;
                        }
                        Err(e) => {
                            metrics.inventory_error("read", 1);
                            tracing::error!(error = %e, "inventory read failed; keeping the previous inventory");
                        }
                    }
                }
            }
        }
        if warned_size != Some((proxies.len(), cfg.sweep.concurrency)) {
            warn_if_undersized(&cfg, proxies.len());
            warned_size = Some((proxies.len(), cfg.sweep.concurrency));
        }

        let due: Arc<[Arc<Proxy>]> = state.due(&proxies, started).into();
        let s = &cfg.sweep;
        let spread = s.spread.then_some((due.len(), s.interval));
        let params = SweepParams::new(s.concurrency, s.rate_limit, spread);
        // Ready means "serving a real inventory": a missing or unreadable file
        // keeps /-/ready at 503 (as its message says) until a read succeeds.
        if first && inventory_loaded {
            app.ready.store(true, Ordering::Relaxed);
            first = false;
        }
        // Lease acquisitions are bursting: skip this sweep, keep serving.
        if paused {
            tokio::select! {
                _ = tokio::time::sleep_until((started + cfg.sweep.interval).into()) => {}
                _ = shutdown.wait() => {}
            }
            continue;
        }
        tracing::debug!(due = due.len(), total = proxies.len(), "sweep starting");
        let (st, mx, db) = (state.clone(), metrics.clone(), pg_sink.clone());
        let outcome = sweep::run(
            due,
            cfg.options.clone(),
            params,
            gauges.clone(),
            shutdown.clone(),
            s.shutdown_grace,
            move |p, r| {
                st.record(p, &r, Instant::now());
                mx.observe(p, &r);
                if let Some(db) = &db {
                    db.submit(p, &r);
                }
            },
        )
        .await;
        gauges.proxies.store(0, Ordering::Relaxed);
        if shutdown.is_triggered() {
            tracing::info!(
                completed = outcome.completed,
                not_started = outcome.not_started,
                abandoned = outcome.abandoned,
                "sweep interrupted by shutdown"
            );
            break;
        }
        metrics.sweep_completed(outcome.elapsed, s.interval, unix_now());
        if outcome.elapsed > s.interval {
            tracing::warn!(
                elapsed_seconds = outcome.elapsed.as_secs_f64(),
                interval_seconds = s.interval.as_secs_f64(),
                concurrency = s.concurrency,
                "sweep overran its interval; starting the next one now (raise --concurrency)"
            );
        } else {
            tracing::info!(
                checked = outcome.completed,
                seconds = outcome.elapsed.as_secs_f64(),
                "sweep completed"
            );
        }
        let next = started + s.interval;
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = shutdown.wait() => {}
        }
    }

    shutdown.trigger();
    if let Some(h) = pg_sink {
        let grace = config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .sweep
            .shutdown_grace;
        let report = h
            .close(tokio::time::Instant::now() + grace.max(Duration::from_secs(5)))
            .await;
        if report.unwritten > 0 {
            tracing::warn!(
                unwritten = report.unwritten,
                spilled = report.spilled,
                "postgres: results not written at shutdown"
            );
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server_task).await;
    tracing::info!("stopped");
    Ok(())
}
