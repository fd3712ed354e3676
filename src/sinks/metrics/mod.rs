//! The Prometheus registry: event metrics updated as each result arrives, and
//! a collector that computes current-state gauges from the [`StateStore`] at
//! scrape time (so proxies that leave the inventory disappear by themselves,
//! and every status is emitted for every pool, at 0 when empty).
//!
//! Names and labels are the contract in `docs/metrics.md`. Two namespaces:
//! `pharox_` for what the checks found about the proxies, and
//! `pharox_exporter_` for the exporter itself: its build, configuration,
//! sweeps, inventory reads and storage writes.
//!
//! Files: this one (event metrics), `state_collector` (gauges computed from
//! the state at scrape time), `exits` (what the checks found of the
//! proxies' exits, per pool), `storage` (`pharox_exporter_storage_*` from the
//! result writer's counters), `process` (`process_*` and the tokio
//! runtime's facts), `histogram` (durations counted in whole microseconds,
//! so sums and bounds print without float noise), [`exposition`] (content
//! negotiation and encoding), `families` (the five event families with a
//! series per label set) and `per_proxy` (the opt-in per-proxy series),
//! both written by hand with `text`: they are most of a scrape's bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use prometheus_client::registry::Unit;

use crate::model::{CheckResult, Phase, Proxy, ProxyProtocol, ProxyStatus, Reason};
use crate::state::StateStore;
use crate::sweep::SweepGauges;

mod exits;
pub(crate) mod exposition;
mod families;
mod geo;
mod histogram;
mod per_proxy;
mod process;
mod state_collector;
mod storage;
mod text;

use families::{render_pairs, LabeledFamily, Labels};
use histogram::{Bounds, MicrosHistogram};
use per_proxy::PerProxySeries;
use text::Kind;

use exits::{ExitCollector, SharedExitIps};
pub(crate) use exits::{ExitSettings, MinAnonymity};
pub(crate) use geo::GeoCollector;
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

impl Labels for ProxyLabels {
    fn render(&self, out: &mut String) {
        render_pairs(
            out,
            &[
                ("pool", &self.pool),
                ("provider", &self.provider),
                ("protocol", &self.protocol),
            ],
        );
    }
}

impl Labels for StatusLabels {
    fn render(&self, out: &mut String) {
        render_pairs(
            out,
            &[
                ("pool", &self.pool),
                ("provider", &self.provider),
                ("protocol", &self.protocol),
                ("status", &self.status),
            ],
        );
    }
}

impl Labels for ReasonLabels {
    fn render(&self, out: &mut String) {
        render_pairs(
            out,
            &[
                ("pool", &self.pool),
                ("provider", &self.provider),
                ("protocol", &self.protocol),
                ("reason", &self.reason),
            ],
        );
    }
}

impl Labels for PhaseLabels {
    fn render(&self, out: &mut String) {
        render_pairs(
            out,
            &[
                ("pool", &self.pool),
                ("protocol", &self.protocol),
                ("phase", &self.phase),
            ],
        );
    }
}

/// The hand-encoded families (see [`families`]), in the order they are
/// written: where the registry had them, between `process_*` and the
/// other `pharox_*` families.
const CHECK_DURATION: text::Family<'static> = text::Family {
    name: "pharox_check_duration_seconds",
    unit: Some("seconds"),
    help: "Latency of successful (ACTIVE or SLOW) checks.",
    kind: Kind::Histogram,
};
const CHECK_PHASE_DURATION: text::Family<'static> = text::Family {
    name: "pharox_check_phase_duration_seconds",
    unit: Some("seconds"),
    help: "Time spent in each phase of the deciding attempt of a check.",
    kind: Kind::Histogram,
};
const CHECKS: text::Family<'static> = text::Family {
    name: "pharox_checks",
    unit: None,
    help: "Completed checks by outcome.",
    kind: Kind::Counter,
};
const CHECK_ERRORS: text::Family<'static> = text::Family {
    name: "pharox_check_errors",
    unit: None,
    help: "Failed checks by failure reason of the last attempt.",
    kind: Kind::Counter,
};
const CHECK_TIMEOUTS: text::Family<'static> = text::Family {
    name: "pharox_check_timeouts",
    unit: None,
    help: "Failed checks whose reason is timeout, by phase.",
    kind: Kind::Counter,
};

/// `pool`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PoolLabel {
    /// Pool.
    pub pool: String,
}

/// `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    /// The reason.
    pub reason: String,
}

/// Reasons of `pharox_checks_skipped_total`, every one exported from the start.
const SKIP_REASONS: [&str; 1] = ["local_resources"];

