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

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::Parser;
use pharox_bench::{
    Behaviour, AUTH_PASS, AUTH_USER, PORT_HTTP, PORT_SOCKS4, PORT_SOCKS5, PORT_TARGET,
    TARGET_RESPONSE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Socks5,
    Socks4,
    Http,
    Target,
}

struct Ctx {
    slow_delay: Duration,
    hang_max: Duration,
    basic: String,
    accepted: AtomicU64,
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
    });
    let mut listeners = Vec::new();
    for (port, kind) in [
        (PORT_SOCKS5, Kind::Socks5),
        (PORT_SOCKS4, Kind::Socks4),
        (PORT_HTTP, Kind::Http),
        (PORT_TARGET, Kind::Target),
    ] {
        let sa = SocketAddr::new(IpAddr::V4(args.addr), port);
        let sock = TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(sa).with_context(|| format!("bind {sa}"))?;
        let l = sock.listen(args.backlog)?;
        listeners.push(tokio::spawn(accept_loop(l, kind, ctx.clone())));
    }
    eprintln!(
        "fleet ready on {} ports {PORT_SOCKS5}/socks5 {PORT_SOCKS4}/socks4 {PORT_HTTP}/http {PORT_TARGET}/target",
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
    let tunnel_ok = match kind {
        Kind::Socks5 => socks5(&mut s, b).await?,
        Kind::Socks4 => socks4(&mut s, b).await?,
        Kind::Http => return http_proxy(&mut s, b, ctx).await,
        Kind::Target => unreachable!("handled above"),
    };
    if tunnel_ok {
        answer_get(&mut s, b, ctx).await?;
    }
    Ok(())
}

/// Read the GET sent through the (short-circuited) tunnel and answer it.
async fn answer_get(s: &mut TcpStream, b: Behaviour, ctx: &Ctx) -> std::io::Result<()> {
    read_head(s).await?;
    if b == Behaviour::Slow {
        tokio::time::sleep(ctx.slow_delay).await;
    }
    s.write_all(TARGET_RESPONSE).await?;
    s.shutdown().await
}

const GARBAGE: &[u8] = b"\x17\x03\x03 this is not a proxy protocol\r\n\r\n";

async fn socks5(s: &mut TcpStream, b: Behaviour) -> std::io::Result<bool> {
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).await?;
    let mut methods = vec![0u8; usize::from(hdr[1])];
    s.read_exact(&mut methods).await?;
    if b == Behaviour::Garbage {
        s.write_all(GARBAGE).await?;
        return Ok(false);
    }
    if hdr[0] != 5 {
        return Ok(false);
    }
    if b == Behaviour::Auth {
        if !methods.contains(&2) {
            s.write_all(&[5, 0xFF]).await?;
            return Ok(false);
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
            return Ok(false);
        }
        s.write_all(&[1, 0]).await?;
    } else if methods.contains(&0) {
        s.write_all(&[5, 0]).await?;
    } else {
        s.write_all(&[5, 0xFF]).await?;
        return Ok(false);
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
        _ => return Ok(false),
    };
    let mut rest = vec![0u8; alen + 2];
    s.read_exact(&mut rest).await?;
    if b == Behaviour::DestRefused {
        s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(false);
    }
    let p = PORT_TARGET.to_be_bytes();
    s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, p[0], p[1]]).await?;
    Ok(true)
}

async fn socks4(s: &mut TcpStream, b: Behaviour) -> std::io::Result<bool> {
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
            return Ok(false);
        }
        Behaviour::DestRefused => 0x5B,
        _ => 0x5A,
    };
    s.write_all(&[0, code, req[2], req[3], req[4], req[5], req[6], req[7]])
        .await?;
    Ok(code == 0x5A)
}

async fn http_proxy(s: &mut TcpStream, b: Behaviour, ctx: &Ctx) -> std::io::Result<()> {
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
    if text.starts_with("CONNECT ") {
        s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        return answer_get(s, b, ctx).await;
    }
    // Absolute-form request: a forwarding proxy answers it itself.
    if b == Behaviour::Slow {
        tokio::time::sleep(ctx.slow_delay).await;
    }
    s.write_all(TARGET_RESPONSE).await?;
    s.shutdown().await
}

/// Read up to the end of an HTTP request head (bounded at 16 KiB).
async fn read_head(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
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
