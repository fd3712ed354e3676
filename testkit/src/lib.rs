//! In-process fakes for pharox-exporter's tests: HTTP/HTTPS targets and
//! HTTP, HTTPS, SOCKS4/4a and SOCKS5(h) proxies with fault modes, a
//! throwaway PKI, and loopback ports that are free or that refuse. Everything
//! listens on 127.0.0.1 random ports.
//!
//! - [`FakeTarget`] and [`FakeProxy`] run in the test's tokio runtime, with
//!   scripted replies and faults;
//! - [`ThreadTarget`] runs on its own thread (fixed routes `/`,
//!   `/status/<code>`, `/ip`), for tests that drive real proxies or child
//!   processes without a runtime of their own;
//! - [`ScriptedPeer`] plays a fixed byte script (the malformed replies of
//!   proxies in the wild: cut short, wrong version bytes, oversized);
//! - [`pki`]: the shared test CA and fresh ones, as rustls configs and PEM;
//! - [`mmdb`]: geolocation databases written and read back with Debian's tools.
//!
//! Every fake is a [`FakeServer`] underneath: dropping it aborts its accept
//! loop, and with it every connection task (they live in the loop's
//! `JoinSet`), so a test cleans up by letting its fakes go out of scope.
//!
//! A dev-dependency only, and independent of pharox-exporter: fakes hand out
//! addresses and URL strings, never the exporter's types.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

pub mod mmdb;
pub mod pki;
pub mod proxy;
pub mod proxy_errors;
pub mod scripted;
pub mod target;
pub mod thread_target;

pub use proxy::{FakeProxy, Fault, ProxyBehavior, SeenTunnel};
pub use scripted::{ScriptedPeer, Step};
pub use target::{BodyMode, FakeTarget, Reply, SeenRequest};
pub use thread_target::ThreadTarget;

/// A listening fake; dropping it stops it and every connection it holds.
pub struct FakeServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Bind 127.0.0.1 on a random port and serve each connection with
    /// `handler`, over TLS first when `tls` is given.
    pub async fn start<F, Fut>(tls: Option<TlsAcceptor>, handler: F) -> io::Result<FakeServer>
    where
        F: Fn(Io) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                while conns.try_join_next().is_some() {}
                match &tls {
                    None => {
                        conns.spawn(handler(Box::new(tcp)));
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let handler = handler.clone();
                        conns.spawn(async move {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                handler(Box::new(s)).await;
                            }
                        });
                    }
                }
            }
        });
        Ok(FakeServer { addr, task })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server-side connection, plain TCP or TLS over TCP: one type, so every
/// fake serves both with the same code.
pub type Io = Box<dyn Conn>;

/// What a fake needs of a connection besides reading and writing.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;

    /// Close with a TCP RST instead of a FIN, so the peer sees ECONNRESET.
    fn reset(self: Box<Self>) {
        let _ = self.tcp().set_zero_linger();
    }
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// A free TCP port on 127.0.0.1, found by binding port 0 and releasing it,
/// for servers that must be told their port (child processes, real proxies).
///
/// Another process can take the port before the server binds it: starters
/// that care retry with a fresh port when the server fails to come up.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A port on 127.0.0.1 that refuses connections for as long as this guard
/// lives: see [`refused_port`].
pub struct RefusedPort {
    port: u16,
    // Bound, never listening: the kernel answers SYNs with RST, and nobody
    // else can bind the port while we hold it (no SO_REUSEADDR).
    _socket: TcpSocket,
}

impl RefusedPort {
    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A port on 127.0.0.1 that refuses connections until the guard drops.
///
/// Binding and releasing a port (as [`free_port`] does) would leave it free
/// for any other server to take, and then it accepts: the guard keeps it
/// bound without listening instead. Needs no runtime.
pub fn refused_port() -> RefusedPort {
    let socket = TcpSocket::new_v4()
        .and_then(|s| {
            s.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            Ok(s)
        })
        .expect("bind a socket on 127.0.0.1:0");
    let port = socket.local_addr().expect("bound socket address").port();
    RefusedPort {
        port,
        _socket: socket,
    }
}

/// For a test that changes process-wide state (the descriptor limit): in
/// the test process, run test `name` alone in a child of this test binary
/// with `env` set, assert it passed, and return false; in that child,
/// return true, so the test body runs there and only there.
pub fn in_child_process(env: &str, name: &str) -> bool {
    if std::env::var_os(env).is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .output()
        .expect("run the child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child:\n{text}"
    );
    false
}

/// Read an HTTP request head (up to `\r\n\r\n`, at most `max` bytes).
/// Returns the head and any bytes read past it; `None` on EOF, error or
/// overflow.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S, max: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((buf, rest));
        }
        if buf.len() > max {
            return None;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf[0] == 0x16 {
            // A TLS ClientHello on a plain port: hand it over as the "head" so
            // the caller answers 400, as real servers do.
            return Some((buf, Vec::new()));
        }
    }
}

/// Wait forever (until the fake is dropped), holding the connection open.
pub async fn hang<S: AsyncRead + Unpin>(mut s: S) {
    let mut sink = [0u8; 1024];
    // Keep reading so the peer's writes never block, but never answer.
    while let Ok(n) = s.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
    std::future::pending::<()>().await;
}
