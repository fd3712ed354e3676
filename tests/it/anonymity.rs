//! Judge mode against real proxies: the exit IP and the anonymity level our
//! own judge (`pharox-exporter judge`) reports through squid, tinyproxy and
//! microsocks, each made to exit from its own loopback address
//! (127.0.0.21..25) so the exit IP is asserted exactly.
//!
//! Our own IPs are learnt the way a sweep learns them: one direct request to
//! the judge, which sees us as 127.0.0.1 (the kernel's source address for a
//! connection to 127.0.0.1).

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use pharox_exporter::{bind_judge, check_with, learn_own_ips, serve_judge, OwnIps, Shutdown};
use pharox_exporter::{Anonymity, CheckOptions, CheckResult, Exit, Phase, ProxyProtocol};
use pharox_exporter::{ProxyStatus, Reason};
use pharox_testkit::pki::client_tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support;
use crate::support::process::{start_on_free_port, ChildGuard, ServerDir};
use crate::support::proxies::{self, ProxyServer};

/// Our judge, in this process, on a free loopback port; stopped on drop.
/// Also the target of the exporter's end-to-end exit test.
pub(crate) struct OurJudge {
    addr: SocketAddr,
    stop: Shutdown,
}

impl OurJudge {
    pub(crate) async fn start() -> OurJudge {
        let listener = bind_judge("127.0.0.1:0").await.expect("bind the judge");
        let addr = listener.local_addr().expect("judge address");
        let stop = Shutdown::new();
        tokio::spawn(serve_judge(listener, 64, stop.clone()));
        OurJudge { addr, stop }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/judge", self.addr)
    }
}

impl Drop for OurJudge {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip literal")
}

fn judge_opts(url: &str) -> CheckOptions {
    let mut o = support::check_options(url, client_tls(&[]), client_tls(&[]));
    o.judge = true;
    o
}

/// Learn our own IPs from the judge, asserting the judge saw 127.0.0.1.
async fn learn(o: &CheckOptions) -> OwnIps {
    let own = learn_own_ips([o]).await;
    assert_eq!(own.failures().count(), 0, "{own:?}");
    assert_eq!(
        own.learnt(o.target_url.as_str()),
        Some(&[ip("127.0.0.1")][..])
    );
    own
}

fn exit(at: &str, anonymity: Option<Anonymity>, header: Option<&str>) -> Option<Exit> {
    Some(Exit {
        ip: Some(ip(at)),
        anonymity,
        anonymity_header: header.map(str::to_string),
        geo: None,
        geo_mismatch: false,
    })
}

fn assert_up(r: &CheckResult, server: &ProxyServer) {
    assert_eq!(r.status, ProxyStatus::Active, "{r:#?}\n{}", server.logs());
    assert_eq!(r.reason, None);
}

fn assert_failed(r: &CheckResult, reason: Reason, error: &str) {
    assert_eq!(r.status, ProxyStatus::Inactive, "{r:#?}");
    assert_eq!(r.reason, Some(reason), "{r:#?}");
    assert_eq!(r.phase, Some(Phase::Body), "{r:#?}");
    assert_eq!(r.error.as_deref(), Some(error), "{r:#?}");
}

#[tokio::test]
async fn squid_adding_x_forwarded_for_is_transparent_and_fails_an_elite_pool() {
    let judge = OurJudge::start().await;
    let squid = proxies::squid_with(None, "forwarded_for on\ntcp_outgoing_address 127.0.0.21\n");
    let proxy = squid.proxy(ProxyProtocol::Http, None);
    let mut o = judge_opts(&judge.url());
    let own = learn(&o).await;

    let r = check_with(&proxy, &o, &own).await;
    assert_up(&r, &squid);
    let want = exit(
        "127.0.0.21",
        Some(Anonymity::Transparent),
        Some("x-forwarded-for"),
    );
    assert_eq!(r.exit, want);

    o.min_anonymity = Some(Anonymity::Elite);
    let r = check_with(&proxy, &o, &own).await;
    assert_failed(
        &r,
        Reason::Anonymity,
        "proxy is transparent: our address 127.0.0.1 in x-forwarded-for; the pool requires elite",
    );
    assert_eq!(r.exit, want, "the exit is reported on an anonymity failure");
    assert_eq!(r.status_code, Some(200));
}

