//! Three replicas on one inventory: every proxy checked exactly once per
//! sweep, by `sweep --once` and by the long-running exporter alike.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use pharox_testkit::{FakeProxy, FakeTarget, ProxyBehavior, Reply};

use crate::support::exporter::Exporter;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pharox-exporter"))
}

const N: usize = 60;

/// N inventory entries spread over a handful of real fake proxies (distinct
/// ids through distinct user names, so every entry is its own proxy).
async fn fleet(dir: &std::path::Path) -> (FakeTarget, Vec<FakeProxy>, std::path::PathBuf) {
    let target = FakeTarget::start(Reply::ok("ok")).await.unwrap();
    let mut proxies = Vec::new();
    for _ in 0..3 {
        proxies.push(FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap());
    }
    let inv = dir.join("inventory.txt");
    let mut f = std::fs::File::create(&inv).unwrap();
    for i in 0..N {
        writeln!(f, "socks5://user{i}@{}", proxies[i % 3].addr()).unwrap();
    }
    (target, proxies, inv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sweep_once_replicas_check_every_proxy_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _proxies, inv) = fleet(dir.path()).await;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for index in 0..3 {
        let mut cmd = bin();
        cmd.args(["sweep", "--once", "--inventory"])
            .arg(&inv)
            .args([
                "--target-url",
                target.url("/").as_str(),
                "--shard.count",
                "3",
                "--shard.index",
                &index.to_string(),
            ]);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            !lines.is_empty() && lines.len() < N,
            "replica {index} got {} of {N}",
            lines.len()
        );
        for l in lines {
            assert_eq!(l["status"], "active");
            *seen
                .entry(l["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(seen.len(), N, "every proxy checked");
    assert!(
        seen.values().all(|&n| n == 1),
        "no proxy checked twice: {seen:?}"
    );
}

async fn scrape(url: &str) -> Option<String> {
    let r = reqwest::get(url).await.ok()?;
    r.text().await.ok()
}

fn sample(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_exporter_replicas_export_disjoint_proxies_covering_the_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _proxies, inv) = fleet(dir.path()).await;
    // Each replica binds a free port of its own (retried on a lost race).
    let mut replicas = Vec::new();
    for index in 0..3 {
        let args: Vec<String> = [
            "--inventory",
            &inv.display().to_string(),
            "--target-url",
            target.url("/").as_str(),
            "--sweep.interval",
            "1s",
            "--metrics.per-proxy",
            "--shard.count",
            "3",
            "--shard.index",
            &index.to_string(),
            "--log.level",
            "warn",
        ]
        .map(String::from)
        .to_vec();
        replicas.push(Exporter::start(dir.path(), &args).await);
    }
    // Wait (bounded) until each replica completed two sweeps.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut scrapes = vec![String::new(); 3];
    loop {
        for (i, ex) in replicas.iter().enumerate() {
            scrapes[i] = scrape(&ex.url("/metrics")).await.unwrap_or_default();
        }
        if scrapes
            .iter()
            .all(|s| sample(s, "pharox_exporter_sweeps_total") >= 2.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not complete two sweeps in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0.0;
    for s in &scrapes {
        let ids: BTreeSet<String> = s
            .lines()
            .filter(|l| l.starts_with("pharox_proxy_up{"))
            .filter_map(|l| {
                l.split("proxy_id=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_string)
            })
            .collect();
        for id in ids {
            *owners.entry(id).or_default() += 1;
        }
        total += sample(s, "pharox_exporter_inventory_proxies");
        // Each replica's sweep covered exactly its own proxies, once.
        let checks: f64 = s
            .lines()
            .filter(|l| l.starts_with("pharox_checks_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let sweeps = sample(s, "pharox_exporter_sweeps_total");
        let mine = sample(s, "pharox_exporter_inventory_proxies");
        assert!(
            checks >= mine * sweeps,
            "checks {checks} < proxies {mine} x sweeps {sweeps}"
        );
    }
    assert_eq!(
        total as usize, N,
        "the replicas' inventories add up to the whole"
    );
    assert_eq!(owners.len(), N, "every proxy exported by some replica");
    assert!(
        owners.values().all(|&n| n == 1),
        "each proxy exported by exactly one replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_shard_takes_the_new_share_of_an_unchanged_file() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _proxies, inv) = fleet(dir.path()).await;
    let cfg = dir.path().join("pharox.yaml");
    let write = |index: u32| {
        std::fs::write(
            &cfg,
            format!(
                "defaults:\n  target_url: {}\ninventory:\n  path: {}\nsweep:\n  interval: 1s\n\
                 web:\n  enable_lifecycle: true\nmetrics:\n  per_proxy: true\n\
                 sharding:\n  index: {index}\n  count: 2\n",
                target.url("/"),
                inv.display()
            ),
        )
        .unwrap()
    };
    write(0);
    // The listen address is a flag (a free port, retried on a lost race):
    // flags override the file, and a reload cannot move the listener.
    let args: Vec<String> = [
        "--config.file",
        &cfg.display().to_string(),
        "--log.level",
        "warn",
    ]
    .map(String::from)
    .to_vec();
    let exporter = Exporter::start(dir.path(), &args).await;
    let metrics_url = exporter.url("/metrics");
    let metrics_url = metrics_url.as_str();
    let ids = |s: &str| -> BTreeSet<String> {
        s.lines()
            .filter(|l| l.starts_with("pharox_proxy_up{"))
            .filter_map(|l| {
                l.split("proxy_id=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_string)
            })
            .collect()
    };
    let wait_for = |min_sweeps: f64| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = scrape(metrics_url).await.unwrap_or_default();
            if sample(&s, "pharox_exporter_sweeps_total") >= min_sweeps {
                return s;
            }
            assert!(Instant::now() < deadline, "no sweep in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let first = wait_for(1.0).await;
    let share0 = ids(&first);
    assert!(!share0.is_empty() && share0.len() < N);

    write(1);
    let r = reqwest::Client::new()
        .post(exporter.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let swept = sample(&first, "pharox_exporter_sweeps_total");
    let after = wait_for(swept + 2.0).await;
    let share1 = ids(&after);
    assert_eq!(
        sample(&after, "pharox_exporter_inventory_proxies") as usize,
        N - share0.len()
    );
    assert_eq!(
        share1.len(),
        N - share0.len(),
        "the other half, from the unchanged file"
    );
    assert!(share0.is_disjoint(&share1));
}
