//! Proxy judges: reading a judge's answer (the exit IP and the request
//! headers it received) and deciding from it how much of us a proxy hides.
//!
//! Three formats are read, tried in this order:
//!
//! - **JSON** (httpbin, our own `pharox-exporter judge`): an object with
//!   `origin` (or ipify's `ip`) and optionally a `headers` object. httpbin
//!   writes `origin` as `"a, b"`: the `X-Forwarded-For` entries it received,
//!   then the peer. The exit IP is the address the judge saw the TCP
//!   connection come from, so it is the **last** entry; the earlier ones are
//!   forwarded addresses and count as an `x-forwarded-for` header (unless the
//!   `headers` object carries one already).
//! - **A bare IP** in plain text (ipify, `icanhazip`): the exit IP only; no
//!   headers are shown.
//! - **CGI variables** (`azenv.php` and the classic judges): lines
//!   `REMOTE_ADDR = 1.2.3.4`, `HTTP_X_FORWARDED_FOR = ...`, `HTTP_VIA = ...`,
//!   possibly inside HTML. `REMOTE_ADDR` is the exit IP; each `HTTP_*`
//!   variable is a header (`HTTP_X_FORWARDED_FOR` -> `x-forwarded-for`).
//!
//! Anything else, or one of these without an exit IP, is unparsable: the
//! check fails with `judge_unparsable`, never passes silently.
//!
//! The answer is never quoted in errors: a judge echoes every header it
//! got, and a broken proxy may forward our `Proxy-Authorization` to it.

use std::net::{IpAddr, SocketAddr};

use super::request::ips_in;
use super::StepError;
use crate::model::{Anonymity, Exit, Reason};

/// What a judge said it saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JudgeAnswer {
    /// The address the judge saw the connection come from.
    pub(crate) exit_ip: IpAddr,
    /// The request headers the judge received (names lower case), or `None`
    /// when its format shows none (a bare IP, JSON without `headers`).
    pub(crate) headers: Option<Vec<(String, String)>>,
}

/// Headers that carry a client address: one of ours in any of them makes
/// the proxy transparent. Checked in this order; the first decides.
const ADDRESS_HEADERS: [&str; 12] = [
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "client-ip",
    "via",
    "x-client-ip",
    "true-client-ip",
    "x-originating-ip",
    "x-forwarded",
    "forwarded-for",
    "x-proxyuser-ip",
    "x-tinyproxy",
];

/// Headers only a proxy adds: any of them (without our address) makes the
/// proxy anonymous rather than elite. Checked in this order.
const PROXY_HEADERS: [&str; 16] = [
    "via",
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "client-ip",
    "x-proxy-id",
    "proxy-connection",
    "x-client-ip",
    "true-client-ip",
    "x-originating-ip",
    "x-forwarded",
    "forwarded-for",
    "x-proxyuser-ip",
    "x-tinyproxy",
    "x-bluecoat-via",
    "proxy-agent",
];

/// Parse a judge's answer (see the module docs for the formats). The error
/// says why, without quoting the answer.
pub(crate) fn parse(body: &[u8]) -> Result<JudgeAnswer, &'static str> {
    let text = String::from_utf8_lossy(body);
    let t = text.trim_start_matches('\u{feff}').trim();
    if t.is_empty() {
        return Err("empty answer");
    }
    if t.starts_with('{') {
        return parse_json(t);
    }
    if let Some(ip) = parse_ip(t) {
        return Ok(JudgeAnswer {
            exit_ip: ip,
            headers: None,
        });
    }
    parse_cgi(t)
}

/// An IP literal, optionally with a port (`1.2.3.4:5678`, `[::1]:80`) or
/// in brackets.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .and_then(|v| v.parse::<IpAddr>().ok())
}

