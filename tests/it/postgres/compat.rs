//! Compatibility with pharox itself: pharox creates and seeds the database,
//! we load and write, pharox reads back, and the result must equal what
//! pharox's own HealthCheckOrchestrator writes for the same results.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::pg::*;
use chrono::{SecondsFormat, Utc};
use pharox_exporter::DbConfig;
use pharox_exporter::PharoxDbSource;
use pharox_exporter::ResultWriter;
use pharox_exporter::{CheckResult, Proxy, ProxyStatus};
use serde_json::{json, Value};

fn seed() -> Value {
    let eu = uuid_for(1, 1);
    let us = uuid_for(1, 2);
    let p = |n: u32, pool: &str, protocol: &str, status: &str| {
        json!({"id": uuid_for(2, n), "pool_id": pool, "host": format!("10.0.0.{n}"),
               "port": 3000 + n, "protocol": protocol, "status": status})
    };
    let mut proxies = vec![
        p(1, &eu, "http", "active"),
        p(2, &eu, "https", "inactive"),
        p(3, &eu, "socks4", "slow"),
        p(4, &eu, "socks5", "active"),
        p(5, &eu, "http", "banned"),
        p(6, &us, "http", "active"),
    ];
    proxies[0]["credentials"] = json!({"user": "alice", "password": "pa:ss@w0rd"});
    proxies[3]["credentials"] = json!({"user": "bob", "password": "hunter2"});
    proxies[0]["source"] = json!("acme");
    proxies[0]["country"] = json!("DE");
    proxies[0]["city"] = json!("Berlin");
    proxies[0]["isp"] = json!("ExampleNet");
    proxies[0]["asn"] = json!(64500);
    proxies[1]["host"] = json!("::1");
    json!({
        "pools": [{"id": eu, "name": "eu"}, {"id": us, "name": "us"}],
        "proxies": proxies,
        "leases": [{"proxy_id": uuid_for(2, 4), "consumer": "scraper", "duration_seconds": 600}],
    })
}

