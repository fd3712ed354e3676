//! The Prometheus registry: event metrics updated as each result arrives, and
//! a collector that computes current-state gauges from the [`StateStore`] at
//! scrape time (so proxies that leave the inventory disappear by themselves,
//! and every status is emitted for every pool, at 0 when empty).
//!
//! Names and labels are the contract in `docs/metrics.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::model::{CheckResult, Phase, Proxy, ProxyStatus, Reason};
use crate::state::{status_index, StateStore};
use crate::sweep::SweepGauges;

/// `pool, provider, protocol`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyLabels {
    /// Pool.
    pub pool: String,
    /// Provider.
    pub provider: String,
    /// Protocol.
    pub protocol: String,
}

/// `pool, provider, protocol, status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
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
pub struct ReasonLabels {
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
pub struct PhaseLabels {
    /// Pool.
    pub pool: String,
    /// Protocol.
    pub protocol: String,
    /// Phase.
    pub phase: String,
}

/// `kind` / `outcome` style single label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
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
pub struct ExporterGauges {
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
pub struct PerProxy {
    enabled: std::sync::atomic::AtomicBool,
    limit: AtomicU64,
}

impl PerProxy {
    /// Apply settings from a (re)loaded config.
    pub fn set(&self, enabled: bool, limit: usize) {
        self.enabled.store(enabled, Ordering::Relaxed);
        self.limit.store(limit as u64, Ordering::Relaxed);
    }
}

/// Every metric the exporter serves.
pub struct Metrics {
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
    /// Gauges set by the run loop.
    pub exporter: Arc<ExporterGauges>,
    /// Per-proxy series settings.
    pub per_proxy: Arc<PerProxy>,
}

impl Metrics {
    /// Build the registry. `extra` collectors (e.g. storage) are registered too.
    pub fn new(
        latency_buckets: &[f64],
        state: Arc<StateStore>,
        gauges: Arc<SweepGauges>,
        extra: Vec<Box<dyn Collector>>,
    ) -> Self {
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
            "Inventory reads that failed (kind=read), malformed entries skipped (kind=row), duplicate ids ignored (kind=duplicate)",
            inventory_errors.clone(),
        );
        let exporter = Arc::new(ExporterGauges::default());
        let per_proxy = Arc::new(PerProxy::default());
        registry.register_collector(Box::new(StateCollector {
            state,
            gauges,
            exporter: exporter.clone(),
            per_proxy: per_proxy.clone(),
            dropped: AtomicU64::new(0),
        }));
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
            exporter,
            per_proxy,
        }
    }

    /// Count one completed check.
    pub fn observe(&self, proxy: &Proxy, r: &CheckResult) {
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
    pub fn sweep_completed(&self, elapsed: Duration, interval: Duration, completed_at_unix: f64) {
        self.sweeps.inc();
        self.sweep_duration.observe(elapsed.as_secs_f64());
        self.exporter.last_sweep_duration.set(elapsed.as_secs_f64());
        self.exporter.last_sweep_ts.set(completed_at_unix);
        if elapsed > interval {
            self.overruns.inc();
        }
    }

    /// Count inventory problems.
    pub fn inventory_error(&self, kind: &str, n: u64) {
        self.inventory_errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc_by(n);
    }

    /// Render for a scrape: OpenMetrics, or Prometheus text 0.0.4.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(64 * 1024);
        // Writing into a String cannot fail.
        let _ = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        out
    }
}

#[derive(Debug)]
struct StateCollector {
    state: Arc<StateStore>,
    gauges: Arc<SweepGauges>,
    exporter: Arc<ExporterGauges>,
    per_proxy: Arc<PerProxy>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").finish_non_exhaustive()
    }
}