fn parse_json(t: &str) -> Result<JudgeAnswer, &'static str> {
    let v: serde_json::Value = serde_json::from_str(t).map_err(|_| "not valid JSON")?;
    let obj = v.as_object().ok_or("JSON that is not an object")?;
    let origin = obj
        .get("origin")
        .or_else(|| obj.get("ip"))
        .and_then(serde_json::Value::as_str)
        .ok_or("JSON without an \"origin\" (or \"ip\") string")?;
    let mut chain = Vec::new();
    for part in origin.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        chain.push(parse_ip(part).ok_or("an \"origin\" that is not a list of IP addresses")?);
    }
    let exit_ip = chain.pop().ok_or("an empty \"origin\"")?;
    let mut headers = obj
        .get("headers")
        .and_then(serde_json::Value::as_object)
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| header_value(v).map(|v| (k.to_ascii_lowercase(), v)))
                .collect::<Vec<_>>()
        });
    if !chain.is_empty() {
        let forwarded = chain
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let h = headers.get_or_insert_with(Vec::new);
        if !h.iter().any(|(k, _)| k == "x-forwarded-for") {
            h.push(("x-forwarded-for".to_string(), forwarded));
        }
    }
    Ok(JudgeAnswer { exit_ip, headers })
}

/// A header value as echo servers write it: a string, or a list of strings
/// (one per header line).
fn header_value(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .filter_map(serde_json::Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

fn parse_cgi(t: &str) -> Result<JudgeAnswer, &'static str> {
    let mut exit_ip = None;
    let mut headers = Vec::new();
    for line in t.lines() {
        let line = strip_tags(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            continue;
        }
        let value = unescape(value.trim());
        let upper = key.to_ascii_uppercase();
        if upper == "REMOTE_ADDR" {
            exit_ip = Some(parse_ip(&value).ok_or("a REMOTE_ADDR that is not an IP address")?);
        } else if let Some(name) = upper.strip_prefix("HTTP_") {
            headers.push((name.to_ascii_lowercase().replace('_', "-"), value));
        }
    }
    let exit_ip = exit_ip
        .ok_or("not a judge answer: no JSON with \"origin\", no bare IP, no REMOTE_ADDR = line")?;
    Ok(JudgeAnswer {
        exit_ip,
        headers: Some(headers),
    })
}

/// The text of one HTML line, tags dropped.
fn strip_tags(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_tag = false;
    for c in line.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The entities a PHP judge's `htmlspecialchars` writes.
fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&amp;", "&")
}

/// Our own egress addresses as far as a check knows them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OwnView<'a> {
    /// Known (configured `own_ips`, learnt from the judge, or both).
    Known(&'a [IpAddr]),
    /// Unknown; the text says why (for the error of a `min_anonymity` check).
    Unknown(&'a str),
}

/// How much of us a proxy hides, from a judge's answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    /// `None` when it cannot be told: our own IPs are unknown, or the judge
    /// shows no headers (and the exit is not ours).
    pub(crate) anonymity: Option<Anonymity>,
    /// The header that decided it (lower case); `None` for elite, for an
    /// exit IP that is ours, and when the level is unknown.
    pub(crate) header: Option<&'static str>,
    /// Our address the judge saw (the exit IP itself, or in `header`).
    pub(crate) ours: Option<IpAddr>,
    /// Why the level is unknown.
    pub(crate) unknown: Option<&'static str>,
}

/// Decide the anonymity level. Transparent: one of our IPs is the exit IP
/// or appears in an address header; anonymous: a proxy header without our
/// IP; elite: no trace. Without our own IPs, only "unknown" is honest: a
/// proxy that did not proxy at all would look elite.
pub(crate) fn classify(answer: &JudgeAnswer, own: &OwnView<'_>) -> Verdict {
    let unknown = |why: &'static str| Verdict {
        anonymity: None,
        header: None,
        ours: None,
        unknown: Some(why),
    };
    let own = match own {
        OwnView::Known(ips) => *ips,
        OwnView::Unknown(_) => return unknown("our own IPs are unknown"),
    };
    let is_ours = |ip: &IpAddr| own.iter().any(|o| o.to_canonical() == ip.to_canonical());
    if is_ours(&answer.exit_ip) {
        return Verdict {
            anonymity: Some(Anonymity::Transparent),
            header: None,
            ours: Some(answer.exit_ip),
            unknown: None,
        };
    }
    let Some(headers) = &answer.headers else {
        return unknown("the judge's answer shows no request headers");
    };
    for name in ADDRESS_HEADERS {
        for (k, v) in headers {
            if k != name {
                continue;
            }
            if let Some(ip) = ips_in(v).find(is_ours) {
                return Verdict {
                    anonymity: Some(Anonymity::Transparent),
                    header: Some(name),
                    ours: Some(ip),
                    unknown: None,
                };
            }
        }
    }
    for name in PROXY_HEADERS {
        if headers.iter().any(|(k, _)| k == name) {
            return Verdict {
                anonymity: Some(Anonymity::Anonymous),
                header: Some(name),
                ours: None,
                unknown: None,
            };
        }
    }
    Verdict {
        anonymity: Some(Anonymity::Elite),
        header: None,
        ours: None,
        unknown: None,
    }
}

