//! `--web.config.file` (exporter-toolkit format) with real clients: curl
//! over TLS with basic auth (hashes made by `htpasswd -B`), certificate
//! rotation without a restart, client certificates, a broken file at start
//! and at runtime; and a real Prometheus scraping over TLS with
//! `tls_config` and `basic_auth`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pharox_testkit::pki::TestPki;
use pharox_testkit::{FakeProxy, FakeTarget, ProxyBehavior, Reply};

use crate::support::exporter::*;
use crate::support::process::{require_binary, start_on_free_port, tail, ChildGuard, ServerDir};

const USER: &str = "scraper";
const PASSWORD: &str = "Sc-S3cret-9911";

/// `htpasswd -nbB user password` -> the bcrypt hash.
fn htpasswd_hash(user: &str, password: &str) -> String {
    let bin = require_binary(&["/usr/bin/htpasswd", "htpasswd"], "apache2-utils");
    let out = Command::new(bin)
        .args(["-nbBC", "10", user, password])
        .output()
        .expect("run htpasswd");
    assert!(out.status.success(), "htpasswd failed: {out:?}");
    let line = String::from_utf8_lossy(&out.stdout);
    let hash = line
        .trim()
        .strip_prefix(&format!("{user}:"))
        .expect("user:hash")
        .to_string();
    assert!(hash.starts_with("$2y$10$"), "{hash}");
    hash
}

/// A PKI's files under `dir/<name>/`.
fn pki_dir(dir: &Path, name: &str, pki: &TestPki) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("pki dir");
    pki.write_pem(&d);
    d
}

/// `curl` the URL; returns (exit code, HTTP code or 0, headers + body).
fn curl(url: &str, extra: &[&str]) -> (i32, u16, String) {
    let bin = require_binary(&["/usr/bin/curl", "curl"], "curl");
    let out = Command::new(bin)
        .args(["-sS", "-i", "--max-time", "10", "--noproxy", "*"])
        .args(extra)
        .args(["-w", "\n%{http_code}"])
        .arg(url)
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (text, code) = stdout.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

/// A client trusting `ca` that sends the scraper's credentials.
fn client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("ca");
    let cert = reqwest::Certificate::from_pem(&pem).expect("ca pem");
    let mut headers = reqwest::header::HeaderMap::new();
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Basic {token}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(cert)
        .default_headers(headers)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Replace a file by rename, so no reader sees half of it.
fn replace(path: &Path, contents: &str) {
    write_atomic(path, contents);
}

/// Poll `f` every 100 ms, at most 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Setup {
    dir: ServerDir,
    web: PathBuf,
    tls: PathBuf,
    ca1: PathBuf,
    _target: FakeTarget,
    _proxy: FakeProxy,
    inv: PathBuf,
    target_url: String,
}

