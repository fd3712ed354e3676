//! The YAML file as users write it: every section optional, unknown fields
//! rejected (`deny_unknown_fields`), values checked as they are read (see
//! `values`). Nothing outside `config` sees these types: [`super::Config`]
//! is built from them.
//!
//! Struct names appear in serde's messages ("expected struct SweepSpec"),
//! so they are kept as they were when users first saw them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{Attempts, BodyRegex, Seconds, StatusCodes, TargetUrl, Timeout};
use super::ConfigError;
use crate::model::{Anonymity, GeoPolicy, ProxyProtocol};
use crate::secret::Secret;
use crate::state;

/// pharox's `HealthCheckOptions`, every field optional so layers can merge:
/// defaults, then `protocols.<p>`, then `pools.<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OptionsSpec {
    /// URL fetched through the proxy.
    pub(super) target_url: Option<TargetUrl>,
    /// Statuses counted as success.
    pub(super) expected_status_codes: Option<StatusCodes>,
    /// Per-attempt deadline, seconds (> 0).
    pub(super) timeout: Option<Timeout>,
    /// Attempts, 1..=5.
    pub(super) attempts: Option<Attempts>,
    /// Above this latency a success is SLOW.
    pub(super) slow_threshold_ms: Option<u64>,
    /// Follow redirects.
    pub(super) allow_redirects: Option<bool>,
    /// Extra request headers.
    pub(super) headers: Option<BTreeMap<String, Secret>>,
    /// The body must contain this string.
    pub(super) body_contains: Option<String>,
    /// The body must match this regex.
    pub(super) body_regex: Option<BodyRegex>,
    /// Our own egress IPs: a body reporting one of them is an `exit_ip_leak`.
    pub(super) own_ips: Option<Vec<IpAddr>>,
    /// The target is a proxy judge (exit IP, anonymity).
    pub(super) judge: Option<bool>,
    /// Lowest anonymity level a judge check accepts.
    pub(super) min_anonymity: Option<Anonymity>,
    /// `fail` or `report` an exit outside the declared country.
    pub(super) geo_policy: Option<GeoPolicy>,
    /// Body bytes read at most.
    pub(super) max_body_bytes: Option<usize>,
    /// PEM file of extra CAs trusted for the target.
    pub(super) tls_ca_file: Option<PathBuf>,
    /// Accept any target certificate (dangerous; for self-signed test targets).
    pub(super) tls_insecure_skip_verify: Option<bool>,
    /// PEM file of extra CAs trusted for HTTPS proxies.
    pub(super) proxy_tls_ca_file: Option<PathBuf>,
    /// Accept any HTTPS proxy certificate.
    pub(super) proxy_tls_insecure_skip_verify: Option<bool>,
}

impl OptionsSpec {
    /// `other`'s fields win where set.
    pub(super) fn merged(&self, other: &OptionsSpec) -> OptionsSpec {
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
            judge,
            min_anonymity,
            geo_policy,
            max_body_bytes,
            tls_ca_file,
            tls_insecure_skip_verify,
            proxy_tls_ca_file,
            proxy_tls_insecure_skip_verify
        )
    }
}

/// Where proxies come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InventorySpec {
    /// A file: proxy URLs one per line, CSV with a header, or a YAML/JSON list.
    pub(super) path: Option<PathBuf>,
    /// File format; `auto` picks by extension and content.
    #[serde(default)]
    pub(super) format: crate::inventory::Format,
}

/// `sweep.hysteresis` as written; the defaults are [`state::Hysteresis`]'s.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Hysteresis {
    /// Consecutive failed checks before an up proxy is reported INACTIVE.
    pub(super) fail_threshold: u32,
    /// Consecutive successful checks before an INACTIVE proxy is reported up.
    pub(super) success_threshold: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        let d = state::Hysteresis::default();
        Hysteresis {
            fail_threshold: d.fail_threshold,
            success_threshold: d.success_threshold,
        }
    }
}

impl From<Hysteresis> for state::Hysteresis {
    fn from(h: Hysteresis) -> Self {
        state::Hysteresis {
            fail_threshold: h.fail_threshold,
            success_threshold: h.success_threshold,
        }
    }
}

/// `sweep.backoff` as written (durations in any [`Seconds`] spelling); the
/// defaults are [`state::RecheckBackoff`]'s.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Backoff {
    /// Off by default: every proxy every sweep, as pharox.
    pub(super) enabled: bool,
    /// Longest gap between checks of a dead proxy.
    pub(super) max_interval: Seconds,
}

impl Default for Backoff {
    fn default() -> Self {
        let d = state::RecheckBackoff::default();
        Backoff {
            enabled: d.enabled,
            max_interval: Seconds(d.max_interval),
        }
    }
}

impl From<Backoff> for state::RecheckBackoff {
    fn from(b: Backoff) -> Self {
        state::RecheckBackoff {
            enabled: b.enabled,
            max_interval: b.max_interval.0,
        }
    }
}

