//! SIGTERM mid-sweep: hanging checks cut at the grace, others finish.

use std::time::{Duration, Instant};

use pharox_testkit::{FakeProxy, Fault, ProxyBehavior, ThreadTarget};

use crate::support::exporter::*;
use crate::support::exposition::Scrape;
use crate::support::process::*;

/// An exporter sweeping `n` proxies that never answer (alternating SOCKS5
/// and HTTP), with a 60 s check timeout and `grace` to drain at shutdown;
/// returns once all `n` checks are in flight. The fakes and the target are
/// returned so they outlive the exporter.
async fn exporter_with_hanging_checks(
    name: &str,
    n: usize,
    grace: Duration,
) -> (Exporter, Vec<FakeProxy>, ThreadTarget, ServerDir) {
    let mut hanging = Vec::new();
    for i in 0..n {
        let b = ProxyBehavior::fault(Fault::Hang);
        let p = if i % 2 == 0 {
            FakeProxy::socks5(b).await
        } else {
            FakeProxy::http(b).await
        }
        .expect("hanging fake");
        hanging.push(p);
    }
    let target = ThreadTarget::http();
    let dir = ServerDir::new(name);
    let entries: Vec<Entry> = hanging
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let scheme = if i % 2 == 0 { "socks5" } else { "http" };
            entry(format!("{scheme}://{}", p.addr()), "hang", "alpha")
        })
        .collect();
    let inv = dir.write("inventory.yaml", inventory_yaml(&entries));
    let cfg = dir.write(
        "config.yaml",
        format!(
            "defaults:\n  target_url: \"{}\"\n  timeout: 60\n\
             sweep:\n  interval: 1s\n  shutdown_grace: {}s\n",
            target.url("/"),
            grace.as_secs()
        ),
    );
    let ex = Exporter::start(
        dir.path(),
        &[
            s("--config.file"),
            cfg.display().to_string(),
            s("--inventory"),
            inv.display().to_string(),
        ],
    )
    .await;
    ex.wait_for(&format!("{n} checks in flight"), |m| {
        m.value("pharox_exporter_checks_in_flight") == n as f64
    })
    .await;
    (ex, hanging, target, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_sweep_exits_zero_within_the_grace() {
    let grace = Duration::from_secs(1);
    let (mut ex, hanging, _target, _dir) =
        exporter_with_hanging_checks("exporter-sigterm", 4, grace).await;
    assert!(hanging.iter().all(|p| p.connections() >= 1));

    ex.signal(libc::SIGTERM);
    // The checks would hang for 60 s; the grace cuts them after 1 s. The
    // margin covers a loaded machine, and is still far below the timeout.
    let margin = Duration::from_secs(15);
    let status = ex.wait_exit(grace + margin).await;
    let log = ex.log_text();
    let status = status
        .unwrap_or_else(|| panic!("no exit within {:?} after SIGTERM:\n{log}", grace + margin));
    assert_eq!(status.code(), Some(0), "exit status {status}\n{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(
        log.contains("sweep interrupted by shutdown") && log.contains("abandoned=4"),
        "the log accounts for the abandoned checks:\n{log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_checks_finish_within_the_grace() {
    let target = ThreadTarget::http();
    // Each answers its two handshake steps after 700 ms: a check takes 1.4 s+.
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(
            FakeProxy::socks5(ProxyBehavior {
                delay: Duration::from_millis(700),
                ..ProxyBehavior::healthy()
            })
            .await
            .expect("slow fake"),
        );
    }
    let dir = ServerDir::new("exporter-grace");
    let entries: Vec<Entry> = slow
        .iter()
        .map(|p| entry(format!("socks5://{}", p.addr()), "p1", "alpha"))
        .collect();
    let inv = dir.write("inventory.yaml", inventory_yaml(&entries));
    let cfg = dir.write(
        "config.yaml",
        "sweep:\n  interval: 1s\n  shutdown_grace: 30s\n",
    );
    let mut args = base_args(&inv, &target.url("/"));
    args.extend([s("--config.file"), cfg.display().to_string()]);
    let mut ex = Exporter::start(dir.path(), &args).await;

    // Every sweep outlasts the 1 s interval: counted, and never overlapping.
    let m = ex
        .wait_for("two overrun sweeps", |m| {
            assert!(
                m.value("pharox_exporter_checks_in_flight") <= 2.0,
                "sweeps overlap:\n{}",
                m.text
            );
            m.value("pharox_exporter_sweep_overruns_total") >= 2.0
        })
        .await;
    assert_eq!(
        m.value("pharox_exporter_sweep_overruns_total"),
        m.value("pharox_exporter_sweeps_total"),
        "{}",
        m.text
    );
    assert!(ex.log_text().contains("sweep overran its interval"));

    // Signal right as a new check dials: it has 1.4 s of handshake left, so
    // the signal surely lands mid-sweep, not in the gap between two sweeps.
    let before = slow[0].connections();
    let deadline = Instant::now() + WAIT_TIMEOUT;
    while slow[0].connections() == before {
        assert!(Instant::now() < deadline, "no new check started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ex.signal(libc::SIGTERM);
    let status = ex.wait_exit(Duration::from_secs(45)).await;
    let log = ex.log_text();
    let status = status.unwrap_or_else(|| panic!("no exit after SIGTERM:\n{log}"));
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("sweep interrupted by shutdown")
            && log.contains("completed=2")
            && log.contains("abandoned=0"),
        "checks in flight finish within the grace:\n{log}"
    );
}

/// `/metrics` keeps answering while in-flight checks drain: the server is the
/// last thing to stop, so the final scrapes see the shutdown happen. Each
/// scrape uses a fresh connection (no keep-alive), as a new scrape would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_metrics_answering_through_the_grace() {
    let grace = Duration::from_secs(4);
    let (mut ex, _hanging, _target, _dir) =
        exporter_with_hanging_checks("exporter-sigterm-scrape", 2, grace).await;

    let signalled = Instant::now();
    ex.signal(libc::SIGTERM);
    // Scrape on new connections for the first half of the grace: every one
    // answers, and shows the checks still draining.
    let mut scrapes = 0;
    while signalled.elapsed() < grace / 2 {
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("reqwest client");
        let r = fresh
            .get(ex.url("/metrics"))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "GET /metrics {:?} after SIGTERM, within the {grace:?} grace: {e}\n{}",
                    signalled.elapsed(),
                    ex.log_tail()
                )
            });
        assert_eq!(r.status().as_u16(), 200);
        let m = Scrape::parse(r.text().await.expect("body"));
        assert_eq!(
            m.value("pharox_exporter_checks_in_flight"),
            2.0,
            "{}",
            m.text
        );
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(scrapes >= 3, "only {scrapes} scrapes during the grace");

    let margin = Duration::from_secs(15);
    let status = ex.wait_exit(grace + margin).await;
    let log = ex.log_text();
    let status = status
        .unwrap_or_else(|| panic!("no exit within {:?} after SIGTERM:\n{log}", grace + margin));
    assert_eq!(status.code(), Some(0), "exit status {status}\n{log}");
    assert!(
        log.contains("abandoned=2") && log.contains("stopped"),
        "{log}"
    );
}
