//! The "limit" contender: the least code that checks a proxy correctly.
//!
//! Bounded concurrency (`buffer_unordered` over spawned tasks, so every
//! worker thread runs checks), one attempt under one deadline:
//! connect, SOCKS5 / SOCKS4 / HTTP handshake, one GET, read the status line,
//! classify against the slow threshold. No phases, no metrics, no retries:
//! whatever the real exporter spends beyond this is its overhead.
//!
//! An `https://` target adds what any correct client must do: a CONNECT
//! (HTTP proxies) or SOCKS tunnel, then a verified TLS handshake with one
//! shared rustls config, resuming sessions unless `--no-resume`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use clap::Parser;
use futures_util::stream::{self, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "Minimal bounded-concurrency proxy checker (benchmark baseline)")]
struct Args {
    /// Inventory CSV (id,protocol,host,port,username,password,pool,provider).
    #[arg(long)]
    inventory: PathBuf,
    /// Target URL, http:// only (host:port/path).
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    target_url: String,
    /// Deadline of the whole check, in seconds.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Above this, a successful check is SLOW.
    #[arg(long, default_value_t = 500)]
    slow_threshold_ms: u64,
    /// Checks in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Tokio worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// CA certificate (PEM) the HTTPS target's certificate must chain to.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Full TLS handshake every time: no session resumption.
    #[arg(long)]
    no_resume: bool,
}

#[derive(Debug, serde::Deserialize)]
struct Row {
    id: String,
    protocol: String,
    host: String,
    port: u16,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

struct Target {
    host: String,
    port: u16,
    path: String,
    url: String,
    /// `Some` for an https:// target: the one config every check shares.
    tls: Option<tokio_rustls::TlsConnector>,
}

/// A failure with its reason, as the exporter spells reasons.
struct Fail(&'static str);

fn io_reason(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connect_refused",
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => "connection_reset",
        _ => "connect_error",
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail(io_reason(&e))
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if args.workers > 0 {
        rt.worker_threads(args.workers);
    }
    rt.build()?.block_on(run(args))
}

fn tls_connector(
    ca_file: Option<&std::path::Path>,
    resume: bool,
) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

fn parse_target(url: &str, args: &Args) -> Result<Target> {
    let (rest, default_port, tls) = if let Some(r) = url.strip_prefix("http://") {
        (r, 80, None)
    } else if let Some(r) = url.strip_prefix("https://") {
        (
            r,
            443,
            Some(tls_connector(args.ca_file.as_deref(), !args.no_resume)?),
        )
    } else {
        anyhow::bail!("lean supports http:// and https:// targets only");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().context("target port")?),
        None => (authority.to_string(), default_port),
    };
    Ok(Target {
        host,
        port,
        path: path.to_string(),
        url: url.to_string(),
        tls,
    })
}

async fn run(args: Args) -> Result<()> {
    let target = Arc::new(parse_target(&args.target_url, &args)?);
    let mut rdr = csv::Reader::from_path(&args.inventory).context("open inventory")?;
    let rows: Vec<Row> = rdr.deserialize().collect::<Result<_, _>>()?;
    let n = rows.len();
    let timeout = Duration::from_secs_f64(args.timeout);
    let slow = Duration::from_millis(args.slow_threshold_ms);
    let t0 = Instant::now();
    // `map` is lazy: a task is spawned only when buffer_unordered has a free
    // slot, so at most `concurrency` checks exist at once.
    let mut results = stream::iter(rows)
        .map(|row| {
            let target = target.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let out = match tokio::time::timeout(timeout, attempt(&row, &target)).await {
                    Ok(Ok(code)) => {
                        let took = start.elapsed();
                        if code == 200 {
                            (if took <= slow { "active" } else { "slow" }, None)
                        } else {
                            ("inactive", Some("unexpected_status"))
                        }
                    }
                    Ok(Err(Fail(r))) => ("inactive", Some(r)),
                    Err(_) => ("inactive", Some("timeout")),
                };
                (row, out, start.elapsed())
            })
        })
        .buffer_unordered(args.concurrency.max(1));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    while let Some(joined) = results.next().await {
        let (row, (status, reason), took) = joined?;
        *counts.entry(status).or_default() += 1;
        let line = serde_json::json!({
            "id": row.id,
            "status": status,
            "reason": reason,
            "latency_ms": took.as_millis() as u64,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    let wall = t0.elapsed().as_secs_f64();
    eprintln!(
        "{}",
        serde_json::json!({
            "checked": n,
            "wall_s": wall,
            "checks_per_s": n as f64 / wall,
            "by_status": counts,
        })
    );
    Ok(())
}

async fn attempt(row: &Row, t: &Target) -> Result<u16, Fail> {
    let ip: IpAddr = row.host.parse().map_err(|_| Fail("dns"))?;
    let mut s = TcpStream::connect(SocketAddr::new(ip, row.port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Fail("connect_refused"),
            _ => Fail("connect_error"),
        })?;
    s.set_nodelay(true)?;
    let user = row.username.as_deref().filter(|u| !u.is_empty());
    let pass = row.password.as_deref().unwrap_or("");
    let auth = || match user {
        Some(u) => format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pass}"))
        ),
        None => String::new(),
    };
    let auth_fail = || {
        Fail(if user.is_some() {
            "proxy_auth_failed"
        } else {
            "proxy_auth_required"
        })
    };
    let origin_get = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
        t.path, t.host, t.port
    );
    let request = match row.protocol.as_str() {
        "socks5" | "socks5h" => {
            socks5(&mut s, t, user, pass).await?;
            origin_get
        }
        "socks4" | "socks4a" => {
            socks4(&mut s, t, user).await?;
            origin_get
        }
        "http" if t.tls.is_some() => {
            let connect = format!(
                "CONNECT {h}:{p} HTTP/1.1\r\nHost: {h}:{p}\r\n{}\r\n",
                auth(),
                h = t.host,
                p = t.port
            );
            s.write_all(connect.as_bytes()).await?;
            match read_connect_reply(&mut s).await? {
                200..=299 => {}
                407 => return Err(auth_fail()),
                _ => return Err(Fail("proxy_refused")),
            }
            origin_get
        }
        "http" => format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\n{}Connection: close\r\n\r\n",
            t.url,
            t.host,
            t.port,
            auth()
        ),
        _ => return Err(Fail("proxy_protocol")),
    };
    let code = match &t.tls {
        Some(tls) => {
            let name =
                rustls::pki_types::ServerName::try_from(t.host.clone()).map_err(|_| Fail("tls"))?;
            let mut s = tls.connect(name, s).await.map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => Fail("tls"),
                _ => Fail(io_reason(&e)),
            })?;
            exchange(&mut s, &request).await?
        }
        None => exchange(&mut s, &request).await?,
    };
    if row.protocol == "http" && t.tls.is_none() && code == 407 {
        return Err(auth_fail());
    }
    Ok(code)
}

