//! Value types of the config file, each checked *inside* deserialisation so
//! that a bad value is reported at its own line, column and field path.
//!
//! Why a hand-written visitor ([`Validate`]) rather than `#[serde(try_from)]`:
//! serde_yaml_ng attaches a position only to errors raised while the value is
//! being visited; an error from a later conversion loses it.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A duration in YAML: a number of seconds (`5`, `0.5`) or a string with a
/// unit (`500ms`, `30s`, `5m`, `1h`).
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

/// Parse `500ms`, `30s`, `5m`, `1h`, `1.5s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 30s, 5m, 1h"))?;
    let factor = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {s:?}: expected ms, s, m or h"
            ))
        }
    };
    secs_f64(n * factor)
}

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(pub(super) url::Url);

impl TryFrom<String> for TargetUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let u = url::Url::parse(s.trim()).map_err(|e| format!("invalid target_url {s:?}: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
            return Err(format!(
                "invalid target_url {s:?}: expected an http:// or https:// URL with a host"
            ));
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
        assert_eq!("200, 204".parse::<StatusCodes>().unwrap().0, vec![200, 204]);
        assert!("".parse::<StatusCodes>().is_err());
        assert!("700".parse::<StatusCodes>().is_err());
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
