//! The vocabulary every other module speaks: proxies, protocols, statuses,
//! failure reasons, phases and the result of one check.
//!
//! Nothing here does I/O. Credentials live only in [`Proxy::password`], a
//! [`Secret`] that prints `***` whatever formats it; [`Proxy`] has a
//! hand-written `Debug`, and [`Proxy::redacted_url`] is the only way to
//! print a proxy's address.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::text::{Labels, Text};

/// Seconds since the Unix epoch, with milliseconds: how timestamps appear in
/// metrics and the status page.
pub(crate) fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The current time as [`unix_seconds`].
pub(crate) fn unix_now() -> f64 {
    unix_seconds(Utc::now())
}

/// How the prober talks to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// Plain HTTP proxy: absolute-form requests for `http://` targets, CONNECT for `https://`.
    Http,
    /// HTTP proxy reached over TLS (TLS to the proxy itself), then as [`ProxyProtocol::Http`].
    Https,
    /// SOCKS4: the target is resolved locally and sent as an IPv4 address.
    Socks4,
    /// SOCKS4a: the target host name is sent to the proxy, which resolves it.
    Socks4a,
    /// SOCKS5 (RFC 1928/1929) with local resolution of the target.
    Socks5,
    /// SOCKS5 with remote resolution: the host name is sent to the proxy.
    Socks5h,
}

impl ProxyProtocol {
    /// Every protocol, in a stable order (used to emit gauges at 0).
    pub const ALL: [ProxyProtocol; 6] = [
        ProxyProtocol::Http,
        ProxyProtocol::Https,
        ProxyProtocol::Socks4,
        ProxyProtocol::Socks4a,
        ProxyProtocol::Socks5,
        ProxyProtocol::Socks5h,
    ];

    /// The URL scheme and label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyProtocol::Http => "http",
            ProxyProtocol::Https => "https",
            ProxyProtocol::Socks4 => "socks4",
            ProxyProtocol::Socks4a => "socks4a",
            ProxyProtocol::Socks5 => "socks5",
            ProxyProtocol::Socks5h => "socks5h",
        }
    }

    /// The port a proxy of this protocol listens on when a URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            ProxyProtocol::Http => 8080,
            ProxyProtocol::Https => 443,
            _ => 1080,
        }
    }

    /// True for the SOCKS family.
    pub fn is_socks(self) -> bool {
        !matches!(self, ProxyProtocol::Http | ProxyProtocol::Https)
    }
}

impl fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProxyProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "http" => Ok(ProxyProtocol::Http),
            "https" => Ok(ProxyProtocol::Https),
            "socks4" => Ok(ProxyProtocol::Socks4),
            "socks4a" => Ok(ProxyProtocol::Socks4a),
            "socks5" => Ok(ProxyProtocol::Socks5),
            "socks5h" => Ok(ProxyProtocol::Socks5h),
            other => Err(format!(
                "unknown proxy protocol {other:?} (expected one of http, https, socks4, socks4a, socks5, socks5h)"
            )),
        }
    }
}

/// Health of a proxy, as pharox spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyStatus {
    /// An attempt got an expected status within `slow_threshold_ms`.
    Active,
    /// An attempt got an expected status, slower than `slow_threshold_ms`.
    Slow,
    /// Every attempt failed.
    Inactive,
    /// Set by operators in pharox; never produced by a check.
    Banned,
}

impl ProxyStatus {
    /// Every status, in a stable order (used to emit gauges at 0).
    pub const ALL: [ProxyStatus; 4] = [
        ProxyStatus::Active,
        ProxyStatus::Slow,
        ProxyStatus::Inactive,
        ProxyStatus::Banned,
    ];

    /// Label and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyStatus::Active => "active",
            ProxyStatus::Slow => "slow",
            ProxyStatus::Inactive => "inactive",
            ProxyStatus::Banned => "banned",
        }
    }

    /// ACTIVE or SLOW: the proxy works.
    pub fn is_up(self) -> bool {
        matches!(self, ProxyStatus::Active | ProxyStatus::Slow)
    }
}

impl fmt::Display for ProxyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProxyStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(ProxyStatus::Active),
            "slow" => Ok(ProxyStatus::Slow),
            "inactive" => Ok(ProxyStatus::Inactive),
            "banned" => Ok(ProxyStatus::Banned),
            other => Err(format!("unknown proxy status {other:?}")),
        }
    }
}

