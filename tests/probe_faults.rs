//! The prober against in-process fakes: every protocol, healthy and broken
//! in each way we classify, asserting status, reason and phase exactly.
//!
//! A test binary of its own, beside tests/it: with the library's unit tests
//! these are the fast tests that mutation testing (scripts/mutants.sh) runs
//! on every mutant, so each mutant rebuilds this small binary only.

// One test lowers its own (child) process's descriptor limit (libc call).
#![allow(unsafe_code)]

use std::time::Duration;

use pharox_exporter::{check, client_config, CheckOptions, TlsConfigError, USER_AGENT};
use pharox_exporter::{CheckResult, Phase, Proxy, ProxyProtocol, ProxyStatus, Reason};
use pharox_testkit::{
    hang, pki, proxy_errors, refused_port, BodyMode, FakeProxy, FakeServer, FakeTarget, Fault,
    ProxyBehavior, Reply, ScriptedPeer, Step,
};
use url::Url;

/// Generous enough for success paths on a loaded 2-core machine.
const OK_TIMEOUT: Duration = Duration::from_millis(3000);
/// For checks that are meant to time out: short, so the suite is quick.
const HANG_TIMEOUT: Duration = Duration::from_millis(400);

const PASSWORD: &str = "s3cr3t-Pa55";

fn opts(url: Url) -> CheckOptions {
    let mut o = CheckOptions::new(url).expect("options");
    o.timeout = OK_TIMEOUT;
    o.target_tls = pki::client_config();
    o.proxy_tls = pki::client_config();
    o
}

fn hang_opts(url: Url) -> CheckOptions {
    let mut o = opts(url);
    o.timeout = HANG_TIMEOUT;
    o
}

#[track_caller]
fn assert_up(r: &CheckResult) {
    assert!(
        r.status == ProxyStatus::Active,
        "expected ACTIVE, got {r:#?}"
    );
    assert_eq!(r.reason, None);
    assert_eq!(r.error, None);
    assert_eq!(r.status_code, Some(200));
    assert!(r.phases.total_ms.is_some());
}

#[track_caller]
fn assert_fail(r: &CheckResult, reason: Reason, phase: Phase) {
    assert_eq!(r.status, ProxyStatus::Inactive, "{r:#?}");
    assert_eq!(r.reason, Some(reason), "{r:#?}");
    assert_eq!(r.phase, Some(phase), "{r:#?}");
    let err = r.error.as_deref().unwrap_or("");
    assert!(!err.is_empty(), "{r:#?}");
    assert!(!err.contains(PASSWORD), "password leaked: {err}");
}

async fn ok_target() -> FakeTarget {
    FakeTarget::start(Reply::ok("hello from target"))
        .await
        .unwrap()
}

async fn tls_target() -> FakeTarget {
    FakeTarget::builder(Reply::ok("hello over tls"))
        .tls()
        .start()
        .await
        .unwrap()
}

/// The exporter's [`Proxy`] for a fake (the testkit knows only URLs):
/// `protocol` picks the variant of the fake's kind, `None` the plain one.
trait AsProxy {
    fn proxy(&self, protocol: Option<ProxyProtocol>) -> Proxy;
    fn proxy_with_auth(&self, protocol: Option<ProxyProtocol>, user: &str, pass: &str) -> Proxy;
}

impl AsProxy for FakeProxy {
    fn proxy(&self, protocol: Option<ProxyProtocol>) -> Proxy {
        let protocol = protocol.unwrap_or_else(|| {
            self.scheme()
                .parse()
                .expect("a fake's scheme is a proxy protocol")
        });
        Proxy::new(protocol, "127.0.0.1", self.addr().port())
    }

    fn proxy_with_auth(&self, protocol: Option<ProxyProtocol>, user: &str, pass: &str) -> Proxy {
        let mut p = self.proxy(protocol);
        p.username = Some(user.into());
        p.password = Some(pass.into());
        p
    }
}

// ------------------------------------------------------------ healthy paths

#[tokio::test]
async fn http_proxy_forwards_http_target_in_absolute_form() {
    let target = ok_target().await;
    let proxy = FakeProxy::http(ProxyBehavior::healthy()).await.unwrap();
    let mut o = opts(target.url("/ip?x=1"));
    o.headers = vec![("X-Probe".into(), "yes".into())];
    let r = check(&proxy.proxy(None), &o).await;
    assert_up(&r);
    assert_eq!(r.attempts, 1);
    assert!(r.phases.connect_ms.is_some() && r.phases.first_byte_ms.is_some());
    assert_eq!(
        r.phases.handshake_ms, None,
        "absolute form has no handshake"
    );
    assert_eq!(r.phases.tls_ms, None);
    assert_eq!(proxy.seen()[0].destination, target.url("/ip?x=1").as_str());
    let req = &target.requests()[0];
    assert_eq!(req.target, "/ip?x=1");
    assert_eq!(req.header("x-probe"), Some("yes"));
    assert_eq!(req.header("user-agent"), Some(USER_AGENT));
    assert_eq!(req.header("connection"), Some("close"));
    assert_eq!(req.header("proxy-authorization"), None);
}

#[tokio::test]
async fn http_proxy_tunnels_https_target_with_connect() {
    let target = tls_target().await;
    let proxy = FakeProxy::http(ProxyBehavior::healthy()).await.unwrap();
    let r = check(&proxy.proxy(None), &opts(target.url("/"))).await;
    assert_up(&r);
    assert!(r.phases.handshake_ms.is_some() && r.phases.tls_ms.is_some());
    assert_eq!(proxy.seen()[0].destination, target.addr().to_string());
}

