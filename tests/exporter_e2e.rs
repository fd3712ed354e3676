//! End-to-end tests of the exporter: the real `pharox-exporter` binary on
//! 127.0.0.1:<free port>, sweeping real proxies (Debian packages, see
//! `tests/common/proxies.rs`) and in-process fakes (`pharox_exporter::testkit`),
//! scraped over HTTP as Prometheus would.
//!
//! Every test writes its inventory and config into its own temp dir, starts
//! its own exporter (killed with its process group on Drop), waits for
//! `/-/ready` and for completed sweeps with bounded polls, and asserts on
//! what a scrape, `/api/status`, the status page or the process itself shows.
//! Sweeps run every second with short timeouts, so the whole file stays quick.
//!
//! What is covered, one test each: metric families, labels and values
//! against real proxies (and no password anywhere); `promtool check metrics`
//! on both exposition formats; reload by HTTP and SIGHUP, a bad file keeping
//! the old config; SIGTERM mid-sweep (hanging checks cut at the grace,
//! short ones allowed to finish, overruns counted); inventory edits reaching
//! the gauges; readiness; the per-proxy cap; `/probe`; the status page in
//! headless chromium (screenshot kept in `target/test-artifacts/`).
//!
//! External tools are required, never skipped: `promtool` (Debian package
//! `prometheus`) and `chromium` (Debian package `chromium`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::process::{free_port, require_binary, tail, ChildGuard, ServerDir};
use common::proxies;
use common::targets::Target;
use pharox_exporter::model::{Proxy, ProxyProtocol};
use pharox_exporter::testkit::{refused_port, FakeProxy, Fault, ProxyBehavior};

const EXPORTER: &str = env!("CARGO_BIN_EXE_pharox-exporter");

/// How long the exporter gets to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on every "wait until the exporter shows X" poll.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The exporter process

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running exporter; killed (whole process group) when dropped.
struct Exporter {
    child: ChildGuard,
    base: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Exporter {
    /// Start the binary with `args` plus a free loopback listen address, and
    /// wait until `/-/ready` answers 200. A lost race for the port (the
    /// process exits saying it cannot listen) is retried on another port.
    async fn start(dir: &Path, args: &[String]) -> Exporter {
        Exporter::start_until(dir, args, "/-/ready").await
    }

    /// Like [`Exporter::start`], waiting for `up_path` to answer 200 instead.
    async fn start_until(dir: &Path, args: &[String], up_path: &str) -> Exporter {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        for _ in 0..3 {
            let port = free_port();
            let log = dir.join(format!(
                "exporter-{}.log",
                LOG_SEQ.fetch_add(1, Ordering::SeqCst)
            ));
            let mut cmd = Command::new(EXPORTER);
            cmd.args(args)
                .arg("--web.listen-address")
                .arg(format!("127.0.0.1:{port}"))
                .env_remove("RUST_LOG");
            let child = ChildGuard::spawn("pharox-exporter", cmd, &log);
            let mut ex = Exporter {
                child,
                base: format!("http://127.0.0.1:{port}"),
                log,
                http: http.clone(),
            };
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Some(status) = ex.child.exited() {
                    let out = ex.log_text();
                    if out.contains("cannot listen") {
                        break; // port race: try another port
                    }
                    panic!("pharox-exporter exited with {status} before it was ready:\n{out}");
                }
                if let Ok(r) = ex.http.get(ex.url(up_path)).send().await {
                    if r.status() == reqwest::StatusCode::OK {
                        return ex;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "pharox-exporter: no 200 on {up_path} within {READY_TIMEOUT:?}:\n{}",
                    ex.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("pharox-exporter could not bind a free port in 3 attempts");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pid(&self) -> libc::pid_t {
        self.child.pid() as libc::pid_t
    }

    /// Send a signal to the exporter (not its group: the exporter alone).
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Everything the process wrote to stdout and stderr so far.
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        format!(
            "----- exporter log ({}) -----\n{}",
            self.log.display(),
            tail(&self.log, 8000)
        )
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.request(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str) -> (u16, String) {
        self.request(self.http.post(self.url(path))).await
    }

    async fn request(&self, req: reqwest::RequestBuilder) -> (u16, String) {
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.log_tail()));
        let code = r.status().as_u16();
        (code, r.text().await.expect("response body"))
    }

    /// One scrape of `/metrics` in the classic text format.
    async fn scrape(&self) -> Scrape {
        let (code, text) = self.get("/metrics").await;
        assert_eq!(code, 200, "GET /metrics: {text}");
        Scrape::parse(text)
    }

    /// Poll `/metrics` until `pred` holds, at most [`WAIT_TIMEOUT`].
    async fn wait_for(&self, what: &str, pred: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let s = self.scrape().await;
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT_TIMEOUT:?} waiting for {what}\nlast scrape:\n{}\n{}",
                s.text,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until at least `n` sweeps completed.
    async fn wait_sweeps(&self, n: f64) -> Scrape {
        self.wait_for(&format!("{n} completed sweeps"), |s| {
            s.value("pharox_sweeps_total") >= n
        })
        .await
    }

    /// A scrape taken between two sweeps, so that counters updated together
    /// per check (checks_total, the latency histogram) are consistent: no
    /// sweep was running at the end of this scrape nor at the end of the next
    /// one, and no sweep completed in between.
    async fn quiescent_scrape(&self) -> Scrape {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let a = self.scrape().await;
            if a.value("pharox_sweep_proxies") == 0.0 {
                let b = self.scrape().await;
                if b.value("pharox_sweep_proxies") == 0.0
                    && b.value("pharox_sweeps_total") == a.value("pharox_sweeps_total")
                {
                    return a;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no scrape between two sweeps within {WAIT_TIMEOUT:?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn child_alive(&mut self) -> bool {
        self.child.exited().is_none()
    }

    /// Wait (bounded) for the process to exit; `None` if it did not.
    async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.exited() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// The text exposition format, parsed

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One scrape: the raw text and its samples.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("unparsable sample line {l:?}")))
            .collect();
        Scrape { text, samples }
    }

    /// Samples of `name` whose labels match `want` (a value `a|b` matches either).
    fn series(&self, name: &str, want: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                want.iter().all(|(k, v)| {
                    s.labels
                        .get(*k)
                        .is_some_and(|have| v.split('|').any(|alt| alt == have))
                })
            })
            .collect()
    }

    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.series(name, want).iter().map(|s| s.value).sum()
    }

    /// The value of a family with exactly one series.
    fn value(&self, name: &str) -> f64 {
        let s = self.series(name, &[]);
        assert_eq!(
            s.len(),
            1,
            "expected exactly one series of {name}, got {s:?}\n{}",
            self.text
        );
        s[0].value
    }

    /// Values of label `key` over the series of `name` matching `want`.
    fn label_values(&self, name: &str, key: &str, want: &[(&str, &str)]) -> BTreeSet<String> {
        self.series(name, want)
            .iter()
            .filter_map(|s| s.labels.get(key).cloned())
            .collect()
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// `name{k="v",...} value [timestamp]`, with `\\`, `\"` and `\n` escapes.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i + 1,
                ',' | ' ' => continue,
                _ => {}
            }
            let eq = body[i..].find('=')? + i;
            let key = body[i..eq].trim().to_string();
            while chars.peek()?.0 <= eq {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
        };
        rest = &body[end..];
    }
    let mut parts = rest.split_whitespace();
    let value = parse_value(parts.next()?)?;
    if parts.next().is_some_and(|ts| ts.parse::<f64>().is_err()) || parts.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

// ---------------------------------------------------------------------------
// Inventories and configs

/// One inventory entry.
struct Entry {
    url: String,
    pool: &'static str,
    provider: &'static str,
}

fn entry(url: impl Into<String>, pool: &'static str, provider: &'static str) -> Entry {
    Entry {
        url: url.into(),
        pool,
        provider,
    }
}

fn inventory_yaml(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| {
            // Rust's debug quoting is valid YAML double-quoted style.
            format!(
                "- url: {:?}\n  pool: {:?}\n  provider: {:?}\n",
                e.url, e.pool, e.provider
            )
        })
        .collect()
}

