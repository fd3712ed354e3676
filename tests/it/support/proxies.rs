//! Real proxy servers from Debian packages, each started with its own config
//! in its own temp dir, listening on 127.0.0.1:<free port>, killed on Drop.
//!
//! | starter                  | package(s)              | speaks                              |
//! |--------------------------|-------------------------|-------------------------------------|
//! | [`squid`]                | squid                   | HTTP (absolute-form + CONNECT), Basic auth |
//! | [`tinyproxy`]            | tinyproxy               | HTTP (absolute-form + CONNECT)      |
//! | [`dante`]                | dante-server            | SOCKS4, SOCKS5 (dante has no SOCKS4a) |
//! | [`dante_auth`]           | dante-server            | SOCKS5 username/password (system user) |
//! | [`microsocks`]           | microsocks              | SOCKS5, optional username/password |
//! | [`microsocks_exiting_from`] | microsocks           | SOCKS5 leaving from a chosen 127.x address |
//! | [`stunnel_https_proxy`]  | stunnel4 + tinyproxy    | HTTPS proxy (TLS to the proxy)      |
//! | [`ssh_socks`]            | openssh-server + client | `ssh -D`: SOCKS4, SOCKS4a, SOCKS5   |
//!
//! A missing binary fails the test with the package to install; nothing is
//! ever skipped.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use pharox_exporter::{Proxy, ProxyProtocol};
use pharox_testkit::pki::{PemFiles, TestPki};

use super::process::{is_root, require_binary, run, start_on_free_port, ChildGuard, ServerDir};

/// How many bytes of each log a failure message shows.
const LOG_TAIL: usize = 6000;

/// The throwaway system user dante's `socksmethod: username` checks against
/// (dante authenticates SOCKS5 user/pass with the system password database).
/// Created on first use by [`ensure_socks_user`]; it has no home and no shell.
pub(crate) const SOCKS_SYSTEM_USER: &str = "pxrsocks";
/// Its password (test-only, on a loopback-only proxy).
pub(crate) const SOCKS_SYSTEM_PASSWORD: &str = "Pxr-s0cks-pw";

static INSTANCE: AtomicUsize = AtomicUsize::new(0);

/// A running proxy server (plus, for stunnel, the HTTP proxy behind it).
pub(crate) struct ProxyServer {
    name: &'static str,
    scheme: &'static str,
    addr: SocketAddr,
    credentials: Option<(String, String)>,
    children: Vec<ChildGuard>,
    backend: Option<Box<ProxyServer>>,
    pki: Option<PemFiles>,
    shm_prefix: Option<String>,
    dir: ServerDir,
}

