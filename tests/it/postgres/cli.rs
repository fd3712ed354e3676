//! `sweep --once --inventory postgresql://...` from flags alone: sweeps
//! pharox's database (one pool), writes the results back, and pharox reads
//! them through its own API. Also `validate` on the same URL.

use std::process::Command;

use crate::support::pg::*;
use pharox_testkit::{FakeProxy, FakeTarget, ProxyBehavior, Reply};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_once_on_a_pharox_database_writes_results_pharox_reads() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let target = FakeTarget::start(Reply::ok("ok")).await.unwrap();
    let authed = FakeProxy::socks5(ProxyBehavior::healthy().with_auth("alice", "s3cret-pw"))
        .await
        .unwrap();
    let dead = pharox_testkit::refused_port();
    let (eu, us) = (uuid_for(1, 1), uuid_for(1, 2));
    let mut proxies = vec![
        json!({"id": uuid_for(2, 1), "pool_id": eu, "host": "127.0.0.1", "port": authed.addr().port(), "protocol": "socks5", "status": "inactive", "source": "acme"}),
        json!({"id": uuid_for(2, 2), "pool_id": eu, "host": "127.0.0.1", "port": dead.port(), "protocol": "http", "status": "active"}),
        json!({"id": uuid_for(2, 3), "pool_id": us, "host": "127.0.0.1", "port": authed.addr().port(), "protocol": "socks5", "status": "inactive"}),
    ];
    proxies[0]["credentials"] = json!({"user": "alice", "password": "s3cret-pw"});
    tokio::task::block_in_place(|| {
        pharox(
            &["seed", &pg.sqlalchemy_url("db")],
            &json!({"pools": [{"id": eu, "name": "eu"}, {"id": us, "name": "us"}], "proxies": proxies, "leases": []}),
        )
    });

    let inventory = format!("{}?pools=eu", pg.url("db"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pharox-exporter"));
    cmd.args([
        "sweep",
        "--once",
        "--inventory",
        &inventory,
        "--target-url",
        target.url("/").as_str(),
        "--timeout",
        "2",
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for secret in ["s3cret-pw", PASSWORD] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a password leaked:\n{stdout}\n{stderr}"
        );
    }
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "only pool eu is swept: {stdout}");
    let by_id = |n: u32| {
        lines
            .iter()
            .find(|l| l["id"] == uuid_for(2, n))
            .unwrap_or_else(|| panic!("{stdout}"))
    };
    assert_eq!(by_id(1)["status"], "active");
    assert_eq!(by_id(1)["pool"], "eu");
    assert_eq!(by_id(1)["provider"], "acme");
    assert_eq!(by_id(2)["reason"], "connect_refused");
    assert!(stderr.contains("2 results written"), "{stderr}");

    let ids = json!({"proxy_ids": [uuid_for(2, 1), uuid_for(2, 2), uuid_for(2, 3)]});
    let read = tokio::task::block_in_place(|| pharox(&["read", &pg.sqlalchemy_url("db")], &ids));
    let p = |n: u32| &read["proxies"][uuid_for(2, n)];
    assert_eq!(p(1)["status"], "active", "{read}");
    assert_eq!(p(2)["status"], "inactive", "{read}");
    assert_eq!(p(3)["status"], "inactive", "pool us untouched: {read}");
    assert_eq!(p(1)["records"].as_array().map(Vec::len), Some(1), "{read}");
    assert_eq!(p(3)["records"].as_array().map(Vec::len), Some(0), "{read}");

    let out = Command::new(env!("CARGO_BIN_EXE_pharox-exporter"))
        .args(["validate", "--inventory", &inventory])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("postgres inventory: 2 proxies"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_database_check_every_proxy_exactly_once() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let target = FakeTarget::start(Reply::ok("ok")).await.unwrap();
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let pool = uuid_for(1, 1);
    let n = 45u32;
    // Distinct rows (ids) behind one fake proxy: the database decides identity.
    let proxies: Vec<_> = (1..=n)
        .map(|i| json!({"id": uuid_for(2, i), "pool_id": pool, "host": "127.0.0.1", "port": proxy.addr().port(), "protocol": "socks5", "status": "inactive"}))
        .collect();
    tokio::task::block_in_place(|| {
        pharox(
            &["seed", &pg.sqlalchemy_url("db")],
            &json!({"pools": [{"id": pool, "name": "p"}], "proxies": proxies, "leases": []}),
        )
    });
    // The three replicas run at once, as a StatefulSet's pods would.
    let mut runs = Vec::new();
    for index in 0..3 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pharox-exporter"));
        cmd.args([
            "sweep",
            "--once",
            "--inventory",
            &pg.url("db"),
            "--target-url",
            target.url("/").as_str(),
        ])
        .args(["--shard.count", "3", "--shard.index", &index.to_string()]);
        runs.push(tokio::task::spawn_blocking(move || cmd.output().unwrap()));
    }
    let mut swept = 0;
    for r in runs {
        let out = r.await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = String::from_utf8_lossy(&out.stdout).lines().count();
        assert!(
            lines > 0 && lines < n as usize,
            "each replica takes a share, got {lines}"
        );
        swept += lines;
    }
    assert_eq!(swept, n as usize);
    let per_proxy = pg.psql(
        "db",
        "SELECT count(*) FROM proxy_health_record GROUP BY proxy_id",
    );
    let counts: Vec<&str> = per_proxy.lines().collect();
    assert_eq!(
        counts.len(),
        n as usize,
        "every proxy has a record: {per_proxy}"
    );
    assert!(
        counts.iter().all(|c| *c == "1"),
        "exactly one record per proxy: {per_proxy}"
    );
    assert_eq!(
        pg.psql("db", "SELECT count(*) FROM proxy WHERE status = 'active'"),
        n.to_string()
    );
}
