//! Configuration: one YAML file plus command-line flags become one validated
//! [`Config`]. This module reads the file and nothing else: it opens no
//! sockets and starts nothing, so a bad file can never disturb a running
//! exporter (reload parses a whole new `Config` first and swaps only on
//! success).
//!
//! Errors carry the file, line, column and the dotted path of the field, as
//! `serde_yaml_ng` reports them; value checks (attempts 1..=5, timeout > 0,
//! URL schemes, regexes) happen inside deserialisation so that they get a
//! position too.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::inventory::shard::Shard;
use crate::model::{Proxy, ProxyProtocol};
use crate::probe::{self, CheckOptions};

/// A configuration that could not be used, with where it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a field has a bad value.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, starting with the field's dotted path.
        message: String,
    },
    /// A value is invalid in a way only visible once all layers are merged.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// The file (or `flags`).
        file: String,
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    fn from_yaml(file: &str, err: serde_yaml_ng::Error) -> Self {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        // serde_yaml_ng appends " at line L column C"; we already print it up front.
        let mut message = err.to_string();
        if let Some(idx) = message.rfind(" at line ") {
            message.truncate(idx);
        }
        ConfigError::Parse {
            file: file.to_string(),
            line,
            column,
            message,
        }
    }
}

/// A duration in YAML: a number of seconds (`5`, `0.5`) or a string with a
/// unit (`500ms`, `30s`, `5m`, `1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub Duration);

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

/// pharox's `HealthCheckOptions`, every field optional so layers can merge:
/// defaults, then `protocols.<p>`, then `pools.<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionsSpec {
    /// URL fetched through the proxy.
    pub target_url: Option<TargetUrl>,
    /// Statuses counted as success.
    pub expected_status_codes: Option<StatusCodes>,
    /// Per-attempt deadline, seconds (> 0).
    pub timeout: Option<Timeout>,
    /// Attempts, 1..=5.
    pub attempts: Option<Attempts>,
    /// Above this latency a success is SLOW.
    pub slow_threshold_ms: Option<u64>,
    /// Follow redirects.
    pub allow_redirects: Option<bool>,
    /// Extra request headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// The body must contain this string.
    pub body_contains: Option<String>,
    /// The body must match this regex.
    pub body_regex: Option<BodyRegex>,
    /// Our own egress IPs: a body reporting one of them is an `exit_ip_leak`.
    pub own_ips: Option<Vec<IpAddr>>,
    /// Body bytes read at most.
    pub max_body_bytes: Option<usize>,
    /// PEM file of extra CAs trusted for the target.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any target certificate (dangerous; for self-signed test targets).
    pub tls_insecure_skip_verify: Option<bool>,
    /// PEM file of extra CAs trusted for HTTPS proxies.
    pub proxy_tls_ca_file: Option<PathBuf>,
    /// Accept any HTTPS proxy certificate.
    pub proxy_tls_insecure_skip_verify: Option<bool>,
}

impl OptionsSpec {
    /// `other`'s fields win where set.
    pub fn merged(&self, other: &OptionsSpec) -> OptionsSpec {
        macro_rules! pick {
            ($($f:ident),*) => { OptionsSpec { $($f: other.$f.clone().or_else(|| self.$f.clone())),* } };
        }
        pick!(
            target_url,
            expected_status_codes,
            timeout,
            attempts,
            slow_threshold_ms,
            allow_redirects,
            headers,
            body_contains,
            body_regex,
            own_ips,
            max_body_bytes,
            tls_ca_file,
            tls_insecure_skip_verify,
            proxy_tls_ca_file,
            proxy_tls_insecure_skip_verify
        )
    }
}

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(pub url::Url);

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
pub struct StatusCodes(pub Vec<u16>);

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
pub struct Timeout(pub Duration);

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

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "a timeout in seconds (> 0)", |s| {
            Timeout::checked(scalar_duration(s)?)
        })
    }
}

/// Attempts per check, 1..=5 as pharox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts(pub u8);

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
pub struct BodyRegex(pub regex::Regex);

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

/// Where proxies come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySpec {
    /// A file: proxy URLs one per line, CSV with a header, or a YAML/JSON list.
    pub path: Option<PathBuf>,
    /// File format; `auto` picks by extension and content.
    #[serde(default)]
    pub format: crate::inventory::Format,
}

