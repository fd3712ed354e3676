//! The status page and its JSON (`/api/status`): counts per pool and per
//! provider (with, per pool, proxies by anonymity level and exit country),
//! failures by reason, the worst proxies (filtered by pool, provider,
//! status, reason, anonymity, exit country and geo mismatch), a latency
//! histogram. Built from the state store on demand.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::http::request::Parts;
use hyper::StatusCode;
use serde::Serialize;

use super::routes::{respond, Resp};
use super::AppState;
use crate::model::{unix_now, Anonymity, Phase, Proxy, ProxyStatus, Reason};
use crate::state::{status_index, Country, ExitCounts, ExitSeen, StateStore, StatusCounts};

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
    /// One row per provider (of the pools the filter selects).
    pub providers: Vec<ProviderView>,
    /// Proxies whose last check failed, by reason (most frequent first),
    /// among those the pool and provider filters select.
    pub failures: Vec<ReasonCount>,
    /// The filter applied to `worst` (and, for pool and provider, to
    /// `providers` and `failures`), as understood.
    pub filter: Filter,
    /// Proxies that match the filter, of which `worst` shows at most
    /// `filter.limit`.
    pub worst_total: u64,
    /// Without a status filter: INACTIVE proxies, then BANNED, then the
    /// slowest up ones (and up ones whose last check failed). With one: the
    /// proxies in that status, slowest first.
    pub worst: Vec<WorstView>,
    /// Latency distribution of up proxies' last checks.
    pub latency: LatencyView,
}

/// Sweep progress.
#[derive(Debug, Serialize)]
pub(crate) struct SweepView {
    /// Configured interval.
    pub interval_seconds: f64,
    /// Sweeps completed since start.
    pub completed_sweeps: u64,
    /// Unix time of the last completed sweep; `null` before the first one.
    pub last_completed: Option<f64>,
    /// Duration of the last completed sweep; `null` before the first one.
    pub last_duration_seconds: Option<f64>,
    /// Checks running now.
    pub in_flight: i64,
    /// Proxies in the current sweep.
    pub in_sweep: u64,
    /// Checks completed in the current sweep.
    pub completed: u64,
}

/// Proxies per reported status.
#[derive(Debug, Serialize, Default, Clone, Copy)]
pub(crate) struct Counts {
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

impl Counts {
    fn add_row(&mut self, row: &[u64; 5]) {
        self.active += row[status_index(Some(ProxyStatus::Active))];
        self.slow += row[status_index(Some(ProxyStatus::Slow))];
        self.inactive += row[status_index(Some(ProxyStatus::Inactive))];
        self.banned += row[status_index(Some(ProxyStatus::Banned))];
        self.unchecked += row[status_index(None)];
        self.total += row.iter().sum::<u64>();
    }

    fn add(&mut self, o: &Counts) {
        self.active += o.active;
        self.slow += o.slow;
        self.inactive += o.inactive;
        self.banned += o.banned;
        self.unchecked += o.unchecked;
        self.total += o.total;
    }
}

/// Counts for one pool.
#[derive(Debug, Serialize, Default)]
pub(crate) struct PoolView {
    /// Pool name.
    pub pool: String,
    /// Proxies per status.
    #[serde(flatten)]
    pub counts: Counts,
    /// What the last checks saw of the exits.
    pub exits: ExitView,
}

/// Proxies by anonymity level and exit country, from their last checks
/// (those whose check saw no exit are in none of the counts).
#[derive(Debug, Serialize, Default, PartialEq)]
pub(crate) struct ExitView {
    /// Proxies per anonymity level.
    pub anonymity: LevelCounts,
    /// Proxies per exit country, most first (ties by code), at most
    /// `metrics.exit_country_limit` of them.
    pub countries: Vec<CountryCount>,
    /// Proxies exiting in the countries left out of `countries`.
    pub countries_other: u64,
    /// Proxies whose exit country differs from the declared one.
    pub geo_mismatch: u64,
}

/// Proxies per anonymity level.
#[derive(Debug, Serialize, Default, PartialEq, Clone, Copy)]
pub(crate) struct LevelCounts {
    /// Transparent.
    pub transparent: u64,
    /// Anonymous.
    pub anonymous: u64,
    /// Elite.
    pub elite: u64,
}

/// Proxies exiting in one country.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct CountryCount {
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// Proxies.
    pub count: u64,
}