/// The step of a check in which time was spent or a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Resolving the proxy's host name and opening TCP to it.
    Connect,
    /// TLS to the proxy itself (HTTPS proxies only).
    ProxyTls,
    /// The proxy protocol: CONNECT, SOCKS greeting/auth/request.
    Handshake,
    /// TLS to the target, through the tunnel.
    Tls,
    /// From the request being written to the first byte of the response.
    FirstByte,
    /// Reading the rest of the response (headers and bounded body).
    Body,
}

impl Phase {
    /// Every phase, in the order a check goes through them.
    pub const ALL: [Phase; 6] = [
        Phase::Connect,
        Phase::ProxyTls,
        Phase::Handshake,
        Phase::Tls,
        Phase::FirstByte,
        Phase::Body,
    ];

    /// Label and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::ProxyTls => "proxy_tls",
            Phase::Handshake => "handshake",
            Phase::Tls => "tls",
            Phase::FirstByte => "first_byte",
            Phase::Body => "body",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check failed: a closed set an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The attempt's deadline passed; [`CheckResult::phase`] says where.
    Timeout,
    /// The proxy's port refused the TCP connection.
    ConnectRefused,
    /// Any other failure to reach the proxy (unreachable, reset during connect).
    ConnectError,
    /// A host name (the proxy's, or the target's for local-resolving SOCKS) did not resolve.
    Dns,
    /// The proxy wants credentials and none were configured.
    ProxyAuthRequired,
    /// The proxy rejected the configured credentials.
    ProxyAuthFailed,
    /// The proxy denied or could not reach the destination.
    ProxyRefused,
    /// The proxy answered something that is not its protocol (garbage, wrong version),
    /// or the declared protocol cannot carry the request (SOCKS4 and an IPv6 target).
    ProxyProtocol,
    /// TLS failed (to the proxy for HTTPS proxies, or to the target).
    Tls,
    /// The connection was closed or reset by the peer after it was open.
    ConnectionReset,
    /// The target answered, with a status not in `expected_status_codes`.
    UnexpectedStatus,
    /// The response was not valid HTTP/1.x, or exceeded the header limit.
    Http,
    /// A configured body check (contains / regex) did not match.
    BodyMismatch,
    /// The exit IP reported by the target is one of ours: the proxy does not hide us.
    ExitIpLeak,
    /// Too many redirects, or a redirect without a usable Location.
    Redirect,
    /// The proxy answered with an error page or status of its own making
    /// (RFC 9209 `Proxy-Status`, squid's `X-Squid-Error`, a stock error
    /// page): it could not reach or use the target. The proxy's own error
    /// type is in [`CheckResult::error`].
    ProxyUpstream,
    /// The judge's answer could not be read (not one of the judge formats,
    /// or no exit IP in it): never a silent pass.
    JudgeUnparsable,
    /// The proxy hides us less than the pool's `min_anonymity` requires.
    Anonymity,
    /// The exit's country differs from the one the inventory declares, and
    /// the pool's `geo_policy` is `fail`.
    GeoMismatch,
    /// Not the proxy's fault: the exporter itself had no file descriptor
    /// left to dial it (EMFILE/ENFILE). Such a check counts as not done
    /// ([`CheckResult::is_unchecked`]): never recorded as a status.
    LocalResources,
}

impl Reason {
    /// Every reason, in a stable order.
    pub const ALL: [Reason; 20] = [
        Reason::Timeout,
        Reason::ConnectRefused,
        Reason::ConnectError,
        Reason::Dns,
        Reason::ProxyAuthRequired,
        Reason::ProxyAuthFailed,
        Reason::ProxyRefused,
        Reason::ProxyProtocol,
        Reason::Tls,
        Reason::ConnectionReset,
        Reason::UnexpectedStatus,
        Reason::Http,
        Reason::BodyMismatch,
        Reason::ExitIpLeak,
        Reason::Redirect,
        Reason::ProxyUpstream,
        Reason::JudgeUnparsable,
        Reason::Anonymity,
        Reason::GeoMismatch,
        Reason::LocalResources,
    ];

