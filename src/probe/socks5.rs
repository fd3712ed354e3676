//! SOCKS5 (RFC 1928) `CONNECT`, with username/password auth (RFC 1929).

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::dial::{io_error, read_exact_counted, resolve_target};
use super::StepError;
use crate::model::{Proxy, Reason};
use crate::secret::Secret;

const VERSION: u8 = 0x05;
const NO_AUTH: u8 = 0x00;
const USER_PASS: u8 = 0x02;
const NO_ACCEPTABLE: u8 = 0xFF;

/// Open a tunnel to `host:port`. With `remote_dns` (socks5h) a host name is
/// sent as such; otherwise it is resolved here and sent as an address.
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
    // Resolve before talking, so a DNS failure is not blamed on the proxy.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = target_address(bare, remote_dns).await?;
    negotiate_method(stream, proxy).await?;
    send_request(stream, addr, bare, port).await?;
    read_connect_reply(stream).await
}

/// The address to send: `None` means the host name itself (socks5h).
async fn target_address(bare: &str, remote_dns: bool) -> Result<Option<IpAddr>, StepError> {
    let addr = match bare.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if remote_dns => None,
        Err(_) => Some(resolve_target(bare).await?),
    };
    if addr.is_none() && bare.len() > 255 {
        return Err(StepError::new(
            Reason::Dns,
            "target host name longer than 255 bytes cannot be sent over SOCKS5",
        ));
    }
    Ok(addr)
}

/// The greeting: offer no-auth (and username/password when we have
/// credentials), then authenticate if the proxy picks it.
async fn negotiate_method<S>(stream: &mut S, proxy: &Proxy) -> Result<(), StepError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let creds = proxy.has_credentials();
    let greeting: &[u8] = if creds {
        &[VERSION, 2, NO_AUTH, USER_PASS]
    } else {
        &[VERSION, 1, NO_AUTH]
    };
    stream
        .write_all(greeting)
        .await
        .map_err(|e| io_error(&e, "SOCKS5 greeting"))?;
    let mut choice = [0u8; 2];
    read_reply(stream, &mut choice, "SOCKS5 greeting").await?;
    match choice[1] {
        NO_AUTH => Ok(()),
        USER_PASS if creds => authenticate(stream, proxy).await,
        NO_ACCEPTABLE if creds => Err(StepError::new(
            Reason::ProxyAuthFailed,
            format!(
                "SOCKS5 proxy {} accepts none of our methods (no-auth, username/password)",
                proxy.redacted_url()
            ),
        )),
        NO_ACCEPTABLE | USER_PASS => Err(StepError::new(
            Reason::ProxyAuthRequired,
            format!(
                "SOCKS5 proxy {} requires authentication and none is configured",
                proxy.redacted_url()
            ),
        )),
        m => Err(StepError::new(
            Reason::ProxyProtocol,
            format!("SOCKS5 proxy chose method 0x{m:02X}, which we did not offer"),
        )),
    }
}

