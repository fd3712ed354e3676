//! Property tests of every parser of bytes a proxy or target sends: SOCKS4
//! and SOCKS5 replies, CONNECT answers, response heads and bodies. For any
//! bytes: no panic, no hang (the input ends), bounded output, and an error
//! that never holds the proxy's password or its `user:password` token, even
//! when the peer echoes them around a cut. Case counts follow
//! `PROPTEST_CASES` (default 256).

use base64::Engine;
use bytes::BytesMut;
use proptest::prelude::*;

use super::{http_proxy, request, socks4, socks5};
use crate::model::{Proxy, ProxyProtocol};
use crate::secret::Secret;

/// Generated passwords: distinctive (so they never occur by chance in our
/// own text), with the characters that trip redactors.
fn password() -> impl Strategy<Value = String> {
    "Zq[A-Za-z0-9:@/ %\"'#?=+-]{6,24}"
}

fn proxy(protocol: ProxyProtocol, pass: &str) -> Proxy {
    let mut p = Proxy::new(protocol, "127.0.0.1", 1080);
    p.username = Some("user".into());
    p.password = Some(Secret::new(pass));
    p
}

/// Every form of the secret an error must not hold.
fn assert_clean(text: &str, pass: &str) -> Result<(), TestCaseError> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("user:{pass}"));
    prop_assert!(!text.contains(pass), "password in {text:?}");
    prop_assert!(!text.contains(&token), "token in {text:?}");
    prop_assert!(text.len() < 2048, "unbounded: {} bytes", text.len());
    Ok(())
}

/// Bytes a hostile peer might send: random, or an HTTP head whose reason
/// phrase or `Location` echoes the password after junk of any length, or a
/// proxy-made error (`Proxy-Status` details, tinyproxy's reason phrase,
/// squid's page) that echoes it.
fn peer_bytes(pass: String) -> impl Strategy<Value = Vec<u8>> {
    let echo = pass.clone();
    let made = pass.clone();
    prop_oneof![
        (0usize..300, 400u16..600, 0u8..3).prop_map(move |(junk, status, kind)| {
            let j = "j".repeat(junk);
            match kind {
                0 => format!(
                    "HTTP/1.1 {status} x\r\nProxy-Status: p; error=dns_error; details=\"{j}{made}\"\r\nContent-Length: 0\r\n\r\n"
                ),
                1 => format!(
                    "HTTP/1.1 {status} {j}{made}\r\nServer: tinyproxy/1.11.1\r\nConnection: close\r\n\r\n"
                ),
                _ => format!(
                    "HTTP/1.1 {status} x\r\nConnection: close\r\n\r\n(squid/5.7) <!-- ERR_{j}{made} -->"
                ),
            }
            .into_bytes()
        }),
        proptest::collection::vec(any::<u8>(), 0..600),
        (0usize..300, 100u16..600).prop_map(move |(junk, status)| {
            format!(
                "HTTP/1.1 {status} {}{echo}\r\nContent-Length: 0\r\n\r\n",
                "j".repeat(junk)
            )
            .into_bytes()
        }),
        (0usize..300).prop_map(move |junk| {
            format!(
                "HTTP/1.1 302 Found\r\nLocation: gopher://{}{pass}\r\n\r\n",
                "j".repeat(junk)
            )
            .into_bytes()
        }),
    ]
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(f)
}

proptest! {
    #[test]
    fn socks_replies_never_panic_or_leak(
        (pass, reply) in password().prop_flat_map(|p| (Just(p.clone()), peer_bytes(p))),
        v5 in any::<bool>(),
    ) {
        let p = proxy(if v5 { ProxyProtocol::Socks5 } else { ProxyProtocol::Socks4 }, &pass);
        let mut stream = tokio::io::join(&reply[..], tokio::io::sink());
        let out = block_on(async {
            if v5 {
                socks5::connect(&mut stream, &p, "127.0.0.1", 80, false).await
            } else {
                socks4::connect(&mut stream, &p, "127.0.0.1", 80, false).await
            }
        });
        if let Err(e) = out {
            assert_clean(&format!("{e:?}"), &pass)?;
        }
    }

    #[test]
    fn connect_answers_never_panic_or_leak(
        (pass, reply) in password().prop_flat_map(|p| (Just(p.clone()), peer_bytes(p))),
    ) {
        let p = proxy(ProxyProtocol::Http, &pass);
        let mut stream = tokio::io::join(&reply[..], tokio::io::sink());
        let mut buf = BytesMut::new();
        let out = block_on(http_proxy::connect_tunnel(&mut stream, &p, "example.com", 443, &mut buf));
        if let Err(e) = out {
            assert_clean(&format!("{e:?}"), &pass)?;
        }
        let _ = http_proxy::parse_connect_response(&reply);
    }

    #[test]
    fn response_heads_and_bodies_are_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        max_body in 0usize..512,
    ) {
        if let Ok(Some((head, len))) = request::parse_head(&bytes) {
            prop_assert!(len <= bytes.len());
            prop_assert!(head.location.as_ref().is_none_or(|l| l.len() <= 4096 + 3));
        }
        let mut reader = &bytes[..];
        let mut buf = BytesMut::new();
        block_on(async {
            if let Ok(head) = request::read_head(&mut reader, &mut buf, 1024).await {
                if request::read_body(&mut reader, &mut buf, &head, max_body, 1024).await.is_ok() {
                    assert!(buf.len() <= max_body, "{} > {max_body}", buf.len());
                }
            }
        });
    }

    /// The quote of a peer's text masks every occurrence of the secret,
    /// wherever a cut would fall, and stays bounded.
    #[test]
    fn peer_quotes_mask_before_they_cut(
        pass in password(),
        junk in 0usize..400,
        noise in proptest::collection::vec(any::<char>(), 0..40),
    ) {
        let p = proxy(ProxyProtocol::Http, &pass);
        let noise: String = noise.into_iter().collect();
        let text = format!("{}{pass}{noise}", "j".repeat(junk));
        let q = super::quote_peer(&text, &p, &[]);
        assert_clean(&q, &pass)?;
        prop_assert!(q.chars().count() <= 123);
    }
}
