//! The probe against real proxy servers from Debian packages.
//!
//! Every test starts the proxy (or proxies) it needs on 127.0.0.1:<free port>
//! with its own config and temp dir, plus in-process targets, and kills them
//! on Drop, so tests run in parallel. A missing server binary fails the test
//! naming its package (`sudo scripts/install-test-deps.sh` installs them all).
//! Run as root: squid switches to `proxy`, and dante's username method
//! checks a throwaway system user that the harness creates.
//!
//! Two kinds of tests:
//! - `harness_*`: curl through each server, so a broken harness is told
//!   apart from a broken probe.
//! - everything else: `pharox_exporter::check` through each server,
//!   asserting status, reason, phase and that no password leaks.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use pharox_exporter::{check, CheckOptions};
use pharox_exporter::{CheckResult, Phase, Proxy, ProxyProtocol, ProxyStatus, Reason};
use pharox_testkit::pki::client_tls;
use pharox_testkit::ThreadTarget;

use crate::support;
use crate::support::process::require_binary;
use crate::support::proxies::{self, ProxyServer};

const SQUID_USER: &str = "alice";
const SQUID_PASS: &str = "Sq-pw-4711";
const MS_USER: &str = "bob";
const MS_PASS: &str = "Ms-pw-0815";
const WRONG_PASS: &str = "Wr0ng-pw-1337";

// ---------------------------------------------------------------------------
// Expectations

/// What a check must yield. `phases` lists the acceptable failure phases
/// (empty: no phase, i.e. the proxy is up).
struct Want {
    status: ProxyStatus,
    reason: Option<Reason>,
    phases: &'static [Phase],
    status_code: Option<u16>,
}

fn active() -> Want {
    Want {
        status: ProxyStatus::Active,
        reason: None,
        phases: &[],
        status_code: Some(200),
    }
}

fn inactive(reason: Reason, phases: &'static [Phase]) -> Want {
    Want {
        status: ProxyStatus::Inactive,
        reason: Some(reason),
        phases,
        status_code: None,
    }
}

fn no_tls() -> Arc<rustls::ClientConfig> {
    client_tls(&[])
}

fn opts_http(target: &ThreadTarget, path: &str) -> CheckOptions {
    support::check_options(&target.url(path), no_tls(), no_tls())
}

fn opts_https(target: &ThreadTarget, path: &str) -> CheckOptions {
    support::check_options(
        &target.url(path),
        support::probe_tls(&target.ca_pem()),
        no_tls(),
    )
}

/// Run one check and assert it against `want`; on mismatch the message
/// carries the result and the proxy's logs.
async fn expect(
    server: &ProxyServer,
    proxy: &Proxy,
    opts: &CheckOptions,
    want: Want,
) -> CheckResult {
    let res = check(proxy, opts).await;
    let ctx = || {
        format!(
            "proxy {} ({}) -> {}\nresult: {res:#?}\n{}",
            proxy.redacted_url(),
            server.name(),
            opts.target_url,
            server.logs()
        )
    };
    assert_eq!(res.status, want.status, "status\n{}", ctx());
    assert_eq!(res.reason, want.reason, "reason\n{}", ctx());
    if want.phases.is_empty() {
        assert_eq!(res.phase, None, "phase\n{}", ctx());
    } else {
        assert!(
            res.phase.is_some_and(|p| want.phases.contains(&p)),
            "phase: want one of {:?}\n{}",
            want.phases,
            ctx()
        );
    }
    if let Some(code) = want.status_code {
        assert_eq!(res.status_code, Some(code), "status_code\n{}", ctx());
    }
    if res.status.is_up() {
        assert!(res.error.is_none(), "error on an up proxy\n{}", ctx());
    } else {
        assert!(
            res.error.is_some(),
            "no error text on a failed check\n{}",
            ctx()
        );
    }
    assert_eq!(res.proxy_id, proxy.id, "proxy_id\n{}", ctx());
    assert_no_password(proxy, &res);
    res
}

