//! Secrets: the [`Secret`] type that carries every password, database URL
//! and configured header value, and the redactors every error, log line and
//! stored message goes through before it leaves the process.
//!
//! A [`Secret`] prints `***` in `Debug`, `Display` and `Serialize`;
//! [`Secret::expose`] is the only way to its value, and is called where the
//! value goes on the wire (a SOCKS5 auth message, `Proxy-Authorization`, a
//! request header, the database driver), never where text is built. So our
//! own messages cannot quote a secret: what is left is text we did not write.
//!
//! That text comes in two kinds, each with its redactor:
//! - a user's own entry quoted in a parse error ([`redact_entry`]): masked
//!   by where a password sits in its syntax (`user:***@host`,
//!   `host:port:user:***`), first, and only then cut to a bound;
//! - text from the network: a proxy's reason phrase, a `Location`, a TLS
//!   error naming a certificate ([`mask_known`]): masked wherever a known
//!   secret appears in it (as is, percent-encoded, base64), first, and only
//!   then cut.
//!
//! Free text from libraries (database errors, webhook errors) still goes
//! through [`redact_credentials`]: messages we store or log drop the whole
//! `user:password@`; echoes of a user's own line keep the username, so the
//! user can find the line ([`Userinfo`] picks between the two).

use std::fmt;
use std::sync::{Arc, LazyLock};

use base64::Engine;

/// A value that must never be printed: a proxy password, a database URL, a
/// configured header value. `Debug`, `Display` and `Serialize` give `***`;
/// [`Secret::expose`] gives the value. Deserialises from a string: a YAML
/// scalar is taken as written (`X-Api-Key: 0123` is `"0123"`), a list or a
/// map is refused without its value. (serde_json, asked for a string, names
/// a number it finds instead in its own message: callers that read
/// untrusted JSON check the type first, as the inventory does.)
///
/// One pointer wide, so that `Option<Secret>` costs a proxy without a
/// password 8 bytes, and shared by its clones, so that an inventory whose
/// proxies all carry the provider's one password holds it once.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(Arc<Box<str>>);

impl Secret {
    /// Wrap a value as soon as it is parsed.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::new(value.into().into_boxed_str()))
    }

    /// The value, for the wire. Never format it into text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when both are the same value in memory (shared, not copied).
    #[cfg(test)]
    pub(crate) fn shares_with(&self, other: &Secret) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `deserialize_string`, not `any`: YAML then hands over the
        // scalar's text as written, which a number would not round-trip.
        d.deserialize_string(SecretVisitor)
    }
}

/// Accepts a string; every other type is refused by kind, never by value
/// (serde's own `invalid_type` message would quote `12345`).
struct SecretVisitor;

/// What a non-string secret is told.
pub(crate) const QUOTE_IT: &str =
    "must be a quoted string (a YAML/JSON number or boolean is not read back as written)";

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = Secret;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(E::custom(format!("a boolean: {QUOTE_IT}")))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(E::custom(format!("a number: {QUOTE_IT}")))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(E::custom(format!("a number: {QUOTE_IT}")))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(E::custom(format!("a number: {QUOTE_IT}")))
    }
    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(E::custom(format!("bytes: {QUOTE_IT}")))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Secret, E> {
        Err(E::custom(format!("null: {QUOTE_IT}")))
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Secret, E> {
        Err(E::custom(format!("null: {QUOTE_IT}")))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(serde::de::Error::custom(format!("a list: {QUOTE_IT}")))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(serde::de::Error::custom(format!("a map: {QUOTE_IT}")))
    }
}

/// Characters of a quoted entry kept at most (after masking).
pub(crate) const QUOTE_MAX: usize = 200;

