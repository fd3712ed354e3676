//! Abuse of the web port, each case one that broke the exporter before the
//! hardening of issue 9 (the figures before/after are in the commit and the
//! report; run against another build with `PHAROX_TEST_EXPORTER=<binary>`):
//!
//! - idle TCP connections and a slowloris client while 400 healthy proxies
//!   are swept: every proxy stays ACTIVE, no check fails, and `/metrics`
//!   answers within 1 s on a fresh connection throughout;
//! - a flood of `POST /-/reload` without `--web.enable-lifecycle`: 403 each,
//!   and the changed config file is not applied;
//! - concurrent `/probe` of one proxy: one check reaches the proxy, the
//!   others are refused (429), instead of one connection per request;
//! - a slowloris and an idle kept-alive connection are closed by the header
//!   timeout (10 s), instead of being held forever.
//!
//! The exporter runs with a file-descriptor limit of 1024 (soft and hard,
//! the common default), which the idle connections would exhaust if the
//! server had no connection cap of its own.

use std::io::Write as _;
use std::time::{Duration, Instant};

use pharox_testkit::{FakeProxy, FakeTarget, ProxyBehavior, Reply};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::exporter::*;
use crate::support::exposition::Scrape;
use crate::support::process::ServerDir;

/// Healthy proxies swept during the attack.
const PROXIES: usize = 400;
/// Idle connections opened at the web port.
const IDLE: usize = 1000;
/// The exporter's descriptor limit: 400 checks + its own 256-connection cap
/// + margin fit; 1000 idle sockets on top do not.
const EXPORTER_NOFILE: u64 = 1024;

/// `PROXIES` inventory entries over a few fakes (distinct user names make
/// distinct proxies), all healthy.
async fn fleet(dir: &ServerDir) -> (FakeTarget, Vec<FakeProxy>, std::path::PathBuf) {
    let target = FakeTarget::start(Reply::ok("ok")).await.expect("target");
    let mut fakes = Vec::new();
    for _ in 0..8 {
        fakes.push(
            FakeProxy::socks5(ProxyBehavior::healthy())
                .await
                .expect("fake"),
        );
    }
    let inv = dir.join("inventory.txt");
    let mut f = std::fs::File::create(&inv).expect("inventory");
    for i in 0..PROXIES {
        writeln!(f, "socks5://user{i}@{}", fakes[i % fakes.len()].addr()).expect("write");
    }
    (target, fakes, inv)
}

fn statuses(m: &Scrape) -> (f64, f64) {
    (
        m.sum("pharox_proxies", &[("status", "active")]),
        m.sum("pharox_proxies", &[("status", "inactive")]),
    )
}