    /// Label and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::ConnectRefused => "connect_refused",
            Reason::ConnectError => "connect_error",
            Reason::Dns => "dns",
            Reason::ProxyAuthRequired => "proxy_auth_required",
            Reason::ProxyAuthFailed => "proxy_auth_failed",
            Reason::ProxyRefused => "proxy_refused",
            Reason::ProxyProtocol => "proxy_protocol",
            Reason::Tls => "tls",
            Reason::ConnectionReset => "connection_reset",
            Reason::UnexpectedStatus => "unexpected_status",
            Reason::Http => "http",
            Reason::BodyMismatch => "body_mismatch",
            Reason::ExitIpLeak => "exit_ip_leak",
            Reason::Redirect => "redirect",
            Reason::ProxyUpstream => "proxy_upstream",
            Reason::JudgeUnparsable => "judge_unparsable",
            Reason::Anonymity => "anonymity",
            Reason::GeoMismatch => "geo_mismatch",
            Reason::LocalResources => "local_resources",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One proxy to check, as an inventory yields it.
///
/// Kept small (120 bytes, against 192 with `String` fields): an exporter
/// holds one per proxy of its inventory, a million of them at the largest.
/// Strings are [`Text`] (inline up to 15 bytes, shared beyond), so an
/// address costs no allocation and a pool or provider name one for the
/// whole inventory; labels and a password are a pointer each.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proxy {
    /// Stable identity: given by the inventory, or [`Proxy::derive_id`].
    pub id: Text,
    /// How to talk to it.
    pub protocol: ProxyProtocol,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: Text,
    /// TCP port.
    pub port: u16,
    /// Optional user name (SOCKS5 RFC 1929, HTTP Basic, SOCKS4 user id).
    pub username: Option<Text>,
    /// Optional password. Never printed, logged or exported: a [`Secret`].
    #[serde(skip_serializing)]
    pub password: Option<Secret>,
    /// Pool label (`default` when the inventory names none).
    pub pool: Text,
    /// Provider label (`unknown` when the inventory names none).
    pub provider: Text,
    /// Free-form labels carried from the inventory; never exported as metric labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// The country the proxy is sold as (ISO 3166-1 alpha-2, upper case),
    /// from an inventory column or pharox's `proxy.country`; compared with
    /// the exit's geolocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Text>,
}

/// Pool label used when the inventory gives none.
pub(crate) const DEFAULT_POOL: &str = "default";
/// Provider label used when the inventory gives none.
pub(crate) const DEFAULT_PROVIDER: &str = "unknown";

impl Proxy {
    /// A proxy with default pool/provider and an id derived from its address.
    pub fn new(protocol: ProxyProtocol, host: impl Into<Text>, port: u16) -> Self {
        let host = host.into();
        let id = Self::derive_id(protocol, None, &host, port).into();
        Proxy {
            id,
            protocol,
            host,
            port,
            username: None,
            password: None,
            pool: DEFAULT_POOL.into(),
            provider: DEFAULT_PROVIDER.into(),
            labels: Labels::new(),
            country: None,
        }
    }

    /// A stable id from protocol, user, host and port; never from the password,
    /// so a rotated password keeps the proxy's history and the id leaks nothing.
    pub fn derive_id(
        protocol: ProxyProtocol,
        username: Option<&str>,
        host: &str,
        port: u16,
    ) -> String {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_ascii_lowercase()
        };
        match username {
            Some(u) if !u.is_empty() => format!("{}://{}@{}:{}", protocol.as_str(), u, host, port),
            _ => format!("{}://{}:{}", protocol.as_str(), host, port),
        }
    }

    /// `host:port` with IPv6 literals bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The proxy URL with the password replaced by `***`: the only printable form.
    pub fn redacted_url(&self) -> String {
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{}://{}:***@{}", self.protocol, u, self.authority()),
            (Some(u), None) => format!("{}://{}@{}", self.protocol, u, self.authority()),
            (None, Some(_)) => format!("{}://:***@{}", self.protocol, self.authority()),
            (None, None) => format!("{}://{}", self.protocol, self.authority()),
        }
    }

    /// True when a username or password is configured.
    pub fn has_credentials(&self) -> bool {
        self.username.is_some() || self.password.is_some()
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("id", &self.id)
            .field("url", &self.redacted_url())
            .field("pool", &self.pool)
            .field("provider", &self.provider)
            .field("labels", &self.labels)
            .field("country", &self.country)
            .finish()
    }
}

/// Time spent in each phase of the attempt that decided the result, in
/// milliseconds (fractional). A phase not reached, or not applicable, is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// Resolve + TCP connect to the proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    /// TLS to the proxy (HTTPS proxies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_tls_ms: Option<f64>,
    /// The proxy protocol handshake (CONNECT / SOCKS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_ms: Option<f64>,
    /// TLS to the target through the tunnel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ms: Option<f64>,
    /// Request written to first response byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<f64>,
    /// Rest of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_ms: Option<f64>,
    /// Whole attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
}

