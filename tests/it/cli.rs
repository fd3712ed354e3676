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
        rows[0].starts_with("PROXY") && rows[0].contains("REASON"),
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
