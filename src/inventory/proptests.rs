//! Property tests of the inventory parsers (proxy URLs, the provider forms,
//! lines, CSV, YAML, JSON): no panic on any text, bounded errors, URLs and
//! lines built from generated parts parse back to the same parts, and no
//! error ever holds the generated password, whatever the entry's form.
//! Case counts follow `PROPTEST_CASES` (default 256).

use std::path::Path;

use proptest::prelude::*;

use super::{parse, parse_proxy_url, Format, Shard};
use crate::model::ProxyProtocol;
use crate::secret::{percent_encode, Secret};

/// Distinctive passwords with the characters that trip parsers and
/// redactors (`:`, `@`, `/`, `#`, `?`, quotes, spaces).
fn password() -> impl Strategy<Value = String> {
    "Zq[A-Za-z0-9:@/#?%\"' =+-]{4,24}"
}

fn user() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._-]{0,12}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "h[a-z0-9]{0,10}(\\.[a-z]{2,5}){0,2}",
        any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        any::<[u16; 8]>().prop_map(|s| std::net::Ipv6Addr::from(s).to_string()),
    ]
}

/// A host as the parser gives it back: IP addresses in canonical form.
fn norm(h: &str) -> String {
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| h.to_ascii_lowercase())
}

fn bracketed(h: &str) -> String {
    if h.contains(':') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

fn protocol() -> impl Strategy<Value = ProxyProtocol> {
    proptest::sample::select(ProxyProtocol::ALL.to_vec())
}

/// Entries that do not parse, with the password in every place a
/// malformed entry can hold it.
fn malformed(u: &str, p: &str, h: &str) -> Vec<String> {
    let hb = bracketed(h);
    vec![
        format!("http://{u}:{p}@{hb}:99999"),
        format!("http://{u}:{p}@{hb}:0"),
        format!("http://{u}:{p}@{hb}:1/path"),
        format!("http://{u}:{p}"),
        format!("{u}:{p}@{hb}:notaport"),
        format!("{u}:{p}:{hb}:1"),
        format!("{hb}:1@{u}:{p}"),
        format!("{hb}:x:{u}:{p}"),
        format!("{hb}:1:{u}"),
        format!("{h}:1:{u}:{p}"),
        format!("gopher://{u}:{p}@{hb}:1"),
    ]
}

proptest! {
    #[test]
    fn any_text_parses_or_fails_boundedly(s in "\\PC{0,300}") {
        match parse_proxy_url(&s) {
            Ok(p) => prop_assert!(p.port > 0),
            Err(e) => prop_assert!(e.len() < 1024, "{} bytes", e.len()),
        }
    }

    /// `scheme://user:pass@host:port` with both percent-encoded parses back.
    #[test]
    fn urls_round_trip(proto in protocol(), u in user(), p in password(), h in host(), port in 1u16..) {
        let url = format!(
            "{proto}://{}:{}@{}:{port}",
            percent_encode(&u),
            percent_encode(&p),
            bracketed(&h)
        );
        let got = parse_proxy_url(&url).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got.protocol, proto);
        prop_assert_eq!(norm(&got.host), norm(&h));
        prop_assert_eq!(got.port, port);
        prop_assert_eq!(got.username.as_deref(), Some(u.as_str()));
        prop_assert_eq!(got.password.as_ref().map(Secret::expose), Some(p.as_str()));
    }

    /// `host:port:user:pass` (the password as written, `:` included) and
    /// `user:pass@host:port` (percent-encoded, as in a URL) parse back.
    #[test]
    fn provider_forms_round_trip(u in user(), p in password(), h in host(), port in 1u16..) {
        let list = format!("{}:{port}:{u}:{p}", bracketed(&h));
        let got = parse_proxy_url(&list).map_err(TestCaseError::fail)?;
        let p_trimmed = p.trim_end();
        prop_assert_eq!(
            (norm(&got.host), got.port, got.username.as_deref()),
            (norm(&h), port, Some(u.as_str()))
        );
        prop_assert_eq!(got.password.as_ref().map(Secret::expose), Some(p_trimmed));
        let at = format!("{u}:{}@{}:{port}", percent_encode(&p), bracketed(&h));
        let got = parse_proxy_url(&at).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got.protocol, ProxyProtocol::Http);
        prop_assert_eq!(got.password.as_ref().map(Secret::expose), Some(p.as_str()));
    }

    #[test]
    fn errors_never_hold_the_password(u in user(), p in password(), h in host()) {
        for entry in malformed(&u, &p, &h) {
            if let Err(e) = parse_proxy_url(&entry) {
                prop_assert!(!e.contains(p.as_str()), "{entry:?} -> {e}");
                prop_assert!(!e.contains(&percent_encode(&p)), "{entry:?} -> {e}");
            }
        }
    }

    /// Whole files in every format, made of malformed entries holding the
    /// password and random lines: no panic, and no row or file error holds it.
    #[test]
    fn inventories_never_panic_or_leak(
        u in user(),
        p in password(),
        h in host(),
        noise in proptest::collection::vec("\\PC{0,60}", 0..6),
        fmt in proptest::sample::select(vec!["txt", "csv", "yaml", "json"]),
    ) {
        let entries = malformed(&u, &p, &h);
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut text = match fmt {
            "csv" => {
                let mut t = String::from("url,protocol,host,port,username,password\n");
                for e in &entries {
                    t.push_str(&format!("{},,,,,\n", q(e)));
                }
                t.push_str(&format!(",http,{},notaport,{u},{}\n", q(&h), q(&p)));
                t.push_str(&format!(",http,{},1,{u},{}\n", q(&format!("{u}:{p}")), q(&p)));
                t
            }
            "yaml" => {
                let mut t = String::new();
                for e in &entries {
                    t.push_str(&format!("- {}\n", q(e)));
                }
                t.push_str(&format!("- {{protocol: http, host: {}, port: x, password: {}}}\n", q(&h), q(&p)));
                t
            }
            "json" => {
                let items: Vec<String> = entries.iter().map(|e| q(e)).collect();
                format!("[{}]\n", items.join(",\n"))
            }
            _ => entries.join("\n") + "\n",
        };
        for n in &noise {
            text.push_str(n);
            text.push('\n');
        }
        let path = format!("inv.{fmt}");
        match parse(Path::new(&path), &text, Format::Auto, Shard::default()) {
            Ok(loaded) => {
                for e in &loaded.errors {
                    let shown = e.to_string();
                    prop_assert!(!shown.contains(p.as_str()), "{shown}");
                    prop_assert!(shown.len() < 2048);
                }
                prop_assert!(loaded.errors.len() + loaded.proxies.len() + loaded.duplicates <= text.lines().count() + 1);
            }
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(!shown.contains(p.as_str()), "{shown}");
            }
        }
    }

    #[test]
    fn arbitrary_files_never_panic(text in "\\PC{0,400}", fmt in proptest::sample::select(vec!["txt", "csv", "yaml", "json"])) {
        let _ = parse(Path::new(&format!("x.{fmt}")), &text, Format::Auto, Shard::default());
    }
}
