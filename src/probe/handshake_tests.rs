//! The SOCKS4, SOCKS5 and CONNECT handshakes against scripted peers: the
//! exact bytes we send, and how every reply a proxy in the wild sends is
//! classified (truncated, wrong version, unknown address type, oversized,
//! data after the reply). In memory, so they run with the fast tests.

use bytes::BytesMut;

use super::attempt::AttemptError;
use super::{http_proxy, socks4, socks5};
use crate::model::{Phase, Proxy, ProxyProtocol, Reason};

/// One handshake to run against a peer whose whole answer is `reply`.
#[derive(Clone, Copy)]
enum Hs {
    /// SOCKS4 (`false`) or SOCKS4a (`true`).
    Socks4(bool),
    /// SOCKS5 (`false`) or SOCKS5h (`true`).
    Socks5(bool),
    /// HTTP CONNECT.
    Connect,
}

/// What a handshake did: its result, the bytes it sent, and the bytes of
/// the reply it left unread (the tunnel's first bytes).
struct Outcome {
    result: Result<(), AttemptError>,
    sent: Vec<u8>,
    unread: Vec<u8>,
}

impl Outcome {
    #[track_caller]
    fn failure(&self) -> (Reason, &str) {
        match &self.result {
            Ok(()) => panic!("expected a failure, the handshake succeeded"),
            Err(e) => (e.reason, e.error.as_str()),
        }
    }

    #[track_caller]
    fn assert_fails(&self, reason: Reason, text: &str) {
        let (r, e) = self.failure();
        assert_eq!(r, reason, "{e}");
        assert!(e.contains(text), "{e:?} lacks {text:?}");
    }
}

fn run(hs: Hs, proxy: &Proxy, host: &str, port: u16, reply: &[u8]) -> Outcome {
    run_split(hs, proxy, host, port, &[reply])
}

/// [`run`] with the reply arriving in `parts`: a read returns at most the
/// rest of one part, as a reply cut into TCP segments does.
fn run_split(hs: Hs, proxy: &Proxy, host: &str, port: u16, parts: &[&[u8]]) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let parts = Parts(parts.iter().map(|p| p.to_vec()).collect());
        let mut stream = tokio::io::join(parts, Vec::new());
        let mut buf = BytesMut::new();
        let result = match hs {
            Hs::Socks4(remote) => socks4::connect(&mut stream, proxy, host, port, remote).await,
            Hs::Socks5(remote) => socks5::connect(&mut stream, proxy, host, port, remote).await,
            Hs::Connect => {
                let r = http_proxy::connect_tunnel(&mut stream, proxy, host, port, &mut buf).await;
                assert!(r.is_err() || buf.is_empty(), "buffer left empty on success");
                r
            }
        };
        let (unread, sent) = stream.into_inner();
        Outcome {
            result: result.map_err(|e| e.at(Phase::Handshake)),
            sent,
            unread: unread.0.into_iter().flatten().collect(),
        }
    })
}

/// A reader that hands out its parts one read at a time.
struct Parts(std::collections::VecDeque<Vec<u8>>);

impl tokio::io::AsyncRead for Parts {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        while self.0.front().is_some_and(Vec::is_empty) {
            self.0.pop_front();
        }
        if let Some(part) = self.0.front_mut() {
            let n = part.len().min(out.remaining());
            out.put_slice(&part[..n]);
            part.drain(..n);
        }
        std::task::Poll::Ready(Ok(()))
    }
}

fn proxy(protocol: ProxyProtocol) -> Proxy {
    Proxy::new(protocol, "127.0.0.1", 1080)
}

fn with_auth(protocol: ProxyProtocol, user: &str, pass: &str) -> Proxy {
    let mut p = proxy(protocol);
    p.username = Some(user.into());
    p.password = Some(pass.into());
    p
}

// ------------------------------------------------------------------ SOCKS4

const S4_OK: [u8; 8] = [0x00, 0x5A, 0, 0, 0, 0, 0, 0];

