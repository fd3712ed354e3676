//! Fake proxies: HTTP (forward and CONNECT, optionally over TLS), SOCKS4/4a
//! and SOCKS5/5h, each with optional credentials and fault modes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{hang, pki, read_head, FakeServer, Io};

/// What a fake proxy does wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: a working proxy.
    #[default]
    None,
    /// Accept, read the first message, never answer.
    Hang,
    /// Read the first message, then reset the connection.
    ResetMidHandshake,
    /// Answer the first message with bytes that are not the protocol.
    Garbage,
    /// Answer with a wrong protocol version (SOCKS) or `HTTP/9.9` (HTTP).
    WrongVersion,
    /// Refuse every destination (HTTP 403, SOCKS4 0x5B, SOCKS5 0x02).
    DenyDestination,
    /// SOCKS5: accept none of the offered methods (0xFF). Others: no effect.
    RejectMethods,
}

/// How a fake proxy behaves.
#[derive(Clone, Debug, Default)]
pub struct ProxyBehavior {
    /// Required credentials (HTTP Basic, SOCKS5 RFC 1929, SOCKS4 user id).
    pub auth: Option<(String, String)>,
    /// The fault to show.
    pub fault: Fault,
    /// Show the fault on only the first this-many connections.
    pub fault_first: Option<usize>,
    /// Wait this long before each answer of the handshake.
    pub delay: Duration,
    /// Speak TLS first (an HTTPS proxy; HTTP kind only).
    pub tls: bool,
    /// HTTP kind only: answer every request (forward or CONNECT, after the
    /// credentials check) with these raw bytes and close, as a proxy
    /// failing to reach the target does. See [`crate::proxy_errors`].
    pub answer: Option<Vec<u8>>,
}

impl ProxyBehavior {
    /// A working proxy.
    pub fn healthy() -> Self {
        ProxyBehavior::default()
    }

    /// A proxy with `fault` on every connection.
    pub fn fault(fault: Fault) -> Self {
        ProxyBehavior {
            fault,
            ..Default::default()
        }
    }

    /// A proxy answering every request with `response` (raw HTTP bytes).
    pub fn answering(response: impl Into<Vec<u8>>) -> Self {
        ProxyBehavior {
            answer: Some(response.into()),
            ..Default::default()
        }
    }

    /// Require these credentials.
    pub fn with_auth(mut self, user: &str, pass: &str) -> Self {
        self.auth = Some((user.to_string(), pass.to_string()));
        self
    }
}

/// What a fake proxy saw of one connection.
#[derive(Clone, Debug, Default)]
pub struct SeenTunnel {
    /// The destination as the client named it (`host:port`, host possibly a name).
    pub destination: String,
    /// The user name the client presented, if any.
    pub user: Option<String>,
}

struct State {
    behavior: ProxyBehavior,
    conns: AtomicUsize,
    seen: Mutex<Vec<SeenTunnel>>,
}

impl State {
    /// The fault for this connection, honouring `fault_first`.
    fn fault(&self) -> Fault {
        let n = self.conns.fetch_add(1, Ordering::SeqCst);
        match self.behavior.fault_first {
            Some(limit) if n >= limit => Fault::None,
            _ => self.behavior.fault,
        }
    }

    fn record(&self, destination: String, user: Option<String>) {
        if let Ok(mut v) = self.seen.lock() {
            v.push(SeenTunnel { destination, user });
        }
    }

