//! The exposition as a scrape sees it, built in process from a small
//! [`StateStore`] with known results: exact values, in both formats.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Metrics, MinAnonymity, SlowThresholds};
use crate::model::{
    Anonymity, CheckResult, Exit, Geo, Phase, Phases, Proxy, ProxyProtocol, ProxyStatus, Reason,
};
use crate::state::StateStore;
use crate::sweep::SweepGauges;

/// Buckets of `pharox_check_duration_seconds` in these tests.
const BUCKETS: [f64; 4] = [0.1, 0.5, 1.0, 5.0];

/// `checked_at` of every result: 1,700,000,000.25 s after the epoch.
fn checked_at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 250_000_000).unwrap_or_default()
}

fn proxy(id: &str, pool: &str, provider: &str, protocol: ProxyProtocol) -> Arc<Proxy> {
    let mut p = Proxy::new(protocol, "127.0.0.1", 1080);
    p.id = id.into();
    p.pool = pool.into();
    p.provider = provider.into();
    Arc::new(p)
}

fn result(status: ProxyStatus, latency_ms: u64, failed: Option<(Reason, Phase)>) -> CheckResult {
    let mut phases = Phases::default();
    phases.set(Phase::Connect, Duration::from_millis(3));
    CheckResult {
        proxy_id: String::new(),
        status,
        latency_ms,
        elapsed_ms: latency_ms,
        attempts: 1,
        status_code: failed.is_none().then_some(200),
        reason: failed.map(|f| f.0),
        phase: failed.map(|f| f.1),
        error: failed.map(|_| "timed out".to_string()),
        checked_at: checked_at(),
        phases,
        exit: None,
    }
}

/// Four proxies in two label sets: in `alpha/prov1/http`, `id-a` ACTIVE
/// (120 ms), `id-b` SLOW (2.5 s), `id-c` INACTIVE (timeout while
/// connecting); in `beta/prov2/socks5`, `id-d` never checked.
fn fixture() -> Metrics {
    let state = Arc::new(StateStore::new());
    let metrics = Metrics::new(
        &BUCKETS,
        state.clone(),
        Arc::new(SweepGauges::default()),
        Vec::new(),
    );
    let http = ProxyProtocol::Http;
    let proxies = [
        proxy("id-a", "alpha", "prov1", http),
        proxy("id-b", "alpha", "prov1", http),
        proxy("id-c", "alpha", "prov1", http),
        proxy("id-d", "beta", "prov2", ProxyProtocol::Socks5),
    ];
    state.sync(&proxies);
    // What the sweeper does after each inventory read.
    metrics.preinit(state.counts().keys());
    let results = [
        result(ProxyStatus::Active, 120, None),
        result(ProxyStatus::Slow, 2500, None),
        result(
            ProxyStatus::Inactive,
            5000,
            Some((Reason::Timeout, Phase::Connect)),
        ),
    ];
    // What `Sinks::record` does, minus the database.
    for (p, r) in proxies.iter().zip(&results) {
        state.record(p, r, Instant::now());
        metrics.observe(p, r);
    }
    metrics
}

/// One sample line: name, labels (`le` normalised to its number, since the
/// formats spell `1.0` and `1` differently), value.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of an exposition. Our label values hold no quotes, commas or
/// escapes, so a plain split is enough here.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label is k=\"v\"");
                    let v = v.trim_matches('"');
                    let v = match (k, v.parse::<f64>()) {
                        ("le", Ok(n)) if n.is_finite() => n.to_string(),
                        _ => v.to_string(),
                    };
                    (k.to_string(), v)
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("value is a number"),
            }
        })
        .collect()
}

