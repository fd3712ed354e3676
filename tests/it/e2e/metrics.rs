//! Metric families, labels and values against real proxies; promtool on
//! both exposition formats; per-proxy series, capped.

use std::collections::BTreeSet;

use pharox_exporter::{Proxy, ProxyProtocol};
use pharox_testkit::{refused_port, FakeProxy, ProxyBehavior, ThreadTarget};

use super::*;
use crate::support::exporter::*;
use crate::support::exposition::*;
use crate::support::process::*;
use crate::support::proxies;

// Families, labels and values against real proxies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_families_labels_and_values_with_real_proxies() {
    let target = ThreadTarget::http();
    let ms1 = proxies::microsocks(None);
    let ms2 = proxies::microsocks(None);
    let tiny = proxies::tinyproxy();
    let ms_auth = proxies::microsocks(Some((MS_USER, MS_PASS)));
    let (dead1, dead2) = (refused_port(), refused_port());

    let dir = ServerDir::new("exporter-families");
    let inv = dir.write(
        "inventory.yaml",
        inventory_yaml(&[
            entry(ms1.proxy_url(), "p1", "alpha"),
            entry(ms2.proxy_url(), "p1", "beta"),
            entry(tiny.proxy_url(), "p1", "alpha"),
            entry(format!("socks5://127.0.0.1:{}", dead1.port()), "p1", "beta"),
            entry(format!("http://127.0.0.1:{}", dead2.port()), "p1", "alpha"),
            entry(
                format!("socks5://{MS_USER}:{MS_PASS}@{}", ms_auth.addr()),
                "p2",
                "gamma",
            ),
            entry(
                format!("socks5://{WRONG_USER}:{WRONG_PASS}@{}", ms_auth.addr()),
                "p2",
                "gamma",
            ),
            // Malformed (port out of range): skipped, counted, never echoed whole.
            entry(
                format!("socks5://{MS_USER}:{ROW_PASS}@127.0.0.1:99999"),
                "p2",
                "gamma",
            ),
        ]),
    );
    let ex = Exporter::start(dir.path(), &base_args(&inv, &target.url("/"))).await;
    ex.wait_sweeps(2.0).await;
    let m = ex.quiescent_scrape().await;
    let ctx = || {
        format!(
            "\n{}\n{}{}{}{}",
            m.text,
            ex.log_tail(),
            ms1.logs(),
            tiny.logs(),
            ms_auth.logs()
        )
    };

    // Status counts per pool, every status present (0 when empty).
    let p1 = |status| m.sum("pharox_proxies", &[("pool", "p1"), ("status", status)]);
    assert_eq!(p1("active"), 3.0, "p1 active{}", ctx());
    assert_eq!(p1("inactive"), 2.0, "p1 inactive{}", ctx());
    assert_eq!(p1("slow"), 0.0, "p1 slow{}", ctx());
    assert_eq!(p1("banned"), 0.0, "p1 banned{}", ctx());
    // Each (provider, protocol) label set of p1 carries all four statuses.
    let p1_sets: BTreeSet<(String, String)> = m
        .series("pharox_proxies", &[("pool", "p1")])
        .iter()
        .map(|s| (s.labels["provider"].clone(), s.labels["protocol"].clone()))
        .collect();
    assert_eq!(
        p1_sets,
        [("alpha", "http"), ("alpha", "socks5"), ("beta", "socks5")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        "p1 label sets{}",
        ctx()
    );
    for (provider, protocol) in &p1_sets {
        let statuses = m.label_values(
            "pharox_proxies",
            "status",
            &[
                ("pool", "p1"),
                ("provider", provider),
                ("protocol", protocol),
            ],
        );
        assert_eq!(
            statuses,
            ["active", "banned", "inactive", "slow"]
                .map(String::from)
                .into(),
            "statuses of p1/{provider}/{protocol}{}",
            ctx()
        );
    }
    let p2 = |status| m.sum("pharox_proxies", &[("pool", "p2"), ("status", status)]);
    assert_eq!((p2("active"), p2("inactive")), (1.0, 1.0), "p2{}", ctx());
    assert_eq!(m.sum("pharox_proxies_unchecked", &[]), 0.0, "{}", ctx());
    assert_eq!(
        m.value("pharox_exporter_inventory_proxies"),
        7.0,
        "{}",
        ctx()
    );
    assert!(
        m.sum("pharox_exporter_inventory_errors_total", &[("kind", "row")]) >= 1.0,
        "the malformed entry is counted{}",
        ctx()
    );

    // Failure reasons: exactly the ones the proxies provoke...
    assert_eq!(
        m.nonzero_label_values("pharox_check_errors_total", "reason", &[("pool", "p1")]),
        BTreeSet::from([s("connect_refused")]),
        "p1 reasons{}",
        ctx()
    );
    // ...and every other one at 0, for every label set of the inventory:
    // the 19 reasons a recorded check can have (not local_resources), the
    // judge's and the proxy's own among them.
    for set in [("p1", "socks5"), ("p1", "http")] {
        let reasons = m.label_values(
            "pharox_check_errors_total",
            "reason",
            &[("pool", set.0), ("protocol", set.1)],
        );
        assert_eq!(
            reasons.len(),
            19,
            "{set:?}: every reason pre-initialised{}",
            ctx()
        );
        for r in [
            "proxy_upstream",
            "judge_unparsable",
            "anonymity",
            "geo_mismatch",
        ] {
            assert!(reasons.contains(r), "{set:?}: {r}{}", ctx());
        }
    }
    // Exits: no target here is a judge, so every pool's exit series exist,
    // at 0: three levels per (pool, protocol), `other` as the only country.
    for (pool, protocol) in [("p1", "socks5"), ("p1", "http"), ("p2", "socks5")] {
        let want = [("pool", pool), ("protocol", protocol)];
        assert_eq!(
            m.label_values("pharox_proxies_by_anonymity", "level", &want),
            BTreeSet::from([s("anonymous"), s("elite"), s("transparent")]),
            "{pool}/{protocol}{}",
            ctx()
        );
        assert_eq!(m.sum("pharox_proxies_by_anonymity", &want), 0.0);
    }
    for pool in ["p1", "p2"] {
        for family in [
            "pharox_proxies_geo_mismatched",
            "pharox_exit_ips_distinct",
            "pharox_geo_mismatches_total",
        ] {
            let series = m.series(family, &[("pool", pool)]);
            assert_eq!(series.len(), 1, "{family} {pool}{}", ctx());
            assert_eq!(series[0].value, 0.0, "{family} {pool}{}", ctx());
        }
        assert_eq!(
            m.label_values(
                "pharox_proxies_by_exit_country",
                "country",
                &[("pool", pool)]
            ),
            BTreeSet::from([s("other")]),
            "{pool}{}",
            ctx()
        );
    }
    assert!(
        m.series("pharox_exporter_min_anonymity_info", &[])
            .is_empty(),
        "no pool requires a level{}",
        ctx()
    );
    assert!(
        m.sum(
            "pharox_check_errors_total",
            &[("pool", "p1"), ("reason", "connect_refused")]
        ) >= 4.0,
        "2 dead proxies x >= 2 sweeps{}",
        ctx()
    );
    assert_eq!(
        m.nonzero_label_values("pharox_check_errors_total", "reason", &[("pool", "p2")]),
        BTreeSet::from([s("proxy_auth_failed")]),
        "p2 reasons{}",
        ctx()
    );

    // The latency histogram counts exactly the successful checks.
    let up_checks = m.sum(
        "pharox_checks_total",
        &[("pool", "p1"), ("status", "active|slow")],
    );
    let hist_count = m.sum("pharox_check_duration_seconds_count", &[("pool", "p1")]);
    assert!(up_checks >= 6.0, "3 live proxies x >= 2 sweeps{}", ctx());
    assert_eq!(hist_count, up_checks, "histogram count vs checks{}", ctx());
    assert_eq!(
        m.sum(
            "pharox_check_duration_seconds_bucket",
            &[("pool", "p1"), ("le", "+Inf")]
        ),
        hist_count,
        "+Inf bucket{}",
        ctx()
    );
    let all_checks = m.sum("pharox_checks_total", &[("pool", "p1")]);
    assert_eq!(
        all_checks,
        up_checks + m.sum("pharox_check_errors_total", &[("pool", "p1")]),
        "every failed check has exactly one reason{}",
        ctx()
    );

    // Exporter self-metrics.
    let build = m.series("pharox_exporter_build_info", &[]);
    assert_eq!(build.len(), 1, "{}", ctx());
    assert_eq!(build[0].value, 1.0);
    assert_eq!(
        build[0].labels.get("version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    // build.rs's revision (git HEAD here), not the old constant "unknown".
    assert_eq!(
        build[0].labels.get("revision"),
        Some(&crate::support::expected_revision())
    );
    assert_eq!(
        m.value("pharox_exporter_config_last_reload_successful"),
        1.0
    );
    assert_eq!(m.value("pharox_exporter_sweep_interval_seconds"), 1.0);
    assert!(m.value("pharox_exporter_sweep_last_completed_timestamp_seconds") > 1.6e9);
    assert!(
        m.series("pharox_proxy_up", &[]).is_empty(),
        "per-proxy series are opt-in{}",
        ctx()
    );

    // No password anywhere the exporter speaks.
    let secrets = [MS_PASS, WRONG_PASS, ROW_PASS];
    assert_no_secret("/metrics", &m.text, &secrets);
    let om = ex
        .request(
            ex.http
                .get(ex.url("/metrics"))
                .header("Accept", "application/openmetrics-text"),
        )
        .await;
    assert_no_secret("/metrics (OpenMetrics)", &om.1, &secrets);
    let (code, status_json) = ex.get("/api/status").await;
    assert_eq!(code, 200);
    assert_no_secret("/api/status", &status_json, &secrets);
    let v: serde_json::Value = serde_json::from_str(&status_json).expect("status JSON");
    let pool = |name: &str| {
        v["pools"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["pool"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("pool {name} missing in {status_json}"))
    };
    assert_eq!(
        (
            pool("p1")["active"].as_u64(),
            pool("p1")["inactive"].as_u64()
        ),
        (Some(3), Some(2))
    );
    let worst = v["worst"].as_array().expect("worst list");
    assert!(
        worst
            .iter()
            .any(|w| w["pool"] == "p2" && w["reason"] == "proxy_auth_failed"),
        "worst proxies name the auth failure: {status_json}"
    );
    for path in ["/", "/status"] {
        let (code, page) = ex.get(path).await;
        assert_eq!(code, 200);
        assert_no_secret(path, &page, &secrets);
    }
    let (code, _) = ex
        .get(&format!(
            "/probe?target=socks5://{WRONG_USER}:{WRONG_PASS}@{}",
            ms_auth.addr()
        ))
        .await;
    assert_eq!(code, 200, "a proxy of the inventory may be probed");
    let log = ex.log_text();
    assert!(log.contains("sweep completed"), "log:\n{log}");
    assert!(log.contains("inventory entry skipped"), "log:\n{log}");
    assert_no_secret("the exporter's log", &log, &secrets);
}

// promtool accepts real scrapes

/// Series keys (`name{labels}`) of an exposition, OpenMetrics or text.
/// Bucket bounds are normalised: OpenMetrics writes `le="1.0"`, text `le="1"`.
fn series_keys(samples: &[Sample]) -> BTreeSet<String> {
    samples
        .iter()
        .map(|s| {
            let mut labels = s.labels.clone();
            if let Some(le) = labels.get_mut("le") {
                if let Some(v) = parse_value(le) {
                    *le = v.to_string();
                }
            }
            format!("{}{labels:?}", s.name)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_text_and_openmetrics_scrapes() {
    let target = ThreadTarget::http();
    let fakes = mixed_fakes(["p1", "p2"]).await;
    let dir = ServerDir::new("exporter-promtool");
    let inv = dir.write("inventory.yaml", inventory_yaml(&fakes.entries));
    let mut args = base_args(&inv, &target.url("/"));
    args.push(s("--metrics.per-proxy"));
    let ex = Exporter::start(dir.path(), &args).await;
    ex.wait_sweeps(2.0).await;

    // Classic text format (curl, promtool): clean, no lint complaints at all.
    let text = ex.quiescent_scrape().await;
    for family in [
        "pharox_check_duration_seconds_bucket",
        "pharox_checks_total",
        "pharox_check_errors_total",
        "pharox_proxies",
        "pharox_proxy_up",
        "pharox_exporter_build_info",
        "pharox_checks_skipped_total",
        "pharox_exporter_http_rejected_total",
        "pharox_exporter_tokio_workers",
        "pharox_exporter_tokio_alive_tasks",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            !text.series(family, &[]).is_empty(),
            "{family} missing from the scrape:\n{}",
            text.text
        );
    }
    let (code, out) = promtool_check_metrics(&text.text);
    assert_eq!(
        code,
        Some(0),
        "promtool check metrics rejects the text format:\n{out}\n{}",
        text.text
    );
    assert!(out.trim().is_empty(), "promtool complains: {out}");
    // Every family served is in the contract, docs/metrics.md.
    let documented = crate::support::bundle::contract_series();
    let served: BTreeSet<&str> = text.samples.iter().map(|s| s.name.as_str()).collect();
    for name in served {
        assert!(
            documented.contains(name),
            "{name} is served but not listed in docs/metrics.md"
        );
    }
    assert!(
        text.text.contains("# TYPE pharox_checks_total counter")
            && text
                .text
                .contains("# TYPE pharox_exporter_build_info gauge")
            && !text.text.contains("# EOF")
            && !text.text.contains("# UNIT"),
        "text 0.0.4 conventions:\n{}",
        text.text
    );

    // OpenMetrics (what Prometheus asks for).
    let r = ex
        .http
        .get(ex.url("/metrics"))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("OpenMetrics scrape");
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let om = r.text().await.expect("body");
    assert!(
        ctype.starts_with("application/openmetrics-text"),
        "content type {ctype:?}"
    );
    assert!(
        om.ends_with("# EOF\n"),
        "OpenMetrics must end with # EOF:\n{om}"
    );
    assert_eq!(om.matches("# EOF").count(), 1);
    // Line-wise: every line is a descriptor of a declared family or a sample
    // of a family declared before it.
    let mut declared: BTreeSet<String> = BTreeSet::new();
    let mut samples = Vec::new();
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            assert!(
                matches!(kind, "HELP" | "TYPE" | "UNIT") && !name.is_empty(),
                "bad descriptor line {line:?}"
            );
            if kind == "TYPE" {
                let ty = parts.next().unwrap_or_default();
                assert!(
                    matches!(ty, "counter" | "gauge" | "histogram"),
                    "unexpected type in {line:?}"
                );
                declared.insert(name.to_string());
            }
            continue;
        }
        let sample = parse_sample(line).unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let family_ok = declared.iter().any(|f| {
            sample.name == *f
                || ["_total", "_bucket", "_count", "_sum", "_created"]
                    .iter()
                    .any(|suffix| sample.name == format!("{f}{suffix}"))
        });
        assert!(family_ok, "sample {line:?} has no # TYPE before it");
        samples.push(sample);
    }
    // Same series in both formats (values move between scrapes; keys don't).
    let om_keys: BTreeSet<String> = series_keys(&samples)
        .into_iter()
        .filter(|k| !k.contains("_created"))
        .collect();
    assert_eq!(
        om_keys,
        series_keys(&text.samples),
        "OpenMetrics and text expose different series"
    );
    // promtool 2.42 lints OpenMetrics counters as "no help text" (the known
    // trap: it looks the HELP up under the `_total` name). Anything else it
    // says, or a parse failure (exit 1), is a real problem.
    let (code, out) = promtool_check_metrics(&om);
    if code != Some(0) {
        assert_eq!(
            code,
            Some(3),
            "promtool cannot parse the OpenMetrics scrape:\n{out}"
        );
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let known_trap = line
                .strip_suffix(" no help text")
                .is_some_and(|name| name.ends_with("_total"));
            assert!(known_trap, "promtool complains about OpenMetrics: {line}");
        }
    }
    drop(fakes);
}

// Per-proxy series, capped

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_proxy_series_are_capped_and_never_carry_passwords() {
    let target = ThreadTarget::http();
    let mut fakes = Vec::new();
    let mut entries = Vec::new();
    let mut ids = Vec::new();
    let mut passwords = Vec::new();
    for i in 0..5 {
        let (user, pass) = (format!("user{i}"), format!("PerProxy-S3cret-{i}"));
        let p = FakeProxy::socks5(ProxyBehavior::healthy().with_auth(&user, &pass))
            .await
            .expect("fake");
        entries.push(entry(
            format!("socks5://{user}:{pass}@{}", p.addr()),
            "pp",
            "alpha",
        ));
        ids.push(Proxy::derive_id(
            ProxyProtocol::Socks5,
            Some(&user),
            "127.0.0.1",
            p.addr().port(),
        ));
        passwords.push(pass);
        fakes.push(p);
    }
    ids.sort();
    let dir = ServerDir::new("exporter-perproxy");
    let inv = dir.write("inventory.yaml", inventory_yaml(&entries));
    let cfg = dir.write("config.yaml", "metrics:\n  per_proxy_limit: 2\n");
    let mut args = base_args(&inv, &target.url("/"));
    args.extend([
        s("--config.file"),
        cfg.display().to_string(),
        s("--metrics.per-proxy"),
        s("--log.format"),
        s("json"),
    ]);
    let ex = Exporter::start(dir.path(), &args).await;
    let m = ex
        .wait_for("five proxies checked", |m| {
            m.sum("pharox_proxies", &[("status", "active")]) == 5.0
        })
        .await;
    let secrets: Vec<&str> = passwords.iter().map(String::as_str).collect();
    for family in [
        "pharox_proxy_up",
        "pharox_proxy_latency_seconds",
        "pharox_proxy_last_check_timestamp_seconds",
    ] {
        let got = m.label_values(family, "proxy_id", &[]);
        assert_eq!(
            got,
            ids[..2].iter().cloned().collect(),
            "{family}: the two lowest ids\n{}",
            m.text
        );
        assert_eq!(m.series(family, &[]).len(), 2);
    }
    assert_eq!(m.sum("pharox_proxy_up", &[]), 2.0);
    assert_eq!(
        m.value("pharox_exporter_proxy_series_dropped"),
        3.0,
        "{}",
        m.text
    );
    for sample in &m.samples {
        for value in sample.labels.values() {
            assert_no_secret("a label value", value, &secrets);
        }
    }
    assert_no_secret("/metrics", &m.text, &secrets);
    // The same two proxies at the next scrape: the cap is stable.
    let again = ex.scrape().await;
    assert_eq!(
        again.label_values("pharox_proxy_up", "proxy_id", &[]),
        ids[..2].iter().cloned().collect()
    );
    let log = ex.log_text();
    assert_no_secret("the exporter's JSON log", &log, &secrets);
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "--log.format json writes one JSON object per line: {line}"
        );
    }
    drop(ex);

    // Set in the file instead of by flag, per-proxy series follow reloads:
    // a higher cap exports all five, and switching them off leaves no
    // series and nothing "dropped" behind.
    let cfg = dir.join("reloadable.yaml");
    write_atomic(&cfg, "metrics:\n  per_proxy: true\n  per_proxy_limit: 2\n");
    let mut args = base_args(&inv, &target.url("/"));
    args.extend([
        s("--config.file"),
        cfg.display().to_string(),
        s("--web.enable-lifecycle"),
    ]);
    let ex = Exporter::start(dir.path(), &args).await;
    ex.wait_for("the cap at 2", |m| {
        m.series("pharox_proxy_up", &[]).len() == 2
            && m.value("pharox_exporter_proxy_series_dropped") == 3.0
    })
    .await;
    write_atomic(&cfg, "metrics:\n  per_proxy: true\n  per_proxy_limit: 10\n");
    assert_eq!(ex.post("/-/reload").await.0, 200);
    let m = ex.scrape().await;
    assert_eq!(m.series("pharox_proxy_up", &[]).len(), 5, "{}", m.text);
    assert_eq!(
        m.value("pharox_exporter_proxy_series_dropped"),
        0.0,
        "{}",
        m.text
    );
    write_atomic(&cfg, "metrics:\n  per_proxy: true\n  per_proxy_limit: 1\n");
    assert_eq!(ex.post("/-/reload").await.0, 200);
    assert_eq!(
        ex.scrape()
            .await
            .value("pharox_exporter_proxy_series_dropped"),
        4.0
    );
    write_atomic(&cfg, "metrics:\n  per_proxy: false\n  per_proxy_limit: 1\n");
    assert_eq!(ex.post("/-/reload").await.0, 200);
    let m = ex.scrape().await;
    assert!(m.series("pharox_proxy_up", &[]).is_empty(), "{}", m.text);
    assert_eq!(
        m.value("pharox_exporter_proxy_series_dropped"),
        0.0,
        "with per-proxy series off, none are dropped by the cap\n{}",
        m.text
    );
}
