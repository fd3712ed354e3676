//! The interval loop: read the inventory, pick the proxies due, sweep them
//! with every result going to the sinks, log the outcome, wait.
//!
//! Sweeps never overlap: the next one starts at `start + interval`, or at
//! once if the last overran (counted in `pharox_exporter_sweep_overruns_total`).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::geo::GeoDb;
use crate::inventory::{FileStamp, InventoryRead, ReadMode, Source, SourceSpec};
use crate::model::{unix_now, Proxy};
use crate::pharox_db::Stats as PgStats;
use crate::server::AppState;
use crate::shutdown::Shutdown;
use crate::sinks::Sinks;
use crate::sweep::{self, SweepOutcome, SweepParams};

/// The loop's state between sweeps.
pub(super) struct Sweeper {
    pub(super) config: Arc<RwLock<Arc<Config>>>,
    pub(super) sinks: Arc<Sinks>,
    pub(super) web: Arc<AppState>,
    pub(super) db_stats: Arc<PgStats>,
    source: Option<Source>,
    /// The file as last read successfully: unchanged means no re-read.
    last_read: Option<FileStamp>,
    proxies: Arc<[Arc<Proxy>]>,
    /// Inventory size and concurrency the undersize warning was last checked for.
    warned_size: Option<(usize, usize)>,
    /// A real inventory was read once: `/-/ready` may say so.
    loaded: bool,
    /// Exit geolocation, when `geoip.databases` names files.
    geo: Option<Arc<GeoDb>>,
}

impl Sweeper {
    pub(super) fn new(
        config: Arc<RwLock<Arc<Config>>>,
        sinks: Arc<Sinks>,
        web: Arc<AppState>,
        db_stats: Arc<PgStats>,
    ) -> Sweeper {
        Sweeper {
            config,
            sinks,
            web,
            db_stats,
            source: None,
            last_read: None,
            proxies: Arc::from(Vec::new()),
            warned_size: None,
            loaded: false,
            geo: None,
        }
    }

    /// Geolocate judge-reported exits with `geo`.
    pub(super) fn with_geo(mut self, geo: Option<Arc<GeoDb>>) -> Sweeper {
        self.geo = geo;
        self
    }

    /// Sweep every interval until `shutdown`; returns once the sweep in
    /// progress has stopped (checks in flight finished or cut at the grace).
    pub(super) async fn run(mut self, shutdown: &Shutdown) {
        while !shutdown.is_triggered() {
            let cfg = self
                .config
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let started = Instant::now();
            // A read stuck on the database or a file must not hold SIGTERM
            // back: shutdown wins, the read is dropped (its deadlines end it).
            let paused = tokio::select! {
                p = self.refresh_inventory(&cfg) => p,
                _ = shutdown.wait() => break,
            };
            if self.warned_size != Some((self.proxies.len(), cfg.sweep.concurrency)) {
                warn_if_undersized(&cfg, self.proxies.len());
                self.warned_size = Some((self.proxies.len(), cfg.sweep.concurrency));
            }
            // Ready means "serving a real inventory": a missing or unreadable
            // file keeps /-/ready at 503 (as its message says) until a read succeeds.
            if self.loaded {
                self.web.ready.store(true, Ordering::Relaxed);
            }
            let interval = cfg.sweep.interval;
            // Lease acquisitions are bursting: skip this sweep, keep serving.
            if !paused {
                let outcome = self.sweep(&cfg, started, shutdown).await;
                if shutdown.is_triggered() {
                    tracing::info!(
                        completed = outcome.completed,
                        not_started = outcome.not_started,
                        abandoned = outcome.abandoned,
                        "sweep interrupted by shutdown"
                    );
                    break;
                }
                self.completed(&cfg, &outcome);
            }
            tokio::select! {
                _ = tokio::time::sleep_until((started + interval).into()) => {}
                _ = shutdown.wait() => {}
            }
        }
    }

