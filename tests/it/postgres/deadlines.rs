//! Every database exchange has a deadline (docs/postgres.md "Deadlines"):
//! a row lock held by another client ends at `lock_timeout` with a warn line
//! and a count, and the sweeps go on; a server that accepts and never
//! answers ends `validate` at `operation_timeout` with a clear error.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::exporter::{s, Exporter};
use crate::support::pg::*;
use crate::support::process::ServerDir;
use pharox_testkit::{FakeProxy, FakeTarget, ProxyBehavior, Reply};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_lock_held_by_another_client_ends_at_lock_timeout_and_sweeps_go_on() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let target = FakeTarget::start(Reply::ok("ok")).await.unwrap();
    let proxy = FakeProxy::http(ProxyBehavior::healthy()).await.unwrap();
    let pool = uuid_for(1, 1);
    let proxies: Vec<_> = (1..=3)
        .map(|n| {
            json!({"id": uuid_for(2, n), "pool_id": pool, "host": "127.0.0.1",
                   "port": proxy.addr().port(), "protocol": "http", "status": "inactive"})
        })
        .collect();
    // An expired lease: the pre-sweep cleanup must update its proxy's row.
    tokio::task::block_in_place(|| {
        pharox(
            &["seed", &pg.sqlalchemy_url("db")],
            &json!({"pools": [{"id": pool, "name": "eu"}], "proxies": proxies,
                    "leases": [{"proxy_id": uuid_for(2, 1), "consumer": "c", "expires_in_seconds": -10}]}),
        )
    });

    // Another client holds every proxy and lease row, and keeps holding.
    let (holder, conn) = tokio_postgres::connect(&pg.url("db"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    holder
        .batch_execute("BEGIN; SELECT id FROM proxy FOR UPDATE; SELECT id FROM lease FOR UPDATE")
        .await
        .unwrap();

    let dir = ServerDir::new("pg-lock");
    let config = dir.write(
        "pharox.yaml",
        format!(
            "defaults:\n  target_url: {}\n  timeout: 2s\n\
             inventory:\n  path: '{}'\n\
             sweep:\n  interval: 1s\n  shutdown_grace: 2s\n\
             postgres:\n  lock_timeout: 1s\n  statement_timeout: 3s\n  operation_timeout: 5s\n  retry_max_backoff_seconds: 0.5\n",
            target.url("/"),
            pg.url("db")
        ),
    );
    let started = Instant::now();
    let mut ex = Exporter::start_until(
        dir.path(),
        &[
            s("--config.file"),
            config.display().to_string(),
            s("--log.level"),
            s("info"),
        ],
        "/-/healthy",
    )
    .await;
    // Sweeps complete while the lock is still held: the cleanup gave up at
    // lock_timeout instead of waiting for the other client.
    let m = ex
        .wait_for("a completed sweep and a read timeout", |m| {
            m.value("pharox_exporter_sweeps_total") >= 1.0
                && m.sum(
                    "pharox_exporter_storage_timeouts_total",
                    &[("operation", "read")],
                ) >= 1.0
        })
        .await;
    let first_sweep = started.elapsed();
    assert_eq!(
        m.sum("pharox_proxies", &[("status", "active")]),
        3.0,
        "{}",
        m.text
    );
    // The writer's batch wants the same rows: it ends at lock_timeout too, and retries.
    ex.wait_for("a write timeout", |m| {
        m.sum(
            "pharox_exporter_storage_timeouts_total",
            &[("operation", "write")],
        ) >= 1.0
    })
    .await;
    let log = ex.log_text();
    let host = format!("127.0.0.1:{}", pg.port);
    assert!(
        log.lines().any(|l| l.contains("postgres deadline exceeded")
            && l.contains("expired-lease cleanup")
            && l.contains(&host)
            && l.contains("55P03")),
        "no warn line naming the cleanup, the host and the lock timeout:\n{log}"
    );
    assert!(!log.contains(PASSWORD), "the password leaked:\n{log}");
    eprintln!("row lock held: first sweep completed {first_sweep:?} after start");

    // The lock goes away: the results reach the database.
    holder.batch_execute("ROLLBACK").await.unwrap();
    ex.wait_for("results written", |m| {
        m.value("pharox_exporter_storage_results_written_total") >= 3.0
    })
    .await;
    ex.signal(libc::SIGTERM);
    assert!(ex.wait_exit(Duration::from_secs(15)).await.is_some());
}

/// Accepts connections and never answers: a frozen server.
fn frozen_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    port
}

#[test]
fn validate_against_a_server_that_never_answers_ends_at_operation_timeout() {
    let port = frozen_server();
    let dir = ServerDir::new("pg-frozen");
    let url = format!("postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/db");
    let config = dir.write(
        "pharox.yaml",
        format!("inventory:\n  path: '{url}'\npostgres:\n  operation_timeout: 2s\n"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_pharox-exporter"))
        .args(["validate", "--config.file"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Bounded: a hang is killed at 30 s and fails the test.
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).unwrap();
    }
    let status = status.unwrap_or_else(|| panic!("validate still running after 30 s:\n{stderr}"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?}:\n{stderr}"
    );
    assert!(
        stderr.contains("postgres timeout")
            && stderr.contains(&format!("127.0.0.1:{port}"))
            && stderr.contains("operation_timeout"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "the password leaked:\n{stderr}");
    eprintln!("frozen server: validate exited 1 after {elapsed:?}");
}