/// Hysteresis: how many consecutive results flip a proxy's reported state.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hysteresis {
    /// Consecutive failed checks before an up proxy is reported INACTIVE.
    pub fail_threshold: u32,
    /// Consecutive successful checks before an INACTIVE proxy is reported up.
    pub success_threshold: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            fail_threshold: 1,
            success_threshold: 1,
        }
    }
}

/// Check proxies that stay INACTIVE less often.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    /// Off by default: every proxy every sweep, as pharox.
    pub enabled: bool,
    /// Longest gap between checks of a dead proxy.
    pub max_interval: Seconds,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            enabled: false,
            max_interval: Seconds(Duration::from_secs(600)),
        }
    }
}

/// The sweep loop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSpec {
    /// Time between sweep starts.
    pub interval: Seconds,
    /// Checks running at once.
    pub concurrency: usize,
    /// Checks started per second at most (0 = unlimited).
    pub rate_limit: f64,
    /// Spread a sweep's checks evenly over 90% of the interval.
    pub spread: bool,
    /// Hysteresis on reported status.
    pub hysteresis: Hysteresis,
    /// Back-off for proxies that stay INACTIVE.
    pub backoff: Backoff,
    /// How long in-flight checks may run after SIGTERM.
    pub shutdown_grace: Seconds,
}

/// Default number of checks running at once.
pub const DEFAULT_CONCURRENCY: usize = 256;

impl Default for SweepSpec {
    fn default() -> Self {
        SweepSpec {
            interval: Seconds(Duration::from_secs(60)),
            concurrency: DEFAULT_CONCURRENCY,
            rate_limit: 0.0,
            spread: false,
            hysteresis: Hysteresis::default(),
            backoff: Backoff::default(),
            shutdown_grace: Seconds(Duration::from_secs(10)),
        }
    }
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSpec {
    /// `host:port` to listen on.
    pub listen_address: String,
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// Let `/probe` check proxies that are not in the inventory. Off by
    /// default so the exporter cannot be used as an open relay prober.
    pub allow_arbitrary_probe_targets: bool,
}

/// Default listen port; see README ("Why port 10187").
pub const DEFAULT_PORT: u16 = 10187;

impl Default for WebSpec {
    fn default() -> Self {
        WebSpec {
            listen_address: format!("0.0.0.0:{DEFAULT_PORT}"),
            telemetry_path: "/metrics".into(),
            allow_arbitrary_probe_targets: false,
        }
    }
}

/// What `/metrics` exports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSpec {
    /// Buckets of `pharox_check_duration_seconds`, seconds.
    pub latency_buckets: Vec<f64>,
    /// Export per-proxy series (opt-in).
    pub per_proxy: bool,
    /// Hard cap on proxies with per-proxy series.
    pub per_proxy_limit: usize,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            latency_buckets: vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0],
            per_proxy: false,
            per_proxy_limit: 10_000,
        }
    }
}

/// Sharding across replicas (see `inventory::shard`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardSpec {
    /// This replica's 0-based index.
    pub index: u32,
    /// Number of replicas.
    pub count: u32,
    /// Take the index from the ordinal at the end of `$HOSTNAME` (a
    /// Kubernetes StatefulSet pod name such as `pharox-exporter-2`).
    pub from_hostname: bool,
}

impl Default for ShardSpec {
    fn default() -> Self {
        ShardSpec {
            index: 0,
            count: 1,
            from_hostname: false,
        }
    }
}

/// The YAML file as written by users.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Default health-check options.
    #[serde(default)]
    pub defaults: OptionsSpec,
    /// Per-protocol overrides.
    #[serde(default)]
    pub protocols: BTreeMap<ProxyProtocol, OptionsSpec>,
    /// Per-pool overrides (applied after per-protocol ones).
    #[serde(default)]
    pub pools: BTreeMap<String, OptionsSpec>,
    /// Where proxies come from.
    #[serde(default)]
    pub inventory: InventorySpec,
    /// The sweep loop.
    #[serde(default)]
    pub sweep: SweepSpec,
    /// The HTTP server.
    #[serde(default)]
    pub web: WebSpec,
    /// Metrics options.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Sharding across replicas.
    #[serde(default)]
    pub sharding: ShardSpec,
    /// pharox's PostgreSQL database (see docs/postgres.md).
    #[serde(default)]
    pub postgres: Option<crate::inventory::postgres::PgConfig>,
}

