//! A fake proxy fleet: tens of thousands of distinct proxies from one process.
//!
//! It binds 0.0.0.0 on the SOCKS5, SOCKS4 and HTTP proxy ports, so it must run
//! inside a network namespace that holds only `lo` (bench/run.sh makes one and
//! refuses to start otherwise unless `--addr` names a loopback address). The
//! behaviour of each accepted connection is chosen by the local address it
//! was dialled on (see `pharox_bench::Behaviour`), so every 127.x.y.z is a
//! different proxy and the fleet keeps no per-proxy state.
//!
//! The fleet short-circuits tunnels: after a successful SOCKS/CONNECT
//! handshake (or on an absolute-form GET) it answers the HTTP request itself
//! instead of dialling the target. That keeps the fleet cheap, so the checker
//! under test is the bottleneck. It also serves the target itself on
//! 127.0.0.1:8080 for anyone who dials it directly.
//!
//! The HTTPS target: at start the fleet makes a throwaway CA and a leaf for
//! `127.0.0.1`/`localhost` (written to `--ca-out` for the checkers to trust),
//! serves TLS on 127.0.0.1:8443, and answers any tunnel whose destination
//! port is 8443 over TLS, after the proxy handshake, as the target would.
//! Session tickets are stateless (a ticketer), as big HTTPS sites issue
//! them, so clients that keep a resumption cache can resume.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::Parser;
use pharox_bench::{
    Behaviour, AUTH_PASS, AUTH_USER, PORT_HTTP, PORT_SOCKS4, PORT_SOCKS5, PORT_TARGET,
    PORT_TARGET_TLS, TARGET_RESPONSE,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "Fake proxy fleet for the pharox-exporter benchmark (run inside a netns)")]
struct Args {
    /// Address to bind the listeners on. 0.0.0.0 is only allowed with
    /// --in-netns, which the run script passes after creating the namespace.
    #[arg(long, default_value = "127.0.0.1")]
    addr: Ipv4Addr,
    /// Confirms the process runs in a network namespace holding only `lo`.
    #[arg(long)]
    in_netns: bool,
    /// Delay of the answer of SLOW proxies, in milliseconds (> slow threshold, < timeout).
    #[arg(long, default_value_t = 800)]
    slow_delay_ms: u64,
    /// A hanging connection is dropped after this many seconds even if the
    /// client never gives up, so nothing the fleet holds is unbounded.
    #[arg(long, default_value_t = 30)]
    hang_max_s: u64,
    /// Exit by itself after this many seconds (the run script also kills it by PID).
    #[arg(long, default_value_t = 7200)]
    max_runtime_s: u64,
    /// Listen backlog of each listener.
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
    /// Worker threads (0: tokio's default, one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Write the PEM of the CA that signed the HTTPS target's certificate here.
    #[arg(long)]
    ca_out: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Socks5,
    Socks4,
    Http,
    Target,
    TargetTls,
}

struct Ctx {
    slow_delay: Duration,
    hang_max: Duration,
    basic: String,
    accepted: AtomicU64,
    tls: tokio_rustls::TlsAcceptor,
}

