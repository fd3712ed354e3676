//! Honest one-shot commands and inventory reads (issue 9, "Deadlines and
//! honesty"): the fd guard in `check` and `sweep --once`, a CSV whose stray
//! quote costs one line, empty and non-regular inventories that keep the
//! last good one, and nesting bombs refused before parsing. The PostgreSQL
//! deadlines are in `postgres::deadlines`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pharox_testkit::{FakeProxy, ProxyBehavior, ThreadTarget};

use crate::support::exporter::*;
use crate::support::process::ServerDir;

const BIN: &str = env!("CARGO_BIN_EXE_pharox-exporter");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run the binary, killed if it is still running after `bound`.
fn run_bounded(mut cmd: Command, bound: Duration) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pharox-exporter");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > bound {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

#[test]
fn check_and_sweep_once_refuse_a_concurrency_the_fd_limit_cannot_hold() {
    // Proxies that would be probed here: nothing may connect.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = ServerDir::new("fd-guard");
    let inv: String = (0..300)
        .map(|i| format!("http://u{i}@127.0.0.1:{port}\n"))
        .collect();
    let inv = dir.write("proxies.txt", inv);
    for sub in [&["check"][..], &["sweep", "--once"][..]] {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(r#"ulimit -Sn 256 -Hn 256 && exec "$@""#)
            .arg("bash")
            .arg(BIN)
            .args(sub)
            .arg("--inventory")
            .arg(&inv)
            .args([
                "--target-url",
                "http://127.0.0.1:9/",
                "--concurrency",
                "2000",
            ]);
        let out = run_bounded(cmd, Duration::from_secs(60));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{sub:?}: {stdout}\n{stderr}");
        assert!(
            stderr
                .contains("concurrency 300 needs about 364 file descriptors but the limit is 256")
                && stderr.contains("lower --concurrency")
                && stderr.contains("ulimit -n"),
            "{sub:?}: {stderr}"
        );
        assert!(stdout.is_empty(), "{sub:?} printed results: {stdout}");
    }
    assert!(
        listener.accept().is_err(),
        "a proxy was probed despite the refusal"
    );
}

fn validate(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("validate").args(args);
    run_bounded(cmd, Duration::from_secs(60))
}

#[test]
fn a_stray_quote_in_a_csv_costs_its_line_not_the_rest_of_the_file() {
    let dir = ServerDir::new("csv-quote");
    let mut csv = String::from("id,protocol,host,port\n");
    for i in 0..10 {
        csv.push_str(&format!("p{i},http,127.0.0.1,{}\n", 1000 + i));
        if i == 0 {
            csv.push_str("broken,http,\"127.0.0.1,1999\n");
        }
    }
    csv.push_str("bad-utf8,http,127.0.0.\u{FFFD},1\n");
    let mut bytes = csv.into_bytes();
    // Replace the U+FFFD with one raw non-UTF-8 byte.
    let at = bytes
        .windows(3)
        .position(|w| w == "\u{FFFD}".as_bytes())
        .unwrap();
    bytes.splice(at..at + 3, [0xff]);
    let path = dir.write("inv.csv", bytes);
    let out = validate(&["--inventory", path.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("10 proxies, 2 malformed entries"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("inv.csv:3: field `row`: malformed CSV row: unbalanced quote"),
        "{stderr}"
    );
    assert!(
        stderr.contains("inv.csv:13: field `row`: not valid UTF-8"),
        "{stderr}"
    );
}

#[test]
fn empty_fifo_and_deeply_nested_inventories_and_configs_are_refused_with_a_message() {
    let dir = ServerDir::new("refused-inventories");
    let empty = dir.write("empty.txt", "");
    let fifo = dir.join("fifo.txt");
    mkfifo(&fifo);
    let deep = "[".repeat(100_000);
    let deep_yaml = dir.write("deep.yaml", &deep);
    let deep_json = dir.write("deep.json", &deep);
    let cases = [
        (empty.clone(), "empty.txt: inventory is empty"),
        (
            fifo.clone(),
            "fifo.txt: inventory is not a regular file (a FIFO)",
        ),
        (
            deep_yaml.clone(),
            "deep.yaml:1: nested more than 64 levels deep",
        ),
        (
            deep_json.clone(),
            "deep.json:1: nested more than 64 levels deep",
        ),
    ];
    for (path, want) in cases {
        let out = validate(&["--inventory", path.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(stderr.contains(want), "{}: {stderr}", path.display());
    }
    // The one-shot sweep says the same and probes nothing.
    let mut cmd = Command::new(BIN);
    cmd.args(["sweep", "--once", "--inventory"])
        .arg(&empty)
        .args(["--target-url", "http://127.0.0.1:9/"]);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("inventory is empty"),
        "{}",
        text(&out.stderr)
    );

    // A config file nested 100k deep.
    let config = dir.write("pharox.yaml", format!("sweep: {deep}"));
    let out = validate(&["--config.file", config.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pharox.yaml:1:1: nested more than 64 levels deep"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_inventory_keeps_the_last_good_one_and_says_so() {
    let target = ThreadTarget::http();
    let live = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let dir = ServerDir::new("inventory-emptied");
    let inv = dir.join("inventory.txt");
    write_atomic(
        &inv,
        &format!("socks5://a@{0}\nsocks5://b@{0}\n", live.addr()),
    );
    let ex = Exporter::start(dir.path(), &base_args(&inv, &target.url("/"))).await;
    ex.wait_for("both proxies active", |m| {
        m.sum("pharox_proxies", &[("status", "active")]) == 2.0
            && m.value("pharox_exporter_inventory_last_read_successful") == 1.0
    })
    .await;
    // Truncated in place, as a writer that is not atomic leaves it.
    std::fs::write(&inv, "").unwrap();
    let m = ex
        .wait_for("the empty read reported", |m| {
            m.sum(
                "pharox_exporter_inventory_errors_total",
                &[("kind", "empty")],
            ) >= 1.0
        })
        .await;
    assert_eq!(
        m.value("pharox_exporter_inventory_last_read_successful"),
        0.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.value("pharox_exporter_inventory_proxies"),
        2.0,
        "{}",
        m.text
    );
    let sweeps = m.value("pharox_exporter_sweeps_total");
    ex.wait_sweeps(sweeps + 1.0).await;
    let m = ex.scrape().await;
    assert_eq!(
        m.sum("pharox_proxies", &[("status", "active")]),
        2.0,
        "{}",
        m.text
    );
    let log = ex.log_text();
    assert!(
        log.contains("inventory is empty") && log.contains("keeping the previous inventory"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_inventory_neither_stops_the_server_nor_sigterm() {
    let target = ThreadTarget::http();
    let dir = ServerDir::new("inventory-fifo");
    let fifo = dir.join("inventory.txt");
    mkfifo(&fifo);
    let mut ex = Exporter::start_until(
        dir.path(),
        &base_args(&fifo, &target.url("/")),
        "/-/healthy",
    )
    .await;
    let m = ex
        .wait_for("two refused reads", |m| {
            m.sum(
                "pharox_exporter_inventory_errors_total",
                &[("kind", "not_regular")],
            ) >= 2.0
        })
        .await;
    assert_eq!(
        m.value("pharox_exporter_inventory_last_read_successful"),
        0.0
    );
    assert!(ex.log_text().contains("not a regular file (a FIFO)"));
    let t = Instant::now();
    ex.signal(libc::SIGTERM);
    let status = ex.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "no clean exit within 10 s of SIGTERM ({status:?}):\n{}",
        ex.log_tail()
    );
    eprintln!("fifo inventory: exited {:?} after SIGTERM", t.elapsed());
}
