//! SOCKS4 and SOCKS4a `CONNECT`.

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::dial::{io_error, read_exact_counted, resolve_target};
use super::StepError;
use crate::model::{Proxy, Reason};

/// Open a tunnel to `host:port`. With `remote_dns` (SOCKS4a) a host name is
/// sent to the proxy; otherwise it is resolved here and must have an IPv4
/// address, the only kind SOCKS4 can carry.
///
/// An IPv6 target (a literal, or a name with only IPv6 addresses) fails
/// before a byte is sent, as `proxy_protocol`: the declared protocol cannot
/// express the request. Not `dns` (the name may well resolve) and not the
/// proxy's doing (it was never asked); the fix is in the configuration
/// (`socks5`/`socks4a`, or an IPv4 target).
pub(crate) async fn connect<S>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
    remote_dns: bool,
) -> Result<(), StepError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let literal = host.parse::<IpAddr>().ok();
    let (ip, send_name) = match literal {
        Some(IpAddr::V4(v4)) => (v4, false),
        Some(IpAddr::V6(_)) => {
            return Err(StepError::new(
                Reason::ProxyProtocol,
                format!("SOCKS4 cannot carry IPv6: target {host}"),
            ))
        }
        // SOCKS4a marks "resolve the name I append" with the address 0.0.0.x, x != 0.
        None if remote_dns => (std::net::Ipv4Addr::new(0, 0, 0, 1), true),
        None => match resolve_target(host).await? {
            IpAddr::V4(v4) => (v4, false),
            IpAddr::V6(_) => {
                return Err(StepError::new(
                    Reason::ProxyProtocol,
                    format!("SOCKS4 cannot carry IPv6: {host} has no IPv4 address"),
                ))
            }
        },
    };
    let user = proxy.username.as_deref().unwrap_or("");
    let mut req = Vec::with_capacity(10 + user.len() + host.len());
    req.extend_from_slice(&[0x04, 0x01]);
    req.extend_from_slice(&port.to_be_bytes());
    req.extend_from_slice(&ip.octets());
    req.extend_from_slice(user.as_bytes());
    req.push(0);
    if send_name {
        req.extend_from_slice(host.as_bytes());
        req.push(0);
    }
    stream
        .write_all(&req)
        .await
        .map_err(|e| io_error(&e, "SOCKS4 request"))?;

    let mut reply = [0u8; 8];
    if let Err((got, e)) = read_exact_counted(stream, &mut reply).await {
        if got > 0 && !valid_version(reply[0]) {
            return Err(wrong_version(reply[0]));
        }
        return Err(io_error(&e, "SOCKS4 reply"));
    }
    if !valid_version(reply[0]) {
        return Err(wrong_version(reply[0]));
    }
    match reply[1] {
        0x5A => Ok(()),
        code => Err(StepError::new(
            Reason::ProxyRefused,
            format!("SOCKS4 reply 0x{code:02X} {}", reply_meaning(code)),
        )),
    }
}

/// The reply version is 0 by the spec; some servers echo 4.
fn valid_version(v: u8) -> bool {
    v == 0x00 || v == 0x04
}

fn wrong_version(v: u8) -> StepError {
    StepError::new(
        Reason::ProxyProtocol,
        format!("SOCKS4 reply has version 0x{v:02X}, expected 0x00: not a SOCKS4 proxy"),
    )
}

fn reply_meaning(code: u8) -> &'static str {
    match code {
        0x5B => "request rejected or failed",
        0x5C => "rejected: identd unreachable",
        0x5D => "rejected: identd user id mismatch",
        _ => "unknown reply code",
    }
}