/// Reasons of `pharox_exporter_http_rejected_total`, every one exported
/// from the start (an absent series is not zero).
pub(crate) const HTTP_REJECT_REASONS: [&str; 8] = [
    "max_connections",
    "idle_evicted",
    "max_requests",
    "probe_concurrency",
    "probe_same_proxy",
    "lifecycle_disabled",
    "unauthorized",
    "tls_handshake",
];

/// `kind` / `outcome` style single label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    /// The kind.
    pub kind: String,
}

const PHASE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const SWEEP_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Statuses a check can produce (BANNED is set by operators, never checked).
const CHECK_OUTCOMES: [ProxyStatus; 3] = [
    ProxyStatus::Active,
    ProxyStatus::Slow,
    ProxyStatus::Inactive,
];

/// Bytes of a chunk of a streamed scrape (see [`Metrics::render_chunks`]).
pub(crate) const CHUNK: usize = 1 << 20;

/// Label sets (pool, provider, protocol) whose counters are created at 0
/// up front, at most. Each costs 18 series (3 outcomes, 15 reasons), and
/// each (pool, protocol) 6 more (timeouts by phase): 500 sets stay under
/// 12,000 series. Beyond it, series appear with their first event.
const PREINIT_LABEL_SETS: usize = 500;

/// The slow threshold in force per (pool, protocol): what the running
/// config resolved, as plain data (the metrics know nothing of probe
/// options; the composition root fills this in on every (re)load).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct SlowThresholds {
    /// Each protocol's threshold in pools without settings of their own.
    pub by_protocol: HashMap<ProxyProtocol, Duration>,
    /// `pools.<name>` thresholds, per protocol.
    pub by_pool: HashMap<(String, ProxyProtocol), Duration>,
}

impl SlowThresholds {
    fn get(&self, pool: &str, protocol: ProxyProtocol) -> Option<Duration> {
        self.by_pool
            .get(&(pool.to_string(), protocol))
            .or_else(|| self.by_protocol.get(&protocol))
            .copied()
    }
}

/// [`SlowThresholds`] of the running config, swapped whole on reload.
#[derive(Debug, Default)]
pub(crate) struct CheckSettings(RwLock<Option<Arc<SlowThresholds>>>);

