//! End-to-end tests of the exporter: the real `pharox-exporter` binary on
//! 127.0.0.1:<free port>, sweeping real proxies (Debian packages, see
//! `support/proxies.rs`) and in-process fakes (`pharox_testkit`),
//! scraped over HTTP as Prometheus would.
//!
//! Every test writes its inventory and config into its own temp dir, starts
//! its own exporter (killed with its process group on Drop), waits for
//! `/-/ready` and for completed sweeps with bounded polls, and asserts on
//! what a scrape, `/api/status`, the status page or the process itself shows.
//! Sweeps run every second with short timeouts, so the whole module stays
//! quick.
//!
//! What is covered, one test each: metric families, labels and values
//! against real proxies (and no password anywhere); `promtool check metrics`
//! on both exposition formats; reload by HTTP and SIGHUP, a bad file keeping
//! the old config; SIGTERM mid-sweep (hanging checks cut at the grace,
//! short ones allowed to finish, overruns counted); inventory edits reaching
//! the gauges; readiness; the per-proxy cap; `/probe`; the status page in
//! headless chromium (screenshot kept in `target/test-artifacts/`); the web
//! config (TLS, basic auth, client certificates, rotation) with curl and a
//! real Prometheus; abuse of the web port (idle connections, slowloris,
//! reload and `/probe` floods); exits through our own judge (anonymity
//! levels, exit countries, geo mismatches, `min_anonymity`) in `/metrics`
//! and `/api/status`, and a reloaded exit policy.
//!
//! External tools are required, never skipped: `promtool` (Debian package
//! `prometheus`) and `chromium` (Debian package `chromium`).

mod abuse;
mod exits;
mod inventory;
mod metrics;
mod probe_endpoint;
mod reload;
mod shutdown;
mod status_page;
mod web_security;

use std::process::{Command, Stdio};

use pharox_testkit::{refused_port, FakeProxy, ProxyBehavior, RefusedPort};

use crate::support::exporter::{entry, Entry};
use crate::support::process::require_binary;

// Credentials shared by several tests; asserted absent from every output.
const MS_USER: &str = "alice";
const MS_PASS: &str = "Ms-S3cret-4711";
const WRONG_USER: &str = "mallory";
const WRONG_PASS: &str = "Wr0ng-S3cret-1337";
const ROW_PASS: &str = "R0w-S3cret-2024";

/// The fakes of a small, mixed inventory: two live proxies, a dead one and
/// one that rejects its credentials. Dropping it stops them.
struct MixedFakes {
    _live: Vec<FakeProxy>,
    _auth: FakeProxy,
    _dead: RefusedPort,
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
    let dead = refused_port();
    let entries = vec![
        entry(format!("socks5://{}", s5.addr()), pools[0], "alpha"),
        entry(format!("http://{}", http.addr()), pools[0], "beta"),
        entry(
            format!("socks4://127.0.0.1:{}", dead.port()),
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
        _dead: dead,
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