    async fn pause(&self) {
        if !self.behavior.delay.is_zero() {
            tokio::time::sleep(self.behavior.delay).await;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Socks4,
    Socks5,
}

/// A fake proxy server.
pub struct FakeProxy {
    server: FakeServer,
    kind: Kind,
    tls: bool,
    state: Arc<State>,
}

impl FakeProxy {
    /// An HTTP proxy (forward for `http://`, CONNECT for anything); over TLS
    /// when `behavior.tls` (an HTTPS proxy).
    pub async fn http(behavior: ProxyBehavior) -> io::Result<FakeProxy> {
        FakeProxy::start(Kind::Http, behavior).await
    }

    /// A SOCKS4 / SOCKS4a proxy.
    pub async fn socks4(behavior: ProxyBehavior) -> io::Result<FakeProxy> {
        FakeProxy::start(Kind::Socks4, behavior).await
    }

    /// A SOCKS5 / SOCKS5h proxy.
    pub async fn socks5(behavior: ProxyBehavior) -> io::Result<FakeProxy> {
        FakeProxy::start(Kind::Socks5, behavior).await
    }

    async fn start(kind: Kind, behavior: ProxyBehavior) -> io::Result<FakeProxy> {
        let tls = behavior.tls && kind == Kind::Http;
        let state = Arc::new(State {
            behavior,
            conns: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let server = FakeServer::start(tls.then(pki::acceptor), move |io| {
            let s = s.clone();
            async move {
                match kind {
                    Kind::Http => serve_http(io, s).await,
                    Kind::Socks4 => serve_socks4(io, s).await,
                    Kind::Socks5 => serve_socks5(io, s).await,
                }
            }
        })
        .await?;
        Ok(FakeProxy {
            server,
            kind,
            tls,
            state,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The URL scheme of this fake's plain variant: `http`, `https`,
    /// `socks4` or `socks5`.
    pub fn scheme(&self) -> &'static str {
        match (self.kind, self.tls) {
            (Kind::Http, false) => "http",
            (Kind::Http, true) => "https",
            (Kind::Socks4, _) => "socks4",
            (Kind::Socks5, _) => "socks5",
        }
    }

    /// `scheme://127.0.0.1:port`: `scheme` picks the variant of this kind
    /// (e.g. `socks5h` for a SOCKS5 fake); see [`FakeProxy::scheme`].
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr())
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.conns.load(Ordering::SeqCst)
    }

    /// Tunnels / forwards the proxy was asked for.
    pub fn seen(&self) -> Vec<SeenTunnel> {
        self.state
            .seen
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

async fn relay<S: AsyncRead + AsyncWrite + Unpin>(mut client: S, mut upstream: TcpStream) {
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

async fn dial(host: &str, port: u16) -> io::Result<TcpStream> {
    let s = TcpStream::connect((host, port)).await?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

// ---------------------------------------------------------------- HTTP

async fn serve_http(mut io: Io, state: Arc<State>) {
    let Some((head, rest)) = read_head(&mut io, 64 * 1024).await else {
        return;
    };
    let fault = state.fault();
    match fault {
        Fault::Hang => return hang(io).await,
        Fault::ResetMidHandshake => return io.reset(),
        Fault::Garbage => {
            let _ = io.write_all(b"\x16\x03\x01garbage, not HTTP\r\n\r\n").await;
            return;
        }
        Fault::WrongVersion => {
            let _ = io.write_all(b"HTTP/9.9 200 OK\r\n\r\n").await;
            return;
        }
        _ => {}
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
        let _ = io.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("").to_string();
    let presented = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned());
    let user = presented.as_deref().and_then(basic_user);
    state.pause().await;
    state.record(target.clone(), user);
    if let Some((u, p)) = &state.behavior.auth {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        );
        if presented.as_deref() != Some(want.as_str()) {
            let _ = io
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"fake\"\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
            return;
        }
    }
    if let Some(answer) = &state.behavior.answer {
        let _ = io.write_all(answer).await;
        return;
    }
    if fault == Fault::DenyDestination {
        let _ = io
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    }

    if method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, port)) = split_authority(&target) else {
            let _ = io.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            return;
        };
        match dial(&host, port).await {
            Ok(up) => {
                if io
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    relay(io, up).await;
                }
            }
            Err(_) => {
                let _ = io
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        }
        return;
    }

    // Forward proxying: rewrite the absolute-form request to origin form.
    let Ok(url) = url::Url::parse(&target) else {
        let _ = io.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    };
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let Ok(mut up) = dial(&host, port).await else {
        let _ = io
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    let mut fwd = format!(
        "{method} {}{} HTTP/1.1\r\n",
        url.path(),
        url.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("proxy-authorization") {
            continue;
        }
        fwd.push_str(&format!(
            "{}: {}\r\n",
            h.name,
            String::from_utf8_lossy(h.value)
        ));
    }
    fwd.push_str("\r\n");
    if up.write_all(fwd.as_bytes()).await.is_err() || up.write_all(&rest).await.is_err() {
        return;
    }
    relay(io, up).await;
}

fn basic_user(value: &str) -> Option<String> {
    let token = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split(':').next().unwrap_or("").to_string())
}

fn split_authority(a: &str) -> Option<(String, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

// ---------------------------------------------------------------- SOCKS4

async fn serve_socks4(mut io: Io, state: Arc<State>) {
    let mut fixed = [0u8; 8];
    if io.read_exact(&mut fixed).await.is_err() {
        return;
    }
    let Some(user) = read_cstr(&mut io).await else {
        return;
    };
    let port = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ip = Ipv4Addr::new(fixed[4], fixed[5], fixed[6], fixed[7]);
    // SOCKS4a: 0.0.0.x with x != 0 means a host name follows.
    let host = if fixed[4..7] == [0, 0, 0] && fixed[7] != 0 {
        let Some(name) = read_cstr(&mut io).await else {
            return;
        };
        name
    } else {
        ip.to_string()
    };
    let fault = state.fault();
    match fault {
        Fault::Hang => return hang(io).await,
        Fault::ResetMidHandshake => return io.reset(),
        Fault::Garbage => {
            let _ = io.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            return;
        }
        _ => {}
    }
    state.pause().await;
    state.record(
        format!("{host}:{port}"),
        Some(user.clone()).filter(|u| !u.is_empty()),
    );
    let version = if fault == Fault::WrongVersion {
        0x05
    } else {
        0x00
    };
    let reply = |code: u8| [version, code, 0, 0, 0, 0, 0, 0];
    if fault == Fault::WrongVersion {
        let _ = io.write_all(&reply(0x5A)).await;
        return;
    }
    if let Some((u, _)) = &state.behavior.auth {
        if &user != u {
            let _ = io.write_all(&reply(0x5D)).await;
            return;
        }
    }
    if fault == Fault::DenyDestination || fixed[0] != 4 || fixed[1] != 1 {
        let _ = io.write_all(&reply(0x5B)).await;
        return;
    }
    match dial(&host, port).await {
        Ok(up) => {
            if io.write_all(&reply(0x5A)).await.is_ok() {
                relay(io, up).await;
            }
        }
        Err(_) => {
            let _ = io.write_all(&reply(0x5B)).await;
        }
    }
}

async fn read_cstr<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut out = Vec::new();
    loop {
        let b = s.read_u8().await.ok()?;
        if b == 0 {
            return String::from_utf8(out).ok();
        }
        if out.len() > 1024 {
            return None;
        }
        out.push(b);
    }
}

// ---------------------------------------------------------------- SOCKS5

async fn serve_socks5(mut io: Io, state: Arc<State>) {
    let mut hdr = [0u8; 2];
    if io.read_exact(&mut hdr).await.is_err() {
        return;
    }
    let mut methods = vec![0u8; usize::from(hdr[1])];
    if io.read_exact(&mut methods).await.is_err() {
        return;
    }
    let fault = state.fault();
    match fault {
        Fault::Hang => return hang(io).await,
        Fault::ResetMidHandshake => return io.reset(),
        Fault::Garbage => {
            let _ = io.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            return;
        }
        Fault::WrongVersion => {
            let _ = io.write_all(&[0x04, 0x00]).await;
            return;
        }
        _ => {}
    }
    state.pause().await;
    if fault == Fault::RejectMethods {
        let _ = io.write_all(&[0x05, 0xFF]).await;
        return;
    }
    let mut user = None;
    if let Some((u, p)) = &state.behavior.auth {
        if !methods.contains(&0x02) {
            let _ = io.write_all(&[0x05, 0xFF]).await;
            return;
        }
        if io.write_all(&[0x05, 0x02]).await.is_err() {
            return;
        }
        let Some((got_u, got_p)) = read_userpass(&mut io).await else {
            return;
        };
        state.pause().await;
        let ok = &got_u == u && &got_p == p;
        if io
            .write_all(&[0x01, if ok { 0x00 } else { 0x01 }])
            .await
            .is_err()
            || !ok
        {
            return;
        }
        user = Some(got_u);
    } else if methods.contains(&0x00) {
        if io.write_all(&[0x05, 0x00]).await.is_err() {
            return;
        }
    } else {
        let _ = io.write_all(&[0x05, 0xFF]).await;
        return;
    }

    let mut req = [0u8; 4];
    if io.read_exact(&mut req).await.is_err() {
        return;
    }
    let host = match req[3] {
        0x01 => {
            let mut a = [0u8; 4];
            if io.read_exact(&mut a).await.is_err() {
                return;
            }
            IpAddr::from(a).to_string()
        }
        0x04 => {
            let mut a = [0u8; 16];
            if io.read_exact(&mut a).await.is_err() {
                return;
            }
            Ipv6Addr::from(a).to_string()
        }
        0x03 => {
            let Ok(len) = io.read_u8().await else {
                return;
            };
            let mut name = vec![0u8; usize::from(len)];
            if io.read_exact(&mut name).await.is_err() {
                return;
            }
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => {
            let _ = io.write_all(&[0x05, 0x08, 0, 1, 0, 0, 0, 0, 0, 0]).await;
            return;
        }
    };
    let Ok(port) = io.read_u16().await else {
        return;
    };
    state.pause().await;
    state.record(format!("{host}:{port}"), user);
    let reply = |code: u8| [0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    if fault == Fault::DenyDestination {
        let _ = io.write_all(&reply(0x02)).await;
        return;
    }
    if req[1] != 0x01 {
        let _ = io.write_all(&reply(0x07)).await;
        return;
    }
    match dial(&host, port).await {
        Ok(up) => {
            if io.write_all(&reply(0x00)).await.is_ok() {
                relay(io, up).await;
            }
        }
        Err(e) => {
            let code = if e.kind() == io::ErrorKind::ConnectionRefused {
                0x05
            } else {
                0x04
            };
            let _ = io.write_all(&reply(code)).await;
        }
    }
}

async fn read_userpass<S: AsyncRead + Unpin>(s: &mut S) -> Option<(String, String)> {
    let _version = s.read_u8().await.ok()?;
    let ulen = s.read_u8().await.ok()?;
    let mut u = vec![0u8; usize::from(ulen)];
    s.read_exact(&mut u).await.ok()?;
    let plen = s.read_u8().await.ok()?;
    let mut p = vec![0u8; usize::from(plen)];
    s.read_exact(&mut p).await.ok()?;
    Some((String::from_utf8(u).ok()?, String::from_utf8(p).ok()?))
}
