//! Scheduling one sweep: every proxy checked once, at most `concurrency` at a
//! time, optionally paced (rate limit or spread over the interval), each
//! result handed to the caller the moment its check completes.
//!
//! Why a fixed set of worker tasks pulling from a shared cursor rather than a
//! task per proxy or `buffer_unordered`: a task per proxy costs an allocation
//! and a scheduler round trip per check and makes memory grow with the
//! inventory; `buffer_unordered` polls every check from one task and so uses
//! one core. `concurrency` workers run on every core, allocate nothing per
//! check beyond the check itself, and bound memory by concurrency, not by N.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::geo::GeoDb;
use crate::model::{CheckResult, Proxy};
use crate::probe::{self, CheckOptions, OptionsByPool, OwnIps};
use crate::shutdown::Shutdown;

/// How one sweep runs: its pace, how it stops, and where it reports
/// progress. [`SweepParams::new`] suits a one-shot run (never stopped, its
/// own gauges); the exporter adds its stop token, grace and shared gauges.
#[derive(Debug, Clone)]
pub struct SweepParams {
    /// Checks running at once.
    pub concurrency: usize,
    /// Minimum gap between check starts (from a rate limit or spreading); `None` = as fast as possible.
    pub pace: Option<Duration>,
    /// When `shutdown` triggers, how long checks in flight may still run.
    pub grace: Duration,
    /// Stops the sweep: no check starts once triggered.
    pub shutdown: Shutdown,
    /// Live counters, readable by scrapes while the sweep runs.
    pub gauges: Arc<SweepGauges>,
    /// Geolocation of judge-reported exits (`geoip.databases`); re-read at
    /// the start of the sweep if its files changed.
    pub geo: Option<Arc<GeoDb>>,
}

impl SweepParams {
    /// Pace from a rate limit (checks/s, 0 = none) and optional spreading of
    /// `n` checks over 90% of `interval`; the slower of the two wins.
    pub fn new(concurrency: usize, rate_limit: f64, spread: Option<(usize, Duration)>) -> Self {
        let from_rate = (rate_limit > 0.0).then(|| Duration::from_secs_f64(1.0 / rate_limit));
        let from_spread =
            spread.and_then(|(n, interval)| (n > 0).then(|| interval.mul_f64(0.9) / n as u32));
        let pace = match (from_rate, from_spread) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        SweepParams {
            concurrency: concurrency.max(1),
            pace,
            grace: Duration::ZERO,
            shutdown: Shutdown::new(),
            gauges: Arc::default(),
            geo: None,
        }
    }

    /// Geolocate exits with `geo` (see [`GeoDb::enrich`]).
    pub fn geo(mut self, geo: Option<Arc<GeoDb>>) -> Self {
        self.geo = geo;
        self
    }

    /// Stop on `shutdown`, letting checks in flight run for `grace`.
    pub fn stop_on(mut self, shutdown: Shutdown, grace: Duration) -> Self {
        self.shutdown = shutdown;
        self.grace = grace;
        self
    }

    /// Report progress in `gauges` (shared with the scrape).
    pub fn gauges(mut self, gauges: Arc<SweepGauges>) -> Self {
        self.gauges = gauges;
        self
    }
}

/// Live counters of the sweep in progress, readable at any time (scrapes).
#[derive(Debug, Default)]
pub struct SweepGauges {
    /// Checks running now.
    pub in_flight: AtomicI64,
    /// Proxies in the current sweep.
    pub proxies: AtomicUsize,
    /// Checks completed in the current sweep.
    pub completed: AtomicUsize,
    /// Direct requests to a judge (learning our own IPs) that failed, ever.
    pub own_ips_learn_failures: AtomicU64,
}

