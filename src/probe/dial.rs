//! Reaching the proxy: name resolution, TCP, and the stream types a check
//! reads and writes through.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::StepError;
use crate::model::Reason;

/// The connection to the proxy: plain TCP, or TLS for HTTPS proxies.
pub(crate) enum ProxyStream {
    /// HTTP and SOCKS proxies.
    Plain(TcpStream),
    /// HTTPS proxies. Boxed: a TLS session is large and rarely used.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The connection to the target: the proxy stream itself, or TLS through it
/// for `https://` targets.
pub(crate) enum Conn {
    /// `http://` targets.
    Plain(ProxyStream),
    /// `https://` targets.
    Tls(Box<TlsStream<ProxyStream>>),
}

/// Every variant is `Unpin`, so delegation is a plain `Pin::new`.
macro_rules! delegate_io {
    ($ty:ident, $($variant:ident),+) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

delegate_io!(ProxyStream, Plain, Tls);
delegate_io!(Conn, Plain, Tls);

/// Resolve the proxy's host and open TCP to it, trying each address in turn.
pub(crate) async fn connect(host: &str, port: u16) -> Result<TcpStream, StepError> {
    let ips = resolve(host).await?;
    let mut last: Option<io::Error> = None;
    for ip in ips {
        match TcpStream::connect(SocketAddr::new(ip, port)).await {
            Ok(s) => {
                // Requests and handshakes are single small writes: never wait for Nagle.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    let authority = authority(host, port);
    Err(match last {
        Some(e) if is_out_of_fds(&e) => StepError::new(
            Reason::LocalResources,
            format!("no file descriptor left to connect to proxy {authority}: {e}"),
        ),
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => StepError::new(
            Reason::ConnectRefused,
            format!("connection to proxy {authority} refused"),
        ),
        Some(e) => StepError::new(
            Reason::ConnectError,
            format!("cannot connect to proxy {authority}: {e}"),
        ),
        None => StepError::new(Reason::Dns, format!("{host} has no address")),
    })
}

/// EMFILE or ENFILE: this process (or the system) is out of file
/// descriptors; the proxy was never reached.
pub(crate) fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// `host:port`, with IPv6 literals bracketed.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// How long a successful resolution is reused. Sweeps resolve the same few
/// names (the target, provider gateways) for every proxy; asking the system
/// resolver 10k times a second for them would cost a blocking-pool hop each.
const DNS_TTL: Duration = Duration::from_secs(30);
/// Names cached at most; the cache is a small vector scanned linearly.
const DNS_CACHE_SIZE: usize = 64;

struct DnsEntry {
    host: String,
    ips: Vec<IpAddr>,
    at: Instant,
}

static DNS_CACHE: Mutex<Vec<DnsEntry>> = Mutex::new(Vec::new());

/// Resolve a host name (or parse an IP literal) to its addresses. Failures
/// are `Reason::Dns` and are not cached.
pub(crate) async fn resolve(host: &str) -> Result<Vec<IpAddr>, StepError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    if let Some(ips) = cached(bare) {
        return Ok(ips);
    }
    let addrs = tokio::net::lookup_host((bare, 0))
        .await
        .map_err(|e| StepError::new(Reason::Dns, format!("cannot resolve {bare}: {e}")))?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in addrs {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    if ips.is_empty() {
        return Err(StepError::new(
            Reason::Dns,
            format!("{bare} has no address"),
        ));
    }
    remember(bare, &ips);
    Ok(ips)
}

fn cached(host: &str) -> Option<Vec<IpAddr>> {
    let cache = DNS_CACHE.lock().ok()?;
    cache
        .iter()
        .find(|e| e.host == host && e.at.elapsed() < DNS_TTL)
        .map(|e| e.ips.clone())
}

fn remember(host: &str, ips: &[IpAddr]) {
    let Ok(mut cache) = DNS_CACHE.lock() else {
        return;
    };
    cache.retain(|e| e.host != host && e.at.elapsed() < DNS_TTL);
    if cache.len() >= DNS_CACHE_SIZE {
        cache.remove(0);
    }
    cache.push(DnsEntry {
        host: host.to_string(),
        ips: ips.to_vec(),
        at: Instant::now(),
    });
}

/// Map an I/O error on an open connection to a reason: whatever it is, the
/// peer (or the path to it) dropped a connection that was working.
pub(crate) fn io_error(e: &io::Error, during: &str) -> StepError {
    let what = match e.kind() {
        io::ErrorKind::UnexpectedEof => "connection closed by peer".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
        _ => e.to_string(),
    };
    StepError::new(Reason::ConnectionReset, format!("{what} during {during}"))
}

/// Like `read_exact`, but on failure says how many bytes did arrive, so a
/// handshake can tell a wrong reply (garbage) from a dropped connection.
pub(crate) async fn read_exact_counted<S>(
    stream: &mut S,
    buf: &mut [u8],
) -> Result<(), (usize, io::Error)>
where
    S: AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) => return Err((filled, io::Error::from(io::ErrorKind::UnexpectedEof))),
            Ok(n) => filled += n,
            Err(e) => return Err((filled, e)),
        }
    }
    Ok(())
}

/// The address a locally-resolving SOCKS client sends: the first IPv4
/// address when there is one (most proxies egress over IPv4 only), else the
/// first address.
pub(crate) async fn resolve_target(host: &str) -> Result<IpAddr, StepError> {
    let ips = resolve(host).await?;
    ips.iter()
        .copied()
        .find(IpAddr::is_ipv4)
        .or_else(|| ips.first().copied())
        .ok_or_else(|| StepError::new(Reason::Dns, format!("{host} has no address")))
}
