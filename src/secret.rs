//! Credentials in text: the one redactor every error, log line and stored
//! message goes through before it leaves the process.
//!
//! Two kinds of callers use it. Messages we store or log (database errors,
//! probe errors written to pharox's tables, webhook errors) drop the whole
//! `user:password@`: the username is nobody's business there either. Echoes of
//! a user's own inventory line (a malformed proxy URL quoted in an error) keep
//! the username, so the user can find the line, and mask only the password.
//! [`Userinfo`] picks between the two; what counts as a credential is the same.

use std::sync::LazyLock;

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
    fn the_list_form_is_masked_in_both_modes() {
        assert_eq!(
            redact_credentials("h:80:alice:hunter2", Userinfo::Drop),
            "h:80:***"
        );
    }
}
