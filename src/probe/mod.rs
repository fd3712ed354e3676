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

use crate::model::{CheckResult, Exit, Phase, Phases, Proxy, ProxyProtocol, ProxyStatus, Reason};
use crate::secret::{cut, mask_known, Secret};

mod attempt;
pub(crate) mod dial;
#[cfg(test)]
mod handshake_tests;
pub(crate) mod http_proxy;
mod judge;
mod options;
mod own_ips;
#[cfg(test)]
mod proptests;
pub(crate) mod proxy_error;
pub(crate) mod request;
pub(crate) mod socks4;
pub(crate) mod socks5;
pub(crate) mod tls;

pub(crate) use attempt::StepError;
use attempt::{Attempt, AttemptError};
use dial::{Conn, ProxyStream};
pub(crate) use options::OptionsByPool;
pub use options::{CheckOptions, PHAROX_DEFAULT_TARGET};
use own_ips::Own;
pub use own_ips::{learn_own_ips, OwnIps};
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
///
/// Against a judge (`opts.judge`), our own IPs are only the configured
/// `own_ips`; [`check_with`] adds those learnt by [`learn_own_ips`].
pub async fn check(proxy: &Proxy, opts: &CheckOptions) -> CheckResult {
    check_with(proxy, opts, &OwnIps::default()).await
}

