//! End to end: the exporter with pharox's database as inventory, real checks
//! through in-process fake proxies, results read back through pharox.

use std::time::Duration;

use crate::support::pg::*;
use pharox_exporter::App;
use pharox_exporter::Overrides;
use pharox_exporter::Shutdown;
use pharox_testkit::{refused_port, FakeProxy, FakeTarget, Fault, ProxyBehavior, Reply};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_sweeps_pharox_proxies_and_pharox_reads_the_results() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let target = FakeTarget::start(Reply::ok("ok")).await.unwrap();
    let authed = FakeProxy::http(ProxyBehavior::healthy().with_auth("alice", "s3cret"))
        .await
        .unwrap();
    let socks = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let denied = FakeProxy::http(ProxyBehavior::fault(Fault::DenyDestination))
        .await
        .unwrap();
    let closed = refused_port();
    let closed_port = closed.port();

    let eu = uuid_for(1, 1);
    let us = uuid_for(1, 2);
    let p = |n: u32, pool: &str, protocol: &str, port: u16| {
        json!({"id": uuid_for(2, n), "pool_id": pool, "host": "127.0.0.1", "port": port,
               "protocol": protocol, "status": "inactive"})
    };
    let mut proxies = vec![
        p(1, &eu, "http", authed.addr().port()),
        p(2, &eu, "socks5", socks.addr().port()),
        p(3, &eu, "http", denied.addr().port()),
        p(4, &eu, "http", closed_port),
        p(5, &us, "http", authed.addr().port()),
    ];
    proxies[0]["credentials"] = json!({"user": "alice", "password": "s3cret"});
    proxies[3]["credentials"] = json!({"user": "alice", "password": "s3cret"});
    pharox(
        &["seed", &pg.sqlalchemy_url("db")],
        &json!({"pools": [{"id": eu, "name": "eu"}, {"id": us, "name": "us"}], "proxies": proxies,
                "leases": [{"proxy_id": uuid_for(2, 5), "consumer": "c", "expires_in_seconds": -10}]}),
    );

    // pharox's own checker gets an identical copy, for comparison.
    pg.copy_db("db", "theirs");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pharox.yaml");
    std::fs::write(
        &config,
        format!(
            "defaults:\n  target_url: {}\n  timeout: 2s\n\
             inventory:\n  path: '{}?pools=eu'\n\
             sweep:\n  interval: 1s\n  shutdown_grace: 2s\n\
             web:\n  listen_address: 127.0.0.1:0\n\
             postgres:\n  batch_size: 10\n  retry_max_backoff_seconds: 0.5\n",
            target.url("/ip"),
            pg.url("db")
        ),
    )
    .unwrap();

    let shutdown = Shutdown::new();
    let app = App::build(Some(config), Overrides::default())
        .await
        .expect("exporter starts");
    // Port 0: the exporter binds a port of its own, no race with others.
    let web_port = app.local_addr().expect("bound address").port();
    let run = tokio::spawn(app.run(shutdown.clone()));

    // Wait for two sweeps' worth of history for every eu proxy.
    let ids = json!({"proxy_ids": (1..=5).map(|n| uuid_for(2, n)).collect::<Vec<_>>()});
    let url = pg.sqlalchemy_url("db");
    let start = std::time::Instant::now();
    let read = loop {
        let read = tokio::task::block_in_place(|| pharox(&["read", &url], &ids));
        let done = (1..=4).all(|n| {
            read["proxies"][uuid_for(2, n)]["records"]
                .as_array()
                .is_some_and(|r| r.len() >= 2)
        });
        if done || start.elapsed() > Duration::from_secs(60) {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // The storage metrics of docs/metrics.md, in the classic text format.
    let metrics = reqwest::get(format!("http://127.0.0.1:{web_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ready = reqwest::get(format!("http://127.0.0.1:{web_port}/-/ready"))
        .await
        .unwrap()
        .status();
    shutdown.trigger();
    run.await.unwrap();
    crate::support::restore_default_signals();
    assert_eq!(
        ready.as_u16(),
        200,
        "ready once the database inventory is loaded"
    );
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"))
    };
    assert!(value("pharox_exporter_storage_results_written_total ") >= 8.0);
    assert!(value("pharox_exporter_storage_writes_total{outcome=\"success\"} ") >= 1.0);
    assert_eq!(
        value("pharox_exporter_storage_writes_total{outcome=\"error\"} "),
        0.0
    );
    assert_eq!(
        value("pharox_exporter_storage_dropped_total{kind=\"history\"} "),
        0.0
    );
    assert_eq!(
        value("pharox_exporter_storage_dropped_total{kind=\"status\"} "),
        0.0
    );
    // The expired lease (pool us: cleanup is global, as pharox's) was released.
    assert_eq!(
        value("pharox_exporter_storage_expired_leases_released_total "),
        1.0
    );
    // Queued, not yet written: whole results, at most the 5 eu proxies of
    // each sweep done or under way (a gauge of anything else would exceed it).
    let pending = value("pharox_exporter_storage_pending_results ");
    let sweeps = value("pharox_exporter_sweeps_total ");
    assert!(
        pending.fract() == 0.0 && pending <= 5.0 * (sweeps + 1.0),
        "pending {pending} after {sweeps} sweeps"
    );
    assert!(!metrics.contains("s3cret") && !metrics.contains(PASSWORD));

    let proxy = |n: u32| -> &Value { &read["proxies"][uuid_for(2, n)] };
    let status = |n: u32| proxy(n)["status"].as_str().unwrap().to_string();
    assert_eq!(status(1), "active", "{}", proxy(1));
    assert_eq!(status(2), "active", "{}", proxy(2));
    assert_eq!(status(3), "inactive", "{}", proxy(3));
    assert_eq!(status(4), "inactive", "{}", proxy(4));
    assert_eq!(status(5), "inactive", "pool us is not swept");
    assert_eq!(proxy(5)["records"], json!([]));
    assert_eq!(proxy(5)["current_leases"], 0);
    assert_eq!(read["leases"][0]["status"], "released");
    for n in 1..=4 {
        let last = &proxy(n)["last"];
        assert_eq!(last["status"], proxy(n)["status"]);
        let recs = proxy(n)["records"].as_array().unwrap();
        assert!(recs.len() >= 2);
        // The first record moved the proxy from its seeded status.
        assert_eq!(recs.last().unwrap()["status_before"], "inactive");
        for r in recs {
            assert_eq!(r["reachable"], json!(n <= 2));
            if let Some(e) = r["error"].as_str() {
                assert!(!e.contains("s3cret"), "{e}");
            }
        }
    }
    // pharox's own HealthChecker + orchestrator, on the same proxies (HTTP
    // ones: pharox needs the optional socksio package for SOCKS), agrees.
    let http_ids: Vec<String> = [1, 3, 4].iter().map(|n| uuid_for(2, *n)).collect();
    let theirs = tokio::task::block_in_place(|| {
        pharox(
            &["check", &pg.sqlalchemy_url("theirs")],
            &json!({"target_url": target.url("/ip").to_string(), "proxy_ids": http_ids}),
        )
    });
    let theirs_read = tokio::task::block_in_place(|| {
        pharox(
            &["read", &pg.sqlalchemy_url("theirs")],
            &json!({"proxy_ids": http_ids}),
        )
    });
    for id in &http_ids {
        assert_eq!(
            theirs[id]["status"], read["proxies"][id]["status"],
            "{id}: {theirs}"
        );
        let t = &theirs_read["proxies"][id];
        assert_eq!(t["status"], read["proxies"][id]["status"]);
        assert_eq!(
            t["records"][0]["reachable"],
            read["proxies"][id]["records"][0]["reachable"]
        );
        assert_eq!(
            t["last"]["protocol"],
            read["proxies"][id]["last"]["protocol"]
        );
    }

    // Failed checks carry a reason-bearing error.
    assert!(proxy(4)["records"][0]["error"].as_str().is_some());
    assert!(authed.connections() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_pause_while_lease_acquisitions_burst() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let target = FakeTarget::start(Reply::ok("ok")).await.unwrap();
    let fake = FakeProxy::http(ProxyBehavior::healthy()).await.unwrap();
    let pool = uuid_for(1, 1);
    let proxies: Vec<Value> = (1..=3)
        .map(|n| {
            json!({"id": uuid_for(2, n), "pool_id": pool, "host": "127.0.0.1",
                   "port": fake.addr().port(), "protocol": "http", "status": "active"})
        })
        .collect();
    let url = pg.sqlalchemy_url("db");
    pharox(
        &["seed", &url],
        &json!({"pools": [{"id": pool, "name": "eu"}], "proxies": proxies}),
    );
    let got = pharox(
        &["acquire", &url],
        &json!({"pool": "eu", "consumer": "crawler", "n": 20, "duration_seconds": 600}),
    );
    assert_eq!(got["acquired"], 20);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pharox.yaml");
    std::fs::write(
        &config,
        format!(
            "defaults:\n  target_url: {}\n\
             inventory:\n  path: '{}'\n\
             sweep:\n  interval: 500ms\n\
             web:\n  listen_address: 127.0.0.1:0\n\
             postgres:\n  lease_burst: {{window_seconds: 60, max_acquisitions_per_second: 0.1}}\n",
            target.url("/ip"),
            pg.url("db")
        ),
    )
    .unwrap();
    let shutdown = Shutdown::new();
    let app = App::build(Some(config), Overrides::default())
        .await
        .expect("exporter starts");
    // Port 0: the exporter binds a port of its own, no race with others.
    let web_port = app.local_addr().expect("bound address").port();
    let run = tokio::spawn(app.run(shutdown.clone()));
    // 20 acquisitions in the last 60 s = 0.33/s > 0.1/s: every sweep pauses.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = reqwest::get(format!("http://127.0.0.1:{web_port}/-/ready"))
        .await
        .unwrap()
        .status();
    shutdown.trigger();
    run.await.unwrap();
    crate::support::restore_default_signals();
    assert_eq!(ready.as_u16(), 200);
    assert_eq!(
        pg.psql("db", "SELECT count(*) FROM proxy_health_record"),
        "0"
    );
    assert_eq!(fake.connections(), 0, "no check went out while paused");
}