#[test]
fn socks4_request_carries_port_address_and_user_id() {
    let mut p = proxy(ProxyProtocol::Socks4);
    p.username = Some("alice".into());
    let o = run(Hs::Socks4(false), &p, "10.1.2.3", 8080, &S4_OK);
    assert!(o.result.is_ok());
    assert_eq!(o.sent, b"\x04\x01\x1f\x90\x0a\x01\x02\x03alice\x00");
    // Without a user: an empty user id, still NUL-terminated.
    let o = run(
        Hs::Socks4(false),
        &proxy(ProxyProtocol::Socks4),
        "10.1.2.3",
        80,
        &S4_OK,
    );
    assert_eq!(o.sent, b"\x04\x01\x00\x50\x0a\x01\x02\x03\x00");
}

#[test]
fn socks4a_sends_the_name_after_address_0_0_0_1_and_literals_as_addresses() {
    let p = proxy(ProxyProtocol::Socks4a);
    let o = run(Hs::Socks4(true), &p, "example.com", 443, &S4_OK);
    assert!(o.result.is_ok());
    assert_eq!(
        o.sent,
        b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00example.com\x00"
    );
    // An IPv4 literal needs no remote resolution, even over SOCKS4a.
    let o = run(Hs::Socks4(true), &p, "192.0.2.7", 443, &S4_OK);
    assert_eq!(o.sent, b"\x04\x01\x01\xbb\xc0\x00\x02\x07\x00");
}