impl ExitView {
    fn of(c: &ExitCounts, country_limit: usize) -> ExitView {
        let mut countries: Vec<CountryCount> = c
            .countries
            .iter()
            .map(|(k, n)| CountryCount {
                country: k.as_str().to_string(),
                count: *n,
            })
            .collect();
        countries.sort_by(|a, b| b.count.cmp(&a.count).then(a.country.cmp(&b.country)));
        let countries_other = countries.iter().skip(country_limit).map(|c| c.count).sum();
        countries.truncate(country_limit);
        ExitView {
            anonymity: LevelCounts {
                transparent: c.levels[0],
                anonymous: c.levels[1],
                elite: c.levels[2],
            },
            countries,
            countries_other,
            geo_mismatch: c.mismatched,
        }
    }
}

/// Counts for one provider.
#[derive(Debug, Serialize, Default)]
pub(crate) struct ProviderView {
    /// Provider name.
    pub provider: String,
    /// Proxies per status.
    #[serde(flatten)]
    pub counts: Counts,
}

/// Proxies whose last check failed for one reason.
#[derive(Debug, Serialize)]
pub(crate) struct ReasonCount {
    /// The reason.
    pub reason: &'static str,
    /// Proxies.
    pub count: u64,
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
    /// Latency of the last check as pharox reports it (the timeout for a
    /// failed check).
    pub latency_ms: u64,
    /// How long the last check really took.
    pub elapsed_ms: u64,
    /// Unix time of the last check.
    pub checked_at: f64,
    /// The exit IP the last check saw at a judge.
    pub exit_ip: Option<String>,
    /// The exit's country (geolocation).
    pub exit_country: Option<String>,
    /// The country the inventory declares.
    pub declared_country: Option<String>,
    /// Anonymity level the judge saw.
    pub anonymity: Option<&'static str>,
    /// The exit country differs from the declared one.
    pub geo_mismatch: bool,
}

/// What the worst-proxies list shows: query parameters of `/api/status`
/// (the page passes its own on). Unknown parameters are ignored; bad values
/// are refused, so a typo never silently shows everything.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Filter {
    /// Only this pool.
    pub pool: Option<String>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Only proxies reported in this status.
    pub status: Option<ProxyStatus>,
    /// Only proxies whose last check failed for this reason.
    pub reason: Option<Reason>,
    /// Only proxies whose last check saw this anonymity level.
    pub anonymity: Option<Anonymity>,
    /// Only proxies whose last check exited in this country.
    pub country: Option<String>,
    /// Only proxies whose exit is (true) or is not (false) outside their
    /// declared country.
    pub geo_mismatch: Option<bool>,
    /// At most this many rows.
    pub limit: usize,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            pool: None,
            provider: None,
            status: None,
            reason: None,
            anonymity: None,
            country: None,
            geo_mismatch: None,
            limit: WORST_LIMIT,
        }
    }
}

/// Longest pool or provider value accepted in a filter: labels are short,
/// and a query string must not make the server copy megabytes.
const MAX_FILTER_VALUE: usize = 256;
/// Most rows a client can ask for.
const MAX_WORST_LIMIT: usize = 1000;