#[tokio::test]
async fn https_proxy_for_http_and_https_targets() {
    let proxy = FakeProxy::http(ProxyBehavior {
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let p = proxy.proxy(None);
    assert_eq!(p.protocol, ProxyProtocol::Https);
    let plain = ok_target().await;
    let r = check(&p, &opts(plain.url("/"))).await;
    assert_up(&r);
    assert!(r.phases.proxy_tls_ms.is_some());
    let secure = tls_target().await;
    let r = check(&p, &opts(secure.url("/"))).await;
    assert_up(&r);
    assert!(r.phases.proxy_tls_ms.is_some() && r.phases.tls_ms.is_some());
}

#[tokio::test]
async fn socks4_resolves_locally_and_socks4a_sends_the_name() {
    let target = ok_target().await;
    let proxy = FakeProxy::socks4(ProxyBehavior::healthy()).await.unwrap();
    let r = check(&proxy.proxy(None), &opts(target.url_by_name("/"))).await;
    assert_up(&r);
    assert!(r.phases.handshake_ms.is_some());
    let r = check(
        &proxy.proxy(Some(ProxyProtocol::Socks4a)),
        &opts(target.url_by_name("/")),
    )
    .await;
    assert_up(&r);
    let seen = proxy.seen();
    let port = target.addr().port();
    assert_eq!(seen[0].destination, format!("127.0.0.1:{port}"));
    assert_eq!(seen[1].destination, format!("localhost:{port}"));
}

#[tokio::test]
async fn socks5_resolves_locally_and_socks5h_sends_the_name() {
    let target = ok_target().await;
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let r = check(&proxy.proxy(None), &opts(target.url_by_name("/"))).await;
    assert_up(&r);
    let r = check(
        &proxy.proxy(Some(ProxyProtocol::Socks5h)),
        &opts(target.url_by_name("/")),
    )
    .await;
    assert_up(&r);
    let seen = proxy.seen();
    let port = target.addr().port();
    assert_eq!(seen[0].destination, format!("127.0.0.1:{port}"));
    assert_eq!(seen[1].destination, format!("localhost:{port}"));
}

#[tokio::test]
async fn socks5_to_https_target() {
    let target = tls_target().await;
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let r = check(&proxy.proxy(None), &opts(target.url_by_name("/"))).await;
    assert_up(&r);
    assert!(r.phases.tls_ms.is_some());
}

#[tokio::test]
async fn credentials_are_used_for_every_protocol() {
    let target = ok_target().await;
    let tls = tls_target().await;
    let behavior = ProxyBehavior::healthy().with_auth("alice", PASSWORD);
    let http = FakeProxy::http(behavior.clone()).await.unwrap();
    let s5 = FakeProxy::socks5(behavior.clone()).await.unwrap();
    let s4 = FakeProxy::socks4(behavior).await.unwrap();
    for (proxy, url) in [
        (
            http.proxy_with_auth(None, "alice", PASSWORD),
            target.url("/"),
        ),
        (http.proxy_with_auth(None, "alice", PASSWORD), tls.url("/")),
        (s5.proxy_with_auth(None, "alice", PASSWORD), target.url("/")),
        (s4.proxy_with_auth(None, "alice", ""), target.url("/")),
    ] {
        let r = check(&proxy, &opts(url)).await;
        assert_up(&r);
    }
    assert_eq!(http.seen()[0].user.as_deref(), Some("alice"));
    assert_eq!(s5.seen()[0].user.as_deref(), Some("alice"));
    assert_eq!(s4.seen()[0].user.as_deref(), Some("alice"));
    // The target never sees proxy credentials.
    assert!(target
        .requests()
        .iter()
        .all(|r| r.header("proxy-authorization").is_none()));
}

#[tokio::test]
async fn chunked_and_until_close_bodies_are_decoded() {
    let body = "x".repeat(5000) + "NEEDLE";
    let target = FakeTarget::builder(Reply::ok("unused"))
        .route(
            "/chunked",
            vec![Reply::ok(body.clone()).mode(BodyMode::Chunked(700))],
        )
        .route(
            "/close",
            vec![Reply::ok(body.clone()).mode(BodyMode::UntilClose)],
        )
        .start()
        .await
        .unwrap();
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let re = regex::Regex::new("^x+NEEDLE$").unwrap();
    for path in ["/chunked", "/close"] {
        let mut o = opts(target.url(path));
        o.body_regex = Some(re.clone());
        let r = check(&proxy.proxy(None), &o).await;
        assert_up(&r);
    }
}

// ------------------------------------------------------------ reaching the proxy

#[tokio::test]
async fn refused_port_is_connect_refused_for_every_protocol() {
    let target = ok_target().await;
    let dead = refused_port();
    for protocol in ProxyProtocol::ALL {
        let proxy = Proxy::new(protocol, "127.0.0.1", dead.port());
        let r = check(&proxy, &opts(target.url("/"))).await;
        assert_fail(&r, Reason::ConnectRefused, Phase::Connect);
        assert_eq!(r.latency_ms, OK_TIMEOUT.as_millis() as u64);
    }
}

#[tokio::test]
async fn unresolvable_proxy_host_is_dns() {
    let target = ok_target().await;
    let proxy = Proxy::new(ProxyProtocol::Socks5, "no-such-proxy.invalid", 1080);
    let r = check(&proxy, &opts(target.url("/"))).await;
    assert_fail(&r, Reason::Dns, Phase::Connect);
}

#[tokio::test]
async fn unresolvable_target_is_dns_for_local_resolving_socks() {
    let proxy4 = FakeProxy::socks4(ProxyBehavior::healthy()).await.unwrap();
    let proxy5 = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let url = Url::parse("http://no-such-target.invalid/").unwrap();
    let r = check(&proxy4.proxy(None), &opts(url.clone())).await;
    assert_fail(&r, Reason::Dns, Phase::Handshake);
    let r = check(&proxy5.proxy(None), &opts(url.clone())).await;
    assert_fail(&r, Reason::Dns, Phase::Handshake);
    // socks5h leaves resolution to the proxy, which reports it as a refusal.
    let r = check(&proxy5.proxy(Some(ProxyProtocol::Socks5h)), &opts(url)).await;
    assert_fail(&r, Reason::ProxyRefused, Phase::Handshake);
}

// ------------------------------------------------------------ proxy faults

/// (fake, protocol to check it as, https target?) for every handshake we speak.
async fn faulty(fault: Fault) -> Vec<(FakeProxy, ProxyProtocol)> {
    let b = ProxyBehavior::fault(fault);
    vec![
        (
            FakeProxy::http(b.clone()).await.unwrap(),
            ProxyProtocol::Http,
        ),
        (
            FakeProxy::http(ProxyBehavior {
                tls: true,
                ..b.clone()
            })
            .await
            .unwrap(),
            ProxyProtocol::Https,
        ),
        (
            FakeProxy::socks4(b.clone()).await.unwrap(),
            ProxyProtocol::Socks4,
        ),
        (
            FakeProxy::socks4(b.clone()).await.unwrap(),
            ProxyProtocol::Socks4a,
        ),
        (
            FakeProxy::socks5(b.clone()).await.unwrap(),
            ProxyProtocol::Socks5,
        ),
        (FakeProxy::socks5(b).await.unwrap(), ProxyProtocol::Socks5h),
    ]
}

#[tokio::test]
async fn hanging_proxy_times_out_in_handshake() {
    // An https target makes HTTP proxies CONNECT, so every protocol has a handshake.
    let target = tls_target().await;
    for (fake, protocol) in faulty(Fault::Hang).await {
        let r = check(&fake.proxy(Some(protocol)), &hang_opts(target.url("/"))).await;
        assert_fail(&r, Reason::Timeout, Phase::Handshake);
        assert_eq!(r.latency_ms, HANG_TIMEOUT.as_millis() as u64);
        assert!(r.error.unwrap().contains("handshake"));
    }
}

#[tokio::test]
async fn hanging_http_proxy_in_absolute_form_times_out_waiting_for_first_byte() {
    let target = ok_target().await;
    let fake = FakeProxy::http(ProxyBehavior::fault(Fault::Hang))
        .await
        .unwrap();
    let r = check(&fake.proxy(None), &hang_opts(target.url("/"))).await;
    assert_fail(&r, Reason::Timeout, Phase::FirstByte);
}

#[tokio::test]
async fn reset_mid_handshake_is_connection_reset() {
    let target = tls_target().await;
    for (fake, protocol) in faulty(Fault::ResetMidHandshake).await {
        let r = check(&fake.proxy(Some(protocol)), &opts(target.url("/"))).await;
        assert_fail(&r, Reason::ConnectionReset, Phase::Handshake);
    }
    let plain = ok_target().await;
    let fake = FakeProxy::http(ProxyBehavior::fault(Fault::ResetMidHandshake))
        .await
        .unwrap();
    let r = check(&fake.proxy(None), &opts(plain.url("/"))).await;
    assert_fail(&r, Reason::ConnectionReset, Phase::FirstByte);
}

#[tokio::test]
async fn garbage_reply_is_proxy_protocol() {
    let target = tls_target().await;
    for (fake, protocol) in faulty(Fault::Garbage).await {
        let r = check(&fake.proxy(Some(protocol)), &opts(target.url("/"))).await;
        assert_fail(&r, Reason::ProxyProtocol, Phase::Handshake);
    }
    // In absolute form the garbage stands where the proxy's HTTP answer
    // belongs: the proxy does not speak HTTP, known at the first byte.
    let plain = ok_target().await;
    let fake = FakeProxy::http(ProxyBehavior::fault(Fault::Garbage))
        .await
        .unwrap();
    let r = check(&fake.proxy(None), &opts(plain.url("/"))).await;
    assert_fail(&r, Reason::ProxyProtocol, Phase::FirstByte);
    assert_eq!(
        r.error.as_deref(),
        Some("proxy answered with something that is not HTTP (first byte 0x16: TLS, an https:// proxy?)")
    );
    assert_eq!(r.status_code, None);
}

#[tokio::test]
async fn wrong_version_is_proxy_protocol() {
    let target = tls_target().await;
    for (fake, protocol) in faulty(Fault::WrongVersion).await {
        let r = check(&fake.proxy(Some(protocol)), &opts(target.url("/"))).await;
        assert_fail(&r, Reason::ProxyProtocol, Phase::Handshake);
        if protocol.is_socks() {
            assert!(r.error.unwrap().contains("version"));
        }
    }
}

#[tokio::test]
async fn denied_destination_is_proxy_refused() {
    let target = tls_target().await;
    for (fake, protocol) in faulty(Fault::DenyDestination).await {
        let r = check(&fake.proxy(Some(protocol)), &opts(target.url("/"))).await;
        assert_fail(&r, Reason::ProxyRefused, Phase::Handshake);
        // A rejected CONNECT keeps its status; SOCKS replies have none.
        let code = (!protocol.is_socks()).then_some(403);
        assert_eq!(r.status_code, code, "{protocol:?}");
        // One attempt, one connection: only a descriptor shortage is retried.
        assert_eq!(fake.connections(), 1, "{protocol}");
    }
}

/// A check that finds no file descriptor waits and retries (50, 100,
/// 150 ms) before it gives up as `local_resources`; descriptors back during
/// a wait, the retry succeeds. The limit is process-wide, so this runs in a
/// child process of this test binary (see fd_exhaustion.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_shortage_is_retried_with_growing_waits() {
    const CHILD: &str = "PHAROX_FD_RETRY_CHILD";
    const NAME: &str = "descriptor_shortage_is_retried_with_growing_waits";
    if !pharox_testkit::in_child_process(CHILD, NAME) {
        return;
    }
    let target = ok_target().await;
    let fake = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let proxy = fake.proxy(None);
    let o = opts(target.url("/"));
    let open = std::fs::read_dir("/proc/self/fd").expect("fds").count() as u64;
    let low = libc::rlimit {
        rlim_cur: (open + 16) as libc::rlim_t,
        rlim_max: (open + 4096) as libc::rlim_t,
    };
    // SAFETY: setrlimit on this (child) process only reads the struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let fill = || {
        let mut held = Vec::new();
        while let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") {
            held.push(s);
        }
        held
    };
    // Short for good: three retries, then local_resources, after all three waits.
    let held = fill();
    let r = check(&proxy, &o).await;
    assert_eq!(r.reason, Some(Reason::LocalResources), "{r:?}");
    assert!(r.elapsed_ms >= 300, "waited 50 + 100 + 150 ms: {r:?}");
    assert_eq!(fake.connections(), 0);
    // Short for a moment: descriptors come back during the first wait.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let releaser = std::thread::spawn(move || {
        let _ = rx.recv();
        std::thread::sleep(Duration::from_millis(10));
        drop(held);
    });
    let _ = tx.send(());
    let r = check(&proxy, &o).await;
    releaser.join().expect("releaser");
    assert_up(&r);
    assert_eq!(
        r.attempts, 1,
        "a retry for descriptors is not another attempt"
    );
}

