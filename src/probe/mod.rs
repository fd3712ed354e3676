//! Checking one proxy: dial it, speak its protocol, fetch the target through
//! it, time every phase and classify the outcome the way pharox does.
//!
//! The probe knows nothing of Prometheus, storage or scheduling: it takes a
//! [`Proxy`] and resolved [`CheckOptions`] and returns a [`CheckResult`].
//! Every read from the network is bounded in bytes and by the attempt's
//! deadline, so one misbehaving proxy can only ever cost its own timeout.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::model::{CheckResult, Phase, Phases, Proxy, ProxyProtocol, ProxyStatus, Reason};

mod attempt;
pub(crate) mod dial;
pub(crate) mod http_proxy;
mod options;
pub(crate) mod request;
pub(crate) mod socks4;
pub(crate) mod socks5;
pub(crate) mod tls;

pub(crate) use attempt::StepError;
use attempt::{Attempt, AttemptError};
use dial::{Conn, ProxyStream};
pub(crate) use options::OptionsByPool;
pub use options::{CheckOptions, PHAROX_DEFAULT_TARGET};
pub use tls::{client_config, TlsConfigError};

/// Redirect hops followed at most when `allow_redirects` is on.
pub(crate) const MAX_REDIRECTS: usize = 5;

/// The `User-Agent` of every request and CONNECT (unless headers override it).
pub const USER_AGENT: &str = concat!("pharox-exporter/", env!("CARGO_PKG_VERSION"));

/// Check one proxy with all its attempts. Never panics and never returns an
/// error: every failure is a [`CheckResult`] with a reason.
///
/// Each attempt has one deadline (`timeout` after it starts) covering every
/// phase and redirect hop. The first attempt that gets an expected status
/// and passes the body checks decides ACTIVE or SLOW; if none does, the
/// result is INACTIVE with the last attempt's reason, phase and error, and
/// `latency_ms` is the timeout (as pharox reports it); `elapsed_ms` is how
/// long the check really took.
pub async fn check(proxy: &Proxy, opts: &CheckOptions) -> CheckResult {
    let attempts = opts.attempts.max(1);
    let started = std::time::Instant::now();
    let elapsed_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut last: Option<(AttemptError, Phases, Option<u16>)> = None;
    for n in 1..=attempts {
        let (att, outcome) = attempt_with_fds(proxy, opts).await;
        let total = att.start.elapsed();
        let phases = att.phases(total);
        match outcome {
            Ok(status_code) => {
                let latency_ms = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
                let slow_ms = u64::try_from(opts.slow_threshold.as_millis()).unwrap_or(u64::MAX);
                return CheckResult {
                    proxy_id: proxy.id.clone(),
                    status: if latency_ms <= slow_ms {
                        ProxyStatus::Active
                    } else {
                        ProxyStatus::Slow
                    },
                    latency_ms,
                    elapsed_ms: elapsed_ms(),
                    attempts: n,
                    status_code: Some(status_code),
                    reason: None,
                    phase: None,
                    error: None,
                    checked_at: chrono::Utc::now(),
                    phases,
                };
            }
            Err(f) => last = Some((f, phases, att.last_status)),
        }
    }
    let (failure, phases, status_code) = match last {
        Some(l) => l,
        // Unreachable: at least one attempt ran. Kept total for safety.
        None => (
            AttemptError {
                reason: Reason::Timeout,
                phase: Phase::Connect,
                error: "no attempt was made".to_string(),
            },
            Phases::default(),
            None,
        ),
    };
    CheckResult {
        proxy_id: proxy.id.clone(),
        status: ProxyStatus::Inactive,
        latency_ms: u64::try_from(opts.timeout.as_millis()).unwrap_or(u64::MAX),
        elapsed_ms: elapsed_ms(),
        attempts,
        status_code,
        reason: Some(failure.reason),
        phase: Some(failure.phase),
        error: Some(redact(failure.error, proxy)),
        checked_at: chrono::Utc::now(),
        phases,
    }
}

/// Retries of an attempt that found no file descriptor to dial with.
const FD_RETRIES: u32 = 3;
/// The first wait before such a retry (then twice, three times as long).
const FD_RETRY_WAIT: Duration = Duration::from_millis(50);

