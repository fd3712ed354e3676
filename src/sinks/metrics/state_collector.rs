//! `pharox_proxies{status}` and the other current-state gauges: computed
//! from the [`StateStore`] and the sweep's gauges at scrape time, so
//! proxies that leave the inventory disappear by themselves and every
//! status is emitted for every pool, at 0 when empty. (The opt-in
//! per-proxy series are written after the registry, by `per_proxy`.)

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{CheckSettings, ExporterGauges};
use crate::model::{ProxyProtocol, ProxyStatus};
use crate::state::{status_index, StateStore, StatusCounts};
use crate::sweep::SweepGauges;

/// Current-state gauges, computed from our own state at every scrape.
#[derive(Debug)]
pub(super) struct StateCollector {
    state: Arc<StateStore>,
    gauges: Arc<SweepGauges>,
    exporter: Arc<ExporterGauges>,
    check_settings: Arc<CheckSettings>,
}

impl StateCollector {
    pub(super) fn new(
        state: Arc<StateStore>,
        gauges: Arc<SweepGauges>,
        exporter: Arc<ExporterGauges>,
        check_settings: Arc<CheckSettings>,
    ) -> StateCollector {
        StateCollector {
            state,
            gauges,
            exporter,
            check_settings,
        }
    }
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
        encode_status_counts(&mut enc, &counts)?;
        self.encode_slow_thresholds(&mut enc, &counts)?;
        self.encode_sweep_gauges(&mut enc)?;
        self.encode_exporter_gauges(&mut enc)?;
        encode_build_info(&mut enc)
    }
}

/// `pharox_proxies{status}` (every status of every label set, 0 when empty)
/// and `pharox_proxies_unchecked`.
fn encode_status_counts(enc: &mut DescriptorEncoder, counts: &StatusCounts) -> std::fmt::Result {
    let mut fam = enc.encode_descriptor(
        "proxies",
        "Proxies currently in each status (after hysteresis), every status emitted",
        None,
        MetricType::Gauge,
    )?;
    for ((pool, provider, protocol), row) in counts {
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
    let mut fam = enc.encode_descriptor(
        "proxies_unchecked",
        "Proxies in the inventory not yet checked",
        None,
        MetricType::Gauge,
    )?;
    for ((pool, provider, protocol), row) in counts {
        let labels = [
            ("pool", pool.as_str()),
            ("provider", provider.as_str()),
            ("protocol", protocol.as_str()),
        ];
        ConstGauge::new(row[status_index(None)] as i64).encode(fam.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `pharox_exporter_build_info`, always 1.
fn encode_build_info(enc: &mut DescriptorEncoder) -> std::fmt::Result {
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
    ConstGauge::new(1).encode(fam.encode_family(&build)?)
}

impl StateCollector {
    /// `pharox_exporter_slow_threshold_seconds{pool, protocol}`: the slow
    /// threshold in force for each (pool, protocol) of the inventory, so
    /// dashboards and alerts compare latencies with each pool's own.
    fn encode_slow_thresholds(
        &self,
        enc: &mut DescriptorEncoder,
        counts: &StatusCounts,
    ) -> std::fmt::Result {
        let Some(thresholds) = self.check_settings.get() else {
            return Ok(());
        };
        let sets: std::collections::BTreeSet<(&str, ProxyProtocol)> = counts
            .keys()
            .map(|(pool, _, protocol)| (pool.as_str(), *protocol))
            .collect();
        let mut fam = enc.encode_descriptor(
            "exporter_slow_threshold",
            "Configured slow threshold: a successful check slower than this is SLOW",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (pool, protocol) in sets {
            let Some(t) = thresholds.get(pool, protocol) else {
                continue;
            };
            // Whole milliseconds (as configured) over 1000: an exact decimal.
            let ms = t.as_millis();
            let labels = [("pool", pool), ("protocol", protocol.as_str())];
            ConstGauge::new(ms as f64 / 1000.0).encode(fam.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// The sweep in progress: checks in flight, proxies in the sweep.
    fn encode_sweep_gauges(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let in_flight = self.gauges.in_flight.load(Ordering::Relaxed).max(0);
        gauge(
            enc,
            "exporter_checks_in_flight",
            "Checks running now",
            None,
            ConstGauge::new(in_flight),
        )?;
        let in_sweep = self.gauges.proxies.load(Ordering::Relaxed) as i64;
        gauge(
            enc,
            "exporter_sweep_proxies",
            "Proxies in the current sweep",
            None,
            ConstGauge::new(in_sweep),
        )?;
        // Without our own IPs a judge cannot tell transparent from elite:
        // every failed learn leaves the anonymity of that sweep unknown.
        let failures = self.gauges.own_ips_learn_failures.load(Ordering::Relaxed);
        let e = enc.encode_descriptor(
            "exporter_own_ips_learn_failures",
            "Direct requests to a judge (to learn our own egress IPs) that failed",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(failures).encode(e)
    }

    /// What the run loop last set: sweep timing, inventory size, reloads.
    fn encode_exporter_gauges(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let x = &self.exporter;
        gauge(
            enc,
            "exporter_sweep_last_duration",
            "Wall time of the last completed sweep",
            Some(&Unit::Seconds),
            ConstGauge::new(x.last_sweep_duration.get()),
        )?;
        gauge(
            enc,
            "exporter_sweep_interval",
            "Configured sweep interval",
            Some(&Unit::Seconds),
            ConstGauge::new(x.interval.get()),
        )?;
        gauge(
            enc,
            "exporter_sweep_last_completed_timestamp",
            "Unix time the last sweep completed",
            Some(&Unit::Seconds),
            ConstGauge::new(x.last_sweep_ts.get()),
        )?;
        gauge(
            enc,
            "exporter_inventory_proxies",
            "Proxies in the inventory as last read",
            None,
            ConstGauge::new(x.inventory_size.get()),
        )?;
        gauge(
            enc,
            "exporter_config_last_reload_successful",
            "1 if the last configuration reload succeeded",
            None,
            ConstGauge::new(x.reload_ok.get()),
        )?;
        gauge(
            enc,
            "exporter_config_last_reload_success_timestamp",
            "Unix time of the last successful configuration (re)load",
            Some(&Unit::Seconds),
            ConstGauge::new(x.reload_ts.get()),
        )
    }
}