/// The CONNECT request for `addr`, or for the host name `bare` when `addr`
/// is `None` (its length was checked by [`target_address`]).
async fn send_request<S>(
    stream: &mut S,
    addr: Option<IpAddr>,
    bare: &str,
    port: u16,
) -> Result<(), StepError>
where
    S: AsyncWrite + Unpin,
{
    let mut req = Vec::with_capacity(7 + bare.len().max(16));
    req.extend_from_slice(&[VERSION, 0x01, 0x00]);
    match addr {
        Some(IpAddr::V4(v4)) => {
            req.push(0x01);
            req.extend_from_slice(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            req.push(0x04);
            req.extend_from_slice(&v6.octets());
        }
        None => {
            req.push(0x03);
            // Checked by target_address: at most 255 bytes.
            req.push(bare.len() as u8);
            req.extend_from_slice(bare.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    stream
        .write_all(&req)
        .await
        .map_err(|e| io_error(&e, "SOCKS5 request"))
}

/// A CONNECT reply whose bound address is an empty host name: VER REP RSV
/// ATYP, the length 0, the port.
const SHORTEST_NAME_REPLY: usize = 7;

/// The reply to CONNECT: success, then the bound address, read and ignored.
///
/// Read in as few reads as the reply arrives in (usually one): each field
/// is judged as soon as its bytes are there, and a read never asks for more
/// than the reply can still hold, except that the first asks for the 10
/// bytes of the common IPv4 reply before the address type is known. Only a
/// host-name reply shorter than that, followed by data the proxy had no
/// reason to send before our request, would be over-read: that is refused.
async fn read_connect_reply<S>(stream: &mut S) -> Result<(), StepError>
where
    S: AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    // VER REP RSV ATYP, a bound address of at most 1 + 255 bytes, the port.
    let mut buf = [0u8; 4 + 256 + 2];
    let mut filled = 0;
    let mut want = 10;
    loop {
        // A refusing proxy may close right after VER and REP: judge those first.
        if filled >= 1 && buf[0] != VERSION {
            return Err(wrong_version(buf[0]));
        }
        if filled >= 2 && buf[1] != 0x00 {
            return Err(StepError::new(
                Reason::ProxyRefused,
                format!("SOCKS5 reply 0x{:02X} {}", buf[1], reply_meaning(buf[1])),
            ));
        }
        let total = match (filled >= 4).then_some(buf[3]) {
            None => None,
            Some(0x01) => Some(4 + 4 + 2),
            Some(0x04) => Some(4 + 16 + 2),
            Some(0x03) if filled >= 5 => Some(4 + 1 + usize::from(buf[4]) + 2),
            Some(0x03) => {
                // The name's length has not come yet: ask for no more than
                // the shortest name reply (an empty name) holds.
                want = SHORTEST_NAME_REPLY;
                None
            }
            Some(t) => {
                return Err(StepError::new(
                    Reason::ProxyProtocol,
                    format!("SOCKS5 reply has unknown address type 0x{t:02X}"),
                ))
            }
        };
        if let Some(total) = total {
            if filled > total {
                return Err(StepError::new(
                    Reason::ProxyProtocol,
                    "SOCKS5 proxy sent data after its reply, before our request",
                ));
            }
            if filled == total {
                return Ok(());
            }
            want = total;
        }
        match stream.read(&mut buf[filled..want]).await {
            Ok(0) => {
                let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                return Err(io_error(&eof, "SOCKS5 reply"));
            }
            Ok(n) => filled += n,
            Err(e) => return Err(io_error(&e, "SOCKS5 reply")),
        }
    }
}

/// Read a reply whose first byte must be the SOCKS version.
async fn read_reply<S>(stream: &mut S, buf: &mut [u8], during: &str) -> Result<(), StepError>
where
    S: AsyncRead + Unpin,
{
    match read_exact_counted(stream, buf).await {
        Ok(()) if buf[0] == VERSION => Ok(()),
        Ok(()) => Err(wrong_version(buf[0])),
        Err((got, _)) if got > 0 && buf[0] != VERSION => Err(wrong_version(buf[0])),
        Err((_, e)) => Err(io_error(&e, during)),
    }
}

fn wrong_version(v: u8) -> StepError {
    StepError::new(
        Reason::ProxyProtocol,
        format!("SOCKS5 reply has version 0x{v:02X}, expected 0x05: not a SOCKS5 proxy"),
    )
}

/// RFC 1929 username/password sub-negotiation.
async fn authenticate<S>(stream: &mut S, proxy: &Proxy) -> Result<(), StepError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let user = proxy.username.as_deref().unwrap_or("").as_bytes();
    let pass = proxy
        .password
        .as_ref()
        .map_or("", Secret::expose)
        .as_bytes();
    let (Ok(ulen), Ok(plen)) = (u8::try_from(user.len()), u8::try_from(pass.len())) else {
        return Err(StepError::new(
            Reason::ProxyAuthFailed,
            "SOCKS5 username or password longer than 255 bytes (RFC 1929 limit)",
        ));
    };
    let mut msg = Vec::with_capacity(3 + user.len() + pass.len());
    msg.push(0x01);
    msg.push(ulen);
    msg.extend_from_slice(user);
    msg.push(plen);
    msg.extend_from_slice(pass);
    let written = stream.write_all(&msg).await;
    // The message holds the password: wipe it whatever happened.
    msg.iter_mut().for_each(|b| *b = 0);
    written.map_err(|e| io_error(&e, "SOCKS5 authentication"))?;
    let mut status = [0u8; 2];
    match read_exact_counted(stream, &mut status).await {
        // The sub-negotiation version is 1; some servers answer 5.
        Ok(()) if status[0] != 0x01 && status[0] != VERSION => Err(StepError::new(
            Reason::ProxyProtocol,
            format!(
                "SOCKS5 authentication reply has version 0x{:02X}, expected 0x01",
                status[0]
            ),
        )),
        Ok(()) if status[1] != 0x00 => Err(StepError::new(
            Reason::ProxyAuthFailed,
            format!(
                "SOCKS5 proxy {} rejected the credentials (status 0x{:02X})",
                proxy.redacted_url(),
                status[1]
            ),
        )),
        Ok(()) => Ok(()),
        Err((_, e)) => Err(io_error(&e, "SOCKS5 authentication")),
    }
}

fn reply_meaning(code: u8) -> &'static str {
    match code {
        0x01 => "general SOCKS server failure",
        0x02 => "connection not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unknown reply code",
    }
}
