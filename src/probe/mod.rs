//! Checking one proxy: dial it, speak its protocol, fetch the target through
//! it, time every phase and classify the outcome the way pharox does.
//!
//! The probe knows nothing of Prometheus, storage or scheduling: it takes a
//! [`Proxy`] and resolved [`CheckOptions`] and returns a [`CheckResult`].
//! Every read from the network is bounded in bytes and by the attempt's
//! deadline, so one misbehaving proxy can only ever cost its own timeout.

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use url::Url;

use crate::model::{CheckResult, Phase, Phases, Proxy, ProxyProtocol, ProxyStatus, Reason};

pub(crate) mod dial;
pub(crate) mod http_proxy;
mod options;
pub(crate) mod request;
pub(crate) mod socks4;
pub(crate) mod socks5;
pub(crate) mod tls;

use dial::{Conn, ProxyStream};
pub use options::CheckOptions;
pub(crate) use options::{OptionsByPool, PHAROX_DEFAULT_TARGET};
pub use tls::{client_config, TlsConfigError};

/// Redirect hops followed at most when `allow_redirects` is on.
pub(crate) const MAX_REDIRECTS: usize = 5;

/// The `User-Agent` of every request and CONNECT (unless headers override it).
pub const USER_AGENT: &str = concat!("pharox-exporter/", env!("CARGO_PKG_VERSION"));

/// A failure inside one phase; [`Attempt::phase`] stamps the phase on it.
#[derive(Debug)]
pub(crate) struct Fail {
    reason: Reason,
    error: String,
}

impl Fail {
    pub(crate) fn new(reason: Reason, error: impl Into<String>) -> Self {
        Fail {
            reason,
            error: error.into(),
        }
    }

    fn at(self, phase: Phase) -> Failure {
        Failure {
            reason: self.reason,
            phase,
            error: self.error,
        }
    }
}

/// How one attempt failed.
#[derive(Debug)]
struct Failure {
    reason: Reason,
    phase: Phase,
    error: String,
}

/// One attempt: its deadline, the time spent per phase (summed over
/// redirect hops) and the last HTTP status seen.
struct Attempt {
    start: Instant,
    deadline: Instant,
    timeout: Duration,
    spent: [Option<Duration>; 6],
    last_status: Option<u16>,
}

impl Attempt {
    fn new(timeout: Duration) -> Self {
        let start = Instant::now();
        Attempt {
            start,
            deadline: start + timeout,
            timeout,
            spent: [None; 6],
            last_status: None,
        }
    }

    /// Run one phase under the attempt's deadline and record its duration.
    async fn phase<T>(
        &mut self,
        phase: Phase,
        fut: impl Future<Output = Result<T, Fail>>,
    ) -> Result<T, Failure> {
        let began = Instant::now();
        match tokio::time::timeout_at(self.deadline, fut).await {
            Ok(Ok(v)) => {
                let slot = &mut self.spent[phase_index(phase)];
                *slot = Some(slot.unwrap_or_default() + began.elapsed());
                Ok(v)
            }
            Ok(Err(f)) => Err(f.at(phase)),
            Err(_) => Err(Failure {
                reason: Reason::Timeout,
                phase,
                error: format!(
                    "timed out after {} ms during {phase}",
                    self.timeout.as_millis()
                ),
            }),
        }
    }

    fn phases(&self, total: Duration) -> Phases {
        let mut p = Phases::default();
        for phase in Phase::ALL {
            if let Some(d) = self.spent[phase_index(phase)] {
                p.set(phase, d);
            }
        }
        p.total_ms = Some(total.as_secs_f64() * 1000.0);
        p
    }
}

fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::Connect => 0,
        Phase::ProxyTls => 1,
        Phase::Handshake => 2,
        Phase::Tls => 3,
        Phase::FirstByte => 4,
        Phase::Body => 5,
    }
}

