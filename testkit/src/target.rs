//! Fake HTTP and HTTPS targets: per-path scripted replies, with delays,
//! drips, chunking, oversized heads, garbage and hangs.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use url::Url;

use super::{hang, pki, read_head, FakeServer, Io};

/// How a reply's body goes on the wire.
#[derive(Clone, Debug, PartialEq)]
pub enum BodyMode {
    /// With `Content-Length`.
    Length,
    /// `Transfer-Encoding: chunked`, in chunks of this many bytes.
    Chunked(usize),
    /// No length: the body ends when the connection closes.
    UntilClose,
    /// With `Content-Length`, one byte every `interval`.
    Drip(Duration),
    /// A head padded with an `X-Filler` header of this many bytes.
    HugeHeaders(usize),
    /// Bytes that are not HTTP, then close.
    Garbage,
    /// Read the request, never answer.
    Hang,
    /// Read the request, then close without answering.
    Close,
    /// Read the request, then reset the connection.
    Reset,
}

/// One scripted reply.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Wait this long after reading the request.
    pub delay: Duration,
    /// Wire framing / fault.
    pub mode: BodyMode,
}

impl Reply {
    /// `200` with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Reply::status(200).body(body)
    }

    /// `code` with an empty body.
    pub fn status(code: u16) -> Self {
        Reply {
            status: code,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            mode: BodyMode::Length,
        }
    }

    /// A redirect `code` to `location`.
    pub fn redirect(code: u16, location: &str) -> Self {
        Reply::status(code).header("Location", location)
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Add a header.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    /// Wait before answering.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Set the framing / fault.
    pub fn mode(mut self, m: BodyMode) -> Self {
        self.mode = m;
        self
    }
}

/// A request as the target saw it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// Method.
    pub method: String,
    /// Request target (path and query for origin-form requests).
    pub target: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// First value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Script {
    routes: HashMap<String, (Vec<Reply>, AtomicUsize)>,
    default: Reply,
    seen: Mutex<Vec<SeenRequest>>,
}

impl Script {
    /// The nth request to a path gets the nth reply; the last one repeats.
    fn pick(&self, path: &str) -> Reply {
        match self.routes.get(path) {
            Some((replies, n)) => {
                let i = n.fetch_add(1, Ordering::SeqCst);
                replies[i.min(replies.len() - 1)].clone()
            }
            None => self.default.clone(),
        }
    }
}

/// A fake origin server.
pub struct FakeTarget {
    server: FakeServer,
    tls: bool,
    script: Arc<Script>,
}

/// Builds a [`FakeTarget`] with routes.
pub struct TargetBuilder {
    routes: HashMap<String, Vec<Reply>>,
    default: Reply,
    tls: bool,
}

impl TargetBuilder {
    /// Reply to `path` (path and query) with `replies` in turn, the last repeating.
    pub fn route(mut self, path: &str, replies: Vec<Reply>) -> Self {
        self.routes.insert(path.to_string(), replies);
        self
    }

    /// Serve over TLS with the test PKI's leaf certificate.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Start listening.
    pub async fn start(self) -> io::Result<FakeTarget> {
        let script = Arc::new(Script {
            routes: self
                .routes
                .into_iter()
                .filter(|(_, r)| !r.is_empty())
                .map(|(p, r)| (p, (r, AtomicUsize::new(0))))
                .collect(),
            default: self.default,
            seen: Mutex::new(Vec::new()),
        });
        let s = script.clone();
        let acceptor = self.tls.then(pki::acceptor);
        let server = FakeServer::start(acceptor, move |io| serve(io, s.clone())).await?;
        Ok(FakeTarget {
            server,
            tls: self.tls,
            script,
        })
    }
}

impl FakeTarget {
    /// A target answering every path with `default` unless routed otherwise.
    pub fn builder(default: Reply) -> TargetBuilder {
        TargetBuilder {
            routes: HashMap::new(),
            default,
            tls: false,
        }
    }

    /// A plain HTTP target answering every request with `reply`.
    pub async fn start(reply: Reply) -> io::Result<FakeTarget> {
        FakeTarget::builder(reply).start().await
    }

    /// The listening address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// `http(s)://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> Url {
        let scheme = if self.tls { "https" } else { "http" };
        Url::parse(&format!("{scheme}://{}{path}", self.addr())).expect("valid fake target URL")
    }

    /// `http(s)://localhost:port{path}`: for remote-resolution tests.
    pub fn url_by_name(&self, path: &str) -> Url {
        let scheme = if self.tls { "https" } else { "http" };
        Url::parse(&format!(
            "{scheme}://localhost:{}{path}",
            self.addr().port()
        ))
        .expect("valid fake target URL")
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.script
            .seen
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

async fn serve(mut io: Io, script: Arc<Script>) {
    let Some((head, _)) = read_head(&mut io, 64 * 1024).await else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
        let _ = io
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    }
    let seen = SeenRequest {
        method: req.method.unwrap_or("").to_string(),
        target: req.path.unwrap_or("").to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    };
    let reply = script.pick(&seen.target);
    if let Ok(mut v) = script.seen.lock() {
        v.push(seen);
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let _ = write_reply(io, &reply).await;
}

/// The reason phrase the fakes send with `status`.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn write_reply(mut io: Io, reply: &Reply) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &reply.mode {
        BodyMode::Hang => {
            hang(io).await;
            return Ok(());
        }
        BodyMode::Close => {
            drop(io);
            return Ok(());
        }
        BodyMode::Reset => {
            io.reset();
            return Ok(());
        }
        BodyMode::Garbage => {
            io.write_all(b"\x00\x01\x02 this is not HTTP at all\r\n\r\n")
                .await?;
            return io.shutdown().await;
        }
        BodyMode::Length | BodyMode::Drip(_) => {
            head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
        }
        BodyMode::HugeHeaders(n) => {
            head.push_str("X-Filler: ");
            head.push_str(&"a".repeat(*n));
            head.push_str(&format!("\r\nContent-Length: {}\r\n", reply.body.len()));
        }
        BodyMode::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
        BodyMode::UntilClose => {}
    }
    head.push_str("Connection: close\r\n\r\n");
    io.write_all(head.as_bytes()).await?;
    match &reply.mode {
        BodyMode::Drip(interval) => {
            for b in &reply.body {
                io.write_all(&[*b]).await?;
                io.flush().await?;
                tokio::time::sleep(*interval).await;
            }
        }
        BodyMode::Chunked(size) => {
            for chunk in reply.body.chunks((*size).max(1)) {
                io.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                io.write_all(chunk).await?;
                io.write_all(b"\r\n").await?;
            }
            io.write_all(b"0\r\n\r\n").await?;
        }
        _ => io.write_all(&reply.body).await?,
    }
    io.flush().await?;
    io.shutdown().await
}