#[tokio::test]
async fn unreachable_destination_is_proxy_refused_with_the_code_meaning() {
    let dead = refused_port();
    let url = Url::parse(&format!("https://127.0.0.1:{}/", dead.port())).unwrap();
    let http = FakeProxy::http(ProxyBehavior::healthy()).await.unwrap();
    let s4 = FakeProxy::socks4(ProxyBehavior::healthy()).await.unwrap();
    let s5 = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let r = check(&http.proxy(None), &opts(url.clone())).await;
    assert_fail(&r, Reason::ProxyRefused, Phase::Handshake);
    assert_eq!(r.status_code, Some(502));
    assert!(r.error.unwrap().contains("502"));
    let r = check(&s4.proxy(None), &opts(url.clone())).await;
    assert_fail(&r, Reason::ProxyRefused, Phase::Handshake);
    assert!(r.error.unwrap().contains("SOCKS4 reply 0x5B"));
    let r = check(&s5.proxy(None), &opts(url)).await;
    assert_fail(&r, Reason::ProxyRefused, Phase::Handshake);
    assert_eq!(
        r.error.as_deref(),
        Some("SOCKS5 reply 0x05 connection refused")
    );
}

#[tokio::test]
async fn missing_credentials_are_proxy_auth_required() {
    let plain = ok_target().await;
    let secure = tls_target().await;
    let b = ProxyBehavior::healthy().with_auth("alice", PASSWORD);
    let http = FakeProxy::http(b.clone()).await.unwrap();
    let s5 = FakeProxy::socks5(b).await.unwrap();
    for (proxy, url) in [
        (http.proxy(None), plain.url("/")),
        (http.proxy(None), secure.url("/")),
        (s5.proxy(None), plain.url("/")),
    ] {
        let r = check(&proxy, &opts(url)).await;
        assert_fail(&r, Reason::ProxyAuthRequired, Phase::Handshake);
    }
}