/// Flags that override the file (named after the options they set).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--inventory`.
    pub inventory: Option<PathBuf>,
    /// `--target-url` etc.: applied on top of `defaults` AND every override
    /// layer, since a flag is the user's last word.
    pub options: OptionsSpec,
    /// `--concurrency`.
    pub concurrency: Option<usize>,
    /// `--sweep.interval`.
    pub interval: Option<Duration>,
    /// `--web.listen-address`.
    pub listen_address: Option<String>,
    /// `--web.telemetry-path`.
    pub telemetry_path: Option<String>,
    /// `--metrics.per-proxy`.
    pub per_proxy: Option<bool>,
    /// `--shard.index`.
    pub shard_index: Option<u32>,
    /// `--shard.count`.
    pub shard_count: Option<u32>,
    /// `--shard.from-hostname`.
    pub shard_from_hostname: bool,
}

/// pharox's default target (`HealthCheckOptions.target_url`).
pub const PHAROX_DEFAULT_TARGET: &str = "https://httpbin.org/ip";

/// The validated configuration the rest of the program uses.
#[derive(Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    /// The raw file contents as parsed (after flags).
    pub file: FileConfig,
    /// Resolved options per (pool, protocol).
    pub options: Arc<OptionsResolver>,
    /// This replica's slice of the inventory.
    pub shard: Shard,
    /// The database, when the inventory is pharox's PostgreSQL.
    pub postgres: Option<crate::inventory::postgres::PgConfig>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Read and validate a config file, then apply flags.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    file: p.to_path_buf(),
                    source,
                })?;
                parse_file(&p.display().to_string(), &text)?
            }
            None => FileConfig::default(),
        };
        Config::from_file(path.map(Path::to_path_buf), file, overrides)
    }

    /// Validate an already-parsed file, then apply flags.
    pub fn from_file(
        source: Option<PathBuf>,
        mut file: FileConfig,
        o: &Overrides,
    ) -> Result<Config, ConfigError> {
        let name = source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "flags".into());
        if let Some(inv) = &o.inventory {
            file.inventory.path = Some(inv.clone());
        } else if let (Some(src), Some(inv)) = (&source, &file.inventory.path) {
            // Relative inventory paths are relative to the config file, as users expect.
            let url = inv
                .to_str()
                .is_some_and(crate::inventory::postgres::is_postgres_url);
            if inv.is_relative() && !url {
                if let Some(dir) = src.parent() {
                    file.inventory.path = Some(dir.join(inv));
                }
            }
        }
        if let Some(c) = o.concurrency {
            file.sweep.concurrency = c;
        }
        if let Some(i) = o.interval {
            file.sweep.interval = Seconds(i);
        }
        if let Some(l) = &o.listen_address {
            file.web.listen_address = l.clone();
        }
        if let Some(t) = &o.telemetry_path {
            file.web.telemetry_path = t.clone();
        }
        if let Some(p) = o.per_proxy {
            file.metrics.per_proxy = p;
        }
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: name.clone(),
            field: field.to_string(),
            message,
        };
        if file.sweep.concurrency == 0 || file.sweep.concurrency > 1_000_000 {
            return Err(invalid(
                "sweep.concurrency",
                "must be between 1 and 1000000".into(),
            ));
        }
        if file.sweep.interval.0.is_zero() {
            return Err(invalid("sweep.interval", "must be > 0".into()));
        }
        if !(file.sweep.rate_limit >= 0.0 && file.sweep.rate_limit.is_finite()) {
            return Err(invalid("sweep.rate_limit", "must be >= 0".into()));
        }
        if file.sweep.hysteresis.fail_threshold == 0 || file.sweep.hysteresis.success_threshold == 0
        {
            return Err(invalid(
                "sweep.hysteresis",
                "thresholds must be >= 1".into(),
            ));
        }
        if !file.web.telemetry_path.starts_with('/') {
            return Err(invalid("web.telemetry_path", "must start with /".into()));
        }
        let b = &file.metrics.latency_buckets;
        if b.is_empty()
            || b.windows(2).any(|w| w[0] >= w[1])
            || b.iter().any(|x| !x.is_finite() || *x <= 0.0)
        {
            return Err(invalid(
                "metrics.latency_buckets",
                "must be a non-empty, strictly increasing list of positive seconds".into(),
            ));
        }
        if let Some(i) = o.shard_index {
            file.sharding.index = i;
        }
        if let Some(c) = o.shard_count {
            file.sharding.count = c;
        }
        if o.shard_from_hostname {
            file.sharding.from_hostname = true;
        }
        if file.sharding.from_hostname {
            let host = std::env::var("HOSTNAME").unwrap_or_default();
            file.sharding.index = Shard::index_from_hostname(&host)
                .map_err(|m| invalid("sharding.from_hostname", m))?;
        }
        let shard = Shard::new(file.sharding.index, file.sharding.count)
            .map_err(|m| invalid("sharding", m))?;
        let options = OptionsResolver::build(&file, &o.options)
            .map_err(|(field, message)| invalid(&field, message))?;
        let postgres = crate::inventory::postgres::resolve(
            file.inventory.path.as_deref(),
            file.postgres.as_ref(),
        )
        .map_err(|e| invalid("postgres", e.to_string()))?;
        Ok(Config {
            source,
            file,
            options: Arc::new(options),
            shard,
            postgres,
        })
    }
}