fn stamp(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Results in the form pharox's HealthCheckResult takes.
fn as_pharox(proxies: &[Proxy], results: &[CheckResult]) -> Value {
    Value::Array(
        proxies
            .iter()
            .zip(results)
            .map(|(p, r)| {
                json!({"proxy_id": p.id, "status": r.status.as_str(), "latency_ms": r.latency_ms,
                       "protocol": p.protocol.as_str(), "checked_at": stamp(r.checked_at),
                       "error_message": r.error})
            })
            .collect(),
    )
}

fn ts(v: &Value) -> chrono::DateTime<Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pharox_reads_what_we_write_as_its_own_orchestrator_would() {
    let pg = PgServer::start();
    pharox_db(&pg, "ours");
    pharox(&["seed", &pg.sqlalchemy_url("ours")], &seed());
    // pharox's own orchestrator gets an identical copy.
    pg.copy_db("ours", "theirs");

    // --- load: pools from the URL, banned skipped, fields mapped.
    let cfg = DbConfig::from_url(&format!("{}?pools=eu", pg.url("ours"))).unwrap();
    let source = PharoxDbSource::connect(cfg).await.unwrap();
    let proxies = source.load().await.unwrap();
    let by_id: BTreeMap<&str, &Proxy> = proxies.iter().map(|p| (p.id.as_str(), p)).collect();
    assert_eq!(
        by_id.keys().copied().collect::<Vec<_>>(),
        (1..=4).map(|n| uuid_for(2, n)).collect::<Vec<_>>(),
        "eu pool, banned left out"
    );
    let p1 = by_id[uuid_for(2, 1).as_str()];
    assert_eq!(p1.protocol.as_str(), "http");
    assert_eq!((p1.host.as_str(), p1.port), ("10.0.0.1", 3001));
    assert_eq!(p1.username.as_deref(), Some("alice"));
    assert_eq!(
        p1.password.as_ref().map(pharox_exporter::Secret::expose),
        Some("pa:ss@w0rd")
    );
    assert_eq!(p1.pool, "eu");
    assert_eq!(p1.provider, "acme");
    assert_eq!(p1.labels["country"], "DE");
    assert_eq!(p1.labels["city"], "Berlin");
    assert_eq!(p1.labels["isp"], "ExampleNet");
    assert_eq!(p1.labels["asn"], "64500");
    let p2 = by_id[uuid_for(2, 2).as_str()];
    assert_eq!((p2.protocol.as_str(), p2.host.as_str()), ("https", "::1"));
    assert_eq!(p2.provider, "unknown");
    assert!(p2.username.is_none() && p2.password.is_none());
    assert_eq!(by_id[uuid_for(2, 3).as_str()].protocol.as_str(), "socks4");
    assert_eq!(by_id[uuid_for(2, 4).as_str()].protocol.as_str(), "socks5");

    // statuses filter: only inactive ones.
    let mut only_inactive = config(&pg.url("ours"));
    only_inactive.statuses = vec![ProxyStatus::Inactive];
    let loaded = PharoxDbSource::new(only_inactive)
        .unwrap()
        .load()
        .await
        .unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, uuid_for(2, 2));

    // --- write two rounds of results through our sink.
    let t0 = Utc::now();
    let statuses1 = [
        ProxyStatus::Inactive,
        ProxyStatus::Active,
        ProxyStatus::Slow,
        ProxyStatus::Active,
    ];
    let round1: Vec<CheckResult> = proxies
        .iter()
        .zip(statuses1)
        .enumerate()
        .map(|(i, (p, s))| {
            let err = (!s.is_up()).then_some("timeout via http://alice:pa:ss@w0rd@10.0.0.1:3001");
            result(
                &p.id,
                s,
                100 + i as u64,
                t0 + chrono::Duration::milliseconds(i as i64),
                err,
            )
        })
        .collect();
    let t1 = t0 + chrono::Duration::seconds(30);
    let statuses2 = [
        ProxyStatus::Active,
        ProxyStatus::Inactive,
        ProxyStatus::Slow,
        ProxyStatus::Slow,
    ];
    let round2: Vec<CheckResult> = proxies
        .iter()
        .zip(statuses2)
        .enumerate()
        .map(|(i, (p, s))| {
            let err = (!s.is_up()).then_some("connect refused");
            result(
                &p.id,
                s,
                2500 + i as u64,
                t1 + chrono::Duration::milliseconds(i as i64),
                err,
            )
        })
        .collect();

    let sink = ResultWriter::spawn(config(&pg.url("ours"))).unwrap();
    for (p, r) in proxies.iter().zip(&round1) {
        sink.submit(p, r);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    assert_eq!(sink.flush(deadline).await, 0);
    for (p, r) in proxies.iter().zip(&round2) {
        sink.submit(p, r);
    }
    // A replay of round 1 (a retry, or a second replica): no new rows, no rollback.
    for (p, r) in proxies.iter().zip(&round1) {
        sink.submit(p, r);
    }
    assert_eq!(sink.flush(deadline).await, 0);
    let report = sink.close(deadline).await;
    assert_eq!(report.unwritten, 0);
    let stats = sink.stats();
    assert_eq!(stats.results_written, 12);
    assert_eq!(
        (stats.dropped_history, stats.dropped_status, stats.pending),
        (0, 0, 0)
    );

    // --- pharox's orchestrator applies the same results to its copy.
    let theirs = pg.sqlalchemy_url("theirs");
    pharox(&["apply", &theirs], &as_pharox(&proxies, &round1));
    pharox(&["apply", &theirs], &as_pharox(&proxies, &round2));

    let ids = json!({"proxy_ids": proxies.iter().map(|p| p.id.clone()).collect::<Vec<_>>()});
    let ours = pharox(&["read", &pg.sqlalchemy_url("ours")], &ids);
    let theirs = pharox(&["read", &theirs], &ids);
    for (i, p) in proxies.iter().enumerate() {
        let o = &ours["proxies"][p.id.as_str()];
        let t = &theirs["proxies"][p.id.as_str()];
        // The proxy row and get_last_health_result: identical except the
        // error message, which we store and pharox's adapter does not.
        assert_eq!(o["status"], t["status"], "proxy {i}");
        assert_eq!(o["status"], json!(statuses2[i].as_str()));
        assert_eq!(ts(&o["checked_at"]), ts(&t["checked_at"]), "proxy {i}");
        assert_eq!(o["current_leases"], t["current_leases"]);
        assert_eq!(o["credentials"], t["credentials"], "credentials untouched");
        for field in ["status", "latency_ms", "protocol"] {
            assert_eq!(o["last"][field], t["last"][field], "proxy {i} last.{field}");
        }
        assert_eq!(ts(&o["last"]["checked_at"]), ts(&t["last"]["checked_at"]));
        assert!(t["last"]["error_message"].is_null());

        // History: the same rows (two per proxy, replay not duplicated),
        // plus status_before and the redacted error.
        let orec = o["records"].as_array().unwrap();
        let trec = t["records"].as_array().unwrap();
        assert_eq!(orec.len(), 2, "proxy {i}: {orec:?}");
        assert_eq!(trec.len(), 2);
        for (a, b) in orec.iter().zip(trec) {
            for field in ["reachable", "latency_ms", "protocol", "status_after"] {
                assert_eq!(a[field], b[field], "proxy {i} record {field}");
            }
            assert_eq!(ts(&a["checked_at"]), ts(&b["checked_at"]));
            assert!(b["status_before"].is_null() && b["error"].is_null());
        }
        // Newest first.
        let seeded = seed()["proxies"][i]["status"].clone();
        assert_eq!(orec[1]["status_before"], seeded, "proxy {i}");
        assert_eq!(orec[0]["status_before"], json!(statuses1[i].as_str()));
        for rec in orec {
            if let Some(err) = rec["error"].as_str() {
                assert!(!err.contains("w0rd") && !err.contains("alice:"), "{err}");
            }
        }
    }
    let errs: Vec<&str> = proxies
        .iter()
        .filter_map(|p| ours["proxies"][p.id.as_str()]["records"][1]["error"].as_str())
        .collect();
    assert_eq!(errs, vec!["timeout via http://***@10.0.0.1:3001"]);
    // Untouched: the other pool and the banned proxy.
    let rest = json!({"proxy_ids": [uuid_for(2, 5), uuid_for(2, 6)]});
    let rest = pharox(&["read", &pg.sqlalchemy_url("ours")], &rest);
    assert_eq!(rest["proxies"][uuid_for(2, 5)]["status"], "banned");
    assert_eq!(rest["proxies"][uuid_for(2, 5)]["records"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_set_while_checking_stands() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    pharox(&["seed", &pg.sqlalchemy_url("db")], &seed());
    let id = uuid_for(2, 1);
    let p = proxy(&id, pharox_exporter::ProxyProtocol::Http);
    // The operator bans the proxy after the sweep loaded it.
    pg.psql(
        "db",
        &format!("UPDATE proxy SET status = 'banned' WHERE id = '{id}'"),
    );
    let sink = ResultWriter::spawn(config(&pg.url("db"))).unwrap();
    sink.submit(&p, &result(&id, ProxyStatus::Active, 10, Utc::now(), None));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    assert_eq!(sink.flush(deadline).await, 0);
    assert_eq!(
        pg.psql("db", &format!("SELECT status FROM proxy WHERE id = '{id}'")),
        "banned"
    );
    assert_eq!(
        pg.psql("db", &format!("SELECT status_before || '>' || status_after FROM proxy_health_record WHERE proxy_id = '{id}'")),
        "banned>active"
    );
    sink.close(deadline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_file_is_read_again_on_reconnect_and_errors_hide_the_password() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    pharox(&["seed", &pg.sqlalchemy_url("db")], &seed());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("url");
    let wrong = pg.url("db").replace(PASSWORD, "wr0ng-pw");
    std::fs::write(&file, format!("{wrong}?pools=eu\n")).unwrap();
    let cfg = DbConfig {
        url_file: Some(file.clone()),
        ..Default::default()
    };
    let source = PharoxDbSource::new(cfg).unwrap();
    assert_eq!(source.config().pools, vec!["eu".to_string()]);
    let err = source.load().await.unwrap_err().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wr0ng-pw"), "{err}");
    // The password is rotated in the file: the same source picks it up.
    std::fs::write(&file, format!("{}?pools=eu\n", pg.url("db"))).unwrap();
    assert_eq!(source.load().await.unwrap().len(), 4);
}
