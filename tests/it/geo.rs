//! Geolocation through real proxies: microsocks instances whose outgoing
//! connections leave from distinct loopback addresses (`-b 127.0.0.x`), a
//! judge in this test that answers `{"origin": "<peer ip>"}`, a City
//! database built here (Debian's MaxMind writer, checked with
//! `mmdblookup`), and the library's own path from a config file: inventory
//! with a `country` column, `geoip.databases`, per-pool `geo_policy`,
//! `run_sweep`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};

use pharox_exporter::{
    open_geo, run_sweep, CheckResult, Config, Overrides, Proxy, ProxyStatus, ReadMode, Reason,
    Shard, Source, SweepParams,
};
use pharox_testkit::mmdb::{mmdblookup, write_mmdb};

use crate::support::proxies::{self, ProxyServer};

/// A proxy judge on 127.0.0.1: every request gets httpbin-style JSON
/// naming the peer address. Runs until the test process ends.
fn judge() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind judge");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let peer = conn.peer_addr().map(|a| a.ip().to_string());
                let body = format!(
                    "{{\"origin\": \"{}\", \"headers\": {{}}}}",
                    peer.unwrap_or_default()
                );
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn city_db(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("City.mmdb");
    write_mmdb(
        &path,
        "GeoLite2-City",
        &[
            (
                "127.0.0.2/32",
                r#"{"country":{"iso_code":"DE"},"city":{"names":{"en":"Berlin"}},"location":{"latitude":52.52,"longitude":13.405}}"#,
            ),
            (
                "127.0.0.3/32",
                r#"{"country":{"iso_code":"US"},"city":{"names":{"en":"Dallas"}},"location":{"latitude":32.78,"longitude":-96.8}}"#,
            ),
        ],
    );
    assert_eq!(
        mmdblookup(&path, "127.0.0.2", &["country", "iso_code"]).as_deref(),
        Some("DE")
    );
    assert_eq!(
        mmdblookup(&path, "127.0.0.3", &["city", "names", "en"]).as_deref(),
        Some("Dallas")
    );
    path
}

/// Three proxies sold as DE: one exits in Berlin, two in Dallas (pool
/// `strict` fails a mismatch, pool `lenient` reports it).
struct Setup {
    _dir: tempfile::TempDir,
    _servers: Vec<ProxyServer>,
    config: Config,
}

fn setup(judge_mode: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    city_db(dir.path());
    let berlin = proxies::microsocks_exiting_from(Ipv4Addr::new(127, 0, 0, 2));
    let dallas = proxies::microsocks_exiting_from(Ipv4Addr::new(127, 0, 0, 3));
    let dallas2 = proxies::microsocks_exiting_from(Ipv4Addr::new(127, 0, 0, 3));
    std::fs::write(
        dir.path().join("proxies.csv"),
        format!(
            "url,pool,country\n{},strict,DE\n{},strict,de\n{},lenient,DE\n",
            berlin.proxy_url(),
            dallas.proxy_url(),
            dallas2.proxy_url()
        ),
    )
    .unwrap();
    let yaml = format!(
        "defaults:\n  target_url: http://127.0.0.1:{}/\n  timeout: 5\n  judge: {judge_mode}\n\
         pools:\n  lenient:\n    geo_policy: report\n\
         inventory:\n  path: proxies.csv\n\
         geoip:\n  databases: [City.mmdb]\n",
        judge()
    );
    let cfg_path = dir.path().join("config.yaml");
    std::fs::write(&cfg_path, yaml).unwrap();
    let config = Config::load(Some(&cfg_path), &Overrides::default()).unwrap();
    assert_eq!(config.geoip.databases, vec![dir.path().join("City.mmdb")]);
    Setup {
        _dir: dir,
        _servers: vec![berlin, dallas, dallas2],
        config,
    }
}

/// Sweep the config's inventory once with its geolocation; results in
/// inventory order.
async fn sweep(cfg: &Config) -> Vec<(Arc<Proxy>, CheckResult)> {
    let spec = pharox_exporter::source_spec(cfg).expect("an inventory");
    let read = Source::open(spec)
        .unwrap()
        .read(Shard::default(), ReadMode::ReadOnly)
        .await
        .unwrap();
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    let proxies: Vec<Arc<Proxy>> = read.proxies;
    let declared: Vec<Option<&str>> = proxies.iter().map(|p| p.country.as_deref()).collect();
    assert_eq!(declared, vec![Some("DE"); 3]);
    let geo = open_geo(cfg).unwrap();
    assert!(geo.is_some());
    let results = Arc::new(Mutex::new(Vec::new()));
    let sink = results.clone();
    let params = SweepParams::new(4, 0.0, None).geo(geo);
    run_sweep(
        proxies.clone().into(),
        cfg.options.clone(),
        params,
        move |p, r| sink.lock().unwrap().push((p.clone(), r)),
    )
    .await;
    let mut out = std::mem::take(&mut *results.lock().unwrap());
    out.sort_by_key(|(p, _)| proxies.iter().position(|q| q.id == p.id));
    out
}

/// With a judge, each exit is located: Berlin matches, Dallas is a
/// mismatch that fails the `strict` pool and is only marked in `lenient`.
///
/// Needs judge mode in the probe (the probe filling `CheckResult.exit.ip`
/// from the judge's answer), built by another part of issue 11.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn exits_through_real_proxies_are_located_and_mismatches_follow_the_pool_policy() {
    let s = setup(true);
    let results = sweep(&s.config).await;
    let summary: Vec<_> = results
        .iter()
        .map(|(p, r)| {
            let exit = r.exit.clone().unwrap_or_default();
            (
                p.pool.to_string(),
                r.status,
                r.reason,
                exit.ip.map(|i| i.to_string()),
                exit.geo.and_then(|g| g.city),
                exit.geo_mismatch,
                r.error.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "strict".to_string(),
                ProxyStatus::Active,
                None,
                Some("127.0.0.2".to_string()),
                Some("Berlin".to_string()),
                false,
                None
            ),
            (
                "strict".to_string(),
                ProxyStatus::Inactive,
                Some(Reason::GeoMismatch),
                Some("127.0.0.3".to_string()),
                Some("Dallas".to_string()),
                true,
                Some("exit country US, declared DE".to_string())
            ),
            (
                "lenient".to_string(),
                ProxyStatus::Active,
                None,
                Some("127.0.0.3".to_string()),
                Some("Dallas".to_string()),
                true,
                None
            ),
        ]
    );
}

/// Without judge mode there is no exit to locate: geolocation configured
/// changes nothing, whatever the declared countries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_judge_geolocation_leaves_results_alone() {
    let s = setup(false);
    let results = sweep(&s.config).await;
    let summary: Vec<_> = results
        .iter()
        .map(|(_, r)| (r.status, r.reason, r.exit.is_none()))
        .collect();
    assert_eq!(summary, vec![(ProxyStatus::Active, None, true); 3]);
}