#[tokio::test]
async fn squid_without_forwarding_headers_is_elite_and_never_elite_without_own_ips() {
    let judge = OurJudge::start().await;
    let squid = proxies::squid_with(
        None,
        "forwarded_for delete\nvia off\ntcp_outgoing_address 127.0.0.22\n",
    );
    let proxy = squid.proxy(ProxyProtocol::Http, None);
    let mut o = judge_opts(&judge.url());
    o.min_anonymity = Some(Anonymity::Elite);
    let own = learn(&o).await;
    let r = check_with(&proxy, &o, &own).await;
    assert_up(&r, &squid);
    assert_eq!(r.exit, exit("127.0.0.22", Some(Anonymity::Elite), None));

    // Our own IPs unknown (nothing learnt, none configured): the level is
    // unknown, not elite, and a required minimum cannot be met.
    let r = check_with(&proxy, &o, &OwnIps::default()).await;
    assert_failed(
        &r,
        Reason::Anonymity,
        "anonymity cannot be told (our own IPs are unknown: no own_ips configured, and none learnt from the judge); the pool requires elite",
    );
    assert_eq!(r.exit, exit("127.0.0.22", None, None));
    o.min_anonymity = None;
    let r = check_with(&proxy, &o, &OwnIps::default()).await;
    assert_up(&r, &squid);
    assert_eq!(r.exit, exit("127.0.0.22", None, None));
}

#[tokio::test]
async fn a_proxy_exiting_from_our_own_address_is_transparent_or_an_exit_ip_leak() {
    let judge = OurJudge::start().await;
    // No outgoing address: squid exits from 127.0.0.1, like us.
    let squid = proxies::squid_with(None, "forwarded_for delete\nvia off\n");
    let proxy = squid.proxy(ProxyProtocol::Http, None);
    let mut o = judge_opts(&judge.url());
    let own = learn(&o).await;
    let r = check_with(&proxy, &o, &own).await;
    assert_up(&r, &squid);
    let want = exit("127.0.0.1", Some(Anonymity::Transparent), None);
    assert_eq!(r.exit, want);

    o.own_ips = vec![ip("127.0.0.1")];
    let r = check_with(&proxy, &o, &own).await;
    assert_failed(
        &r,
        Reason::ExitIpLeak,
        "the judge saw the request come from our own address 127.0.0.1",
    );
    assert_eq!(r.exit, want);
}

#[tokio::test]
async fn tinyproxys_via_header_is_anonymous() {
    let judge = OurJudge::start().await;
    let tiny = proxies::tinyproxy_with("Bind 127.0.0.24\n");
    let proxy = tiny.proxy(ProxyProtocol::Http, None);
    let mut o = judge_opts(&judge.url());
    let own = learn(&o).await;
    let r = check_with(&proxy, &o, &own).await;
    assert_up(&r, &tiny);
    let want = exit("127.0.0.24", Some(Anonymity::Anonymous), Some("via"));
    assert_eq!(r.exit, want);

    o.min_anonymity = Some(Anonymity::Anonymous);
    assert_up(&check_with(&proxy, &o, &own).await, &tiny);
    o.min_anonymity = Some(Anonymity::Elite);
    let r = check_with(&proxy, &o, &own).await;
    assert_failed(
        &r,
        Reason::Anonymity,
        "proxy is anonymous: the judge received via; the pool requires elite",
    );
    assert_eq!(r.exit, want);
}

#[tokio::test]
async fn a_socks5_proxy_is_elite() {
    let judge = OurJudge::start().await;
    let ms = proxies::microsocks_bound(None, Some("127.0.0.25"));
    let proxy = ms.proxy(ProxyProtocol::Socks5, None);
    let mut o = judge_opts(&judge.url());
    o.min_anonymity = Some(Anonymity::Elite);
    let own = learn(&o).await;
    let r = check_with(&proxy, &o, &own).await;
    assert_up(&r, &ms);
    assert_eq!(r.exit, exit("127.0.0.25", Some(Anonymity::Elite), None));
}