/// A user's own entry (a proxy URL or list line) made safe to quote in a
/// parse error: the password is masked by where it sits in the syntax,
/// whatever it contains (`:`, `@`, quotes, spaces), and only then is the
/// text cut to [`QUOTE_MAX`] characters. The username is kept, so the user
/// can find the entry.
///
/// - `scheme://user:pass@rest` and `user:pass@rest`: everything between the
///   first `:` of the userinfo and the last `@` goes; `rest` is kept only if
///   it reads as `host[:port]` with a valid port (`host:port@user:pass`, a
///   form some providers use, has the password after the `@`);
/// - `[v6]:port:user:pass...` and `host:port:user:pass...`: everything after
///   the third field goes (a password with `:` in it too); when the second
///   field is not a port, the fields are not where we think (`user:pass:
///   host:port`), and everything after the first goes;
/// - an unbracketed IPv6 list line keeps at most its first `:` fields
///   (over-masking the safe way).
pub fn redact_entry(s: &str) -> String {
    let (scheme, rest) = match SCHEME_RE.find(s) {
        Some(m) => (m.as_str(), &s[m.end()..]),
        None => ("", s),
    };
    let masked = if let Some(at) = rest.rfind('@') {
        let after = &rest[at + 1..];
        let after = if is_host_port(after.split(['/', '?', '#']).next().unwrap_or("")) {
            after
        } else {
            "***"
        };
        match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}{user}:***@{after}"),
            None => format!("{scheme}{}@{after}", &rest[..at]),
        }
    } else if scheme.is_empty() {
        // A list line. A bracketed IPv6 host is one field.
        let (host, fields) = match s.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((h, after)) => (format!("[{h}]"), after.strip_prefix(':')),
            None => match s.split_once(':') {
                Some((h, after)) => (h.to_string(), Some(after)),
                None => (s.to_string(), None),
            },
        };
        match fields {
            None => host,
            Some(fields) => {
                let mut parts = fields.splitn(3, ':');
                let port = parts.next().unwrap_or("");
                match (is_port(port), parts.next(), parts.next()) {
                    (false, _, _) => format!("{host}:***"),
                    (true, Some(user), Some(_)) => format!("{host}:{port}:{user}:***"),
                    (true, Some(user), None) => format!("{host}:{port}:{user}"),
                    (true, None, _) => format!("{host}:{port}"),
                }
            }
        }
    } else {
        // `scheme://user:secret` with no `@`: a "port" that is not one may
        // be a password whose `@host` was left out.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if is_host_port(&rest[..end]) {
            s.to_string()
        } else {
            let authority = &rest[..end];
            let host_end = match authority.strip_prefix('[') {
                Some(r) => r.find(']').map(|i| i + 2),
                None => authority.find(':'),
            };
            match host_end {
                Some(i) if i < authority.len() => {
                    format!("{scheme}{}:***{}", &authority[..i], &rest[end..])
                }
                _ => s.to_string(),
            }
        }
    };
    cut(&masked, QUOTE_MAX)
}

/// `1..=65535` in digits.
fn is_port(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok_and(|p| p > 0)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, the port valid when present.
fn is_host_port(s: &str) -> bool {
    if let Some(r) = s.strip_prefix('[') {
        return match r.split_once(']') {
            Some((h, "")) => !h.is_empty(),
            Some((h, after)) => !h.is_empty() && after.strip_prefix(':').is_some_and(is_port),
            None => false,
        };
    }
    match s.split_once(':') {
        None => !s.is_empty(),
        Some((h, p)) => !h.is_empty() && is_port(p),
    }
}

/// At most `max` characters of `s`, with `...` when cut.
pub(crate) fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Replace, in text we did not write (a peer's reason phrase, a `Location`,
/// a TLS error), every known secret by `***`: each as is, percent-encoded
/// (upper- and lower-case hex) and base64 (standard and URL-safe, padded or
/// not). Callers pass a password and also `user:password` (the
/// `Proxy-Authorization` token). Masking comes before any cut, so a secret
/// straddling the cut is gone whole; an empty secret is ignored.
///
/// Every occurrence goes, inside words too: a peer that knows the password
/// can wrap it in anything. So a one-letter password costs some letters of
/// the peer's text, never of ours (our own text is never passed here).
pub(crate) fn mask_known(text: &str, secrets: &[&str]) -> String {
    let mut forms: Vec<String> = Vec::new();
    // A peer's text reaches us trimmed (a reason phrase, a header value):
    // a secret with outer whitespace must be found without it too.
    let trimmed = secrets.iter().map(|s| s.trim()).filter(|t| !t.is_empty());
    let all: Vec<&str> = secrets.iter().copied().chain(trimmed).collect();
    for s in all.iter().filter(|s| !s.is_empty()) {
        let b = s.as_bytes();
        let std64 = base64::engine::general_purpose::STANDARD.encode(b);
        let url64 = base64::engine::general_purpose::URL_SAFE.encode(b);
        let pct = percent_encode(s);
        forms.extend([
            s.to_string(),
            pct.to_ascii_lowercase(),
            pct,
            std64.trim_end_matches('=').to_string(),
            url64.trim_end_matches('=').to_string(),
        ]);
    }
    forms.retain(|f| !f.is_empty());
    // Longest first, so a form containing another goes whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    let mut out = text.to_string();
    for f in &forms {
        if out.contains(f.as_str()) {
            out = out.replace(f.as_str(), "***");
        }
    }
    out
}

/// Every byte outside RFC 3986's unreserved set as `%XX` (upper-case hex).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What of a `user:password@` survives redaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Userinfo {
    /// `scheme://user:password@host` -> `scheme://***@host`.
    Drop,
    /// `scheme://user:password@host` -> `scheme://user:***@host`, and the list
    /// form `host:port:user:password` -> `host:port:user:***`.
    KeepUsername,
}

static CREDENTIALS_RE: LazyLock<regex::Regex> = LazyLock::new(|| {
    // scheme://user:pass@ or bare user:pass@ ; the password part is greedy up
    // to the last '@' of the token so a password containing '@' is removed whole.
    regex::Regex::new(
        r#"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)?(?P<user>[^\s/@:'"<>]*):[^\s'"<>]*@"#,
    )
    .expect("static regex compiles")
});

static SCHEME_RE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[A-Za-z][A-Za-z0-9+.\-]*://").expect("static regex compiles")
});

