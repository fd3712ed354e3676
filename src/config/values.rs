//! Value types of the config file, each checked *inside* deserialisation so
//! that a bad value is reported at its own line, column and field path.
//!
//! Why a hand-written visitor ([`Validate`]) rather than `#[serde(try_from)]`:
//! serde_yaml_ng attaches a position only to errors raised while the value is
//! being visited; an error from a later conversion loses it.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::redact_entry;

/// A duration in YAML: a number of seconds (`5`, `0.5`) or a string with
/// units as Prometheus writes them (`500ms`, `30s`, `1m30s`, `1h`, `2d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Seconds(pub(super) Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "a duration such as 5, 500ms or 30s", |s| {
            scalar_duration(s).map(Seconds)
        })
    }
}

/// A YAML scalar (or list of numbers) handed to a validating closure *inside*
/// the visitor, so that serde_yaml_ng attributes a failed check to the
/// value's own line, column and field path.
enum Scalar {
    Num(f64),
    Str(String),
    List(Vec<f64>),
}

struct Validate<F>(F, &'static str);

impl<'de, R, F: FnOnce(Scalar) -> Result<R, String>> serde::de::Visitor<'de> for Validate<F> {
    type Value = R;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<R, E> {
        (self.0)(Scalar::Num(v as f64)).map_err(E::custom)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<R, E> {
        (self.0)(Scalar::Num(v as f64)).map_err(E::custom)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<R, E> {
        (self.0)(Scalar::Num(v)).map_err(E::custom)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<R, E> {
        (self.0)(Scalar::Str(v.to_string())).map_err(E::custom)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<R, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element::<f64>()? {
            v.push(x);
        }
        (self.0)(Scalar::List(v)).map_err(serde::de::Error::custom)
    }
}

fn validated<'de, D, R>(
    d: D,
    expecting: &'static str,
    f: impl FnOnce(Scalar) -> Result<R, String>,
) -> Result<R, D::Error>
where
    D: serde::Deserializer<'de>,
{
    d.deserialize_any(Validate(f, expecting))
}

fn scalar_duration(s: Scalar) -> Result<Duration, String> {
    match s {
        Scalar::Num(n) => secs_f64(n),
        Scalar::Str(s) => parse_duration(&s),
        Scalar::List(_) => Err("expected a duration such as 5, 500ms or 30s, got a list".into()),
    }
}

fn secs_f64(n: f64) -> Result<Duration, String> {
    if !n.is_finite() || !(0.0..=1e9).contains(&n) {
        return Err(format!(
            "invalid duration {n}: expected a non-negative number of seconds"
        ));
    }
    Ok(Duration::from_secs_f64(n))
}

/// Duration units, longest spelling first so `ms` is not read as `m`; the
/// factor is seconds. Prometheus' set (a year is 365 days).
const UNITS: [(&str, f64); 7] = [
    ("ms", 0.001),
    ("y", 365.0 * 86_400.0),
    ("w", 7.0 * 86_400.0),
    ("d", 86_400.0),
    ("h", 3_600.0),
    ("m", 60.0),
    ("s", 1.0),
];

/// Parse a duration as Prometheus writes them, `1m30s`, `1h`, `2d`, `500ms`
/// (units y w d h m s ms, largest first, each at most once), also with a
/// decimal (`1.5s`), or a bare number of seconds (`5`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "invalid duration {s:?}: expected e.g. 30s, 1m30s, 500ms, 1h or 2d \
             (units y, w, d, h, m, s, ms; a bare number is seconds)"
        )
    };
    if let Ok(n) = s.parse::<f64>() {
        return secs_f64(n);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total = 0.0;
    // Index into UNITS of the last unit seen, ordered by size (ms smallest).
    let mut last_size: Option<usize> = None;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, after) = rest.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let (unit, factor) = UNITS
            .iter()
            .find(|(u, _)| after.starts_with(u))
            .copied()
            .ok_or_else(bad)?;
        // Sizes: y=6 .. s=1, ms=0. Each unit must be smaller than the previous.
        let size = match unit {
            "ms" => 0,
            _ => UNITS.len() - UNITS.iter().position(|(u, _)| *u == unit).unwrap_or(0),
        };
        if last_size.is_some_and(|prev| size >= prev) {
            return Err(format!(
                "invalid duration {s:?}: units must go from largest to smallest, each once (e.g. 1h30m)"
            ));
        }
        last_size = Some(size);
        total += n * factor;
        rest = &after[unit.len()..];
    }
    secs_f64(total)
}