/// Replace a file atomically (write a sibling, rename), so the exporter never
/// reads half a file.
fn write_atomic(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {}: {e}", path.display()));
}

fn s(v: impl Into<String>) -> String {
    v.into()
}

/// Flags every test uses: a one-second sweep against `target`, a slow
/// threshold far above the timeout (a loaded machine never turns ACTIVE
/// into SLOW: tests assert behaviour, not speed), debug logs.
fn base_args(inventory: &Path, target: &str) -> Vec<String> {
    vec![
        s("--inventory"),
        inventory.display().to_string(),
        s("--target-url"),
        s(target),
        s("--timeout"),
        s("5"),
        s("--slow-threshold-ms"),
        s("600000"),
        s("--sweep.interval"),
        s("1s"),
        s("--log.level"),
        s("debug"),
    ]
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} leaks the password {secret:?}:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// 1. Families, labels and values against real proxies

const MS_USER: &str = "alice";
const MS_PASS: &str = "Ms-S3cret-4711";
const WRONG_USER: &str = "mallory";
const WRONG_PASS: &str = "Wr0ng-S3cret-1337";
const ROW_PASS: &str = "R0w-S3cret-2024";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_families_labels_and_values_with_real_proxies() {
    let target = Target::http();
    let ms1 = proxies::microsocks(None);
    let ms2 = proxies::microsocks(None);
    let tiny = proxies::tinyproxy();
    let ms_auth = proxies::microsocks(Some((MS_USER, MS_PASS)));
    let (dead1, dead2) = (refused_port(), refused_port());

    let dir = ServerDir::new("exporter-families");
    let inv = dir.write(
        "inventory.yaml",
        inventory_yaml(&[
            entry(ms1.proxy_url(), "p1", "alpha"),
            entry(ms2.proxy_url(), "p1", "beta"),
            entry(tiny.proxy_url(), "p1", "alpha"),
            entry(format!("socks5://127.0.0.1:{dead1}"), "p1", "beta"),
            entry(format!("http://127.0.0.1:{dead2}"), "p1", "alpha"),
            entry(
                format!("socks5://{MS_USER}:{MS_PASS}@{}", ms_auth.addr()),
                "p2",
                "gamma",
            ),
            entry(
                format!("socks5://{WRONG_USER}:{WRONG_PASS}@{}", ms_auth.addr()),
                "p2",
                "gamma",
            ),
            // Malformed (port out of range): skipped, counted, never echoed whole.
            entry(
                format!("socks5://{MS_USER}:{ROW_PASS}@127.0.0.1:99999"),
                "p2",
                "gamma",
            ),
        ]),
    );
    let ex = Exporter::start(dir.path(), &base_args(&inv, &target.url("/"))).await;
    ex.wait_sweeps(2.0).await;
    let m = ex.quiescent_scrape().await;
    let ctx = || {
        format!(
            "\n{}\n{}{}{}{}",
            m.text,
            ex.log_tail(),
            ms1.logs(),
            tiny.logs(),
            ms_auth.logs()
        )
    };

    // Status counts per pool, every status present (0 when empty).
    let p1 = |status| m.sum("pharox_proxies", &[("pool", "p1"), ("status", status)]);
    assert_eq!(p1("active"), 3.0, "p1 active{}", ctx());
    assert_eq!(p1("inactive"), 2.0, "p1 inactive{}", ctx());
    assert_eq!(p1("slow"), 0.0, "p1 slow{}", ctx());
    assert_eq!(p1("banned"), 0.0, "p1 banned{}", ctx());
    // Each (provider, protocol) label set of p1 carries all four statuses.
    let p1_sets: BTreeSet<(String, String)> = m
        .series("pharox_proxies", &[("pool", "p1")])
        .iter()
        .map(|s| (s.labels["provider"].clone(), s.labels["protocol"].clone()))
        .collect();
    assert_eq!(
        p1_sets,
        [("alpha", "http"), ("alpha", "socks5"), ("beta", "socks5")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        "p1 label sets{}",
        ctx()
    );
    for (provider, protocol) in &p1_sets {
        let statuses = m.label_values(
            "pharox_proxies",
            "status",
            &[
                ("pool", "p1"),
                ("provider", provider),
                ("protocol", protocol),
            ],
        );
        assert_eq!(
            statuses,
            ["active", "banned", "inactive", "slow"]
                .map(String::from)
                .into(),
            "statuses of p1/{provider}/{protocol}{}",
            ctx()
        );
    }
    let p2 = |status| m.sum("pharox_proxies", &[("pool", "p2"), ("status", status)]);
    assert_eq!((p2("active"), p2("inactive")), (1.0, 1.0), "p2{}", ctx());
    assert_eq!(m.sum("pharox_proxies_unchecked", &[]), 0.0, "{}", ctx());
    assert_eq!(m.value("pharox_inventory_proxies"), 7.0, "{}", ctx());
    assert!(
        m.sum("pharox_inventory_errors_total", &[("kind", "row")]) >= 1.0,
        "the malformed entry is counted{}",
        ctx()
    );

    // Failure reasons: exactly the ones the proxies provoke.
    assert_eq!(
        m.label_values("pharox_check_errors_total", "reason", &[("pool", "p1")]),
        BTreeSet::from([s("connect_refused")]),
        "p1 reasons{}",
        ctx()
    );
    assert!(
        m.sum(
            "pharox_check_errors_total",
            &[("pool", "p1"), ("reason", "connect_refused")]
        ) >= 4.0,
        "2 dead proxies x >= 2 sweeps{}",
        ctx()
    );
    assert_eq!(
        m.label_values("pharox_check_errors_total", "reason", &[("pool", "p2")]),
        BTreeSet::from([s("proxy_auth_failed")]),
        "p2 reasons{}",
        ctx()
    );

    // The latency histogram counts exactly the successful checks.
    let up_checks = m.sum(
        "pharox_checks_total",
        &[("pool", "p1"), ("status", "active|slow")],
    );
    let hist_count = m.sum("pharox_check_duration_seconds_count", &[("pool", "p1")]);
    assert!(up_checks >= 6.0, "3 live proxies x >= 2 sweeps{}", ctx());
    assert_eq!(hist_count, up_checks, "histogram count vs checks{}", ctx());
    assert_eq!(
        m.sum(
            "pharox_check_duration_seconds_bucket",
            &[("pool", "p1"), ("le", "+Inf")]
        ),
        hist_count,
        "+Inf bucket{}",
        ctx()
    );
    let all_checks = m.sum("pharox_checks_total", &[("pool", "p1")]);
    assert_eq!(
        all_checks,
        up_checks + m.sum("pharox_check_errors_total", &[("pool", "p1")]),
        "every failed check has exactly one reason{}",
        ctx()
    );

    // Exporter self-metrics.
    let build = m.series("pharox_exporter_build_info", &[]);
    assert_eq!(build.len(), 1, "{}", ctx());
    assert_eq!(build[0].value, 1.0);
    assert_eq!(
        build[0].labels.get("version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        m.value("pharox_exporter_config_last_reload_successful"),
        1.0
    );
    assert_eq!(m.value("pharox_sweep_interval_seconds"), 1.0);
    assert!(m.value("pharox_sweep_last_completed_timestamp_seconds") > 1.6e9);
    assert!(
        m.series("pharox_proxy_up", &[]).is_empty(),
        "per-proxy series are opt-in{}",
        ctx()
    );

    // No password anywhere the exporter speaks.
    let secrets = [MS_PASS, WRONG_PASS, ROW_PASS];
    assert_no_secret("/metrics", &m.text, &secrets);
    let om = ex
        .request(
            ex.http
                .get(ex.url("/metrics"))
                .header("Accept", "application/openmetrics-text"),
        )
        .await;
    assert_no_secret("/metrics (OpenMetrics)", &om.1, &secrets);
    let (code, status_json) = ex.get("/api/status").await;
    assert_eq!(code, 200);
    assert_no_secret("/api/status", &status_json, &secrets);
    let v: serde_json::Value = serde_json::from_str(&status_json).expect("status JSON");
    let pool = |name: &str| {
        v["pools"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["pool"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("pool {name} missing in {status_json}"))
    };
    assert_eq!(
        (
            pool("p1")["active"].as_u64(),
            pool("p1")["inactive"].as_u64()
        ),
        (Some(3), Some(2))
    );
    let worst = v["worst"].as_array().expect("worst list");
    assert!(
        worst
            .iter()
            .any(|w| w["pool"] == "p2" && w["reason"] == "proxy_auth_failed"),
        "worst proxies name the auth failure: {status_json}"
    );
    for path in ["/", "/status"] {
        let (code, page) = ex.get(path).await;
        assert_eq!(code, 200);
        assert_no_secret(path, &page, &secrets);
    }
    let (code, _) = ex
        .get(&format!(
            "/probe?target=socks5://{WRONG_USER}:{WRONG_PASS}@{}",
            ms_auth.addr()
        ))
        .await;
    assert_eq!(code, 200, "a proxy of the inventory may be probed");
    let log = ex.log_text();
    assert!(log.contains("sweep completed"), "log:\n{log}");
    assert!(log.contains("inventory entry skipped"), "log:\n{log}");
    assert_no_secret("the exporter's log", &log, &secrets);
}

// ---------------------------------------------------------------------------
// 2. promtool accepts real scrapes

/// The fakes of a small, mixed inventory: two live proxies, a dead one and
/// one that rejects its credentials. Dropping it stops them.
struct MixedFakes {
    _live: Vec<FakeProxy>,
    _auth: FakeProxy,
    entries: Vec<Entry>,
}

async fn mixed_fakes(pools: [&'static str; 2]) -> MixedFakes {
    let s5 = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("socks5 fake");
    let http = FakeProxy::http(ProxyBehavior::healthy())
        .await
        .expect("http fake");
    let auth = FakeProxy::socks5(ProxyBehavior::healthy().with_auth("svc", "Fk-S3cret-pw"))
        .await
        .expect("auth fake");
    let entries = vec![
        entry(format!("socks5://{}", s5.addr()), pools[0], "alpha"),
        entry(format!("http://{}", http.addr()), pools[0], "beta"),
        entry(
            format!("socks4://127.0.0.1:{}", refused_port()),
            pools[1],
            "alpha",
        ),
        entry(
            format!("socks5://svc:{WRONG_PASS}@{}", auth.addr()),
            pools[1],
            "gamma",
        ),
    ];
    MixedFakes {
        _live: vec![s5, http],
        _auth: auth,
        entries,
    }
}

/// What promtool says about `exposition` (stdin): exit code and output.
fn promtool_check_metrics(exposition: &str) -> (Option<i32>, String) {
    let promtool = require_binary(&["/usr/bin/promtool", "promtool"], "prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("promtool stdin");
        stdin
            .write_all(exposition.as_bytes())
            .expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Series keys (`name{labels}`) of an exposition, OpenMetrics or text.
/// Bucket bounds are normalised: OpenMetrics writes `le="1.0"`, text `le="1"`.
fn series_keys(samples: &[Sample]) -> BTreeSet<String> {
    samples
        .iter()
        .map(|s| {
            let mut labels = s.labels.clone();
            if let Some(le) = labels.get_mut("le") {
                if let Some(v) = parse_value(le) {
                    *le = v.to_string();
                }
            }
            format!("{}{labels:?}", s.name)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_text_and_openmetrics_scrapes() {
    let target = Target::http();
    let fakes = mixed_fakes(["p1", "p2"]).await;
    let dir = ServerDir::new("exporter-promtool");
    let inv = dir.write("inventory.yaml", inventory_yaml(&fakes.entries));
    let mut args = base_args(&inv, &target.url("/"));
    args.push(s("--metrics.per-proxy"));
    let ex = Exporter::start(dir.path(), &args).await;
    ex.wait_sweeps(2.0).await;

    // Classic text format (curl, promtool): clean, no lint complaints at all.
    let text = ex.quiescent_scrape().await;
    for family in [
        "pharox_check_duration_seconds_bucket",
        "pharox_checks_total",
        "pharox_check_errors_total",
        "pharox_proxies",
        "pharox_proxy_up",
        "pharox_exporter_build_info",
    ] {
        assert!(
            !text.series(family, &[]).is_empty(),
            "{family} missing from the scrape:\n{}",
            text.text
        );
    }
    let (code, out) = promtool_check_metrics(&text.text);
    assert_eq!(
        code,
        Some(0),
        "promtool check metrics rejects the text format:\n{out}\n{}",
        text.text
    );
    assert!(out.trim().is_empty(), "promtool complains: {out}");
    assert!(
        text.text.contains("# TYPE pharox_checks_total counter")
            && text
                .text
                .contains("# TYPE pharox_exporter_build_info gauge")
            && !text.text.contains("# EOF")
            && !text.text.contains("# UNIT"),
        "text 0.0.4 conventions:\n{}",
        text.text
    );

    // OpenMetrics (what Prometheus asks for).
    let r = ex
        .http
        .get(ex.url("/metrics"))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("OpenMetrics scrape");
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let om = r.text().await.expect("body");
    assert!(
        ctype.starts_with("application/openmetrics-text"),
        "content type {ctype:?}"
    );
    assert!(
        om.ends_with("# EOF\n"),
        "OpenMetrics must end with # EOF:\n{om}"
    );
    assert_eq!(om.matches("# EOF").count(), 1);
    // Line-wise: every line is a descriptor of a declared family or a sample
    // of a family declared before it.
    let mut declared: BTreeSet<String> = BTreeSet::new();
    let mut samples = Vec::new();
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            assert!(
                matches!(kind, "HELP" | "TYPE" | "UNIT") && !name.is_empty(),
                "bad descriptor line {line:?}"
            );
            if kind == "TYPE" {
                let ty = parts.next().unwrap_or_default();
                assert!(
                    matches!(ty, "counter" | "gauge" | "histogram"),
                    "unexpected type in {line:?}"
                );
                declared.insert(name.to_string());
            }
            continue;
        }
        let sample = parse_sample(line).unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let family_ok = declared.iter().any(|f| {
            sample.name == *f
                || ["_total", "_bucket", "_count", "_sum", "_created"]
                    .iter()
                    .any(|suffix| sample.name == format!("{f}{suffix}"))
        });
        assert!(family_ok, "sample {line:?} has no # TYPE before it");
        samples.push(sample);
    }
    // Same series in both formats (values move between scrapes; keys don't).
    let om_keys: BTreeSet<String> = series_keys(&samples)
        .into_iter()
        .filter(|k| !k.contains("_created"))
        .collect();
    assert_eq!(
        om_keys,
        series_keys(&text.samples),
        "OpenMetrics and text expose different series"
    );
    // promtool 2.42 lints OpenMetrics counters as "no help text" (the known
    // trap: it looks the HELP up under the `_total` name). Anything else it
    // says, or a parse failure (exit 1), is a real problem.
    let (code, out) = promtool_check_metrics(&om);
    if code != Some(0) {
        assert_eq!(
            code,
            Some(3),
            "promtool cannot parse the OpenMetrics scrape:\n{out}"
        );
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let known_trap = line
                .strip_suffix(" no help text")
                .is_some_and(|name| name.ends_with("_total"));
            assert!(known_trap, "promtool complains about OpenMetrics: {line}");
        }
    }
    drop(fakes);
}

// ---------------------------------------------------------------------------
// 3. Reload: POST /-/reload, a bad file, SIGHUP

fn reload_config(target: &Target, pool_override: Option<&str>, extra: &str) -> String {
    let mut c = format!(
        "defaults:\n  target_url: \"{}\"\n  timeout: 5\n  slow_threshold_ms: 600000\n{extra}\
         inventory:\n  path: inventory.yaml\n\
         sweep:\n  interval: 1s\n  shutdown_grace: 1s\n",
        target.url("/")
    );
    if let Some(path) = pool_override {
        c.push_str(&format!(
            "pools:\n  p1:\n    target_url: \"{}\"\n",
            target.url(path)
        ));
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_http_and_sighup_keeps_the_old_config_on_errors() {
    let target = Target::http();
    let live = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("fake");
    let dir = ServerDir::new("exporter-reload");
    dir.write(
        "inventory.yaml",
        inventory_yaml(&[entry(format!("socks5://{}", live.addr()), "p1", "alpha")]),
    );
    let cfg = dir.join("config.yaml");
    write_atomic(&cfg, &reload_config(&target, None, ""));
    let mut ex = Exporter::start(
        dir.path(),
        &[
            s("--config.file"),
            cfg.display().to_string(),
            s("--log.level"),
            s("debug"),
        ],
    )
    .await;
    let errors = |m: &Scrape| {
        m.sum(
            "pharox_check_errors_total",
            &[("pool", "p1"), ("reason", "unexpected_status")],
        )
    };
    let active = |m: &Scrape| m.sum("pharox_proxies", &[("pool", "p1"), ("status", "active")]);
    let m = ex.wait_for("p1 active", |m| active(m) == 1.0).await;
    assert_eq!(errors(&m), 0.0);
    let first_reload_ts = m.value("pharox_exporter_config_last_reload_success_timestamp_seconds");
    assert_eq!(m.value("pharox_sweep_interval_seconds"), 1.0);

    // Only POST (or PUT) reloads.
    assert_eq!(ex.get("/-/reload").await.0, 405);

    // A valid change: pool p1 now checks a URL answering 503, every 1.5 s.
    std::thread::sleep(Duration::from_millis(20)); // a later reload timestamp
    write_atomic(
        &cfg,
        &reload_config(&target, Some("/status/503"), "").replace("interval: 1s", "interval: 1.5s"),
    );
    let (code, body) = ex.post("/-/reload").await;
    assert_eq!(
        code,
        200,
        "reload of a valid file: {body}\n{}",
        ex.log_tail()
    );
    let m = ex.scrape().await;
    assert_eq!(
        m.value("pharox_exporter_config_last_reload_successful"),
        1.0
    );
    assert!(
        m.value("pharox_exporter_config_last_reload_success_timestamp_seconds") > first_reload_ts
    );
    assert_eq!(m.value("pharox_sweep_interval_seconds"), 1.5);
    let m = ex
        .wait_for("the pool override to take effect", |m| {
            errors(m) >= 1.0 && m.sum("pharox_proxies", &[("status", "inactive")]) == 1.0
        })
        .await;
    let sweeps_before_bad = m.value("pharox_sweeps_total");
    let errors_before_bad = errors(&m);

    // An invalid file: 500 naming file:line, gauge 0, the running config stays.
    write_atomic(&cfg, &reload_config(&target, Some("/"), "  attempts: 9\n"));
    let (code, body) = ex.post("/-/reload").await;
    assert_eq!(code, 500, "reload of an invalid file: {body}");
    let want = format!("{}:5:", cfg.display());
    assert!(
        body.contains(&want) && body.contains("attempts") && body.contains("between 1 and 5"),
        "the error names {want} and the field: {body}"
    );
    let m = ex
        .wait_for("two more sweeps after the failed reload", |m| {
            m.value("pharox_sweeps_total") >= sweeps_before_bad + 2.0
        })
        .await;
    assert_eq!(
        m.value("pharox_exporter_config_last_reload_successful"),
        0.0,
        "failed reload gauge\n{}",
        m.text
    );
    assert_eq!(
        m.value("pharox_sweep_interval_seconds"),
        1.5,
        "old interval kept"
    );
    assert!(
        errors(&m) > errors_before_bad && active(&m) == 0.0,
        "the last valid config (pool override to /status/503) still runs\n{}",
        m.text
    );
    assert!(ex.log_text().contains("configuration reload failed"));

    // SIGHUP reloads too: back to the plain config, the proxy recovers.
    write_atomic(&cfg, &reload_config(&target, None, ""));
    ex.signal(libc::SIGHUP);
    let m = ex
        .wait_for("SIGHUP reload", |m| {
            m.value("pharox_exporter_config_last_reload_successful") == 1.0
                && m.value("pharox_sweep_interval_seconds") == 1.0
        })
        .await;
    let errors_after_hup = errors(&m);
    let m = ex
        .wait_for("p1 active again after SIGHUP", |m| active(m) == 1.0)
        .await;
    let m2 = ex
        .wait_for("one more sweep", |n| {
            n.value("pharox_sweeps_total") >= m.value("pharox_sweeps_total") + 1.0
        })
        .await;
    assert!(errors(&m) >= errors_after_hup);
    assert_eq!(
        errors(&m2),
        errors(&m),
        "no 503 checks once the reloaded config runs\n{}",
        m2.text
    );
    assert!(ex.child_alive(), "{}", ex.log_tail());
}

// ---------------------------------------------------------------------------
// 4. SIGTERM: hanging checks are cut at the grace, others finish

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_sweep_exits_zero_within_the_grace() {
    let mut hanging = Vec::new();
    for i in 0..4 {
        let b = ProxyBehavior::fault(Fault::Hang);
        let p = if i % 2 == 0 {
            FakeProxy::socks5(b).await
        } else {
            FakeProxy::http(b).await
        }
        .expect("hanging fake");
        hanging.push(p);
    }
    let target = Target::http();
    let dir = ServerDir::new("exporter-sigterm");
    let entries: Vec<Entry> = hanging
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let scheme = if i % 2 == 0 { "socks5" } else { "http" };
            entry(format!("{scheme}://{}", p.addr()), "hang", "alpha")
        })
        .collect();
    let inv = dir.write("inventory.yaml", inventory_yaml(&entries));
    let grace = Duration::from_secs(1);
    let cfg = dir.write(
        "config.yaml",
        format!(
            "defaults:\n  target_url: \"{}\"\n  timeout: 60\n\
             sweep:\n  interval: 1s\n  shutdown_grace: {}s\n",
            target.url("/"),
            grace.as_secs()
        ),
    );
    let mut ex = Exporter::start(
        dir.path(),
        &[
            s("--config.file"),
            cfg.display().to_string(),
            s("--inventory"),
            inv.display().to_string(),
        ],
    )
    .await;
    ex.wait_for("4 checks in flight", |m| {
        m.value("pharox_checks_in_flight") == 4.0
    })
    .await;
    assert!(hanging.iter().all(|p| p.connections() >= 1));

    ex.signal(libc::SIGTERM);
    // The checks would hang for 60 s; the grace cuts them after 1 s. The
    // margin covers a loaded machine, and is still far below the timeout.
    let margin = Duration::from_secs(15);
    let status = ex.wait_exit(grace + margin).await;
    let log = ex.log_text();
    let status = status
        .unwrap_or_else(|| panic!("no exit within {:?} after SIGTERM:\n{log}", grace + margin));
    assert_eq!(status.code(), Some(0), "exit status {status}\n{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(
        log.contains("sweep interrupted by shutdown") && log.contains("abandoned=4"),
        "the log accounts for the abandoned checks:\n{log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_checks_finish_within_the_grace() {
    let target = Target::http();
    // Each answers its two handshake steps after 700 ms: a check takes 1.4 s+.
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(
            FakeProxy::socks5(ProxyBehavior {
                delay: Duration::from_millis(700),
                ..ProxyBehavior::healthy()
            })
            .await
            .expect("slow fake"),
        );
    }
    let dir = ServerDir::new("exporter-grace");
    let entries: Vec<Entry> = slow
        .iter()
        .map(|p| entry(format!("socks5://{}", p.addr()), "p1", "alpha"))
        .collect();
    let inv = dir.write("inventory.yaml", inventory_yaml(&entries));
    let cfg = dir.write(
        "config.yaml",
        "sweep:\n  interval: 1s\n  shutdown_grace: 30s\n",
    );
    let mut args = base_args(&inv, &target.url("/"));
    args.extend([s("--config.file"), cfg.display().to_string()]);
    let mut ex = Exporter::start(dir.path(), &args).await;

    // Every sweep outlasts the 1 s interval: counted, and never overlapping.
    let m = ex
        .wait_for("two overrun sweeps", |m| {
            assert!(
                m.value("pharox_checks_in_flight") <= 2.0,
                "sweeps overlap:\n{}",
                m.text
            );
            m.value("pharox_sweep_overruns_total") >= 2.0
        })
        .await;
    assert_eq!(
        m.value("pharox_sweep_overruns_total"),
        m.value("pharox_sweeps_total"),
        "{}",
        m.text
    );
    assert!(ex.log_text().contains("sweep overran its interval"));

    // Signal right as a new check dials: it has 1.4 s of handshake left, so
    // the signal surely lands mid-sweep, not in the gap between two sweeps.
    let before = slow[0].connections();
    let deadline = Instant::now() + WAIT_TIMEOUT;
    while slow[0].connections() == before {
        assert!(Instant::now() < deadline, "no new check started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ex.signal(libc::SIGTERM);
    let status = ex.wait_exit(Duration::from_secs(45)).await;
    let log = ex.log_text();
    let status = status.unwrap_or_else(|| panic!("no exit after SIGTERM:\n{log}"));
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("sweep interrupted by shutdown")
            && log.contains("completed=2")
            && log.contains("abandoned=0"),
        "checks in flight finish within the grace:\n{log}"
    );
}

/// `/metrics` keeps answering while in-flight checks drain: the server is the
/// last thing to stop, so the final scrapes see the shutdown happen. Each
/// scrape uses a fresh connection (no keep-alive), as a new scrape would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_metrics_answering_through_the_grace() {
    let mut hanging = Vec::new();
    for _ in 0..2 {
        hanging.push(
            FakeProxy::http(ProxyBehavior::fault(Fault::Hang))
                .await
                .expect("hanging fake"),
        );
    }
    let target = Target::http();
    let dir = ServerDir::new("exporter-sigterm-scrape");
    let entries: Vec<Entry> = hanging
        .iter()
        .map(|p| entry(format!("http://{}", p.addr()), "hang", "alpha"))
        .collect();
    let inv = dir.write("inventory.yaml", inventory_yaml(&entries));
    let grace = Duration::from_secs(4);
    let cfg = dir.write(
        "config.yaml",
        format!(
            "defaults:\n  target_url: \"{}\"\n  timeout: 60\n\
             sweep:\n  interval: 1s\n  shutdown_grace: {}s\n",
            target.url("/"),
            grace.as_secs()
        ),
    );
    let mut ex = Exporter::start(
        dir.path(),
        &[
            s("--config.file"),
            cfg.display().to_string(),
            s("--inventory"),
            inv.display().to_string(),
        ],
    )
    .await;
    ex.wait_for("2 checks in flight", |m| {
        m.value("pharox_checks_in_flight") == 2.0
    })
    .await;

    let signalled = Instant::now();
    ex.signal(libc::SIGTERM);
    // Scrape on new connections for the first half of the grace: every one
    // answers, and shows the checks still draining.
    let mut scrapes = 0;
    while signalled.elapsed() < grace / 2 {
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("reqwest client");
        let r = fresh
            .get(ex.url("/metrics"))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "GET /metrics {:?} after SIGTERM, within the {grace:?} grace: {e}\n{}",
                    signalled.elapsed(),
                    ex.log_tail()
                )
            });
        assert_eq!(r.status().as_u16(), 200);
        let m = Scrape::parse(r.text().await.expect("body"));
        assert_eq!(m.value("pharox_checks_in_flight"), 2.0, "{}", m.text);
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(scrapes >= 3, "only {scrapes} scrapes during the grace");

    let margin = Duration::from_secs(15);
    let status = ex.wait_exit(grace + margin).await;
    let log = ex.log_text();
    let status = status
        .unwrap_or_else(|| panic!("no exit within {:?} after SIGTERM:\n{log}", grace + margin));
    assert_eq!(status.code(), Some(0), "exit status {status}\n{log}");
    assert!(
        log.contains("abandoned=2") && log.contains("stopped"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------
// 5. Inventory changes reach the metrics; readiness needs an inventory

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_removed_from_the_inventory_disappear_from_the_gauges() {
    let target = Target::http();
    let a = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("a");
    let b = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("b");
    let c = FakeProxy::http(ProxyBehavior::healthy()).await.expect("c");
    let d = FakeProxy::http(ProxyBehavior::healthy()).await.expect("d");
    let dir = ServerDir::new("exporter-inventory");
    let inv = dir.join("inventory.yaml");
    let ea = || entry(format!("socks5://{}", a.addr()), "pa", "x");
    let eb = || entry(format!("socks5://{}", b.addr()), "pb", "y");
    write_atomic(
        &inv,
        &inventory_yaml(&[ea(), eb(), entry(format!("http://{}", c.addr()), "pb", "z")]),
    );
    let ex = Exporter::start(dir.path(), &base_args(&inv, &target.url("/"))).await;
    let m = ex
        .wait_for("three active proxies", |m| {
            m.sum("pharox_proxies", &[("status", "active")]) == 3.0
        })
        .await;
    assert_eq!(
        m.label_values("pharox_proxies", "provider", &[("pool", "pb")]),
        BTreeSet::from([s("y"), s("z")])
    );

    // Drop pb/z, add pc/w.
    write_atomic(
        &inv,
        &inventory_yaml(&[ea(), eb(), entry(format!("http://{}", d.addr()), "pc", "w")]),
    );
    let m = ex
        .wait_for("the new inventory in the gauges", |m| {
            m.series("pharox_proxies", &[("provider", "z")]).is_empty()
                && m.sum("pharox_proxies", &[("pool", "pc"), ("status", "active")]) == 1.0
        })
        .await;
    assert!(m
        .series("pharox_proxies_unchecked", &[("provider", "z")])
        .is_empty());
    assert_eq!(m.value("pharox_inventory_proxies"), 3.0);
    assert_eq!(
        m.sum("pharox_proxies", &[("pool", "pb")]),
        1.0,
        "pb keeps only y\n{}",
        m.text
    );
    assert_eq!(m.sum("pharox_proxies", &[("status", "active")]), 3.0);
    // The history of the removed proxy stays in its counters.
    assert!(m.sum("pharox_checks_total", &[("provider", "z")]) >= 1.0);
    let (_, status) = ex.get("/api/status").await;
    let v: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let pools: BTreeSet<String> = v["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .filter_map(|p| p["pool"].as_str().map(String::from))
        .collect();
    assert_eq!(
        pools,
        BTreeSet::from([s("pa"), s("pb"), s("pc")]),
        "{status}"
    );
    assert_eq!(v["totals"]["total"], 3, "{status}");

    // A broken inventory file keeps the previous inventory and is counted.
    write_atomic(&inv, "- url: [not, a, url\n");
    let m = ex
        .wait_for("the read error counted", |m| {
            m.sum("pharox_inventory_errors_total", &[("kind", "read")]) >= 1.0
        })
        .await;
    assert_eq!(m.value("pharox_inventory_proxies"), 3.0, "{}", m.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_inventory_is_loaded() {
    let target = Target::http();
    let live = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("fake");
    let dir = ServerDir::new("exporter-ready");
    let inv = dir.join("inventory.yaml"); // not there yet
    let ex =
        Exporter::start_until(dir.path(), &base_args(&inv, &target.url("/")), "/-/healthy").await;
    ex.wait_for("two failed inventory reads", |m| {
        m.sum("pharox_inventory_errors_total", &[("kind", "read")]) >= 2.0
    })
    .await;
    let (code, body) = ex.get("/-/ready").await;
    assert_eq!(
        code,
        503,
        "ready without an inventory: {body}\n{}",
        ex.log_tail()
    );

    // The file appears: the next sweep loads it, and the exporter is ready.
    write_atomic(
        &inv,
        &inventory_yaml(&[entry(format!("socks5://{}", live.addr()), "p1", "alpha")]),
    );
    ex.wait_for("the proxy checked", |m| {
        m.sum("pharox_proxies", &[("status", "active")]) == 1.0
    })
    .await;
    assert_eq!(ex.get("/-/ready").await.0, 200);
}

// ---------------------------------------------------------------------------
// 6. Per-proxy series, capped

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_proxy_series_are_capped_and_never_carry_passwords() {
    let target = Target::http();
    let mut fakes = Vec::new();
    let mut entries = Vec::new();
    let mut ids = Vec::new();
    let mut passwords = Vec::new();
    for i in 0..5 {
        let (user, pass) = (format!("user{i}"), format!("PerProxy-S3cret-{i}"));
        let p = FakeProxy::socks5(ProxyBehavior::healthy().with_auth(&user, &pass))
            .await
            .expect("fake");
        entries.push(entry(
            format!("socks5://{user}:{pass}@{}", p.addr()),
            "pp",
            "alpha",
        ));
        ids.push(Proxy::derive_id(
            ProxyProtocol::Socks5,
            Some(&user),
            "127.0.0.1",
            p.addr().port(),
        ));
        passwords.push(pass);
        fakes.push(p);
    }
    ids.sort();
    let dir = ServerDir::new("exporter-perproxy");
    let inv = dir.write("inventory.yaml", inventory_yaml(&entries));
    let cfg = dir.write("config.yaml", "metrics:\n  per_proxy_limit: 2\n");
    let mut args = base_args(&inv, &target.url("/"));
    args.extend([
        s("--config.file"),
        cfg.display().to_string(),
        s("--metrics.per-proxy"),
        s("--log.format"),
        s("json"),
    ]);
    let ex = Exporter::start(dir.path(), &args).await;
    let m = ex
        .wait_for("five proxies checked", |m| {
            m.sum("pharox_proxies", &[("status", "active")]) == 5.0
        })
        .await;
    let secrets: Vec<&str> = passwords.iter().map(String::as_str).collect();
    for family in [
        "pharox_proxy_up",
        "pharox_proxy_latency_seconds",
        "pharox_proxy_last_check_timestamp_seconds",
    ] {
        let got = m.label_values(family, "proxy_id", &[]);
        assert_eq!(
            got,
            ids[..2].iter().cloned().collect(),
            "{family}: the two lowest ids\n{}",
            m.text
        );
        assert_eq!(m.series(family, &[]).len(), 2);
    }
    assert_eq!(m.sum("pharox_proxy_up", &[]), 2.0);
    assert_eq!(m.value("pharox_proxy_series_dropped"), 3.0, "{}", m.text);
    for sample in &m.samples {
        for value in sample.labels.values() {
            assert_no_secret("a label value", value, &secrets);
        }
    }
    assert_no_secret("/metrics", &m.text, &secrets);
    // The same two proxies at the next scrape: the cap is stable.
    let again = ex.scrape().await;
    assert_eq!(
        again.label_values("pharox_proxy_up", "proxy_id", &[]),
        ids[..2].iter().cloned().collect()
    );
    let log = ex.log_text();
    assert_no_secret("the exporter's JSON log", &log, &secrets);
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "--log.format json writes one JSON object per line: {line}"
        );
    }
    drop(ex);

    // Set in the file instead of by flag, per-proxy series follow reloads:
    // a higher cap exports all five, and switching them off leaves no
    // series and nothing "dropped" behind.
    let cfg = dir.join("reloadable.yaml");
    write_atomic(&cfg, "metrics:\n  per_proxy: true\n  per_proxy_limit: 2\n");
    let mut args = base_args(&inv, &target.url("/"));
    args.extend([s("--config.file"), cfg.display().to_string()]);
    let ex = Exporter::start(dir.path(), &args).await;
    ex.wait_for("the cap at 2", |m| {
        m.series("pharox_proxy_up", &[]).len() == 2 && m.value("pharox_proxy_series_dropped") == 3.0
    })
    .await;
    write_atomic(&cfg, "metrics:\n  per_proxy: true\n  per_proxy_limit: 10\n");
    assert_eq!(ex.post("/-/reload").await.0, 200);
    let m = ex.scrape().await;
    assert_eq!(m.series("pharox_proxy_up", &[]).len(), 5, "{}", m.text);
    assert_eq!(m.value("pharox_proxy_series_dropped"), 0.0, "{}", m.text);
    write_atomic(&cfg, "metrics:\n  per_proxy: true\n  per_proxy_limit: 1\n");
    assert_eq!(ex.post("/-/reload").await.0, 200);
    assert_eq!(ex.scrape().await.value("pharox_proxy_series_dropped"), 4.0);
    write_atomic(&cfg, "metrics:\n  per_proxy: false\n  per_proxy_limit: 1\n");
    assert_eq!(ex.post("/-/reload").await.0, 200);
    let m = ex.scrape().await;
    assert!(m.series("pharox_proxy_up", &[]).is_empty(), "{}", m.text);
    assert_eq!(
        m.value("pharox_proxy_series_dropped"),
        0.0,
        "with per-proxy series off, none are dropped by the cap\n{}",
        m.text
    );
}

// ---------------------------------------------------------------------------
// 7. /probe

async fn probe(ex: &Exporter, target: String) -> (u16, String) {
    ex.request(ex.http.get(ex.url("/probe")).query(&[("target", target)]))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_endpoint_checks_inventory_proxies_and_guards_others() {
    let target = Target::http();
    // In the inventory, with credentials the probe must take from there.
    let known = FakeProxy::socks5(ProxyBehavior::healthy().with_auth("inv", "Inv-S3cret-1"))
        .await
        .expect("known");
    let stranger = FakeProxy::http(ProxyBehavior::healthy())
        .await
        .expect("stranger");
    let dir = ServerDir::new("exporter-probe");
    let inv = dir.write(
        "inventory.yaml",
        inventory_yaml(&[entry(
            format!("socks5://inv:Inv-S3cret-1@{}", known.addr()),
            "p1",
            "alpha",
        )]),
    );
    let ex = Exporter::start(dir.path(), &base_args(&inv, &target.url("/"))).await;
    let (code, body) = probe(&ex, format!("socks5://{}", known.addr())).await;
    assert_eq!(code, 200, "{body}");
    let m = Scrape::parse(body);
    assert_eq!(m.value("probe_success"), 1.0, "{}", m.text);
    assert_eq!(m.value("probe_http_status_code"), 200.0);
    assert_eq!(
        m.sum("probe_proxy_status", &[("status", "active")]),
        1.0,
        "{}",
        m.text
    );
    assert!(m.series("probe_failure", &[]).is_empty());
    let (pcode, pout) = promtool_check_metrics(&m.text);
    assert_eq!(pcode, Some(0), "promtool on /probe: {pout}\n{}", m.text);
    assert_no_secret("/probe", &m.text, &["Inv-S3cret-1"]);

    let (code, body) = probe(&ex, format!("http://{}", stranger.addr())).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("allow_arbitrary_probe_targets"), "{body}");
    let (code, body) = probe(
        &ex,
        format!("http://nosy:Nosy-S3cret-2@{}", stranger.addr()),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_no_secret("a /probe refusal", &body, &["Nosy-S3cret-2"]);
    assert_eq!(stranger.connections(), 0, "a refused probe never dials");
    assert_eq!(ex.get("/probe").await.0, 400);
    assert_eq!(ex.get("/probe?target=ftp://127.0.0.1:21").await.0, 400);
    drop(ex);

    let cfg = dir.write(
        "config.yaml",
        "web:\n  allow_arbitrary_probe_targets: true\n",
    );
    let mut args = base_args(&inv, &target.url("/"));
    args.extend([
        s("--config.file"),
        cfg.display().to_string(),
        s("--web.telemetry-path"),
        s("/custom-metrics"),
    ]);
    let ex = Exporter::start(dir.path(), &args).await;
    let (code, body) = ex.get("/custom-metrics").await;
    assert!(
        code == 200 && body.contains("pharox_exporter_build_info"),
        "{body}"
    );
    assert_eq!(ex.get("/metrics").await.0, 404);
    let (_, page) = ex.get("/").await;
    assert!(page.contains("href=\"/custom-metrics\""), "{page}");
    let (code, body) = probe(&ex, format!("http://{}", stranger.addr())).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(Scrape::parse(body).value("probe_success"), 1.0);
    assert!(stranger.connections() >= 1);
    let (code, body) = probe(&ex, format!("socks5://127.0.0.1:{}", refused_port())).await;
    assert_eq!(code, 200, "{body}");
    let m = Scrape::parse(body);
    assert_eq!(m.value("probe_success"), 0.0);
    assert_eq!(
        m.sum(
            "probe_failure",
            &[("reason", "connect_refused"), ("phase", "connect")]
        ),
        1.0,
        "{}",
        m.text
    );
    // OpenMetrics on request.
    let (code, body) = ex
        .request(
            ex.http
                .get(ex.url("/probe"))
                .query(&[("target", format!("http://{}", stranger.addr()))])
                .header("Accept", "application/openmetrics-text"),
        )
        .await;
    assert_eq!(code, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
}

// ---------------------------------------------------------------------------
// 8. The status page in a real browser

/// A process in its own group, killed with the group on Drop (chromium
/// forks zygotes and renderers); stdout and stderr to separate files.
struct Browser(Option<Child>);

impl Browser {
    fn spawn(mut cmd: Command, stdout: &Path, stderr: &Path) -> Browser {
        let out = std::fs::File::create(stdout).expect("stdout file");
        let err = std::fs::File::create(stderr).expect("stderr file");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        Browser(Some(cmd.spawn().expect("spawn chromium")))
    }

    /// Wait (bounded) for exit; the group is killed either way.
    async fn finish(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.0.as_mut()?;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                self.kill();
                return Some(s);
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SAFETY: signals the process group created for this child.
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The part of `dom` from `start` to the first `end` after it.
fn section<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let at = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the DOM:\n{dom}"));
    let rest = &dom[at..];
    &rest[..rest.find(end).map(|i| i + end.len()).unwrap_or(rest.len())]
}

/// The text right inside the element with `id` (up to its first child tag).
fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in the DOM:\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').map(|i| i + 1).unwrap_or(0);
    let end = rest[start..]
        .find('<')
        .map(|i| start + i)
        .unwrap_or(rest.len());
    &rest[start..end]
}

/// Run headless chromium on `url` with `mode` (`--dump-dom` or
/// `--screenshot=...`) for `budget_ms` of virtual time; returns stdout.
async fn chromium(dir: &Path, url: &str, mode: &str, budget_ms: u32) -> String {
    let bin = require_binary(&["/usr/bin/chromium", "chromium"], "chromium");
    let n = LOG_SEQ.fetch_add(1, Ordering::SeqCst);
    let profile = dir.join(format!("chromium-profile-{n}"));
    let (out, err) = (
        dir.join(format!("chromium-{n}.html")),
        dir.join(format!("chromium-{n}.err")),
    );
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        "--hide-scrollbars",
        "--window-size=1280,1400",
    ])
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(mode)
    .arg(url);
    let mut b = Browser::spawn(cmd, &out, &err);
    let status = b.finish(Duration::from_secs(90)).await;
    let stderr = tail(&err, 4000);
    let status = status.unwrap_or_else(|| panic!("chromium {mode} did not finish:\n{stderr}"));
    assert!(status.success(), "chromium {mode}: {status}\n{stderr}");
    std::fs::read_to_string(&out).unwrap_or_default()
}

const XSS_PROVIDER: &str = "<i id=\"xss\">delta</i>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_headless_chromium() {
    let target = Target::http();
    let fakes = mixed_fakes(["residential", "datacenter"]).await;
    // A SLOW proxy: answers after 300 ms, over a 100 ms slow threshold.
    let slow = FakeProxy::socks5(ProxyBehavior {
        delay: Duration::from_millis(300),
        ..ProxyBehavior::healthy()
    })
    .await
    .expect("slow fake");
    let dir = ServerDir::new("exporter-page");
    let mut entries = fakes
        .entries
        .iter()
        .map(|e| entry(e.url.clone(), e.pool, e.provider))
        .collect::<Vec<_>>();
    // Its provider is markup: the page must show it as text, never run it.
    entries.push(entry(
        format!("socks5://{}", slow.addr()),
        "datacenter",
        XSS_PROVIDER,
    ));
    let inv = dir.write("inventory.yaml", inventory_yaml(&entries));
    // Only the slow proxy's pool gets a low threshold: its fake waits 300 ms
    // before each of its two handshake answers, so it is SLOW however fast
    // the machine, and nothing else can turn SLOW by load.
    let cfg = dir.write(
        "config.yaml",
        "defaults:\n  slow_threshold_ms: 600000\npools:\n  datacenter:\n    slow_threshold_ms: 100\n",
    );
    let mut args = base_args(&inv, &target.url("/"));
    args.extend([s("--config.file"), cfg.display().to_string()]);
    // Flags override every layer of the file: drop the flag's threshold.
    let i = args
        .iter()
        .position(|a| a == "--slow-threshold-ms")
        .expect("flag");
    args.drain(i..i + 2);
    let ex = Exporter::start(dir.path(), &args).await;
    ex.wait_for("every proxy checked", |m| {
        m.sum("pharox_proxies_unchecked", &[]) == 0.0
            && m.sum("pharox_proxies", &[("status", "slow")]) == 1.0
    })
    .await;

    // Self-contained: no external script, style, font or image.
    let (_, html) = ex.get("/").await;
    for external in ["<script src", "<link", "@import", "url(", "<img", "<iframe"] {
        assert!(
            !html.contains(external),
            "external asset {external:?} in the page"
        );
    }
    let http_refs: BTreeSet<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 34).min(html.len())])
        .collect();
    assert!(
        http_refs
            .iter()
            .all(|r| r.starts_with("http://www.w3.org/2000/svg")),
        "only the SVG namespace may be an absolute URL: {http_refs:?}"
    );
    assert!(
        !html.contains("http-equiv"),
        "the page must not reload itself"
    );

    let url = ex.url("/");
    let dom = chromium(dir.path(), &url, "--dump-dom", 11_000).await;
    let ctx = || format!("\nDOM:\n{dom}\n{}", ex.log_tail());
    // Everything below comes from /api/status through the script: the static
    // HTML names no pool or reason, and its own SVG templates live in the
    // script, not in the elements checked.
    let pools_table = section(&dom, "id=\"pools\"", "</table>");
    for pool in ["residential", "datacenter"] {
        assert!(
            pools_table.contains(&format!("<td>{pool}</td>")),
            "the pools table lacks {pool}{}",
            ctx()
        );
    }
    assert!(
        pools_table.contains("<svg") && pools_table.contains("<title>1 slow</title>"),
        "per-pool status bars{}",
        ctx()
    );
    let chart = section(&dom, "id=\"chart\"", "</svg>");
    assert!(
        chart.contains("><svg")
            && chart.contains("Latency distribution of 3 working proxies")
            && chart.contains("<rect"),
        "an inline SVG latency chart of the 3 working proxies{}",
        ctx()
    );
    let worst = section(&dom, "id=\"worst\"", "</table>");
    for reason in ["connect_refused", "proxy_auth_failed"] {
        assert!(
            worst.contains(reason),
            "worst proxies lack {reason}{}",
            ctx()
        );
    }
    assert!(
        worst.contains(">INACTIVE<") && worst.contains(">SLOW<"),
        "{}",
        ctx()
    );
    assert_ne!(
        element_text(&dom, "meta"),
        "loading…",
        "the script never ran{}",
        ctx()
    );
    // 11 s of virtual time: the first fetch and the 5 s and 10 s refreshes,
    // all on the same page load.
    let refreshes: u32 = section(&dom, "data-refreshes=\"", ">")
        .trim_start_matches("data-refreshes=\"")
        .trim_end_matches(['"', '>'])
        .parse()
        .unwrap_or_else(|_| panic!("no refresh count on <body>{}", ctx()));
    assert!(refreshes >= 2, "{refreshes} refreshes{}", ctx());
    assert_eq!(
        element_text(&dom, "error"),
        "",
        "fetch('/api/status') failed{}",
        ctx()
    );
    // Counts as the page shows them, read back through their stable ids.
    for (id, want) in [
        ("total-active", "2"),
        ("total-slow", "1"),
        ("total-inactive", "2"),
        ("total-banned", "0"),
        ("total-unchecked", "0"),
    ] {
        assert_eq!(element_text(&dom, id), want, "#{id}{}", ctx());
    }
    // A worst-proxies row: the proxy with its reason.
    let row = worst
        .split("<tr")
        .find(|r| r.contains("proxy_auth_failed"))
        .unwrap_or_else(|| panic!("no worst row with a reason{}", ctx()));
    assert!(
        row.contains("svc:***@") && row.contains("datacenter"),
        "the row names the redacted proxy and its pool: {row}"
    );
    assert_no_secret("the status page", &dom, &[WRONG_PASS]);
    assert!(
        !dom.contains(XSS_PROVIDER) && worst.contains("&lt;i id=\"xss\"&gt;delta&lt;/i&gt;"),
        "inventory labels are escaped on the page{}",
        ctx()
    );

    // The screenshot is an artifact for humans (and for reviewing the page).
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let png = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    chromium(dir.path(), &url, &shot, 5_000).await;
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} is not a plausible PNG ({} bytes)",
        png.display(),
        bytes.len()
    );
    drop(fakes);
}