/// Parse YAML text (empty text is the default config).
pub fn parse_file(name: &str, text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml_ng::from_str(text).map_err(|e| ConfigError::from_yaml(name, e))
}

/// Resolved [`CheckOptions`] for every (pool, protocol), built once per
/// config so a check only looks up an `Arc`.
pub struct OptionsResolver {
    by_protocol: HashMap<ProxyProtocol, Arc<CheckOptions>>,
    by_pool: HashMap<(String, ProxyProtocol), Arc<CheckOptions>>,
}

impl OptionsResolver {
    /// The options for one proxy.
    pub fn for_proxy(&self, proxy: &Proxy) -> &Arc<CheckOptions> {
        if !self.by_pool.is_empty() {
            if let Some(o) = self.by_pool.get(&(proxy.pool.clone(), proxy.protocol)) {
                return o;
            }
        }
        // Every protocol is filled in by `build`.
        &self.by_protocol[&proxy.protocol]
    }

    /// The options for a protocol, ignoring pools.
    pub fn for_protocol(&self, protocol: ProxyProtocol) -> &Arc<CheckOptions> {
        &self.by_protocol[&protocol]
    }

    /// Every resolved option set (each protocol, each pool).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CheckOptions>> {
        self.by_protocol.values().chain(self.by_pool.values())
    }

    fn build(file: &FileConfig, flags: &OptionsSpec) -> Result<Self, (String, String)> {
        let mut tls_cache: HashMap<(Option<PathBuf>, bool), Arc<rustls::ClientConfig>> =
            HashMap::new();
        let mut resolve =
            |field: String, spec: OptionsSpec| -> Result<Arc<CheckOptions>, (String, String)> {
                let spec = spec.merged(flags);
                resolve_options(&spec, &mut tls_cache)
                    .map(Arc::new)
                    .map_err(|m| (field, m))
            };
        let mut by_protocol = HashMap::new();
        for p in ProxyProtocol::ALL {
            let layer = file.protocols.get(&p).cloned().unwrap_or_default();
            let spec = file.defaults.merged(&layer);
            by_protocol.insert(p, resolve(format!("protocols.{p}"), spec)?);
        }
        let mut by_pool = HashMap::new();
        for (pool, layer) in &file.pools {
            for p in ProxyProtocol::ALL {
                let proto = file.protocols.get(&p).cloned().unwrap_or_default();
                let spec = file.defaults.merged(&proto).merged(layer);
                by_pool.insert((pool.clone(), p), resolve(format!("pools.{pool}"), spec)?);
            }
        }
        Ok(OptionsResolver {
            by_protocol,
            by_pool,
        })
    }
}

type TlsCache = HashMap<(Option<PathBuf>, bool), Arc<rustls::ClientConfig>>;

