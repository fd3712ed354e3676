//! Lease coordination against pharox: expired-lease cleanup identical to
//! pharox's, acquisition-burst detection, skipping exclusively leased
//! proxies, and events (log + webhook) when a leased proxy's health changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::pg::*;
use chrono::Utc;
use pharox_exporter::DbStats;
use pharox_exporter::LeaseBurst;
use pharox_exporter::ResultWriter;
use pharox_exporter::{PharoxDbSource, ReadMode, Shard, Source, SourceSpec};
use pharox_exporter::{ProxyProtocol, ProxyStatus};
use serde_json::{json, Value};
use tokio::time::Instant;

/// Pool `eu`; proxies 1..=8 (see comments), all `active`.
fn seed() -> Value {
    let eu = uuid_for(1, 1);
    let p = |n: u32, max: Option<u32>| {
        json!({"id": uuid_for(2, n), "pool_id": eu, "host": "127.0.0.1", "port": 4000 + n,
               "protocol": "http", "status": "active", "max_concurrency": max})
    };
    let lease = |n: u32, expires_in: Option<i64>| match expires_in {
        Some(s) => {
            json!({"proxy_id": uuid_for(2, n), "consumer": "c1", "duration_seconds": 600, "expires_in_seconds": s})
        }
        None => json!({"proxy_id": uuid_for(2, n), "consumer": "c1", "duration_seconds": 600}),
    };
    json!({
        "pools": [{"id": eu, "name": "eu"}],
        "proxies": [p(1, Some(3)), p(2, Some(3)), p(3, Some(3)), p(4, Some(3)),
                    p(5, Some(1)), p(6, None), p(7, Some(1)), p(8, None)],
        "leases": [
            lease(1, Some(-60)), lease(1, Some(-1)),   // 1: two expired
            lease(2, Some(-60)), lease(2, None),       // 2: one expired, one active
            lease(3, None),                            // 3: active, capacity left
            lease(4, Some(-5)),                        // 4: expired, counter already 0
            lease(5, None),                            // 5: active and at capacity: exclusive
            lease(6, None),                            // 6: active, unlimited concurrency
            lease(7, Some(-5)),                        // 7: at capacity but expired
        ],
    })
}