/// Replace the password (and, with [`Userinfo::Drop`], the username) of every
/// credential in `s` by `***`.
///
/// Recognised, in this order:
/// - `s` is one URL (`scheme://` at the start, no other `://`): everything up
///   to its last `@` is userinfo, even a password with spaces or `@` in it
///   (over-redacting a trailing `x@y` is the safe side of that bet);
/// - `s` is one `host:port:user:password` list line (no `://`, no `@`, no
///   whitespace, exactly four `:`-separated fields): the fourth field;
/// - anywhere in free text: every `scheme://user:password@` and bare
///   `user:password@` token.
///
/// A `user@host` without a password is left alone, as is `mail me at a@b`.
pub fn redact_credentials(s: &str, userinfo: Userinfo) -> String {
    if !s.contains('@') && !s.contains(':') {
        return s.to_string();
    }
    let one_url = SCHEME_RE.find(s).filter(|_| s.matches("://").count() == 1);
    if let Some(m) = one_url {
        let rest = &s[m.end()..];
        if let Some(at) = rest.rfind('@') {
            let (user, has_password) = match rest[..at].split_once(':') {
                Some((u, _)) => (u, true),
                None => (&rest[..at], false),
            };
            if !has_password {
                return s.to_string();
            }
            let masked = match userinfo {
                Userinfo::Drop => "***".to_string(),
                Userinfo::KeepUsername => format!("{user}:***"),
            };
            return format!("{}{masked}@{}", m.as_str(), &rest[at + 1..]);
        }
        return s.to_string();
    }
    if !s.contains('@') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() == 4 && !s.contains(char::is_whitespace) {
            return match userinfo {
                Userinfo::Drop => format!("{}:{}:***", parts[0], parts[1]),
                Userinfo::KeepUsername => format!("{}:{}:{}:***", parts[0], parts[1], parts[2]),
            };
        }
        return s.to_string();
    }
    let replacement = match userinfo {
        Userinfo::Drop => "${scheme}***@",
        Userinfo::KeepUsername => "${scheme}${user}:***@",
    };
    CREDENTIALS_RE.replace_all(s, replacement).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Free text, as stored in pharox's tables and logged: username dropped.
    #[test]
    fn drop_removes_user_and_password() {
        let cases = [
            (
                "connect to socks5://alice:s3cret@10.0.0.1:1080 failed",
                "socks5://***@10.0.0.1:1080",
            ),
            ("proxy bob:pa@ss@host:1 refused", "***@host:1"),
            (
                "http://u:p@h and https://x:y@z",
                "http://***@h and https://***@z",
            ),
        ];
        for (input, want) in cases {
            let out = redact_credentials(input, Userinfo::Drop);
            assert!(out.contains(want), "{input} -> {out}");
            for secret in ["s3cret", "pa@ss", ":p@", ":y@"] {
                assert!(!out.contains(secret), "{input} -> {out}");
            }
        }
        assert_eq!(
            redact_credentials("timeout after 5s", Userinfo::Drop),
            "timeout after 5s"
        );
        assert_eq!(
            redact_credentials("mail me at a@b", Userinfo::Drop),
            "mail me at a@b"
        );
        assert_eq!(
            redact_credentials("postgresql://bob:hunter2@h:5432/db", Userinfo::Drop),
            "postgresql://***@h:5432/db"
        );
        assert_eq!(
            redact_credentials("timeout via http://u:pw@10.0.0.1:3001", Userinfo::Drop),
            "timeout via http://***@10.0.0.1:3001"
        );
        // An IPv6 address in a message is not a list line.
        assert_eq!(
            redact_credentials("connect to fd00::1:3128 refused", Userinfo::Drop),
            "connect to fd00::1:3128 refused"
        );
    }

    // A user's own inventory line quoted in an error: username kept.
    #[test]
    fn keep_username_masks_only_the_password() {
        let cases = [
            ("http://alice:hunter2@:99999", "http://alice:***@:99999"),
            ("socks5://alice:hunter2@host:0", "socks5://alice:***@host:0"),
            ("h:notaport:alice:hunter2", "h:notaport:alice:***"),
            ("http://alice:hunter2@h:1/path", "http://alice:***@h:1/path"),
            // A password with '@' or a space is masked whole.
            ("http://alice:hun@ter2@h:1", "http://alice:***@h:1"),
            ("http://alice:hun ter2@h:99999", "http://alice:***@h:99999"),
            ("http://:hunter2@h:1", "http://:***@h:1"),
            // No password: nothing to hide.
            ("http://alice@h:1", "http://alice@h:1"),
            ("h:1", "h:1"),
            ("h:1:2", "h:1:2"),
        ];
        for (input, want) in cases {
            assert_eq!(
                redact_credentials(input, Userinfo::KeepUsername),
                want,
                "{input}"
            );
        }
        // Free text (a serde message quoting a value) still loses the password.
        let out = redact_credentials(
            "invalid value: \"socks5://alice:hunter2@h:1\", expected a URL",
            Userinfo::KeepUsername,
        );
        assert!(
            out.contains("socks5://alice:***@h:1") && !out.contains("hunter2"),
            "{out}"
        );
    }

    #[test]
    fn a_secret_prints_stars_everywhere() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
        // YAML scalars as written; JSON non-strings refused by kind only.
        let y: std::collections::BTreeMap<String, Secret> =
            serde_yaml_ng::from_str("a: 0123\nb: true\n").unwrap();
        assert_eq!((y["a"].expose(), y["b"].expose()), ("0123", "true"));
        // A YAML list or map is refused by kind (serde_json, asked for a
        // string, names a number itself: the inventory checks the type first).
        let e = serde_yaml_ng::from_str::<Secret>("[hunter2]")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn entries_are_masked_by_syntax_then_cut() {
        let cases = [
            ("user:hunter2@h:1", "user:***@h:1"),
            ("user:hun:ter@2@h:1", "user:***@h:1"),
            ("http://user:hun\"ter 2@h:1", "http://user:***@h:1"),
            ("h:1:user:hun:ter2", "h:1:user:***"),
            ("[::1]:8080:user:pa:ss", "[::1]:8080:user:***"),
            ("user:hunter2:h:1", "user:***"),
            ("h:1@user:hunter2", "h:***@***"),
            ("http://h:1@user:hunter2", "http://h:***@***"),
            ("http://user:hunter2", "http://user:***"),
            ("http://[::1]:hunter2/x", "http://[::1]:***/x"),
            ("fd00::1:8080:user:hunter2", "fd00:***"),
            ("h:1:user", "h:1:user"),
            ("http://h:1/x", "http://h:1/x"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_entry(input), want, "{input}");
        }
        // Masked before the cut: a password past the bound is gone whole.
        let long = format!("http://u:{}hunter2@h:1", "x".repeat(500));
        let out = redact_entry(&long);
        assert_eq!(out, "http://u:***@h:1");
        let long = format!("{}:1:u:hunter2", "h".repeat(300));
        let out = redact_entry(&long);
        assert!(!out.contains("hunter2") && out.ends_with("..."), "{out}");
    }

    #[test]
    fn known_secrets_are_masked_in_every_form() {
        let pw = "p@ss w0rd";
        let token = base64::engine::general_purpose::STANDARD.encode(format!("u:{pw}"));
        let text = format!("a {pw} b p%40ss%20w0rd c p%40ss%20w0rd d {token} e");
        let out = mask_known(&text, &[pw, &format!("u:{pw}")]);
        // Padding is not part of the masked form: what is left is only `=`.
        assert_eq!(out, "a *** b *** c *** d ***= e", "{out}");
        assert_eq!(mask_known("nothing here", &["", "zz"]), "nothing here");
    }

    #[test]
    fn a_secret_with_outer_whitespace_is_masked_when_a_peer_trimmed_it() {
        // A reason phrase echoing `Zq?=a+A ` arrives trimmed, and our own
        // `[400]` after it would rebuild the exact secret around the cut.
        assert_eq!(
            mask_known("tinyproxy Zq?=a+A [400]", &["Zq?=a+A "]),
            "tinyproxy ***[400]"
        );
        assert_eq!(
            mask_known("tinyproxy Zq?=a+A", &[" Zq?=a+A "]),
            "tinyproxy ***"
        );
    }

    #[test]
    fn the_list_form_is_masked_in_both_modes() {
        assert_eq!(
            redact_credentials("h:80:alice:hunter2", Userinfo::Drop),
            "h:80:***"
        );
    }
}