#[test]
fn socks4_resolves_names_itself_without_4a() {
    let o = run(
        Hs::Socks4(false),
        &proxy(ProxyProtocol::Socks4),
        "localhost",
        80,
        &S4_OK,
    );
    assert!(o.result.is_ok(), "{:?}", o.result.err());
    assert_eq!(o.sent, b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00");
}

#[test]
fn socks4_cannot_carry_ipv6_and_sends_nothing() {
    for remote in [false, true] {
        let o = run(
            Hs::Socks4(remote),
            &proxy(ProxyProtocol::Socks4),
            "::1",
            80,
            &S4_OK,
        );
        assert!(o.result.is_err());
        assert_eq!(o.sent, b"", "nothing sent for an unreachable target");
    }
}

#[test]
fn socks4_reply_version_0_or_4_is_accepted_and_the_tunnel_bytes_stay_unread() {
    for version in [0x00, 0x04] {
        let mut reply = vec![version, 0x5A, 0, 0, 0, 0, 0, 0];
        reply.extend_from_slice(b"HTTP/1.1 200");
        let o = run(
            Hs::Socks4(false),
            &proxy(ProxyProtocol::Socks4),
            "10.0.0.1",
            80,
            &reply,
        );
        assert!(o.result.is_ok(), "version {version}");
        assert_eq!(o.unread, b"HTTP/1.1 200");
    }
}

#[test]
fn socks4_rejections_say_what_the_code_means() {
    for (code, meaning) in [
        (0x5B, "request rejected or failed"),
        (0x5C, "rejected: identd unreachable"),
        (0x5D, "rejected: identd user id mismatch"),
        (0x42, "unknown reply code"),
    ] {
        let reply = [0x00, code, 0, 0, 0, 0, 0, 0];
        let o = run(
            Hs::Socks4(false),
            &proxy(ProxyProtocol::Socks4),
            "10.0.0.1",
            80,
            &reply,
        );
        o.assert_fails(
            Reason::ProxyRefused,
            &format!("SOCKS4 reply 0x{code:02X} {meaning}"),
        );
    }
}

#[test]
fn socks4_wrong_version_is_protocol_even_when_truncated() {
    let p = proxy(ProxyProtocol::Socks4);
    // A SOCKS5 server's answer, and an HTTP server's, cut short or not.
    for reply in [
        &[0x05, 0x5A, 0, 0, 0, 0, 0, 0][..],
        b"HT",
        b"HTTP/1.1 400 Bad",
    ] {
        let o = run(Hs::Socks4(false), &p, "10.0.0.1", 80, reply);
        o.assert_fails(Reason::ProxyProtocol, "not a SOCKS4 proxy");
    }
}

#[test]
fn socks4_truncated_reply_is_a_dropped_connection() {
    let p = proxy(ProxyProtocol::Socks4);
    for reply in [
        &[][..],
        &[0x00][..],
        &[0x00, 0x5A, 0, 0][..],
        &[0x04, 0x5A, 0, 0, 0, 0, 0][..],
    ] {
        let o = run(Hs::Socks4(false), &p, "10.0.0.1", 80, reply);
        o.assert_fails(
            Reason::ConnectionReset,
            "connection closed by peer during SOCKS4 reply",
        );
    }
}

// ------------------------------------------------------------------ SOCKS5

/// A CONNECT success with an IPv4 bound address.
const S5_OK: [u8; 10] = [0x05, 0x00, 0x00, 0x01, 10, 0, 0, 1, 0x1F, 0x90];

fn s5(method: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![0x05, method];
    v.extend_from_slice(rest);
    v
}

#[test]
fn socks5_requests_for_ipv4_ipv6_and_names() {
    let p = proxy(ProxyProtocol::Socks5);
    let reply = s5(0x00, &S5_OK);
    let o = run(Hs::Socks5(false), &p, "10.1.2.3", 443, &reply);
    assert!(o.result.is_ok());
    assert_eq!(
        o.sent,
        b"\x05\x01\x00\x05\x01\x00\x01\x0a\x01\x02\x03\x01\xbb"
    );

    let o = run(Hs::Socks5(false), &p, "[2001:db8::1]", 80, &reply);
    assert!(o.result.is_ok());
    let mut want = b"\x05\x01\x00\x05\x01\x00\x04".to_vec();
    want.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    want.extend_from_slice(&[0, 80]);
    assert_eq!(o.sent, want);

    let o = run(Hs::Socks5(true), &p, "example.com", 80, &reply);
    assert!(o.result.is_ok());
    assert_eq!(
        o.sent,
        b"\x05\x01\x00\x05\x01\x00\x03\x0bexample.com\x00\x50"
    );

    // socks5 (not h) resolves the name itself.
    let o = run(Hs::Socks5(false), &p, "localhost", 80, &reply);
    assert!(o.result.is_ok());
    assert_eq!(
        o.sent,
        b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"
    );
}

#[test]
fn socks5h_host_names_up_to_255_bytes_and_not_beyond() {
    let p = proxy(ProxyProtocol::Socks5h);
    let reply = s5(0x00, &S5_OK);
    let name = format!("{}.example", "a".repeat(247));
    assert_eq!(name.len(), 255);
    let o = run(Hs::Socks5(true), &p, &name, 80, &reply);
    assert!(o.result.is_ok(), "{:?}", o.result.err());
    assert_eq!(&o.sent[3..8], b"\x05\x01\x00\x03\xff");
    assert_eq!(&o.sent[8..8 + 255], name.as_bytes());

    let long = format!("a{name}");
    let o = run(Hs::Socks5(true), &p, &long, 80, &reply);
    o.assert_fails(Reason::Dns, "longer than 255 bytes");
    assert_eq!(o.sent, b"", "nothing sent for a name SOCKS5 cannot carry");
}

#[test]
fn socks5_reads_exactly_the_bound_address_of_each_type() {
    let p = proxy(ProxyProtocol::Socks5);
    let mut v6 = vec![0x05, 0x00, 0x00, 0x04];
    v6.extend_from_slice(&[0xAB; 16]);
    v6.extend_from_slice(&[0, 1]);
    let mut name = vec![0x05, 0x00, 0x00, 0x03, 9];
    name.extend_from_slice(b"gw.net.ex");
    name.extend_from_slice(&[0, 1]);
    // The longest bound address there is: a 255-byte name (the buffer
    // holds it exactly).
    let mut longest = vec![0x05, 0x00, 0x00, 0x03, 255];
    longest.extend_from_slice(&[b'n'; 255]);
    longest.extend_from_slice(&[0, 1]);
    for bound in [S5_OK.to_vec(), v6, name, longest] {
        let mut reply = s5(0x00, &bound);
        reply.extend_from_slice(b"\x16\x03\x01tunnel");
        let o = run(Hs::Socks5(false), &p, "10.0.0.1", 443, &reply);
        assert!(o.result.is_ok(), "{bound:?}: {:?}", o.result.err());
        assert_eq!(o.unread, b"\x16\x03\x01tunnel", "{bound:?}");
    }
    // A reply shorter than the common 10 bytes (an empty host name) is read
    // whole; the first read asks for 10 bytes, so data the proxy sent
    // before our request would be swallowed: refused, never misread.
    let empty_name = vec![0x05, 0x00, 0x00, 0x03, 0, 0, 1];
    let o = run(
        Hs::Socks5(false),
        &p,
        "10.0.0.1",
        443,
        &s5(0x00, &empty_name),
    );
    assert!(o.result.is_ok(), "{:?}", o.result.err());
    assert_eq!(o.unread, b"");
    let mut reply = s5(0x00, &empty_name);
    reply.extend_from_slice(b"\x16\x03\x01tunnel");
    let o = run(Hs::Socks5(false), &p, "10.0.0.1", 443, &reply);
    o.assert_fails(Reason::ProxyProtocol, "sent data after its reply");
}

/// A name reply whose first four bytes come alone: until the name's length
/// is there, the next read asks for no more than the shortest name reply
/// (an empty name) holds, so the tunnel's first bytes, arriving with the
/// rest, stay unread.
#[test]
fn socks5_name_reply_cut_before_its_length_is_never_over_read() {
    let p = proxy(ProxyProtocol::Socks5);
    for name in [&b""[..], b"g", b"gw.net.ex"] {
        let mut rest = vec![name.len() as u8];
        rest.extend_from_slice(name);
        rest.extend_from_slice(&[0, 1]);
        rest.extend_from_slice(b"\x16\x03\x01tunnel");
        let head = s5(0x00, &[0x05, 0x00, 0x00, 0x03]);
        let o = run_split(Hs::Socks5(false), &p, "10.0.0.1", 443, &[&head, &rest]);
        assert!(o.result.is_ok(), "{name:?}: {:?}", o.result.err());
        assert_eq!(o.unread, b"\x16\x03\x01tunnel", "{name:?}");
    }
}

#[test]
fn socks5_refusals_say_what_the_code_means() {
    let p = proxy(ProxyProtocol::Socks5);
    for (code, meaning) in [
        (0x01, "general SOCKS server failure"),
        (0x02, "connection not allowed by ruleset"),
        (0x03, "network unreachable"),
        (0x04, "host unreachable"),
        (0x05, "connection refused"),
        (0x06, "TTL expired"),
        (0x07, "command not supported"),
        (0x08, "address type not supported"),
        (0x09, "unknown reply code"),
    ] {
        // Refusing proxies often close right after VER and REP.
        let o = run(
            Hs::Socks5(false),
            &p,
            "10.0.0.1",
            80,
            &s5(0x00, &[0x05, code]),
        );
        o.assert_fails(
            Reason::ProxyRefused,
            &format!("SOCKS5 reply 0x{code:02X} {meaning}"),
        );
    }
}

#[test]
fn socks5_truncated_replies_are_a_dropped_connection() {
    let p = proxy(ProxyProtocol::Socks5);
    let cut_connect: Vec<Vec<u8>> = vec![
        s5(0x00, &[]),
        s5(0x00, &[0x05]),
        s5(0x00, &[0x05, 0x00]),
        s5(0x00, &[0x05, 0x00, 0x00]),
        s5(0x00, &[0x05, 0x00, 0x00, 0x01, 10, 0]),
        s5(0x00, &[0x05, 0x00, 0x00, 0x03]),
        s5(0x00, &[0x05, 0x00, 0x00, 0x03, 9, b'g', b'w']),
        s5(0x00, &S5_OK[..9]),
    ];
    for reply in cut_connect {
        let o = run(Hs::Socks5(false), &p, "10.0.0.1", 80, &reply);
        o.assert_fails(
            Reason::ConnectionReset,
            "connection closed by peer during SOCKS5 reply",
        );
    }
    for reply in [&[][..], &[0x05][..]] {
        let o = run(Hs::Socks5(false), &p, "10.0.0.1", 80, reply);
        o.assert_fails(
            Reason::ConnectionReset,
            "connection closed by peer during SOCKS5 greeting",
        );
    }
}

#[test]
fn socks5_wrong_version_or_address_type_is_protocol() {
    let p = proxy(ProxyProtocol::Socks5);
    // A SOCKS4 or HTTP server answering the greeting, whole or cut short.
    for reply in [&[0x04, 0x00][..], b"H", b"HTTP/1.1 400"] {
        let o = run(Hs::Socks5(false), &p, "10.0.0.1", 80, reply);
        o.assert_fails(Reason::ProxyProtocol, "not a SOCKS5 proxy");
    }
    // ... or the CONNECT request.
    for connect in [&[0x04, 0x00, 0x00, 0x01][..], b"H"] {
        let o = run(Hs::Socks5(false), &p, "10.0.0.1", 80, &s5(0x00, connect));
        o.assert_fails(Reason::ProxyProtocol, "reply has version 0x");
    }
    let o = run(
        Hs::Socks5(false),
        &p,
        "10.0.0.1",
        80,
        &s5(0x00, &[0x05, 0x00, 0x00, 0x02, 1, 2]),
    );
    o.assert_fails(Reason::ProxyProtocol, "unknown address type 0x02");
}

#[test]
fn socks5_method_choices() {
    let anon = proxy(ProxyProtocol::Socks5);
    let creds = with_auth(ProxyProtocol::Socks5, "bob", "pw");
    // What we offer: no-auth, plus username/password when we have credentials.
    let o = run(Hs::Socks5(false), &anon, "10.0.0.1", 80, &s5(0x00, &S5_OK));
    assert_eq!(&o.sent[..3], b"\x05\x01\x00");
    let o = run(Hs::Socks5(false), &creds, "10.0.0.1", 80, &s5(0x00, &S5_OK));
    assert!(
        o.result.is_ok(),
        "no-auth chosen although we offered credentials"
    );
    assert_eq!(&o.sent[..4], b"\x05\x02\x00\x02");
    assert_eq!(
        &o.sent[4..7],
        b"\x05\x01\x00",
        "the CONNECT follows at once"
    );

    let o = run(Hs::Socks5(false), &anon, "10.0.0.1", 80, &[0x05, 0xFF]);
    o.assert_fails(Reason::ProxyAuthRequired, "requires authentication");
    let o = run(Hs::Socks5(false), &anon, "10.0.0.1", 80, &[0x05, 0x02]);
    o.assert_fails(Reason::ProxyAuthRequired, "requires authentication");
    assert_eq!(
        o.sent, b"\x05\x01\x00",
        "no sub-negotiation without credentials"
    );
    let o = run(Hs::Socks5(false), &creds, "10.0.0.1", 80, &[0x05, 0xFF]);
    o.assert_fails(
        Reason::ProxyAuthFailed,
        "bob:***@127.0.0.1:1080 accepts none of our methods",
    );
    for m in [0x01, 0x03, 0x80] {
        let o = run(Hs::Socks5(false), &creds, "10.0.0.1", 80, &[0x05, m]);
        o.assert_fails(Reason::ProxyProtocol, &format!("chose method 0x{m:02X}"));
    }
}

#[test]
fn socks5_username_password_sub_negotiation() {
    let creds = with_auth(ProxyProtocol::Socks5, "bob", "pw!");
    // Status version 1 by RFC 1929; some servers answer 5.
    for version in [0x01, 0x05] {
        let reply = s5(0x02, &[&[version, 0x00][..], &S5_OK].concat());
        let o = run(Hs::Socks5(false), &creds, "10.0.0.1", 80, &reply);
        assert!(o.result.is_ok(), "{:?}", o.result.err());
        assert_eq!(&o.sent[4..13], b"\x01\x03bob\x03pw!");
        assert_eq!(&o.sent[13..16], b"\x05\x01\x00");
    }
    let o = run(
        Hs::Socks5(false),
        &creds,
        "10.0.0.1",
        80,
        &s5(0x02, &[0x01, 0x01]),
    );
    o.assert_fails(
        Reason::ProxyAuthFailed,
        "bob:***@127.0.0.1:1080 rejected the credentials (status 0x01)",
    );
    // A bad version byte in the auth reply is not an auth verdict.
    for bad in [0x00, 0x02, 0x04] {
        let o = run(
            Hs::Socks5(false),
            &creds,
            "10.0.0.1",
            80,
            &s5(0x02, &[bad, 0x00]),
        );
        o.assert_fails(
            Reason::ProxyProtocol,
            &format!("authentication reply has version 0x{bad:02X}, expected 0x01"),
        );
    }
    for cut in [&[][..], &[0x01][..]] {
        let o = run(Hs::Socks5(false), &creds, "10.0.0.1", 80, &s5(0x02, cut));
        o.assert_fails(Reason::ConnectionReset, "during SOCKS5 authentication");
    }
    // A password only: an empty user name.
    let mut pass_only = proxy(ProxyProtocol::Socks5);
    pass_only.password = Some("pw".into());
    let o = run(
        Hs::Socks5(false),
        &pass_only,
        "10.0.0.1",
        80,
        &s5(0x02, &[0x01, 0x00]),
    );
    assert_eq!(&o.sent[4..9], b"\x01\x00\x02pw");
}

#[test]
fn socks5_credentials_over_255_bytes_are_never_sent() {
    let long = "p".repeat(256);
    for p in [
        with_auth(ProxyProtocol::Socks5, "bob", &long),
        with_auth(ProxyProtocol::Socks5, &long, "pw"),
    ] {
        let o = run(
            Hs::Socks5(false),
            &p,
            "10.0.0.1",
            80,
            &s5(0x02, &[0x01, 0x00]),
        );
        o.assert_fails(Reason::ProxyAuthFailed, "longer than 255 bytes");
        assert_eq!(o.sent, b"\x05\x02\x00\x02", "only the greeting went out");
    }
    let max = "p".repeat(255);
    let p = with_auth(ProxyProtocol::Socks5, &max, &max);
    let o = run(
        Hs::Socks5(false),
        &p,
        "10.0.0.1",
        80,
        &s5(0x02, &[&[0x01, 0x00][..], &S5_OK].concat()),
    );
    assert!(o.result.is_ok(), "{:?}", o.result.err());
    assert_eq!(o.sent[5], 0xFF);
}

// ------------------------------------------------------------------ CONNECT

fn connect_request(authority: &str, auth: Option<&str>) -> Vec<u8> {
    let auth = auth
        .map(|t| format!("Proxy-Authorization: Basic {t}\r\n"))
        .unwrap_or_default();
    format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {}\r\n{auth}\r\n",
        super::USER_AGENT
    )
    .into_bytes()
}