/// An `http://` or `https://` URL without userinfo.
///
/// `user:password@` in a target URL is refused: the request line of an
/// absolute-form request carries the whole URL to every HTTP proxy in
/// clear, and the URL is shown in errors and on the status page. Target
/// credentials go in `headers` (`Authorization: Basic ...`), which are
/// secrets, and are dropped on a redirect to another origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(pub(super) url::Url);

impl TryFrom<String> for TargetUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let must = "must be an absolute http:// or https:// URL, e.g. https://example.com/health";
        // Masked first, by where userinfo sits (up to the last `@` of the
        // authority), so a URL that does not parse is quoted without it.
        let shown = redact_entry(s.trim());
        let u = url::Url::parse(s.trim()).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => {
                format!("invalid target_url {shown:?}: {must}")
            }
            e => format!("invalid target_url {shown:?}: {e}; {must}"),
        })?;
        if !u.username().is_empty() || u.password().is_some() {
            let mut bare = u.clone();
            let _ = bare.set_password(None);
            let _ = bare.set_username("");
            return Err(format!(
                "target_url {:?} must not carry user:password@ (it would be sent in clear to \
                 every HTTP proxy and shown in errors): give \
                 headers: {{Authorization: \"Basic <base64 of user:password>\"}} instead",
                bare.as_str()
            ));
        }
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
            return Err(format!("invalid target_url {shown:?}: {must}"));
        }
        Ok(TargetUrl(u))
    }
}

impl<'de> Deserialize<'de> for TargetUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "an http:// or https:// URL", |s| match s {
            Scalar::Str(s) => TargetUrl::try_from(s),
            _ => Err("expected an http:// or https:// URL".into()),
        })
    }
}

/// A non-empty list of HTTP status codes (100..=599); accepts `[200, 204]` or `"200,204"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(pub(super) Vec<u16>);

impl std::str::FromStr for StatusCodes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let codes = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("invalid status code {p:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        StatusCodes::checked(codes)
    }
}

impl StatusCodes {
    fn checked(codes: Vec<u16>) -> Result<Self, String> {
        if codes.is_empty() {
            return Err("expected_status_codes must not be empty".into());
        }
        if let Some(bad) = codes.iter().find(|c| !(100..=599).contains(*c)) {
            return Err(format!("invalid status code {bad}: expected 100..599"));
        }
        Ok(StatusCodes(codes))
    }
}

impl<'de> Deserialize<'de> for StatusCodes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn code(n: f64) -> Result<u16, String> {
            if n.fract() != 0.0 || !(0.0..=65535.0).contains(&n) {
                return Err(format!("invalid status code {n}"));
            }
            Ok(n as u16)
        }
        validated(d, "a status code or a list of them", |s| match s {
            Scalar::Num(n) => StatusCodes::checked(vec![code(n)?]),
            Scalar::Str(s) => s.parse(),
            Scalar::List(v) => {
                StatusCodes::checked(v.into_iter().map(code).collect::<Result<_, _>>()?)
            }
        })
    }
}

/// A per-attempt timeout: strictly positive, at most one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub(super) Duration);

impl Timeout {
    /// Validate a duration as a timeout.
    pub fn checked(d: Duration) -> Result<Self, String> {
        if d.is_zero() {
            return Err("timeout must be > 0".into());
        }
        if d > Duration::from_secs(3600) {
            return Err("timeout must be at most 1h".into());
        }
        Ok(Timeout(d))
    }
}