/// Both renderings, parsed, with the format's name for messages.
fn scrape(m: &Metrics) -> [(&'static str, String, Vec<Sample>); 2] {
    ["openmetrics", "text 0.0.4"].map(|format| {
        let text = m.render(format == "openmetrics");
        let samples = parse(&text);
        (format, text, samples)
    })
}

/// Every series of `name` as (labels as `k=v,...`, value), sorted.
fn series(samples: &[Sample], name: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (labels.join(","), s.value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Like [`series`], without the series at 0.
fn nonzero(samples: &[Sample], name: &str) -> Vec<(String, f64)> {
    let mut out = series(samples, name);
    out.retain(|(_, v)| *v != 0.0);
    out
}

fn owned(expected: &[(&str, f64)]) -> Vec<(String, f64)> {
    expected.iter().map(|(l, v)| (l.to_string(), *v)).collect()
}

#[test]
fn proxies_by_status_cover_every_status_of_every_label_set() {
    let m = fixture();
    for (format, text, samples) in scrape(&m) {
        let ctx = format!("{format}:\n{text}");
        let alpha = "pool=alpha,protocol=http,provider=prov1";
        let beta = "pool=beta,protocol=socks5,provider=prov2";
        assert_eq!(
            series(&samples, "pharox_proxies"),
            owned(&[
                (&format!("{alpha},status=active"), 1.0),
                (&format!("{alpha},status=banned"), 0.0),
                (&format!("{alpha},status=inactive"), 1.0),
                (&format!("{alpha},status=slow"), 1.0),
                (&format!("{beta},status=active"), 0.0),
                (&format!("{beta},status=banned"), 0.0),
                (&format!("{beta},status=inactive"), 0.0),
                (&format!("{beta},status=slow"), 0.0),
            ]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_proxies_unchecked"),
            owned(&[(alpha, 0.0), (beta, 1.0)]),
            "{ctx}"
        );
    }
}

#[test]
fn check_counters_and_a_latency_histogram_observation() {
    let m = fixture();
    m.sweep_completed(Duration::from_secs(90), Duration::from_secs(60), 1.7e9);
    for (format, text, samples) in scrape(&m) {
        let ctx = format!("{format}:\n{text}");
        let set = "pool=alpha,protocol=http,provider=prov1";
        assert_eq!(
            nonzero(&samples, "pharox_checks_total"),
            owned(&[
                (&format!("{set},status=active"), 1.0),
                (&format!("{set},status=inactive"), 1.0),
                (&format!("{set},status=slow"), 1.0),
            ]),
            "{ctx}"
        );
        assert_eq!(
            nonzero(&samples, "pharox_check_errors_total"),
            owned(&[(&format!("{set},reason=timeout"), 1.0)]),
            "{ctx}"
        );
        assert_eq!(
            nonzero(&samples, "pharox_check_timeouts_total"),
            owned(&[("phase=connect,pool=alpha,protocol=http", 1.0)]),
            "{ctx}"
        );
        // ACTIVE 0.12 s and SLOW 2.5 s are observed; INACTIVE is not.
        assert_eq!(
            series(&samples, "pharox_check_duration_seconds_bucket"),
            owned(&[
                (&format!("le=+Inf,{set}"), 2.0),
                (&format!("le=0.1,{set}"), 0.0),
                (&format!("le=0.5,{set}"), 1.0),
                (&format!("le=1,{set}"), 1.0),
                (&format!("le=5,{set}"), 2.0),
            ]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_check_duration_seconds_count"),
            owned(&[(set, 2.0)]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_check_duration_seconds_sum"),
            owned(&[(set, 2.62)]),
            "{ctx}"
        );
        // Every check spent 3 ms connecting, failed or not.
        assert_eq!(
            series(&samples, "pharox_check_phase_duration_seconds_count"),
            owned(&[("phase=connect,pool=alpha,protocol=http", 3.0)]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_exporter_sweeps_total"),
            owned(&[("", 1.0)])
        );
        assert_eq!(
            series(&samples, "pharox_exporter_sweep_overruns_total"),
            owned(&[("", 1.0)]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_exporter_sweep_last_duration_seconds"),
            owned(&[("", 90.0)]),
            "{ctx}"
        );
    }
}

#[test]
fn per_proxy_series_are_opt_in_and_capped_at_the_lowest_ids() {
    let m = fixture();
    let set = "pool=alpha,protocol=http,provider=prov1";
    let id = |id: &str| format!("{set},proxy_id={id}");

    // Off (the default): no per-proxy series, nothing dropped.
    assert_per_proxy_off(&m);

    // On, under the cap: every checked proxy (the unchecked one has no series).
    m.per_proxy.set(true, 10);
    for (format, text, samples) in scrape(&m) {
        let ctx = format!("{format}:\n{text}");
        assert_eq!(
            series(&samples, "pharox_proxy_up"),
            owned(&[(&id("id-a"), 1.0), (&id("id-b"), 1.0), (&id("id-c"), 0.0)]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_proxy_latency_seconds"),
            owned(&[(&id("id-a"), 0.12), (&id("id-b"), 2.5), (&id("id-c"), 5.0)]),
            "{ctx}"
        );
        let at = 1_700_000_000.25;
        assert_eq!(
            series(&samples, "pharox_proxy_last_check_timestamp_seconds"),
            owned(&[(&id("id-a"), at), (&id("id-b"), at), (&id("id-c"), at)]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_exporter_proxy_series_dropped"),
            owned(&[("", 0.0)]),
            "{ctx}"
        );
    }

    // Capped at 2: the lowest ids stay, the rest are counted as dropped.
    m.per_proxy.set(true, 2);
    for (format, text, samples) in scrape(&m) {
        let ctx = format!("{format}:\n{text}");
        assert_eq!(
            series(&samples, "pharox_proxy_up"),
            owned(&[(&id("id-a"), 1.0), (&id("id-b"), 1.0)]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_proxy_latency_seconds"),
            owned(&[(&id("id-a"), 0.12), (&id("id-b"), 2.5)]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_exporter_proxy_series_dropped"),
            owned(&[("", 1.0)]),
            "{ctx}"
        );
    }

    // Switched off again: the dropped count does not linger.
    m.per_proxy.set(false, 2);
    assert_per_proxy_off(&m);
}

/// No per-proxy family has a series, and `pharox_exporter_proxy_series_dropped` is 0.
fn assert_per_proxy_off(m: &Metrics) {
    for (format, text, samples) in scrape(m) {
        for family in [
            "pharox_proxy_up",
            "pharox_proxy_latency_seconds",
            "pharox_proxy_last_check_timestamp_seconds",
            "pharox_proxy_exit_info",
        ] {
            assert_eq!(series(&samples, family), [], "{format}:\n{text}");
        }
        assert_eq!(
            series(&samples, "pharox_exporter_proxy_series_dropped"),
            owned(&[("", 0.0)]),
            "{format}:\n{text}"
        );
    }
}

#[test]
fn both_formats_carry_the_same_samples() {
    let m = fixture();
    m.per_proxy.set(true, 2);
    let [(_, om, mut a), (_, text, mut b)] = scrape(&m);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(!text.contains("# EOF"), "{text}");
    // Text 0.0.4 names counters with `_total` in HELP and TYPE; OpenMetrics does not.
    assert!(
        text.contains("# TYPE pharox_checks_total counter\n"),
        "{text}"
    );
    assert!(om.contains("# TYPE pharox_checks counter\n"), "{om}");
    let by_series = |x: &Sample, y: &Sample| (&x.name, &x.labels).cmp(&(&y.name, &y.labels));
    a.sort_by(by_series);
    b.sort_by(by_series);
    // process_* are read from /proc at each scrape (CPU time moves between
    // the two): compare their names only, every other sample by value.
    let live = |v: &mut Vec<Sample>| -> Vec<String> {
        let names = v
            .iter()
            .filter(|x| x.name.starts_with("process_"))
            .map(|x| x.name.clone())
            .collect();
        v.retain(|x| !x.name.starts_with("process_"));
        names
    };
    assert_eq!(live(&mut a), live(&mut b));
    assert_eq!(a, b);
    assert!(a.len() > 40, "{om}");
}

#[test]
fn counters_of_the_inventory_label_sets_start_at_zero() {
    let m = fixture();
    for (format, text, samples) in scrape(&m) {
        let ctx = format!("{format}:\n{text}");
        // Both label sets, the never-checked one too: 3 outcomes, 15 reasons, 6 phases.
        let checks = series(&samples, "pharox_checks_total");
        assert_eq!(checks.len(), 2 * 3, "{ctx}");
        assert!(
            checks.contains(&(
                "pool=beta,protocol=socks5,provider=prov2,status=inactive".into(),
                0.0
            )),
            "{ctx}"
        );
        let errors = series(&samples, "pharox_check_errors_total");
        // Every reason but local_resources, which is never counted here.
        assert_eq!(errors.len(), 2 * (Reason::ALL.len() - 1), "{ctx}");
        assert!(
            !errors.iter().any(|(l, _)| l.contains("local_resources")),
            "{ctx}"
        );
        assert!(
            errors.contains(&(
                "pool=alpha,protocol=http,provider=prov1,reason=connect_refused".into(),
                0.0
            )),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_check_timeouts_total").len(),
            2 * 6,
            "{ctx}"
        );
        assert!(
            !checks.iter().any(|(l, _)| l.contains("status=banned")),
            "a check never reports BANNED: {ctx}"
        );
    }
}

#[test]
fn slow_thresholds_per_pool_and_protocol() {
    let m = fixture();
    let empty = scrape(&m);
    assert_eq!(
        series(&empty[0].2, "pharox_exporter_slow_threshold_seconds"),
        [],
        "no config applied yet"
    );
    // As `defaults: {slow_threshold_ms: 1500}` and `pools: {beta: {slow_threshold_ms: 300}}`
    // resolve (app/reload.rs fills this in from the config).
    m.check_settings.set(SlowThresholds {
        by_protocol: ProxyProtocol::ALL
            .into_iter()
            .map(|p| (p, Duration::from_millis(1500)))
            .collect(),
        by_pool: ProxyProtocol::ALL
            .into_iter()
            .map(|p| (("beta".to_string(), p), Duration::from_millis(300)))
            .collect(),
    });
    for (format, text, samples) in scrape(&m) {
        assert_eq!(
            series(&samples, "pharox_exporter_slow_threshold_seconds"),
            owned(&[
                ("pool=alpha,protocol=http", 1.5),
                ("pool=beta,protocol=socks5", 0.3),
            ]),
            "{format}:\n{text}"
        );
    }
}

/// Every number of an exposition as written: no `0.30000000000000004`.
#[test]
fn no_float_noise_in_sums_buckets_or_gauges() {
    let m = fixture();
    m.per_proxy.set(true, 10);
    // Sums that are noisy in f64 seconds: 0.1 + 0.2, and 3 x 0.1.
    let p = proxy("id-n", "alpha", "prov1", ProxyProtocol::Http);
    for ms in [100, 200, 100, 100] {
        m.observe(&p, &result(ProxyStatus::Active, ms, None));
    }
    m.sweep_completed(
        Duration::from_nanos(1_234_567_891),
        Duration::from_secs(60),
        1_700_000_000.1,
    );
    for (format, text, _) in scrape(&m) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap_or(("", line));
            for number in [value].into_iter().chain(
                series
                    .split("le=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next()),
            ) {
                let frac = number.split_once('.').map(|(_, f)| f).unwrap_or("");
                assert!(
                    !frac.contains("000000") && !frac.contains("999999"),
                    "{format}: float noise in {line:?}"
                );
            }
        }
        assert!(
            text.contains("pharox_exporter_sweep_last_duration_seconds 1.234\n"),
            "{format}: {text}"
        );
    }
}

/// A judge's answer: exit `ip` (10.0.0.x), `level`, geolocated in `country`.
fn exit(ip: u8, level: Anonymity, country: &str, mismatch: bool) -> Option<Exit> {
    Some(Exit {
        ip: Some(std::net::IpAddr::from([10, 0, 0, ip])),
        anonymity: Some(level),
        anonymity_header: None,
        geo: Some(Geo {
            country: Some(country.to_string()),
            ..Geo::default()
        }),
        geo_mismatch: mismatch,
    })
}

/// Pool `eu`: five proxies with exits (two elite in DE sharing an exit IP,
/// an anonymous one in FR and a transparent one in US, both outside their
/// declared country, and a transparent SOCKS5 one in PL) and one that timed
/// out; pool `us`: one proxy never checked.
fn exit_fixture() -> Metrics {
    let state = Arc::new(StateStore::new());
    let metrics = Metrics::new(
        &BUCKETS,
        state.clone(),
        Arc::new(SweepGauges::default()),
        Vec::new(),
    );
    let http = ProxyProtocol::Http;
    let proxies = [
        proxy("e1", "eu", "p", http),
        proxy("e2", "eu", "p", http),
        proxy("e3", "eu", "p", http),
        proxy("e4", "eu", "p", http),
        proxy("e5", "eu", "p", ProxyProtocol::Socks5),
        proxy("e6", "eu", "p", http),
        proxy("u1", "us", "p", http),
    ];
    state.sync(&proxies);
    metrics.preinit(state.counts().keys());
    let up = |e: Option<Exit>| CheckResult {
        exit: e,
        ..result(ProxyStatus::Active, 100, None)
    };
    let results = [
        up(exit(1, Anonymity::Elite, "DE", false)),
        up(exit(1, Anonymity::Elite, "DE", false)),
        up(exit(2, Anonymity::Anonymous, "FR", true)),
        up(exit(3, Anonymity::Transparent, "US", true)),
        up(exit(4, Anonymity::Transparent, "PL", false)),
        result(
            ProxyStatus::Inactive,
            5000,
            Some((Reason::Timeout, Phase::Connect)),
        ),
    ];
    for (p, r) in proxies.iter().zip(&results) {
        state.record(p, r, Instant::now());
        metrics.observe(p, r);
    }
    // As `protocols: {socks5: {min_anonymity: anonymous}}` and
    // `pools: {eu: {min_anonymity: elite}, us: {}}` resolve for http.
    metrics.exit_settings.set(
        MinAnonymity {
            by_protocol: [(ProxyProtocol::Socks5, Anonymity::Anonymous)].into(),
            by_pool: [
                (("eu".to_string(), http), Some(Anonymity::Elite)),
                (("us".to_string(), http), None),
            ]
            .into(),
        },
        2,
    );
    metrics
}

#[test]
fn exits_per_pool_by_level_and_capped_country() {
    let m = exit_fixture();
    for (format, text, samples) in scrape(&m) {
        let ctx = format!("{format}:\n{text}");
        assert_eq!(
            series(&samples, "pharox_proxies_by_anonymity"),
            owned(&[
                ("level=anonymous,pool=eu,protocol=http", 1.0),
                ("level=anonymous,pool=eu,protocol=socks5", 0.0),
                ("level=anonymous,pool=us,protocol=http", 0.0),
                ("level=elite,pool=eu,protocol=http", 2.0),
                ("level=elite,pool=eu,protocol=socks5", 0.0),
                ("level=elite,pool=us,protocol=http", 0.0),
                ("level=transparent,pool=eu,protocol=http", 1.0),
                ("level=transparent,pool=eu,protocol=socks5", 1.0),
                ("level=transparent,pool=us,protocol=http", 0.0),
            ]),
            "{ctx}"
        );
        // Cap 2: DE (2), then FR first of the ties by code; PL and US are "other".
        assert_eq!(
            series(&samples, "pharox_proxies_by_exit_country"),
            owned(&[
                ("country=DE,pool=eu", 2.0),
                ("country=FR,pool=eu", 1.0),
                ("country=other,pool=eu", 2.0),
                ("country=other,pool=us", 0.0),
            ]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_proxies_geo_mismatched"),
            owned(&[("pool=eu", 2.0), ("pool=us", 0.0)]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_geo_mismatches_total"),
            owned(&[("pool=eu", 2.0), ("pool=us", 0.0)]),
            "{ctx}"
        );
        assert_eq!(
            series(&samples, "pharox_exporter_min_anonymity_info"),
            owned(&[
                ("level=anonymous,pool=eu,protocol=socks5", 1.0),
                ("level=elite,pool=eu,protocol=http", 1.0),
            ]),
            "{ctx}"
        );
        // No sweep completed yet: nothing counted.
        assert_eq!(
            series(&samples, "pharox_exit_ips_distinct"),
            owned(&[("pool=eu", 0.0), ("pool=us", 0.0)]),
            "{ctx}"
        );
    }
    m.sweep_completed(Duration::from_secs(1), Duration::from_secs(60), 1.7e9);
    for (format, text, samples) in scrape(&m) {
        assert_eq!(
            series(&samples, "pharox_exit_ips_distinct"),
            owned(&[("pool=eu", 4.0), ("pool=us", 0.0)]),
            "e1 and e2 share 10.0.0.1: {format}:\n{text}"
        );
    }
    // The next sweep starts from nothing: one exit seen, then completed.
    let p = proxy("e1", "eu", "p", ProxyProtocol::Http);
    m.observe(
        &p,
        &CheckResult {
            exit: exit(9, Anonymity::Elite, "DE", false),
            ..result(ProxyStatus::Active, 100, None)
        },
    );
    m.sweep_completed(Duration::from_secs(1), Duration::from_secs(60), 1.7e9);
    let [(_, text, samples), _] = scrape(&m);
    assert_eq!(
        series(&samples, "pharox_exit_ips_distinct"),
        owned(&[("pool=eu", 1.0), ("pool=us", 0.0)]),
        "{text}"
    );
}

#[test]
fn per_proxy_exit_info_under_the_per_proxy_cap() {
    let m = exit_fixture();
    m.per_proxy.set(true, 4);
    for (format, text, samples) in scrape(&m) {
        let set = "pool=eu,protocol=http,provider=p";
        assert_eq!(
            series(&samples, "pharox_proxy_exit_info"),
            owned(&[
                (
                    &format!("anonymity=anonymous,country=FR,exit_ip=10.0.0.2,{set},proxy_id=e3"),
                    1.0
                ),
                (
                    &format!("anonymity=elite,country=DE,exit_ip=10.0.0.1,{set},proxy_id=e1"),
                    1.0
                ),
                (
                    &format!("anonymity=elite,country=DE,exit_ip=10.0.0.1,{set},proxy_id=e2"),
                    1.0
                ),
                (
                    &format!("anonymity=transparent,country=US,exit_ip=10.0.0.3,{set},proxy_id=e4"),
                    1.0
                ),
            ]),
            "the four lowest ids, each with its exit: {format}:\n{text}"
        );
        assert_eq!(
            series(&samples, "pharox_exporter_proxy_series_dropped"),
            owned(&[("", 2.0)]),
            "{format}:\n{text}"
        );
    }
}

#[test]
fn geoip_and_own_ip_counters_count_what_happened() {
    use crate::geo::GeoDb;
    use crate::model::GeoPolicy;
    use std::sync::atomic::Ordering;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("City.mmdb");
    let install = |record: &str| {
        let tmp = dir.path().join("City.mmdb.tmp");
        pharox_testkit::mmdb::write_mmdb(&tmp, "GeoLite2-City", &[("127.0.0.2/32", record)]);
        std::fs::rename(&tmp, &path).unwrap();
    };
    install(r#"{"country":{"iso_code":"DE"}}"#);
    let db = Arc::new(GeoDb::open(std::slice::from_ref(&path)).unwrap());
    let gauges = Arc::new(SweepGauges::default());
    let m = Metrics::new(
        &BUCKETS,
        Arc::new(StateStore::new()),
        gauges.clone(),
        vec![Box::new(super::GeoCollector(db.clone()))],
    );
    // Two exits looked up: one placed, one no database knows.
    let p = proxy("id-a", "alpha", "prov1", ProxyProtocol::Http);
    for last in [2u8, 9] {
        let mut r = result(ProxyStatus::Active, 100, None);
        r.exit = Some(Exit {
            ip: Some(std::net::IpAddr::from([127, 0, 0, last])),
            ..Exit::default()
        });
        db.enrich(&mut r, &p, GeoPolicy::Fail, Duration::from_secs(5));
    }
    // A broken download renamed into place: counted, the old one answers.
    std::fs::write(dir.path().join("broken.tmp"), b"not an mmdb").unwrap();
    std::fs::rename(dir.path().join("broken.tmp"), &path).unwrap();
    db.refresh();
    install(r#"{"country":{"iso_code":"FR"}}"#);
    db.refresh();
    gauges
        .own_ips_learn_failures
        .fetch_add(2, Ordering::Relaxed);

    for (format, text, samples) in scrape(&m) {
        let ctx = format!("{format}:\n{text}");
        let one = |name: &str| series(&samples, name);
        assert_eq!(
            one("pharox_exporter_geoip_lookups_total"),
            owned(&[("", 2.0)]),
            "{ctx}"
        );
        assert_eq!(
            one("pharox_exporter_geoip_unknown_country_total"),
            owned(&[("", 1.0)]),
            "{ctx}"
        );
        assert_eq!(
            one("pharox_exporter_geoip_record_errors_total"),
            owned(&[("", 0.0)]),
            "{ctx}"
        );
        assert_eq!(
            one("pharox_exporter_geoip_reloads_total"),
            owned(&[("outcome=error", 1.0), ("outcome=success", 1.0)]),
            "{ctx}"
        );
        assert_eq!(
            one("pharox_exporter_own_ips_learn_failures_total"),
            owned(&[("", 2.0)]),
            "{ctx}"
        );
    }
}

#[test]
fn a_large_scrape_comes_in_chunks_that_add_up_to_the_exposition() {
    let state = Arc::new(StateStore::new());
    let m = Metrics::new(
        &BUCKETS,
        state.clone(),
        Arc::new(SweepGauges::default()),
        Vec::new(),
    );
    let proxies: Vec<Arc<Proxy>> = (0..12_000)
        .map(|i| proxy(&format!("p{i:06}"), "alpha", "prov1", ProxyProtocol::Http))
        .collect();
    state.sync(&proxies);
    for p in &proxies {
        state.record(p, &result(ProxyStatus::Active, 120, None), Instant::now());
    }
    m.per_proxy.set(true, 100_000);
    for om in [true, false] {
        let mut chunks = Vec::new();
        m.render_chunks(om, &mut |c| chunks.push(c));
        assert!(chunks.len() > 1, "{} bytes in one chunk", chunks[0].len());
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= super::CHUNK && c.len() < super::CHUNK + 1024);
            assert!(c.ends_with('\n'), "chunks end at a line");
        }
        let all = chunks.concat();
        // process_* are read anew at each render.
        let stable = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with("process_"))
                .map(String::from)
                .collect()
        };
        assert!(stable(&all) == stable(&m.render(om)), "chunks differ");
        assert_eq!(series(&parse(&all), "pharox_proxy_up").len(), 12_000);
        assert!(all.ends_with(if om {
            "pharox_exporter_proxy_series_dropped 0\n# EOF\n"
        } else {
            "pharox_exporter_proxy_series_dropped 0\n"
        }));
    }
}