#[test]
fn connect_request_is_exact_and_carries_basic_credentials() {
    let reply = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let o = run(
        Hs::Connect,
        &proxy(ProxyProtocol::Http),
        "example.com",
        443,
        reply,
    );
    assert!(o.result.is_ok());
    assert_eq!(o.sent, connect_request("example.com:443", None));
    let p = with_auth(ProxyProtocol::Http, "alice", "pw");
    let o = run(Hs::Connect, &p, "2001:db8::1", 8443, reply);
    assert!(o.result.is_ok());
    // base64("alice:pw")
    assert_eq!(
        o.sent,
        connect_request("[2001:db8::1]:8443", Some("YWxpY2U6cHc="))
    );
}

#[test]
fn connect_any_2xx_opens_the_tunnel() {
    for status in [200, 201, 299] {
        let reply = format!("HTTP/1.1 {status} OK\r\nVia: 1.1 squid\r\n\r\n");
        let o = run(
            Hs::Connect,
            &proxy(ProxyProtocol::Http),
            "h",
            443,
            reply.as_bytes(),
        );
        assert!(o.result.is_ok(), "{status}: {:?}", o.result.err());
    }
    let o = run(
        Hs::Connect,
        &proxy(ProxyProtocol::Http),
        "h",
        443,
        b"HTTP/1.1 300 Multiple\r\n\r\n",
    );
    o.assert_fails(
        Reason::ProxyRefused,
        "proxy refused CONNECT to h:443: 300 Multiple",
    );
    let o = run(
        Hs::Connect,
        &proxy(ProxyProtocol::Http),
        "h",
        443,
        b"HTTP/1.1 199 Early\r\n\r\n",
    );
    o.assert_fails(Reason::ProxyRefused, "199");
}