/// [`check`], knowing the own IPs learnt from the judges (a sweep learns
/// them once at its start). The result's `exit` is filled whenever a
/// judge's answer was read: on success, and on a failure it decided
/// (`anonymity`, `exit_ip_leak`).
pub async fn check_with(proxy: &Proxy, opts: &CheckOptions, own: &OwnIps) -> CheckResult {
    let own = if opts.judge {
        Some(own.view(opts))
    } else {
        None
    };
    let attempts = opts.attempts.max(1);
    let started = std::time::Instant::now();
    let elapsed_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut last: Option<(AttemptError, Phases, Option<u16>, Option<Exit>)> = None;
    for n in 1..=attempts {
        let (att, outcome) = attempt_with_fds(proxy, opts, own.as_ref()).await;
        let total = att.start.elapsed();
        let phases = att.phases(total);
        match outcome {
            Ok(status_code) => {
                let latency_ms = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
                let slow_ms = u64::try_from(opts.slow_threshold.as_millis()).unwrap_or(u64::MAX);
                return CheckResult {
                    proxy_id: proxy.id.to_string(),
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
                    exit: att.exit,
                };
            }
            Err(f) => {
                let code = f.status_code.or(att.last_status);
                last = Some((f, phases, code, att.exit));
            }
        }
    }
    let (failure, phases, status_code, exit) = match last {
        Some(l) => l,
        // Unreachable: at least one attempt ran. Kept total for safety.
        None => (
            AttemptError {
                reason: Reason::Timeout,
                phase: Phase::Connect,
                error: "no attempt was made".to_string(),
                status_code: None,
            },
            Phases::default(),
            None,
            None,
        ),
    };
    CheckResult {
        proxy_id: proxy.id.to_string(),
        status: ProxyStatus::Inactive,
        latency_ms: u64::try_from(opts.timeout.as_millis()).unwrap_or(u64::MAX),
        elapsed_ms: elapsed_ms(),
        attempts,
        status_code,
        reason: Some(failure.reason),
        phase: Some(failure.phase),
        error: Some(failure.error),
        checked_at: chrono::Utc::now(),
        phases,
        exit,
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
    own: Option<&Own>,
) -> (Attempt, Result<u16, AttemptError>) {
    let mut retries = 0;
    loop {
        let mut att = Attempt::new(opts.timeout);
        let outcome = run_attempt(proxy, opts, own, &mut att).await;
        match &outcome {
            Err(f) if f.reason == Reason::LocalResources && retries < FD_RETRIES => {
                retries += 1;
                tokio::time::sleep(FD_RETRY_WAIT * retries).await;
            }
            _ => return (att, outcome),
        }
    }
}

/// One attempt: fetch the target, following redirects within the deadline.
/// Returns the final (expected) status. `own` is set for judge targets.
async fn run_attempt(
    proxy: &Proxy,
    opts: &CheckOptions,
    own: Option<&Own>,
    att: &mut Attempt,
) -> Result<u16, AttemptError> {
    // One buffer per attempt, reused by every hop and every phase.
    let mut buf = BytesMut::with_capacity(4096);
    let mut redirected: Option<Url> = None;
    for hop in 0..=MAX_REDIRECTS {
        let url = redirected.as_ref().unwrap_or(&opts.target_url);
        // Configured headers (Authorization, API keys) go to the target's
        // origin only: a redirect elsewhere gets none, as curl and Go's
        // client do. Compared with the configured target at every hop.
        let headers = if same_origin(url, &opts.target_url) {
            opts.headers.as_slice()
        } else {
            &[]
        };
        let (head, absolute) = fetch(proxy, opts, headers, url, att, &mut buf).await?;
        let status = head.status;
        if opts.expected_status_codes.contains(&status) {
            if let Some(own) = own {
                let (exit, verdict) =
                    judge::judge(&buf, &opts.own_ips, &own.as_view(), opts.min_anonymity);
                att.exit = exit;
                verdict.map_err(|f| f.at(Phase::Body))?;
            }
            request::check_body(&buf, opts).map_err(|f| f.at(Phase::Body))?;
            return Ok(status);
        }
        if absolute && status == 407 {
            // An HTTP proxy answering our absolute-form request itself.
            return Err(http_proxy::auth_error(proxy).at(Phase::Handshake));
        }
        if absolute {
            // Only in absolute form can an error be the proxy's own; in a
            // tunnel every byte is the target's.
            let made = head
                .marks
                .as_deref()
                .and_then(|m| proxy_error::classify(m, &buf));
            if let Some(made) = made {
                let quote = |s: &str| quote_peer(s, proxy, &opts.headers);
                return Err(
                    StepError::new(made.reason, made.message(status, quote)).at(Phase::FirstByte)
                );
            }
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
            let mut next = url
                .join(location)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    StepError::new(
                        Reason::Redirect,
                        format!(
                            "{status} redirect to unusable Location {:?}",
                            quote_peer(location, proxy, &opts.headers)
                        ),
                    )
                    .at(Phase::Body)
                })?;
            // Userinfo in a Location is never sent on (an absolute-form
            // request line would carry it to the proxy in clear).
            let _ = next.set_password(None);
            let _ = next.set_username("");
            redirected = Some(next);
            continue;
        }
        // The status line is the response's first bytes: a mismatch is
        // known at first byte, whatever reading the rest costs.
        return Err(StepError::new(
            Reason::UnexpectedStatus,
            format!(
                "unexpected status code {status}; expected one of {:?}",
                opts.expected_status_codes
            ),
        )
        .at(Phase::FirstByte));
    }
    // The loop returns on every path; this keeps the compiler and readers sure.
    Err(StepError::new(
        Reason::Redirect,
        format!("more than {MAX_REDIRECTS} redirects"),
    )
    .at(Phase::Body))
}

