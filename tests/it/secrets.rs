//! Planted secrets: distinctive passwords, a database password, a target
//! password and an API key go through every malformed-input form issue 9
//! found, and every subcommand (`validate`, `check`, `sweep --once`) and
//! the exporter run on them with debug logs in logfmt and trace logs in JSON. stdout,
//! stderr, logs, every endpoint (`/metrics`, `/`, `/status`, `/api/status`,
//! `/probe`, the body of `/-/reload`) and the database writer's spill files
//! are searched for each secret: as is, percent-encoded, base64 (also of
//! `user:password`, the `Proxy-Authorization` token) and by its first
//! characters (a secret cut in half is still a leak).
//!
//! Also here: configured headers are not sent after a redirect to another
//! origin, and a short password no longer garbles our own messages.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use pharox_exporter::{check, CheckResult, DbConfig, Proxy, ProxyProtocol, ResultWriter};
use pharox_testkit::{refused_port, FakeProxy, FakeTarget, ProxyBehavior, Reply};

use crate::support::check_options;
use crate::support::exporter::{s, write_atomic, Exporter, EXPORTER};
use crate::support::process::ServerDir;

const USER: &str = "plantuser";
/// The proxy password of most forms.
const PW: &str = "Pl4nted-s3cret-Zq";
/// A password with `:` (list form) and `@` (URL forms).
const PW_COLON: &str = "Pl4nted:s3cret@Zq";
/// A numeric password (YAML/JSON) and a numeric header value.
const PW_NUM: &str = "739146820571";
/// The database password.
const PW_DB: &str = "Pl4nted-db-s3cret-Zq";
/// A password in a target URL.
const PW_TARGET: &str = "Pl4nted-tgt-s3cret-Zq";
/// A configured header value.
const API_KEY: &str = "Pl4nted-key-s3cret-Zq";

/// Bytes of junk a hostile proxy puts before the password it echoes, so
/// that a 120-character cut made before masking would leave its first 13
/// characters: `HTTP/1.1 403 <junk><password>` and `Location: gopher://<junk><password>`.
const JUNK_REASON: usize = 107;
const JUNK_LOCATION: usize = 98;

fn b64(s: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    vec![
        STANDARD.encode(s).trim_end_matches('=').to_string(),
        URL_SAFE.encode(s).trim_end_matches('=').to_string(),
    ]
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every form a planted secret could leak in.
fn forms() -> Vec<String> {
    let mut out = vec![s("s3cret"), s("Pl4nted-"), s("Pl4nted:")];
    for secret in [PW, PW_COLON, PW_NUM, PW_DB, PW_TARGET, API_KEY] {
        out.push(secret.to_string());
        out.push(pct(secret));
        out.push(pct(secret).to_ascii_lowercase());
        out.extend(b64(secret));
        out.extend(b64(&format!("{USER}:{secret}")));
    }
    out.sort();
    out.dedup();
    out
}

/// Which forms `text` holds (empty: none).
fn leaks(text: &str) -> Vec<String> {
    forms()
        .into_iter()
        .filter(|f| text.contains(f.as_str()))
        .collect()
}

/// Record a leak instead of failing at once, so one run lists them all.
#[derive(Default, Clone)]
struct Findings(Arc<Mutex<Vec<String>>>);

impl Findings {
    fn scan(&self, what: &str, text: &str) {
        let found = leaks(text);
        if !found.is_empty() {
            let excerpt: String = text
                .lines()
                .filter(|l| found.iter().any(|f| l.contains(f.as_str())))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n    ");
            self.0
                .lock()
                .unwrap()
                .push(format!("{what}: {found:?}\n    {excerpt}"));
        }
    }

    fn assert_clean(&self) {
        let v = self.0.lock().unwrap();
        assert!(v.is_empty(), "{} leaks:\n{}", v.len(), v.join("\n"));
    }
}

/// A proxy that knows the password it was sent and quotes it back: in a
/// CONNECT refusal's reason phrase and in a redirect's `Location`, after
/// junk that pushes it across a 120-character cut, and base64 after.
async fn hostile_proxy(password: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.len() > 65536 {
                        return;
                    }
                }
                let token = b64(&format!("{USER}:{password}")).remove(0);
                let reply = if buf.starts_with(b"CONNECT") {
                    format!(
                        "HTTP/1.1 403 {}{password} {token}\r\nContent-Length: 0\r\n\r\n",
                        "j".repeat(JUNK_REASON)
                    )
                } else {
                    format!(
                        "HTTP/1.1 302 Found\r\nLocation: gopher://{}{password}/{token}\r\nContent-Length: 0\r\n\r\n",
                        "j".repeat(JUNK_LOCATION)
                    )
                };
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, task)
}