fn gauge<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    m: M,
) -> std::fmt::Result {
    let e = enc.encode_descriptor(name, help, unit, m.metric_type())?;
    m.encode(e)
}

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.state.counts();
        {
            let mut fam = enc.encode_descriptor(
                "proxies",
                "Proxies currently in each status (after hysteresis), every status emitted",
                None,
                MetricType::Gauge,
            )?;
            for ((pool, provider, protocol), row) in &counts {
                for st in ProxyStatus::ALL {
                    let labels = [
                        ("pool", pool.as_str()),
                        ("provider", provider.as_str()),
                        ("protocol", protocol.as_str()),
                        ("status", st.as_str()),
                    ];
                    ConstGauge::new(row[status_index(Some(st))] as i64)
                        .encode(fam.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut fam = enc.encode_descriptor(
                "proxies_unchecked",
                "Proxies in the inventory not yet checked",
                None,
                MetricType::Gauge,
            )?;
            for ((pool, provider, protocol), row) in &counts {
                let labels = [
                    ("pool", pool.as_str()),
                    ("provider", provider.as_str()),
                    ("protocol", protocol.as_str()),
                ];
                ConstGauge::new(row[4] as i64).encode(fam.encode_family(&labels)?)?;
            }
        }
        let in_flight = self.gauges.in_flight.load(Ordering::Relaxed).max(0);
        gauge(
            &mut enc,
            "checks_in_flight",
            "Checks running now",
            None,
            ConstGauge::new(in_flight),
        )?;
        let in_sweep = self.gauges.proxies.load(Ordering::Relaxed) as i64;
        gauge(
            &mut enc,
            "sweep_proxies",
            "Proxies in the current sweep",
            None,
            ConstGauge::new(in_sweep),
        )?;
        let x = &self.exporter;
        gauge(
            &mut enc,
            "sweep_last_duration",
            "Wall time of the last completed sweep",
            Some(&Unit::Seconds),
            ConstGauge::new(x.last_sweep_duration.get()),
        )?;
        gauge(
            &mut enc,
            "sweep_interval",
            "Configured sweep interval",
            Some(&Unit::Seconds),
            ConstGauge::new(x.interval.get()),
        )?;
        gauge(
            &mut enc,
            "sweep_last_completed_timestamp",
            "Unix time the last sweep completed",
            Some(&Unit::Seconds),
            ConstGauge::new(x.last_sweep_ts.get()),
        )?;
        gauge(
            &mut enc,
            "inventory_proxies",
            "Proxies in the inventory as last read",
            None,
            ConstGauge::new(x.inventory_size.get()),
        )?;
        gauge(
            &mut enc,
            "exporter_config_last_reload_successful",
            "1 if the last configuration reload succeeded",
            None,
            ConstGauge::new(x.reload_ok.get()),
        )?;
        gauge(
            &mut enc,
            "exporter_config_last_reload_success_timestamp",
            "Unix time of the last successful configuration (re)load",
            Some(&Unit::Seconds),
            ConstGauge::new(x.reload_ts.get()),
        )?;
        {
            let build = [
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "revision",
                    option_env!("PHAROX_GIT_REVISION").unwrap_or("unknown"),
                ),
                (
                    "rustversion",
                    option_env!("PHAROX_RUSTC_VERSION").unwrap_or("unknown"),
                ),
            ];
            let mut fam = enc.encode_descriptor(
                "exporter_build_info",
                "Build information; always 1",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1).encode(fam.encode_family(&build)?)?;
        }
        if self.per_proxy.enabled.load(Ordering::Relaxed) {
            self.encode_per_proxy(&mut enc)?;
        } else {
            // Switched off by a reload: no cap applies, so nothing is dropped
            // (a stale count would keep a "series dropped" alert firing).
            self.dropped.store(0, Ordering::Relaxed);
        }
        gauge(
            &mut enc,
            "proxy_series_dropped",
            "Proxies left out of per-proxy series by the cap at this scrape",
            None,
            ConstGauge::new(self.dropped.load(Ordering::Relaxed) as i64),
        )?;
        Ok(())
    }
}

