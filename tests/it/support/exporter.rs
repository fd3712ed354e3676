//! The exporter as a process: the real `pharox-exporter` binary on
//! 127.0.0.1:<free port>, killed with its process group on Drop, polled with
//! bounded waits; and the inventories and flags the tests start it with.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pharox_testkit::free_port;

use super::exposition::Scrape;
use super::process::{tail, ChildGuard};

pub(crate) const EXPORTER: &str = env!("CARGO_BIN_EXE_pharox-exporter");

/// How long the exporter gets to answer `/-/ready`.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on every "wait until the exporter shows X" poll.
pub(crate) const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// The binary tests start: this build's, or the one named by
/// `PHAROX_TEST_EXPORTER` (to measure another build with the same tests,
/// e.g. the before/after figures of the abuse tests).
pub(crate) fn exporter_bin() -> String {
    std::env::var("PHAROX_TEST_EXPORTER").unwrap_or_else(|_| EXPORTER.to_string())
}

/// How [`Exporter::start_with`] starts and reaches the exporter.
#[derive(Clone)]
pub(crate) struct Launch {
    /// Polled until it answers 200.
    pub(crate) up_path: String,
    /// The client for every request (TLS roots, credentials); default: plain.
    pub(crate) http: Option<reqwest::Client>,
    /// The web config serves TLS: `https://` URLs.
    pub(crate) tls: bool,
    /// Soft and hard `RLIMIT_NOFILE` of the exporter (it raises its soft
    /// limit to the hard one, so both are set).
    pub(crate) nofile: Option<u64>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            up_path: "/-/ready".to_string(),
            http: None,
            tls: false,
            nofile: None,
        }
    }
}

/// Set the child's file-descriptor limit (soft and hard) before exec.
fn limit_nofile(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    let lim = libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: n as libc::rlim_t,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running exporter; killed (whole process group) when dropped.
pub(crate) struct Exporter {
    pub(crate) child: ChildGuard,
    pub(crate) base: String,
    pub(crate) log: PathBuf,
    pub(crate) http: reqwest::Client,
}

impl Exporter {
    /// Start the binary with `args` plus a free loopback listen address, and
    /// wait until `/-/ready` answers 200. A lost race for the port (the
    /// process exits saying it cannot listen) is retried on another port.
    pub(crate) async fn start(dir: &Path, args: &[String]) -> Exporter {
        Exporter::start_until(dir, args, "/-/ready").await
    }

    /// Like [`Exporter::start`], waiting for `up_path` to answer 200 instead.
    pub(crate) async fn start_until(dir: &Path, args: &[String], up_path: &str) -> Exporter {
        let launch = Launch {
            up_path: up_path.to_string(),
            ..Launch::default()
        };
        Exporter::start_with(dir, args, launch).await
    }

    /// Start as `launch` says (TLS, a client of its own, a descriptor limit).
    pub(crate) async fn start_with(dir: &Path, args: &[String], launch: Launch) -> Exporter {
        let http = launch.http.clone().unwrap_or_else(|| {
            reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client")
        });
        let scheme = if launch.tls { "https" } else { "http" };
        let up_path = launch.up_path.as_str();
        for _ in 0..3 {
            let port = free_port();
            let log = dir.join(format!(
                "exporter-{}.log",
                LOG_SEQ.fetch_add(1, Ordering::SeqCst)
            ));
            let mut cmd = Command::new(exporter_bin());
            cmd.args(args)
                .arg("--web.listen-address")
                .arg(format!("127.0.0.1:{port}"))
                .env_remove("RUST_LOG");
            if let Some(n) = launch.nofile {
                limit_nofile(&mut cmd, n);
            }
            let child = ChildGuard::spawn("pharox-exporter", cmd, &log);
            let mut ex = Exporter {
                child,
                base: format!("{scheme}://127.0.0.1:{port}"),
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn pid(&self) -> libc::pid_t {
        self.child.pid() as libc::pid_t
    }

    /// Send a signal to the exporter (not its group: the exporter alone).
    pub(crate) fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn log_tail(&self) -> String {
        format!(
            "----- exporter log ({}) -----\n{}",
            self.log.display(),
            tail(&self.log, 8000)
        )
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        self.request(self.http.get(self.url(path))).await
    }

    pub(crate) async fn post(&self, path: &str) -> (u16, String) {
        self.request(self.http.post(self.url(path))).await
    }

    pub(crate) async fn request(&self, req: reqwest::RequestBuilder) -> (u16, String) {
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.log_tail()));
        let code = r.status().as_u16();
        (code, r.text().await.expect("response body"))
    }

    /// One scrape of `/metrics` in the classic text format.
    pub(crate) async fn scrape(&self) -> Scrape {
        let (code, text) = self.get("/metrics").await;
        assert_eq!(code, 200, "GET /metrics: {text}");
        Scrape::parse(text)
    }

    /// Poll `/metrics` until `pred` holds, at most [`WAIT_TIMEOUT`].
    pub(crate) async fn wait_for(&self, what: &str, pred: impl Fn(&Scrape) -> bool) -> Scrape {
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
    pub(crate) async fn wait_sweeps(&self, n: f64) -> Scrape {
        self.wait_for(&format!("{n} completed sweeps"), |s| {
            s.value("pharox_exporter_sweeps_total") >= n
        })
        .await
    }

    /// A scrape taken between two sweeps, so that counters updated together
    /// per check (checks_total, the latency histogram) are consistent: no
    /// sweep was running at the end of this scrape nor at the end of the next
    /// one, and no sweep completed in between.
    pub(crate) async fn quiescent_scrape(&self) -> Scrape {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let a = self.scrape().await;
            if a.value("pharox_exporter_sweep_proxies") == 0.0 {
                let b = self.scrape().await;
                if b.value("pharox_exporter_sweep_proxies") == 0.0
                    && b.value("pharox_exporter_sweeps_total")
                        == a.value("pharox_exporter_sweeps_total")
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

    pub(crate) fn child_alive(&mut self) -> bool {
        self.child.exited().is_none()
    }

    /// Wait (bounded) for the process to exit; `None` if it did not.
    pub(crate) async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
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

// Inventories and configs

/// One inventory entry.
pub(crate) struct Entry {
    pub(crate) url: String,
    pub(crate) pool: &'static str,
    pub(crate) provider: &'static str,
}

pub(crate) fn entry(url: impl Into<String>, pool: &'static str, provider: &'static str) -> Entry {
    Entry {
        url: url.into(),
        pool,
        provider,
    }
}

pub(crate) fn inventory_yaml(entries: &[Entry]) -> String {
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
pub(crate) fn write_atomic(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {}: {e}", path.display()));
}

pub(crate) fn s(v: impl Into<String>) -> String {
    v.into()
}

/// Flags every test uses: a one-second sweep against `target`, a slow
/// threshold far above the timeout (a loaded machine never turns ACTIVE
/// into SLOW: tests assert behaviour, not speed), debug logs.
pub(crate) fn base_args(inventory: &Path, target: &str) -> Vec<String> {
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

pub(crate) fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} leaks the password {secret:?}:\n{text}"
        );
    }
}