impl CheckSettings {
    /// Apply the thresholds of a (re)loaded config.
    pub(crate) fn set(&self, thresholds: SlowThresholds) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(thresholds));
    }

    fn get(&self) -> Option<Arc<SlowThresholds>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
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
    /// `process_*`, written first.
    head: Registry,
    /// Every other `pharox_*` family but the hand-encoded ones.
    registry: Registry,
    check_duration: LabeledFamily<ProxyLabels, MicrosHistogram>,
    phase_duration: LabeledFamily<PhaseLabels, MicrosHistogram>,
    checks: LabeledFamily<StatusLabels, Counter>,
    errors: LabeledFamily<ReasonLabels, Counter>,
    timeouts: LabeledFamily<PhaseLabels, Counter>,
    per_proxy_series: PerProxySeries,
    /// Size of the last scrape, to size the next one's buffer.
    last_size: AtomicUsize,
    sweep_duration: MicrosHistogram,
    sweeps: Counter,
    overruns: Counter,
    inventory_errors: Family<KindLabel, Counter>,
    /// 1 when the last inventory read succeeded, 0 when it failed and the
    /// previous inventory was kept.
    pub inventory_last_read_ok: Gauge,
    skipped: Family<ReasonLabel, Counter>,
    http_rejected: Family<ReasonLabel, Counter>,
    geo_mismatches: Family<PoolLabel, Counter>,
    exit_ips: SharedExitIps,
    /// Minimum levels and the country cap of the exit series.
    pub exit_settings: Arc<ExitSettings>,
    /// Gauges set by the run loop.
    pub exporter: Arc<ExporterGauges>,
    /// Per-proxy series settings.
    pub per_proxy: Arc<PerProxy>,
    /// Check options, for `pharox_exporter_slow_threshold_seconds`.
    pub check_settings: Arc<CheckSettings>,
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
        // `process_*` are standard names without our prefix; every other
        // family lives in the `pharox` registry. The five families with a
        // series per label set are encoded by hand (names and help in the
        // constants above), between the two registries.
        let mut head = Registry::default();
        head.register_collector(Box::new(process::ProcessCollector));
        let mut registry = Registry::with_prefix("pharox");
        let check_duration = LabeledFamily::histograms(Bounds::new(latency_buckets));
        let phase_duration = LabeledFamily::histograms(Bounds::new(&PHASE_BUCKETS));
        let checks = LabeledFamily::counters();
        let errors = LabeledFamily::counters();
        let timeouts = LabeledFamily::counters();
        let sweep_duration = MicrosHistogram::new(Bounds::new(&SWEEP_BUCKETS));
        registry.register_with_unit(
            "exporter_sweep_duration",
            "Wall time of completed sweeps",
            Unit::Seconds,
            sweep_duration.clone(),
        );
        let sweeps = Counter::default();
        registry.register("exporter_sweeps", "Completed sweeps", sweeps.clone());
        let overruns = Counter::default();
        registry.register(
            "exporter_sweep_overruns",
            "Sweeps that took longer than the interval",
            overruns.clone(),
        );
        let inventory_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "exporter_inventory_errors",
            "Inventory reads that failed (kind=read, empty, not_regular, timeout), malformed entries skipped (kind=row), duplicate ids ignored (kind=duplicate)",
            inventory_errors.clone(),
        );
        let inventory_last_read_ok = Gauge::default();
        registry.register(
            "exporter_inventory_last_read_successful",
            "1 when the last inventory read succeeded; 0 when it failed and the previous inventory is still swept",
            inventory_last_read_ok.clone(),
        );
        let skipped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "checks_skipped",
            "Checks not done, so not recorded, for a reason that is not the proxy's \
             (local_resources: the exporter had no file descriptor left to dial)",
            skipped.clone(),
        );
        let http_rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "exporter_http_rejected",
            "HTTP connections and requests turned away, by reason",
            http_rejected.clone(),
        );
        let geo_mismatches = Family::<PoolLabel, Counter>::default();
        registry.register(
            "geo_mismatches",
            "Checks whose exit was outside the country the inventory declares (whatever the pool's geo_policy)",
            geo_mismatches.clone(),
        );
        for (family, reasons) in [
            (&skipped, &SKIP_REASONS[..]),
            (&http_rejected, &HTTP_REJECT_REASONS[..]),
        ] {
            for r in reasons {
                drop(family.get_or_create(&ReasonLabel {
                    reason: r.to_string(),
                }));
            }
        }
        registry.register_collector(Box::new(process::RuntimeCollector(
            tokio::runtime::Handle::try_current().ok(),
        )));
        let exporter = Arc::new(ExporterGauges::default());
        let per_proxy = Arc::new(PerProxy::default());
        let check_settings = Arc::new(CheckSettings::default());
        let state_for_exits = state.clone();
        let per_proxy_series = PerProxySeries::new(state.clone(), per_proxy.clone());
        registry.register_collector(Box::new(StateCollector::new(
            state,
            gauges,
            exporter.clone(),
            check_settings.clone(),
        )));
        let exit_settings = Arc::new(ExitSettings::default());
        let exit_ips = SharedExitIps::default();
        registry.register_collector(Box::new(ExitCollector {
            state: state_for_exits,
            settings: exit_settings.clone(),
            ips: exit_ips.clone(),
        }));
        for c in extra {
            registry.register_collector(c);
        }
        Metrics {
            head,
            registry,
            check_duration,
            phase_duration,
            checks,
            errors,
            timeouts,
            per_proxy_series,
            last_size: AtomicUsize::new(64 * 1024),
            sweep_duration,
            sweeps,
            overruns,
            inventory_errors,
            inventory_last_read_ok,
            skipped,
            http_rejected,
            geo_mismatches,
            exit_ips,
            exit_settings,
            exporter,
            per_proxy,
            check_settings,
        }
    }

    /// Count a check that was not done for a reason that is not the proxy's.
    pub(crate) fn skipped(&self, reason: &str) {
        self.skipped
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Count an HTTP connection or request turned away (see
    /// [`HTTP_REJECT_REASONS`]).
    pub(crate) fn http_rejected(&self, reason: &'static str) {
        self.http_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Count one completed check.
    pub(crate) fn observe(&self, proxy: &Proxy, r: &CheckResult) {
        let protocol = proxy.protocol.as_str().to_string();
        self.checks
            .counter(&StatusLabels {
                pool: proxy.pool.to_string(),
                provider: proxy.provider.to_string(),
                protocol: protocol.clone(),
                status: r.status.as_str().to_string(),
            })
            .inc();
        if r.status.is_up() {
            self.check_duration
                .histogram(&ProxyLabels {
                    pool: proxy.pool.to_string(),
                    provider: proxy.provider.to_string(),
                    protocol: protocol.clone(),
                })
                .observe_micros(r.latency_ms.saturating_mul(1000));
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
                    .histogram(&PhaseLabels {
                        pool: proxy.pool.to_string(),
                        protocol: protocol.clone(),
                        phase: phase.as_str().to_string(),
                    })
                    .observe_ms(ms);
            }
        }
        if let Some(exit) = &r.exit {
            if let Some(ip) = exit.ip {
                exits::lock(&self.exit_ips).insert(&proxy.pool, ip);
            }
            if exit.geo_mismatch {
                self.geo_mismatches
                    .get_or_create(&PoolLabel {
                        pool: proxy.pool.to_string(),
                    })
                    .inc();
            }
        }
        if let Some(reason) = r.reason {
            self.errors
                .counter(&ReasonLabels {
                    pool: proxy.pool.to_string(),
                    provider: proxy.provider.to_string(),
                    protocol: protocol.clone(),
                    reason: reason.as_str().to_string(),
                })
                .inc();
            if reason == Reason::Timeout {
                self.timeouts
                    .counter(&PhaseLabels {
                        pool: proxy.pool.to_string(),
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
        self.sweep_duration.observe(elapsed);
        exits::lock(&self.exit_ips).sweep_completed();
        // Whole milliseconds: nanosecond digits of a wall time are noise.
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.exporter.last_sweep_duration.set(ms as f64 / 1000.0);
        self.exporter.last_sweep_ts.set(completed_at_unix);
        if elapsed > interval {
            self.overruns.inc();
        }
    }

    /// Sweeps completed since start.
    pub(crate) fn sweeps_completed(&self) -> u64 {
        self.sweeps.get()
    }

    /// Create the counters known up front at 0 for these (pool, provider,
    /// protocol) label sets (the inventory's): every check outcome and every
    /// failure reason, and timeouts by every phase per (pool, protocol). So
    /// `rate()` and `increase()` see a proxy pool's first failure, and
    /// ratios have a denominator, from the first scrape. Capped at
    /// [`PREINIT_LABEL_SETS`]; histograms appear with their first observation.
    /// Geo mismatches per pool of these label sets start at 0 too.
    pub(crate) fn preinit<'a>(
        &self,
        label_sets: impl IntoIterator<Item = &'a (String, String, ProxyProtocol)>,
    ) {
        for (pool, provider, protocol) in label_sets.into_iter().take(PREINIT_LABEL_SETS) {
            drop(
                self.geo_mismatches
                    .get_or_create(&PoolLabel { pool: pool.clone() }),
            );
            let protocol = protocol.as_str();
            for st in CHECK_OUTCOMES {
                drop(self.checks.counter(&StatusLabels {
                    pool: pool.clone(),
                    provider: provider.clone(),
                    protocol: protocol.to_string(),
                    status: st.as_str().to_string(),
                }));
            }
            // local_resources is never counted here (such a check is not
            // recorded, see `checks_skipped`): no series for it.
            for reason in Reason::ALL.iter().filter(|r| **r != Reason::LocalResources) {
                drop(self.errors.counter(&ReasonLabels {
                    pool: pool.clone(),
                    provider: provider.clone(),
                    protocol: protocol.to_string(),
                    reason: reason.as_str().to_string(),
                }));
            }
            for phase in Phase::ALL {
                drop(self.timeouts.counter(&PhaseLabels {
                    pool: pool.clone(),
                    protocol: protocol.to_string(),
                    phase: phase.as_str().to_string(),
                }));
            }
        }
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
    #[cfg(test)]
    pub(crate) fn render(&self, openmetrics: bool) -> String {
        let mut all = String::new();
        self.render_chunks(openmetrics, &mut |chunk| all.push_str(&chunk));
        all
    }

    /// Render for a scrape, handing `emit` the exposition in chunks of
    /// about [`CHUNK`] bytes as they are written (one chunk when it is
    /// smaller), so a large scrape can be sent while it is rendered.
    pub(crate) fn render_chunks(&self, openmetrics: bool, emit: &mut dyn FnMut(String)) {
        // A little over the last scrape's size (up to a chunk): growing by
        // doubling would copy it several times.
        let last = self.last_size.load(Ordering::Relaxed).min(CHUNK);
        let mut out = String::with_capacity(last.saturating_add(last / 8));
        let mut total = 0;
        exposition::encode_into(&mut out, &self.head, openmetrics);
        self.check_duration
            .encode(&CHECK_DURATION, &mut out, openmetrics);
        self.phase_duration
            .encode(&CHECK_PHASE_DURATION, &mut out, openmetrics);
        self.checks.encode(&CHECKS, &mut out, openmetrics);
        self.errors.encode(&CHECK_ERRORS, &mut out, openmetrics);
        self.timeouts.encode(&CHECK_TIMEOUTS, &mut out, openmetrics);
        exposition::encode_into(&mut out, &self.registry, openmetrics);
        // Last: the per-proxy families are most of the bytes when on.
        self.per_proxy_series
            .encode(&mut out, openmetrics, &mut |out: &mut String| {
                if out.len() >= CHUNK {
                    total += out.len();
                    emit(std::mem::replace(
                        out,
                        String::with_capacity(CHUNK + CHUNK / 8),
                    ));
                }
            });
        if openmetrics {
            out.push_str("# EOF\n");
        }
        total += out.len();
        self.last_size.store(total, Ordering::Relaxed);
        emit(out);
    }
}
