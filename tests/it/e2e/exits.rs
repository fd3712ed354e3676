//! Exits end to end: the exporter binary sweeps real proxies (squid,
//! tinyproxy, microsocks) through our own judge, each proxy leaving from its
//! own loopback address (127.0.0.41..44), which a City database written here
//! places in Germany or the United States. One sweep (the interval is an
//! hour), then exact values of the exit series in `/metrics` and of the
//! per-pool exits in `/api/status`.
//!
//! | proxy | pool | protocol | exit | judge sees | declared | located | result |
//! |---|---|---|---|---|---|---|---|
//! | squid, forwarded_for on | strict | http | 127.0.0.41 | transparent | DE | DE | INACTIVE `anonymity` |
//! | squid, forwarded_for delete, via off | strict | http | 127.0.0.43 | elite | DE | DE | ACTIVE |
//! | microsocks | strict | socks5 | 127.0.0.42 | elite | DE | US | INACTIVE `geo_mismatch` |
//! | tinyproxy (Via) | lenient | http | 127.0.0.44 | anonymous | US | US | ACTIVE |
//! | microsocks | lenient | socks5 | 127.0.0.42 | elite | DE | US | ACTIVE, mismatch reported |
//!
//! `strict` requires elite and fails geo mismatches (the default policy);
//! `lenient` requires anonymous and only reports them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use pharox_exporter::{Proxy, ProxyProtocol};
use pharox_testkit::mmdb::{mmdblookup, write_mmdb};

use crate::anonymity::OurJudge;
use crate::support::exporter::*;
use crate::support::exposition::Scrape;
use crate::support::process::{start_on_free_port, ChildGuard, ServerDir};
use crate::support::proxies::{self, ProxyServer};