impl Phases {
    /// Record the duration of one phase.
    pub fn set(&mut self, phase: Phase, d: Duration) {
        // Microsecond resolution: finer digits are noise and bloat every JSON line.
        let ms = Some((d.as_secs_f64() * 1e6).round() / 1e3);
        match phase {
            Phase::Connect => self.connect_ms = ms,
            Phase::ProxyTls => self.proxy_tls_ms = ms,
            Phase::Handshake => self.handshake_ms = ms,
            Phase::Tls => self.tls_ms = ms,
            Phase::FirstByte => self.first_byte_ms = ms,
            Phase::Body => self.body_ms = ms,
        }
    }

    /// The recorded duration of one phase, in milliseconds.
    pub fn get(&self, phase: Phase) -> Option<f64> {
        match phase {
            Phase::Connect => self.connect_ms,
            Phase::ProxyTls => self.proxy_tls_ms,
            Phase::Handshake => self.handshake_ms,
            Phase::Tls => self.tls_ms,
            Phase::FirstByte => self.first_byte_ms,
            Phase::Body => self.body_ms,
        }
    }
}

/// The outcome of checking one proxy (all attempts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The proxy's id.
    pub proxy_id: String,
    /// ACTIVE, SLOW or INACTIVE.
    pub status: ProxyStatus,
    /// Latency of the deciding attempt; for INACTIVE, the timeout (as pharox).
    pub latency_ms: u64,
    /// Wall-clock time of the whole check, every attempt included: how long
    /// a failure really took (a refused connection fails in a millisecond,
    /// while `latency_ms` reports the timeout, as pharox does).
    #[serde(default)]
    pub elapsed_ms: u64,
    /// Attempts made (1..=attempts).
    pub attempts: u8,
    /// HTTP status of the last response seen, if any.
    pub status_code: Option<u16>,
    /// Why the last attempt failed; `None` when the proxy is up.
    pub reason: Option<Reason>,
    /// Phase the failure happened in; `None` when the proxy is up.
    pub phase: Option<Phase>,
    /// Human-readable error, free of credentials.
    pub error: Option<String>,
    /// When the check finished.
    pub checked_at: DateTime<Utc>,
    /// Per-phase timings of the last attempt.
    pub phases: Phases,
    /// What a judge target saw of the exit and where the exit is; `None`
    /// when the target is not a judge or the attempt got no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
}

impl CheckResult {
    /// True when the proxy is ACTIVE or SLOW.
    pub fn is_up(&self) -> bool {
        self.status.is_up()
    }

    /// True when the check could not be done for a reason that is not the
    /// proxy's ([`Reason::LocalResources`]): its INACTIVE says nothing about
    /// the proxy, so it must not be recorded as a status.
    pub fn is_unchecked(&self) -> bool {
        self.reason == Some(Reason::LocalResources)
    }
}

/// How much of us a proxy lets the target see, from the headers a judge
/// received. Ordered: `Transparent < Anonymous < Elite`, so a pool's
/// `min_anonymity` is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anonymity {
    /// One of our own IPs appears in a header (X-Forwarded-For, Forwarded,
    /// X-Real-IP, Client-IP, Via) or is the exit IP itself.
    Transparent,
    /// Proxy headers (Via, X-Forwarded-For, Proxy-Connection...) are
    /// present, but without our IP.
    Anonymous,
    /// No trace of a proxy.
    Elite,
}

impl Anonymity {
    /// Every level, lowest first.
    pub const ALL: [Anonymity; 3] = [
        Anonymity::Transparent,
        Anonymity::Anonymous,
        Anonymity::Elite,
    ];

    /// Label, config and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Anonymity::Transparent => "transparent",
            Anonymity::Anonymous => "anonymous",
            Anonymity::Elite => "elite",
        }
    }
}

impl fmt::Display for Anonymity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Anonymity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "transparent" => Ok(Anonymity::Transparent),
            "anonymous" => Ok(Anonymity::Anonymous),
            "elite" => Ok(Anonymity::Elite),
            other => Err(format!(
                "unknown anonymity level {other:?} (expected transparent, anonymous or elite)"
            )),
        }
    }
}

/// What a pool does when a proxy exits in another country than the one
/// the inventory declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeoPolicy {
    /// The check fails with [`Reason::GeoMismatch`].
    #[default]
    Fail,
    /// The check keeps its status; the mismatch is only marked and counted.
    Report,
}

