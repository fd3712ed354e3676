//! HTTP proxies: `CONNECT` tunnels for `https://` targets, and the
//! `Proxy-Authorization` header shared with absolute-form requests.

use base64::Engine;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::dial::{authority, io_error};
use super::{proxy_error, quote_peer, StepError};
use crate::model::{Proxy, Reason};
use crate::secret::Secret;

/// A CONNECT response longer than this is not a proxy talking HTTP.
pub(crate) const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

/// Headers parsed at most in a CONNECT response.
const MAX_CONNECT_HEADERS: usize = 32;

/// The `Proxy-Authorization` header line (with CRLF) for a proxy with
/// credentials. The value is a secret: it must never reach an error message.
pub(crate) fn write_proxy_authorization(proxy: &Proxy, out: &mut BytesMut) {
    if !proxy.has_credentials() {
        return;
    }
    let user = proxy.username.as_deref().unwrap_or("");
    let pass = proxy.password.as_ref().map_or("", Secret::expose);
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    out.extend_from_slice(b"Proxy-Authorization: Basic ");
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The reason for a 407 from an HTTP proxy: whether we sent credentials.
pub(crate) fn auth_error(proxy: &Proxy) -> StepError {
    if proxy.has_credentials() {
        StepError::new(
            Reason::ProxyAuthFailed,
            format!(
                "proxy {} rejected the credentials (407)",
                proxy.redacted_url()
            ),
        )
    } else {
        StepError::new(
            Reason::ProxyAuthRequired,
            format!(
                "proxy {} requires authentication (407) and none is configured",
                proxy.redacted_url()
            ),
        )
    }
}

/// Open a tunnel to `host:port` with `CONNECT`. `buf` is the connection's
/// buffer; it is left empty on success.
pub(crate) async fn connect_tunnel<S>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
    buf: &mut BytesMut,
) -> Result<(), StepError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let target = authority(host, port);
    buf.clear();
    buf.extend_from_slice(b"CONNECT ");
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b"\r\nUser-Agent: ");
    buf.extend_from_slice(super::USER_AGENT.as_bytes());
    buf.extend_from_slice(b"\r\n");
    write_proxy_authorization(proxy, buf);
    buf.extend_from_slice(b"\r\n");
    let written = stream.write_all(buf).await;
    // The request holds the credentials: drop it before anything else happens.
    buf.clear();
    written.map_err(|e| io_error(&e, "CONNECT"))?;
    stream.flush().await.map_err(|e| io_error(&e, "CONNECT"))?;

    let (status, reason, head_len) = loop {
        if let Some(parsed) = parse_connect_response(buf)? {
            break parsed;
        }
        if buf.len() >= MAX_CONNECT_RESPONSE {
            return Err(StepError::new(
                Reason::ProxyProtocol,
                format!("CONNECT response from proxy exceeds {MAX_CONNECT_RESPONSE} bytes"),
            ));
        }
        buf.reserve(2048);
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|e| io_error(&e, "CONNECT"))?;
        if n == 0 {
            let during = if buf.is_empty() {
                "CONNECT (no response)"
            } else {
                "CONNECT (partial response)"
            };
            return Err(io_error(
                &std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                during,
            ));
        }
    };
    match status {
        200..=299 => {
            if buf.len() > head_len {
                // Nothing may precede our TLS ClientHello in the tunnel.
                return Err(StepError::new(
                    Reason::ProxyProtocol,
                    "proxy sent data after its CONNECT response",
                ));
            }
            buf.clear();
            Ok(())
        }
        407 => Err(auth_error(proxy).with_status(status)),
        _ => {
            // CONNECT carries none of the configured headers.
            let quote = |s: &str| quote_peer(s, proxy, &[]);
            let err = match rejection(stream, buf).await {
                Some(made) => StepError::new(made.reason, made.message(status, quote)),
                None => StepError::new(
                    Reason::ProxyRefused,
                    format!(
                        "proxy refused CONNECT to {target}: {status} {}",
                        quote(&reason)
                    ),
                ),
            };
            buf.clear();
            Err(err.with_status(status))
        }
    }
}

/// What a proxy that rejected CONNECT says went wrong (see
/// [`proxy_error`](super::proxy_error)), from its headers or else its
/// error page. `buf` holds the reply as read so far. The page is read on
/// (bounded) only when its end is known: with neither a length nor chunks
/// nor `Connection: close` its end is the proxy closing, which a proxy
/// keeping the connection open for another CONNECT never does, and a
/// refusal must not become a timeout.
async fn rejection<S>(stream: &mut S, buf: &mut BytesMut) -> Option<proxy_error::ProxyMade>
where
    S: AsyncRead + Unpin,
{
    let (head, len) = super::request::parse_head(buf).ok().flatten()?;
    let marks = head.marks.as_deref()?;
    if let Some(made) = proxy_error::classify(marks, b"") {
        return Some(made);
    }
    buf.advance(len);
    if head.body_end_is_known() {
        let _ = super::request::read_body(
            stream,
            buf,
            &head,
            proxy_error::PAGE_PEEK,
            MAX_CONNECT_RESPONSE,
        )
        .await;
    }
    proxy_error::classify(marks, buf)
}

/// `Some((status, reason phrase, head length))` once the head is complete.
/// The reason phrase is the peer's, raw (bounded by the buffer): it is
/// masked and cut only where it is quoted ([`quote_peer`]).
pub(super) fn parse_connect_response(
    buf: &[u8],
) -> Result<Option<(u16, String, usize)>, StepError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_CONNECT_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let status = resp.code.unwrap_or(0);
            Ok(Some((status, resp.reason.unwrap_or("").to_string(), len)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(StepError::new(
            Reason::ProxyProtocol,
            format!("proxy answered CONNECT with something that is not HTTP ({e})"),
        )),
    }
}