impl Filter {
    /// Parse `pool`, `provider`, `status`, `reason` and `limit` from a query
    /// string. An empty value means "any".
    pub(crate) fn from_query(query: Option<&str>) -> Result<Filter, String> {
        let mut f = Filter::default();
        let Some(q) = query else { return Ok(f) };
        if q.len() > 4 * MAX_FILTER_VALUE {
            return Err(format!(
                "query string longer than {} bytes",
                4 * MAX_FILTER_VALUE
            ));
        }
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            if v.len() > MAX_FILTER_VALUE {
                return Err(format!("{k}: longer than {MAX_FILTER_VALUE} bytes"));
            }
            match &*k {
                "pool" => f.pool = Some(v.to_string()),
                "provider" => f.provider = Some(v.to_string()),
                "status" => {
                    f.status = Some(v.parse().map_err(|_| {
                        format!("status: {v:?} is not one of active, slow, inactive, banned")
                    })?)
                }
                "reason" => {
                    let r = Reason::ALL.into_iter().find(|r| r.as_str() == v);
                    f.reason = Some(r.ok_or_else(|| {
                        let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                        format!("reason: {v:?} is not one of {}", all.join(", "))
                    })?);
                }
                "anonymity" => {
                    f.anonymity = Some(v.parse().map_err(|e| format!("anonymity: {e}"))?)
                }
                "country" => {
                    let c = Country::parse(v).ok_or_else(|| {
                        format!("country: {v:?} is not a two-letter country code")
                    })?;
                    f.country = Some(c.as_str().to_string());
                }
                "geo_mismatch" => {
                    f.geo_mismatch = Some(match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("geo_mismatch: {v:?} is not true or false")),
                    })
                }
                "limit" => {
                    f.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_WORST_LIMIT).contains(n))
                        .ok_or_else(|| {
                            format!("limit: {v:?} is not a number from 1 to {MAX_WORST_LIMIT}")
                        })?
                }
                _ => {}
            }
        }
        Ok(f)
    }

    fn labels_match(&self, pool: &str, provider: &str) -> bool {
        self.pool.as_deref().is_none_or(|p| p == pool)
            && self.provider.as_deref().is_none_or(|p| p == provider)
    }

    /// True when an exit filter (anonymity, country, geo mismatch) is set.
    fn on_exits(&self) -> bool {
        self.anonymity.is_some() || self.country.is_some() || self.geo_mismatch.is_some()
    }

    /// The exit filters hold for what a last check saw.
    fn exit_matches(&self, e: Option<&ExitSeen>) -> bool {
        self.anonymity
            .is_none_or(|a| e.and_then(|e| e.anonymity) == Some(a))
            && self
                .country
                .as_deref()
                .is_none_or(|c| e.and_then(|e| e.country).is_some_and(|x| x.as_str() == c))
            && self
                .geo_mismatch
                .is_none_or(|m| e.is_some_and(|e| e.geo_mismatch) == m)
    }
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
pub(crate) fn status_view(app: &AppState, filter: Filter) -> StatusView {
    let cfg = app.current_config();
    let x = &app.metrics.exporter;
    let counts = app.state.counts();
    let exits = app.state.exit_counts();
    let (pools, totals) = pool_views(&counts, &exits, cfg.metrics.exit_country_limit);
    let providers = provider_views(&counts, &filter);
    let walk = walk(&app.state, &filter);
    // The run loop sets "last completed" to the start time until a sweep
    // completes (so a stalled first sweep ages in alerts): only the sweep
    // count says whether one has.
    let completed_sweeps = app.metrics.sweeps_completed();
    let done = completed_sweeps > 0;
    StatusView {
        generated_at: unix_now(),
        uptime_seconds: app.started.elapsed().as_secs_f64(),
        inventory: x.inventory_size.get().max(0) as u64,
        sweep: SweepView {
            interval_seconds: cfg.sweep.interval.as_secs_f64(),
            completed_sweeps,
            last_completed: done.then(|| x.last_sweep_ts.get()),
            last_duration_seconds: done.then(|| x.last_sweep_duration.get()),
            in_flight: app.gauges.in_flight.load(Ordering::Relaxed).max(0),
            in_sweep: app.gauges.proxies.load(Ordering::Relaxed) as u64,
            completed: app.gauges.completed.load(Ordering::Relaxed) as u64,
        },
        pools,
        totals,
        providers,
        failures: walk.failures,
        filter,
        worst_total: walk.worst_total,
        worst: walk.worst,
        latency: walk.latency,
    }
}

