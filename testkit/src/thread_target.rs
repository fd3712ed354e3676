//! Target servers with fixed routes for real proxies to forward to: plain
//! HTTP and HTTPS (a fresh test CA each), on 127.0.0.1, each on its own
//! thread and runtime so they serve whatever runtime flavour (or none) the
//! test uses.
//!
//! Routes: `/` answers 200 with a short body, `/status/<code>` answers that
//! code, `/ip` answers the peer's IP as text. Every response closes the
//! connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::pki::{PemFiles, TestPki};
use super::target::reason;
use super::{read_head, FakeServer, Io};

/// Body of a 200 on `/`: tests can match on it.
pub const ROOT_BODY: &str = "pharox test target: ok\n";

/// Bound on a request head; targets only ever see small probe requests.
const MAX_HEAD: usize = 16 * 1024;

/// A target server running on its own thread until dropped.
pub struct ThreadTarget {
    addr: SocketAddr,
    scheme: &'static str,
    requests: Arc<AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The CA's PEM file, and the directory holding it.
    ca: Option<(PemFiles, tempfile::TempDir)>,
}

impl ThreadTarget {
    /// Plain HTTP on 127.0.0.1:<free port>.
    pub fn http() -> Self {
        Self::start(None)
    }

    /// HTTPS on 127.0.0.1:<free port> with a fresh test CA; see
    /// [`ThreadTarget::ca_pem`].
    pub fn https() -> Self {
        Self::start(Some(TestPki::generate()))
    }

    fn start(pki: Option<TestPki>) -> Self {
        let ca = pki.as_ref().map(|p| {
            let dir = tempfile::Builder::new()
                .prefix("pxr-https-target-")
                .tempdir()
                .expect("create temp dir");
            (p.write_pem(dir.path()), dir)
        });
        let tls = pki.as_ref().map(TestPki::acceptor);
        let scheme = if pki.is_some() { "https" } else { "http" };
        let requests = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = mpsc::channel();
        let counter = requests.clone();
        let thread = std::thread::Builder::new()
            .name("thread-target".to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("target runtime");
                rt.block_on(async move {
                    let started = FakeServer::start(tls, move |io| {
                        let counter = counter.clone();
                        async move { serve(io, &counter).await }
                    })
                    .await;
                    let server = match started {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = addr_tx.send(Ok(server.addr()));
                    let _ = stop_rx.await;
                });
                // Dropping the runtime cancels connections still in flight.
            })
            .expect("spawn target thread");
        let addr = addr_rx
            .recv()
            .expect("target thread started")
            .expect("bind target");
        ThreadTarget {
            addr,
            scheme,
            requests,
            shutdown: Some(stop_tx),
            thread: Some(thread),
            ca,
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

    /// PEM file of the CA that signed an HTTPS target's certificate.
    pub fn ca_pem(&self) -> PathBuf {
        self.ca
            .as_ref()
            .map(|(files, _)| files.ca.clone())
            .expect("ca_pem() on a plain HTTP target")
    }

    /// Requests answered so far (proves traffic went through).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ThreadTarget {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(mut io: Io, counter: &AtomicUsize) {
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut io, MAX_HEAD)).await;
    let Ok(Some((head, _))) = head else {
        return;
    };
    let peer = io.tcp().peer_addr();
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let (code, body) = match (req.parse(&head), peer) {
        (Ok(httparse::Status::Complete(_)), Ok(peer)) => route(req.path.unwrap_or("/"), peer),
        _ => (400, "bad request\n".to_string()),
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let resp = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(code),
        body.len()
    );
    let _ = io.write_all(resp.as_bytes()).await;
    let _ = io.flush().await;
    let _ = io.shutdown().await;
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