impl ProxyServer {
    /// The listening address (always 127.0.0.1).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Which server this is (`squid`, `dante`, ...).
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// `scheme://127.0.0.1:port`, without credentials. The scheme is the
    /// server's main protocol (`http`, `https`, `socks5`).
    pub(crate) fn proxy_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The same URL with another scheme (e.g. `socks4` for dante).
    pub(crate) fn proxy_url_as(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// The credentials the server was configured to accept, if any.
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// For TLS-fronted proxies: the CA that signed the proxy's certificate.
    pub(crate) fn ca_pem(&self) -> Option<PathBuf> {
        self.pki.as_ref().map(|p| p.ca.clone())
    }

    /// Tails of every log of this server (and its backend), for failure messages.
    pub(crate) fn logs(&self) -> String {
        let mut s = format!(
            "===== logs of {} at {} =====\n{}",
            self.name,
            self.addr,
            self.dir.logs(LOG_TAIL)
        );
        if let Some(b) = &self.backend {
            s.push_str(&b.logs());
        }
        s
    }

    /// A pharox [`Proxy`] pointing at this server, with optional credentials.
    pub(crate) fn proxy(&self, protocol: ProxyProtocol, creds: Option<(&str, &str)>) -> Proxy {
        let mut p = Proxy::new(protocol, "127.0.0.1", self.port());
        if let Some((u, pw)) = creds {
            p.username = Some(u.into());
            p.password = Some(pw.into());
            p.id = Proxy::derive_id(protocol, Some(u), "127.0.0.1", self.port()).into();
        }
        p
    }

    /// Kill the server (and its backend) now; its port then refuses.
    pub(crate) fn stop(&mut self) {
        // Front first, so nothing is left forwarding to a dead backend.
        for c in self.children.iter_mut().rev() {
            c.kill();
        }
        if let Some(b) = self.backend.as_mut() {
            b.stop();
        }
        if let Some(prefix) = &self.shm_prefix {
            remove_shm_segments(prefix);
        }
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Squid keeps shared-memory segments named after its service name
/// (`/dev/shm/<service>-*.shm`); a killed squid leaves them behind.
fn remove_shm_segments(prefix: &str) {
    if let Ok(rd) = fs::read_dir("/dev/shm") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn next_instance() -> usize {
    INSTANCE.fetch_add(1, Ordering::SeqCst)
}

fn find_squid_helper(name: &str) -> PathBuf {
    for d in ["/usr/lib/squid", "/usr/libexec/squid", "/usr/lib64/squid"] {
        let p = Path::new(d).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("squid helper `{name}` not found in /usr/lib/squid: install the Debian package `squid`");
}

/// An Apache MD5 (`$apr1$`) htpasswd line, which squid's basic_ncsa_auth reads.
fn htpasswd_line(user: &str, pass: &str) -> String {
    let openssl = require_binary(&["/usr/bin/openssl", "openssl"], "openssl");
    let (ok, out) = run(Command::new(openssl).args(["passwd", "-apr1", pass]));
    assert!(ok, "openssl passwd failed: {out}");
    format!("{user}:{}\n", out.trim())
}

/// Squid as a plain HTTP proxy; with `auth`, Basic auth against an htpasswd
/// file (407 for missing or wrong credentials). Squid's defaults add
/// `Via` and `X-Forwarded-For` (our address) to requests it forwards.
pub(crate) fn squid(auth: Option<(&str, &str)>) -> ProxyServer {
    squid_with(auth, "")
}

/// [`squid`] with `extra` config lines (e.g. `forwarded_for delete`,
/// `via off`, `tcp_outgoing_address 127.0.0.21`).
pub(crate) fn squid_with(auth: Option<(&str, &str)>, extra: &str) -> ProxyServer {
    let bin = require_binary(&["/usr/sbin/squid", "squid"], "squid");
    let dir = ServerDir::new("squid");
    // The service name keys squid's shared memory: unique per instance so
    // parallel squids never collide.
    let service = format!("pxr{}s{}", std::process::id(), next_instance());
    let auth_lines = match auth {
        Some((u, p)) => {
            let htpasswd = dir.write("htpasswd", htpasswd_line(u, p));
            let helper = find_squid_helper("basic_ncsa_auth");
            format!(
                "auth_param basic program {} {}\n\
                 auth_param basic children 2 startup=1\n\
                 auth_param basic realm pxr-test\n\
                 acl authed proxy_auth REQUIRED\n\
                 http_access deny !authed\n",
                helper.display(),
                htpasswd.display()
            )
        }
        None => String::new(),
    };
    let (addr, child) = start_on_free_port("squid", dir.path(), |port| {
        let d = dir.path().display();
        // Squid refuses to run as root: as root it switches to `proxy`, which
        // must own the dir to write its logs and read the htpasswd file.
        let user = if is_root() {
            "cache_effective_user proxy\n"
        } else {
            ""
        };
        // Names that are not in /etc/hosts fail at once, on loopback.
        let dns = super::dns::nxdomain_server().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let conf = format!(
            "http_port 127.0.0.1:{port}\n\
             {user}\
             visible_hostname pxr-squid\n\
             icp_port 0\n\
             htcp_port 0\n\
             udp_incoming_address 127.0.0.1\n\
             dns_nameservers {dns}\n\
             acl localnet src 127.0.0.0/8\n\
             http_access deny !localnet\n\
             {auth_lines}\
             http_access allow localnet\n\
             http_access deny all\n\
             cache deny all\n\
             cache_mem 8 MB\n\
             pid_filename {d}/squid.pid\n\
             access_log stdio:{d}/access.log\n\
             cache_log {d}/cache.log\n\
             cache_store_log none\n\
             coredump_dir {d}\n\
             connect_timeout 5 seconds\n\
             shutdown_lifetime 0 seconds\n\
             {extra}"
        );
        let conf_path = dir.write("squid.conf", conf);
        if is_root() {
            dir.chown_to_user("proxy");
        }
        let mut cmd = Command::new(&bin);
        cmd.arg("-N")
            .arg("-n")
            .arg(&service)
            .arg("-f")
            .arg(&conf_path);
        ChildGuard::spawn("squid", cmd, &dir.join("squid.out"))
    });
    ProxyServer {
        name: if auth.is_some() {
            "squid-auth"
        } else {
            "squid"
        },
        scheme: "http",
        addr,
        credentials: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        children: vec![child],
        backend: None,
        pki: None,
        shm_prefix: Some(format!("{service}-")),
        dir,
    }
}

/// Tinyproxy as a plain HTTP proxy (no ConnectPort lines: CONNECT to any
/// port), without its `Via` header.
pub(crate) fn tinyproxy() -> ProxyServer {
    tinyproxy_with("DisableViaHeader Yes\n")
}

/// Tinyproxy with `extra` config lines; without any, it adds its default
/// `Via` header (e.g. `Bind 127.0.0.24` picks the outgoing address).
pub(crate) fn tinyproxy_with(extra: &str) -> ProxyServer {
    let bin = require_binary(&["/usr/bin/tinyproxy", "tinyproxy"], "tinyproxy");
    let dir = ServerDir::new("tinyproxy");
    let (addr, child) = start_on_free_port("tinyproxy", dir.path(), |port| {
        let d = dir.path().display();
        let conf = format!(
            "Port {port}\n\
             Listen 127.0.0.1\n\
             Timeout 30\n\
             MaxClients 64\n\
             Allow 127.0.0.0/8\n\
             LogFile \"{d}/tinyproxy.log\"\n\
             LogLevel Info\n\
             PidFile \"{d}/tinyproxy.pid\"\n\
             {extra}"
        );
        let conf_path = dir.write("tinyproxy.conf", conf);
        let mut cmd = Command::new(&bin);
        cmd.arg("-d").arg("-c").arg(&conf_path);
        ChildGuard::spawn("tinyproxy", cmd, &dir.join("tinyproxy.out"))
    });
    ProxyServer {
        name: "tinyproxy",
        scheme: "http",
        addr,
        credentials: None,
        children: vec![child],
        backend: None,
        pki: None,
        shm_prefix: None,
        dir,
    }
}

fn start_dante(username_method: bool) -> ProxyServer {
    let bin = require_binary(&["/usr/sbin/danted", "danted"], "dante-server");
    let name = if username_method {
        "dante-auth"
    } else {
        "dante"
    };
    let dir = ServerDir::new(name);
    let method = if username_method { "username" } else { "none" };
    let (addr, child) = start_on_free_port(name, dir.path(), |port| {
        let d = dir.path().display();
        // As root dante needs an unprivileged user to run as; `root` stays
        // privileged so it can read /etc/shadow for the username method.
        let users = if is_root() {
            "user.privileged: root\nuser.unprivileged: nobody\n"
        } else {
            ""
        };
        let conf = format!(
            "logoutput: {d}/danted.log\n\
             internal: 127.0.0.1 port = {port}\n\
             external: 127.0.0.1\n\
             clientmethod: none\n\
             socksmethod: {method}\n\
             {users}\
             client pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  log: error\n}}\n\
             socks pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  protocol: tcp\n  log: error connect\n}}\n"
        );
        let conf_path = dir.write("danted.conf", conf);
        let mut cmd = Command::new(&bin);
        cmd.arg("-f")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.join("danted.pid"))
            .arg("-N")
            .arg("1");
        ChildGuard::spawn("danted", cmd, &dir.join("danted.out"))
    });
    ProxyServer {
        name,
        scheme: "socks5",
        addr,
        credentials: if username_method {
            Some((
                SOCKS_SYSTEM_USER.to_string(),
                SOCKS_SYSTEM_PASSWORD.to_string(),
            ))
        } else {
            None
        },
        children: vec![child],
        backend: None,
        pki: None,
        shm_prefix: None,
        dir,
    }
}

/// Dante without authentication: SOCKS4 and SOCKS5 (SOCKS5h too: dante
/// resolves names it is given). Dante does not implement SOCKS4a.
pub(crate) fn dante() -> ProxyServer {
    start_dante(false)
}

/// Dante with `socksmethod: username` (SOCKS5 only), accepting
/// [`SOCKS_SYSTEM_USER`] / [`SOCKS_SYSTEM_PASSWORD`]. Needs root: creates
/// that system user (no home, no shell) if it is absent.
pub(crate) fn dante_auth() -> ProxyServer {
    ensure_socks_user();
    start_dante(true)
}

/// Create [`SOCKS_SYSTEM_USER`] if absent and (re)set its password, once per
/// test process. Dante checks SOCKS5 credentials against the system password
/// database, so this is the only way to test its username method.
pub(crate) fn ensure_socks_user() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        assert!(
            is_root(),
            "dante's username method checks system users: run the tests as root to create `{SOCKS_SYSTEM_USER}`"
        );
        let (exists, _) = run(Command::new("id").arg("-u").arg(SOCKS_SYSTEM_USER));
        if !exists {
            let useradd = require_binary(&["/usr/sbin/useradd", "useradd"], "passwd");
            let (ok, out) = run(Command::new(useradd).args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SOCKS_SYSTEM_USER,
            ]));
            // Exit 9: another test process created it meanwhile.
            let (now, _) = run(Command::new("id").arg("-u").arg(SOCKS_SYSTEM_USER));
            assert!(ok || now, "useradd {SOCKS_SYSTEM_USER} failed: {out}");
        }
        let chpasswd = require_binary(&["/usr/sbin/chpasswd", "chpasswd"], "passwd");
        let mut last = String::new();
        for _ in 0..5 {
            let mut child = Command::new(&chpasswd)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn chpasswd");
            {
                use std::io::Write;
                let mut stdin = child.stdin.take().expect("chpasswd stdin");
                stdin
                    .write_all(format!("{SOCKS_SYSTEM_USER}:{SOCKS_SYSTEM_PASSWORD}\n").as_bytes())
                    .expect("write chpasswd");
            }
            let out = child.wait_with_output().expect("chpasswd");
            if out.status.success() {
                return;
            }
            // /etc/shadow may be locked by a concurrent user tool: retry.
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("chpasswd for {SOCKS_SYSTEM_USER} failed: {last}");
    });
}