/// One row per pool, and their totals.
fn pool_views(
    counts: &StatusCounts,
    exits: &crate::state::ExitCountsByPool,
    country_limit: usize,
) -> (Vec<PoolView>, PoolView) {
    let mut pools: BTreeMap<&str, (Counts, ExitCounts)> = BTreeMap::new();
    for ((pool, _, _), row) in counts {
        pools.entry(pool).or_default().0.add_row(row);
    }
    for ((pool, _), c) in exits {
        pools.entry(pool).or_default().1.merge(c);
    }
    let mut total = (Counts::default(), ExitCounts::default());
    for (c, e) in pools.values() {
        total.0.add(c);
        total.1.merge(e);
    }
    let totals = PoolView {
        pool: "all".into(),
        counts: total.0,
        exits: ExitView::of(&total.1, country_limit),
    };
    let pools = pools
        .into_iter()
        .map(|(pool, (counts, exits))| PoolView {
            pool: pool.to_string(),
            counts,
            exits: ExitView::of(&exits, country_limit),
        })
        .collect();
    (pools, totals)
}

/// One row per provider, over the pools the filter selects.
fn provider_views(counts: &StatusCounts, filter: &Filter) -> Vec<ProviderView> {
    let mut providers: BTreeMap<&str, Counts> = BTreeMap::new();
    for ((pool, provider, _), row) in counts {
        if filter.labels_match(pool, provider) {
            providers.entry(provider).or_default().add_row(row);
        }
    }
    providers
        .into_iter()
        .map(|(provider, counts)| ProviderView {
            provider: provider.to_string(),
            counts,
        })
        .collect()
}

type Candidate = (u8, std::cmp::Reverse<u64>, Arc<Proxy>);

/// What one walk over every proxy yields.
struct Walk {
    worst: Vec<WorstView>,
    worst_total: u64,
    failures: Vec<ReasonCount>,
    latency: LatencyView,
}

/// One pass over every proxy: the latency histogram of up proxies' last
/// checks (all of them), failures by reason and the worst proxies (those
/// the filter selects).
fn walk(state: &StateStore, filter: &Filter) -> Walk {
    let mut counts = vec![0u64; LATENCY_BOUNDS_MS.len()];
    let mut by_reason = [0u64; Reason::ALL.len()];
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
        if !filter.labels_match(&s.proxy.pool, &s.proxy.provider) {
            return;
        }
        if let Some(r) = last.reason {
            by_reason[reason_index(r)] += 1;
        }
        // An exit filter lists every proxy it selects, working or not: a
        // transparent proxy is worth finding whatever its status.
        let wanted = match filter.status {
            Some(st) => rep == st,
            None => filter.on_exits() || rep != ProxyStatus::Active || last.reason.is_some(),
        };
        if !wanted
            || filter.reason.is_some_and(|r| last.reason != Some(r))
            || !filter.exit_matches(last.exit.as_deref())
        {
            return;
        }
        let rank = match rep {
            ProxyStatus::Inactive => 0,
            ProxyStatus::Banned => 1,
            ProxyStatus::Slow => 2,
            ProxyStatus::Active => 3,
        };
        candidates.push((rank, std::cmp::Reverse(last.latency_ms), s.proxy.clone()));
    });
    let worst_total = candidates.len() as u64;
    let order = |a: &Candidate, b: &Candidate| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| a.2.id.cmp(&b.2.id))
    };
    if candidates.len() > filter.limit {
        candidates.select_nth_unstable_by(filter.limit, order);
        candidates.truncate(filter.limit);
    }
    candidates.sort_unstable_by(order);
    let worst: Vec<WorstView> = candidates
        .iter()
        .filter_map(|(_, _, p)| {
            let s = state.get(&p.id)?;
            let (rep, last) = (s.reported?, s.last?);
            let exit = last.exit.as_deref();
            Some(WorstView {
                id: p.id.to_string(),
                url: p.redacted_url(),
                pool: p.pool.to_string(),
                provider: p.provider.to_string(),
                status: rep.as_str(),
                reason: last.reason.map(|r| r.as_str()),
                phase: last.phase.map(Phase::as_str),
                error: last.error.as_deref().map(str::to_string),
                latency_ms: last.latency_ms,
                elapsed_ms: last.elapsed_ms,
                checked_at: last.checked_at,
                exit_ip: exit.and_then(|e| e.ip).map(|ip| ip.to_string()),
                exit_country: exit.and_then(|e| e.country).map(|c| c.as_str().to_string()),
                declared_country: p.country.as_deref().map(str::to_string),
                anonymity: exit.and_then(|e| e.anonymity).map(Anonymity::as_str),
                geo_mismatch: exit.is_some_and(|e| e.geo_mismatch),
            })
        })
        .collect();
    let mut failures: Vec<ReasonCount> = Reason::ALL
        .iter()
        .zip(by_reason)
        .filter(|(_, n)| *n > 0)
        .map(|(r, count)| ReasonCount {
            reason: r.as_str(),
            count,
        })
        .collect();
    // Most frequent first; the sort is stable, so ties keep Reason::ALL order.
    failures.sort_by_key(|r| std::cmp::Reverse(r.count));
    Walk {
        worst,
        worst_total,
        failures,
        latency: LatencyView {
            bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
            counts,
        },
    }
}

