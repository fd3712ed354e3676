//! Running external servers safely: a temp dir per server, a guard that
//! kills the whole process group on Drop, and a bounded wait for a port to
//! accept. Free ports come from `pharox_testkit::free_port`.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server gets to accept on its port before the test fails.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// True when the tests run as root (needed for squid's user switch and the
/// throwaway system user of dante's username method).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The absolute path of a server binary, or a test failure naming the Debian
/// package to install. Missing servers never skip a test: CI installs them
/// with `scripts/install-test-deps.sh`.
pub(crate) fn require_binary(candidates: &[&str], package: &str) -> PathBuf {
    for c in candidates {
        let p = Path::new(c);
        if p.is_absolute() {
            if p.is_file() {
                return p.to_path_buf();
            }
        } else if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let full = dir.join(c);
                if full.is_file() {
                    return full;
                }
            }
        }
    }
    panic!(
        "required binary {candidates:?} not found: install the Debian package `{package}` \
         (run `sudo scripts/install-test-deps.sh`)"
    );
}

/// A private directory for one server's config, keys, pid file and logs.
/// World-traversable so daemons that drop privileges can still reach it.
pub(crate) struct ServerDir {
    dir: tempfile::TempDir,
}

impl ServerDir {
    /// A fresh directory named after the server.
    pub(crate) fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pxr-{name}-"))
            .tempdir()
            .expect("create temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        ServerDir { dir }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the directory.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write a file inside the directory and return its path.
    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(name);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// Hand the directory and everything in it to a system user (squid
    /// refuses to keep running as root and must write its logs here).
    pub(crate) fn chown_to_user(&self, user: &str) {
        let (uid, gid) = lookup_user(user).unwrap_or_else(|| {
            panic!("system user `{user}` does not exist (is its package installed?)")
        });
        chown_recursive(self.path(), uid, gid);
    }

    /// The last `max` bytes of every `*.log` / `*.out` file, for diagnostics.
    pub(crate) fn logs(&self, max: usize) -> String {
        dir_logs(self.path(), max)
    }
}

/// The last `max` bytes of a file, lossily decoded.
pub(crate) fn tail(path: &Path, max: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("(missing)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max as u64);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == user {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    if path.is_dir() {
        for e in fs::read_dir(path).expect("read_dir").flatten() {
            chown_recursive(&e.path(), uid, gid);
        }
    }
}

/// Owns a child process started in its own process group; on Drop, kills
/// the whole group (daemons fork workers and helpers) and reaps the leader.
pub(crate) struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Start `cmd` in a new process group, stdin closed, stdout and stderr
    /// appended to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("dup log fd");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_string(),
            child: Some(child),
        }
    }

    /// The leader's PID (also the process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `Some(status)` once the leader has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kill the process group and reap the leader. Idempotent.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as libc::pid_t;
            // SAFETY: kill(2) with a negative pid signals the group we created
            // for this child (process_group(0)); it has no memory effects.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The name given at spawn.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a server did not come up.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The process exited before the port accepted (bind race, bad config).
    Exited(String),
    /// The port never accepted within the timeout.
    Timeout,
}

/// Wait until `addr` accepts TCP connections while `child` is alive, at most
/// `timeout`. A child that exits first is reported, never waited out.
pub(crate) fn wait_port(
    addr: SocketAddr,
    child: &mut ChildGuard,
    timeout: Duration,
) -> Result<(), StartError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.exited() {
            return Err(StartError::Exited(format!(
                "{} exited with {status}",
                child.name()
            )));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // A port taken by a stranger accepts too: make sure ours is still
            // alive a moment later (a failed bind makes daemons exit).
            std::thread::sleep(Duration::from_millis(50));
            if let Some(status) = child.exited() {
                return Err(StartError::Exited(format!(
                    "{} exited with {status}",
                    child.name()
                )));
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The last `max` bytes of every `*.log` / `*.out` file in `dir`, for diagnostics.
pub(crate) fn dir_logs(dir: &Path, max: usize) -> String {
    let mut out = String::new();
    let mut entries: Vec<_> = match fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(e) => return format!("(cannot list {}: {e})", dir.display()),
    };
    entries.sort();
    for p in entries {
        let is_log = matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("log") | Some("out")
        );
        if is_log {
            out.push_str(&format!("----- {} -----\n{}\n", p.display(), tail(&p, max)));
        }
    }
    out
}

/// Bytes of each log shown when a server fails to start.
const START_LOG_TAIL: usize = 6000;

/// Launch on a fresh free port until the port accepts. A server that dies
/// before accepting (most often: someone took the port between our probe and
/// its bind) is retried on another port, twice at most.
pub(crate) fn start_on_free_port(
    name: &str,
    dir: &Path,
    mut launch: impl FnMut(u16) -> ChildGuard,
) -> (SocketAddr, ChildGuard) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = pharox_testkit::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut child = launch(port);
        match wait_port(addr, &mut child, STARTUP_TIMEOUT) {
            Ok(()) => return (addr, child),
            Err(StartError::Exited(msg)) => {
                last = msg;
                drop(child);
            }
            Err(StartError::Timeout) => {
                let logs = dir_logs(dir, START_LOG_TAIL);
                drop(child);
                panic!("{name} did not accept on {addr} within {STARTUP_TIMEOUT:?}\n{logs}");
            }
        }
    }
    panic!(
        "{name} failed to start 3 times: {last}\n{}",
        dir_logs(dir, START_LOG_TAIL)
    );
}

/// Run a short command to completion, returning (success, combined output).
pub(crate) fn run(cmd: &mut Command) -> (bool, String) {
    match cmd.stdin(Stdio::null()).output() {
        Ok(o) => {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            (o.status.success(), s)
        }
        Err(e) => (false, format!("spawn {cmd:?}: {e}")),
    }
}