async fn setup(name: &str) -> Setup {
    let dir = ServerDir::new(name);
    let target = FakeTarget::start(Reply::ok("ok")).await.expect("target");
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("fake");
    let inv = dir.write("inventory.txt", format!("socks5://{}\n", proxy.addr()));
    // The server's files live in tls/, the CA a client trusts in ca1/.
    let pki = TestPki::generate();
    let ca1 = pki_dir(dir.path(), "ca1", &pki).join("ca.pem");
    let tls = pki_dir(dir.path(), "tls", &pki);
    let web = dir.join("web.yml");
    let hash = htpasswd_hash(USER, PASSWORD);
    write_atomic(
        &web,
        &format!(
            "tls_server_config:\n  cert_file: tls/cert.pem\n  key_file: tls/key.pem\n\
             basic_auth_users:\n  {USER}: '{hash}'\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        ),
    );
    Setup {
        target_url: target.url("/").to_string(),
        dir,
        web,
        tls,
        ca1,
        _target: target,
        _proxy: proxy,
        inv,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_with_curl_rotation_and_client_certificates() {
    let st = setup("exporter-web-tls").await;
    let mut args = base_args(&st.inv, &st.target_url);
    args.extend([s("--web.config.file"), st.web.display().to_string()]);
    let launch = Launch {
        http: Some(client(&st.ca1)),
        tls: true,
        ..Launch::default()
    };
    let ex = Exporter::start_with(st.dir.path(), &args, launch).await;
    let metrics = ex.url("/metrics");
    let ca1 = st.ca1.display().to_string();
    let auth = format!("{USER}:{PASSWORD}");

    // curl over TLS with the right credentials: 200, the configured header.
    let (rc, code, out) = curl(&metrics, &["--cacert", &ca1, "-u", &auth]);
    assert_eq!((rc, code), (0, 200), "{out}");
    assert!(out.contains("pharox_exporter_sweeps_total"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{out}"
    );
    // Wrong password, unknown user, none: 401 with a Basic challenge.
    for extra in [
        vec!["-u", "scraper:wrong-password"],
        vec!["-u", "nobody:Sc-S3cret-9911"],
        vec![],
    ] {
        let mut a = vec!["--cacert", ca1.as_str()];
        a.extend(extra.iter().copied());
        let (rc, code, out) = curl(&metrics, &a);
        assert_eq!((rc, code), (0, 401), "{extra:?}: {out}");
        assert!(
            out.contains("WWW-Authenticate: Basic") || out.contains("www-authenticate: Basic"),
            "{out}"
        );
        assert!(!out.contains("pharox_"), "{out}");
    }
    // Plain HTTP on the TLS port gets nothing.
    let plain = metrics.replace("https://", "http://");
    let (_, code, _) = curl(&plain, &["-u", &auth]);
    assert_ne!(code, 200);

    // Rotation: a new certificate (from another CA) replaces the files; the
    // next connection presents it, without a restart.
    let pki2 = TestPki::generate();
    let ca2 = pki_dir(st.dir.path(), "ca2", &pki2).join("ca.pem");
    replace(&st.tls.join("key.pem"), &pki2.key_pem);
    replace(&st.tls.join("cert.pem"), &pki2.cert_pem);
    let ca2s = ca2.display().to_string();
    let (rc, code, out) = curl(&metrics, &["--cacert", &ca2s, "-u", &auth]);
    assert_eq!(
        (rc, code),
        (0, 200),
        "the new certificate: {out}\n{}",
        ex.log_tail()
    );
    let (rc, code, _) = curl(&metrics, &["--cacert", &ca1, "-u", &auth]);
    assert!(
        rc != 0 && code == 0,
        "the old CA no longer verifies the server"
    );

    // Client certificates required: without one the handshake fails; with
    // one signed by the client CA, 200.
    let client_pki = TestPki::generate();
    let cdir = pki_dir(st.dir.path(), "client", &client_pki);
    let hash = htpasswd_hash(USER, PASSWORD);
    replace(
        &st.web,
        &format!(
            "tls_server_config:\n  cert_file: tls/cert.pem\n  key_file: tls/key.pem\n\
             \x20 client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client/ca.pem\n\
             basic_auth_users:\n  {USER}: '{hash}'\n"
        ),
    );
    let (rc, code, out) = curl(&metrics, &["--cacert", &ca2s, "-u", &auth]);
    assert!(
        rc != 0 && code == 0,
        "no client certificate: handshake refused: {rc} {code} {out}"
    );
    let (cert, key) = (cdir.join("cert.pem"), cdir.join("key.pem"));
    let (rc, code, out) = curl(
        &metrics,
        &[
            "--cacert",
            &ca2s,
            "-u",
            &auth,
            "--cert",
            &cert.display().to_string(),
            "--key",
            &key.display().to_string(),
        ],
    );
    assert_eq!((rc, code), (0, 200), "with a client certificate: {out}");
    // A certificate from a CA the server does not trust is refused too.
    let stranger = st.tls.join("cert.pem").display().to_string();
    let stranger_key = st.tls.join("key.pem").display().to_string();
    let (rc, code, _) = curl(
        &metrics,
        &[
            "--cacert",
            &ca2s,
            "-u",
            &auth,
            "--cert",
            &stranger,
            "--key",
            &stranger_key,
        ],
    );
    assert!(
        rc != 0 && code == 0,
        "an untrusted client certificate is refused"
    );

    // A broken file at runtime: logged, the last good version stays.
    replace(&st.web, "tls_server_config:\n  client_auth_type: Maybe\n");
    let (rc, code, _) = curl(
        &metrics,
        &[
            "--cacert",
            &ca2s,
            "-u",
            &auth,
            "--cert",
            &cert.display().to_string(),
            "--key",
            &key.display().to_string(),
        ],
    );
    assert_eq!((rc, code), (0, 200), "the last good web config stays");
    eventually("the broken web config to be logged", || {
        ex.log_text().contains("web config not reloaded")
    });
    let log = ex.log_text();
    assert!(log.contains("client_auth_type"), "{}", ex.log_tail());
    assert!(
        !log.contains(PASSWORD),
        "the password never reaches the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_web_config_at_start_names_the_file_and_field() {
    let dir = ServerDir::new("exporter-web-broken");
    let web = dir.write("web.yml", "basic_auth_users:\n  alice: not-a-hash\n");
    // Something to sweep, so that the web config is what stops the start.
    let inv = dir.write("inventory.txt", "http://127.0.0.1:9\n");
    let out = Command::new(exporter_bin())
        .arg("--inventory")
        .arg(&inv)
        .args(["--web.listen-address", "127.0.0.1:0", "--web.config.file"])
        .arg(&web)
        .output()
        .expect("run the exporter");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a broken web config is fatal at start"
    );
    assert!(
        err.contains(&web.display().to_string()) && err.contains("basic_auth_users.alice"),
        "{err}"
    );
    assert!(!err.contains("not-a-hash"), "the hash is not echoed: {err}");
    let missing = dir.join("absent.yml");
    let out = Command::new(exporter_bin())
        .arg("--inventory")
        .arg(&inv)
        .args(["--web.listen-address", "127.0.0.1:0", "--web.config.file"])
        .arg(&missing)
        .output()
        .expect("run the exporter");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("absent.yml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_over_tls_with_basic_auth() {
    let prometheus = require_binary(&["/usr/bin/prometheus", "prometheus"], "prometheus");
    let st = setup("exporter-web-prometheus").await;
    let mut args = base_args(&st.inv, &st.target_url);
    args.extend([s("--web.config.file"), st.web.display().to_string()]);
    let launch = Launch {
        http: Some(client(&st.ca1)),
        tls: true,
        ..Launch::default()
    };
    let ex = Exporter::start_with(st.dir.path(), &args, launch).await;
    let target = ex.base.trim_start_matches("https://").to_string();
    // Two jobs on the same exporter: the right password and a wrong one.
    let cfg = st.dir.write(
        "prometheus.yml",
        format!(
            // A generous timeout: a loaded CI machine (bcrypt for the
            // intruder, a TLS handshake, a debug build) must not read as down.
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n\
             scrape_configs:\n\
             - job_name: pharox\n  scheme: https\n  tls_config:\n    ca_file: {ca}\n\
             \x20 basic_auth:\n    username: {USER}\n    password: {PASSWORD}\n\
             \x20 static_configs:\n  - targets: ['{target}']\n\
             - job_name: intruder\n  scheme: https\n  tls_config:\n    ca_file: {ca}\n\
             \x20 basic_auth:\n    username: {USER}\n    password: wrong\n\
             \x20 static_configs:\n  - targets: ['{target}']\n",
            ca = st.ca1.display()
        ),
    );
    let log = st.dir.join("prometheus.log");
    let (prom_addr, _prom) = start_on_free_port("prometheus", st.dir.path(), |port| {
        let mut cmd = Command::new(&prometheus);
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                st.dir.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        ChildGuard::spawn("prometheus", cmd, &log)
    });
    let port = prom_addr.port();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let query = |q: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://127.0.0.1:{port}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            let first = v["data"]["result"].as_array()?.first()?.clone();
            first["value"][1].as_str()?.parse::<f64>().ok()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = query("up{job=\"pharox\"}").await;
        let intruder = query("up{job=\"intruder\"}").await;
        let swept = query("pharox_exporter_sweeps_total{job=\"pharox\"}").await;
        if up == Some(1.0) && intruder == Some(0.0) && swept.is_some_and(|v| v >= 1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus: up={up:?} intruder={intruder:?} sweeps={swept:?}\n{}\n{}",
            tail(&log, 3000),
            ex.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let m = ex.scrape().await;
    assert!(
        m.sum(
            "pharox_exporter_http_rejected_total",
            &[("reason", "unauthorized")]
        ) >= 1.0,
        "the intruder's scrapes were refused\n{}",
        m.text
    );
}