/// Everything a judge check decides from the body: the [`Exit`] to report
/// (whenever the answer parsed) and whether the check passes.
///
/// - unparsable: `judge_unparsable`, no exit;
/// - the exit IP is one of the configured `own_ips`: `exit_ip_leak` (as for
///   any target: the proxy did not proxy us), anonymity transparent;
/// - below `min_anonymity` (or the level unknown while a minimum is set):
///   `anonymity`, naming the level and the header that decided it.
pub(crate) fn judge(
    body: &[u8],
    configured_own: &[IpAddr],
    own: &OwnView<'_>,
    min: Option<Anonymity>,
) -> (Option<Exit>, Result<(), StepError>) {
    let answer = match parse(body) {
        Ok(a) => a,
        Err(why) => {
            return (
                None,
                Err(StepError::new(
                    Reason::JudgeUnparsable,
                    format!("judge answer not understood ({} bytes): {why}", body.len()),
                )),
            )
        }
    };
    let v = classify(&answer, own);
    let exit = Exit {
        ip: Some(answer.exit_ip),
        anonymity: v.anonymity,
        anonymity_header: v.header.map(str::to_string),
        geo: None,
        geo_mismatch: false,
    };
    let exit_ip = answer.exit_ip;
    if configured_own
        .iter()
        .any(|o| o.to_canonical() == exit_ip.to_canonical())
    {
        let err = StepError::new(
            Reason::ExitIpLeak,
            format!("the judge saw the request come from our own address {exit_ip}"),
        );
        return (Some(exit), Err(err));
    }
    let Some(min) = min else {
        return (Some(exit), Ok(()));
    };
    let verdict = match (v.anonymity, v.header, v.ours) {
        (Some(level), _, _) if level >= min => Ok(()),
        (Some(level), Some(h), Some(ip)) => Err(format!(
            "proxy is {level}: our address {ip} in {h}; the pool requires {min}"
        )),
        (Some(level), Some(h), None) => Err(format!(
            "proxy is {level}: the judge received {h}; the pool requires {min}"
        )),
        (Some(level), None, _) => Err(format!(
            "proxy is {level}: the judge saw our own address {exit_ip}; the pool requires {min}"
        )),
        (None, _, _) => {
            let why = match own {
                OwnView::Unknown(why) => *why,
                OwnView::Known(_) => v.unknown.unwrap_or("unknown"),
            };
            Err(format!(
                "anonymity cannot be told ({why}); the pool requires {min}"
            ))
        }
    };
    (
        Some(exit),
        verdict.map_err(|e| StepError::new(Reason::Anonymity, e)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn h(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn reads_httpbin_json_with_a_forwarded_chain() {
        let a = parse(
            br#"{"origin": "10.1.1.1, 203.0.113.9", "headers": {"Host": "j", "Via": "1.1 squid"}}"#,
        )
        .unwrap();
        assert_eq!(a.exit_ip, ip("203.0.113.9"));
        assert_eq!(
            a.headers,
            h(&[
                ("host", "j"),
                ("via", "1.1 squid"),
                ("x-forwarded-for", "10.1.1.1")
            ])
        );
        // httpbin.org/ip: origin only, one address: no headers shown.
        let a = parse(b"{\n  \"origin\": \"198.51.100.4\"\n}\n").unwrap();
        assert_eq!(a.exit_ip, ip("198.51.100.4"));
        assert_eq!(a.headers, None);
        // ipify's JSON, list-valued headers, IPv6 with a port.
        let a = parse(
            br#"{"ip":"[2001:db8::5]:443","headers":{"X-Real-IP":["1.2.3.4","5.6.7.8"],"n":1}}"#,
        )
        .unwrap();
        assert_eq!(a.exit_ip, ip("2001:db8::5"));
        assert_eq!(a.headers, h(&[("x-real-ip", "1.2.3.4, 5.6.7.8")]));
    }

    #[test]
    fn reads_our_own_judges_json() {
        let a = parse(br#"{"origin":"127.0.0.23","headers":{"host":"127.0.0.1:9","x-forwarded-for":"127.0.0.1"},"method":"GET","path":"/","version":"HTTP/1.1"}"#)
            .unwrap();
        assert_eq!(a.exit_ip, ip("127.0.0.23"));
        assert_eq!(
            a.headers,
            h(&[("host", "127.0.0.1:9"), ("x-forwarded-for", "127.0.0.1")])
        );
    }

    #[test]
    fn reads_the_fixtures_of_the_other_formats() {
        let plain = include_bytes!("../../tests/fixtures/judge/ipify.txt");
        let a = parse(plain).unwrap();
        assert_eq!(a.exit_ip, ip("198.51.100.77"));
        assert_eq!(a.headers, None);

        let page = include_bytes!("../../tests/fixtures/judge/azenv.html");
        let a = parse(page).unwrap();
        assert_eq!(a.exit_ip, ip("203.0.113.50"));
        let headers = a.headers.unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-forwarded-for"), Some("192.0.2.10"));
        assert_eq!(get("via"), Some("1.1 proxy.example (squid/6.10)"));
        assert_eq!(get("user-agent"), Some("pharox-exporter/0.1.0"));
        assert_eq!(get("accept"), Some("*/*"));
        assert_eq!(get("remote-port"), None, "not an HTTP_ variable");
        assert_eq!(
            classify(
                &JudgeAnswer {
                    headers: Some(headers.clone()),
                    ..a
                },
                &OwnView::Known(&[ip("192.0.2.10")])
            ),
            Verdict {
                anonymity: Some(Anonymity::Transparent),
                header: Some("x-forwarded-for"),
                ours: Some(ip("192.0.2.10")),
                unknown: None,
            }
        );
    }

    #[test]
    fn garbage_and_answers_without_an_exit_ip_are_unparsable() {
        for body in [
            &b""[..],
            b"   \n",
            b"<html><body>It works!</body></html>",
            b"{\"origin\": 5}",
            b"{\"headers\": {}}",
            b"{\"origin\": \"not-an-ip\"}",
            b"{\"origin\": \"\"}",
            b"[1,2,3]",
            b"{broken json",
            b"HTTP_VIA = 1.1 x\nREMOTE_PORT = 5\n",
            b"REMOTE_ADDR = somewhere\n",
            b"1.2.3.4 5.6.7.8",
            b"\xff\xfe\x00garbage",
        ] {
            assert!(parse(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn classifies_transparent_anonymous_elite_and_unknown() {
        let own = [ip("192.0.2.1")];
        let known = OwnView::Known(&own);
        let ans = |headers| JudgeAnswer {
            exit_ip: ip("203.0.113.7"),
            headers,
        };
        let level = |a: &JudgeAnswer, o: &OwnView| {
            let v = classify(a, o);
            (v.anonymity, v.header)
        };
        // Our IP in X-Forwarded-For beats the Via that also is there.
        let a = ans(h(&[
            ("via", "1.1 squid"),
            ("x-forwarded-for", "10.0.0.1, 192.0.2.1"),
        ]));
        assert_eq!(
            level(&a, &known),
            (Some(Anonymity::Transparent), Some("x-forwarded-for"))
        );
        let a = ans(h(&[("forwarded", "for=\"[::ffff:192.0.2.1]\";proto=http")]));
        assert_eq!(
            level(&a, &known),
            (Some(Anonymity::Transparent), Some("forwarded"))
        );
        let a = ans(h(&[("via", "1.1 tinyproxy (tinyproxy/1.11.1)")]));
        assert_eq!(level(&a, &known), (Some(Anonymity::Anonymous), Some("via")));
        let a = ans(h(&[("x-forwarded-for", "unknown")]));
        assert_eq!(
            level(&a, &known),
            (Some(Anonymity::Anonymous), Some("x-forwarded-for"))
        );
        let a = ans(h(&[("host", "192.0.2.1"), ("user-agent", "x")]));
        assert_eq!(level(&a, &known), (Some(Anonymity::Elite), None));
        // The exit itself is ours: transparent, whatever the headers.
        let a = JudgeAnswer {
            exit_ip: ip("::ffff:192.0.2.1"),
            headers: None,
        };
        assert_eq!(level(&a, &known), (Some(Anonymity::Transparent), None));
        // Unknown: no headers shown, or our own IPs unknown.
        assert_eq!(level(&ans(None), &known), (None, None));
        let a = ans(h(&[]));
        assert_eq!(level(&a, &OwnView::Unknown("x")), (None, None));
    }

    #[test]
    fn judge_fills_the_exit_and_fails_below_the_minimum() {
        let own = [ip("127.0.0.1")];
        let body =
            br#"{"origin":"127.0.0.23","headers":{"x-forwarded-for":"127.0.0.1","via":"1.1 s"}}"#;
        let (exit, ok) = judge(body, &[], &OwnView::Known(&own), None);
        let exit = exit.unwrap();
        assert_eq!(exit.ip, Some(ip("127.0.0.23")));
        assert_eq!(exit.anonymity, Some(Anonymity::Transparent));
        assert_eq!(exit.anonymity_header.as_deref(), Some("x-forwarded-for"));
        assert!(ok.is_ok());

        let (exit, err) = judge(body, &[], &OwnView::Known(&own), Some(Anonymity::Elite));
        assert!(exit.is_some());
        let e = err.unwrap_err().at(crate::model::Phase::Body);
        assert_eq!(e.reason, Reason::Anonymity);
        assert_eq!(
            e.error,
            "proxy is transparent: our address 127.0.0.1 in x-forwarded-for; the pool requires elite"
        );

        let (_, r) = judge(
            body,
            &[],
            &OwnView::Known(&own),
            Some(Anonymity::Transparent),
        );
        assert!(r.is_ok());

        // The exit is one of the configured own_ips: exit_ip_leak.
        let (exit, err) = judge(
            body,
            &[ip("127.0.0.23")],
            &OwnView::Known(&[ip("127.0.0.23")]),
            None,
        );
        assert_eq!(exit.unwrap().anonymity, Some(Anonymity::Transparent));
        let e = err.unwrap_err().at(crate::model::Phase::Body);
        assert_eq!(e.reason, Reason::ExitIpLeak);
        assert_eq!(
            e.error,
            "the judge saw the request come from our own address 127.0.0.23"
        );

        // Unknown own IPs: reported as unknown, a minimum cannot be met.
        let (exit, err) = judge(
            b"{\"origin\":\"127.0.0.23\",\"headers\":{}}",
            &[],
            &OwnView::Unknown("our own IPs are unknown (learning them from the judge failed)"),
            Some(Anonymity::Anonymous),
        );
        assert_eq!(exit.unwrap().anonymity, None);
        let e = err.unwrap_err().at(crate::model::Phase::Body);
        assert_eq!(e.reason, Reason::Anonymity);
        assert_eq!(
            e.error,
            "anonymity cannot be told (our own IPs are unknown (learning them from the judge failed)); the pool requires anonymous"
        );

        let (exit, err) = judge(b"<html>nope</html>", &[], &OwnView::Known(&own), None);
        assert!(exit.is_none());
        let e = err.unwrap_err().at(crate::model::Phase::Body);
        assert_eq!(e.reason, Reason::JudgeUnparsable);
        assert_eq!(
            e.error,
            "judge answer not understood (17 bytes): not a judge answer: no JSON with \"origin\", no bare IP, no REMOTE_ADDR = line"
        );
    }
}

/// For any bytes: no panic. For answers we render in each format from
/// generated exits and headers: the same exit and headers read back.
#[cfg(test)]
mod proptests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        ]
    }

    /// Header names as all three formats can carry them, each once.
    fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::btree_map("[a-z][a-z0-9-]{0,20}", "[ -~]{0,40}", 0..12).prop_map(
            |m| {
                m.into_iter()
                    .map(|(k, v)| (k, v.trim().to_string()))
                    .collect()
            },
        )
    }

    fn html_escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#039;")
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body);
            let mut json = b"{".to_vec();
            json.extend_from_slice(&body);
            let _ = parse(&json);
            let mut cgi = b"REMOTE_ADDR = 127.0.0.1\nHTTP_".to_vec();
            cgi.extend_from_slice(&body);
            if let Ok(a) = parse(&cgi) {
                let _ = classify(&a, &OwnView::Known(&[a.exit_ip]));
                let _ = classify(&a, &OwnView::Unknown("x"));
            }
        }

        #[test]
        fn our_json_round_trips(exit in any_ip(), hs in headers()) {
            let map: serde_json::Map<String, serde_json::Value> = hs
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let body = serde_json::json!({
                "origin": exit.to_string(), "headers": map,
                "method": "GET", "path": "/", "version": "HTTP/1.1",
            })
            .to_string();
            let a = parse(body.as_bytes()).unwrap();
            prop_assert_eq!(a.exit_ip, exit);
            let mut got = a.headers.unwrap();
            got.sort();
            prop_assert_eq!(got, hs);
        }

        #[test]
        fn httpbin_chains_round_trip(chain in proptest::collection::vec(any_ip(), 1..5)) {
            let origin = chain.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
            let body = serde_json::json!({ "origin": origin }).to_string();
            let a = parse(body.as_bytes()).unwrap();
            prop_assert_eq!(Some(&a.exit_ip), chain.last());
            let earlier = &chain[..chain.len() - 1];
            if earlier.is_empty() {
                prop_assert_eq!(a.headers, None);
            } else {
                let xff = earlier.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
                prop_assert_eq!(a.headers, Some(vec![("x-forwarded-for".to_string(), xff)]));
            }
        }

        #[test]
        fn bare_ips_round_trip(exit in any_ip(), nl in prop_oneof![Just(""), Just("\n"), Just("\r\n")]) {
            let a = parse(format!("{exit}{nl}").as_bytes()).unwrap();
            prop_assert_eq!(a, JudgeAnswer { exit_ip: exit, headers: None });
        }

        #[test]
        fn azenv_pages_round_trip(exit in any_ip(), hs in headers()) {
            let mut page = String::from("<html><body><pre>\n");
            page.push_str(&format!("REMOTE_ADDR = {exit}\nREMOTE_PORT = 4242\n"));
            for (k, v) in &hs {
                let key = k.to_ascii_uppercase().replace('-', "_");
                page.push_str(&format!("HTTP_{key} = {}\n", html_escape(v)));
            }
            page.push_str("</pre></body></html>\n");
            let a = parse(page.as_bytes()).unwrap();
            prop_assert_eq!(a.exit_ip, exit);
            prop_assert_eq!(a.headers.unwrap(), hs);
        }
    }
}
