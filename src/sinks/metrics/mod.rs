//! The Prometheus registry: event metrics updated as each result arrives, and
//! a collector that computes current-state gauges from the [`StateStore`] at
//! scrape time (so proxies that leave the inventory disappear by themselves,
//! and every status is emitted for every pool, at 0 when empty).
//!
//! Names and labels are the contract in `docs/metrics.md`.
//!
//! Files: this one (event metrics), `state_collector` (gauges computed from
//! the state at scrape time), `storage` (`pharox_storage_*` from the result
//! writer's counters), [`exposition`] (content negotiation and encoding).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::model::{CheckResult, Phase, Proxy, Reason};
use crate::state::StateStore;
use crate::sweep::SweepGauges;

pub(crate) mod exposition;
mod state_collector;
mod storage;

use state_collector::StateCollector;
pub(crate) use storage::StorageCollector;

#[cfg(test)]
mod tests;

/// `pool, provider, protocol`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProxyLabels {
    /// Pool.
    pub pool: String,
    /// Provider.
    pub provider: String,
    /// Protocol.
    pub protocol: String,
}

/// `pool, provider, protocol, status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    /// Pool.
    pub pool: String,
    /// Provider.
    pub provider: String,
    /// Protocol.
    pub protocol: String,
    /// Status.
    pub status: String,
}

/// `pool, provider, protocol, reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    /// Pool.
    pub pool: String,
    /// Provider.
    pub provider: String,
    /// Protocol.
    pub protocol: String,
    /// Reason.
    pub reason: String,
}

/// `pool, protocol, phase`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PhaseLabels {
    /// Pool.
    pub pool: String,
    /// Protocol.
    pub protocol: String,
    /// Phase.
    pub phase: String,
}

/// `kind` / `outcome` style single label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    /// The kind.
    pub kind: String,
}

#[derive(Clone)]
struct Buckets(Arc<Vec<f64>>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

fn phase_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn sweep_buckets() -> Histogram {
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ])
}

/// Exporter-level gauges set by the run loop.
#[derive(Debug, Default)]
pub(crate) struct ExporterGauges {
    /// 1 if the last reload succeeded.
    pub reload_ok: Gauge,
    /// Unix time of the last successful (re)load.
    pub reload_ts: Gauge<f64, AtomicU64>,
    /// Proxies in the inventory as last read.
    pub inventory_size: Gauge,
    /// Configured interval, seconds.
    pub interval: Gauge<f64, AtomicU64>,
    /// Wall time of the last completed sweep.
    pub last_sweep_duration: Gauge<f64, AtomicU64>,
    /// Unix time the last sweep completed.
    pub last_sweep_ts: Gauge<f64, AtomicU64>,
}

/// Per-proxy export settings, changeable on reload.
#[derive(Debug, Default)]
pub(crate) struct PerProxy {
    enabled: std::sync::atomic::AtomicBool,
    limit: AtomicU64,
}

impl PerProxy {
    /// Apply settings from a (re)loaded config.
    pub(crate) fn set(&self, enabled: bool, limit: usize) {
        self.enabled.store(enabled, Ordering::Relaxed);
        self.limit.store(limit as u64, Ordering::Relaxed);
    }

    /// Whether per-proxy series are on, and their cap.
    fn get(&self) -> (bool, usize) {
        (
            self.enabled.load(Ordering::Relaxed),
            self.limit.load(Ordering::Relaxed) as usize,
        )
    }
}

/// Every metric the exporter serves.
pub(crate) struct Metrics {
    registry: Registry,
    check_duration: Family<ProxyLabels, Histogram, Buckets>,
    phase_duration: Family<PhaseLabels, Histogram>,
    checks: Family<StatusLabels, Counter>,
    errors: Family<ReasonLabels, Counter>,
    timeouts: Family<PhaseLabels, Counter>,
    sweep_duration: Histogram,
    sweeps: Counter,
    overruns: Counter,
    inventory_errors: Family<KindLabel, Counter>,
    /// 1 when the last inventory read succeeded, 0 when it failed and the
    /// previous inventory was kept.
    pub inventory_last_read_ok: Gauge,
    /// Gauges set by the run loop.
    pub exporter: Arc<ExporterGauges>,
    /// Per-proxy series settings.
    pub per_proxy: Arc<PerProxy>,
}

