//! The status page and its JSON (`/api/status`): counts per pool, the worst
//! proxies, a latency histogram. Built from the state store on demand.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;

use super::AppState;
use crate::model::{unix_now, Phase, Proxy, ProxyStatus};
use crate::state::{status_index, StateStore};

/// The status page's data.
#[derive(Debug, Serialize)]
pub(crate) struct StatusView {
    /// Unix time of this view.
    pub generated_at: f64,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Proxies in the inventory.
    pub inventory: u64,
    /// Sweep progress.
    pub sweep: SweepView,
    /// One row per pool.
    pub pools: Vec<PoolView>,
    /// Totals over every pool.
    pub totals: PoolView,
    /// INACTIVE proxies (most recently checked first), then the slowest up ones.
    pub worst: Vec<WorstView>,
    /// Latency distribution of up proxies' last checks.
    pub latency: LatencyView,
}

/// Sweep progress.
#[derive(Debug, Serialize)]
pub(crate) struct SweepView {
    /// Configured interval.
    pub interval_seconds: f64,
    /// Unix time of the last completed sweep (0 if none).
    pub last_completed: f64,
    /// Duration of the last completed sweep.
    pub last_duration_seconds: f64,
    /// Checks running now.
    pub in_flight: i64,
    /// Proxies in the current sweep.
    pub in_sweep: u64,
    /// Checks completed in the current sweep.
    pub completed: u64,
}

/// Counts for one pool.
#[derive(Debug, Serialize, Default)]
pub(crate) struct PoolView {
    /// Pool name.
    pub pool: String,
    /// ACTIVE.
    pub active: u64,
    /// SLOW.
    pub slow: u64,
    /// INACTIVE.
    pub inactive: u64,
    /// BANNED.
    pub banned: u64,
    /// Not yet checked.
    pub unchecked: u64,
    /// All.
    pub total: u64,
}

/// One bad proxy.
#[derive(Debug, Serialize)]
pub(crate) struct WorstView {
    /// Proxy id.
    pub id: String,
    /// Redacted URL.
    pub url: String,
    /// Pool.
    pub pool: String,
    /// Provider.
    pub provider: String,
    /// Reported status.
    pub status: &'static str,
    /// Reason of the last check.
    pub reason: Option<&'static str>,
    /// Phase of the failure.
    pub phase: Option<&'static str>,
    /// Error of the last check.
    pub error: Option<String>,
    /// Latency of the last check.
    pub latency_ms: u64,
    /// Unix time of the last check.
    pub checked_at: f64,
}

/// A histogram of last latencies.
#[derive(Debug, Serialize)]
pub(crate) struct LatencyView {
    /// Upper bounds, ms (the last bucket is open-ended).
    pub bounds_ms: Vec<u64>,
    /// Proxies per bucket.
    pub counts: Vec<u64>,
}

const LATENCY_BOUNDS_MS: [u64; 12] = [
    50,
    100,
    200,
    300,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    u64::MAX,
];
const WORST_LIMIT: usize = 50;

/// Build the status view (walks every proxy once).
pub(crate) fn status_view(app: &AppState) -> StatusView {
    let cfg = app.current_config();
    let x = &app.metrics.exporter;
    let (pools, totals) = pool_views(&app.state);
    let (worst, latency) = worst_and_latency(&app.state);
    StatusView {
        generated_at: unix_now(),
        uptime_seconds: app.started.elapsed().as_secs_f64(),
        inventory: x.inventory_size.get().max(0) as u64,
        sweep: SweepView {
            interval_seconds: cfg.sweep.interval.as_secs_f64(),
            last_completed: x.last_sweep_ts.get(),
            last_duration_seconds: x.last_sweep_duration.get(),
            in_flight: app.gauges.in_flight.load(Ordering::Relaxed).max(0),
            in_sweep: app.gauges.proxies.load(Ordering::Relaxed) as u64,
            completed: app.gauges.completed.load(Ordering::Relaxed) as u64,
        },
        pools,
        totals,
        worst,
        latency,
    }
}