/// Every series of `name` in `m` (optionally only those not 0), as
/// (`k=v,...` of all its labels, value), sorted.
fn family(m: &Scrape, name: &str, nonzero: bool) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64)> = m
        .series(name, &[])
        .into_iter()
        .filter(|s| !nonzero || s.value != 0.0)
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (labels.join(","), s.value)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn rows(want: &[(&str, f64)]) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = want.iter().map(|(l, n)| (l.to_string(), *n)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// 127.0.0.41 and .43 in Berlin, .42 and .44 in Dallas.
fn city_db(path: &Path) {
    const BERLIN: &str = r#"{"country":{"iso_code":"DE"},"city":{"names":{"en":"Berlin"}}}"#;
    const DALLAS: &str = r#"{"country":{"iso_code":"US"},"city":{"names":{"en":"Dallas"}}}"#;
    write_mmdb(
        path,
        "GeoLite2-City",
        &[
            ("127.0.0.41/32", BERLIN),
            ("127.0.0.42/32", DALLAS),
            ("127.0.0.43/32", BERLIN),
            ("127.0.0.44/32", DALLAS),
        ],
    );
    for (ip, cc) in [
        ("127.0.0.41", "DE"),
        ("127.0.0.42", "US"),
        ("127.0.0.43", "DE"),
        ("127.0.0.44", "US"),
    ] {
        assert_eq!(
            mmdblookup(path, ip, &["country", "iso_code"]).as_deref(),
            Some(cc),
            "{ip} in the test database"
        );
    }
}

fn id(protocol: ProxyProtocol, server: &ProxyServer) -> String {
    Proxy::derive_id(protocol, None, "127.0.0.1", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sweep_through_our_judge_exports_exact_exit_series_and_status() {
    let judge = OurJudge::start().await;
    let transparent =
        proxies::squid_with(None, "forwarded_for on\ntcp_outgoing_address 127.0.0.41\n");
    let elite = proxies::squid_with(
        None,
        "forwarded_for delete\nvia off\ntcp_outgoing_address 127.0.0.43\n",
    );
    let anonymous = proxies::tinyproxy_with("Bind 127.0.0.44\n");
    let socks_strict = proxies::microsocks_exiting_from(Ipv4Addr::new(127, 0, 0, 42));
    let socks_lenient = proxies::microsocks_exiting_from(Ipv4Addr::new(127, 0, 0, 42));
    let servers = [
        &transparent,
        &elite,
        &anonymous,
        &socks_strict,
        &socks_lenient,
    ];

    let dir = ServerDir::new("exporter-exits");
    city_db(&dir.join("City.mmdb"));
    dir.write(
        "proxies.csv",
        format!(
            "url,pool,provider,country\n\
             {},strict,acme,DE\n\
             {},strict,acme,de\n\
             {},strict,acme,DE\n\
             {},lenient,zeta,US\n\
             {},lenient,zeta,DE\n",
            transparent.proxy_url(),
            elite.proxy_url(),
            socks_strict.proxy_url(),
            anonymous.proxy_url(),
            socks_lenient.proxy_url(),
        ),
    );
    let cfg = dir.write(
        "config.yaml",
        format!(
            "defaults:\n  target_url: {}\n  timeout: 10s\n  judge: true\n\
             pools:\n  strict:\n    min_anonymity: elite\n  lenient:\n    min_anonymity: anonymous\n    geo_policy: report\n\
             inventory:\n  path: proxies.csv\n\
             geoip:\n  databases: [City.mmdb]\n",
            judge.url()
        ),
    );
    let args = vec![
        s("--config.file"),
        cfg.display().to_string(),
        // One sweep: every counter below is exact.
        s("--sweep.interval"),
        s("1h"),
        s("--slow-threshold-ms"),
        s("600000"),
        s("--metrics.per-proxy"),
        s("--log.level"),
        s("debug"),
    ];
    let ex = Exporter::start(dir.path(), &args).await;
    ex.wait_sweeps(1.0).await;
    let m = ex.quiescent_scrape().await;
    let logs = || {
        let mut t = ex.log_tail();
        for s in servers {
            t.push_str(&s.logs());
        }
        t
    };
    assert_eq!(m.value("pharox_exporter_sweeps_total"), 1.0, "{}", logs());

    assert_eq!(
        family(&m, "pharox_proxies", true),
        rows(&[
            ("pool=strict,protocol=http,provider=acme,status=active", 1.0),
            (
                "pool=strict,protocol=http,provider=acme,status=inactive",
                1.0
            ),
            (
                "pool=strict,protocol=socks5,provider=acme,status=inactive",
                1.0
            ),
            (
                "pool=lenient,protocol=http,provider=zeta,status=active",
                1.0
            ),
            (
                "pool=lenient,protocol=socks5,provider=zeta,status=active",
                1.0
            ),
        ]),
        "{}\n{}",
        m.text,
        logs()
    );
    assert_eq!(
        family(&m, "pharox_check_errors_total", true),
        rows(&[
            (
                "pool=strict,protocol=http,provider=acme,reason=anonymity",
                1.0
            ),
            (
                "pool=strict,protocol=socks5,provider=acme,reason=geo_mismatch",
                1.0
            ),
        ]),
        "{}",
        m.text
    );
    assert_eq!(
        family(&m, "pharox_proxies_by_anonymity", false),
        rows(&[
            ("level=transparent,pool=strict,protocol=http", 1.0),
            ("level=anonymous,pool=strict,protocol=http", 0.0),
            ("level=elite,pool=strict,protocol=http", 1.0),
            ("level=transparent,pool=strict,protocol=socks5", 0.0),
            ("level=anonymous,pool=strict,protocol=socks5", 0.0),
            ("level=elite,pool=strict,protocol=socks5", 1.0),
            ("level=transparent,pool=lenient,protocol=http", 0.0),
            ("level=anonymous,pool=lenient,protocol=http", 1.0),
            ("level=elite,pool=lenient,protocol=http", 0.0),
            ("level=transparent,pool=lenient,protocol=socks5", 0.0),
            ("level=anonymous,pool=lenient,protocol=socks5", 0.0),
            ("level=elite,pool=lenient,protocol=socks5", 1.0),
        ]),
        "{}",
        m.text
    );
    assert_eq!(
        family(&m, "pharox_proxies_by_exit_country", false),
        rows(&[
            ("country=DE,pool=strict", 2.0),
            ("country=US,pool=strict", 1.0),
            ("country=other,pool=strict", 0.0),
            ("country=US,pool=lenient", 2.0),
            ("country=other,pool=lenient", 0.0),
        ]),
        "{}",
        m.text
    );
    assert_eq!(
        family(&m, "pharox_proxies_geo_mismatched", false),
        rows(&[("pool=strict", 1.0), ("pool=lenient", 1.0)]),
        "{}",
        m.text
    );
    assert_eq!(
        family(&m, "pharox_geo_mismatches_total", false),
        rows(&[("pool=strict", 1.0), ("pool=lenient", 1.0)]),
        "{}",
        m.text
    );
    assert_eq!(
        family(&m, "pharox_exit_ips_distinct", false),
        rows(&[("pool=strict", 3.0), ("pool=lenient", 2.0)]),
        "{}",
        m.text
    );
    assert_eq!(
        family(&m, "pharox_exporter_min_anonymity_info", false),
        rows(&[
            ("level=elite,pool=strict,protocol=http", 1.0),
            ("level=elite,pool=strict,protocol=socks5", 1.0),
            ("level=anonymous,pool=lenient,protocol=http", 1.0),
            ("level=anonymous,pool=lenient,protocol=socks5", 1.0),
        ]),
        "{}",
        m.text
    );
    let info = |protocol: ProxyProtocol, server: &ProxyServer, rest: &str| {
        (format!("{rest},proxy_id={}", id(protocol, server)), 1.0)
    };
    let mut want_info = vec![
        info(
            ProxyProtocol::Http,
            &transparent,
            "anonymity=transparent,country=DE,exit_ip=127.0.0.41,pool=strict,protocol=http,provider=acme",
        ),
        info(
            ProxyProtocol::Http,
            &elite,
            "anonymity=elite,country=DE,exit_ip=127.0.0.43,pool=strict,protocol=http,provider=acme",
        ),
        info(
            ProxyProtocol::Socks5,
            &socks_strict,
            "anonymity=elite,country=US,exit_ip=127.0.0.42,pool=strict,protocol=socks5,provider=acme",
        ),
        info(
            ProxyProtocol::Http,
            &anonymous,
            "anonymity=anonymous,country=US,exit_ip=127.0.0.44,pool=lenient,protocol=http,provider=zeta",
        ),
        info(
            ProxyProtocol::Socks5,
            &socks_lenient,
            "anonymity=elite,country=US,exit_ip=127.0.0.42,pool=lenient,protocol=socks5,provider=zeta",
        ),
    ];
    want_info.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        family(&m, "pharox_proxy_exit_info", false),
        want_info,
        "{}",
        m.text
    );
    assert_eq!(m.value("pharox_exporter_proxy_series_dropped"), 0.0);

    let (code, body) = ex.get("/api/status").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    let exits: BTreeMap<String, serde_json::Value> = v["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .map(|p| {
            (
                p["pool"].as_str().expect("pool").to_string(),
                p["exits"].clone(),
            )
        })
        .collect();
    assert_eq!(
        exits,
        BTreeMap::from([
            (
                s("strict"),
                serde_json::json!({
                    "anonymity": {"transparent": 1, "anonymous": 0, "elite": 2},
                    "countries": [{"country": "DE", "count": 2}, {"country": "US", "count": 1}],
                    "countries_other": 0,
                    "geo_mismatch": 1,
                })
            ),
            (
                s("lenient"),
                serde_json::json!({
                    "anonymity": {"transparent": 0, "anonymous": 1, "elite": 1},
                    "countries": [{"country": "US", "count": 2}],
                    "countries_other": 0,
                    "geo_mismatch": 1,
                })
            ),
        ]),
        "{body}"
    );
    assert_eq!(
        v["totals"]["exits"],
        serde_json::json!({
            "anonymity": {"transparent": 1, "anonymous": 1, "elite": 3},
            "countries": [{"country": "US", "count": 3}, {"country": "DE", "count": 2}],
            "countries_other": 0,
            "geo_mismatch": 2,
        }),
        "{body}"
    );
}

/// The `judge` subcommand as its own process (a sidecar judge), a pool that
/// first fails a transparent proxy and a geo mismatch, then a reload that
/// drops `min_anonymity` and only reports mismatches: both proxies come
/// back, their failure counters stop, while the mismatch counter goes on
/// counting every check (whatever the policy) and the exits stay the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_policy_stops_the_failures_but_not_the_mismatch_count() {
    let dir = ServerDir::new("exporter-exits-reload");
    let (judge_addr, _judge) = start_on_free_port("judge", dir.path(), |port| {
        let mut cmd = std::process::Command::new(exporter_bin());
        cmd.args([
            "judge",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
        ]);
        ChildGuard::spawn("judge", cmd, &dir.join(&format!("judge-{port}.log")))
    });

    let transparent =
        proxies::squid_with(None, "forwarded_for on\ntcp_outgoing_address 127.0.0.45\n");
    let socks = proxies::microsocks_exiting_from(Ipv4Addr::new(127, 0, 0, 46));
    write_mmdb(
        &dir.join("Country.mmdb"),
        "GeoLite2-Country",
        &[
            ("127.0.0.45/32", r#"{"country":{"iso_code":"DE"}}"#),
            ("127.0.0.46/32", r#"{"country":{"iso_code":"US"}}"#),
        ],
    );
    dir.write(
        "proxies.csv",
        format!(
            "url,pool,provider,country\n{},p,acme,DE\n{},p,acme,DE\n",
            transparent.proxy_url(),
            socks.proxy_url()
        ),
    );
    let config = |pool: &str| {
        format!(
            "defaults:\n  target_url: http://{judge_addr}/\n  timeout: 10s\n  judge: true\n\
             sweep:\n  interval: 1s\n\
             pools:\n  p:\n{pool}\
             inventory:\n  path: proxies.csv\n\
             geoip:\n  databases: [Country.mmdb]\n"
        )
    };
    let cfg = dir.join("config.yaml");
    write_atomic(&cfg, &config("    min_anonymity: elite\n"));
    let args = vec![
        s("--config.file"),
        cfg.display().to_string(),
        s("--slow-threshold-ms"),
        s("600000"),
        s("--web.enable-lifecycle"),
        s("--log.level"),
        s("debug"),
    ];
    let ex = Exporter::start(dir.path(), &args).await;
    let logs = || {
        format!(
            "{}\n{}\n{}\n{}",
            ex.log_tail(),
            dir.logs(4000),
            transparent.logs(),
            socks.logs()
        )
    };
    let errors = |m: &Scrape, reason: &str| {
        m.sum(
            "pharox_check_errors_total",
            &[("pool", "p"), ("reason", reason)],
        )
    };
    let mismatches = |m: &Scrape| m.sum("pharox_geo_mismatches_total", &[("pool", "p")]);
    let exits = |m: &Scrape| {
        (
            family(m, "pharox_proxies_by_anonymity", true),
            family(m, "pharox_proxies_by_exit_country", false),
            family(m, "pharox_proxies_geo_mismatched", false),
            family(m, "pharox_exit_ips_distinct", false),
        )
    };
    let want_exits = (
        rows(&[
            ("level=transparent,pool=p,protocol=http", 1.0),
            ("level=elite,pool=p,protocol=socks5", 1.0),
        ]),
        rows(&[
            ("country=DE,pool=p", 1.0),
            ("country=US,pool=p", 1.0),
            ("country=other,pool=p", 0.0),
        ]),
        rows(&[("pool=p", 1.0)]),
        rows(&[("pool=p", 2.0)]),
    );

    // Old policy: every sweep fails both, once each.
    ex.wait_sweeps(2.0).await;
    let m = ex.quiescent_scrape().await;
    let n = m.value("pharox_exporter_sweeps_total");
    assert_eq!(
        family(&m, "pharox_check_errors_total", true),
        rows(&[
            ("pool=p,protocol=http,provider=acme,reason=anonymity", n),
            (
                "pool=p,protocol=socks5,provider=acme,reason=geo_mismatch",
                n
            ),
        ]),
        "{}\n{}",
        m.text,
        logs()
    );
    assert_eq!(mismatches(&m), n, "{}", m.text);
    assert_eq!(
        m.sum("pharox_proxies", &[("pool", "p"), ("status", "inactive")]),
        2.0
    );
    assert_eq!(exits(&m), want_exits, "{}", m.text);
    assert_eq!(
        family(&m, "pharox_exporter_min_anonymity_info", false),
        rows(&[
            ("level=elite,pool=p,protocol=http", 1.0),
            ("level=elite,pool=p,protocol=socks5", 1.0),
        ]),
        "{}",
        m.text
    );

    // New policy: no minimum, mismatches only reported.
    write_atomic(&cfg, &config("    geo_policy: report\n"));
    let (code, body) = ex.post("/-/reload").await;
    assert_eq!(code, 200, "{body}\n{}", logs());
    let m = ex.scrape().await;
    assert_eq!(
        family(&m, "pharox_exporter_min_anonymity_info", false),
        vec![],
        "no minimum required after the reload\n{}",
        m.text
    );
    // A sweep that started before the reload keeps the old options: wait
    // for one that started after it.
    let reloaded_at = m.value("pharox_exporter_sweeps_total");
    ex.wait_sweeps(reloaded_at + 2.0).await;
    let a = ex.quiescent_scrape().await;
    assert_eq!(
        a.sum("pharox_proxies", &[("pool", "p"), ("status", "active")]),
        2.0,
        "{}\n{}",
        a.text,
        logs()
    );
    let failed = errors(&a, "anonymity");
    assert_eq!(errors(&a, "geo_mismatch"), failed, "{}", a.text);
    assert!(failed <= reloaded_at + 1.0, "{}", a.text);
    ex.wait_sweeps(a.value("pharox_exporter_sweeps_total") + 2.0)
        .await;
    let b = ex.quiescent_scrape().await;
    let swept = b.value("pharox_exporter_sweeps_total") - a.value("pharox_exporter_sweeps_total");
    assert_eq!(
        family(&b, "pharox_check_errors_total", true),
        family(&a, "pharox_check_errors_total", true),
        "no failure after the reload\n{}",
        b.text
    );
    assert_eq!(
        mismatches(&b) - mismatches(&a),
        swept,
        "every check of the mismatched proxy is counted\n{}",
        b.text
    );
    assert_eq!(exits(&b), want_exits, "{}", b.text);
}
