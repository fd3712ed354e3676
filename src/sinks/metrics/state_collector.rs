//! `pharox_proxies{status}` and the other current-state gauges, plus the
//! opt-in per-proxy series: computed from the [`StateStore`] and the sweep's
//! gauges at scrape time, so proxies that leave the inventory disappear by
//! themselves and every status is emitted for every pool, at 0 when empty.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{CheckSettings, ExporterGauges, PerProxy};
use crate::model::{ProxyProtocol, ProxyStatus};
use crate::state::{status_index, ExitSeen, StateStore, StatusCounts};
use crate::sweep::SweepGauges;

/// Current-state gauges, computed from our own state at every scrape.
#[derive(Debug)]
pub(super) struct StateCollector {
    state: Arc<StateStore>,
    gauges: Arc<SweepGauges>,
    exporter: Arc<ExporterGauges>,
    per_proxy: Arc<PerProxy>,
    check_settings: Arc<CheckSettings>,
    dropped: AtomicU64,
}

impl StateCollector {
    pub(super) fn new(
        state: Arc<StateStore>,
        gauges: Arc<SweepGauges>,
        exporter: Arc<ExporterGauges>,
        per_proxy: Arc<PerProxy>,
        check_settings: Arc<CheckSettings>,
    ) -> StateCollector {
        StateCollector {
            state,
            gauges,
            exporter,
            per_proxy,
            check_settings,
            dropped: AtomicU64::new(0),
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
        encode_build_info(&mut enc)?;
        if self.per_proxy.get().0 {
            self.encode_per_proxy(&mut enc)?;
        } else {
            // Switched off by a reload: no cap applies, so nothing is dropped
            // (a stale count would keep a "series dropped" alert firing).
            self.dropped.store(0, Ordering::Relaxed);
        }
        gauge(
            &mut enc,
            "exporter_proxy_series_dropped",
            "Proxies left out of per-proxy series by the cap at this scrape",
            None,
            ConstGauge::new(self.dropped.load(Ordering::Relaxed) as i64),
        )
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

    fn encode_per_proxy(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let limit = self.per_proxy.get().1;
        // (id, pool, provider, protocol, up, latency s, checked_at, exit)
        type Row = (
            String,
            String,
            String,
            &'static str,
            i64,
            f64,
            f64,
            Option<ExitSeen>,
        );
        let mut rows: Vec<Row> = Vec::new();
        self.state.for_each(|s| {
            if let (Some(rep), Some(last)) = (s.reported, &s.last) {
                let p = &s.proxy;
                rows.push((
                    p.id.to_string(),
                    p.pool.to_string(),
                    p.provider.to_string(),
                    p.protocol.as_str(),
                    rep.is_up() as i64,
                    last.latency_ms as f64 / 1000.0,
                    last.checked_at,
                    last.exit.as_deref().cloned(),
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
        let mut fam = enc.encode_descriptor(
            "proxy_exit_info",
            "The exit IP, exit country and anonymity level the proxy's last check saw at a judge (per-proxy, opt-in); always 1",
            None,
            MetricType::Gauge,
        )?;
        for r in &rows {
            let Some(exit) = &r.7 else { continue };
            let ip = exit.ip.map(|ip| ip.to_string()).unwrap_or_default();
            let labels = [
                ("proxy_id", r.0.as_str()),
                ("pool", r.1.as_str()),
                ("provider", r.2.as_str()),
                ("protocol", r.3),
                ("exit_ip", ip.as_str()),
                ("country", exit.country.as_ref().map_or("", |c| c.as_str())),
                ("anonymity", exit.anonymity.map_or("", |a| a.as_str())),
            ];
            ConstGauge::new(1).encode(fam.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