#[test]
fn connect_data_after_the_200_is_not_taken_for_the_tunnel() {
    let reply = b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n";
    let o = run(Hs::Connect, &proxy(ProxyProtocol::Http), "h", 443, reply);
    o.assert_fails(
        Reason::ProxyProtocol,
        "proxy sent data after its CONNECT response",
    );
}

#[test]
fn connect_answer_past_the_size_limit_is_protocol_at_the_limit() {
    let max = http_proxy::MAX_CONNECT_RESPONSE;
    // A head that never ends: exactly the limit is already too much ...
    let mut endless = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    endless.resize(max, b'a');
    let o = run(Hs::Connect, &proxy(ProxyProtocol::Http), "h", 443, &endless);
    o.assert_fails(Reason::ProxyProtocol, &format!("exceeds {max} bytes"));
    // ... one byte less, then a close, is a cut answer.
    let o = run(
        Hs::Connect,
        &proxy(ProxyProtocol::Http),
        "h",
        443,
        &endless[..max - 1],
    );
    o.assert_fails(Reason::ConnectionReset, "CONNECT (partial response)");
}

#[test]
fn connect_without_an_answer_or_with_a_cut_one() {
    let o = run(Hs::Connect, &proxy(ProxyProtocol::Http), "h", 443, b"");
    o.assert_fails(
        Reason::ConnectionReset,
        "connection closed by peer during CONNECT (no response)",
    );
    let o = run(
        Hs::Connect,
        &proxy(ProxyProtocol::Http),
        "h",
        443,
        b"HTTP/1.1 200 OK\r\n",
    );
    o.assert_fails(
        Reason::ConnectionReset,
        "connection closed by peer during CONNECT (partial response)",
    );
}

