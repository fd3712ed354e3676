//! What the checks found of the proxies' exits, per pool: proxies by
//! anonymity level and by exit country, proxies whose exit is outside their
//! declared country, distinct exit IPs of the last sweep, and each pool's
//! required minimum level. Computed at scrape time from the state's tally
//! (O(label sets), not O(proxies)) and from the per-sweep exit IP sets.
//!
//! Every label value here is bounded: pools and protocols come from the
//! inventory's label sets, levels are three, and countries are two-letter
//! codes capped per pool (the rest summed as `other`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::model::{Anonymity, ProxyProtocol};
use crate::state::{ExitCounts, StateStore, DEFAULT_EXIT_COUNTRY_LIMIT};

/// The minimum anonymity level in force per (pool, protocol): what the
/// running config resolved, as plain data (filled in on every (re)load).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct MinAnonymity {
    /// Each protocol's minimum in pools without settings of their own.
    pub by_protocol: HashMap<ProxyProtocol, Anonymity>,
    /// `pools.<name>` minimums, per protocol; `None` where a pool's own
    /// options require no level (overriding a protocol default).
    pub by_pool: HashMap<(String, ProxyProtocol), Option<Anonymity>>,
}

impl MinAnonymity {
    fn get(&self, pool: &str, protocol: ProxyProtocol) -> Option<Anonymity> {
        match self.by_pool.get(&(pool.to_string(), protocol)) {
            Some(level) => *level,
            None => self.by_protocol.get(&protocol).copied(),
        }
    }
}

/// Settings of the exit series, swapped on reload.
#[derive(Debug)]
pub(crate) struct ExitSettings {
    min_anonymity: RwLock<Arc<MinAnonymity>>,
    country_limit: AtomicUsize,
}

impl Default for ExitSettings {
    fn default() -> Self {
        ExitSettings {
            min_anonymity: RwLock::default(),
            country_limit: AtomicUsize::new(DEFAULT_EXIT_COUNTRY_LIMIT),
        }
    }
}

impl ExitSettings {
    /// Apply a (re)loaded config's minimum levels and country cap.
    pub(crate) fn set(&self, min_anonymity: MinAnonymity, country_limit: usize) {
        *self
            .min_anonymity
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(min_anonymity);
        self.country_limit.store(country_limit, Ordering::Relaxed);
    }

