//! In-process target servers the proxies forward to: plain HTTP and HTTPS
//! (test CA), on 127.0.0.1, each on its own thread and runtime so they serve
//! whatever runtime flavour (or none) the test uses.
//!
//! Routes: `/` answers 200 with a short body, `/status/<code>` answers that
//! code, `/ip` answers the peer's IP as text. Every response closes the
//! connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::pki::TestPki;
use super::process::ServerDir;

/// Body of a 200 on `/`: tests can match on it.
pub const ROOT_BODY: &str = "pharox test target: ok\n";

/// Bound on a request head; targets only ever see small probe requests.
const MAX_HEAD: usize = 16 * 1024;

/// A target server running on its own thread until dropped.
pub struct Target {
    addr: SocketAddr,
    scheme: &'static str,
    requests: Arc<AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    pki: Option<(TestPki, ServerDir)>,
}

impl Target {
    /// Plain HTTP on 127.0.0.1:<free port>.
    pub fn http() -> Self {
        Self::start(None)
    }

    /// HTTPS on 127.0.0.1:<free port> with a fresh test CA; see [`Target::ca_pem`].
    pub fn https() -> Self {
        let dir = ServerDir::new("https-target");
        let pki = TestPki::generate(dir.path());
        Self::start(Some((pki, dir)))
    }

    fn start(pki: Option<(TestPki, ServerDir)>) -> Self {
        let tls = pki
            .as_ref()
            .map(|(p, _)| tokio_rustls::TlsAcceptor::from(p.server_config()));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind target");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("target addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = oneshot::channel::<()>();
        let counter = requests.clone();
        let thread = std::thread::Builder::new()
            .name(format!("target-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("target runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                    let accept_loop = async {
                        loop {
                            let Ok((sock, peer)) = listener.accept().await else {
                                continue;
                            };
                            let tls = tls.clone();
                            let counter = counter.clone();
                            tokio::spawn(async move {
                                match tls {
                                    Some(acc) => {
                                        if let Ok(Ok(s)) = tokio::time::timeout(
                                            Duration::from_secs(10),
                                            acc.accept(sock),
                                        )
                                        .await
                                        {
                                            serve(s, peer, &counter).await;
                                        }
                                    }
                                    None => serve(sock, peer, &counter).await,
                                }
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept_loop => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime cancels connections still in flight.
            })
            .expect("spawn target thread");
        Target {
            addr,
            scheme: if pki.is_some() { "https" } else { "http" },
            requests,
            shutdown: Some(tx),
            thread: Some(thread),
            pki,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `scheme://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// The same URL naming the host `localhost` (for remote-resolving
    /// protocols: SOCKS4a, SOCKS5h).
    pub fn url_localhost(&self, path: &str) -> String {
        format!("{}://localhost:{}{}", self.scheme, self.addr.port(), path)
    }

    /// PEM of the CA that signed an HTTPS target's certificate.
    pub fn ca_pem(&self) -> PathBuf {
        self.pki
            .as_ref()
            .map(|(p, _)| p.ca_pem.clone())
            .expect("ca_pem() on a plain HTTP target")
    }

    /// Requests answered so far (proves traffic went through).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    peer: SocketAddr,
    counter: &AtomicUsize,
) {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = find_head_end(&buf) {
            break i;
        }
        if buf.len() >= MAX_HEAD {
            return;
        }
        let mut chunk = [0u8; 2048];
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let (code, body) = match req.parse(&buf[..head_end]) {
        Ok(httparse::Status::Complete(_)) => route(req.path.unwrap_or("/"), peer),
        _ => (400, "bad request\n".to_string()),
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let resp = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason_phrase(code),
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.flush().await;
    let _ = s.shutdown().await;
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn route(target: &str, peer: SocketAddr) -> (u16, String) {
    // Proxies forward origin-form, but accept absolute-form too.
    let path = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.find('/').map(|j| &rest[j..]).unwrap_or("/")
        }
        None => target,
    };
    let path = path.split('?').next().unwrap_or("/");
    if path == "/" {
        return (200, ROOT_BODY.to_string());
    }
    if path == "/ip" {
        return (200, format!("{}\n", peer.ip()));
    }
    if let Some(code) = path.strip_prefix("/status/") {
        if let Ok(c) = code.parse::<u16>() {
            if (200..600).contains(&c) {
                return (c, format!("status {c}\n"));
            }
        }
    }
    (404, "not found\n".to_string())
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