#[test]
fn connect_407_depends_on_whether_we_sent_credentials() {
    let reply = b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n";
    let o = run(Hs::Connect, &proxy(ProxyProtocol::Http), "h", 443, reply);
    o.assert_fails(Reason::ProxyAuthRequired, "requires authentication (407)");
    let p = with_auth(ProxyProtocol::Http, "alice", "pw");
    let o = run(Hs::Connect, &p, "h", 443, reply);
    o.assert_fails(
        Reason::ProxyAuthFailed,
        "alice:***@127.0.0.1:1080 rejected the credentials (407)",
    );
}

#[test]
fn connect_refusal_quotes_the_reason_phrase_masked_and_printable() {
    let p = with_auth(ProxyProtocol::Http, "alice", "Tr0ub4dor");
    // A proxy echoing the password and the Basic token of alice:Tr0ub4dor
    // in its reason phrase, with tabs (legal there) around them.
    let reply = "HTTP/1.1 403 Denied\tfor alice:Tr0ub4dor\tYWxpY2U6VHIwdWI0ZG9y\r\n\r\n";
    let o = run(Hs::Connect, &p, "h", 443, reply.as_bytes());
    let (reason, err) = o.failure();
    assert_eq!(reason, Reason::ProxyRefused);
    assert_eq!(err, "proxy refused CONNECT to h:443: 403 Deniedfor ******");
    // Bytes beyond ASCII (obs-text) are legal too: nothing of them is quoted.
    let reply = b"HTTP/1.1 403 Denied \x80\xff\x1b\r\n\r\n";
    let o = run(Hs::Connect, &p, "h", 443, reply);
    let (_, err) = o.failure();
    assert!(
        err.chars().all(|c| c.is_ascii_graphic() || c == ' '),
        "{err:?}"
    );
}

#[test]
fn connect_answer_that_is_not_http_is_protocol() {
    let o = run(
        Hs::Connect,
        &proxy(ProxyProtocol::Http),
        "h",
        443,
        b"\x05\x00",
    );
    o.assert_fails(Reason::ProxyProtocol, "not HTTP");
}
