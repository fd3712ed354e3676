//! The status page in headless chromium (screenshot kept in
//! `target/test-artifacts/`).

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pharox_testkit::{FakeProxy, ProxyBehavior, ThreadTarget};

use super::*;
use crate::support::exporter::*;
use crate::support::process::*;

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
    let target = ThreadTarget::http();
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
    // Absolute URLs (the page also names the reason `http`, which is no URL).
    let http_refs: BTreeSet<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 34).min(html.len())])
        .filter(|r| r.starts_with("http://") || r.starts_with("https://"))
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
            pools_table.contains(&format!("\">{pool}</a></td>")),
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
    // And its id, which tells apart entries that differ only in their password.
    assert!(
        worst.contains("<th>ID</th>") && row.contains(">socks5://svc@127.0.0.1:"),
        "the row names the proxy's id: {row}"
    );
    // "N of M": 2 INACTIVE and 1 SLOW, all shown.
    assert_eq!(
        element_text(&dom, "worst-count"),
        "(3 of 3; INACTIVE first, then the slowest)",
        "{}",
        ctx()
    );
    // What the failure took beside pharox's latency (the timeout, 5 s): a
    // refused connection is not a 5 s timeout.
    let refused = worst
        .split("<tr")
        .find(|r| r.contains("connect_refused"))
        .unwrap_or_else(|| panic!("no refused row{}", ctx()));
    let nums: Vec<&str> = refused
        .split("<td class=\"num")
        .skip(1)
        .filter_map(|c| c.split('>').nth(1)?.split('<').next())
        .collect();
    assert_eq!(nums.len(), 2, "took and reported latency: {refused}");
    let took_ms: f64 = nums[0].trim_end_matches(" ms").parse().unwrap_or(f64::MAX);
    assert!(
        took_ms < 1000.0,
        "a refused connection took {}: {refused}",
        nums[0]
    );
    assert_eq!(
        nums[1], "5000 ms",
        "pharox's latency of a failed check: {refused}"
    );
    // Failures by reason, and the providers.
    let failures = section(&dom, "id=\"failures\"", "</table>");
    for reason in ["connect_refused", "proxy_auth_failed"] {
        assert!(
            failures.contains(&format!(">{reason}</a></td><td class=\"num\">1</td>")),
            "failures by reason lack {reason}{}",
            ctx()
        );
    }
    let providers = section(&dom, "id=\"providers\"", "</table>");
    for provider in [
        "alpha",
        "beta",
        "gamma",
        "&lt;i id=\"xss\"&gt;delta&lt;/i&gt;",
    ] {
        assert!(
            providers.contains(&format!(">{provider}</a></td>")),
            "the providers table lacks {provider}{}",
            ctx()
        );
    }
    assert_no_secret("the status page", &dom, &[WRONG_PASS]);
    assert!(
        !dom.contains(XSS_PROVIDER) && worst.contains("&lt;i id=\"xss\"&gt;delta&lt;/i&gt;"),
        "inventory labels are escaped on the page{}",
        ctx()
    );

    // Filtered through the page's own query string, passed on to api/status.
    let filtered = chromium(
        dir.path(),
        &ex.url("/?reason=connect_refused"),
        "--dump-dom",
        3_000,
    )
    .await;
    let worst = section(&filtered, "id=\"worst\"", "</table>");
    assert!(
        worst.contains("connect_refused") && !worst.contains("proxy_auth_failed"),
        "only the refused proxy:\n{worst}"
    );
    assert_eq!(
        element_text(&filtered, "worst-count"),
        "(1 of 1, where reason=connect_refused)",
        "\nDOM:\n{filtered}"
    );
    // A filter value is data, never markup; a bad one says why.
    let injected = chromium(
        dir.path(),
        &ex.url("/?pool=%3Cb%20id%3D%22inj%22%3Ex%3C%2Fb%3E"),
        "--dump-dom",
        3_000,
    )
    .await;
    assert!(
        !injected.contains("<b id=\"inj\">")
            && injected.contains("pool=&lt;b id=\"inj\"&gt;x&lt;/b&gt;)")
            && injected.contains("no proxy matches the filter"),
        "the filter is shown as text\nDOM:\n{injected}"
    );
    let (code, body) = ex.get("/api/status?status=bogus").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bad filter: status"), "{body}");
    let (code, body) = ex.get("/api/status?reason=connect_refused&limit=1").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (
            v["worst"].as_array().map(Vec::len),
            v["worst_total"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(
        v["worst"][0]["elapsed_ms"]
            .as_u64()
            .is_some_and(|ms| ms < 1000),
        "{body}"
    );
    assert_eq!(v["worst"][0]["latency_ms"], 5000, "{body}");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_first_sweep_completes_the_page_says_so() {
    // One proxy that never answers, and a timeout longer than the test: the
    // first sweep starts (the exporter is ready) and does not complete.
    let hang = FakeProxy::socks5(ProxyBehavior::fault(pharox_testkit::Fault::Hang))
        .await
        .expect("hanging fake");
    let dir = ServerDir::new("exporter-page-first");
    let inv = dir.write(
        "inventory.yaml",
        inventory_yaml(&[entry(format!("socks5://{}", hang.addr()), "solo", "acme")]),
    );
    let mut args = base_args(&inv, "http://127.0.0.1:9/");
    let i = args.iter().position(|a| a == "--timeout").expect("flag");
    args[i + 1] = s("60");
    let ex = Exporter::start(dir.path(), &args).await;
    let (_, body) = ex.get("/api/status").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["sweep"]["completed_sweeps"], 0, "{body}");
    assert!(v["sweep"]["last_completed"].is_null(), "{body}");
    let dom = chromium(dir.path(), &ex.url("/status"), "--dump-dom", 1_500).await;
    let meta = element_text(&dom, "meta");
    assert!(
        meta.contains("no sweep completed yet") && !meta.contains("last sweep"),
        "{meta}\nDOM:\n{dom}\n{}",
        ex.log_tail()
    );
    drop(hang);
}
