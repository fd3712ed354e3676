//! The long-running exporter, composed: [`App::build`] does everything that
//! can fail at start (config, file-descriptor limit, the listener, the
//! database writer); [`App::run`] sweeps every interval, serves HTTP,
//! reloads on SIGHUP or `POST /-/reload`, and stops gracefully.
//!
//! Stopping happens in order, so nothing is lost and `/metrics` answers to
//! the end: scheduling stops, checks in flight drain (within
//! `sweep.shutdown_grace`), the sinks flush (the database writer closes),
//! and only then does the HTTP server stop, on its own token.

mod limits;
mod reload;
mod signals;
mod sweeper;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use limits::ensure_fd_limit;

use crate::config::{Config, ConfigError, Overrides};
use crate::geo::{GeoDb, GeoError};
use crate::inventory::SourceSpec;
use crate::model::unix_now;
use crate::pharox_db::Error as PgError;
use crate::pharox_db::Stats as PgStats;
use crate::server::{
    self, AppState, Front, ReloadRequest, Requests, WebConfigError, WebConfigFile,
};
use crate::shutdown::Shutdown;
use crate::sinks::db_writer::ResultWriter;
use crate::sinks::metrics::{GeoCollector, Metrics, StorageCollector};
use crate::sinks::Sinks;
use crate::state::StateStore;
use crate::sweep::SweepGauges;
use prometheus_client::collector::Collector;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
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
    /// The PostgreSQL writer could not start (bad spill directory, webhook URL).
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// The web config file (`--web.config.file`) is unusable.
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
    /// A geolocation database (`geoip.databases`) cannot be opened.
    #[error(transparent)]
    Geo(#[from] GeoError),
}

/// The geolocation databases a config names, opened; `None` when it names
/// none. Blocking (reads whole files): call it before sweeping starts.
pub fn open_geo(cfg: &Config) -> Result<Option<Arc<GeoDb>>, GeoError> {
    if cfg.geoip.databases.is_empty() {
        return Ok(None);
    }
    GeoDb::open(&cfg.geoip.databases).map(|db| Some(Arc::new(db)))
}

/// The inventory source a config names, if any: pharox's database when
/// `postgres` is set (from `postgres:` or a `postgresql://` inventory
/// path), else the inventory file.
pub fn source_spec(cfg: &Config) -> Option<SourceSpec> {
    match (&cfg.db, &cfg.inventory.path) {
        (Some(pg), _) => Some(SourceSpec::PharoxDb(Box::new(pg.clone()))),
        (None, Some(path)) => Some(SourceSpec::File {
            path: path.clone(),
            format: cfg.inventory.format,
        }),
        (None, None) => None,
    }
}

/// A started exporter: bound, configured, not yet sweeping.
pub struct App {
    config_path: Option<PathBuf>,
    overrides: Overrides,
    config: Arc<RwLock<Arc<Config>>>,
    listener: TcpListener,
    front: Front,
    web: Arc<AppState>,
    reload_tx: mpsc::Sender<ReloadRequest>,
    reload_rx: mpsc::Receiver<ReloadRequest>,
    sinks: Arc<Sinks>,
    db_stats: Arc<PgStats>,
    geo: Option<Arc<GeoDb>>,
}

