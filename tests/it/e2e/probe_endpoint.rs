//! `/probe`: inventory proxies are checked, others guarded.

use pharox_testkit::{refused_port, FakeProxy, ProxyBehavior, ThreadTarget};

use super::*;
use crate::support::exporter::*;
use crate::support::exposition::*;
use crate::support::process::*;

async fn probe(ex: &Exporter, target: String) -> (u16, String) {
    ex.request(ex.http.get(ex.url("/probe")).query(&[("target", target)]))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_endpoint_checks_inventory_proxies_and_guards_others() {
    let target = ThreadTarget::http();
    // In the inventory, with credentials the probe must take from there.
    let known = FakeProxy::socks5(ProxyBehavior::healthy().with_auth("inv", "Inv-S3cret-1"))
        .await
        .expect("known");
    let stranger = FakeProxy::http(ProxyBehavior::healthy())
        .await
        .expect("stranger");
    let dir = ServerDir::new("exporter-probe");
    let inv = dir.write(
        "inventory.yaml",
        inventory_yaml(&[entry(
            format!("socks5://inv:Inv-S3cret-1@{}", known.addr()),
            "p1",
            "alpha",
        )]),
    );
    let ex = Exporter::start(dir.path(), &base_args(&inv, &target.url("/"))).await;
    let (code, body) = probe(&ex, format!("socks5://{}", known.addr())).await;
    assert_eq!(code, 200, "{body}");
    let m = Scrape::parse(body);
    assert_eq!(m.value("probe_success"), 1.0, "{}", m.text);
    assert_eq!(m.value("probe_http_status_code"), 200.0);
    assert_eq!(
        m.sum("probe_proxy_status", &[("status", "active")]),
        1.0,
        "{}",
        m.text
    );
    assert!(m.series("probe_failure", &[]).is_empty());
    let (pcode, pout) = promtool_check_metrics(&m.text);
    assert_eq!(pcode, Some(0), "promtool on /probe: {pout}\n{}", m.text);
    assert_no_secret("/probe", &m.text, &["Inv-S3cret-1"]);

    let (code, body) = probe(&ex, format!("http://{}", stranger.addr())).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("allow_arbitrary_probe_targets"), "{body}");
    let (code, body) = probe(
        &ex,
        format!("http://nosy:Nosy-S3cret-2@{}", stranger.addr()),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_no_secret("a /probe refusal", &body, &["Nosy-S3cret-2"]);
    assert_eq!(stranger.connections(), 0, "a refused probe never dials");
    assert_eq!(ex.get("/probe").await.0, 400);
    assert_eq!(ex.get("/probe?target=ftp://127.0.0.1:21").await.0, 400);
    drop(ex);

    let cfg = dir.write(
        "config.yaml",
        "web:\n  allow_arbitrary_probe_targets: true\n",
    );
    let mut args = base_args(&inv, &target.url("/"));
    args.extend([
        s("--config.file"),
        cfg.display().to_string(),
        s("--web.telemetry-path"),
        s("/custom-metrics"),
    ]);
    let ex = Exporter::start(dir.path(), &args).await;
    let (code, body) = ex.get("/custom-metrics").await;
    assert!(
        code == 200 && body.contains("pharox_exporter_build_info"),
        "{body}"
    );
    assert_eq!(ex.get("/metrics").await.0, 404);
    let (_, page) = ex.get("/").await;
    assert!(page.contains("href=\"/custom-metrics\""), "{page}");
    let (code, body) = probe(&ex, format!("http://{}", stranger.addr())).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(Scrape::parse(body).value("probe_success"), 1.0);
    assert!(stranger.connections() >= 1);
    let dead = refused_port();
    let (code, body) = probe(&ex, format!("socks5://127.0.0.1:{}", dead.port())).await;
    assert_eq!(code, 200, "{body}");
    let m = Scrape::parse(body);
    assert_eq!(m.value("probe_success"), 0.0);
    assert_eq!(
        m.sum(
            "probe_failure",
            &[("reason", "connect_refused"), ("phase", "connect")]
        ),
        1.0,
        "{}",
        m.text
    );
    // OpenMetrics on request.
    let (code, body) = ex
        .request(
            ex.http
                .get(ex.url("/probe"))
                .query(&[("target", format!("http://{}", stranger.addr()))])
                .header("Accept", "application/openmetrics-text"),
        )
        .await;
    assert_eq!(code, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
}

/// Two inventory entries that differ only in their password: `/probe` must
/// check the one whose password was asked for, or the one named by `?id=`.
/// Before issue 12 the password in `?target=` was ignored and the first
/// entry at that user@host:port (here the wrong password) was probed, so a
/// working proxy read `proxy_auth_failed`; `?id=` was a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_matches_the_password_and_accepts_an_inventory_id() {
    const RIGHT: &str = "Tw1n-S3cret-right";
    const WRONG: &str = "Tw1n-S3cret-wrong";
    let target = ThreadTarget::http();
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy().with_auth("twin", RIGHT))
        .await
        .expect("auth fake");
    let dir = ServerDir::new("exporter-probe-twins");
    let port = proxy.addr().port();
    let inv = dir.write(
        "twins.csv",
        format!(
            "id,protocol,host,port,username,password\n\
             twin-wrong,socks5,127.0.0.1,{port},twin,{WRONG}\n\
             twin-right,socks5,127.0.0.1,{port},twin,{RIGHT}\n"
        ),
    );
    let ex = Exporter::start(dir.path(), &base_args(&inv, &target.url("/"))).await;
    let secrets = [RIGHT, WRONG];

    let (code, body) = probe(&ex, format!("socks5://twin:{RIGHT}@127.0.0.1:{port}")).await;
    assert_eq!(code, 200, "{body}");
    assert_no_secret("/probe", &body, &secrets);
    let m = Scrape::parse(body);
    assert_eq!(
        m.value("probe_success"),
        1.0,
        "the right password: {}",
        m.text
    );

    let (code, body) = probe(&ex, format!("socks5://twin:{WRONG}@127.0.0.1:{port}")).await;
    assert_eq!(code, 200, "{body}");
    let m = Scrape::parse(body);
    assert_eq!(m.value("probe_success"), 0.0, "{}", m.text);
    assert_eq!(
        m.sum("probe_failure", &[("reason", "proxy_auth_failed")]),
        1.0,
        "{}",
        m.text
    );

    let by_id = |id: &str| ex.request(ex.http.get(ex.url("/probe")).query(&[("id", id)]));
    let (code, body) = by_id("twin-right").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(Scrape::parse(body).value("probe_success"), 1.0);
    let (code, body) = by_id("twin-wrong").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(Scrape::parse(body).value("probe_success"), 0.0);
    let (code, body) = by_id("no-such-id").await;
    assert_eq!(code, 404, "{body}");

    // Without the password the URL names both entries: say so, never guess.
    let (code, body) = probe(&ex, format!("socks5://twin@127.0.0.1:{port}")).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("twin-right") && body.contains("twin-wrong") && body.contains("?id="),
        "{body}"
    );
    assert_no_secret("a /probe conflict", &body, &secrets);
    // A password that is in neither entry is not in the inventory.
    let (code, body) = probe(&ex, format!("socks5://twin:other@127.0.0.1:{port}")).await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = ex
        .request(
            ex.http
                .get(ex.url("/probe"))
                .query(&[("id", "twin-right"), ("target", "socks5://127.0.0.1:1")]),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert_no_secret("the exporter's log", &ex.log_text(), &secrets);
}
