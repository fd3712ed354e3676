//! The sink under stress: database killed mid-write, queue overflow with and
//! without a spill directory, two replicas on one database, and the batched
//! write rate.

use std::time::{Duration, Instant as StdInstant};

use crate::support::pg::*;
use chrono::Utc;
use pharox_exporter::ResultWriter;
use pharox_exporter::{Proxy, ProxyProtocol, ProxyStatus};
use tokio::time::Instant;

fn status_for(round: u32, i: usize) -> ProxyStatus {
    match (round as usize + i) % 3 {
        0 => ProxyStatus::Active,
        1 => ProxyStatus::Slow,
        _ => ProxyStatus::Inactive,
    }
}

fn submit_round(sink: &ResultWriter, proxies: &[Proxy], round: u32, t0: chrono::DateTime<Utc>) {
    for (i, p) in proxies.iter().enumerate() {
        let at =
            t0 + chrono::Duration::seconds(round as i64) + chrono::Duration::microseconds(i as i64);
        let s = status_for(round, i);
        let err = (!s.is_up()).then_some("timeout");
        sink.submit(p, &result(&p.id, s, 10 + i as u64, at, err));
    }
}

fn proxies(ids: &[String]) -> Vec<Proxy> {
    ids.iter()
        .map(|id| proxy(id, ProxyProtocol::Http))
        .collect()
}