impl Metrics {
    /// Build the registry. `extra` collectors (e.g. storage) are registered too.
    pub(crate) fn new(
        latency_buckets: &[f64],
        state: Arc<StateStore>,
        gauges: Arc<SweepGauges>,
        extra: Vec<Box<dyn Collector>>,
    ) -> Self {
        // One function on purpose: it is the list of every event family, each
        // created, registered under its name and help, and kept for
        // `observe`. Read top to bottom it matches docs/metrics.md; split into
        // helpers, a family's name would sit apart from the field it fills.
        let mut registry = Registry::with_prefix("pharox");
        let check_duration =
            Family::new_with_constructor(Buckets(Arc::new(latency_buckets.to_vec())));
        registry.register_with_unit(
            "check_duration",
            "Latency of successful (ACTIVE or SLOW) checks",
            Unit::Seconds,
            check_duration.clone(),
        );
        let phase_duration = Family::<PhaseLabels, Histogram>::new_with_constructor(
            phase_buckets as fn() -> Histogram,
        );
        registry.register_with_unit(
            "check_phase_duration",
            "Time spent in each phase of the deciding attempt of a check",
            Unit::Seconds,
            phase_duration.clone(),
        );
        let checks = Family::<StatusLabels, Counter>::default();
        registry.register("checks", "Completed checks by outcome", checks.clone());
        let errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "check_errors",
            "Failed checks by failure reason of the last attempt",
            errors.clone(),
        );
        let timeouts = Family::<PhaseLabels, Counter>::default();
        registry.register(
            "check_timeouts",
            "Failed checks whose reason is timeout, by phase",
            timeouts.clone(),
        );
        let sweep_duration = sweep_buckets();
        registry.register_with_unit(
            "sweep_duration",
            "Wall time of completed sweeps",
            Unit::Seconds,
            sweep_duration.clone(),
        );
        let sweeps = Counter::default();
        registry.register("sweeps", "Completed sweeps", sweeps.clone());
        let overruns = Counter::default();
        registry.register(
            "sweep_overruns",
            "Sweeps that took longer than the interval",
            overruns.clone(),
        );
        let inventory_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "inventory_errors",
            "Inventory reads that failed (kind=read, empty, not_regular, timeout), malformed entries skipped (kind=row), duplicate ids ignored (kind=duplicate)",
            inventory_errors.clone(),
        );
        let inventory_last_read_ok = Gauge::default();
        registry.register(
            "inventory_last_read_successful",
            "1 when the last inventory read succeeded; 0 when it failed and the previous inventory is still swept",
            inventory_last_read_ok.clone(),
        );
        let exporter = Arc::new(ExporterGauges::default());
        let per_proxy = Arc::new(PerProxy::default());
        registry.register_collector(Box::new(StateCollector::new(
            state,
            gauges,
            exporter.clone(),
            per_proxy.clone(),
        )));
        for c in extra {
            registry.register_collector(c);
        }
        Metrics {
            registry,
            check_duration,
            phase_duration,
            checks,
            errors,
            timeouts,
            sweep_duration,
            sweeps,
            overruns,
            inventory_errors,
            inventory_last_read_ok,
            exporter,
            per_proxy,
        }
    }

    /// Count one completed check.
    pub(crate) fn observe(&self, proxy: &Proxy, r: &CheckResult) {
        let protocol = proxy.protocol.as_str().to_string();
        self.checks
            .get_or_create(&StatusLabels {
                pool: proxy.pool.clone(),
                provider: proxy.provider.clone(),
                protocol: protocol.clone(),
                status: r.status.as_str().to_string(),
            })
            .inc();
        if r.status.is_up() {
            self.check_duration
                .get_or_create(&ProxyLabels {
                    pool: proxy.pool.clone(),
                    provider: proxy.provider.clone(),
                    protocol: protocol.clone(),
                })
                .observe(r.latency_ms as f64 / 1000.0);
        }
        for phase in [
            Phase::Connect,
            Phase::ProxyTls,
            Phase::Handshake,
            Phase::Tls,
            Phase::FirstByte,
        ] {
            if let Some(ms) = r.phases.get(phase) {
                self.phase_duration
                    .get_or_create(&PhaseLabels {
                        pool: proxy.pool.clone(),
                        protocol: protocol.clone(),
                        phase: phase.as_str().to_string(),
                    })
                    .observe(ms / 1000.0);
            }
        }
        if let Some(reason) = r.reason {
            self.errors
                .get_or_create(&ReasonLabels {
                    pool: proxy.pool.clone(),
                    provider: proxy.provider.clone(),
                    protocol: protocol.clone(),
                    reason: reason.as_str().to_string(),
                })
                .inc();
            if reason == Reason::Timeout {
                self.timeouts
                    .get_or_create(&PhaseLabels {
                        pool: proxy.pool.clone(),
                        protocol,
                        phase: r.phase.map(Phase::as_str).unwrap_or("connect").to_string(),
                    })
                    .inc();
            }
        }
    }

    /// Record a completed sweep.
    pub(crate) fn sweep_completed(
        &self,
        elapsed: Duration,
        interval: Duration,
        completed_at_unix: f64,
    ) {
        self.sweeps.inc();
        self.sweep_duration.observe(elapsed.as_secs_f64());
        self.exporter.last_sweep_duration.set(elapsed.as_secs_f64());
        self.exporter.last_sweep_ts.set(completed_at_unix);
        if elapsed > interval {
            self.overruns.inc();
        }
    }

    /// Sweeps completed since start.
    pub(crate) fn sweeps_completed(&self) -> u64 {
        self.sweeps.get()
    }

    /// Count inventory problems.
    pub(crate) fn inventory_error(&self, kind: &str, n: u64) {
        self.inventory_errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc_by(n);
    }

    /// Render for a scrape: OpenMetrics, or Prometheus text 0.0.4.
    pub(crate) fn render(&self, openmetrics: bool) -> String {
        exposition::encode(&self.registry, openmetrics, 64 * 1024)
    }
}