/// microsocks (SOCKS5); with `auth`, RFC 1929 username/password only.
pub(crate) fn microsocks(auth: Option<(&str, &str)>) -> ProxyServer {
    microsocks_bound(auth, None)
}

/// [`microsocks`] connecting out from `bind` (its `-b`), when given.
pub(crate) fn microsocks_bound(auth: Option<(&str, &str)>, bind: Option<&str>) -> ProxyServer {
    let bin = require_binary(&["/usr/bin/microsocks", "microsocks"], "microsocks");
    let name = if auth.is_some() {
        "microsocks-auth"
    } else {
        "microsocks"
    };
    let dir = ServerDir::new(name);
    let (addr, child) = start_on_free_port(name, dir.path(), |port| {
        let mut cmd = Command::new(&bin);
        cmd.arg("-i")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string());
        if let Some((u, p)) = auth {
            cmd.arg("-u").arg(u).arg("-P").arg(p);
        }
        if let Some(b) = bind {
            cmd.arg("-b").arg(b);
        }
        ChildGuard::spawn("microsocks", cmd, &dir.join("microsocks.out"))
    });
    ProxyServer {
        name,
        scheme: "socks5",
        addr,
        credentials: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        children: vec![child],
        backend: None,
        pki: None,
        shm_prefix: None,
        dir,
    }
}