/// A fresh CA and a server config presenting its leaf, with stateless
/// session tickets so that resumption works across any number of clients.
fn tls_server(ca_out: Option<&std::path::Path>) -> Result<tokio_rustls::TlsAcceptor> {
    let pki = pharox_testkit::pki::TestPki::generate();
    if let Some(path) = ca_out {
        std::fs::write(path, &pki.ca_pem).with_context(|| format!("write {}", path.display()))?;
    }
    let certs = rustls_pemfile::certs(&mut pki.cert_pem.as_bytes())
        .chain(rustls_pemfile::certs(&mut pki.ca_pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut pki.key_pem.as_bytes())?
        .context("the PKI's key PEM holds no key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.addr.is_unspecified() && !args.in_netns {
        bail!("refusing to bind 0.0.0.0 outside a network namespace (pass --in-netns inside one)");
    }
    if !args.addr.is_unspecified() && !args.addr.is_loopback() {
        bail!("--addr must be loopback or 0.0.0.0 (inside a netns)");
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if args.workers > 0 {
        rt.worker_threads(args.workers);
    }
    rt.build()?.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let ctx = Arc::new(Ctx {
        slow_delay: Duration::from_millis(args.slow_delay_ms),
        hang_max: Duration::from_secs(args.hang_max_s),
        basic: base64::engine::general_purpose::STANDARD.encode(format!("{AUTH_USER}:{AUTH_PASS}")),
        accepted: AtomicU64::new(0),
        tls: tls_server(args.ca_out.as_deref())?,
    });
    let mut listeners = Vec::new();
    for (port, kind) in [
        (PORT_SOCKS5, Kind::Socks5),
        (PORT_SOCKS4, Kind::Socks4),
        (PORT_HTTP, Kind::Http),
        (PORT_TARGET, Kind::Target),
        (PORT_TARGET_TLS, Kind::TargetTls),
    ] {
        let sa = SocketAddr::new(IpAddr::V4(args.addr), port);
        let sock = TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(sa).with_context(|| format!("bind {sa}"))?;
        let l = sock.listen(args.backlog)?;
        listeners.push(tokio::spawn(accept_loop(l, kind, ctx.clone())));
    }
    eprintln!(
        "fleet ready on {} ports {PORT_SOCKS5}/socks5 {PORT_SOCKS4}/socks4 {PORT_HTTP}/http {PORT_TARGET}/target {PORT_TARGET_TLS}/target-tls",
        args.addr
    );
    let deadline = tokio::time::sleep(Duration::from_secs(args.max_runtime_s));
    tokio::select! {
        _ = deadline => eprintln!("fleet: max runtime reached"),
        _ = tokio::signal::ctrl_c() => eprintln!("fleet: interrupted"),
    }
    eprintln!(
        "fleet: accepted {} connections",
        ctx.accepted.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn accept_loop(l: tokio::net::TcpListener, kind: Kind, ctx: Arc<Ctx>) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                ctx.accepted.fetch_add(1, Ordering::Relaxed);
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    // Errors are the client's business (it hung up, timed out):
                    // a fake proxy has nothing to report about them.
                    let _ = serve(s, kind, &ctx).await;
                });
            }
            // EMFILE and friends: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn serve(mut s: TcpStream, kind: Kind, ctx: &Ctx) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    if kind == Kind::Target {
        read_head(&mut s).await?;
        return s.write_all(TARGET_RESPONSE).await;
    }
    if kind == Kind::TargetTls {
        let mut t = ctx.tls.accept(s).await?;
        read_head(&mut t).await?;
        t.write_all(TARGET_RESPONSE).await?;
        return t.shutdown().await;
    }
    let local = match s.local_addr()?.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => return Ok(()),
    };
    let Some(b) = Behaviour::of_addr(local) else {
        return Ok(());
    };
    match b {
        Behaviour::Reset | Behaviour::Refused => {
            // SO_LINGER 0 turns the close into a RST.
            s.set_zero_linger()?;
            drop(s);
            return Ok(());
        }
        Behaviour::Hang => {
            // Read and discard until the client gives up, bounded in time and bytes.
            let mut buf = [0u8; 512];
            let _ = tokio::time::timeout(ctx.hang_max, async {
                let mut total = 0usize;
                while total < 65_536 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
            })
            .await;
            return Ok(());
        }
        _ => {}
    }
    let tunnel_to = match kind {
        Kind::Socks5 => socks5(&mut s, b).await?,
        Kind::Socks4 => socks4(&mut s, b).await?,
        Kind::Http => return http_proxy(s, b, ctx).await,
        Kind::Target | Kind::TargetTls => unreachable!("handled above"),
    };
    if let Some(port) = tunnel_to {
        tunnel(s, b, ctx, port).await?;
    }
    Ok(())
}

/// Play the target at the end of a (short-circuited) tunnel to `port`: over
/// TLS when the client asked for the HTTPS target's port.
async fn tunnel(s: TcpStream, b: Behaviour, ctx: &Ctx, port: u16) -> std::io::Result<()> {
    if port == PORT_TARGET_TLS {
        let mut t = ctx.tls.accept(s).await?;
        return answer_get(&mut t, b, ctx).await;
    }
    let mut s = s;
    answer_get(&mut s, b, ctx).await
}

/// Read the GET sent through the (short-circuited) tunnel and answer it.
async fn answer_get<S>(s: &mut S, b: Behaviour, ctx: &Ctx) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    read_head(s).await?;
    if b == Behaviour::Slow {
        tokio::time::sleep(ctx.slow_delay).await;
    }
    s.write_all(TARGET_RESPONSE).await?;
    s.shutdown().await
}

const GARBAGE: &[u8] = b"\x17\x03\x03 this is not a proxy protocol\r\n\r\n";