/// The sweep loop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct SweepSpec {
    /// Time between sweep starts.
    pub(super) interval: Seconds,
    /// Checks running at once.
    pub(super) concurrency: usize,
    /// Checks started per second at most (0 = unlimited).
    pub(super) rate_limit: f64,
    /// Spread a sweep's checks evenly over 90% of the interval.
    pub(super) spread: bool,
    /// Hysteresis on reported status.
    pub(super) hysteresis: Hysteresis,
    /// Back-off for proxies that stay INACTIVE.
    pub(super) backoff: Backoff,
    /// How long in-flight checks may run after SIGTERM.
    pub(super) shutdown_grace: Seconds,
}

/// Default number of checks running at once.
pub(crate) const DEFAULT_CONCURRENCY: usize = 256;

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
pub(super) struct WebSpec {
    /// `host:port` to listen on.
    pub(super) listen_address: String,
    /// Path of the metrics endpoint.
    pub(super) telemetry_path: String,
    /// Let `/probe` check proxies that are not in the inventory.
    pub(super) allow_arbitrary_probe_targets: bool,
    /// exporter-toolkit web config (TLS, basic auth, headers).
    pub(super) config_file: Option<PathBuf>,
    /// Allow `POST /-/reload`.
    pub(super) enable_lifecycle: bool,
    /// Open HTTP connections at most.
    pub(super) max_connections: usize,
    /// Concurrent `/metrics` and `/api/status` requests at most (0 = no cap).
    pub(super) max_requests: usize,
}

/// Default listen port; see README ("Why port 10187").
pub(crate) const DEFAULT_PORT: u16 = 10187;

impl Default for WebSpec {
    fn default() -> Self {
        WebSpec {
            listen_address: format!("0.0.0.0:{DEFAULT_PORT}"),
            telemetry_path: "/metrics".into(),
            allow_arbitrary_probe_targets: false,
            config_file: None,
            enable_lifecycle: false,
            max_connections: 256,
            max_requests: 40,
        }
    }
}

/// What `/metrics` exports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct MetricsSpec {
    /// Buckets of `pharox_check_duration_seconds`, seconds.
    pub(super) latency_buckets: Vec<f64>,
    /// Export per-proxy series (opt-in).
    pub(super) per_proxy: bool,
    /// Hard cap on proxies with per-proxy series.
    pub(super) per_proxy_limit: usize,
    /// Exit countries per pool with a series of their own.
    pub(super) exit_country_limit: usize,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            latency_buckets: vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0],
            per_proxy: false,
            per_proxy_limit: 10_000,
            exit_country_limit: state::DEFAULT_EXIT_COUNTRY_LIMIT,
        }
    }
}

/// Sharding across replicas (see `inventory::shard`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ShardSpec {
    /// This replica's 0-based index.
    pub(super) index: u32,
    /// Number of replicas.
    pub(super) count: u32,
    /// Take the index from the ordinal at the end of `$HOSTNAME` (a
    /// Kubernetes StatefulSet pod name such as `pharox-exporter-2`).
    pub(super) from_hostname: bool,
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

/// Exit geolocation (`geoip:`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GeoipSpec {
    /// MaxMind-format files (City, Country, ASN, ISP; DB-IP), looked up in
    /// this order, each field from the first that has it.
    #[serde(default)]
    pub(super) databases: Vec<PathBuf>,
}

/// The YAML file as written by users.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    /// Default health-check options.
    #[serde(default)]
    pub(super) defaults: OptionsSpec,
    /// Per-protocol overrides.
    #[serde(default)]
    pub(super) protocols: BTreeMap<ProxyProtocol, OptionsSpec>,
    /// Per-pool overrides (applied after per-protocol ones).
    #[serde(default)]
    pub(super) pools: BTreeMap<String, OptionsSpec>,
    /// Where proxies come from.
    #[serde(default)]
    pub(super) inventory: InventorySpec,
    /// The sweep loop.
    #[serde(default)]
    pub(super) sweep: SweepSpec,
    /// The HTTP server.
    #[serde(default)]
    pub(super) web: WebSpec,
    /// Metrics options.
    #[serde(default)]
    pub(super) metrics: MetricsSpec,
    /// Sharding across replicas.
    #[serde(default)]
    pub(super) sharding: ShardSpec,
    /// pharox's PostgreSQL database (see docs/postgres.md).
    #[serde(default)]
    pub(super) postgres: Option<crate::pharox_db::Config>,
    /// Exit geolocation databases.
    #[serde(default)]
    pub(super) geoip: GeoipSpec,
}

/// Parse YAML text (empty text is the default config).
pub(super) fn parse_file(name: &str, text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    // Refused before the parser sees it: a deeply nested document costs the
    // parser far more than this linear scan.
    if let Err(line) = crate::inventory::check_depth(text, crate::inventory::MAX_DEPTH) {
        return Err(ConfigError::Parse {
            file: name.to_string(),
            line,
            column: 1,
            message: format!(
                "nested more than {} levels deep; refused before parsing",
                crate::inventory::MAX_DEPTH
            ),
        });
    }
    serde_yaml_ng::from_str(text).map_err(|e| ConfigError::from_yaml(name, e))
}