/// The inputs: inventories in every format with every malformed form, a
/// config with a secret header, and configs that are wrong in ways that
/// used to quote a secret.
struct Inputs {
    dir: ServerDir,
    _auth_proxy: FakeProxy,
    _target: FakeTarget,
    _hostile: tokio::task::JoinHandle<()>,
    config: String,
    inventories: Vec<String>,
    bad_configs: Vec<String>,
    bad_flags: Vec<Vec<String>>,
    arguments: Vec<String>,
}

async fn inputs() -> Inputs {
    let dir = ServerDir::new("secrets");
    let target = FakeTarget::start(Reply::ok("ok")).await.unwrap();
    let auth_proxy = FakeProxy::http(ProxyBehavior::healthy().with_auth(USER, PW))
        .await
        .unwrap();
    let (hostile, hostile_task) = hostile_proxy(PW).await;
    let a = auth_proxy.addr().port();
    let h = hostile.port();
    let target_url = target.url("/");

    let config = format!(
        "defaults:\n  target_url: {target_url}\n  timeout: 3\n  allow_redirects: true\n  \
         headers:\n    X-Api-Key: {API_KEY}\n    Authorization: \"Bearer {API_KEY}\"\n\
         pools:\n  tls:\n    target_url: https://127.0.0.1:9/\n"
    );
    let config = dir.write("config.yaml", config).display().to_string();

    // One line per form; the comment says what each used to do.
    let lines = format!(
        "# provider form without scheme, now http with credentials\n\
         {USER}:{PW}@127.0.0.1:{a}\n\
         # password with ':' and '@' in the list form\n\
         127.0.0.1:{a}:{USER}:{PW_COLON}\n\
         # IPv6 list form, bracketed, password with ':'\n\
         [::1]:9:{USER}:pa:{PW}\n\
         # unbracketed IPv6: refused\n\
         ::1:9:{USER}:{PW}\n\
         # misordered user:pass:host:port: refused\n\
         {USER}:{PW}:127.0.0.1:9\n\
         # host:port@user:pass: refused\n\
         127.0.0.1:9@{USER}:{PW}\n\
         # a bad port in a URL\n\
         http://{USER}:{PW}@127.0.0.1:99999\n\
         # a password with a quote and a space\n\
         http://{USER}:{PW}\"x y@127.0.0.1:99999\n\
         # a hostile proxy echoing the password\n\
         http://{USER}:{PW}@127.0.0.1:{h}\n"
    );
    let yaml = format!(
        "- {{protocol: http, host: 127.0.0.1, port: 9, username: {USER}, password: {PW_NUM}}}\n\
         - {{protocol: http, host: 127.0.0.1, port: 9, username: {USER}, password: true}}\n\
         - {{protocol: http, host: 127.0.0.1, port: 9, username: {USER}, password: [{PW}]}}\n\
         - {{protocol: http, host: 127.0.0.1, port: notaport, username: {USER}, password: {PW}}}\n\
         - {{url: \"{USER}:{PW}:127.0.0.1:9\"}}\n\
         - {{url: \"http://{USER}:{PW}@127.0.0.1:{h}\", pool: tls}}\n\
         - {{url: \"http://{USER}:{PW}@127.0.0.1:{h}\"}}\n"
    );
    let json = format!(
        "[\n{{\"protocol\": \"http\", \"host\": \"127.0.0.1\", \"port\": 9, \"username\": \"{USER}\", \"password\": {PW_NUM}}},\n\
         {{\"protocol\": \"http\", \"host\": \"127.0.0.1\", \"port\": 9, \"username\": \"{USER}\", \"password\": true}},\n\
         {{\"url\": \"[::1]:9:{USER}:pa:{PW}\"}},\n\
         {{\"url\": \"http://{USER}:{PW}@127.0.0.1:{h}\", \"pool\": \"tls\"}}\n]\n"
    );
    let csv = format!(
        "protocol,host,port,username,password,pool\n\
         http,127.0.0.1,notaport,{USER},{PW},default\n\
         http,127.0.0.1,{h},{USER},{PW},tls\n\
         http,127.0.0.1,{h},{USER},{PW},default\n\
         http,{USER}:{PW},9,,,default\n"
    );
    let inventories = vec![
        dir.write("inv.txt", lines),
        dir.write("inv.yaml", yaml),
        dir.write("inv.json", json),
        dir.write("inv.csv", csv),
        // A whole file that is one entry instead of a list.
        dir.write("one.yaml", format!("\"127.0.0.1:9:{USER}:{PW}\"\n")),
        dir.write("one.json", format!("\"127.0.0.1:9:{USER}:{PW}\"\n")),
    ]
    .into_iter()
    .map(|p| p.display().to_string())
    .collect();

    let url_file = dir.write(
        "db-url",
        format!("postgresql://{USER}@127.0.0.1:notaport/x?password={PW_DB}\n"),
    );
    let bad_configs = [
        format!("defaults:\n  target_url: http://{USER}:{PW_TARGET}@127.0.0.1:9/\n"),
        format!("defaults:\n  target_url: \"http://{USER}:{PW_TARGET}@exa mple.com/\"\n"),
        format!("defaults:\n  headers:\n    X-Api-Key: {{nested: {PW_NUM}}}\n"),
        format!("defaults:\n  headers:\n    X-Api-Key: [{API_KEY}]\n"),
        format!(
            "postgres:\n  url: \"host=127.0.0.1 port=1 user={USER} password={PW_DB} dbname=x\"\n"
        ),
        format!(
            "postgres:\n  url: \"postgresql://{USER}@127.0.0.1:notaport/x?password={PW_DB}\"\n"
        ),
        format!("postgres:\n  url: \"postgresql://{USER}:{PW_DB}@127.0.0.1:1/x?sslmode=bogus\"\n"),
        format!("postgres:\n  url_file: {}\n", url_file.display()),
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| {
        dir.write(&format!("bad-{i}.yaml"), text)
            .display()
            .to_string()
    })
    .collect();
    let bad_flags = vec![
        vec![s("--inventory"), format!("host=127.0.0.1 password={PW_DB}")],
        vec![
            s("--inventory"),
            format!("postgresql://{USER}@127.0.0.1:notaport/x?password={PW_DB}"),
        ],
        vec![
            s("--inventory"),
            format!("postgresql://{USER}:{PW_DB}@127.0.0.1:notaport/x"),
        ],
        vec![
            s("--target-url"),
            format!("http://{USER}:{PW_TARGET}@127.0.0.1:9/"),
        ],
        vec![
            s("--target-url"),
            format!("http://{USER}:{PW_TARGET}@exa mple.com/"),
        ],
    ];
    let arguments = vec![
        format!("{USER}:{PW}@127.0.0.1:{a}"),
        format!("127.0.0.1:9:{USER}:{PW_COLON}"),
        format!("[::1]:9:{USER}:pa:{PW}"),
        format!("::1:9:{USER}:{PW}"),
        format!("{USER}:{PW}:127.0.0.1:9"),
        format!("127.0.0.1:9@{USER}:{PW}"),
        format!("http://{USER}:{PW}@127.0.0.1:99999"),
        format!("http://{USER}:{PW}@127.0.0.1:{h}"),
    ];
    Inputs {
        dir,
        _auth_proxy: auth_proxy,
        _target: target,
        _hostile: hostile_task,
        config,
        inventories,
        bad_configs,
        bad_flags,
        arguments,
    }
}

