//! `check`, `sweep --once` and `validate` run as a user runs them: the real
//! binary, real sockets (in-process fake proxies and target on loopback), and
//! the output parsed and asserted.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Output};

use pharox_testkit::{refused_port, FakeProxy, FakeTarget, Fault, ProxyBehavior, Reply};

const SECRET: &str = "hunter2-very-secret";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pharox-exporter"))
}

/// Run the binary off the async runtime so the in-process fakes keep serving.
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run pharox-exporter"))
        .await
        .expect("join")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn assert_no_secret(out: &Output) {
    assert!(
        !text(&out.stdout).contains(SECRET),
        "password on stdout:\n{}",
        text(&out.stdout)
    );
    assert!(
        !text(&out.stderr).contains(SECRET),
        "password on stderr:\n{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_a_table_and_json_and_exits_3_when_a_proxy_is_down() {
    let target = FakeTarget::start(Reply::ok("pong")).await.unwrap();
    let good = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let authed = FakeProxy::http(ProxyBehavior::healthy().with_auth("alice", "right-password"))
        .await
        .unwrap();
    let dead = refused_port();
    let urls = [
        format!("socks5://{}", good.addr()),
        format!("http://alice:{SECRET}@{}", authed.addr()),
        format!("http://127.0.0.1:{}", dead.port()),
    ];

    let mut cmd = bin();
    cmd.arg("check").args(&urls).args([
        "--target-url",
        target.url("/").as_str(),
        "--timeout",
        "3",
        "--output",
        "json",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_no_secret(&out);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    // Printed in the order asked.
    assert_eq!(lines[0]["status"], "active");
    assert_eq!(lines[0]["status_code"], 200);
    assert!(lines[0]["phases"]["connect_ms"].as_f64().is_some());
    assert!(lines[0]["phases"]["handshake_ms"].as_f64().is_some());
    assert_eq!(lines[1]["status"], "inactive");
    assert_eq!(lines[1]["reason"], "proxy_auth_failed");
    assert_eq!(lines[1]["id"], format!("http://alice@{}", authed.addr()));
    assert_eq!(lines[2]["reason"], "connect_refused");
    assert_eq!(lines[2]["phase"], "connect");
    assert_eq!(
        lines[2]["latency_ms"], 3000,
        "a failed check's latency is its timeout, as pharox"
    );
    assert!(
        lines[2]["elapsed_ms"].as_u64().is_some_and(|ms| ms < 1000),
        "but a refused connection took no 3 s: {}",
        lines[2]
    );

    let mut cmd = bin();
    cmd.arg("check").args(&urls[..2]).args([
        "--target-url",
        target.url("/").as_str(),
        "--timeout",
        "3",
    ]);
    let out = run(cmd).await;
    assert_no_secret(&out);
    let table = text(&out.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("ID")
            && rows[0].contains("PROXY")
            && rows[0].contains("REASON")
            && rows[0].contains("TOOK(ms)")
            && rows[0].contains("CONNECT(ms)"),
        "{table}"
    );
    assert!(rows[1].contains("ACTIVE"), "{table}");
    assert!(
        rows[2].contains("INACTIVE") && rows[2].contains("proxy_auth_failed (handshake)"),
        "{table}"
    );
    assert!(rows[2].contains("alice:***@"), "{table}");

    // Every proxy up: exit 0.
    let mut cmd = bin();
    cmd.arg("check")
        .arg(&urls[0])
        .args(["--target-url", target.url("/").as_str()]);
    assert_eq!(run(cmd).await.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_once_streams_json_lines_skips_bad_rows_and_summarises() {
    let target = FakeTarget::start(Reply::ok("pong")).await.unwrap();
    let s5 = FakeProxy::socks5(ProxyBehavior::healthy().with_auth("bob", SECRET))
        .await
        .unwrap();
    let s4 = FakeProxy::socks4(ProxyBehavior::healthy()).await.unwrap();
    let http = FakeProxy::http(ProxyBehavior::healthy()).await.unwrap();
    let garbage = FakeProxy::socks5(ProxyBehavior::fault(Fault::Garbage))
        .await
        .unwrap();
    let hang = FakeProxy::http(ProxyBehavior::fault(Fault::Hang))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("proxies.csv");
    let mut f = std::fs::File::create(&inv).unwrap();
    writeln!(
        f,
        "id,protocol,host,port,username,password,pool,provider,country"
    )
    .unwrap();
    writeln!(
        f,
        "s5,socks5,127.0.0.1,{},bob,{SECRET},resi,acme,DE",
        s5.addr().port()
    )
    .unwrap();
    writeln!(f, "s4,socks4,127.0.0.1,{},,,resi,acme,FR", s4.addr().port()).unwrap();
    writeln!(f, "h,http,127.0.0.1,{},,,dc,globex,US", http.addr().port()).unwrap();
    writeln!(
        f,
        "bad,socks5,127.0.0.1,not-a-port,bob,{SECRET},dc,globex,US"
    )
    .unwrap();
    writeln!(
        f,
        "g,socks5,127.0.0.1,{},,,dc,globex,US",
        garbage.addr().port()
    )
    .unwrap();
    writeln!(
        f,
        "hang,http,127.0.0.1,{},,,dc,globex,US",
        hang.addr().port()
    )
    .unwrap();
    drop(f);

    let mut cmd = bin();
    cmd.args(["sweep", "--once", "--inventory"])
        .arg(&inv)
        .args([
            "--target-url",
            target.url("/").as_str(),
            "--timeout",
            "1",
            "--concurrency",
            "3",
        ]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_no_secret(&out);
    let lines = json_lines(&out);
    assert_eq!(
        lines.len(),
        5,
        "the malformed row is skipped, the rest checked"
    );
    let by_id: HashMap<String, &serde_json::Value> = lines
        .iter()
        .map(|l| (l["id"].as_str().unwrap().to_string(), l))
        .collect();
    for field in [
        "id",
        "protocol",
        "host",
        "port",
        "pool",
        "provider",
        "status",
        "latency_ms",
        "elapsed_ms",
        "attempts",
        "status_code",
        "reason",
        "phase",
        "error",
        "checked_at",
        "phases",
    ] {
        assert!(
            lines[0].get(field).is_some(),
            "field {field} missing in {}",
            lines[0]
        );
    }
    assert_eq!(by_id["s5"]["status"], "active");
    assert_eq!(by_id["s5"]["pool"], "resi");
    assert_eq!(by_id["s5"]["provider"], "acme");
    assert_eq!(by_id["s4"]["status"], "active");
    assert_eq!(by_id["h"]["status"], "active");
    assert_eq!(by_id["g"]["reason"], "proxy_protocol");
    assert_eq!(by_id["hang"]["reason"], "timeout");
    assert_eq!(by_id["hang"]["phase"], "first_byte");
    let err = text(&out.stderr);
    assert!(
        err.contains("proxies.csv:5: field `port`"),
        "bad row reported with its line and field: {err}"
    );
    assert!(err.contains("swept 5 proxies"), "{err}");
    assert!(
        err.contains("active=3") && err.contains("inactive=2"),
        "{err}"
    );
    assert!(
        err.contains("proxy_protocol=1") && err.contains("timeout=1"),
        "{err}"
    );
    assert!(err.contains("checks/s"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_alone_work_and_bad_flags_are_refused() {
    let target = FakeTarget::start(Reply::status(204)).await.unwrap();
    let p = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let mut cmd = bin();
    cmd.arg("check")
        .arg(format!("socks5h://{}", p.addr()))
        .args([
            "--target-url",
            target.url_by_name("/").as_str(),
            "--expected-status-codes",
            "200,204",
            "--attempts",
            "2",
            "--slow-threshold-ms",
            "5000",
            "--output",
            "json",
        ]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["status_code"], 204);

    let mut cmd = bin();
    cmd.arg("check")
        .arg(format!("socks5://{}", p.addr()))
        .args(["--attempts", "9"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--attempts") && text(&out.stderr).contains("between 1 and 5"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_names_file_line_and_field_and_accepts_the_shipped_examples() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "defaults:\n  target_url: http://127.0.0.1:1/\n  timeout: -1\n",
    )
    .unwrap();
    let out = bin()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.yaml:3:") && err.contains("defaults.timeout"),
        "{err}"
    );

    std::fs::write(&cfg, "inventory:\n  path: inv.txt\n").unwrap();
    std::fs::write(
        dir.path().join("inv.txt"),
        format!("socks5://u:{SECRET}@127.0.0.1:1080\nsocks9://x:1\n"),
    )
    .unwrap();
    let out = bin()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a malformed entry fails validation"
    );
    assert_no_secret(&out);
    assert!(
        text(&out.stderr).contains("inv.txt:2: field `url`"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("1 proxies, 1 malformed"),
        "{}",
        text(&out.stdout)
    );

    let root = env!("CARGO_MANIFEST_DIR");
    let out = bin()
        .args(["validate", "--config"])
        .arg(format!("{root}/examples/demo/pharox.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The reference config documents every key; it must stay valid.
    let reference = std::fs::read_to_string(format!("{root}/examples/pharox.yaml")).unwrap();
    let reference = reference.replace(
        "path: proxies.csv",
        &format!("path: {root}/examples/demo/inventory.csv"),
    );
    std::fs::write(&cfg, reference).unwrap();
    let out = bin()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

// ---- The CLI never silently does something other than what was typed ----
//
// Each test below failed on the binary before issue 12's fixes; the comment
// on each says what that binary did instead.

/// Run the binary for at most `limit`, then kill it (its own pid) and
/// return what it printed: for the exporter, which runs until stopped.
async fn run_for(mut cmd: Command, limit: std::time::Duration) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn pharox-exporter");
        let deadline = std::time::Instant::now() + limit;
        let code = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st.code();
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (code, err)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_flags_before_the_subcommand_are_honoured_and_exporter_flags_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Before: "flags: config OK; no inventory configured", exit 0.
    let out = bin()
        .current_dir(dir.path())
        .args(["--config.file", "typo.yaml", "validate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let missing = dir.path().join("typo.yaml");
    assert!(
        text(&out.stderr).contains(&format!("{}: cannot read", missing.display())),
        "{}",
        text(&out.stderr)
    );

    // Before: the target flag was dropped and the check went to httpbin.org.
    let target = FakeTarget::start(Reply::status(204)).await.unwrap();
    let p = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let mut cmd = bin();
    cmd.args(["--target-url", target.url("/typed").as_str()])
        .args([
            "--expected-status-codes",
            "204",
            "check",
            "--output",
            "json",
        ])
        .arg(format!("socks5://{}", p.addr()));
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["status_code"], 204);
    assert_eq!(target.requests().len(), 1, "the typed target was fetched");
    assert!(
        !text(&out.stderr).contains("httpbin"),
        "{}",
        text(&out.stderr)
    );

    // Before: accepted and ignored, exit 0.
    let out = bin()
        .args(["--sweep.interval", "5m", "--metrics.per-proxy", "validate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("--sweep.interval, --metrics.per-proxy apply only to the exporter"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_levels_are_prometheus_spellings_in_any_case_and_scoped_to_this_program() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.txt");
    std::fs::write(&inv, "socks5://127.0.0.1:1080\n").unwrap();
    // Before: both accepted (exit 0) and every log line silenced.
    for bad in ["bogus", "WARNING"] {
        let out = bin()
            .arg(format!("--log.level={bad}"))
            .args(["validate", "--inventory"])
            .arg(&inv)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(
            text(&out.stderr).contains("expected one of debug, info, warn, error"),
            "{bad}: {}",
            text(&out.stderr)
        );
    }
    for good in ["debug", "INFO", "Warn", "error", "trace"] {
        let out = bin()
            .args(["validate", "--log.level", good, "--inventory"])
            .arg(&inv)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{good}: {}", text(&out.stderr));
    }

    // Error lines stay on at `Error` (the old filter accepted that spelling
    // too; `WARNING` or a typo turned every line off, errors included).
    let mut cmd = bin();
    cmd.current_dir(dir.path()).args([
        "--log.level=Error",
        "--inventory",
        "missing.csv",
        "--web.listen-address",
        "127.0.0.1:0",
        "--sweep.interval",
        "1s",
    ]);
    let (_, err) = run_for(cmd, std::time::Duration::from_secs(3)).await;
    assert!(
        err.contains("level=error") && err.contains("inventory read failed"),
        "{err}"
    );
    assert!(!err.contains("level=info"), "{err}");

    // Before: debug also turned on rustls's handshake chatter.
    let target = FakeTarget::builder(Reply::ok("pong"))
        .tls()
        .start()
        .await
        .unwrap();
    let p = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let mut cmd = bin();
    cmd.args(["check", "--log.level", "debug", "--timeout", "3"])
        .args(["--target-url", target.url("/").as_str()])
        .arg(format!("socks5://{}", p.addr()));
    let out = run(cmd).await;
    assert!(
        !text(&out.stderr).contains("rustls"),
        "{}",
        text(&out.stderr)
    );
}

/// An inventory of two entries that differ only in their password (ids
/// `right` and `wrong`), listed wrong first.
fn twin_inventory(dir: &std::path::Path, proxy: std::net::SocketAddr) -> std::path::PathBuf {
    let inv = dir.join("twins.csv");
    std::fs::write(
        &inv,
        format!(
            "id,protocol,host,port,username,password\n\
             wrong,http,127.0.0.1,{port},alice,{SECRET}-not\n\
             right,http,127.0.0.1,{port},alice,{SECRET}\n",
            port = proxy.port()
        ),
    )
    .unwrap();
    inv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_proxies_by_id_and_prints_them_in_the_order_given() {
    // A slow target: the working proxy finishes after the one whose
    // password is refused at once.
    let target = FakeTarget::start(Reply::ok("pong").delay(std::time::Duration::from_millis(700)))
        .await
        .unwrap();
    let authed = FakeProxy::http(ProxyBehavior::healthy().with_auth("alice", SECRET))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inv = twin_inventory(dir.path(), authed.addr());

    // Before: no ID column; the two rows were the same redacted URL.
    let mut cmd = bin();
    cmd.args(["check", "--inventory"]).arg(&inv).args([
        "--target-url",
        target.url("/").as_str(),
        "--timeout",
        "5",
    ]);
    let out = run(cmd).await;
    assert_no_secret(&out);
    let table = text(&out.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("ID ") && rows[0].contains("PROXY"),
        "{table}"
    );
    assert!(
        rows[1].starts_with("wrong ") && rows[1].contains("proxy_auth_failed"),
        "{table}"
    );
    assert!(
        rows[2].starts_with("right ") && rows[2].contains("ACTIVE"),
        "{table}"
    );

    // Before: two arguments with one derived id printed in completion order
    // (the refused one, fast, first).
    let good = format!("http://alice:{SECRET}@{}", authed.addr());
    let bad = format!("http://alice:{SECRET}-not@{}", authed.addr());
    let mut cmd = bin();
    cmd.args(["check", "--output", "json", &good, &bad]).args([
        "--target-url",
        target.url("/").as_str(),
        "--timeout",
        "5",
    ]);
    let out = run(cmd).await;
    assert_no_secret(&out);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], "active", "argument order: {lines:?}");
    assert_eq!(lines[1]["reason"], "proxy_auth_failed", "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_target_is_announced_and_an_unconfigured_exporter_refuses_to_start() {
    let dead = refused_port();
    // Before: silent about checking through a third-party service.
    let mut cmd = bin();
    cmd.args(["check", "--timeout", "1"])
        .arg(format!("socks5://127.0.0.1:{}", dead.port()));
    let out = run(cmd).await;
    let err = text(&out.stderr);
    assert_eq!(
        err.lines().filter(|l| l.contains("httpbin.org")).count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("https://httpbin.org/ip") && err.contains("--target-url"),
        "{err}"
    );

    // With a target, no note.
    let mut cmd = bin();
    cmd.args([
        "check",
        "--timeout",
        "1",
        "--target-url",
        "http://127.0.0.1:9/",
    ])
    .arg(format!("socks5://127.0.0.1:{}", dead.port()));
    assert!(!text(&run(cmd).await.stderr).contains("httpbin"));

    // Before: served /metrics and swept 0 proxies until killed.
    let mut cmd = bin();
    cmd.args(["--web.listen-address", "127.0.0.1:0"]);
    let (code, err) = run_for(cmd, std::time::Duration::from_secs(10)).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("nothing to sweep") && err.contains("--inventory"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_are_said_once_with_absolute_paths_and_useful_detail() {
    let dir = tempfile::tempdir().unwrap();
    let validate = |args: &[&str]| {
        bin()
            .current_dir(dir.path())
            .arg("validate")
            .args(args)
            .output()
            .unwrap()
    };
    // Before: "missing.csv: cannot read inventory: No such file or directory
    // (os error 2): No such file or directory (os error 2)".
    let out = validate(&["--inventory", "missing.csv"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
    let abs = dir.path().join("missing.csv");
    assert!(
        err.contains(&format!("{}: cannot read inventory", abs.display())),
        "{err}"
    );

    // Before: an empty CSV failed on its "header" ("CSV header must name
    // ..."), while a header-only one was "0 proxies". Now each says what it
    // is: a header (or `[]`, or a comment) is a deliberate "no proxies"; a
    // file with nothing in it at all is most likely being written, so it is
    // refused the same way in every format (and the exporter keeps its last
    // good inventory rather than wiping its state).
    std::fs::write(dir.path().join("header.csv"), "id,protocol,host,port\n").unwrap();
    let out = validate(&["--inventory", "header.csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("header.csv: 0 proxies, 0 malformed"),
        "{}",
        text(&out.stdout)
    );
    for f in ["empty.csv", "empty.txt", "empty.yaml"] {
        std::fs::write(dir.path().join(f), "").unwrap();
        let out = validate(&["--inventory", f]);
        assert_eq!(out.status.code(), Some(1), "{f}");
        let abs = dir.path().join(f);
        assert!(
            text(&out.stderr).contains(&format!("{}: inventory is empty", abs.display())),
            "{f}: {}",
            text(&out.stderr)
        );
    }

    // Before: "2 duplicates", no lines.
    std::fs::write(
        dir.path().join("dups.txt"),
        "socks5://127.0.0.1:1080\nsocks5://127.0.0.1:1081\nsocks5://127.0.0.1:1080\n",
    )
    .unwrap();
    let out = validate(&["--inventory", "dups.txt"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("dups.txt:3: duplicate id \"socks5://127.0.0.1:1080\" (first at line 1)"),
        "{err}"
    );

    // Before: `invalid duration unit "m30s"`.
    std::fs::write(
        dir.path().join("durations.yaml"),
        "sweep:\n  interval: 1m30s\n  shutdown_grace: 500ms\ndefaults:\n  timeout: 1m\n",
    )
    .unwrap();
    let out = validate(&["--config.file", "durations.yaml", "--timeout", "1m30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Before: "relative URL without a base".
    let out = validate(&["--target-url", "example.com"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("must be an absolute http:// or https:// URL")
            && !err.contains("relative URL without a base"),
        "{err}"
    );

    // Before: "postgres connect: error connecting to server: Connection refused".
    let dead = refused_port();
    let url = format!(
        "postgresql://pharox:{SECRET}@127.0.0.1:{}/pharox",
        dead.port()
    );
    let out = validate(&["--inventory", &url]);
    assert_no_secret(&out);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "127.0.0.1:{} (database pharox, user pharox)",
            dead.port()
        )),
        "{err}"
    );
}

#[test]
fn help_shows_defaults_and_groups_exporter_flags_and_version_names_the_build() {
    let out = bin().arg("--help").output().unwrap();
    let help = text(&out.stdout);
    // Before: no defaults for config-layer options, one flat list.
    for want in [
        "[default: 60s",
        "[default: 0.0.0.0:10187",
        "[default: /metrics",
        "[default: 5s",
        "[default: 256",
        "[default: https://httpbin.org/ip",
        "[default: info]",
        "Global options",
        "Exporter options (without a subcommand only):",
    ] {
        assert!(help.contains(want), "--help lacks {want:?}:\n{help}");
    }
    let exporter = &help[help.find("Exporter options (without").unwrap()..];
    assert!(exporter.contains("--sweep.interval") && !exporter.contains("--inventory"));

    // Before: "pharox-exporter 0.1.0".
    let out = bin().arg("--version").output().unwrap();
    let v = text(&out.stdout);
    let first = v.lines().next().unwrap_or_default();
    let prefix = format!(
        "pharox-exporter, version {} (revision: ",
        env!("CARGO_PKG_VERSION")
    );
    assert!(first.starts_with(&prefix), "{v}");
    let revision = first[prefix.len()..].trim_end_matches(')');
    assert!(
        v.contains("build date:") && v.contains("rustc version:"),
        "{v}"
    );
    assert_eq!(revision, crate::support::expected_revision(), "{v}");
}

/// Lines are written in blocks, but a finished check's line still reaches
/// stdout while other checks run: here the healthy proxy's line is read
/// while the hanging proxy's check (60 s timeout) keeps the sweep going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_once_streams_a_line_before_the_sweep_ends() {
    use std::io::BufRead;
    let target = FakeTarget::start(Reply::ok("pong")).await.unwrap();
    let good = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let hang = FakeProxy::http(ProxyBehavior::fault(Fault::Hang))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("proxies.csv");
    std::fs::write(
        &inv,
        format!(
            "id,protocol,host,port,username,password,pool,provider\n\
             hang,http,127.0.0.1,{},,,dc,acme\ngood,socks5,127.0.0.1,{},,,dc,acme\n",
            hang.addr().port(),
            good.addr().port()
        ),
    )
    .unwrap();
    let mut cmd = bin();
    cmd.args(["sweep", "--once", "--inventory"])
        .arg(&inv)
        .args(["--target-url", target.url("/").as_str()])
        .args(["--timeout", "60", "--concurrency", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn pharox-exporter");
    let stdout = child.stdout.take().expect("piped stdout");
    let (first, child) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let n = std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let still_running = child.try_wait().unwrap().is_none();
        ((n > 0).then_some(line), (child, still_running))
    })
    .await
    .unwrap();
    let (mut child, still_running) = child;
    let _ = child.kill();
    let _ = child.wait();
    let first = first.expect("a line before EOF");
    assert!(still_running, "the first line came only at exit: {first}");
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["id"], "good", "{first}");
    assert_eq!(v["status"], "active", "{first}");
}

/// A host-name lookup that never comes back cannot be cancelled (it sits in
/// getaddrinfo on a blocking thread): its check ends at its deadline, and
/// the command must not wait for the thread after the last result. The
/// resolver here would give up only after 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_once_exits_soon_after_its_last_result_when_dns_never_answers() {
    let ns = crate::support::dns::SilentResolverNs::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let inventory = dir.path().join("proxies.txt");
    std::fs::write(
        &inventory,
        "socks5://never-answered-1.example:1080\n\
         socks5://never-answered-2.example:1080\n\
         http://never-answered-3.example:3128\n",
    )
    .expect("inventory");
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns.name(),
        env!("CARGO_BIN_EXE_pharox-exporter"),
    ])
    .args(["sweep", "--once", "--inventory"])
    .arg(&inventory)
    .args(["--target-url", "http://127.0.0.1:9/", "--timeout", "1"]);
    let began = std::time::Instant::now();
    let out = run(cmd).await;
    let took = began.elapsed();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "stderr: {}", text(&out.stderr));
    for l in &lines {
        assert_eq!(l["reason"], "timeout", "{l}");
        assert_eq!(l["phase"], "connect", "{l}");
    }
    assert!(
        took < std::time::Duration::from_secs(15),
        "exited {took:?} after start, waiting for the stuck lookups (1 s checks, 2 s grace)"
    );
}