/// Send the GET, read the status code of the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &str,
) -> Result<u16, Fail> {
    s.write_all(request.as_bytes()).await?;
    read_status(s).await
}

/// The status of the answer to CONNECT, its head read to the end (the
/// tunnel starts right after it).
async fn read_connect_reply(s: &mut TcpStream) -> Result<u16, Fail> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(Fail("connection_reset"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return status_of(&buf);
        }
        if buf.len() > 8192 {
            return Err(Fail("proxy_protocol"));
        }
    }
}

async fn socks5(s: &mut TcpStream, t: &Target, user: Option<&str>, pass: &str) -> Result<(), Fail> {
    if user.is_some() {
        s.write_all(&[5, 2, 0, 2]).await?;
    } else {
        s.write_all(&[5, 1, 0]).await?;
    }
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await?;
    if r[0] != 5 {
        return Err(Fail("proxy_protocol"));
    }
    match r[1] {
        0 => {}
        2 => {
            let u = user.ok_or(Fail("proxy_protocol"))?;
            let mut m = vec![1, u.len() as u8];
            m.extend_from_slice(u.as_bytes());
            m.push(pass.len() as u8);
            m.extend_from_slice(pass.as_bytes());
            s.write_all(&m).await?;
            s.read_exact(&mut r).await?;
            if r[1] != 0 {
                return Err(Fail("proxy_auth_failed"));
            }
        }
        0xFF => {
            return Err(Fail(if user.is_some() {
                "proxy_auth_failed"
            } else {
                "proxy_auth_required"
            }))
        }
        _ => return Err(Fail("proxy_protocol")),
    }
    let mut req = vec![5, 1, 0];
    match t.host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            req.push(1);
            req.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            req.push(4);
            req.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            req.push(3);
            req.push(t.host.len() as u8);
            req.extend_from_slice(t.host.as_bytes());
        }
    }
    req.extend_from_slice(&t.port.to_be_bytes());
    s.write_all(&req).await?;
    let mut rep = [0u8; 4];
    s.read_exact(&mut rep).await?;
    if rep[0] != 5 {
        return Err(Fail("proxy_protocol"));
    }
    if rep[1] != 0 {
        return Err(Fail("proxy_refused"));
    }
    let skip = match rep[3] {
        1 => 6,
        4 => 18,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await?;
            usize::from(l[0]) + 2
        }
        _ => return Err(Fail("proxy_protocol")),
    };
    let mut rest = vec![0u8; skip];
    s.read_exact(&mut rest).await?;
    Ok(())
}

async fn socks4(s: &mut TcpStream, t: &Target, user: Option<&str>) -> Result<(), Fail> {
    let ip: std::net::Ipv4Addr = t.host.parse().map_err(|_| Fail("dns"))?;
    let mut req = vec![4, 1];
    req.extend_from_slice(&t.port.to_be_bytes());
    req.extend_from_slice(&ip.octets());
    req.extend_from_slice(user.unwrap_or("").as_bytes());
    req.push(0);
    s.write_all(&req).await?;
    let mut rep = [0u8; 8];
    s.read_exact(&mut rep).await?;
    if rep[0] != 0 {
        return Err(Fail("proxy_protocol"));
    }
    match rep[1] {
        0x5A => Ok(()),
        0x5B..=0x5D => Err(Fail("proxy_refused")),
        _ => Err(Fail("proxy_protocol")),
    }
}

/// Read until the end of the status line and parse its code.
async fn read_status<S: AsyncRead + Unpin>(s: &mut S) -> Result<u16, Fail> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(Fail("connection_reset"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(2).any(|w| w == b"\r\n") {
            return status_of(&buf);
        }
        if buf.len() > 8192 {
            return Err(Fail("http"));
        }
    }
}

/// The code of the status line at the start of `buf` (which holds a CRLF).
fn status_of(buf: &[u8]) -> Result<u16, Fail> {
    let end = buf
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(buf.len());
    let mut parts = buf[..end].split(|b| *b == b' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with(b"HTTP/1.") {
        return Err(Fail("proxy_protocol"));
    }
    parts
        .next()
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok())
        .ok_or(Fail("http"))
}