/// One attempt; when it could not dial for lack of file descriptors (our
/// shortage, usually momentary, not the proxy's fault), wait a little and
/// run it again with fresh timings. Still short after the retries, the
/// failure says `local_resources` and the check counts as not done.
async fn attempt_with_fds(
    proxy: &Proxy,
    opts: &CheckOptions,
) -> (Attempt, Result<u16, AttemptError>) {
    let mut retries = 0;
    loop {
        let mut att = Attempt::new(opts.timeout);
        let outcome = run_attempt(proxy, opts, &mut att).await;
        match &outcome {
            Err(f) if f.reason == Reason::LocalResources && retries < FD_RETRIES => {
                retries += 1;
                tokio::time::sleep(FD_RETRY_WAIT * retries).await;
            }
            _ => return (att, outcome),
        }
    }
}

/// Last line of defence for the secrets rule: no code path is meant to put
/// credentials in an error, but a proxy could echo them back in a reason
/// phrase we quote.
fn redact(mut error: String, proxy: &Proxy) -> String {
    if let Some(pass) = proxy.password.as_deref().filter(|p| !p.is_empty()) {
        if error.contains(pass) {
            error = error.replace(pass, "***");
        }
        use base64::Engine;
        let user = proxy.username.as_deref().unwrap_or("");
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        if error.contains(&token) {
            error = error.replace(&token, "***");
        }
    }
    error
}

/// One attempt: fetch the target, following redirects within the deadline.
/// Returns the final (expected) status.
async fn run_attempt(
    proxy: &Proxy,
    opts: &CheckOptions,
    att: &mut Attempt,
) -> Result<u16, AttemptError> {
    // One buffer per attempt, reused by every hop and every phase.
    let mut buf = BytesMut::with_capacity(4096);
    let mut redirected: Option<Url> = None;
    for hop in 0..=MAX_REDIRECTS {
        let url = redirected.as_ref().unwrap_or(&opts.target_url);
        let (head, absolute) = fetch(proxy, opts, url, att, &mut buf).await?;
        let status = head.status;
        if opts.expected_status_codes.contains(&status) {
            request::check_body(&buf, opts).map_err(|f| f.at(Phase::Body))?;
            return Ok(status);
        }
        if absolute && status == 407 {
            // An HTTP proxy answering our absolute-form request itself.
            return Err(http_proxy::auth_error(proxy).at(Phase::Handshake));
        }
        let is_redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
        if let (true, true, Some(location)) = (opts.allow_redirects, is_redirect, &head.location) {
            if hop == MAX_REDIRECTS {
                return Err(StepError::new(
                    Reason::Redirect,
                    format!("more than {MAX_REDIRECTS} redirects"),
                )
                .at(Phase::Body));
            }
            let next = url
                .join(location)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    StepError::new(
                        Reason::Redirect,
                        format!("{status} redirect to unusable Location {location:?}"),
                    )
                    .at(Phase::Body)
                })?;
            redirected = Some(next);
            continue;
        }
        return Err(StepError::new(
            Reason::UnexpectedStatus,
            format!(
                "unexpected status code {status}; expected one of {:?}",
                opts.expected_status_codes
            ),
        )
        .at(Phase::Body));
    }
    // The loop returns on every path; this keeps the compiler and readers sure.
    Err(StepError::new(
        Reason::Redirect,
        format!("more than {MAX_REDIRECTS} redirects"),
    )
    .at(Phase::Body))
}

/// One request through a fresh connection to the proxy. On return `buf`
/// holds the (bounded, decoded) body when the status is expected. The bool
/// says whether the request went in absolute form to an HTTP proxy.
async fn fetch(
    proxy: &Proxy,
    opts: &CheckOptions,
    url: &Url,
    att: &mut Attempt,
    buf: &mut BytesMut,
) -> Result<(request::Head, bool), AttemptError> {
    let target = Target::of(url)?;
    let (stream, absolute) = open_tunnel(proxy, opts, &target, att, buf).await?;
    let mut conn = if target.https {
        let tls = att
            .phase(
                Phase::Tls,
                tls::handshake(&opts.target_tls, &target.host, stream, "target"),
            )
            .await?;
        Conn::Tls(Box::new(tls))
    } else {
        Conn::Plain(stream)
    };
    let head = exchange(&mut conn, proxy, opts, url, absolute, att, buf).await?;
    Ok((head, absolute))
}