/// Run the binary; stdout and stderr together, bounded in time.
async fn run(args: &[String]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(EXPORTER)
            .args(args)
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("pharox-exporter {args:?} did not finish within 60s"))
    .expect("run pharox-exporter");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const LOG_FORMATS: [&str; 2] = ["logfmt", "json"];

/// Debug logs in logfmt, trace logs in JSON: every level a user can ask for.
fn logs(format: &str) -> Vec<String> {
    let level = if format == "json" { "trace" } else { "debug" };
    vec![s("--log.level"), s(level), s("--log.format"), s(format)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_commands_never_print_a_planted_password() {
    let inp = inputs().await;
    let found = Findings::default();
    let mut outputs = Vec::new();
    let refused = refused_port();
    for format in LOG_FORMATS {
        let log = logs(format);
        let cfg = vec![s("--config.file"), inp.config.clone()];
        for inv in &inp.inventories {
            let name = Path::new(inv)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            let with = |cmd: &[&str]| -> Vec<String> {
                let mut a: Vec<String> = cmd.iter().map(|c| c.to_string()).collect();
                a.extend(cfg.clone());
                a.extend([s("--inventory"), inv.clone()]);
                a.extend(log.clone());
                a
            };
            for cmd in [
                &["validate"][..],
                &["check"][..],
                &["check", "--output", "json"][..],
                &["sweep", "--once"][..],
            ] {
                let out = run(&with(cmd)).await;
                found.scan(&format!("{} {name} ({format})", cmd.join(" ")), &out);
                outputs.push(out);
            }
        }
        let mut args = vec![s("check")];
        args.extend(inp.arguments.clone());
        args.extend(cfg.clone());
        args.extend(log.clone());
        let out = run(&args).await;
        found.scan(&format!("check <arguments> ({format})"), &out);
        outputs.push(out);
        for bad in &inp.bad_configs {
            for cmd in ["validate", "check", "sweep"] {
                let mut args = vec![s(cmd)];
                if cmd == "sweep" {
                    args.push(s("--once"));
                }
                if cmd == "check" {
                    args.push(format!("http://127.0.0.1:{}", refused.port()));
                }
                args.extend([s("--config.file"), bad.clone()]);
                args.extend(log.clone());
                let out = run(&args).await;
                let text = std::fs::read_to_string(bad).unwrap_or_default();
                found.scan(
                    &format!("{cmd} --config.file <{}> ({format})", text.trim()),
                    &out,
                );
                outputs.push(out);
            }
        }
        for flags in &inp.bad_flags {
            for cmd in ["validate", "sweep"] {
                let mut args = vec![s(cmd)];
                if cmd == "sweep" {
                    args.push(s("--once"));
                }
                args.extend(flags.clone());
                args.extend(log.clone());
                let out = run(&args).await;
                found.scan(&format!("{cmd} {flags:?} ({format})"), &out);
                outputs.push(out);
            }
        }
    }
    found.assert_clean();
    // The refusals say what to do, without the value.
    let all = outputs.join("\n");
    for expected in [
        "must not carry user:password@",
        "libpq key=value connection string is not supported",
        "must be a quoted string",
    ] {
        assert!(all.contains(expected), "no {expected:?} in:\n{all}");
    }
    drop(inp.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_never_shows_a_planted_password() {
    let inp = inputs().await;
    let found = Findings::default();
    for format in LOG_FORMATS {
        let inventory = &inp.inventories[0];
        let mut args = vec![
            s("--config.file"),
            inp.config.clone(),
            s("--inventory"),
            inventory.clone(),
            s("--sweep.interval"),
            s("1s"),
            // The reload bodies below are part of what must not leak.
            s("--web.enable-lifecycle"),
        ];
        args.extend(logs(format));
        let ex = Exporter::start(inp.dir.path(), &args).await;
        ex.wait_sweeps(2.0).await;
        let mut paths = vec![s("/metrics"), s("/"), s("/status"), s("/api/status")];
        for a in &inp.arguments {
            paths.push(format!(
                "/probe?target={}",
                url::form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()
            ));
        }
        let (_, status) = ex.get("/api/status").await;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&status) {
            for p in v["worst"].as_array().into_iter().flatten() {
                if let Some(id) = p["id"].as_str() {
                    paths.push(format!(
                        "/probe?id={}",
                        url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
                    ));
                }
            }
        }
        assert!(
            status.contains("jjjj"),
            "the hostile proxy's echo is quoted (masked) in /api/status: {status}"
        );
        for path in &paths {
            let (_, body) = ex.get(path).await;
            found.scan(&format!("GET {path} ({format})"), &body);
        }
        // A reload with each bad config: the response body is an error.
        let good = std::fs::read_to_string(&inp.config).unwrap();
        let mut reload_bodies = String::new();
        for bad in &inp.bad_configs {
            let text = std::fs::read_to_string(bad).unwrap();
            write_atomic(Path::new(&inp.config), &text);
            let (code, body) = ex.post("/-/reload").await;
            assert_ne!(code, 200, "reload of a bad config: {body}");
            reload_bodies.push_str(&body);
            found.scan(
                &format!("POST /-/reload with <{}> ({format})", text.trim()),
                &body,
            );
        }
        assert!(
            reload_bodies.contains("must not carry user:password@"),
            "{reload_bodies}"
        );
        write_atomic(Path::new(&inp.config), &good);
        let (_, body) = ex.post("/-/reload").await;
        found.scan(&format!("POST /-/reload ({format})"), &body);
        ex.wait_sweeps(3.0).await;
        found.scan(&format!("exporter log ({format})"), &ex.log_text());
    }
    found.assert_clean();
}

/// Results of real checks through the hostile proxy, written by a database
/// writer whose database is unreachable: they go to the spill directory at
/// shutdown, and neither the files nor the writer's errors hold a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_files_never_hold_a_planted_password() {
    let (hostile, _task) = hostile_proxy(PW).await;
    let target = FakeTarget::start(Reply::ok("ok")).await.unwrap();
    let spill = tempfile::tempdir().unwrap();
    let dead = refused_port();
    let mut cfg = DbConfig::from_url(&format!(
        "postgresql://{USER}:{PW_DB}@127.0.0.1:{}/db?password={PW_DB}",
        dead.port()
    ))
    .unwrap();
    cfg.spill_dir = Some(spill.path().to_path_buf());
    cfg.operation_timeout = Duration::from_millis(500);
    let found = Findings::default();
    found.scan("DbConfig Debug", &format!("{cfg:?}"));
    let writer = ResultWriter::spawn(cfg).unwrap();

    let mut proxy = Proxy::new(ProxyProtocol::Http, "127.0.0.1", hostile.port());
    proxy.username = Some(USER.into());
    proxy.password = Some(PW.into());
    proxy.id = "00000000-0000-0000-0000-000000000001".into();
    let mut results: Vec<CheckResult> = Vec::new();
    for target_url in [target.url("/").to_string(), s("https://127.0.0.1:9/")] {
        let tls = pharox_exporter::client_config(None, false).unwrap();
        let mut opts = check_options(&target_url, tls.clone(), tls);
        opts.headers = vec![(s("X-Api-Key"), API_KEY.into())];
        let r = check(&proxy, &opts).await;
        found.scan(&format!("check result via {target_url}"), &format!("{r:?}"));
        found.scan(
            &format!("check result JSON via {target_url}"),
            &serde_json::to_string(&r).unwrap(),
        );
        results.push(r);
    }
    // The old code quoted the echo, cut before masking.
    assert!(
        results
            .iter()
            .all(|r| r.error.as_deref().is_some_and(|e| e.contains("jjjj"))),
        "{results:?}"
    );
    for r in &results {
        writer.submit(&proxy, r);
    }
    let report = writer.close(Instant::now() + Duration::from_secs(2)).await;
    assert!(report.spilled >= 1, "{report:?}");
    let mut files = 0;
    for e in std::fs::read_dir(spill.path()).unwrap().flatten() {
        files += 1;
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        found.scan(&format!("spill file {}", e.path().display()), &text);
    }
    assert!(files >= 1, "nothing spilled");
    found.assert_clean();
}

/// A one-shot server on `ip`, answering 200 and recording each request head.
async fn recording_server(ip: [u8; 4]) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind(SocketAddr::from((ip, 0))).await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                continue;
            };
            let rec = rec.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                rec.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_headers_are_dropped_on_a_cross_origin_redirect() {
    let proxies = [
        FakeProxy::http(ProxyBehavior::healthy()).await.unwrap(),
        FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap(),
    ];
    // Another host (127.0.0.2 is loopback too), another port, another host
    // name (localhost), and the same origin.
    for case in ["host", "port", "name", "same"] {
        for fake in &proxies {
            let (other_host, other_host_seen) = recording_server([127, 0, 0, 2]).await;
            let other = FakeTarget::start(Reply::ok("ok")).await.unwrap();
            let (location, keep) = match case {
                "host" => (format!("http://{other_host}/landing"), false),
                "port" => (other.url("/landing").to_string(), false),
                "name" => (other.url_by_name("/landing").to_string(), false),
                _ => (s("/landing"), true),
            };
            let start = FakeTarget::builder(Reply::ok("ok"))
                .route("/start", vec![Reply::redirect(302, &location)])
                .start()
                .await
                .unwrap();
            let tls = pharox_exporter::client_config(None, false).unwrap();
            let mut opts = check_options(start.url("/start").as_str(), tls.clone(), tls);
            opts.headers = vec![
                (s("X-Api-Key"), API_KEY.into()),
                (s("Authorization"), format!("Bearer {API_KEY}").into()),
            ];
            let url = fake.url(fake.scheme());
            let proxy = pharox_exporter::parse_proxy_url(&url).unwrap();
            let r = check(&proxy, &opts).await;
            assert!(r.is_up(), "{location} via {url}: {r:?}");
            // The first hop always carries them.
            let first = start.requests();
            assert_eq!(first[0].header("x-api-key"), Some(API_KEY), "{first:?}");
            // The landing request, wherever it went.
            let mut landing: Vec<String> = Vec::new();
            for t in [&start, &other] {
                landing.extend(
                    t.requests()
                        .into_iter()
                        .filter(|q| q.target.ends_with("/landing"))
                        .map(|q| format!("{:?}", q.headers)),
                );
            }
            landing.extend(other_host_seen.lock().unwrap().drain(..));
            assert_eq!(landing.len(), 1, "{location}: {landing:?}");
            assert_eq!(
                landing[0].contains(API_KEY),
                keep,
                "{location} via {url}: headers {}: {landing:?}",
                if keep { "lost" } else { "re-sent" }
            );
        }
    }
}

/// Our own text is never masked any more: a one-letter password used to
/// turn "connection to proxy ... refused" into "connection to pro***y".
#[tokio::test]
async fn a_short_password_does_not_garble_our_messages() {
    let refused = refused_port();
    let target = FakeTarget::start(Reply::ok("ok")).await.unwrap();
    let tls = pharox_exporter::client_config(None, false).unwrap();
    let opts = check_options(target.url("/").as_str(), tls.clone(), tls);
    let proxy =
        pharox_exporter::parse_proxy_url(&format!("http://u:x@127.0.0.1:{}", refused.port()))
            .unwrap();
    let r = check(&proxy, &opts).await;
    assert_eq!(
        r.error.as_deref(),
        Some(format!("connection to proxy 127.0.0.1:{} refused", refused.port()).as_str())
    );
}