/// A configured password appears nowhere in the result: not in `error`, not
/// in its Debug form, not in its JSON.
fn assert_no_password(proxy: &Proxy, res: &CheckResult) {
    let Some(pw) = proxy.password.as_ref().map(pharox_exporter::Secret::expose) else {
        return;
    };
    let err = res.error.clone().unwrap_or_default();
    assert!(!err.contains(pw), "password in error: {err}");
    let dbg = format!("{res:?}");
    assert!(!dbg.contains(pw), "password in Debug: {dbg}");
    let json = serde_json::to_string(res).expect("result json");
    assert!(!json.contains(pw), "password in JSON: {json}");
}

// ---------------------------------------------------------------------------
// Harness self-tests: curl through every server.

fn curl_code(args: &[&str]) -> String {
    let curl = require_binary(&["/usr/bin/curl", "curl"], "curl");
    let out = Command::new(curl)
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("run curl");
    // stdout holds only the -w code; stderr explains failures.
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if code != "200" {
        eprintln!(
            "curl {args:?}: {code} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    code
}

fn curl_ok(server: &ProxyServer, args: &[&str]) {
    let code = curl_code(args);
    assert!(
        code == "200",
        "curl {args:?} through {}: {code}\n{}",
        server.name(),
        server.logs()
    );
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn harness_curl_squid_and_tinyproxy() {
    let http = ThreadTarget::http();
    let https = ThreadTarget::https();
    let ca = https.ca_pem();
    for server in [proxies::squid(None), proxies::tinyproxy()] {
        let px = server.proxy_url();
        curl_ok(&server, &["-x", &px, &http.url("/")]);
        curl_ok(
            &server,
            &["-x", &px, "--cacert", path_str(&ca), &https.url("/")],
        );
    }
    assert_eq!(http.requests() + https.requests(), 4);
}

#[test]
fn harness_curl_squid_auth() {
    let http = ThreadTarget::http();
    let server = proxies::squid(Some((SQUID_USER, SQUID_PASS)));
    let px = server.proxy_url();
    let good = format!("{SQUID_USER}:{SQUID_PASS}");
    let bad = format!("{SQUID_USER}:{WRONG_PASS}");
    curl_ok(&server, &["-x", &px, "-U", &good, &http.url("/")]);
    assert_eq!(curl_code(&["-x", &px, "-U", &bad, &http.url("/")]), "407");
    assert_eq!(curl_code(&["-x", &px, &http.url("/")]), "407");
}

#[test]
fn harness_curl_socks_servers() {
    let http = ThreadTarget::http();
    let dante = proxies::dante();
    for scheme in ["socks4", "socks5"] {
        curl_ok(&dante, &["-x", &dante.proxy_url_as(scheme), &http.url("/")]);
    }
    curl_ok(
        &dante,
        &[
            "-x",
            &dante.proxy_url_as("socks5h"),
            &http.url_localhost("/"),
        ],
    );

    let ssh = proxies::ssh_socks();
    for scheme in ["socks4", "socks5"] {
        curl_ok(&ssh, &["-x", &ssh.proxy_url_as(scheme), &http.url("/")]);
    }
    for scheme in ["socks4a", "socks5h"] {
        curl_ok(
            &ssh,
            &["-x", &ssh.proxy_url_as(scheme), &http.url_localhost("/")],
        );
    }

    let ms = proxies::microsocks(None);
    curl_ok(&ms, &["-x", &ms.proxy_url(), &http.url("/")]);
    assert_eq!(http.requests(), 8);
}

#[test]
fn harness_curl_socks_auth() {
    let http = ThreadTarget::http();
    let ms = proxies::microsocks(Some((MS_USER, MS_PASS)));
    let good = format!("socks5://{MS_USER}:{MS_PASS}@{}", ms.addr());
    let bad = format!("socks5://{MS_USER}:{WRONG_PASS}@{}", ms.addr());
    curl_ok(&ms, &["-x", &good, &http.url("/")]);
    assert_eq!(curl_code(&["-x", &bad, &http.url("/")]), "000");
    assert_eq!(curl_code(&["-x", &ms.proxy_url(), &http.url("/")]), "000");

    let dante = proxies::dante_auth();
    let (u, p) = dante.credentials().expect("dante creds");
    let good = format!("socks5://{u}:{p}@{}", dante.addr());
    let bad = format!("socks5://{u}:{WRONG_PASS}@{}", dante.addr());
    curl_ok(&dante, &["-x", &good, &http.url("/")]);
    assert_eq!(curl_code(&["-x", &bad, &http.url("/")]), "000");
    assert_eq!(http.requests(), 2);
}

#[test]
fn harness_curl_stunnel_https_proxy() {
    let http = ThreadTarget::http();
    let https = ThreadTarget::https();
    let server = proxies::stunnel_https_proxy();
    let proxy_ca = server.ca_pem().expect("stunnel CA");
    let px = server.proxy_url();
    curl_ok(
        &server,
        &[
            "-x",
            &px,
            "--proxy-cacert",
            path_str(&proxy_ca),
            &http.url("/"),
        ],
    );
    curl_ok(
        &server,
        &[
            "-x",
            &px,
            "--proxy-cacert",
            path_str(&proxy_ca),
            "--cacert",
            path_str(&https.ca_pem()),
            &https.url("/"),
        ],
    );
    // Without trusting the proxy's CA, TLS to the proxy fails.
    assert_eq!(curl_code(&["-x", &px, &http.url("/")]), "000");
}

// ---------------------------------------------------------------------------
// Squid

#[tokio::test]
async fn squid_http_target_active() {
    let target = ThreadTarget::http();
    let server = proxies::squid(None);
    let proxy = server.proxy(ProxyProtocol::Http, None);
    expect(&server, &proxy, &opts_http(&target, "/"), active()).await;
    assert_eq!(target.requests(), 1);
}

#[tokio::test]
async fn squid_https_target_via_connect_active() {
    let target = ThreadTarget::https();
    let server = proxies::squid(None);
    let proxy = server.proxy(ProxyProtocol::Http, None);
    let res = expect(&server, &proxy, &opts_https(&target, "/"), active()).await;
    assert!(
        res.phases.tls_ms.is_some(),
        "no TLS phase recorded: {res:?}"
    );
    assert_eq!(target.requests(), 1);
}

#[tokio::test]
async fn squid_target_503_is_unexpected_status() {
    let target = ThreadTarget::http();
    let server = proxies::squid(None);
    let proxy = server.proxy(ProxyProtocol::Http, None);
    let want = Want {
        status_code: Some(503),
        ..inactive(Reason::UnexpectedStatus, &[Phase::FirstByte])
    };
    expect(&server, &proxy, &opts_http(&target, "/status/503"), want).await;
}

/// What squid (5.7, Debian bookworm) answers for a destination it cannot
/// reach, through absolute form (`http://`) and CONNECT (`https://`):
/// `proxy_upstream` with squid's own error type, the status it sent, and
/// no credentials anywhere (the auth squid with the right password).
async fn expect_squid_upstream(url: &str, cases: [(Phase, u16, &str); 2]) {
    let server = proxies::squid(Some((SQUID_USER, SQUID_PASS)));
    let proxy = server.proxy(ProxyProtocol::Http, Some((SQUID_USER, SQUID_PASS)));
    for ((phase, code, squid_error), scheme) in cases.into_iter().zip(["http", "https"]) {
        let opts = support::check_options(&format!("{scheme}://{url}"), no_tls(), no_tls());
        let phases: &'static [Phase] = match phase {
            Phase::FirstByte => &[Phase::FirstByte],
            _ => &[Phase::Handshake],
        };
        let want = Want {
            status_code: Some(code),
            ..inactive(Reason::ProxyUpstream, phases)
        };
        let res = expect(&server, &proxy, &opts, want).await;
        let err = res.error.unwrap_or_default();
        assert_eq!(
            err,
            format!("proxy could not reach the target: X-Squid-Error {squid_error} [{code}]"),
            "{scheme}://{url}\n{}",
            server.logs()
        );
        assert!(!err.contains(SQUID_USER), "user name in error: {err}");
    }
}

#[tokio::test]
async fn squid_destination_refused_is_proxy_upstream() {
    let dead = pharox_testkit::refused_port();
    expect_squid_upstream(
        &format!("127.0.0.1:{}/", dead.port()),
        [
            (Phase::FirstByte, 503, "ERR_CONNECT_FAIL 111"),
            (Phase::Handshake, 503, "ERR_CONNECT_FAIL 111"),
        ],
    )
    .await;
}

#[tokio::test]
async fn squid_dns_failure_is_proxy_upstream() {
    // squid resolves through the harness's NXDOMAIN server on loopback:
    // nothing leaves the machine, and the failure is immediate.
    assert!(
        support::dns::nxdomain_server().is_some(),
        "the loopback DNS server needs UDP port 53: run the tests as root"
    );
    // Squid 5.7 loses the DNS error on the way (its log says "Name Error:
    // The domain name does not exist", then "found all 0 destinations")
    // and reports ERR_READ_ERROR for a GET, ERR_CANNOT_FORWARD for a
    // CONNECT; squids that keep it send ERR_DNS_FAIL, and this expectation
    // changes with the packaged squid.
    expect_squid_upstream(
        "nonexistent.invalid/",
        [
            (Phase::FirstByte, 502, "ERR_READ_ERROR 0"),
            (Phase::Handshake, 500, "ERR_CANNOT_FORWARD 0"),
        ],
    )
    .await;
}

#[tokio::test]
async fn squid_auth_right_credentials_active() {
    let http = ThreadTarget::http();
    let https = ThreadTarget::https();
    let server = proxies::squid(Some((SQUID_USER, SQUID_PASS)));
    let proxy = server.proxy(ProxyProtocol::Http, Some((SQUID_USER, SQUID_PASS)));
    expect(&server, &proxy, &opts_http(&http, "/"), active()).await;
    // CONNECT carries Proxy-Authorization too.
    expect(&server, &proxy, &opts_https(&https, "/"), active()).await;
}

#[tokio::test]
async fn squid_auth_wrong_credentials_fail() {
    let target = ThreadTarget::http();
    let server = proxies::squid(Some((SQUID_USER, SQUID_PASS)));
    let proxy = server.proxy(ProxyProtocol::Http, Some((SQUID_USER, WRONG_PASS)));
    let want = inactive(Reason::ProxyAuthFailed, &[Phase::Handshake]);
    expect(&server, &proxy, &opts_http(&target, "/"), want).await;
    assert_eq!(target.requests(), 0);
}

#[tokio::test]
async fn squid_auth_wrong_credentials_fail_on_connect() {
    let target = ThreadTarget::https();
    let server = proxies::squid(Some((SQUID_USER, SQUID_PASS)));
    let proxy = server.proxy(ProxyProtocol::Http, Some((SQUID_USER, WRONG_PASS)));
    let want = inactive(Reason::ProxyAuthFailed, &[Phase::Handshake]);
    expect(&server, &proxy, &opts_https(&target, "/"), want).await;
}

#[tokio::test]
async fn squid_auth_without_credentials_required() {
    let target = ThreadTarget::http();
    let server = proxies::squid(Some((SQUID_USER, SQUID_PASS)));
    let proxy = server.proxy(ProxyProtocol::Http, None);
    let want = inactive(Reason::ProxyAuthRequired, &[Phase::Handshake]);
    expect(&server, &proxy, &opts_http(&target, "/"), want).await;
}

// ---------------------------------------------------------------------------
// Tinyproxy

#[tokio::test]
async fn tinyproxy_http_and_https_targets_active() {
    let http = ThreadTarget::http();
    let https = ThreadTarget::https();
    let server = proxies::tinyproxy();
    let proxy = server.proxy(ProxyProtocol::Http, None);
    expect(&server, &proxy, &opts_http(&http, "/"), active()).await;
    expect(&server, &proxy, &opts_https(&https, "/"), active()).await;
    assert_eq!(http.requests() + https.requests(), 2);
}

// ---------------------------------------------------------------------------
// Dante

#[tokio::test]
async fn dante_socks4_active() {
    let target = ThreadTarget::http();
    let server = proxies::dante();
    let proxy = server.proxy(ProxyProtocol::Socks4, None);
    expect(&server, &proxy, &opts_http(&target, "/"), active()).await;
}

#[tokio::test]
async fn dante_socks5_active_http_and_https() {
    let http = ThreadTarget::http();
    let https = ThreadTarget::https();
    let server = proxies::dante();
    let proxy = server.proxy(ProxyProtocol::Socks5, None);
    expect(&server, &proxy, &opts_http(&http, "/"), active()).await;
    expect(&server, &proxy, &opts_https(&https, "/"), active()).await;
}

#[tokio::test]
async fn dante_socks5h_remote_resolution_active() {
    let target = ThreadTarget::http();
    let server = proxies::dante();
    let proxy = server.proxy(ProxyProtocol::Socks5h, None);
    let opts = support::check_options(&target.url_localhost("/"), no_tls(), no_tls());
    expect(&server, &proxy, &opts, active()).await;
}

#[tokio::test]
async fn tinyproxy_destination_refused_is_proxy_upstream() {
    let dead = pharox_testkit::refused_port();
    let server = proxies::tinyproxy();
    let proxy = server.proxy(ProxyProtocol::Http, None);
    for (scheme, phase) in [("http", Phase::FirstByte), ("https", Phase::Handshake)] {
        let url = format!("{scheme}://127.0.0.1:{}/", dead.port());
        let opts = support::check_options(&url, no_tls(), no_tls());
        let phases: &'static [Phase] = match phase {
            Phase::FirstByte => &[Phase::FirstByte],
            _ => &[Phase::Handshake],
        };
        let want = Want {
            status_code: Some(500),
            ..inactive(Reason::ProxyUpstream, phases)
        };
        let res = expect(&server, &proxy, &opts, want).await;
        assert_eq!(
            res.error.as_deref(),
            Some("proxy could not reach the target: tinyproxy Unable to connect [500]"),
            "{url}"
        );
    }
}

/// An `http://` proxy URL that points at a SOCKS5 server: microsocks
/// answers our request line with a SOCKS5 method reply, where an HTTP
/// answer belongs. (Dante closes without a byte: `connection_reset`, as
/// any silent close.)
#[tokio::test]
async fn http_proxy_url_on_a_socks5_server_is_proxy_protocol() {
    let target = ThreadTarget::http();
    let server = proxies::microsocks(None);
    let proxy = server.proxy(ProxyProtocol::Http, None);
    let res = expect(
        &server,
        &proxy,
        &opts_http(&target, "/"),
        inactive(Reason::ProxyProtocol, &[Phase::FirstByte]),
    )
    .await;
    assert_eq!(
        res.error.as_deref(),
        Some("proxy answered with something that is not HTTP (first byte 0x05: a SOCKS5 proxy?)")
    );
    assert_eq!(res.status_code, None);
    assert_eq!(target.requests(), 0);
}

/// Dante implements SOCKS4 but not the 4a hostname extension: it reads the
/// 0.0.0.x placeholder as an address and rejects the request (code 91).
#[tokio::test]
async fn dante_socks4a_is_refused_by_the_proxy() {
    let target = ThreadTarget::http();
    let server = proxies::dante();
    let proxy = server.proxy(ProxyProtocol::Socks4a, None);
    let opts = support::check_options(&target.url_localhost("/"), no_tls(), no_tls());
    expect(
        &server,
        &proxy,
        &opts,
        inactive(Reason::ProxyRefused, &[Phase::Handshake]),
    )
    .await;
}

#[tokio::test]
async fn dante_username_auth_right_and_wrong() {
    let target = ThreadTarget::http();
    let server = proxies::dante_auth();
    let (user, pass) = server.credentials().expect("dante creds");
    let good = server.proxy(ProxyProtocol::Socks5, Some((user, pass)));
    expect(&server, &good, &opts_http(&target, "/"), active()).await;
    let bad = server.proxy(ProxyProtocol::Socks5, Some((user, WRONG_PASS)));
    let want = inactive(Reason::ProxyAuthFailed, &[Phase::Handshake]);
    expect(&server, &bad, &opts_http(&target, "/"), want).await;
    let none = server.proxy(ProxyProtocol::Socks5, None);
    let want = inactive(Reason::ProxyAuthRequired, &[Phase::Handshake]);
    expect(&server, &none, &opts_http(&target, "/"), want).await;
    assert_eq!(target.requests(), 1);
}

// ---------------------------------------------------------------------------
// OpenSSH dynamic forwarding: the SOCKS4a server

#[tokio::test]
async fn ssh_socks4a_and_socks4_active() {
    let target = ThreadTarget::http();
    let server = proxies::ssh_socks();
    let p4a = server.proxy(ProxyProtocol::Socks4a, None);
    let opts = support::check_options(&target.url_localhost("/"), no_tls(), no_tls());
    expect(&server, &p4a, &opts, active()).await;
    let p4 = server.proxy(ProxyProtocol::Socks4, None);
    expect(&server, &p4, &opts_http(&target, "/"), active()).await;
}

#[tokio::test]
async fn ssh_socks5h_https_target_active() {
    let target = ThreadTarget::https();
    let server = proxies::ssh_socks();
    let proxy = server.proxy(ProxyProtocol::Socks5h, None);
    let opts = support::check_options(
        &target.url_localhost("/"),
        support::probe_tls(&target.ca_pem()),
        no_tls(),
    );
    expect(&server, &proxy, &opts, active()).await;
}

// ---------------------------------------------------------------------------
// microsocks

#[tokio::test]
async fn microsocks_no_auth_active() {
    let http = ThreadTarget::http();
    let https = ThreadTarget::https();
    let server = proxies::microsocks(None);
    expect(
        &server,
        &server.proxy(ProxyProtocol::Socks5, None),
        &opts_http(&http, "/"),
        active(),
    )
    .await;
    let opts = support::check_options(
        &https.url_localhost("/"),
        support::probe_tls(&https.ca_pem()),
        no_tls(),
    );
    expect(
        &server,
        &server.proxy(ProxyProtocol::Socks5h, None),
        &opts,
        active(),
    )
    .await;
}

#[tokio::test]
async fn microsocks_auth_right_credentials_active() {
    let target = ThreadTarget::http();
    let server = proxies::microsocks(Some((MS_USER, MS_PASS)));
    let proxy = server.proxy(ProxyProtocol::Socks5, Some((MS_USER, MS_PASS)));
    expect(&server, &proxy, &opts_http(&target, "/"), active()).await;
}

#[tokio::test]
async fn microsocks_auth_wrong_credentials_fail() {
    let target = ThreadTarget::http();
    let server = proxies::microsocks(Some((MS_USER, MS_PASS)));
    let proxy = server.proxy(ProxyProtocol::Socks5, Some((MS_USER, WRONG_PASS)));
    let want = inactive(Reason::ProxyAuthFailed, &[Phase::Handshake]);
    expect(&server, &proxy, &opts_http(&target, "/"), want).await;
    assert_eq!(target.requests(), 0);
}

#[tokio::test]
async fn microsocks_auth_without_credentials_required() {
    let target = ThreadTarget::http();
    let server = proxies::microsocks(Some((MS_USER, MS_PASS)));
    let proxy = server.proxy(ProxyProtocol::Socks5, None);
    let want = inactive(Reason::ProxyAuthRequired, &[Phase::Handshake]);
    expect(&server, &proxy, &opts_http(&target, "/"), want).await;
}

// ---------------------------------------------------------------------------
// stunnel: an HTTPS proxy (TLS to the proxy)

#[tokio::test]
async fn stunnel_https_proxy_active_for_http_and_https_targets() {
    let http = ThreadTarget::http();
    let https = ThreadTarget::https();
    let server = proxies::stunnel_https_proxy();
    let proxy_ca = server.ca_pem().expect("stunnel CA");
    let proxy = server.proxy(ProxyProtocol::Https, None);
    let proxy_tls = support::probe_tls(&proxy_ca);

    let opts = support::check_options(&http.url("/"), no_tls(), proxy_tls.clone());
    let res = expect(&server, &proxy, &opts, active()).await;
    assert!(
        res.phases.proxy_tls_ms.is_some(),
        "no proxy_tls phase: {res:?}"
    );

    let opts = support::check_options(
        &https.url("/"),
        support::probe_tls(&https.ca_pem()),
        proxy_tls,
    );
    let res = expect(&server, &proxy, &opts, active()).await;
    assert!(
        res.phases.proxy_tls_ms.is_some() && res.phases.tls_ms.is_some(),
        "{res:?}"
    );
    assert_eq!(http.requests() + https.requests(), 2);
}

#[tokio::test]
async fn stunnel_https_proxy_untrusted_certificate_is_tls_failure() {
    let target = ThreadTarget::http();
    let server = proxies::stunnel_https_proxy();
    let proxy = server.proxy(ProxyProtocol::Https, None);
    // Trust some other CA, not the proxy's.
    let other = ThreadTarget::https();
    let opts = support::check_options(
        &target.url("/"),
        no_tls(),
        support::probe_tls(&other.ca_pem()),
    );
    expect(
        &server,
        &proxy,
        &opts,
        inactive(Reason::Tls, &[Phase::ProxyTls]),
    )
    .await;
}

// ---------------------------------------------------------------------------
// Failure modes and secrecy

#[tokio::test]
async fn stopped_proxy_is_connect_refused() {
    let target = ThreadTarget::http();
    let mut server = proxies::microsocks(None);
    let proxy = server.proxy(ProxyProtocol::Socks5, None);
    expect(&server, &proxy, &opts_http(&target, "/"), active()).await;
    server.stop();
    let want = inactive(Reason::ConnectRefused, &[Phase::Connect]);
    expect(&server, &proxy, &opts_http(&target, "/"), want).await;
}

#[tokio::test]
async fn credentials_never_in_error_text() {
    let target = ThreadTarget::http();
    let squid = proxies::squid(Some((SQUID_USER, SQUID_PASS)));
    let ms = proxies::microsocks(Some((MS_USER, MS_PASS)));
    let cases = [
        squid.proxy(ProxyProtocol::Http, Some((SQUID_USER, WRONG_PASS))),
        ms.proxy(ProxyProtocol::Socks5, Some((MS_USER, WRONG_PASS))),
    ];
    for (server, proxy) in [&squid, &ms].into_iter().zip(cases.iter()) {
        let res = check(proxy, &opts_http(&target, "/")).await;
        assert_eq!(
            res.status,
            ProxyStatus::Inactive,
            "{res:?}\n{}",
            server.logs()
        );
        let err = res.error.as_deref().unwrap_or_default();
        assert!(!err.is_empty(), "failed check without error text: {res:?}");
        assert!(
            !err.contains(WRONG_PASS),
            "password leaked into error: {err}"
        );
        assert_no_password(proxy, &res);
    }
    // A correct password must not leak either, even when the target fails.
    let proxy = squid.proxy(ProxyProtocol::Http, Some((SQUID_USER, SQUID_PASS)));
    let res = check(&proxy, &opts_http(&target, "/status/503")).await;
    assert_eq!(res.reason, Some(Reason::UnexpectedStatus), "{res:?}");
    assert_no_password(&proxy, &res);
}