/// microsocks (SOCKS5, no auth) whose outgoing connections leave from
/// `exit` (`-b`, a 127.0.0.0/8 address): targets see that address as the
/// client, so tests get distinct exit IPs on loopback.
pub(crate) fn microsocks_exiting_from(exit: std::net::Ipv4Addr) -> ProxyServer {
    assert!(exit.is_loopback(), "exit addresses stay on loopback");
    let bin = require_binary(&["/usr/bin/microsocks", "microsocks"], "microsocks");
    let name = "microsocks-bound";
    let dir = ServerDir::new(name);
    let (addr, child) = start_on_free_port(name, dir.path(), |port| {
        let mut cmd = Command::new(&bin);
        cmd.arg("-i")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .arg("-b")
            .arg(exit.to_string());
        ChildGuard::spawn("microsocks", cmd, &dir.join("microsocks.out"))
    });
    ProxyServer {
        name,
        scheme: "socks5",
        addr,
        credentials: None,
        children: vec![child],
        backend: None,
        pki: None,
        shm_prefix: None,
        dir,
    }
}

/// An HTTPS proxy: stunnel terminating TLS (certificate from a fresh test CA,
/// see [`ProxyServer::ca_pem`]) in front of a tinyproxy.
pub(crate) fn stunnel_https_proxy() -> ProxyServer {
    let bin = require_binary(&["/usr/bin/stunnel4", "stunnel4", "stunnel"], "stunnel4");
    let backend = tinyproxy();
    let dir = ServerDir::new("stunnel");
    let pki = TestPki::generate().write_pem(dir.path());
    let (addr, child) = start_on_free_port("stunnel", dir.path(), |port| {
        let d = dir.path().display();
        let conf = format!(
            "foreground = yes\n\
             pid = {d}/stunnel.pid\n\
             output = {d}/stunnel.log\n\
             debug = 5\n\
             [https-proxy]\n\
             accept = 127.0.0.1:{port}\n\
             connect = {}\n\
             cert = {}\n\
             key = {}\n",
            backend.addr(),
            pki.cert.display(),
            pki.key.display()
        );
        let conf_path = dir.write("stunnel.conf", conf);
        let mut cmd = Command::new(&bin);
        cmd.arg(&conf_path);
        ChildGuard::spawn("stunnel", cmd, &dir.join("stunnel.out"))
    });
    ProxyServer {
        name: "stunnel",
        scheme: "https",
        addr,
        credentials: None,
        children: vec![child],
        backend: Some(Box::new(backend)),
        pki: Some(pki),
        shm_prefix: None,
        dir,
    }
}