impl std::str::FromStr for Timeout {
    type Err = String;
    /// A flag's spelling: any [`parse_duration`] form, then [`Timeout::checked`].
    fn from_str(s: &str) -> Result<Self, String> {
        Timeout::checked(parse_duration(s)?)
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "a timeout in seconds (> 0)", |s| {
            Timeout::checked(scalar_duration(s)?)
        })
    }
}

/// Attempts per check, 1..=5 as pharox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts(pub(super) u8);

impl Attempts {
    /// Validate an attempt count.
    pub fn checked(n: u64) -> Result<Self, String> {
        if !(1..=5).contains(&n) {
            return Err(format!("attempts must be between 1 and 5, got {n}"));
        }
        Ok(Attempts(n as u8))
    }
}

impl<'de> Deserialize<'de> for Attempts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "a number of attempts, 1 to 5", |s| match s {
            Scalar::Num(n) if n.fract() == 0.0 && n >= 0.0 => Attempts::checked(n as u64),
            _ => Err("attempts must be a whole number between 1 and 5".into()),
        })
    }
}

/// A compiled body regex.
#[derive(Debug, Clone)]
pub(super) struct BodyRegex(pub(super) regex::Regex);

impl<'de> Deserialize<'de> for BodyRegex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "a regular expression", |s| match s {
            Scalar::Str(s) => regex::Regex::new(&s)
                .map(BodyRegex)
                .map_err(|e| format!("invalid body_regex: {e}")),
            _ => Err("expected a regular expression string".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_status_codes_parse_in_every_spelling() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("1w").unwrap(), Duration::from_secs(604_800));
        assert_eq!(
            parse_duration("1h2m3s4ms").unwrap(),
            Duration::from_millis(3_723_004)
        );
        assert_eq!(parse_duration(" 0.5 ").unwrap(), Duration::from_millis(500));
        for bad in [
            "", "s", "1x", "1m1h", "1s1s", "5 m", "-1s", "1.2.3s", "1m30",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("1m1h")
            .unwrap_err()
            .contains("largest to smallest"));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("1m30s"));
        assert_eq!("200, 204".parse::<StatusCodes>().unwrap().0, vec![200, 204]);
        assert!("".parse::<StatusCodes>().is_err());
        assert!("700".parse::<StatusCodes>().is_err());
    }

    #[test]
    fn a_target_url_without_a_scheme_says_what_is_expected() {
        for s in [
            "example.com",
            "example.com:8080",
            "ftp://example.com/",
            "http://",
        ] {
            let e = TargetUrl::try_from(s.to_string()).unwrap_err();
            assert!(
                e.contains("must be an absolute http:// or https:// URL"),
                "{s}: {e}"
            );
            assert!(!e.contains("relative URL without a base"), "{e}");
        }
        assert!(TargetUrl::try_from("https://example.com/x".to_string()).is_ok());
    }

    #[test]
    fn a_target_url_with_userinfo_is_refused_without_it() {
        for s in [
            "http://bob:hunter2@example.com/x",
            "https://bob:hunter2@example.com",
            "http://:hunter2@example.com/",
            "http://bob:hunter2@exa mple.com/",
            "http://bob:hun@ter2@example.com:99999/",
        ] {
            let e = TargetUrl::try_from(s.to_string()).unwrap_err();
            assert!(!e.contains("hunter2") && !e.contains("ter2"), "{s}: {e}");
        }
        let e = TargetUrl::try_from("http://bob:hunter2@example.com/x".to_string()).unwrap_err();
        assert!(
            e.contains("\"http://example.com/x\"") && e.contains("must not carry user:password@"),
            "{e}"
        );
    }

    #[test]
    fn timeout_flag_spelling_is_a_duration_then_the_timeout_check() {
        assert_eq!(
            "1500ms".parse::<Timeout>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!("0".parse::<Timeout>().unwrap_err(), "timeout must be > 0");
        assert_eq!(
            "5 parsecs".parse::<Timeout>().unwrap_err(),
            parse_duration("5 parsecs").unwrap_err()
        );
    }
}