    fn min_anonymity(&self) -> Arc<MinAnonymity> {
        self.min_anonymity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Distinct exit IPs per pool: those of the sweep in progress (exact sets,
/// emptied when it completes) and the counts of the last completed one.
///
/// Exact rather than a sketch: a set costs about 40 bytes per distinct exit
/// for the length of one sweep (40 MB at a million distinct exits, beside
/// the state's ~300 bytes per proxy), and a small pool's count must be
/// exact to be worth reading.
#[derive(Debug, Default)]
pub(crate) struct ExitIps {
    current: HashMap<String, HashSet<IpAddr>>,
    last: BTreeMap<String, u64>,
}

impl ExitIps {
    /// One result's exit IP, in the sweep in progress.
    pub(crate) fn insert(&mut self, pool: &str, ip: IpAddr) {
        // Look up before inserting: `entry` would allocate the pool name
        // on every result.
        match self.current.get_mut(pool) {
            Some(set) => {
                set.insert(ip);
            }
            None => {
                self.current.insert(pool.to_string(), HashSet::from([ip]));
            }
        }
    }

    /// The sweep completed: its counts become the last sweep's.
    pub(crate) fn sweep_completed(&mut self) {
        self.last = self
            .current
            .drain()
            .map(|(pool, set)| (pool, set.len() as u64))
            .collect();
    }
}

/// Shared between the event side (results, sweeps) and the collector.
pub(crate) type SharedExitIps = Arc<Mutex<ExitIps>>;

pub(super) fn lock(m: &Mutex<ExitIps>) -> MutexGuard<'_, ExitIps> {
    // A panic mid-insert leaves a set that is still a set: keep counting.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The exit gauges, computed at every scrape.
#[derive(Debug)]
pub(super) struct ExitCollector {
    pub(super) state: Arc<StateStore>,
    pub(super) settings: Arc<ExitSettings>,
    pub(super) ips: SharedExitIps,
}

impl Collector for ExitCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let by_set = self.state.exit_counts();
        let mut by_pool: BTreeMap<&str, ExitCounts> = BTreeMap::new();
        for ((pool, _), c) in &by_set {
            by_pool.entry(pool.as_str()).or_default().merge(c);
        }

        let mut fam = enc.encode_descriptor(
            "proxies_by_anonymity",
            "Proxies by the anonymity level their last check saw at a judge, every level emitted",
            None,
            MetricType::Gauge,
        )?;
        for ((pool, protocol), c) in &by_set {
            for (level, n) in Anonymity::ALL.iter().zip(c.levels) {
                let labels = [
                    ("pool", pool.as_str()),
                    ("protocol", protocol.as_str()),
                    ("level", level.as_str()),
                ];
                ConstGauge::new(n as i64).encode(fam.encode_family(&labels)?)?;
            }
        }

        let limit = self.settings.country_limit.load(Ordering::Relaxed);
        let mut fam = enc.encode_descriptor(
            "proxies_by_exit_country",
            "Proxies by the country their last check exited in (the pool's top countries; the rest as country=\"other\", emitted for every pool)",
            None,
            MetricType::Gauge,
        )?;
        for (pool, c) in &by_pool {
            let (top, other) = top_countries(c, limit);
            for (country, n) in top {
                let labels = [("pool", *pool), ("country", country)];
                ConstGauge::new(n as i64).encode(fam.encode_family(&labels)?)?;
            }
            // Every pool has `other`, at 0 when its countries fit the cap:
            // the pool's series exist (and sum) before any exit is seen.
            let labels = [("pool", *pool), ("country", "other")];
            ConstGauge::new(other as i64).encode(fam.encode_family(&labels)?)?;
        }

        let mut fam = enc.encode_descriptor(
            "proxies_geo_mismatched",
            "Proxies whose last check exited outside the country the inventory declares",
            None,
            MetricType::Gauge,
        )?;
        for (pool, c) in &by_pool {
            ConstGauge::new(c.mismatched as i64).encode(fam.encode_family(&[("pool", *pool)])?)?;
        }

        let last = lock(&self.ips).last.clone();
        let mut fam = enc.encode_descriptor(
            "exit_ips_distinct",
            "Distinct exit IPs seen by the checks of the last completed sweep",
            None,
            MetricType::Gauge,
        )?;
        for pool in by_pool.keys() {
            let n = last.get(*pool).copied().unwrap_or(0);
            ConstGauge::new(n as i64).encode(fam.encode_family(&[("pool", *pool)])?)?;
        }

        let min = self.settings.min_anonymity();
        let mut fam = enc.encode_descriptor(
            "exporter_min_anonymity_info",
            "The minimum anonymity level a pool's checks require (min_anonymity); always 1",
            None,
            MetricType::Gauge,
        )?;
        for (pool, protocol) in by_set.keys() {
            if let Some(level) = min.get(pool, *protocol) {
                let labels = [
                    ("pool", pool.as_str()),
                    ("protocol", protocol.as_str()),
                    ("level", level.as_str()),
                ];
                ConstGauge::new(1).encode(fam.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The `limit` countries with the most proxies (ties by code, so the set is
/// stable across scrapes), and the sum of the rest.
fn top_countries(c: &ExitCounts, limit: usize) -> (Vec<(&str, u64)>, u64) {
    let mut all: Vec<(&str, u64)> = c.countries.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let other = all.iter().skip(limit).map(|(_, n)| n).sum();
    all.truncate(limit);
    (all, other)
}