/// Same scheme, host and port: where configured headers may go (curl's rule
/// since 7.83: a change of any of the three drops credentials).
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// One request through a fresh connection to the proxy. On return `buf`
/// holds the (bounded, decoded) body when the status is expected. The bool
/// says whether the request went in absolute form to an HTTP proxy.
async fn fetch(
    proxy: &Proxy,
    opts: &CheckOptions,
    headers: &[(String, Secret)],
    url: &Url,
    att: &mut Attempt,
    buf: &mut BytesMut,
) -> Result<(request::Head, bool), AttemptError> {
    let target = Target::of(url)?;
    let (stream, absolute) = open_tunnel(proxy, opts, &target, att, buf).await?;
    let mut conn = if target.https {
        let quote = |s: &str| quote_peer_max(s, proxy, &opts.headers, TLS_QUOTE_MAX);
        let tls = att
            .phase(
                Phase::Tls,
                tls::handshake(&opts.target_tls, &target.host, stream, "target", quote),
            )
            .await?;
        Conn::Tls(Box::new(tls))
    } else {
        Conn::Plain(stream)
    };
    let head = exchange(&mut conn, proxy, opts, headers, url, absolute, att, buf).await?;
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
        let quote = |s: &str| quote_peer_max(s, proxy, &opts.headers, TLS_QUOTE_MAX);
        let tls = att
            .phase(
                Phase::ProxyTls,
                tls::handshake(&opts.proxy_tls, &proxy.host, tcp, "proxy", quote),
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
#[allow(clippy::too_many_arguments)]
async fn exchange(
    conn: &mut Conn,
    proxy: &Proxy,
    opts: &CheckOptions,
    headers: &[(String, Secret)],
    url: &Url,
    absolute: bool,
    att: &mut Attempt,
    buf: &mut BytesMut,
) -> Result<request::Head, AttemptError> {
    request::build_request(buf, url, absolute, proxy, headers);
    att.phase(Phase::FirstByte, async {
        let written = conn.write_all(buf).await;
        // The request may carry Proxy-Authorization: drop it at once.
        buf.clear();
        written.map_err(|e| dial::io_error(&e, "sending the request"))?;
        conn.flush()
            .await
            .map_err(|e| dial::io_error(&e, "sending the request"))?;
        request::read_first_byte(conn, buf).await?;
        if absolute && !request::starts_like_http(buf) {
            // Where an HTTP proxy's answer belongs: the proxy is not one.
            return Err(StepError::new(
                Reason::ProxyProtocol,
                format!(
                    "proxy answered with something that is not HTTP{}",
                    request::not_http_hint(buf)
                ),
            ));
        }
        Ok(())
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
    } else if absolute
        && head
            .marks
            .as_deref()
            .is_some_and(|m| proxy_error::classify(m, b"").is_none())
    {
        // An error whose headers do not say who made it: a bounded look at
        // the body for a proxy's stock error page. Best effort: the status
        // decides the check, so a failure to read more is not the verdict.
        let _ = att
            .phase(
                Phase::Body,
                request::read_body(
                    conn,
                    buf,
                    &head,
                    proxy_error::PAGE_PEEK,
                    opts.max_header_bytes,
                ),
            )
            .await;
    }
    Ok(head)
}

/// Characters of a peer's text (reason phrase, `Location`) quoted at most.
const PEER_QUOTE_MAX: usize = 120;
/// Characters of a TLS error (which may name a peer's certificate) kept at most.
const TLS_QUOTE_MAX: usize = 512;

/// Printable ASCII only, unbounded: the peer's bytes as we may show them.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect()
}

/// Text a peer sent (a proxy's reason phrase, a `Location`), made safe to
/// quote in an error: the proxy's password, its `user:password` and the
/// configured header values are masked in every form a peer could echo
/// them ([`mask_known`]), before and after dropping non-printable
/// characters (which could join a split password), and only then is the
/// text cut. Our own text never comes here: it cannot hold a secret (a
/// [`Secret`] prints `***`), so it needs no masking pass and is never
/// garbled by one (a password `x` used to turn "proxy" into "pro***y").
pub(crate) fn quote_peer(s: &str, proxy: &Proxy, headers: &[(String, Secret)]) -> String {
    quote_peer_max(s, proxy, headers, PEER_QUOTE_MAX)
}

fn quote_peer_max(s: &str, proxy: &Proxy, headers: &[(String, Secret)], max: usize) -> String {
    let pass = proxy.password.as_ref().map_or("", Secret::expose);
    let token = if !pass.is_empty() {
        format!("{}:{pass}", proxy.username.as_deref().unwrap_or(""))
    } else {
        String::new()
    };
    let mut secrets: Vec<&str> = vec![pass, token.as_str()];
    for (_, v) in headers {
        let v = v.expose();
        secrets.push(v);
        // `Bearer abc`, `Basic dXNlcg==`: the credential without its scheme.
        if let Some((_, cred)) = v.split_once(' ') {
            secrets.push(cred.trim());
        }
    }
    let masked = mask_known(&printable(&mask_known(s, &secrets)), &secrets);
    cut(&masked, max)
}