/// Check one proxy with all its attempts. Never panics and never returns an
/// error: every failure is a [`CheckResult`] with a reason.
///
/// Each attempt has one deadline (`timeout` after it starts) covering every
/// phase and redirect hop. The first attempt that gets an expected status
/// and passes the body checks decides ACTIVE or SLOW; if none does, the
/// result is INACTIVE with the last attempt's reason, phase and error, and
/// `latency_ms` is the timeout (as pharox reports it).
pub async fn check(proxy: &Proxy, opts: &CheckOptions) -> CheckResult {
    let attempts = opts.attempts.max(1);
    let mut last: Option<(Failure, Phases, Option<u16>)> = None;
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
            Failure {
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
async fn attempt_with_fds(proxy: &Proxy, opts: &CheckOptions) -> (Attempt, Result<u16, Failure>) {
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
) -> Result<u16, Failure> {
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
            return Err(http_proxy::auth_fail(proxy).at(Phase::Handshake));
        }
        let is_redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
        if let (true, true, Some(location)) = (opts.allow_redirects, is_redirect, &head.location) {
            if hop == MAX_REDIRECTS {
                return Err(Fail::new(
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
                    Fail::new(
                        Reason::Redirect,
                        format!("{status} redirect to unusable Location {location:?}"),
                    )
                    .at(Phase::Body)
                })?;
            redirected = Some(next);
            continue;
        }
        return Err(Fail::new(
            Reason::UnexpectedStatus,
            format!(
                "unexpected status code {status}; expected one of {:?}",
                opts.expected_status_codes
            ),
        )
        .at(Phase::Body));
    }
    // The loop returns on every path; this keeps the compiler and readers sure.
    Err(Fail::new(
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
) -> Result<(request::Head, bool), Failure> {
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(Fail::new(
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
        None => return Err(Fail::new(Reason::Http, "target URL has no host").at(Phase::Connect)),
    };
    let port = url
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });

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

    let mut absolute = false;
    let s = &mut stream;
    match proxy.protocol {
        ProxyProtocol::Http | ProxyProtocol::Https if https => {
            att.phase(
                Phase::Handshake,
                http_proxy::connect_tunnel(s, proxy, &host, port, buf),
            )
            .await?
        }
        ProxyProtocol::Http | ProxyProtocol::Https => absolute = true,
        ProxyProtocol::Socks4 | ProxyProtocol::Socks4a => {
            let remote = proxy.protocol == ProxyProtocol::Socks4a;
            att.phase(
                Phase::Handshake,
                socks4::connect(s, proxy, &host, port, remote),
            )
            .await?
        }
        ProxyProtocol::Socks5 | ProxyProtocol::Socks5h => {
            let remote = proxy.protocol == ProxyProtocol::Socks5h;
            att.phase(
                Phase::Handshake,
                socks5::connect(s, proxy, &host, port, remote),
            )
            .await?
        }
    }

    let mut conn = if https {
        let tls = att
            .phase(
                Phase::Tls,
                tls::handshake(&opts.target_tls, &host, stream, "target"),
            )
            .await?;
        Conn::Tls(Box::new(tls))
    } else {
        Conn::Plain(stream)
    };

    request::build_request(buf, url, absolute, proxy, opts);
    att.phase(Phase::FirstByte, async {
        let written = conn.write_all(buf).await;
        // The request may carry Proxy-Authorization: drop it at once.
        buf.clear();
        written.map_err(|e| dial::io_fail(&e, "sending the request"))?;
        conn.flush()
            .await
            .map_err(|e| dial::io_fail(&e, "sending the request"))?;
        request::read_first_byte(&mut conn, buf).await
    })
    .await?;

    let head = att
        .phase(
            Phase::Body,
            request::read_head(&mut conn, buf, opts.max_header_bytes),
        )
        .await?;
    att.last_status = Some(head.status);
    if opts.expected_status_codes.contains(&head.status) {
        att.phase(
            Phase::Body,
            request::read_body(
                &mut conn,
                buf,
                &head,
                opts.max_body_bytes,
                opts.max_header_bytes,
            ),
        )
        .await?;
    }
    Ok((head, absolute))
}

/// A peer-supplied string made safe to quote: printable ASCII, bounded.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(120)
        .collect()
}