/// A scrape of `/metrics` on a connection of its own, bounded by 1 s.
async fn fresh_scrape(url: &str) -> Result<(Duration, Scrape), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let r = client.get(url).send().await.map_err(|e| e.to_string())?;
    let code = r.status().as_u16();
    let text = r.text().await.map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("HTTP {code}"));
    }
    Ok((t.elapsed(), Scrape::parse(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_slowloris_leave_every_proxy_active() {
    // This process holds the fakes' sockets (two per check in flight) and
    // the idle client sockets: raise its soft limit as the exporter does,
    // with the exporter's own guard, which says what to raise if too low.
    pharox_exporter::ensure_fd_limit(IDLE + 4 * PROXIES + 256, 0)
        .unwrap_or_else(|e| panic!("this test's own descriptors: {e}"));
    let dir = ServerDir::new("exporter-abuse-idle");
    let (target, _fakes, inv) = fleet(&dir).await;
    let mut args = base_args(&inv, target.url("/").as_str());
    args.extend([s("--concurrency"), PROXIES.to_string()]);
    // Info, not debug: 400 checks a second would flood the log.
    let i = args.iter().position(|a| a == "--log.level").expect("flag");
    args[i + 1] = s("info");
    let launch = Launch {
        nofile: Some(EXPORTER_NOFILE),
        ..Launch::default()
    };
    let ex = Exporter::start_with(dir.path(), &args, launch).await;
    let m = ex
        .wait_for("every proxy ACTIVE", |m| {
            statuses(m) == (PROXIES as f64, 0.0)
        })
        .await;
    let errors_before = m.sum("pharox_check_errors_total", &[]);
    let sweeps_before = m.value("pharox_exporter_sweeps_total");
    let addr = ex.base.trim_start_matches("http://").to_string();

    // The attack: IDLE connections that never send a byte...
    let mut idle = Vec::with_capacity(IDLE);
    let mut refused: Option<String> = None;
    for _ in 0..IDLE {
        match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(&addr)).await {
            Ok(Ok(c)) => idle.push(c),
            Ok(Err(e)) => {
                refused = Some(e.to_string());
                break;
            }
            Err(_) => {
                refused = Some("connect timed out".to_string());
                break;
            }
        }
    }
    let opened = idle.len();
    // ...and a slowloris: one header byte a second, never finishing.
    let slow_addr = addr.clone();
    let slowloris = tokio::spawn(async move {
        let Ok(mut c) = TcpStream::connect(&slow_addr).await else {
            return 0u32;
        };
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut sent = 0;
        for b in head {
            if c.write_all(&[*b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        sent
    });

    // While it lasts (at least 3 sweeps and 6 s): scrape on fresh
    // connections, note the worst.
    let url = ex.url("/metrics");
    let started = Instant::now();
    let (mut scrapes, mut failed, mut slowest) = (0, Vec::new(), Duration::ZERO);
    let mut worst_inactive = 0.0f64;
    let mut sweeps_seen = sweeps_before;
    while started.elapsed() < Duration::from_secs(20)
        && (started.elapsed() < Duration::from_secs(6) || sweeps_seen < sweeps_before + 3.0)
    {
        scrapes += 1;
        match fresh_scrape(&url).await {
            Ok((took, m)) => {
                slowest = slowest.max(took);
                worst_inactive = worst_inactive.max(statuses(&m).1);
                sweeps_seen = sweeps_seen.max(m.value("pharox_exporter_sweeps_total"));
            }
            Err(e) => failed.push(e),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let attack = started.elapsed();
    // After the attack (so that a server that could not answer during it
    // still gives its figures): what happened to the checks meanwhile.
    drop(idle);
    slowloris.abort();
    let m = ex
        .wait_for("the server to answer after the attack", |_| true)
        .await;
    let errors = m.sum("pharox_check_errors_total", &[]) - errors_before;
    let (_, inactive_after) = statuses(&m);
    worst_inactive = worst_inactive.max(inactive_after);
    eprintln!(
        "abuse: {opened} idle connections + slowloris for {attack:.1?}, {} sweeps: \
         {worst_inactive}/{PROXIES} INACTIVE at worst, {errors} failed checks, \
         {}/{scrapes} fresh-connection scrapes failed (first: {:?}), slowest {slowest:?}",
        sweeps_seen - sweeps_before,
        failed.len(),
        failed.first()
    );
    assert_eq!(opened, IDLE, "idle connections opened: {refused:?}");
    assert!(
        sweeps_seen >= sweeps_before + 3.0,
        "sweeps went on during the attack\n{}",
        ex.log_tail()
    );
    assert!(
        failed.is_empty(),
        "/metrics must answer within 1 s on a fresh connection: {failed:?}\n{}",
        ex.log_tail()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest scrape {slowest:?}"
    );
    assert_eq!(worst_inactive, 0.0, "no proxy INACTIVE\n{}", ex.log_tail());
    assert_eq!(errors, 0.0, "no check failed\n{}", m.text);
    assert_eq!(
        m.sum("pharox_checks_skipped_total", &[]),
        0.0,
        "the prober's descriptors were never short"
    );
    assert!(
        m.sum(
            "pharox_exporter_http_rejected_total",
            &[("reason", "idle_evicted")]
        ) > 0.0,
        "idle connections past the cap were evicted\n{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_flood_without_the_lifecycle_flag_changes_nothing() {
    let dir = ServerDir::new("exporter-abuse-reload");
    let target = FakeTarget::start(Reply::ok("ok")).await.expect("target");
    let live = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("fake");
    let inv = dir.write("inventory.txt", format!("socks5://{}\n", live.addr()));
    let cfg = dir.join("config.yaml");
    write_atomic(&cfg, "sweep:\n  interval: 1s\n");
    let mut args = base_args(&inv, target.url("/").as_str());
    // The file's interval, not the flag's, so a reload would change it.
    let i = args
        .iter()
        .position(|a| a == "--sweep.interval")
        .expect("flag");
    args.drain(i..i + 2);
    args.extend([s("--config.file"), cfg.display().to_string()]);
    let ex = Exporter::start(dir.path(), &args).await;
    let m = ex.wait_sweeps(1.0).await;
    let reload_ts = "pharox_exporter_config_last_reload_success_timestamp_seconds";
    let before = (
        m.value(reload_ts),
        m.value("pharox_exporter_config_last_reload_successful"),
    );
    assert_eq!(m.value("pharox_exporter_sweep_interval_seconds"), 1.0);

    // A changed file on disk: a reload would apply it.
    write_atomic(&cfg, "sweep:\n  interval: 7s\n");
    tokio::time::sleep(Duration::from_millis(20)).await; // a later timestamp, were it reloaded
    let url = ex.url("/-/reload");
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (http, url) = (ex.http.clone(), url.clone());
        flood.spawn(async move {
            match http.post(url).send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) => (0, e.to_string()),
            }
        });
    }
    let mut codes = std::collections::BTreeMap::new();
    let mut body = String::new();
    while let Some(r) = flood.join_next().await {
        let (code, text) = r.expect("flood task");
        *codes.entry(code).or_insert(0) += 1;
        body = text;
    }
    let m = ex.scrape().await;
    let after = (
        m.value(reload_ts),
        m.value("pharox_exporter_config_last_reload_successful"),
    );
    eprintln!(
        "abuse: 100 POST /-/reload without --web.enable-lifecycle: codes {codes:?}, \
         interval {} s after (1 before), reload timestamp changed: {}",
        m.value("pharox_exporter_sweep_interval_seconds"),
        after.0 != before.0
    );
    assert_eq!(codes.get(&403), Some(&100), "{codes:?}: {body}");
    assert!(body.contains("--web.enable-lifecycle"), "{body}");
    assert_eq!(after, before, "no reload happened");
    assert_eq!(m.value("pharox_exporter_sweep_interval_seconds"), 1.0);
    assert_eq!(
        m.sum(
            "pharox_exporter_http_rejected_total",
            &[("reason", "lifecycle_disabled")]
        ),
        100.0
    );
    // SIGHUP always reloads.
    ex.signal(libc::SIGHUP);
    ex.wait_for("the SIGHUP reload", |m| {
        m.value("pharox_exporter_sweep_interval_seconds") == 7.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_probes_of_one_proxy_reach_it_once() {
    let dir = ServerDir::new("exporter-abuse-probe");
    // A slow target, so that the probes overlap.
    let target = FakeTarget::start(Reply::ok("ok").delay(Duration::from_secs(2)))
        .await
        .expect("target");
    let live = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("fake");
    let inv = dir.write("inventory.txt", format!("socks5://{}\n", live.addr()));
    let mut args = base_args(&inv, target.url("/").as_str());
    let i = args
        .iter()
        .position(|a| a == "--sweep.interval")
        .expect("flag");
    args[i + 1] = s("1h"); // one sweep, then only /probe reaches the proxy
    let ex = Exporter::start(dir.path(), &args).await;
    ex.wait_sweeps(1.0).await;
    let before = live.connections();
    let url = ex.url(&format!("/probe?target=socks5://{}", live.addr()));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (http, url) = (ex.http.clone(), url.clone());
        flood.spawn(async move {
            match http.get(url).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        });
    }
    let mut codes = std::collections::BTreeMap::new();
    while let Some(r) = flood.join_next().await {
        *codes.entry(r.expect("probe task")).or_insert(0) += 1;
    }
    let dialled = live.connections() - before;
    eprintln!(
        "abuse: 50 concurrent /probe of one proxy: codes {codes:?}, {dialled} connections to it"
    );
    assert!(
        dialled <= 2,
        "{dialled} connections to the proxy; {codes:?}"
    );
    assert!(codes.get(&200).is_some_and(|n| *n >= 1), "{codes:?}");
    assert_eq!(
        codes.get(&200).copied().unwrap_or(0) + codes.get(&429).copied().unwrap_or(0),
        50,
        "{codes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_keep_alive_connections_are_closed_by_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let dir = ServerDir::new("exporter-abuse-timeout");
    let target = FakeTarget::start(Reply::ok("ok")).await.expect("target");
    let live = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("fake");
    let inv = dir.write("inventory.txt", format!("socks5://{}\n", live.addr()));
    let ex = Exporter::start(dir.path(), &base_args(&inv, target.url("/").as_str())).await;
    let addr = ex.base.trim_start_matches("http://").to_string();
    let started = Instant::now();

    // A slowloris: one header byte a second; the server must hang up.
    let slow_addr = addr.clone();
    let slowloris = tokio::spawn(async move {
        let mut c = TcpStream::connect(&slow_addr).await.expect("connect");
        let head =
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for b in head {
            if c.write_all(&[*b]).await.is_err() {
                return Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        None
    });
    // A kept-alive connection that goes quiet after one request.
    let mut c = TcpStream::connect(&addr).await.expect("connect");
    c.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.expect("response");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let idle_closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await;
    let slow_closed = tokio::time::timeout(Duration::from_secs(20), slowloris)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    eprintln!(
        "abuse: idle keep-alive closed after {:?}, slowloris cut off after {:?}",
        idle_closed.as_ref().map(|t| t.duration_since(started)),
        slow_closed.map(|t| t.duration_since(started))
    );
    let idle_after = idle_closed.expect("the idle keep-alive connection was closed");
    assert!(idle_after.duration_since(started) < Duration::from_secs(15));
    let slow_after = slow_closed.expect("the slowloris was cut off");
    assert!(slow_after.duration_since(started) < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_renders_past_max_requests_get_503() {
    let dir = ServerDir::new("exporter-abuse-renders");
    let (target, _fakes, inv) = fleet(&dir).await;
    let mut args = base_args(&inv, target.url("/").as_str());
    let i = args.iter().position(|a| a == "--log.level").expect("flag");
    args[i + 1] = s("info");
    // Per-proxy series make each render walk every proxy; one at a time.
    args.extend([s("--metrics.per-proxy"), s("--web.max-requests"), s("1")]);
    let ex = Exporter::start(dir.path(), &args).await;
    ex.wait_sweeps(1.0).await;
    let mut flood = tokio::task::JoinSet::new();
    for n in 0..100 {
        let path = if n % 2 == 0 {
            "/metrics"
        } else {
            "/api/status"
        };
        let (http, url) = (ex.http.clone(), ex.url(path));
        flood.spawn(async move {
            match http.get(url).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        });
    }
    let mut codes = std::collections::BTreeMap::new();
    while let Some(r) = flood.join_next().await {
        *codes.entry(r.expect("render task")).or_insert(0u32) += 1;
    }
    eprintln!("abuse: 100 concurrent /metrics + /api/status with --web.max-requests 1: {codes:?}");
    let (ok, busy) = (
        codes.get(&200).copied().unwrap_or(0),
        codes.get(&503).copied().unwrap_or(0),
    );
    assert_eq!(ok + busy, 100, "{codes:?}");
    assert!(ok >= 1 && busy >= 1, "{codes:?}");
    let m = ex.scrape().await;
    assert_eq!(
        m.sum(
            "pharox_exporter_http_rejected_total",
            &[("reason", "max_requests")]
        ),
        f64::from(busy)
    );
}