fn current_user_name() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| panic!("no /etc/passwd entry for uid {uid}"))
}

/// OpenSSH dynamic forwarding (`ssh -D`) as a SOCKS4/4a/5 server: an sshd on
/// loopback with a throwaway host key and an authorized client key, and an
/// `ssh -N -D` to it. The one Debian SOCKS server that speaks SOCKS4a.
/// sshd needs its privilege-separation dir /run/sshd, created if absent.
pub(crate) fn ssh_socks() -> ProxyServer {
    let sshd = require_binary(&["/usr/sbin/sshd"], "openssh-server");
    let ssh = require_binary(&["/usr/bin/ssh", "ssh"], "openssh-client");
    let keygen = require_binary(&["/usr/bin/ssh-keygen", "ssh-keygen"], "openssh-client");
    let dir = ServerDir::new("ssh-socks");
    for key in ["host_key", "client_key"] {
        let (ok, out) = run(Command::new(&keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(key)));
        assert!(ok, "ssh-keygen failed: {out}");
    }
    fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).expect("authorized_keys");
    let _ = fs::create_dir_all("/run/sshd");
    let (sshd_addr, sshd_child) = start_on_free_port("sshd", dir.path(), |port| {
        let d = dir.path().display();
        let conf = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {d}/host_key\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             AllowTcpForwarding yes\n\
             LogLevel ERROR\n"
        );
        let conf_path = dir.write("sshd_config", conf);
        let mut cmd = Command::new(&sshd);
        cmd.arg("-D").arg("-e").arg("-f").arg(&conf_path);
        ChildGuard::spawn("sshd", cmd, &dir.join("sshd.out"))
    });
    let login = format!("{}@127.0.0.1", current_user_name());
    let (addr, client) = start_on_free_port("ssh -D", dir.path(), |port| {
        let mut cmd = Command::new(&ssh);
        cmd.args(["-F", "/dev/null", "-N", "-D"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-p")
            .arg(sshd_addr.port().to_string())
            .arg("-i")
            .arg(dir.join("client_key"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(&login);
        ChildGuard::spawn("ssh -D", cmd, &dir.join("ssh.out"))
    });
    ProxyServer {
        name: "ssh-socks",
        scheme: "socks5",
        addr,
        credentials: None,
        // Killed in reverse order: the client before sshd.
        children: vec![sshd_child, client],
        backend: None,
        pki: None,
        shm_prefix: None,
        dir,
    }
}