impl App {
    /// Load the config, check the file-descriptor limit, start the database
    /// writer and bind the listen address. Nothing is swept or served yet.
    pub async fn build(
        config_path: Option<PathBuf>,
        overrides: Overrides,
    ) -> Result<App, StartError> {
        let cfg = Arc::new(Config::load(config_path.as_deref(), &overrides)?);
        // The writer is built once: a reload that changes the database takes
        // effect for it at restart (the inventory source follows reloads).
        let db_stats = Arc::new(PgStats::default());
        let db = match &cfg.db {
            Some(p) => Some(ResultWriter::spawn_with_stats(p.clone(), db_stats.clone())?),
            None => None,
        };
        let web_config = match &cfg.web.config_file {
            Some(p) => Some(Arc::new(WebConfigFile::load(p)?)),
            None => None,
        };
        let geo = open_geo(&cfg)?;
        let fd_limit = ensure_fd_limit(cfg.sweep.concurrency, cfg.web.max_connections)
            .map_err(StartError::Limits)?;
        tracing::debug!(fd_limit, "file descriptor limit");

        let state = Arc::new(StateStore::new());
        let gauges = Arc::new(SweepGauges::default());
        let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
        if cfg.db.is_some() {
            collectors.push(Box::new(StorageCollector(db_stats.clone())));
        }
        if let Some(db) = &geo {
            collectors.push(Box::new(GeoCollector(db.clone())));
        }
        let metrics = Arc::new(Metrics::new(
            &cfg.metrics.latency_buckets,
            state.clone(),
            gauges.clone(),
            collectors,
        ));
        reload::apply_config(&cfg, &state, &metrics);
        metrics.exporter.reload_ok.set(1);
        metrics.exporter.reload_ts.set(unix_now());
        // Until a sweep completes, "last completed" is the start: a stalled first
        // sweep then ages like any other instead of looking 55 years old.
        metrics.exporter.last_sweep_ts.set(unix_now());

        let addr = cfg.web.listen_address.clone();
        let listener = server::bind(&addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
        let front = Front {
            web_config,
            max_connections: cfg.web.max_connections,
        };
        let requests = Requests::new(cfg.web.max_requests);
        let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(8);
        let config = Arc::new(RwLock::new(cfg));
        let web = Arc::new(AppState {
            metrics: metrics.clone(),
            state: state.clone(),
            gauges,
            config: config.clone(),
            ready: false.into(),
            reload: reload_tx.clone(),
            started: Instant::now(),
            requests,
        });
        Ok(App {
            config_path,
            overrides,
            config,
            listener,
            front,
            web,
            reload_tx,
            reload_rx,
            sinks: Arc::new(Sinks { state, metrics, db }),
            db_stats,
            geo,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Run until SIGTERM/SIGINT (or `shutdown` triggers), then stop in
    /// order: scheduling, in-flight checks (within the grace), sinks, and the
    /// server last. Nothing fails once built: inventory and database errors
    /// are logged and retried at the next sweep, so there is no error to return.
    pub async fn run(self, shutdown: Shutdown) {
        let local = self
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| self.current_config().web.listen_address.clone());
        tracing::info!(address = %local, version = env!("CARGO_PKG_VERSION"), "listening");
        // The server has its own token: it stops last, after the sinks.
        let server_stop = Shutdown::new();
        let server_task = tokio::spawn(server::serve(
            self.listener,
            self.web.clone(),
            self.front,
            server_stop.clone(),
        ));
        signals::spawn(shutdown.clone(), self.reload_tx);
        reload::Reloader {
            path: self.config_path,
            overrides: self.overrides,
            config: self.config.clone(),
            state: self.sinks.state.clone(),
            metrics: self.sinks.metrics.clone(),
        }
        .spawn(self.reload_rx, shutdown.clone());

        sweeper::Sweeper::new(
            self.config.clone(),
            self.sinks.clone(),
            self.web.clone(),
            self.db_stats,
        )
        .with_geo(self.geo)
        .run(&shutdown)
        .await;
        shutdown.trigger();

        let grace = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .sweep
            .shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace.max(Duration::from_secs(5));
        if let Some(report) = self.sinks.close(deadline).await {
            if report.unwritten > 0 {
                tracing::warn!(
                    unwritten = report.unwritten,
                    spilled = report.spilled,
                    "postgres: results not written at shutdown"
                );
            }
        }
        server_stop.trigger();
        // The server bounds its own drain; the margin only covers a stuck task.
        let bound = server::CONNECTION_DRAIN + Duration::from_secs(1);
        let _ = tokio::time::timeout(bound, server_task).await;
        tracing::info!("stopped");
    }

    fn current_config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