fn resolve_options(spec: &OptionsSpec, tls_cache: &mut TlsCache) -> Result<CheckOptions, String> {
    let target = match &spec.target_url {
        Some(t) => t.0.clone(),
        None => url::Url::parse(PHAROX_DEFAULT_TARGET).map_err(|e| e.to_string())?,
    };
    let mut tls = |ca: &Option<PathBuf>,
                   insecure: bool|
     -> Result<Arc<rustls::ClientConfig>, String> {
        let key = (ca.clone(), insecure);
        if let Some(c) = tls_cache.get(&key) {
            return Ok(c.clone());
        }
        let c = probe::tls::client_config(ca.as_deref(), insecure).map_err(|e| e.to_string())?;
        tls_cache.insert(key, c.clone());
        Ok(c)
    };
    let target_tls = tls(
        &spec.tls_ca_file,
        spec.tls_insecure_skip_verify.unwrap_or(false),
    )?;
    let proxy_tls = tls(
        &spec.proxy_tls_ca_file,
        spec.proxy_tls_insecure_skip_verify.unwrap_or(false),
    )?;
    Ok(CheckOptions {
        target_url: target,
        expected_status_codes: spec
            .expected_status_codes
            .clone()
            .map(|s| s.0)
            .unwrap_or_else(|| vec![200]),
        timeout: spec.timeout.map(|t| t.0).unwrap_or(Duration::from_secs(5)),
        attempts: spec.attempts.map(|a| a.0).unwrap_or(1),
        slow_threshold: Duration::from_millis(spec.slow_threshold_ms.unwrap_or(2000)),
        allow_redirects: spec.allow_redirects.unwrap_or(true),
        headers: spec
            .headers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        body_contains: spec.body_contains.clone(),
        body_regex: spec.body_regex.clone().map(|r| r.0),
        own_ips: spec.own_ips.clone().unwrap_or_default(),
        max_body_bytes: spec
            .max_body_bytes
            .unwrap_or(64 * 1024)
            .clamp(0, 16 * 1024 * 1024),
        max_header_bytes: 32 * 1024,
        target_tls,
        proxy_tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let file = parse_file("test.yaml", text)?;
        Config::from_file(Some("test.yaml".into()), file, &Overrides::default())
    }

    #[test]
    fn defaults_are_pharox_defaults() {
        let c = parse("").unwrap();
        let o = c.options.for_protocol(ProxyProtocol::Http);
        assert_eq!(o.target_url.as_str(), PHAROX_DEFAULT_TARGET);
        assert_eq!(o.expected_status_codes, vec![200]);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.attempts, 1);
        assert_eq!(o.slow_threshold, Duration::from_millis(2000));
        assert!(o.allow_redirects);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err = parse("defaults:\n  target_url: http://x/\n  attempts: 9\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.yaml:3:"), "{err}");
        assert!(err.contains("defaults.attempts"), "{err}");
        assert!(err.contains("between 1 and 5"), "{err}");

        let err = parse("defaults:\n  timeout: 0\n").unwrap_err().to_string();
        assert!(
            err.starts_with("test.yaml:2:")
                && err.contains("defaults.timeout")
                && err.contains("> 0"),
            "{err}"
        );

        let err = parse("sweep:\n  intervall: 5s\n").unwrap_err().to_string();
        assert!(
            err.starts_with("test.yaml:2:") && err.contains("unknown field `intervall`"),
            "{err}"
        );

        let err = parse("protocols:\n  socks6: {timeout: 1}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.yaml:2:") && err.contains("socks6"),
            "{err}"
        );

        let err = parse("defaults:\n  target_url: ftp://x/\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("defaults.target_url") && err.contains("http:// or https://"),
            "{err}"
        );
    }

    #[test]
    fn layers_merge_defaults_protocol_pool_then_flags() {
        let text = "defaults:\n  target_url: http://127.0.0.1:1/\n  timeout: 5\n  attempts: 2\n\
                    protocols:\n  socks5:\n    timeout: 8\n\
                    pools:\n  resi:\n    slow_threshold_ms: 3000\n";
        let file = parse_file("t.yaml", text).unwrap();
        let flags = Overrides {
            options: OptionsSpec {
                attempts: Some(Attempts(3)),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = Config::from_file(None, file, &flags).unwrap();
        let mut p = Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", 1080);
        let o = c.options.for_proxy(&p);
        assert_eq!(
            (o.timeout, o.attempts, o.slow_threshold),
            (Duration::from_secs(8), 3, Duration::from_millis(2000))
        );
        p.pool = "resi".into();
        let o = c.options.for_proxy(&p);
        assert_eq!(
            (o.timeout, o.attempts, o.slow_threshold),
            (Duration::from_secs(8), 3, Duration::from_millis(3000))
        );
        p.protocol = ProxyProtocol::Http;
        let o = c.options.for_proxy(&p);
        assert_eq!(o.timeout, Duration::from_secs(5));
    }

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
        let c =
            parse("defaults:\n  expected_status_codes: 204\nsweep:\n  interval: 30s\n").unwrap();
        assert_eq!(
            c.options
                .for_protocol(ProxyProtocol::Http)
                .expected_status_codes,
            vec![204]
        );
        assert_eq!(c.file.sweep.interval.0, Duration::from_secs(30));
    }
}