    /// Re-read the inventory if it may have changed. Returns true when the
    /// sweep should be skipped (a lease burst); a failed read keeps the
    /// previous inventory.
    async fn refresh_inventory(&mut self, cfg: &Config) -> bool {
        let Some(spec) = super::source_spec(cfg) else {
            tracing::error!("no inventory configured: pass --inventory FILE or set inventory.path");
            return false;
        };
        // Compared by value: a reload that changes the database (even only
        // its inline password) or the file gets a fresh source.
        if self.source.as_ref().is_none_or(|s| *s.spec() != spec) {
            match Source::open(spec) {
                Ok(s) => {
                    self.source = Some(s.with_db_stats(self.db_stats.clone()));
                    self.last_read = None;
                }
                Err(e) => tracing::error!(error = %e, "postgres inventory"),
            }
        }
        let Some(source) = &self.source else {
            return false;
        };
        let stamp = source.stamp(cfg.inventory.shard).await;
        if stamp.is_some() && stamp == self.last_read {
            return false;
        }
        let metrics = &self.sinks.metrics;
        let read = match source.read(cfg.inventory.shard, ReadMode::Sweep).await {
            Ok(read) => read,
            Err(e) => {
                metrics.inventory_error(e.kind(), 1);
                metrics.inventory_last_read_ok.set(0);
                tracing::error!(
                    error = %e,
                    kind = e.kind(),
                    kept = self.proxies.len(),
                    "inventory read failed; keeping the previous inventory"
                );
                return false;
            }
        };
        metrics.inventory_last_read_ok.set(1);
        // The source answered: the inventory we hold is real, even when paused.
        self.loaded = true;
        if read.paused.is_some() {
            return true;
        }
        let file = match source.spec() {
            SourceSpec::File { path, .. } => Some(path.clone()),
            SourceSpec::PharoxDb(_) => None,
        };
        self.install(cfg, read, file.as_deref());
        self.last_read = stamp;
        false
    }

    /// Report what a read skipped and make its proxies the current ones: new
    /// proxies appear unchecked, missing ones leave the gauges.
    fn install(&mut self, cfg: &Config, read: InventoryRead, file: Option<&Path>) {
        let metrics = &self.sinks.metrics;
        let skipped = read.malformed();
        for e in &read.errors {
            tracing::warn!(error = %e, "inventory entry skipped");
        }
        if skipped > 0 {
            metrics.inventory_error("row", skipped);
        }
        for d in &read.first_duplicates {
            tracing::warn!(duplicate = %d, "inventory entry ignored");
        }
        if read.duplicates > 0 {
            tracing::warn!(
                duplicates = read.duplicates,
                "inventory entries with an id already seen were ignored"
            );
            metrics.inventory_error("duplicate", read.duplicates as u64);
        }
        let proxies: Arc<[Arc<Proxy>]> = read.proxies.into();
        self.sinks.state.sync(&proxies);
        // Counters of the inventory's label sets start at 0, not at their first event.
        metrics.preinit(self.sinks.state.counts().keys());
        metrics.exporter.inventory_size.set(proxies.len() as i64);
        self.proxies = proxies;
        let (n, shard) = (self.proxies.len(), cfg.inventory.shard);
        match file {
            // A file is read only when it changed; the database every sweep,
            // so its reads are not worth an info line each.
            Some(path) => {
                tracing::info!(proxies = n, skipped, shard = %shard, path = %path.display(), "inventory loaded")
            }
            None => {
                tracing::debug!(proxies = n, skipped, shard = %shard, "inventory loaded from postgres")
            }
        }
    }

    /// One sweep of the proxies due, every result recorded by the sinks.
    async fn sweep(&self, cfg: &Config, started: Instant, shutdown: &Shutdown) -> SweepOutcome {
        // The inventory itself unless back-off holds some proxies back.
        let due = self.sinks.state.due_list(&self.proxies, started);
        let s = &cfg.sweep;
        let spread = s.spread.then_some((due.len(), s.interval));
        let params = SweepParams::new(s.concurrency, s.rate_limit, spread)
            .stop_on(shutdown.clone(), s.shutdown_grace)
            .gauges(self.web.gauges.clone())
            .geo(self.geo.clone());
        tracing::debug!(
            due = due.len(),
            total = self.proxies.len(),
            "sweep starting"
        );
        let sinks = self.sinks.clone();
        let outcome = sweep::run(due, cfg.options.clone(), params, move |p, r| {
            sinks.record(p, &r)
        })
        .await;
        self.web.gauges.proxies.store(0, Ordering::Relaxed);
        outcome
    }

    fn completed(&self, cfg: &Config, outcome: &SweepOutcome) {
        let s = &cfg.sweep;
        self.sinks
            .metrics
            .sweep_completed(outcome.elapsed, s.interval, unix_now());
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
    }
}

/// Warn when a sweep cannot finish within its interval even in the worst
/// case: every proxy timing out on every attempt of the slowest options
/// configured (any protocol, any pool).
fn warn_if_undersized(cfg: &Config, n: usize) {
    let s = &cfg.sweep;
    let worst_check = cfg
        .options
        .iter()
        .map(|o| o.timeout.saturating_mul(u32::from(o.attempts)))
        .max()
        .unwrap_or(Duration::ZERO);
    let worst = worst_check.mul_f64(n as f64 / s.concurrency.max(1) as f64);
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
