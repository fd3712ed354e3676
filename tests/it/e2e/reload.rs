//! Reload by `POST /-/reload` and SIGHUP; a bad file keeps the old config.

use std::time::Duration;

use pharox_testkit::{FakeProxy, ProxyBehavior, ThreadTarget};

use crate::support::exporter::*;
use crate::support::exposition::*;
use crate::support::process::*;

fn reload_config(target: &ThreadTarget, pool_override: Option<&str>, extra: &str) -> String {
    let mut c = format!(
        "defaults:\n  target_url: \"{}\"\n  timeout: 5\n  slow_threshold_ms: 600000\n{extra}\
         inventory:\n  path: inventory.yaml\n\
         sweep:\n  interval: 1s\n  shutdown_grace: 1s\n",
        target.url("/")
    );
    if let Some(path) = pool_override {
        c.push_str(&format!(
            "pools:\n  p1:\n    target_url: \"{}\"\n",
            target.url(path)
        ));
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_http_and_sighup_keeps_the_old_config_on_errors() {
    let target = ThreadTarget::http();
    let live = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("fake");
    let dir = ServerDir::new("exporter-reload");
    dir.write(
        "inventory.yaml",
        inventory_yaml(&[entry(format!("socks5://{}", live.addr()), "p1", "alpha")]),
    );
    let cfg = dir.join("config.yaml");
    write_atomic(&cfg, &reload_config(&target, None, ""));
    let mut ex = Exporter::start(
        dir.path(),
        &[
            s("--config.file"),
            cfg.display().to_string(),
            s("--log.level"),
            s("debug"),
            s("--web.enable-lifecycle"),
        ],
    )
    .await;
    let errors = |m: &Scrape| {
        m.sum(
            "pharox_check_errors_total",
            &[("pool", "p1"), ("reason", "unexpected_status")],
        )
    };
    let active = |m: &Scrape| m.sum("pharox_proxies", &[("pool", "p1"), ("status", "active")]);
    let m = ex.wait_for("p1 active", |m| active(m) == 1.0).await;
    assert_eq!(errors(&m), 0.0);
    let first_reload_ts = m.value("pharox_exporter_config_last_reload_success_timestamp_seconds");
    assert_eq!(m.value("pharox_exporter_sweep_interval_seconds"), 1.0);

    // Only POST (or PUT) reloads.
    assert_eq!(ex.get("/-/reload").await.0, 405);

    // A valid change: pool p1 now checks a URL answering 503, every 1.5 s.
    std::thread::sleep(Duration::from_millis(20)); // a later reload timestamp
    write_atomic(
        &cfg,
        &reload_config(&target, Some("/status/503"), "").replace("interval: 1s", "interval: 1.5s"),
    );
    let (code, body) = ex.post("/-/reload").await;
    assert_eq!(
        code,
        200,
        "reload of a valid file: {body}\n{}",
        ex.log_tail()
    );
    let m = ex.scrape().await;
    assert_eq!(
        m.value("pharox_exporter_config_last_reload_successful"),
        1.0
    );
    assert!(
        m.value("pharox_exporter_config_last_reload_success_timestamp_seconds") > first_reload_ts
    );
    assert_eq!(m.value("pharox_exporter_sweep_interval_seconds"), 1.5);
    let m = ex
        .wait_for("the pool override to take effect", |m| {
            errors(m) >= 1.0 && m.sum("pharox_proxies", &[("status", "inactive")]) == 1.0
        })
        .await;
    let sweeps_before_bad = m.value("pharox_exporter_sweeps_total");
    let errors_before_bad = errors(&m);

    // An invalid file: 500 naming file:line, gauge 0, the running config stays.
    write_atomic(&cfg, &reload_config(&target, Some("/"), "  attempts: 9\n"));
    let (code, body) = ex.post("/-/reload").await;
    assert_eq!(code, 500, "reload of an invalid file: {body}");
    let want = format!("{}:5:", cfg.display());
    assert!(
        body.contains(&want) && body.contains("attempts") && body.contains("between 1 and 5"),
        "the error names {want} and the field: {body}"
    );
    let m = ex
        .wait_for("two more sweeps after the failed reload", |m| {
            m.value("pharox_exporter_sweeps_total") >= sweeps_before_bad + 2.0
        })
        .await;
    assert_eq!(
        m.value("pharox_exporter_config_last_reload_successful"),
        0.0,
        "failed reload gauge\n{}",
        m.text
    );
    assert_eq!(
        m.value("pharox_exporter_sweep_interval_seconds"),
        1.5,
        "old interval kept"
    );
    assert!(
        errors(&m) > errors_before_bad && active(&m) == 0.0,
        "the last valid config (pool override to /status/503) still runs\n{}",
        m.text
    );
    assert!(ex.log_text().contains("configuration reload failed"));
    let errors_before_hup = errors(&m);

    // SIGHUP reloads too: back to the plain config, the proxy recovers.
    write_atomic(&cfg, &reload_config(&target, None, ""));
    ex.signal(libc::SIGHUP);
    let m = ex
        .wait_for("SIGHUP reload", |m| {
            m.value("pharox_exporter_config_last_reload_successful") == 1.0
                && m.value("pharox_exporter_sweep_interval_seconds") == 1.0
        })
        .await;
    let errors_after_hup = errors(&m);
    let m = ex
        .wait_for("p1 active again after SIGHUP", |m| active(m) == 1.0)
        .await;
    let m2 = ex
        .wait_for("one more sweep", |n| {
            n.value("pharox_exporter_sweeps_total") >= m.value("pharox_exporter_sweeps_total") + 1.0
        })
        .await;
    assert!(
        errors_after_hup >= errors_before_hup,
        "a reload keeps the counters: {errors_before_hup} before SIGHUP, {errors_after_hup} after"
    );
    assert_eq!(
        errors(&m2),
        errors(&m),
        "no 503 checks once the reloaded config runs\n{}",
        m2.text
    );
    assert!(ex.child_alive(), "{}", ex.log_tail());
}