impl StateCollector {
    fn encode_per_proxy(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let limit = self.per_proxy.limit.load(Ordering::Relaxed) as usize;
        // (id, pool, provider, protocol, up, latency s, checked_at)
        type Row = (String, String, String, &'static str, i64, f64, f64);
        let mut rows: Vec<Row> = Vec::new();
        self.state.for_each(|s| {
            if let (Some(rep), Some(last)) = (s.reported, &s.last) {
                let p = &s.proxy;
                rows.push((
                    p.id.clone(),
                    p.pool.clone(),
                    p.provider.clone(),
                    p.protocol.as_str(),
                    rep.is_up() as i64,
                    last.latency_ms as f64 / 1000.0,
                    last.checked_at,
                ));
            }
        });
        // The cap keeps the lowest ids so the exported set is stable across scrapes.
        let dropped = rows.len().saturating_sub(limit);
        if dropped > 0 {
            rows.select_nth_unstable_by(limit, |a, b| a.0.cmp(&b.0));
            rows.truncate(limit);
        }
        self.dropped.store(dropped as u64, Ordering::Relaxed);
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        type Pick = fn(&Row) -> ConstGauge<f64>;
        let families: [(&str, &str, Option<Unit>, Pick); 3] = [
            (
                "proxy_up",
                "1 if the proxy is ACTIVE or SLOW (per-proxy, opt-in)",
                None,
                |r| ConstGauge::new(r.4 as f64),
            ),
            (
                "proxy_latency",
                "Latency of the proxy's last check (per-proxy, opt-in)",
                Some(Unit::Seconds),
                |r| ConstGauge::new(r.5),
            ),
            (
                "proxy_last_check_timestamp",
                "Unix time of the proxy's last check (per-proxy, opt-in)",
                Some(Unit::Seconds),
                |r| ConstGauge::new(r.6),
            ),
        ];
        for (name, help, unit, pick) in families {
            let mut fam = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for r in &rows {
                let labels = [
                    ("proxy_id", r.0.as_str()),
                    ("pool", r.1.as_str()),
                    ("provider", r.2.as_str()),
                    ("protocol", r.3),
                ];
                pick(r).encode(fam.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// `pharox_storage_*` (docs/metrics.md), read from the PostgreSQL sink's
/// counters at scrape time.
#[derive(Debug)]
pub struct StorageCollector(pub Arc<crate::sinks::postgres::PgStats>);

impl prometheus_client::collector::Collector for StorageCollector {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;
        let s = self.0.snapshot();
        let e = enc.encode_descriptor(
            "storage_pending_results",
            "Results queued, not yet written",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(s.pending as i64).encode(e)?;
        let mut fam = enc.encode_descriptor(
            "storage_writes",
            "Batch write attempts",
            None,
            MetricType::Counter,
        )?;
        for (outcome, v) in [("success", s.writes_success), ("error", s.writes_error)] {
            ConstCounter::new(v).encode(fam.encode_family(&[("outcome", outcome)])?)?;
        }
        let e = enc.encode_descriptor(
            "storage_results_written",
            "Results persisted",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.results_written).encode(e)?;
        let mut fam = enc.encode_descriptor(
            "storage_dropped",
            "Results dropped (queue full)",
            None,
            MetricType::Counter,
        )?;
        for (kind, v) in [("history", s.dropped_history), ("status", s.dropped_status)] {
            ConstCounter::new(v).encode(fam.encode_family(&[("kind", kind)])?)?;
        }
        let e = enc.encode_descriptor(
            "storage_expired_leases_released",
            "Leases released by the pre-sweep cleanup",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.expired_leases_released).encode(e)?;
        let e = enc.encode_descriptor(
            "storage_unknown_proxy_results",
            "Results for proxies no longer in the database (not written)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.unknown_proxy).encode(e)?;
        let e = enc.encode_descriptor(
            "leased_health_changes",
            "Health changes of proxies that were leased at the time (events emitted)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.leased_events).encode(e)?;
        let e = enc.encode_descriptor(
            "event_webhook_errors",
            "Leased-health-change events the webhook did not accept",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.webhook_errors).encode(e)?;
        Ok(())
    }
}