#[tokio::test]
async fn wrong_credentials_are_proxy_auth_failed_and_never_printed() {
    let plain = ok_target().await;
    let secure = tls_target().await;
    let b = ProxyBehavior::healthy().with_auth("alice", "the-right-one");
    let http = FakeProxy::http(b.clone()).await.unwrap();
    let s5 = FakeProxy::socks5(b.clone()).await.unwrap();
    let s4 = FakeProxy::socks4(b).await.unwrap();
    for (proxy, url) in [
        (
            http.proxy_with_auth(None, "alice", PASSWORD),
            plain.url("/"),
        ),
        (
            http.proxy_with_auth(None, "alice", PASSWORD),
            secure.url("/"),
        ),
        (s5.proxy_with_auth(None, "alice", PASSWORD), plain.url("/")),
    ] {
        let r = check(&proxy, &opts(url)).await;
        assert_fail(&r, Reason::ProxyAuthFailed, Phase::Handshake);
        let err = r.error.unwrap();
        assert!(err.contains("alice:***@127.0.0.1"), "{err}");
        let json = serde_json::to_string(&r.phases).unwrap();
        assert!(!json.contains(PASSWORD));
    }
    // SOCKS4 has no passwords; a wrong user id is a refusal (0x5D).
    let r = check(
        &s4.proxy_with_auth(None, "mallory", PASSWORD),
        &opts(plain.url("/")),
    )
    .await;
    assert_fail(&r, Reason::ProxyRefused, Phase::Handshake);
    assert!(r.error.unwrap().contains("0x5D"));
}

#[tokio::test]
async fn socks5_accepting_no_offered_method() {
    let plain = ok_target().await;
    let s5 = FakeProxy::socks5(ProxyBehavior::fault(Fault::RejectMethods))
        .await
        .unwrap();
    let r = check(&s5.proxy(None), &opts(plain.url("/"))).await;
    assert_fail(&r, Reason::ProxyAuthRequired, Phase::Handshake);
    let r = check(
        &s5.proxy_with_auth(None, "bob", PASSWORD),
        &opts(plain.url("/")),
    )
    .await;
    assert_fail(&r, Reason::ProxyAuthFailed, Phase::Handshake);
    // A no-auth proxy picks 0x00 even when we offer credentials.
    let open = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let r = check(
        &open.proxy_with_auth(None, "bob", PASSWORD),
        &opts(plain.url("/")),
    )
    .await;
    assert_up(&r);
}