/// Every proxy's row holds the newest round's status and time.
fn assert_final_state(pg: &PgServer, db: &str, n: usize, round: u32, t0: chrono::DateTime<Utc>) {
    // checked_at in microseconds since the epoch (NULL prints as an empty field).
    let rows = pg.psql(
        db,
        "SELECT id, status, (extract(epoch FROM checked_at) * 1000000)::bigint FROM proxy ORDER BY id",
    );
    assert_eq!(rows.lines().count(), n);
    for (i, line) in rows.lines().enumerate() {
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields[1], status_for(round, i).as_str(), "proxy {i}");
        // The time of proxy i's result in the last round, as submit_round made it.
        let want =
            t0 + chrono::Duration::seconds(round as i64) + chrono::Duration::microseconds(i as i64);
        assert_eq!(
            fields[2],
            want.timestamp_micros().to_string(),
            "proxy {i} has the last round's checked_at"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_killed_mid_write_loses_and_duplicates_nothing() {
    let mut pg = PgServer::start();
    pharox_db(&pg, "db");
    let ids = seed_sql(&pg, "db", 500);
    let proxies = proxies(&ids);
    let mut cfg = config(&pg.url("db"));
    cfg.batch_size = 50;
    let sink = ResultWriter::spawn(cfg).unwrap();
    let t0 = Utc::now();

    for round in 0..6 {
        submit_round(&sink, &proxies, round, t0);
    }
    // Kill while the writer is (almost certainly) busy with the backlog of
    // 3000 results; rounds 6..15 then arrive while the server is down, so
    // the outage is exercised whatever the timing.
    tokio::task::block_in_place(|| pg.kill_now());
    for round in 6..15 {
        submit_round(&sink, &proxies, round, t0);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| pg.restart());
    for round in 15..20 {
        submit_round(&sink, &proxies, round, t0);
    }
    let left = sink.flush(Instant::now() + Duration::from_secs(120)).await;
    let stats = sink.stats();
    assert_eq!(left, 0, "{stats:?}");
    assert!(
        stats.writes_error > 0,
        "the outage must have been noticed: {stats:?}"
    );
    assert_eq!(stats.results_written, 10_000, "{stats:?}");
    assert_eq!(
        (
            stats.dropped_history,
            stats.dropped_status,
            stats.unknown_proxy
        ),
        (0, 0, 0)
    );

    let counts = pg.psql(
        "db",
        "SELECT count(*), count(DISTINCT id), count(DISTINCT (proxy_id, checked_at)) FROM proxy_health_record",
    );
    assert_eq!(counts, "10000|10000|10000");
    let per_proxy = pg.psql(
        "db",
        "SELECT min(c), max(c) FROM (SELECT count(*) c FROM proxy_health_record GROUP BY proxy_id) x",
    );
    assert_eq!(per_proxy, "20|20");
    assert_final_state(&pg, "db", 500, 19, t0);
    sink.close(Instant::now() + Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_spills_to_disk_and_survives_a_restart_of_the_exporter() {
    let mut pg = PgServer::start();
    pharox_db(&pg, "db");
    let ids = seed_sql(&pg, "db", 100);
    let proxies = proxies(&ids);
    let spill = tempfile::tempdir().unwrap();
    tokio::task::block_in_place(|| pg.kill_now());

    let mut cfg = config(&pg.url("db"));
    cfg.queue_capacity = 100;
    cfg.batch_size = 64;
    cfg.spill_dir = Some(spill.path().to_path_buf());
    let t0 = Utc::now();
    {
        let sink = ResultWriter::spawn(cfg.clone()).unwrap();
        // A second sink on the same directory is refused.
        assert!(ResultWriter::spawn(cfg.clone()).is_err());
        for round in 0..10 {
            submit_round(&sink, &proxies, round, t0);
        }
        let s = sink.stats();
        assert_eq!(
            (s.pending, s.dropped_history, s.dropped_status),
            (1000, 0, 0),
            "{s:?}"
        );
        // Shutdown with the database still down: everything goes to disk.
        let report = sink
            .close(Instant::now() + Duration::from_millis(500))
            .await;
        assert_eq!(report.unwritten, 1000);
        assert_eq!(report.spilled, 1000);
    }
    let sink = ResultWriter::spawn(cfg).unwrap();
    assert_eq!(sink.stats().pending, 1000, "spilled results picked up");
    tokio::task::block_in_place(|| pg.restart());
    assert_eq!(
        sink.flush(Instant::now() + Duration::from_secs(60)).await,
        0
    );
    assert_eq!(sink.stats().results_written, 1000);
    assert_eq!(sink.stats().unknown_proxy, 0);
    let counts = pg.psql(
        "db",
        "SELECT count(*), count(DISTINCT (proxy_id, checked_at)) FROM proxy_health_record",
    );
    assert_eq!(counts, "1000|1000");
    assert_final_state(&pg, "db", 100, 9, t0);
    let left: Vec<_> = std::fs::read_dir(spill.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("spill-"))
        .collect();
    assert!(
        left.is_empty(),
        "spill files removed once written: {left:?}"
    );
    sink.close(Instant::now() + Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_without_spill_keeps_newest_status_and_counts_dropped_history() {
    let mut pg = PgServer::start();
    pharox_db(&pg, "db");
    let ids = seed_sql(&pg, "db", 20);
    let proxies = proxies(&ids);
    tokio::task::block_in_place(|| pg.kill_now());
    let mut cfg = config(&pg.url("db"));
    cfg.queue_capacity = 10;
    let sink = ResultWriter::spawn(cfg).unwrap();
    let t0 = Utc::now();
    // One older result first, and wait until the writer holds it (retrying
    // against the dead server): the queue's 10 slots are then all free, and
    // the counts below do not depend on when the writer wakes.
    let p0 = &proxies[0];
    let early = t0 - chrono::Duration::seconds(1);
    sink.submit(p0, &result(&p0.id, ProxyStatus::Inactive, 1, early, None));
    let start = Instant::now();
    while sink.stats().writes_error == 0 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for round in 0..3 {
        submit_round(&sink, &proxies, round, t0);
    }
    let s = sink.stats();
    // 10 queued with history; 50 overflowed: history counted as dropped;
    // overflow keeps the newest per proxy (20 proxies), the 30 older
    // status updates are superseded.
    assert_eq!(s.dropped_history, 50, "{s:?}");
    assert_eq!(s.dropped_status, 30, "{s:?}");
    assert_eq!(s.pending, 31, "{s:?}");
    tokio::task::block_in_place(|| pg.restart());
    assert_eq!(
        sink.flush(Instant::now() + Duration::from_secs(60)).await,
        0
    );
    assert_eq!(sink.stats().unknown_proxy, 0);
    assert_eq!(
        pg.psql("db", "SELECT count(*) FROM proxy_health_record"),
        "11"
    );
    assert_final_state(&pg, "db", 20, 2, t0);
    sink.close(Instant::now() + Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_writing_the_same_results_do_not_duplicate_or_roll_back() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let ids = seed_sql(&pg, "db", 300);
    let proxies = proxies(&ids);
    let mut cfg = config(&pg.url("db"));
    cfg.batch_size = 40;
    let a = ResultWriter::spawn(cfg.clone()).unwrap();
    let b = ResultWriter::spawn(cfg).unwrap();
    let t0 = Utc::now();
    // Both replicas checked every proxy (e.g. during a re-shard), in
    // opposite orders, plus rounds only one of them has.
    for round in 0..4 {
        submit_round(&a, &proxies, round, t0);
        let reversed: Vec<Proxy> = proxies.iter().rev().cloned().collect();
        for (j, p) in reversed.iter().enumerate() {
            let i = proxies.len() - 1 - j;
            let at = t0
                + chrono::Duration::seconds(round as i64)
                + chrono::Duration::microseconds(i as i64);
            let s = status_for(round, i);
            b.submit(p, &result(&p.id, s, 10 + i as u64, at, None));
        }
    }
    submit_round(&b, &proxies, 5, t0);
    submit_round(&a, &proxies, 4, t0);
    let deadline = Instant::now() + Duration::from_secs(60);
    assert_eq!(a.flush(deadline).await, 0);
    assert_eq!(b.flush(deadline).await, 0);
    assert_eq!(
        pg.psql(
            "db",
            "SELECT count(*), count(DISTINCT id) FROM proxy_health_record"
        ),
        "1800|1800"
    );
    // Round 5 is newest even if round 4 was written after it.
    assert_final_state(&pg, "db", 300, 5, t0);
    a.close(deadline).await;
    b.close(deadline).await;
}

/// Measures the batched write rate (printed, not asserted): 100k results
/// for 10k proxies, submitted as fast as possible, until all are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_rate_100k_results() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let n_proxies = 10_000u32;
    let rounds = 10u32;
    let ids = seed_sql(&pg, "db", n_proxies);
    let proxies = proxies(&ids);
    let sink = ResultWriter::spawn(config(&pg.url("db"))).unwrap();
    let t0 = Utc::now();
    let start = StdInstant::now();
    for round in 0..rounds {
        submit_round(&sink, &proxies, round, t0);
    }
    let submitted = start.elapsed();
    let left = sink.flush(Instant::now() + Duration::from_secs(300)).await;
    let elapsed = start.elapsed();
    let s = sink.stats();
    assert_eq!(left, 0, "{s:?}");
    let total = (n_proxies * rounds) as f64;
    println!(
        "postgres sink write rate: {} results in {:.2}s = {:.0} results/s ({} transactions of <= 1000; submit took {:.0} ms, {:.2} µs/result)",
        total,
        elapsed.as_secs_f64(),
        total / elapsed.as_secs_f64(),
        s.writes_success,
        submitted.as_secs_f64() * 1000.0,
        submitted.as_secs_f64() * 1e6 / total
    );
    assert_eq!(
        pg.psql("db", "SELECT count(*) FROM proxy_health_record"),
        format!("{}", total as u64)
    );
    sink.close(Instant::now() + Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_server_rejects_is_isolated_and_dropped_not_blocking_the_rest() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let ids = seed_sql(&pg, "db", 10);
    let proxies = proxies(&ids);
    // A constraint this exporter's data can violate (pharox has none such).
    pg.psql(
        "db",
        "ALTER TABLE proxy_health_record ADD CONSTRAINT sane_latency CHECK (latency_ms < 100000)",
    );
    let mut cfg = config(&pg.url("db"));
    cfg.retry_max_backoff_seconds = 0.1;
    let sink = ResultWriter::spawn(cfg).unwrap();
    let t0 = Utc::now();
    for (i, p) in proxies.iter().enumerate() {
        let latency = if i == 6 { 500_000 } else { 10 };
        sink.submit(p, &result(&p.id, ProxyStatus::Active, latency, t0, None));
    }
    assert_eq!(
        sink.flush(Instant::now() + Duration::from_secs(60)).await,
        0
    );
    let s = sink.stats();
    assert_eq!(
        (s.results_written, s.dropped_history, s.dropped_status),
        (9, 1, 1),
        "{s:?}"
    );
    assert!(s.writes_error >= 5, "{s:?}");
    assert_eq!(
        pg.psql("db", "SELECT count(*) FROM proxy_health_record"),
        "9"
    );
    assert_eq!(
        pg.psql("db", "SELECT count(*) FROM proxy WHERE status = 'active'"),
        "9"
    );
    sink.close(Instant::now() + Duration::from_secs(5)).await;
}