/// One row per pool, and their totals.
fn pool_views(state: &StateStore) -> (Vec<PoolView>, PoolView) {
    let mut pools: std::collections::BTreeMap<String, PoolView> = Default::default();
    for ((pool, _, _), row) in state.counts() {
        let v = pools.entry(pool.clone()).or_insert_with(|| PoolView {
            pool,
            ..Default::default()
        });
        v.active += row[status_index(Some(ProxyStatus::Active))];
        v.slow += row[status_index(Some(ProxyStatus::Slow))];
        v.inactive += row[status_index(Some(ProxyStatus::Inactive))];
        v.banned += row[status_index(Some(ProxyStatus::Banned))];
        v.unchecked += row[4];
        v.total += row.iter().sum::<u64>();
    }
    let mut totals = PoolView {
        pool: "all".into(),
        ..Default::default()
    };
    for v in pools.values() {
        totals.active += v.active;
        totals.slow += v.slow;
        totals.inactive += v.inactive;
        totals.banned += v.banned;
        totals.unchecked += v.unchecked;
        totals.total += v.total;
    }
    (pools.into_values().collect(), totals)
}

type Candidate = (u8, std::cmp::Reverse<u64>, Arc<Proxy>);

/// The worst proxies (INACTIVE first, then the slowest up ones) and the
/// latency histogram of up proxies' last checks.
fn worst_and_latency(state: &StateStore) -> (Vec<WorstView>, LatencyView) {
    let mut counts = vec![0u64; LATENCY_BOUNDS_MS.len()];
    // Rank cheaply (an Arc clone per candidate), keep the worst few, and only
    // then build their views: with a million proxies, a quarter of them down,
    // cloning every candidate's strings made each refresh allocate megabytes.
    let mut candidates: Vec<Candidate> = Vec::new();
    state.for_each(|s| {
        let (Some(rep), Some(last)) = (s.reported, &s.last) else {
            return;
        };
        if rep.is_up() {
            let i = LATENCY_BOUNDS_MS
                .iter()
                .position(|b| last.latency_ms <= *b)
                .unwrap_or(LATENCY_BOUNDS_MS.len() - 1);
            counts[i] += 1;
        }
        if rep != ProxyStatus::Active || last.reason.is_some() {
            let rank = match rep {
                ProxyStatus::Inactive => 0,
                ProxyStatus::Banned => 1,
                ProxyStatus::Slow => 2,
                ProxyStatus::Active => 3,
            };
            candidates.push((rank, std::cmp::Reverse(last.latency_ms), s.proxy.clone()));
        }
    });
    let order = |a: &Candidate, b: &Candidate| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| a.2.id.cmp(&b.2.id))
    };
    if candidates.len() > WORST_LIMIT {
        candidates.select_nth_unstable_by(WORST_LIMIT, order);
        candidates.truncate(WORST_LIMIT);
    }
    candidates.sort_unstable_by(order);
    let worst: Vec<WorstView> = candidates
        .iter()
        .filter_map(|(_, _, p)| {
            let s = state.get(&p.id)?;
            let (rep, last) = (s.reported?, s.last?);
            Some(WorstView {
                id: p.id.clone(),
                url: p.redacted_url(),
                pool: p.pool.clone(),
                provider: p.provider.clone(),
                status: rep.as_str(),
                reason: last.reason.map(|r| r.as_str()),
                phase: last.phase.map(Phase::as_str),
                error: last.error.as_deref().map(str::to_string),
                latency_ms: last.latency_ms,
                checked_at: last.checked_at,
            })
        })
        .collect();
    (
        worst,
        LatencyView {
            bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
            counts,
        },
    )
}

pub(super) fn status_json(app: &AppState) -> String {
    serde_json::to_string(&status_view(app)).unwrap_or_else(|_| "{}".into())
}

/// The status page: self-contained HTML (inline CSS, JS and SVG, no external
/// assets) that polls `/api/status` and redraws without a reload.
pub(super) fn status_page(telemetry: &str) -> String {
    include_str!("status_page.html").replace("{{TELEMETRY_PATH}}", &html_escape(telemetry))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
