//! The README's run command (`scripts/demo.sh`) really starts proxies and an
//! exporter that sweeps them and serves /metrics. It uses fixed demo ports
//! (10187, 21080-21082, 28080, 28888), so it is the only test that may.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_script_sweeps_real_proxies_and_serves_metrics() {
    let root = env!("CARGO_MANIFEST_DIR");
    let child = Command::new("bash")
        .arg(format!("{root}/scripts/demo.sh"))
        .env("DEMO_BIN", env!("CARGO_BIN_EXE_pharox-exporter"))
        .env("DEMO_SECONDS", "12")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/demo.sh");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut body = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get("http://127.0.0.1:10187/metrics").await {
            body = r.text().await.unwrap_or_default();
            if body.contains("pharox_exporter_sweeps_total 1")
                || body.contains("pharox_exporter_sweeps_total 2")
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {log}");
    assert!(
        body.contains("pharox_exporter_sweeps_total"),
        "no sweep completed; log:\n{log}\nscrape:\n{body}"
    );
    let gauge = |pool: &str, status: &str| -> f64 {
        body.lines()
            .filter(|l| {
                l.starts_with("pharox_proxies{")
                    && l.contains(&format!("pool=\"{pool}\""))
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // examples/demo/inventory.csv: residential = 3 working microsocks entries + one wrong password;
    // datacenter = tinyproxy + dante socks4 + dante socks5 working, one dead port.
    assert_eq!(
        gauge("residential", "active") + gauge("residential", "slow"),
        3.0,
        "{body}"
    );
    assert_eq!(gauge("residential", "inactive"), 1.0, "{body}");
    assert_eq!(
        gauge("datacenter", "active") + gauge("datacenter", "slow"),
        3.0,
        "{body}"
    );
    assert_eq!(gauge("datacenter", "inactive"), 1.0, "{body}");
    assert!(body.contains("reason=\"proxy_auth_failed\""), "{body}");
    assert!(body.contains("reason=\"connect_refused\""), "{body}");
    assert!(
        !body.contains("demo-secret") && !log.contains("demo-secret"),
        "password leaked"
    );
}