/// The SOCKS5 handshake; `Some(destination port)` when the tunnel is open.
async fn socks5(s: &mut TcpStream, b: Behaviour) -> std::io::Result<Option<u16>> {
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).await?;
    let mut methods = vec![0u8; usize::from(hdr[1])];
    s.read_exact(&mut methods).await?;
    if b == Behaviour::Garbage {
        s.write_all(GARBAGE).await?;
        return Ok(None);
    }
    if hdr[0] != 5 {
        return Ok(None);
    }
    if b == Behaviour::Auth {
        if !methods.contains(&2) {
            s.write_all(&[5, 0xFF]).await?;
            return Ok(None);
        }
        s.write_all(&[5, 2]).await?;
        let mut v = [0u8; 2];
        s.read_exact(&mut v).await?;
        let mut user = vec![0u8; usize::from(v[1])];
        s.read_exact(&mut user).await?;
        let mut plen = [0u8; 1];
        s.read_exact(&mut plen).await?;
        let mut pass = vec![0u8; usize::from(plen[0])];
        s.read_exact(&mut pass).await?;
        if user != AUTH_USER.as_bytes() || pass != AUTH_PASS.as_bytes() {
            s.write_all(&[1, 1]).await?;
            return Ok(None);
        }
        s.write_all(&[1, 0]).await?;
    } else if methods.contains(&0) {
        s.write_all(&[5, 0]).await?;
    } else {
        s.write_all(&[5, 0xFF]).await?;
        return Ok(None);
    }
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    let alen = match req[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await?;
            usize::from(l[0])
        }
        _ => return Ok(None),
    };
    let mut rest = vec![0u8; alen + 2];
    s.read_exact(&mut rest).await?;
    if b == Behaviour::DestRefused {
        s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(None);
    }
    let p = PORT_TARGET.to_be_bytes();
    s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, p[0], p[1]]).await?;
    Ok(Some(u16::from_be_bytes([rest[alen], rest[alen + 1]])))
}

/// The SOCKS4 handshake; `Some(destination port)` when the tunnel is open.
async fn socks4(s: &mut TcpStream, b: Behaviour) -> std::io::Result<Option<u16>> {
    let mut req = [0u8; 8];
    s.read_exact(&mut req).await?;
    // User id, then (SOCKS4a, address 0.0.0.x) a host name: both NUL-terminated.
    let nuls = if req[4] == 0 && req[5] == 0 && req[6] == 0 && req[7] != 0 {
        2
    } else {
        1
    };
    let mut seen = 0;
    let mut total = 0;
    let mut byte = [0u8; 1];
    while seen < nuls && total < 1024 {
        s.read_exact(&mut byte).await?;
        total += 1;
        if byte[0] == 0 {
            seen += 1;
        }
    }
    let code = match b {
        Behaviour::Garbage => {
            s.write_all(GARBAGE).await?;
            return Ok(None);
        }
        Behaviour::DestRefused => 0x5B,
        _ => 0x5A,
    };
    s.write_all(&[0, code, req[2], req[3], req[4], req[5], req[6], req[7]])
        .await?;
    Ok((code == 0x5A).then(|| u16::from_be_bytes([req[2], req[3]])))
}

async fn http_proxy(mut owned: TcpStream, b: Behaviour, ctx: &Ctx) -> std::io::Result<()> {
    let s = &mut owned;
    let head = read_head(s).await?;
    if b == Behaviour::Garbage {
        return s.write_all(GARBAGE).await;
    }
    let text = String::from_utf8_lossy(&head);
    if b == Behaviour::Auth {
        let ok = text.lines().any(|l| {
            let Some((name, value)) = l.split_once(':') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("proxy-authorization")
                && value
                    .trim()
                    .strip_prefix("Basic ")
                    .is_some_and(|v| v.trim() == ctx.basic)
        });
        if !ok {
            return s
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"bench\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    }
    if b == Behaviour::DestRefused {
        return s
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
    }
    if let Some(target) = text.strip_prefix("CONNECT ") {
        // `CONNECT host:port HTTP/1.1`: the port picks plain or TLS.
        let port = target
            .split_whitespace()
            .next()
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(PORT_TARGET);
        s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        return tunnel(owned, b, ctx, port).await;
    }
    // Absolute-form request: a forwarding proxy answers it itself.
    if b == Behaviour::Slow {
        tokio::time::sleep(ctx.slow_delay).await;
    }
    s.write_all(TARGET_RESPONSE).await?;
    s.shutdown().await
}

/// Read up to the end of an HTTP request head (bounded at 16 KiB).
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(buf);
        }
        if buf.len() > 16 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}