/// Where a request goes: scheme, host (IPv6 without brackets) and port.
struct Target {
    https: bool,
    host: String,
    port: u16,
}

impl Target {
    fn of(url: &Url) -> Result<Target, AttemptError> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(StepError::new(
                    Reason::Http,
                    format!("unsupported target URL scheme {other}://"),
                )
                .at(Phase::Connect))
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => {
                return Err(
                    StepError::new(Reason::Http, "target URL has no host").at(Phase::Connect)
                )
            }
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        Ok(Target { https, host, port })
    }
}

/// Connect to the proxy (TLS for HTTPS proxies) and have it open the way to
/// `target`: CONNECT or a SOCKS handshake. An HTTP proxy fetching an
/// `http://` target needs no handshake; the bool then says the request must
/// go in absolute form.
async fn open_tunnel(
    proxy: &Proxy,
    opts: &CheckOptions,
    target: &Target,
    att: &mut Attempt,
    buf: &mut BytesMut,
) -> Result<(ProxyStream, bool), AttemptError> {
    let tcp = att
        .phase(Phase::Connect, dial::connect(&proxy.host, proxy.port))
        .await?;
    let mut stream = if proxy.protocol == ProxyProtocol::Https {
        let tls = att
            .phase(
                Phase::ProxyTls,
                tls::handshake(&opts.proxy_tls, &proxy.host, tcp, "proxy"),
            )
            .await?;
        ProxyStream::Tls(Box::new(tls))
    } else {
        ProxyStream::Plain(tcp)
    };

    let (s, host, port) = (&mut stream, target.host.as_str(), target.port);
    match proxy.protocol {
        ProxyProtocol::Http | ProxyProtocol::Https if target.https => {
            att.phase(
                Phase::Handshake,
                http_proxy::connect_tunnel(s, proxy, host, port, buf),
            )
            .await?
        }
        ProxyProtocol::Http | ProxyProtocol::Https => return Ok((stream, true)),
        ProxyProtocol::Socks4 | ProxyProtocol::Socks4a => {
            let remote = proxy.protocol == ProxyProtocol::Socks4a;
            att.phase(
                Phase::Handshake,
                socks4::connect(s, proxy, host, port, remote),
            )
            .await?
        }
        ProxyProtocol::Socks5 | ProxyProtocol::Socks5h => {
            let remote = proxy.protocol == ProxyProtocol::Socks5h;
            att.phase(
                Phase::Handshake,
                socks5::connect(s, proxy, host, port, remote),
            )
            .await?
        }
    }
    Ok((stream, false))
}

/// Send the request over `conn` and read the response head, and the body
/// when the status is one we expect (other statuses are judged on the head).
async fn exchange(
    conn: &mut Conn,
    proxy: &Proxy,
    opts: &CheckOptions,
    url: &Url,
    absolute: bool,
    att: &mut Attempt,
    buf: &mut BytesMut,
) -> Result<request::Head, AttemptError> {
    request::build_request(buf, url, absolute, proxy, opts);
    att.phase(Phase::FirstByte, async {
        let written = conn.write_all(buf).await;
        // The request may carry Proxy-Authorization: drop it at once.
        buf.clear();
        written.map_err(|e| dial::io_error(&e, "sending the request"))?;
        conn.flush()
            .await
            .map_err(|e| dial::io_error(&e, "sending the request"))?;
        request::read_first_byte(conn, buf).await
    })
    .await?;

    let head = att
        .phase(
            Phase::Body,
            request::read_head(conn, buf, opts.max_header_bytes),
        )
        .await?;
    att.last_status = Some(head.status);
    if opts.expected_status_codes.contains(&head.status) {
        att.phase(
            Phase::Body,
            request::read_body(conn, buf, &head, opts.max_body_bytes, opts.max_header_bytes),
        )
        .await?;
    }
    Ok(head)
}

/// A peer-supplied string made safe to quote: printable ASCII, bounded.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(120)
        .collect()
}