fn reason_index(r: Reason) -> usize {
    Reason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

/// `GET /api/status`: the view as JSON, filtered by the query string; a bad
/// filter is a 400 with the reason, as JSON.
pub(super) async fn api_status(req: &Parts, app: &Arc<AppState>) -> Resp {
    let filter = match Filter::from_query(req.uri.query()) {
        Ok(f) => f,
        Err(e) => {
            let body = serde_json::json!({ "error": format!("bad filter: {e}") }).to_string();
            return respond(StatusCode::BAD_REQUEST, JSON, body);
        }
    };
    let app = app.clone();
    // Walks every proxy: keep it off the async workers.
    let body = tokio::task::spawn_blocking(move || status_json(&app, filter))
        .await
        .unwrap_or_default();
    respond(StatusCode::OK, JSON, body)
}

const JSON: &str = "application/json";

fn status_json(app: &AppState, filter: Filter) -> String {
    serde_json::to_string(&status_view(app, filter)).unwrap_or_else(|_| "{}".into())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    use crate::model::{CheckResult, Phases, ProxyProtocol};

    fn app() -> AppState {
        crate::server::test_app(40)
    }

    fn proxy(port: u16, pool: &str, provider: &str) -> Arc<Proxy> {
        let mut p = Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", port);
        p.pool = pool.into();
        p.provider = provider.into();
        Arc::new(p)
    }

    fn result(status: ProxyStatus, reason: Option<Reason>, elapsed_ms: u64) -> CheckResult {
        CheckResult {
            proxy_id: String::new(),
            status,
            latency_ms: if status.is_up() { elapsed_ms } else { 5000 },
            elapsed_ms,
            attempts: 1,
            status_code: None,
            reason,
            phase: reason.map(|_| Phase::Connect),
            error: None,
            checked_at: chrono::Utc::now(),
            phases: Phases::default(),
            exit: None,
        }
    }

    /// 60 refused proxies in pool a (provider x), 3 timeouts in pool b
    /// (provider y), one ACTIVE in a, one unchecked in b.
    fn fixture() -> AppState {
        let app = app();
        let mut all = Vec::new();
        for i in 0..60 {
            all.push((
                proxy(1000 + i, "a", "x"),
                Some(result(
                    ProxyStatus::Inactive,
                    Some(Reason::ConnectRefused),
                    1,
                )),
            ));
        }
        for i in 0..3 {
            all.push((
                proxy(2000 + i, "b", "y"),
                Some(result(ProxyStatus::Inactive, Some(Reason::Timeout), 5000)),
            ));
        }
        all.push((
            proxy(3000, "a", "y"),
            Some(result(ProxyStatus::Active, None, 80)),
        ));
        all.push((proxy(3001, "b", "x"), None));
        let proxies: Vec<Arc<Proxy>> = all.iter().map(|(p, _)| p.clone()).collect();
        app.state.sync(&proxies);
        for (p, r) in &all {
            if let Some(r) = r {
                app.state.record(p, r, Instant::now());
            }
        }
        app
    }

    #[test]
    fn filters_parse_bounded_and_refuse_typos() {
        let f = Filter::from_query(Some(
            "pool=a%20b&status=INACTIVE&reason=timeout&limit=5&x=1",
        ))
        .expect("valid");
        assert_eq!(f.pool.as_deref(), Some("a b"));
        assert_eq!(f.status, Some(ProxyStatus::Inactive));
        assert_eq!(f.reason, Some(Reason::Timeout));
        assert_eq!(f.limit, 5);
        assert_eq!(
            Filter::from_query(Some("pool=&status=")),
            Ok(Filter::default())
        );
        for bad in [
            "status=down",
            "reason=refused",
            "limit=0",
            "limit=100000",
            "limit=x",
            "anonymity=hidden",
            "country=Germany",
            "geo_mismatch=maybe",
        ] {
            let e = Filter::from_query(Some(bad)).expect_err(bad);
            assert!(
                e.starts_with(bad.split('=').next().unwrap_or("")),
                "{bad}: {e}"
            );
        }
        let long = format!("pool={}", "p".repeat(MAX_FILTER_VALUE + 1));
        assert!(Filter::from_query(Some(&long)).is_err());
        let huge = format!("x={}", "p".repeat(10_000));
        assert!(Filter::from_query(Some(&huge)).is_err());
    }

    #[test]
    fn worst_says_how_many_match_and_filters_apply() {
        let app = fixture();
        let v = status_view(&app, Filter::default());
        assert_eq!((v.worst.len(), v.worst_total), (50, 63), "50 of 63");
        // Failures by reason, most frequent first.
        let failures: Vec<(&str, u64)> = v.failures.iter().map(|r| (r.reason, r.count)).collect();
        assert_eq!(failures, [("connect_refused", 60), ("timeout", 3)]);
        let providers: Vec<(&str, u64, u64, u64)> = v
            .providers
            .iter()
            .map(|p| {
                (
                    p.provider.as_str(),
                    p.counts.inactive,
                    p.counts.active,
                    p.counts.unchecked,
                )
            })
            .collect();
        assert_eq!(providers, [("x", 60, 0, 1), ("y", 3, 1, 0)]);
        // A refused connection took 1 ms, though pharox's latency is the timeout.
        let refused = v
            .worst
            .iter()
            .find(|w| w.reason == Some("connect_refused"))
            .expect("a refused proxy");
        assert_eq!((refused.elapsed_ms, refused.latency_ms), (1, 5000));

        let by_reason = Filter::from_query(Some("reason=timeout")).expect("filter");
        let v = status_view(&app, by_reason);
        assert_eq!((v.worst.len(), v.worst_total), (3, 3));
        assert!(v.worst.iter().all(|w| w.pool == "b"));

        let by_pool = Filter::from_query(Some("pool=a&limit=10")).expect("filter");
        let v = status_view(&app, by_pool);
        assert_eq!((v.worst.len(), v.worst_total), (10, 60));
        assert_eq!(v.failures.len(), 1, "only pool a's failures");
        assert_eq!(v.pools.len(), 2, "the pools table is never filtered");

        let active = Filter::from_query(Some("status=active")).expect("filter");
        let v = status_view(&app, active);
        assert_eq!(v.worst_total, 1, "a status filter lists that status");
        assert_eq!(v.worst[0].status, "active");
    }

    /// Pool `eu` (declared DE): an elite proxy exiting in DE, a transparent
    /// one in US (mismatch), an anonymous one in DE that failed the check;
    /// pool `us`: one proxy whose check saw no exit.
    fn exit_fixture() -> AppState {
        let app = app();
        let exit = |ip: u8, level: Anonymity, country: &str, mismatch: bool| {
            Some(crate::model::Exit {
                ip: Some(std::net::IpAddr::from([10, 0, 0, ip])),
                anonymity: Some(level),
                anonymity_header: None,
                geo: Some(crate::model::Geo {
                    country: Some(country.into()),
                    ..Default::default()
                }),
                geo_mismatch: mismatch,
            })
        };
        let declared = |port: u16, pool: &str| {
            let mut p = (*proxy(port, pool, "x")).clone();
            p.country = Some("DE".into());
            Arc::new(p)
        };
        let all = [
            (
                declared(1, "eu"),
                ProxyStatus::Active,
                exit(1, Anonymity::Elite, "DE", false),
            ),
            (
                declared(2, "eu"),
                ProxyStatus::Active,
                exit(2, Anonymity::Transparent, "US", true),
            ),
            (
                declared(3, "eu"),
                ProxyStatus::Inactive,
                exit(3, Anonymity::Anonymous, "DE", false),
            ),
            (proxy(4, "us", "x"), ProxyStatus::Inactive, None),
        ];
        let proxies: Vec<Arc<Proxy>> = all.iter().map(|(p, _, _)| p.clone()).collect();
        app.state.sync(&proxies);
        for (p, status, e) in all {
            let reason = (!status.is_up()).then_some(Reason::Anonymity);
            let mut r = result(status, reason, 40);
            r.exit = e;
            app.state.record(&p, &r, Instant::now());
        }
        app
    }

    #[test]
    fn pools_break_exits_down_by_level_and_country() {
        let app = exit_fixture();
        let v = status_view(&app, Filter::default());
        let eu = &v.pools[0];
        assert_eq!(eu.pool, "eu");
        assert_eq!(
            eu.exits,
            ExitView {
                anonymity: LevelCounts {
                    transparent: 1,
                    anonymous: 1,
                    elite: 1
                },
                countries: vec![
                    CountryCount {
                        country: "DE".into(),
                        count: 2
                    },
                    CountryCount {
                        country: "US".into(),
                        count: 1
                    },
                ],
                countries_other: 0,
                geo_mismatch: 1,
            }
        );
        assert_eq!(v.pools[1].exits, ExitView::default(), "us saw no exit");
        assert_eq!(v.totals.exits, eu.exits, "totals over both pools");
        // The breakdown is capped like the metric (metrics.exit_country_limit).
        let exits = app.state.exit_counts();
        let (pools, _) = pool_views(&app.state.counts(), &exits, 1);
        assert_eq!(pools[0].exits.countries.len(), 1);
        assert_eq!(pools[0].exits.countries_other, 1);

        // The worst list carries each proxy's exit.
        let w = v
            .worst
            .iter()
            .find(|w| w.anonymity == Some("anonymous"))
            .expect("the failed eu proxy");
        assert_eq!(
            (
                w.exit_ip.as_deref(),
                w.exit_country.as_deref(),
                w.declared_country.as_deref(),
                w.geo_mismatch
            ),
            (Some("10.0.0.3"), Some("DE"), Some("DE"), false)
        );
    }

    #[test]
    fn exit_filters_list_working_proxies_too() {
        let app = exit_fixture();
        let ids = |q: &str| -> Vec<(String, Option<&'static str>)> {
            let f = Filter::from_query(Some(q)).expect(q);
            status_view(&app, f)
                .worst
                .into_iter()
                .map(|w| (w.exit_country.unwrap_or_default(), w.anonymity))
                .collect()
        };
        assert_eq!(
            ids("anonymity=transparent"),
            [("US".into(), Some("transparent"))]
        );
        assert_eq!(
            ids("geo_mismatch=true"),
            [("US".into(), Some("transparent"))]
        );
        assert_eq!(
            ids("country=de"),
            [
                ("DE".into(), Some("anonymous")),
                ("DE".into(), Some("elite"))
            ],
            "INACTIVE first, lower-case code accepted"
        );
        assert_eq!(
            ids("geo_mismatch=false&pool=eu&status=active"),
            [("DE".into(), Some("elite"))]
        );
        assert_eq!(ids("anonymity=elite&reason=anonymity"), []);
    }

    #[test]
    fn no_sweep_completed_means_no_last_sweep() {
        let app = fixture();
        let v = status_view(&app, Filter::default());
        assert_eq!(v.sweep.completed_sweeps, 0);
        assert_eq!(v.sweep.last_completed, None);
        assert_eq!(v.sweep.last_duration_seconds, None);
        app.metrics.sweep_completed(
            std::time::Duration::from_millis(1500),
            std::time::Duration::from_secs(60),
            1.7e9,
        );
        let v = status_view(&app, Filter::default());
        assert_eq!(v.sweep.last_completed, Some(1.7e9));
        assert_eq!(v.sweep.last_duration_seconds, Some(1.5));
    }

    #[test]
    fn the_page_knows_every_reason() {
        let page = include_str!("status_page.html");
        let quoted: Vec<String> = Reason::ALL.iter().map(|r| format!("\"{r}\"")).collect();
        assert!(
            page.contains(&format!("const REASONS=[{}];", quoted.join(","))),
            "the page's REASONS list differs from Reason::ALL"
        );
    }
}