#[tokio::test]
async fn slow_proxy_is_slow() {
    let target = ok_target().await;
    let fake = FakeProxy::socks5(ProxyBehavior {
        delay: Duration::from_millis(150),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut o = opts(target.url("/"));
    o.slow_threshold = Duration::from_millis(100);
    let r = check(&fake.proxy(None), &o).await;
    assert_eq!(r.status, ProxyStatus::Slow, "{r:#?}");
    assert!(r.latency_ms >= 300, "two delayed answers: {r:#?}");
    assert_eq!(r.reason, None);
    // The same proxy within a generous threshold is ACTIVE.
    o.slow_threshold = Duration::from_millis(2500);
    assert_up(&check(&fake.proxy(None), &o).await);
}

// ------------------------------------------------------------ replies from the wild

/// A proxy of `protocol` at a scripted peer, checked against an https
/// target (so HTTP proxies CONNECT) that is never reached.
async fn check_scripted(
    script: Vec<Step>,
    protocol: ProxyProtocol,
    creds: Option<(&str, &str)>,
) -> (CheckResult, ScriptedPeer) {
    let peer = ScriptedPeer::start(script).await.unwrap();
    let mut proxy = Proxy::new(protocol, "127.0.0.1", peer.addr().port());
    if let Some((u, p)) = creds {
        proxy.username = Some(u.into());
        proxy.password = Some(p.into());
    }
    let r = check(&proxy, &opts(Url::parse("https://127.0.0.1:9/").unwrap())).await;
    (r, peer)
}

#[tokio::test]
async fn truncated_socks_replies_are_connection_reset() {
    // SOCKS4: 4 of the 8 reply bytes, then FIN.
    let (r, _) = check_scripted(
        vec![Step::Read(9), Step::write([0x00, 0x5A, 0, 0])],
        ProxyProtocol::Socks4,
        None,
    )
    .await;
    assert_fail(&r, Reason::ConnectionReset, Phase::Handshake);
    assert!(r.error.unwrap().contains("SOCKS4 reply"));
    // SOCKS5: the method chosen, then a CONNECT reply cut inside the address.
    let (r, _) = check_scripted(
        vec![
            Step::Read(3),
            Step::write([0x05, 0x00]),
            Step::Read(10),
            Step::write([0x05, 0x00, 0x00, 0x01, 127]),
        ],
        ProxyProtocol::Socks5,
        None,
    )
    .await;
    assert_fail(&r, Reason::ConnectionReset, Phase::Handshake);
    assert!(r.error.unwrap().contains("SOCKS5 reply"));
}

#[tokio::test]
async fn bad_version_in_socks5_auth_reply_is_proxy_protocol() {
    let (r, peer) = check_scripted(
        vec![
            Step::Read(4),
            Step::write([0x05, 0x02]),
            Step::Read(3 + "alice".len() + PASSWORD.len()),
            Step::write([0x02, 0x00]),
        ],
        ProxyProtocol::Socks5,
        Some(("alice", PASSWORD)),
    )
    .await;
    assert_fail(&r, Reason::ProxyProtocol, Phase::Handshake);
    assert!(r
        .error
        .unwrap()
        .contains("authentication reply has version 0x02"));
    // The proxy did get the credentials, as RFC 1929 frames them.
    let mut want = b"\x05\x02\x00\x02\x01\x05alice".to_vec();
    want.push(PASSWORD.len() as u8);
    want.extend_from_slice(PASSWORD.as_bytes());
    assert_eq!(peer.received()[0], want);
}

#[tokio::test]
async fn socks5h_host_name_over_255_bytes_is_dns_and_never_sent() {
    let name = vec!["a".repeat(50); 6].join(".");
    assert!(name.len() > 255);
    let peer = ScriptedPeer::start(vec![Step::Read(3), Step::write([0x05, 0x00]), Step::Hang])
        .await
        .unwrap();
    let proxy = Proxy::new(ProxyProtocol::Socks5h, "127.0.0.1", peer.addr().port());
    let url = Url::parse(&format!("http://{name}/")).unwrap();
    let r = check(&proxy, &opts(url)).await;
    assert_fail(&r, Reason::Dns, Phase::Handshake);
    assert!(r.error.unwrap().contains("longer than 255 bytes"));
    assert!(
        peer.received().concat().is_empty(),
        "not even the greeting was sent"
    );
}

#[tokio::test]
async fn data_right_after_a_connect_200_is_proxy_protocol() {
    // A proxy that speaks first in the tunnel (a banner, a stray body):
    // those bytes would be read as the target's TLS answer.
    let (r, _) = check_scripted(
        vec![
            Step::ReadHead,
            Step::write("HTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-OpenSSH_9.2\r\n"),
            Step::Hang,
        ],
        ProxyProtocol::Http,
        None,
    )
    .await;
    assert_fail(&r, Reason::ProxyProtocol, Phase::Handshake);
    assert!(r.error.unwrap().contains("data after its CONNECT response"));
}

#[tokio::test]
async fn connect_answer_past_the_size_limit_is_proxy_protocol() {
    // One header line that never ends (more than 32 header lines would be
    // refused sooner, as not HTTP).
    let mut endless = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    endless.resize(20 * 1024, b'a');
    let (r, _) = check_scripted(
        vec![Step::ReadHead, Step::Write(endless), Step::Hang],
        ProxyProtocol::Http,
        None,
    )
    .await;
    assert_fail(&r, Reason::ProxyProtocol, Phase::Handshake);
    assert!(r.error.unwrap().contains("exceeds 16384 bytes"));
}

#[tokio::test]
async fn control_characters_in_a_proxy_message_never_reach_our_error() {
    // A tab and non-ASCII bytes are legal in a reason phrase (obs-text).
    let (r, _) = check_scripted(
        vec![
            Step::ReadHead,
            Step::write(&b"HTTP/1.1 403 Go\taway\x80\xff now\r\nContent-Length: 0\r\n\r\n"[..]),
        ],
        ProxyProtocol::Http,
        None,
    )
    .await;
    assert_fail(&r, Reason::ProxyRefused, Phase::Handshake);
    let err = r.error.unwrap();
    assert!(err.contains("403"), "{err}");
    assert!(
        err.chars().all(|c| c.is_ascii_graphic() || c == ' '),
        "{err:?}"
    );
}

/// In a tunnel every byte is the target's, so an error answer from the
/// target is decided on its status line: its body is never waited for
/// (only an HTTP proxy's own answer in absolute form is worth a look for a
/// stock error page). Here the body never comes: a check that read it would
/// sit until its deadline and only then report the same status.
#[tokio::test]
async fn a_targets_error_body_in_a_tunnel_is_not_waited_for() {
    let peer = ScriptedPeer::start(vec![
        Step::Read(3),
        Step::write([0x05, 0x00]),
        Step::Read(10),
        Step::write([0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0, 9]),
        Step::ReadHead,
        Step::write("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5000\r\n\r\n<html>"),
        Step::Hang,
    ])
    .await
    .unwrap();
    let proxy = Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", peer.addr().port());
    let mut o = opts(Url::parse("http://127.0.0.1:9/").unwrap());
    o.timeout = Duration::from_secs(10);
    let r = check(&proxy, &o).await;
    assert_fail(&r, Reason::UnexpectedStatus, Phase::FirstByte);
    assert_eq!(r.status_code, Some(503));
    let total = r.phases.total_ms.expect("total");
    assert!(
        total < o.timeout.as_secs_f64() * 1000.0,
        "the check waited for the body until its deadline: {r:#?}"
    );
}

#[tokio::test]
async fn redirect_to_a_non_http_scheme_is_redirect() {
    let target = FakeTarget::builder(Reply::status(404))
        .route(
            "/ftp",
            vec![Reply::redirect(302, "ftp://127.0.0.1/pub/file")],
        )
        .start()
        .await
        .unwrap();
    let proxy = FakeProxy::http(ProxyBehavior::healthy()).await.unwrap();
    let r = check(&proxy.proxy(None), &opts(target.url("/ftp"))).await;
    assert_fail(&r, Reason::Redirect, Phase::Body);
    assert_eq!(r.status_code, Some(302));
    let err = r.error.unwrap();
    assert!(err.contains("ftp://127.0.0.1/pub/file"), "{err}");
    assert_eq!(proxy.connections(), 1, "nothing fetched from the ftp: URL");
}

/// The time fields of a result in their units: `checked_at` inside the
/// check's wall-clock window, `total_ms` bounded by the phases it sums and
/// by the wall clock, `latency_ms` its whole milliseconds.
#[tokio::test]
async fn result_times_are_in_their_windows_and_units() {
    let target = tls_target().await;
    let proxy = FakeProxy::http(ProxyBehavior {
        delay: Duration::from_millis(30),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = chrono::Utc::now();
    let wall = std::time::Instant::now();
    let r = check(&proxy.proxy(None), &opts(target.url("/"))).await;
    let wall_ms = wall.elapsed().as_secs_f64() * 1000.0;
    let after = chrono::Utc::now();
    assert_up(&r);
    assert!(
        before <= r.checked_at && r.checked_at <= after,
        "{before} <= {} <= {after}",
        r.checked_at
    );
    let p = &r.phases;
    let total = p.total_ms.unwrap();
    let parts = [
        p.connect_ms,
        p.handshake_ms,
        p.tls_ms,
        p.first_byte_ms,
        p.body_ms,
    ];
    let sum: f64 = parts.iter().map(|x| x.expect("every phase ran")).sum();
    assert!(
        p.handshake_ms.unwrap() >= 30.0,
        "the proxy's delay is in the handshake: {p:?}"
    );
    assert!(
        sum <= total && total <= wall_ms,
        "{sum} <= {total} <= {wall_ms}"
    );
    let latency = r.latency_ms as f64;
    assert!(latency - 1e-6 <= total && total < latency + 1.0, "{r:#?}");
    assert!(r.latency_ms <= r.elapsed_ms && (r.elapsed_ms as f64) <= wall_ms);
}

// ------------------------------------------------------------ TLS

#[tokio::test]
async fn untrusted_target_certificate_is_tls() {
    let target = tls_target().await;
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let mut o = opts(target.url("/"));
    o.target_tls = client_config(None, false).unwrap();
    let r = check(&proxy.proxy(None), &o).await;
    assert_fail(&r, Reason::Tls, Phase::Tls);
}

#[tokio::test]
async fn untrusted_proxy_certificate_is_tls_in_proxy_tls() {
    let target = ok_target().await;
    let proxy = FakeProxy::http(ProxyBehavior {
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut o = opts(target.url("/"));
    o.proxy_tls = client_config(None, false).unwrap();
    let r = check(&proxy.proxy(None), &o).await;
    assert_fail(&r, Reason::Tls, Phase::ProxyTls);
}

#[tokio::test]
async fn tls_to_a_plain_http_target_is_tls() {
    let target = ok_target().await;
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    // An https URL on a plain HTTP port: the server answers the ClientHello
    // with an HTTP 400, which is not TLS.
    let mut url = target.url("/");
    url.set_scheme("https").unwrap();
    let r = check(&proxy.proxy(None), &opts(url)).await;
    assert_fail(&r, Reason::Tls, Phase::Tls);
}

#[tokio::test]
async fn hanging_tls_target_times_out_in_tls() {
    // Accepts TCP, reads whatever comes, never answers the ClientHello.
    let silent = FakeServer::start(None, hang).await.unwrap();
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let url = Url::parse(&format!("https://{}/", silent.addr())).unwrap();
    let r = check(&proxy.proxy(None), &hang_opts(url)).await;
    assert_fail(&r, Reason::Timeout, Phase::Tls);
}

#[tokio::test]
async fn ca_file_and_insecure_configs() {
    let target = tls_target().await;
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki::pki().ca_pem).unwrap();

    let mut o = opts(target.url("/"));
    o.target_tls = client_config(Some(&ca), false).unwrap();
    assert_up(&check(&proxy.proxy(None), &o).await);

    o.target_tls = client_config(None, true).unwrap();
    assert_up(&check(&proxy.proxy(None), &o).await);

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    assert!(matches!(
        client_config(Some(&empty), false),
        Err(TlsConfigError::EmptyCa { .. })
    ));
    assert!(matches!(
        client_config(Some(&dir.path().join("missing.pem")), false),
        Err(TlsConfigError::ReadCa { .. })
    ));
}

// ------------------------------------------------------------ target behaviour

async fn via_socks5(reply: Reply, tweak: impl FnOnce(&mut CheckOptions)) -> CheckResult {
    let target = FakeTarget::start(reply).await.unwrap();
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let mut o = opts(target.url("/"));
    tweak(&mut o);
    check(&proxy.proxy(None), &o).await
}

#[tokio::test]
async fn unexpected_status_keeps_the_code() {
    let r = via_socks5(Reply::status(503), |_| {}).await;
    assert_fail(&r, Reason::UnexpectedStatus, Phase::FirstByte);
    assert_eq!(r.status_code, Some(503));
    // An expected non-200 is a success.
    let r = via_socks5(Reply::status(204), |o| o.expected_status_codes = vec![204]).await;
    assert_eq!(r.status, ProxyStatus::Active, "{r:#?}");
    assert_eq!(r.status_code, Some(204));
}

#[tokio::test]
async fn slow_drip_body_times_out_in_body() {
    let reply = Reply::ok("x".repeat(40)).mode(BodyMode::Drip(Duration::from_millis(50)));
    let r = via_socks5(reply, |o| o.timeout = HANG_TIMEOUT).await;
    assert_fail(&r, Reason::Timeout, Phase::Body);
    assert!(r.phases.first_byte_ms.is_some());
}

#[tokio::test]
async fn slow_first_byte_times_out_in_first_byte() {
    let reply = Reply::ok("late").delay(Duration::from_secs(5));
    let r = via_socks5(reply, |o| o.timeout = HANG_TIMEOUT).await;
    assert_fail(&r, Reason::Timeout, Phase::FirstByte);
}

#[tokio::test]
async fn target_closing_or_resetting_is_connection_reset() {
    let r = via_socks5(Reply::ok("x").mode(BodyMode::Close), |_| {}).await;
    assert_fail(&r, Reason::ConnectionReset, Phase::FirstByte);
    let r = via_socks5(Reply::ok("x").mode(BodyMode::Reset), |_| {}).await;
    assert_fail(&r, Reason::ConnectionReset, Phase::FirstByte);
}

#[tokio::test]
async fn huge_headers_and_garbage_are_http() {
    let r = via_socks5(
        Reply::ok("x").mode(BodyMode::HugeHeaders(40 * 1024)),
        |_| {},
    )
    .await;
    assert_fail(&r, Reason::Http, Phase::Body);
    assert!(r.error.unwrap().contains("exceed"));
    let r = via_socks5(Reply::ok("x").mode(BodyMode::Garbage), |_| {}).await;
    assert_fail(&r, Reason::Http, Phase::Body);
    // Within the limit, big headers are fine.
    let r = via_socks5(Reply::ok("x").mode(BodyMode::HugeHeaders(8 * 1024)), |_| {}).await;
    assert_up(&r);
}

#[tokio::test]
async fn body_checks() {
    let r = via_socks5(Reply::ok("status: all good"), |o| {
        o.body_contains = Some("all good".into())
    })
    .await;
    assert_up(&r);
    let r = via_socks5(Reply::ok("status: degraded"), |o| {
        o.body_contains = Some("all good".into())
    })
    .await;
    assert_fail(&r, Reason::BodyMismatch, Phase::Body);
    assert_eq!(r.status_code, Some(200));
    let r = via_socks5(Reply::ok("version=abc"), |o| {
        o.body_regex = Some(regex::Regex::new(r"version=\d+").unwrap())
    })
    .await;
    assert_fail(&r, Reason::BodyMismatch, Phase::Body);
    // The body is read up to max_body_bytes only: a needle past it is missed.
    let body = "y".repeat(10_000) + "NEEDLE";
    let r = via_socks5(Reply::ok(body), |o| {
        o.body_contains = Some("NEEDLE".into());
        o.max_body_bytes = 1024;
    })
    .await;
    assert_fail(&r, Reason::BodyMismatch, Phase::Body);
    assert!(r.error.unwrap().contains("1024 bytes"));
}

#[tokio::test]
async fn exit_ip_leak() {
    let body = r#"{"origin": "203.0.113.9"}"#;
    let r = via_socks5(Reply::ok(body), |o| {
        o.own_ips = vec!["203.0.113.9".parse().unwrap()]
    })
    .await;
    assert_fail(&r, Reason::ExitIpLeak, Phase::Body);
    let r = via_socks5(Reply::ok(body), |o| {
        o.own_ips = vec![
            "198.51.100.1".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ]
    })
    .await;
    assert_up(&r);
    let r = via_socks5(Reply::ok("origin=2001:db8::7"), |o| {
        o.own_ips = vec!["2001:db8::7".parse().unwrap()]
    })
    .await;
    assert_fail(&r, Reason::ExitIpLeak, Phase::Body);
}

#[tokio::test]
async fn redirects_are_followed_through_the_proxy() {
    let target = FakeTarget::builder(Reply::status(404))
        .route("/start", vec![Reply::redirect(302, "/middle")])
        .route("/middle", vec![Reply::redirect(301, "final?z=1")])
        .route("/final?z=1", vec![Reply::ok("arrived")])
        .route("/loop", vec![Reply::redirect(302, "/loop")])
        .route("/bad", vec![Reply::redirect(302, "http://[::bad/")])
        .start()
        .await
        .unwrap();
    let proxy = FakeProxy::http(ProxyBehavior::healthy()).await.unwrap();
    let mut o = opts(target.url("/start"));
    o.body_contains = Some("arrived".into());
    let r = check(&proxy.proxy(None), &o).await;
    assert_up(&r);
    assert_eq!(proxy.connections(), 3, "one connection per hop");
    let paths: Vec<String> = target.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(paths, ["/start", "/middle", "/final?z=1"]);

    let r = check(&proxy.proxy(None), &opts(target.url("/loop"))).await;
    assert_fail(&r, Reason::Redirect, Phase::Body);
    assert_eq!(r.status_code, Some(302));
    let r = check(&proxy.proxy(None), &opts(target.url("/bad"))).await;
    assert_fail(&r, Reason::Redirect, Phase::Body);

    let mut o = opts(target.url("/start"));
    o.allow_redirects = false;
    let r = check(&proxy.proxy(None), &o).await;
    assert_fail(&r, Reason::UnexpectedStatus, Phase::FirstByte);
    assert_eq!(r.status_code, Some(302));
}

/// Configured headers go to the target's origin only: kept on a redirect
/// within it, dropped on one to another port (another origin).
#[tokio::test]
async fn headers_follow_redirects_within_the_origin_only() {
    let other = FakeTarget::start(Reply::ok("elsewhere")).await.unwrap();
    let target = FakeTarget::builder(Reply::status(404))
        .route("/start", vec![Reply::redirect(302, "/same")])
        .route(
            "/same",
            vec![Reply::redirect(302, other.url("/end").as_str())],
        )
        .start()
        .await
        .unwrap();
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let mut o = opts(target.url("/start"));
    o.headers = vec![("X-Api-Key".into(), "k-123".into())];
    assert_up(&check(&proxy.proxy(None), &o).await);
    let seen: Vec<Option<String>> = target
        .requests()
        .iter()
        .map(|r| r.header("x-api-key").map(str::to_string))
        .collect();
    assert_eq!(seen, [Some("k-123".to_string()), Some("k-123".to_string())]);
    let elsewhere = other.requests();
    assert_eq!(elsewhere.len(), 1);
    assert_eq!(
        elsewhere[0].header("x-api-key"),
        None,
        "another port is another origin"
    );
}

// ------------------------------------------------------------ attempts

#[tokio::test]
async fn second_attempt_can_succeed() {
    let target = FakeTarget::builder(Reply::status(404))
        .route("/", vec![Reply::status(503), Reply::ok("ok now")])
        .start()
        .await
        .unwrap();
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let mut o = opts(target.url("/"));
    o.attempts = 3;
    let r = check(&proxy.proxy(None), &o).await;
    assert_up(&r);
    assert_eq!(r.attempts, 2);

    // The same with a proxy that resets only its first connection.
    let flaky = FakeProxy::http(ProxyBehavior {
        fault: Fault::ResetMidHandshake,
        fault_first: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let plain = ok_target().await;
    let mut o = opts(plain.url("/"));
    o.attempts = 2;
    let r = check(&flaky.proxy(None), &o).await;
    assert_up(&r);
    assert_eq!(r.attempts, 2);
}

#[tokio::test]
async fn all_attempts_failing_reports_the_last() {
    let target = FakeTarget::builder(Reply::status(404))
        .route("/", vec![Reply::status(500), Reply::status(503)])
        .start()
        .await
        .unwrap();
    let proxy = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let mut o = opts(target.url("/"));
    o.attempts = 3;
    let r = check(&proxy.proxy(None), &o).await;
    assert_fail(&r, Reason::UnexpectedStatus, Phase::FirstByte);
    assert_eq!(r.attempts, 3);
    assert_eq!(r.status_code, Some(503));
    assert_eq!(r.latency_ms, OK_TIMEOUT.as_millis() as u64);
    assert_eq!(target.requests().len(), 3);
}

#[test]
fn check_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let proxy = Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1);
    let o = CheckOptions::new(Url::parse("http://127.0.0.1/").unwrap()).unwrap();
    let fut = check(&proxy, &o);
    assert_send(&fut);
}

#[test]
fn options_reject_unsupported_targets() {
    assert!(CheckOptions::new(Url::parse("ftp://example.com/").unwrap()).is_err());
    let o = CheckOptions::new(Url::parse("https://example.com/").unwrap()).unwrap();
    assert_eq!(o.expected_status_codes, vec![200]);
    assert_eq!(o.timeout, Duration::from_secs(5));
    assert_eq!(o.attempts, 1);
    assert_eq!(o.slow_threshold, Duration::from_millis(2000));
    assert_eq!(o.max_body_bytes, 64 * 1024);
    assert_eq!(o.max_header_bytes, 32 * 1024);
}

// ------------------------------------------------------------ who failed

/// An `http://` target (absolute form) and an `https://` one (CONNECT),
/// both unused: the proxies below answer every request themselves.
async fn both_targets() -> (FakeTarget, FakeTarget) {
    (ok_target().await, tls_target().await)
}

/// Through a fake answering `response`, to an `http://` target and through
/// CONNECT to an `https://` one: the proxy's own error both times, with the
/// expected reason, message and status, in first_byte and handshake.
async fn assert_proxy_made(response: &[u8], reason: Reason, message: &str, status: u16) {
    let (plain, secure) = both_targets().await;
    let fake = FakeProxy::http(ProxyBehavior::answering(response))
        .await
        .unwrap();
    for (url, phase) in [
        (plain.url("/"), Phase::FirstByte),
        (secure.url("/"), Phase::Handshake),
    ] {
        let r = check(&fake.proxy(None), &opts(url.clone())).await;
        assert_fail(&r, reason, phase);
        assert_eq!(r.error.as_deref(), Some(message), "{url}");
        assert_eq!(r.status_code, Some(status), "{url}");
    }
    assert!(plain.requests().is_empty() && secure.requests().is_empty());
}

#[tokio::test]
async fn rfc9209_proxy_status_names_the_proxys_error() {
    assert_proxy_made(
        &proxy_errors::proxy_status(
            502,
            r#"fake-proxy; error=destination_ip_unroutable; details="no route to 192.0.2.1""#,
        ),
        Reason::ProxyUpstream,
        "proxy could not reach the target: Proxy-Status error=destination_ip_unroutable (by fake-proxy: no route to 192.0.2.1) [502]",
        502,
    )
    .await;
    // Two intermediaries: the one nearest to us with an error decides.
    assert_proxy_made(
        &proxy_errors::proxy_status(
            504,
            "inner; error=connection_timeout, outer; received-status=504",
        ),
        Reason::ProxyUpstream,
        "proxy could not reach the target: Proxy-Status error=connection_timeout (by inner) [504]",
        504,
    )
    .await;
    // A policy refusal stays proxy_refused, now with the proxy's words.
    assert_proxy_made(
        &proxy_errors::proxy_status(403, "gw; error=http_request_denied"),
        Reason::ProxyRefused,
        "proxy refused the target: Proxy-Status error=http_request_denied (by gw) [403]",
        403,
    )
    .await;
}

#[tokio::test]
async fn stock_error_pages_name_the_proxys_error() {
    use proxy_errors::*;
    let upstream = Reason::ProxyUpstream;
    let cases: [(&[u8], Reason, &str, u16); 6] = [
        (
            SQUID_CONNECT_FAIL,
            upstream,
            "proxy could not reach the target: X-Squid-Error ERR_CONNECT_FAIL 111 [503]",
            503,
        ),
        (
            TINYPROXY_UNABLE_TO_CONNECT,
            upstream,
            "proxy could not reach the target: tinyproxy Unable to connect [500]",
            500,
        ),
        (
            PRIVOXY_CONNECT_FAILED,
            upstream,
            "proxy could not reach the target: privoxy error page Connect failed [503]",
            503,
        ),
        (
            PRIVOXY_BLOCKED,
            Reason::ProxyRefused,
            "proxy refused the target: privoxy error page Request for blocked URL [403]",
            403,
        ),
        (
            APACHE_PROXY_ERROR,
            upstream,
            "proxy could not reach the target: apache proxy error page DNS lookup failure for: nonexistent.invalid [502]",
            502,
        ),
        (
            APACHE_BAD_GATEWAY,
            upstream,
            "proxy could not reach the target: apache proxy error page invalid response from an upstream server [502]",
            502,
        ),
    ];
    for (response, reason, message, status) in cases {
        assert_proxy_made(response, reason, message, status).await;
    }
}

#[tokio::test]
async fn squid_page_without_its_header_is_still_squids() {
    // `reply_header_access X-Squid-Error deny all`, common on anonymising
    // proxies: the page's `<!-- ERR_... -->` says it.
    let text = String::from_utf8_lossy(proxy_errors::SQUID_CONNECT_FAIL)
        .replace("X-Squid-Error: ERR_CONNECT_FAIL 111\r\n", "");
    assert_proxy_made(
        text.as_bytes(),
        Reason::ProxyUpstream,
        "proxy could not reach the target: squid error page ERR_CONNECT_FAIL [503]",
        503,
    )
    .await;
}

#[tokio::test]
async fn the_proxys_words_never_carry_credentials() {
    let (plain, secure) = both_targets().await;
    let echo = proxy_errors::proxy_status(
        502,
        &format!(r#"p; error=connection_refused; details="alice:{PASSWORD} as {PASSWORD}""#),
    );
    let b = ProxyBehavior {
        answer: Some(echo),
        ..ProxyBehavior::healthy().with_auth("alice", PASSWORD)
    };
    let fake = FakeProxy::http(b).await.unwrap();
    let proxy = fake.proxy_with_auth(None, "alice", PASSWORD);
    for (url, phase) in [
        (plain.url("/"), Phase::FirstByte),
        (secure.url("/"), Phase::Handshake),
    ] {
        let r = check(&proxy, &opts(url)).await;
        // assert_fail checks the password is absent from the message.
        assert_fail(&r, Reason::ProxyUpstream, phase);
        assert_eq!(
            r.error.as_deref(),
            Some("proxy could not reach the target: Proxy-Status error=connection_refused (by p: *** as ***) [502]")
        );
    }
}

#[tokio::test]
async fn the_targets_own_errors_stay_unexpected_status() {
    // The target's 503 through an HTTP proxy (absolute form): no mark.
    let target = FakeTarget::start(Reply::status(503).body("<h1>Service Unavailable</h1>"))
        .await
        .unwrap();
    let http = FakeProxy::http(ProxyBehavior::healthy()).await.unwrap();
    let r = check(&http.proxy(None), &opts(target.url("/"))).await;
    assert_fail(&r, Reason::UnexpectedStatus, Phase::FirstByte);
    assert_eq!(r.status_code, Some(503));
    // Marks inside a tunnel are the target's (its own CDN, say), never
    // the proxy's: through SOCKS5 and through CONNECT.
    let marked = Reply::status(502)
        .header("Proxy-Status", "cdn; error=connection_refused")
        .header("X-Squid-Error", "ERR_CONNECT_FAIL 111")
        .body("<!-- ERR_CONNECT_FAIL --> (squid/5.7)");
    let plain = FakeTarget::start(marked.clone()).await.unwrap();
    let secure = FakeTarget::builder(marked).tls().start().await.unwrap();
    let s5 = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let r = check(&s5.proxy(None), &opts(plain.url("/"))).await;
    assert_fail(&r, Reason::UnexpectedStatus, Phase::FirstByte);
    assert_eq!(r.status_code, Some(502));
    let r = check(&http.proxy(None), &opts(secure.url("/"))).await;
    assert_fail(&r, Reason::UnexpectedStatus, Phase::FirstByte);
    assert_eq!(r.status_code, Some(502));
}

#[tokio::test]
async fn http_proxy_url_on_a_socks_server_is_proxy_protocol() {
    let target = ok_target().await;
    let s5 = FakeProxy::socks5(ProxyBehavior::healthy()).await.unwrap();
    let r = check(&s5.proxy(Some(ProxyProtocol::Http)), &opts(target.url("/"))).await;
    assert_fail(&r, Reason::ProxyProtocol, Phase::FirstByte);
    assert_eq!(
        r.error.as_deref(),
        Some("proxy answered with something that is not HTTP (first byte 0x05: a SOCKS5 proxy?)")
    );
}

#[tokio::test]
async fn socks4_cannot_carry_ipv6() {
    let s4 = FakeProxy::socks4(ProxyBehavior::healthy()).await.unwrap();
    let url = Url::parse("http://[2001:db8::1]:8080/").unwrap();
    for protocol in [ProxyProtocol::Socks4, ProxyProtocol::Socks4a] {
        let r = check(&s4.proxy(Some(protocol)), &opts(url.clone())).await;
        assert_fail(&r, Reason::ProxyProtocol, Phase::Handshake);
        assert_eq!(
            r.error.as_deref(),
            Some("SOCKS4 cannot carry IPv6: target 2001:db8::1")
        );
    }
    // The proxy was never asked.
    assert!(s4.seen().is_empty());
}