fn ids(range: std::ops::RangeInclusive<u32>) -> Value {
    json!({"proxy_ids": range.map(|n| uuid_for(2, n)).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_cleanup_matches_pharox() {
    let pg = PgServer::start();
    pharox_db(&pg, "ours");
    pharox(&["seed", &pg.sqlalchemy_url("ours")], &seed());
    let p4 = uuid_for(2, 4);
    pg.psql(
        "ours",
        &format!("UPDATE proxy SET current_leases = 0 WHERE id = '{p4}'"),
    );
    pg.copy_db("ours", "theirs");

    let stats = Arc::new(DbStats::default());
    let source = PharoxDbSource::new(config(&pg.url("ours")))
        .unwrap()
        .with_stats(stats.clone());
    assert_eq!(source.cleanup_expired_leases().await.unwrap(), 5);
    assert_eq!(
        source.cleanup_expired_leases().await.unwrap(),
        0,
        "idempotent"
    );
    assert_eq!(stats.snapshot().expired_leases_released, 5);

    let theirs = pharox(&["cleanup", &pg.sqlalchemy_url("theirs")], &json!({}));
    assert_eq!(theirs["released"], 5);

    let ours = pharox(&["read", &pg.sqlalchemy_url("ours")], &ids(1..=8));
    let theirs = pharox(&["read", &pg.sqlalchemy_url("theirs")], &ids(1..=8));
    for n in 1..=8 {
        let id = uuid_for(2, n);
        assert_eq!(
            ours["proxies"][&id]["current_leases"], theirs["proxies"][&id]["current_leases"],
            "proxy {n}"
        );
    }
    let leases = |v: &Value| -> Vec<(String, String, bool)> {
        let mut l: Vec<_> = v["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["id"].as_str().unwrap().to_string(),
                    l["status"].as_str().unwrap().to_string(),
                    l["released_at"].is_null(),
                )
            })
            .collect();
        l.sort();
        l
    };
    assert_eq!(leases(&ours), leases(&theirs));
    let current: Vec<i64> = (1..=8)
        .map(|n| {
            ours["proxies"][uuid_for(2, n)]["current_leases"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(current, vec![0, 1, 1, 0, 1, 1, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusively_leased_proxies_are_found_and_skipped() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    pharox(&["seed", &pg.sqlalchemy_url("db")], &seed());
    let source = PharoxDbSource::new(config(&pg.url("db"))).unwrap();
    let leased = source.leased_proxy_ids().await.unwrap();
    assert_eq!(leased.into_iter().collect::<Vec<_>>(), vec![uuid_for(2, 5)]);
    assert_eq!(source.load().await.unwrap().len(), 8, "skip_leased off");

    let mut cfg = config(&pg.url("db"));
    cfg.skip_leased = true;
    let loaded = PharoxDbSource::new(cfg).unwrap().load().await.unwrap();
    let got: Vec<String> = loaded.into_iter().map(|p| p.id.into()).collect();
    let want: Vec<String> = [1, 2, 3, 4, 6, 7, 8]
        .iter()
        .map(|n| uuid_for(2, *n))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquisition_bursts_are_detected() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let pool = uuid_for(1, 9);
    let proxies: Vec<Value> = (1..=5)
        .map(|n| {
            json!({"id": uuid_for(3, n), "pool_id": pool, "host": "127.0.0.1", "port": 5000 + n,
                   "protocol": "socks5", "status": "active"})
        })
        .collect();
    let seed = json!({"pools": [{"id": pool, "name": "burst"}], "proxies": proxies});
    pharox(&["seed", &pg.sqlalchemy_url("db")], &seed);

    let mut cfg = config(&pg.url("db"));
    cfg.lease_burst = Some(LeaseBurst {
        window_seconds: 60,
        max_acquisitions_per_second: 0.2,
    });
    let source = PharoxDbSource::new(cfg.clone()).unwrap();
    let calm = source.burst_state().await.unwrap().unwrap();
    assert!(!calm.bursting && calm.rate == 0.0, "{calm:?}");

    // Consumers acquire 30 leases through pharox's ProxyManager.
    let got = pharox(
        &["acquire", &pg.sqlalchemy_url("db")],
        &json!({"pool": "burst", "consumer": "crawler", "n": 30, "duration_seconds": 600}),
    );
    assert_eq!(got["acquired"], 30);
    let burst = source.burst_state().await.unwrap().unwrap();
    assert!(burst.bursting, "{burst:?}");
    assert!(
        (burst.rate - 0.5).abs() < 1e-9,
        "30 leases / 60 s: {burst:?}"
    );

    cfg.lease_burst = Some(LeaseBurst {
        window_seconds: 60,
        max_acquisitions_per_second: 5.0,
    });
    let relaxed = PharoxDbSource::new(cfg.clone()).unwrap();
    assert!(!relaxed.burst_state().await.unwrap().unwrap().bursting);
    // What the exporter reads before each sweep: paused, or the proxies.
    let read = |c: pharox_exporter::DbConfig| async move {
        Source::open(SourceSpec::PharoxDb(Box::new(c)))
            .unwrap()
            .read(Shard::default(), ReadMode::Sweep)
            .await
            .unwrap()
    };
    let mut bursting = cfg.clone();
    bursting.lease_burst = Some(LeaseBurst {
        window_seconds: 60,
        max_acquisitions_per_second: 0.2,
    });
    let paused = read(bursting).await;
    assert!(
        paused.paused.is_some_and(|b| b.bursting),
        "{:?}",
        paused.paused
    );
    assert!(paused.proxies.is_empty(), "a paused sweep loads no proxies");
    let swept = read(cfg.clone()).await;
    assert!(swept.paused.is_none());
    assert_eq!(swept.proxies.len(), 5);
    cfg.pools = vec!["elsewhere".into()];
    let other = PharoxDbSource::new(cfg).unwrap();
    assert_eq!(
        other
            .acquisition_rate(Duration::from_secs(60))
            .await
            .unwrap(),
        0.0
    );
    let none = PharoxDbSource::new(config(&pg.url("db"))).unwrap();
    assert!(none.burst_state().await.unwrap().is_none());
}

/// An HTTP receiver on loopback that records every JSON body posted to it.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let g = g.clone();
                        async move {
                            let body = http_body_util::BodyExt::collect(req.into_body())
                                .await?
                                .to_bytes();
                            g.lock()
                                .unwrap()
                                .push(serde_json::from_slice::<Value>(&body).unwrap());
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}/events"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_proxy_health_changes_raise_events() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    pharox(&["seed", &pg.sqlalchemy_url("db")], &seed());
    let (url, got) = webhook_receiver().await;
    let mut cfg = config(&pg.url("db"));
    cfg.leased_event_webhook = Some(url);
    let sink = ResultWriter::spawn(cfg).unwrap();
    let now = Utc::now();
    let submit = |n: u32, s: ProxyStatus| {
        let id = uuid_for(2, n);
        let err = (!s.is_up()).then_some("timeout");
        sink.submit(
            &proxy(&id, ProxyProtocol::Http),
            &result(&id, s, 5000, now, err),
        );
    };
    submit(5, ProxyStatus::Inactive); // leased, active -> inactive: event
    submit(6, ProxyStatus::Active); // leased, unchanged: no event
    submit(8, ProxyStatus::Inactive); // changed, not leased: no event
    let deadline = Instant::now() + Duration::from_secs(30);
    assert_eq!(sink.flush(deadline).await, 0);
    // The same result again (a retry): already stored, so no second event.
    submit(5, ProxyStatus::Inactive);
    assert_eq!(sink.flush(deadline).await, 0);

    // A barrier instead of a wait: a later change of another leased proxy
    // (3, active -> inactive). Events go out one by one in the order they
    // arise, so once this marker is in, a duplicate of 5 would be in too.
    submit(3, ProxyStatus::Inactive);
    assert_eq!(sink.flush(deadline).await, 0);
    let start = Instant::now();
    let marker_in = |events: &[Value]| events.iter().any(|e| e["proxy_id"] == uuid_for(2, 3));
    while !marker_in(&got.lock().unwrap()) && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = got.lock().unwrap().clone();
    let order: Vec<&Value> = events.iter().map(|e| &e["proxy_id"]).collect();
    assert_eq!(
        order,
        [&json!(uuid_for(2, 5)), &json!(uuid_for(2, 3))],
        "one event for 5, none for its retry, then the marker: {events:?}"
    );
    let ev = &events[0];
    assert_eq!(ev["event"], "leased_proxy_health_changed");
    assert_eq!(ev["proxy_id"], uuid_for(2, 5));
    assert_eq!(ev["pool"], "eu");
    assert_eq!(
        (&ev["status_before"], &ev["status_after"]),
        (&json!("active"), &json!("inactive"))
    );
    assert_eq!(ev["current_leases"], 1);
    assert_eq!(ev["active_lease"], true);
    assert_eq!(ev["reason"], "timeout");
    let s = sink.stats();
    assert_eq!((s.leased_events, s.webhook_errors), (2, 0), "{s:?}");
    sink.close(deadline).await;

    // A webhook that is down costs a counter, never a write.
    let dead = pharox_testkit::refused_port();
    let dead_url = format!("http://127.0.0.1:{}/", dead.port());
    let mut cfg = config(&pg.url("db"));
    cfg.leased_event_webhook = Some(dead_url);
    let sink = ResultWriter::spawn(cfg).unwrap();
    let id = uuid_for(2, 5);
    let later = now + chrono::Duration::seconds(10);
    sink.submit(
        &proxy(&id, ProxyProtocol::Http),
        &result(&id, ProxyStatus::Active, 50, later, None),
    );
    assert_eq!(sink.flush(deadline).await, 0);
    let start = Instant::now();
    while sink.stats().webhook_errors == 0 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = sink.stats();
    assert_eq!(
        (s.leased_events, s.webhook_errors, s.results_written),
        (1, 1, 1),
        "{s:?}"
    );
    assert_eq!(
        pg.psql("db", &format!("SELECT status FROM proxy WHERE id = '{id}'")),
        "active"
    );
    sink.close(deadline).await;
}