/// What a finished sweep reports.
#[derive(Debug, Clone, Copy)]
pub struct SweepOutcome {
    /// Proxies in the sweep.
    pub total: usize,
    /// Checks that completed (= results delivered).
    pub completed: usize,
    /// Checks never started because of shutdown.
    pub not_started: usize,
    /// Checks abandoned in flight when the shutdown grace ran out.
    pub abandoned: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Reserves start times `pace` apart across all workers.
struct Pacer {
    pace: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn reserve(&self) -> Instant {
        // A poisoned lock only means another worker panicked mid-update of an
        // Instant; the value is still usable.
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let at = (*next).max(now);
        *next = at + self.pace;
        at
    }
}

/// Check every proxy once. `on_result` runs on the worker that completed the
/// check, as soon as it completes; it must not block for long (hand heavy
/// work to a channel). When `params.shutdown` triggers, no new check starts;
/// checks in flight get `params.grace` to finish, then are abandoned and counted.
///
/// When any options name a judge, the sweep first learns our own IPs from
/// each judge by a direct request ([`probe::learn_own_ips`]), so they are
/// fresh every sweep; failures are counted in the gauges.
pub async fn run<F>(
    proxies: Arc<[Arc<Proxy>]>,
    options: Arc<OptionsByPool>,
    params: SweepParams,
    on_result: F,
) -> SweepOutcome
where
    F: Fn(&Arc<Proxy>, CheckResult) + Send + Sync + 'static,
{
    let SweepParams {
        concurrency,
        pace,
        grace,
        shutdown,
        gauges,
        geo,
    } = params;
    let started = Instant::now();
    if let Some(db) = &geo {
        // Whole files are read on a change: off the async workers.
        let db = db.clone();
        let _ = tokio::task::spawn_blocking(move || db.refresh()).await;
    }
    let own_ips = if options.iter().any(|o| o.judge) && !proxies.is_empty() {
        tokio::select! {
            own = probe::learn_own_ips(options.iter().map(|o| &**o)) => own,
            // Each learn is bounded by its timeout, but shutdown need not wait.
            _ = shutdown.wait() => OwnIps::default(),
        }
    } else {
        OwnIps::default()
    };
    let failures = own_ips.failures().count() as u64;
    gauges
        .own_ips_learn_failures
        .fetch_add(failures, Ordering::Relaxed);
    let total = proxies.len();
    gauges.proxies.store(total, Ordering::Relaxed);
    gauges.completed.store(0, Ordering::Relaxed);
    let pacer = pace.map(|pace| Pacer {
        pace,
        next: Mutex::new(Instant::now()),
    });
    let worker = Arc::new(Worker {
        proxies,
        options,
        own_ips,
        cursor: AtomicUsize::new(0),
        pacer,
        gauges: gauges.clone(),
        shutdown: shutdown.clone(),
        geo,
        on_result,
    });
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(total) {
        set.spawn(worker.clone().run());
    }
    let abandoned = finish(set, &shutdown, grace, &gauges).await;
    let completed = gauges.completed.load(Ordering::Relaxed);
    SweepOutcome {
        total,
        completed,
        not_started: total.saturating_sub(completed + abandoned),
        abandoned,
        elapsed: started.elapsed(),
    }
}

/// What every worker of one sweep shares: they pull proxies from one cursor.
struct Worker<F> {
    proxies: Arc<[Arc<Proxy>]>,
    options: Arc<OptionsByPool>,
    own_ips: OwnIps,
    cursor: AtomicUsize,
    pacer: Option<Pacer>,
    gauges: Arc<SweepGauges>,
    shutdown: Shutdown,
    geo: Option<Arc<GeoDb>>,
    on_result: F,
}

impl<F> Worker<F>
where
    F: Fn(&Arc<Proxy>, CheckResult) + Send + Sync + 'static,
{
    /// Check the next proxy until none is left or shutdown.
    async fn run(self: Arc<Self>) {
        loop {
            if self.shutdown.is_triggered() {
                return;
            }
            let i = self.cursor.fetch_add(1, Ordering::Relaxed);
            let Some(proxy) = self.proxies.get(i) else {
                return;
            };
            if let Some(p) = &self.pacer {
                let at = p.reserve();
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    // Not started: it counts as unstarted work.
                    _ = self.shutdown.wait() => return,
                }
            }
            let gauges = &self.gauges;
            gauges.in_flight.fetch_add(1, Ordering::Relaxed);
            let opts = self.options.for_proxy(proxy);
            let mut result = probe::check_with(proxy, opts, &self.own_ips).await;
            locate(self.geo.as_deref(), proxy, opts, &mut result);
            gauges.in_flight.fetch_sub(1, Ordering::Relaxed);
            gauges.completed.fetch_add(1, Ordering::Relaxed);
            (self.on_result)(proxy, result);
        }
    }
}

/// Geolocate the exit a judge reported, under the proxy's pool's
/// `geo_policy`; a mismatch failed by policy reports the timeout as its
/// latency, as every INACTIVE result does.
fn locate(geo: Option<&GeoDb>, proxy: &Proxy, opts: &CheckOptions, result: &mut CheckResult) {
    if let Some(db) = geo {
        db.enrich(result, proxy, opts.geo_policy, opts.timeout);
    }
}