/// Where an exit IP is, from a MaxMind-format database (GeoLite2/GeoIP2
/// City, Country or ASN, DB-IP). Each field is `None` when the database
/// has no answer for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Geo {
    /// ISO 3166-1 alpha-2, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// City name (English).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Latitude, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Longitude, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// Autonomous system number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Autonomous system organisation (pharox's `isp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

/// ISO 3166-1 alpha-2 codes (the 249 assigned ones), plus `XK` (Kosovo,
/// user-assigned, used by MaxMind and by proxy sellers). Sorted.
const COUNTRY_CODES: [&str; 250] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "XK", "YE", "YT", "ZA", "ZM", "ZW",
];

/// A declared or observed country as [`Proxy::country`] holds it: ISO
/// 3166-1 alpha-2, upper case (`de` -> `DE`). A value that is not an
/// assigned code is refused with a message saying what is expected (`UK`
/// names `GB`): a typo would otherwise be a mismatch at every check.
pub fn parse_country(s: &str) -> Result<String, String> {
    let code = s.trim().to_ascii_uppercase();
    if COUNTRY_CODES.binary_search(&code.as_str()).is_ok() {
        return Ok(code);
    }
    let hint = if code == "UK" {
        " (the United Kingdom is GB)"
    } else {
        ""
    };
    Err(format!(
        "invalid country {:?}: expected an ISO 3166-1 alpha-2 code such as DE or US{hint}",
        s.trim()
    ))
}

/// What is known of a proxy's exit after a check against a judge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exit {
    /// The address the judge saw the request come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// How much of us the judge saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymity: Option<Anonymity>,
    /// The header that decided the level (lower case, e.g.
    /// `x-forwarded-for`); `None` for elite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymity_header: Option<String>,
    /// Geolocation of [`Exit::ip`], when a database is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<Geo>,
    /// The exit's country differs from [`Proxy::country`] (whatever the
    /// pool's [`GeoPolicy`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub geo_mismatch: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_id_ignores_password_and_is_stable() {
        let a = Proxy::derive_id(ProxyProtocol::Socks5, Some("alice"), "Proxy.Example", 1080);
        assert_eq!(a, "socks5://alice@proxy.example:1080");
        let v6 = Proxy::derive_id(ProxyProtocol::Http, None, "::1", 3128);
        assert_eq!(v6, "http://[::1]:3128");
    }

    #[test]
    fn debug_and_json_never_show_the_password() {
        let mut p = Proxy::new(ProxyProtocol::Http, "127.0.0.1", 3128);
        p.username = Some("bob".into());
        p.password = Some(Secret::new("s3cr3t-pw"));
        let dbg = format!("{p:?}");
        let json = serde_json::to_string(&p).unwrap();
        assert!(!dbg.contains("s3cr3t-pw"), "{dbg}");
        assert!(!json.contains("s3cr3t-pw"), "{json}");
        assert_eq!(p.redacted_url(), "http://bob:***@127.0.0.1:3128");
    }

    /// A million of them are held at once: every byte counts a megabyte.
    #[test]
    fn a_proxy_stays_small() {
        assert!(
            std::mem::size_of::<Proxy>() <= 120,
            "{}",
            std::mem::size_of::<Proxy>()
        );
        assert_eq!(std::mem::size_of::<Option<Secret>>(), 8);
    }

    #[test]
    fn countries_are_upper_case_alpha_2_and_typos_are_refused() {
        assert_eq!(parse_country(" de ").unwrap(), "DE");
        assert_eq!(parse_country("US").unwrap(), "US");
        assert_eq!(parse_country("xk").unwrap(), "XK");
        let uk = parse_country("uk").unwrap_err();
        assert_eq!(
            uk,
            "invalid country \"uk\": expected an ISO 3166-1 alpha-2 code such as DE or US (the United Kingdom is GB)"
        );
        for bad in ["", "D", "DEU", "Germany", "D1", "ZZ"] {
            assert!(parse_country(bad).is_err(), "{bad:?} accepted");
        }
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn spellings_round_trip() {
        for p in ProxyProtocol::ALL {
            assert_eq!(p.as_str().parse::<ProxyProtocol>().unwrap(), p);
        }
        for s in ProxyStatus::ALL {
            assert_eq!(s.as_str().parse::<ProxyStatus>().unwrap(), s);
        }
        for r in Reason::ALL {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }
}