/// A target answering 200 with `body` to every connection.
async fn fake_judge(body: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_garbled_judge_answer_is_judge_unparsable() {
    let addr = fake_judge("<html>It works!</html>").await;
    let ms = proxies::microsocks(None);
    let proxy = ms.proxy(ProxyProtocol::Socks5, None);
    let o = judge_opts(&format!("http://{addr}/"));
    let own = learn_own_ips([&o]).await;
    let failures: Vec<(&str, &str)> = own.failures().collect();
    let why = "not a judge answer: no JSON with \"origin\", no bare IP, no REMOTE_ADDR = line";
    let learn_error = format!("judge answer not understood: {why}");
    assert_eq!(
        failures,
        vec![(o.target_url.as_str(), learn_error.as_str())]
    );
    let r = check_with(&proxy, &o, &own).await;
    assert_failed(
        &r,
        Reason::JudgeUnparsable,
        &format!("judge answer not understood (22 bytes): {why}"),
    );
    assert_eq!(r.exit, None);
}

#[tokio::test]
async fn the_judge_formats_of_third_parties_are_read_through_a_proxy() {
    let ms = proxies::microsocks_bound(None, Some("127.0.0.26"));
    let proxy = ms.proxy(ProxyProtocol::Socks5, None);
    // The judges are fakes answering fixed text: their exit IPs are those
    // of the fixtures, and ours (127.0.0.1) is configured.
    for (body, want) in [
        (
            include_str!("../fixtures/judge/ipify.txt"),
            exit("198.51.100.77", None, None),
        ),
        (
            include_str!("../fixtures/judge/azenv.html"),
            exit("203.0.113.50", Some(Anonymity::Anonymous), Some("via")),
        ),
    ] {
        let addr = fake_judge(body).await;
        let mut o = judge_opts(&format!("http://{addr}/"));
        o.own_ips = vec![ip("127.0.0.1")];
        let r = check_with(&proxy, &o, &OwnIps::default()).await;
        assert_up(&r, &ms);
        assert_eq!(r.exit, want);
    }
}

/// The `judge` subcommand as a process on a free port, and `check` (which
/// learns our own IPs once at its start) through a transparent squid.
#[tokio::test]
async fn the_judge_subcommand_serves_check_which_learns_our_ips() {
    let dir = ServerDir::new("judge-bin");
    let (addr, _judge) = start_on_free_port("judge", dir.path(), |port| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pharox-exporter"));
        cmd.args([
            "judge",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
        ]);
        ChildGuard::spawn("judge", cmd, &dir.join(&format!("judge-{port}.log")))
    });

    // Its answer, from a client bound to 127.0.0.9.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from(([127, 0, 0, 9], 0)))
        .expect("bind");
    let mut s = sock.connect(addr).await.expect("connect");
    s.write_all(b"GET /any?x=1 HTTP/1.1\r\nHost: j\r\nVia: 1.1 test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").expect("a whole response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(head.contains("content-type: application/json"), "{resp}");
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "origin": "127.0.0.9",
            "headers": {"host": "j", "via": "1.1 test", "connection": "close"},
            "method": "GET",
            "path": "/any?x=1",
            "version": "HTTP/1.1",
        })
    );

    let squid = proxies::squid_with(None, "forwarded_for on\ntcp_outgoing_address 127.0.0.23\n");
    let cfg = dir.write(
        "config.yaml",
        format!(
            "defaults:\n  target_url: http://{addr}/\n  judge: true\n  min_anonymity: elite\n  timeout: 10s\n"
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pharox-exporter"))
        .args(["check", "--output", "json", "--config.file"])
        .arg(&cfg)
        .arg(squid.proxy_url())
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        squid.logs()
    );
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(line["reason"], "anonymity", "{line}");
    assert_eq!(line["phase"], "body", "{line}");
    assert_eq!(
        line["error"],
        "proxy is transparent: our address 127.0.0.1 in x-forwarded-for; the pool requires elite",
        "{line}"
    );
}