/// Wait for every worker; on shutdown, give checks in flight `grace`, then
/// abort them. Returns how many were abandoned in flight.
async fn finish(
    mut set: tokio::task::JoinSet<()>,
    shutdown: &Shutdown,
    grace: Duration,
    gauges: &SweepGauges,
) -> usize {
    loop {
        tokio::select! {
            joined = set.join_next() => {
                if joined.is_none() {
                    return 0;
                }
            }
            _ = shutdown.wait() => break,
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    while !set.is_empty() {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                let abandoned = gauges.in_flight.load(Ordering::Relaxed).max(0) as usize;
                set.abort_all();
                while set.join_next().await.is_some() {}
                gauges.in_flight.store(0, Ordering::Relaxed);
                return abandoned;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_takes_the_slower_of_rate_and_spread() {
        assert_eq!(SweepParams::new(8, 0.0, None).pace, None);
        assert_eq!(
            SweepParams::new(8, 10.0, None).pace,
            Some(Duration::from_millis(100))
        );
        let p = SweepParams::new(8, 100.0, Some((9, Duration::from_secs(10)))).pace;
        assert_eq!(p, Some(Duration::from_secs(1)));
        assert_eq!(SweepParams::new(0, 0.0, None).concurrency, 1);
    }

    /// The sweep's side of geolocation, fed results as a judge check would
    /// produce them (`exit.ip` set): each pool's own `geo_policy` and
    /// timeout apply.
    #[test]
    fn exits_are_located_under_each_pools_policy() {
        use crate::model::{Exit, GeoPolicy, Phases, ProxyProtocol, ProxyStatus, Reason};
        use pharox_testkit::mmdb::{mmdblookup, write_mmdb};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("City.mmdb");
        write_mmdb(
            &path,
            "GeoLite2-City",
            &[("127.0.0.3/32", r#"{"country":{"iso_code":"US"}}"#)],
        );
        assert_eq!(
            mmdblookup(&path, "127.0.0.3", &["country", "iso_code"]).as_deref(),
            Some("US")
        );
        let db = GeoDb::open(&[path]).unwrap();
        let url = url::Url::parse("http://127.0.0.1:1/").unwrap();
        let mut fail = CheckOptions::new(url.clone()).unwrap();
        fail.timeout = Duration::from_secs(3);
        let mut report = CheckOptions::new(url).unwrap();
        report.geo_policy = GeoPolicy::Report;
        let mut options = OptionsByPool::uniform(Arc::new(fail));
        for p in ProxyProtocol::ALL {
            options.set_pool("resi".into(), p, Arc::new(report.clone()));
        }
        let result = || CheckResult {
            proxy_id: "p".into(),
            status: ProxyStatus::Active,
            latency_ms: 40,
            elapsed_ms: 40,
            attempts: 1,
            status_code: Some(200),
            reason: None,
            phase: None,
            error: None,
            checked_at: chrono::Utc::now(),
            phases: Phases::default(),
            exit: Some(Exit {
                ip: Some("127.0.0.3".parse().unwrap()),
                ..Exit::default()
            }),
        };
        let mut proxy = Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", 1080);
        proxy.country = Some("DE".into());

        let mut r = result();
        locate(Some(&db), &proxy, options.for_proxy(&proxy), &mut r);
        assert_eq!(
            (r.status, r.reason, r.latency_ms, r.error.as_deref()),
            (
                ProxyStatus::Inactive,
                Some(Reason::GeoMismatch),
                3000,
                Some("exit country US, declared DE")
            )
        );

        proxy.pool = "resi".into();
        let mut r = result();
        locate(Some(&db), &proxy, options.for_proxy(&proxy), &mut r);
        assert_eq!((r.status, r.reason), (ProxyStatus::Active, None));
        assert!(r.exit.as_ref().is_some_and(|e| e.geo_mismatch));

        // Without databases, nothing changes.
        let mut r = result();
        locate(None, &proxy, options.for_proxy(&proxy), &mut r);
        assert_eq!((r.status, r.reason), (ProxyStatus::Active, None));
        let exit = r.exit.unwrap();
        assert_eq!((exit.geo, exit.geo_mismatch), (None, false));
    }

    #[test]
    fn pacer_hands_out_evenly_spaced_slots() {
        let p = Pacer {
            pace: Duration::from_millis(10),
            next: Mutex::new(Instant::now()),
        };
        let a = p.reserve();
        let b = p.reserve();
        let c = p.reserve();
        assert_eq!(b - a, Duration::from_millis(10));
        assert_eq!(c - b, Duration::from_millis(10));
    }
}
