//! Test harness: a throwaway PostgreSQL 15 server on loopback, and pharox
//! itself (in a cached venv) to seed and read the database the way pharox
//! users do.
//!
//! Each test gets its own server (own data directory, own random port), so
//! tests run in parallel. The server runs as the `postgres` system user when
//! the tests run as root (PostgreSQL refuses root), and is stopped by PID
//! when the guard drops.

use std::fs::File;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pharox_testkit::free_port;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// Password of the `postgres` role in every test server: the tests connect
/// with password authentication like production does.
pub(crate) const PASSWORD: &str = "t3st-Pw-not-secret";

pub(crate) struct PgServer {
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    child: Option<Child>,
    run_as: Option<(u32, u32)>,
}

fn postgres_ids() -> Option<(u32, u32)> {
    // Only root needs to switch to the postgres user (PostgreSQL refuses root).
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let u = Command::new("id").args(["-u", "postgres"]).output().ok()?;
    let g = Command::new("id").args(["-g", "postgres"]).output().ok()?;
    Some((
        String::from_utf8_lossy(&u.stdout).trim().parse().ok()?,
        String::from_utf8_lossy(&g.stdout).trim().parse().ok()?,
    ))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

impl PgServer {
    /// initdb + start; waits until the server accepts connections.
    pub(crate) fn start() -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("pharox-pg-")
            .tempdir()
            .unwrap();
        let run_as = postgres_ids();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if let Some((u, g)) = run_as {
            chown_tree(dir.path(), u, g);
        }
        let mut initdb = Command::new(format!("{BIN}/initdb"));
        initdb
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((u, g)) = run_as {
            initdb.uid(u).gid(g);
        }
        let out = initdb.output().unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = PgServer {
            dir,
            port: 0,
            child: None,
            run_as,
        };
        s.start_server(free_port());
        s
    }

    fn start_server(&mut self, port: u16) {
        for _ in 0..5 {
            let log = File::create(self.dir.path().join(format!("log-{port}"))).unwrap();
            let mut cmd = Command::new(format!("{BIN}/postgres"));
            cmd.arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", &format!("port={port}")])
                .args([
                    "-c",
                    &format!("unix_socket_directories={}", self.dir.path().display()),
                ])
                // fsync=off survives a server crash (the WAL stays in the
                // page cache); synchronous_commit=off would not, and the
                // crash tests need every acknowledged commit to survive.
                .args(["-c", "fsync=off"])
                .args(["-c", "max_connections=50", "-c", "shared_buffers=32MB"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(log));
            if let Some((u, g)) = self.run_as {
                cmd.uid(u).gid(g);
            }
            let child = cmd.spawn().unwrap();
            self.child = Some(child);
            self.port = port;
            if self.wait_ready(Duration::from_secs(30)) {
                return;
            }
            self.kill_now();
        }
        panic!("postgres did not start; see {}", self.dir.path().display());
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return false;
                }
            }
            let ok = Command::new(format!("{BIN}/pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = self.child.as_ref() {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// Immediate shutdown (SIGQUIT): like a crash, connections are cut and
    /// the next start runs crash recovery.
    pub(crate) fn kill_now(&mut self) {
        self.signal("-QUIT");
        if let Some(mut c) = self.child.take() {
            let start = Instant::now();
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Backends exit on their own after the postmaster; wait for the
        // pid file to go so the restart does not trip over it.
        let pidfile = self.dir.path().join("data/postmaster.pid");
        let start = Instant::now();
        while pidfile.exists() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again on the same port and data.
    pub(crate) fn restart(&mut self) {
        let port = self.port;
        let log = self.dir.path().join(format!("log-{port}"));
        let _ = std::fs::rename(
            &log,
            self.dir.path().join(format!("log-{port}-before-restart")),
        );
        self.start_server(port);
    }

    /// Serve TLS with this certificate and key, and refuse plain TCP
    /// (`hostssl` only), then restart.
    pub(crate) fn enable_tls(&mut self, cert_pem: &str, key_pem: &str) {
        let data = self.dir.path().join("data");
        std::fs::write(data.join("server.crt"), cert_pem).unwrap();
        std::fs::write(data.join("server.key"), key_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        if let Some((u, g)) = self.run_as {
            chown_tree(&data, u, g);
        }
        self.kill_now();
        self.restart();
    }

    /// A URL for database `db` with the password.
    pub(crate) fn url(&self, db: &str) -> String {
        format!(
            "postgresql://postgres:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// The SQLAlchemy URL for pharox (psycopg 3 driver).
    pub(crate) fn sqlalchemy_url(&self, db: &str) -> String {
        format!(
            "postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Run SQL with psql; returns stdout (unaligned, tuples only).
    pub(crate) fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(format!("{BIN}/psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub(crate) fn create_db(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
    }

    /// A copy of `src` (no one may be connected to it).
    pub(crate) fn copy_db(&self, src: &str, dst: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {dst} TEMPLATE {src}"));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The venv with `pharox[postgres]`, built once per target dir (the script
/// serialises concurrent test binaries with flock; later runs reuse it).
pub(crate) fn pharox_python() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    let venv = base.join("pharox-venv");
    if !venv.join(".ready").exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pharox-venv.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(&venv)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "creating the pharox venv failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    venv.join("bin/python")
}

/// Run tests/it/postgres/pharox_helper.py with `args`, `stdin` as input; parse stdout as JSON.
pub(crate) fn pharox(args: &[&str], stdin: &serde_json::Value) -> serde_json::Value {
    use std::io::Write;
    let py = pharox_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/postgres/pharox_helper.py");
    let mut child = Command::new(py)
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pharox_helper {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pharox_helper {args:?}: bad JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A fresh database `db` with pharox's schema, created by pharox.
pub(crate) fn pharox_db(pg: &PgServer, db: &str) {
    pg.create_db(db);
    pharox(&["schema", &pg.sqlalchemy_url(db)], &serde_json::json!({}));
}

/// A deterministic UUID string for test object `n` of `kind`.
pub(crate) fn uuid_for(kind: u8, n: u32) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n, kind as u64)
}

/// A check result as the probe would produce it.
pub(crate) fn result(
    proxy_id: &str,
    status: pharox_exporter::ProxyStatus,
    latency_ms: u64,
    checked_at: chrono::DateTime<chrono::Utc>,
    error: Option<&str>,
) -> pharox_exporter::CheckResult {
    use pharox_exporter::{CheckResult, Phase, Reason};
    let up = status.is_up();
    CheckResult {
        proxy_id: proxy_id.to_string(),
        status,
        latency_ms,
        elapsed_ms: latency_ms,
        attempts: 1,
        status_code: if up { Some(200) } else { None },
        reason: if up { None } else { Some(Reason::Timeout) },
        phase: if up { None } else { Some(Phase::Connect) },
        error: error.map(String::from),
        checked_at,
        phases: Default::default(),
        exit: None,
    }
}

/// A sink/source config for `url` with fast retries (tests restart servers).
pub(crate) fn config(url: &str) -> pharox_exporter::DbConfig {
    pharox_exporter::DbConfig {
        url: Some(url.into()),
        retry_max_backoff_seconds: 0.5,
        ..Default::default()
    }
}

/// A minimal proxy value carrying a pharox id (what PharoxDbSource::load yields).
pub(crate) fn proxy(id: &str, protocol: pharox_exporter::ProxyProtocol) -> pharox_exporter::Proxy {
    let mut p = pharox_exporter::Proxy::new(protocol, "127.0.0.1", 9);
    p.id = id.into();
    p
}

/// Seed `n` proxies (ids `uuid_for(2, 1..=n)`, status inactive) in pool
/// `bench` with plain SQL: fast enough for 10k rows, and the columns pharox
/// leaves to server defaults get them.
pub(crate) fn seed_sql(pg: &PgServer, db: &str, n: u32) -> Vec<String> {
    let pool = uuid_for(1, 1);
    pg.psql(
        db,
        &format!(
            "INSERT INTO proxy_pool (id, name) VALUES ('{pool}', 'bench');
             INSERT INTO proxy (id, pool_id, host, port, protocol, status, checked_at)
             SELECT (lpad(to_hex(g), 8, '0') || '-0000-4000-8000-000000000002')::uuid,
                    '{pool}', '127.0.0.1', 10000 + g % 50000, 'http', 'inactive',
                    now() - interval '1 hour'
             FROM generate_series(1, {n}) g"
        ),
    );
    (1..=n).map(|i| uuid_for(2, i)).collect()
}
