//! Configuration: one YAML file plus command-line flags become one validated,
//! typed [`Config`]. This module reads the file and nothing else: it opens no
//! sockets and starts nothing, so a bad file can never disturb a running
//! exporter (reload parses a whole new `Config` first and swaps only on
//! success).
//!
//! Errors carry the file, line, column and the dotted path of the field, as
//! `serde_yaml_ng` reports them; value checks (attempts 1..=5, timeout > 0,
//! URL schemes, regexes) happen inside deserialisation so that they get a
//! position too.
//!
//! - `file`: the serde shape of the YAML, as users write it;
//! - `values`: the checked value types and the duration syntax;
//! - `flags`: [`Overrides`], the flags laid over the file in one place;
//! - here: [`Config::load`], the checks that need the merged whole, and the
//!   typed sections the rest of the program reads.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::inventory::shard::Shard;
use crate::inventory::Format;
use crate::model::ProxyProtocol;
use crate::probe::{self, CheckOptions, OptionsByPool, PHAROX_DEFAULT_TARGET};
use crate::state::Policy;

mod file;
mod flags;
#[cfg(test)]
mod proptests;
mod values;

use file::{parse_file, FileConfig, OptionsSpec, ShardSpec};
pub use flags::Overrides;
pub use values::{parse_duration, Attempts, StatusCodes, TargetUrl, Timeout};

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

/// The sweep loop.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepConfig {
    /// Time between sweep starts (> 0).
    pub interval: Duration,
    /// Checks running at once (1..=1,000,000).
    pub concurrency: usize,
    /// Checks started per second at most (0 = unlimited).
    pub rate_limit: f64,
    /// Spread a sweep's checks evenly over 90% of the interval.
    pub spread: bool,
    /// How long in-flight checks may run after SIGTERM.
    pub shutdown_grace: Duration,
}

/// The HTTP server. `listen_address`, `config_file` and the two caps take
/// effect only at start (the web config file itself is re-read when it
/// changes); the telemetry path, the `/probe` switch and `enable_lifecycle`
/// are read per request, so a reload changes them at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// `host:port` to listen on.
    pub listen_address: String,
    /// Path of the metrics endpoint (starts with `/`).
    pub telemetry_path: String,
    /// Let `/probe` check proxies that are not in the inventory. Off by
    /// default so the exporter cannot be used as an open relay prober.
    pub allow_arbitrary_probe_targets: bool,
    /// The exporter-toolkit web config file (TLS, basic auth, headers).
    pub config_file: Option<PathBuf>,
    /// Allow `POST /-/reload` (as Prometheus' `--web.enable-lifecycle`).
    pub enable_lifecycle: bool,
    /// Open HTTP connections at most; past it, new ones are closed.
    pub max_connections: usize,
    /// Concurrent `/metrics` and `/api/status` requests at most (0 = no cap).
    pub max_requests: usize,
}

/// What `/metrics` exports.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Buckets of `pharox_check_duration_seconds`, seconds (strictly increasing).
    pub latency_buckets: Vec<f64>,
    /// Export per-proxy series (opt-in).
    pub per_proxy: bool,
    /// Hard cap on proxies with per-proxy series.
    pub per_proxy_limit: usize,
    /// Exit countries per pool in `pharox_proxies_by_exit_country`; the
    /// rest are summed as `country="other"`.
    pub exit_country_limit: usize,
}

/// Where proxies come from, and this replica's share of them.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryConfig {
    /// The inventory file (relative paths already resolved against the
    /// config file's directory), or a `postgres://` URL.
    pub path: Option<PathBuf>,
    /// File format; `auto` picks by extension and content.
    pub format: Format,
    /// This replica's slice of the inventory.
    pub shard: Shard,
}

/// Exit geolocation. The files are opened by the caller (the exporter at
/// start, `check`, `sweep --once`), not here: this module reads only the
/// config. A change of the list takes effect at restart; a change of a
/// file's contents at the next sweep (re-read when it changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoipConfig {
    /// MaxMind-format files, in lookup order (relative paths resolved
    /// against the config file's directory); empty: no geolocation.
    pub databases: Vec<PathBuf>,
}

/// The validated configuration the rest of the program uses.
#[derive(Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    /// The sweep loop.
    pub sweep: SweepConfig,
    /// Hysteresis and back-off, for [`crate::state::StateStore::set_policy`].
    pub policy: Policy,
    /// The HTTP server.
    pub web: WebConfig,
    /// What `/metrics` exports.
    pub metrics: MetricsConfig,
    /// Where proxies come from.
    pub inventory: InventoryConfig,
    /// The database, when the inventory is pharox's PostgreSQL.
    pub db: Option<crate::pharox_db::Config>,
    /// Resolved check options per (pool, protocol).
    pub options: Arc<OptionsByPool>,
    /// Exit geolocation databases.
    pub geoip: GeoipConfig,
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
    fn from_file(
        source: Option<PathBuf>,
        mut file: FileConfig,
        o: &Overrides,
    ) -> Result<Config, ConfigError> {
        let name = source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "flags".into());
        if let Some(src) = &source {
            resolve_inventory_path(src, &mut file);
            if let Some(dir) = src.parent() {
                for db in &mut file.geoip.databases {
                    if db.is_relative() {
                        *db = dir.join(&*db);
                    }
                }
            }
        }
        if let (Some(src), Some(web)) = (&source, &file.web.config_file) {
            if web.is_relative() {
                if let Some(dir) = src.parent() {
                    file.web.config_file = Some(dir.join(web));
                }
            }
        }
        // A flag's path is taken as given, relative to the working directory.
        flags::apply(o, &mut file);
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: name.clone(),
            field: field.to_string(),
            message,
        };
        check_merged(&file).map_err(|(field, message)| invalid(field, message.into()))?;
        let shard = shard(&file.sharding).map_err(|(field, message)| invalid(field, message))?;
        let options =
            options_by_pool(&file).map_err(|(field, message)| invalid(&field, message))?;
        let db = crate::pharox_db::resolve(file.inventory.path.as_deref(), file.postgres.as_ref())
            .map_err(|e| invalid("postgres", e.to_string()))?;
        Ok(Config::assemble(source, file, shard, db, options))
    }

    /// The typed sections, from a file whose values are all checked.
    fn assemble(
        source: Option<PathBuf>,
        file: FileConfig,
        shard: Shard,
        db: Option<crate::pharox_db::Config>,
        options: OptionsByPool,
    ) -> Config {
        let FileConfig {
            inventory,
            sweep,
            web,
            metrics,
            geoip,
            ..
        } = file;
        Config {
            source,
            sweep: SweepConfig {
                interval: sweep.interval.0,
                concurrency: sweep.concurrency,
                rate_limit: sweep.rate_limit,
                spread: sweep.spread,
                shutdown_grace: sweep.shutdown_grace.0,
            },
            policy: Policy {
                hysteresis: sweep.hysteresis.into(),
                backoff: sweep.backoff.into(),
                interval: sweep.interval.0,
            },
            web: WebConfig {
                listen_address: web.listen_address,
                telemetry_path: web.telemetry_path,
                allow_arbitrary_probe_targets: web.allow_arbitrary_probe_targets,
                config_file: web.config_file,
                enable_lifecycle: web.enable_lifecycle,
                max_connections: web.max_connections,
                max_requests: web.max_requests,
            },
            metrics: MetricsConfig {
                latency_buckets: metrics.latency_buckets,
                per_proxy: metrics.per_proxy,
                per_proxy_limit: metrics.per_proxy_limit,
                exit_country_limit: metrics.exit_country_limit,
            },
            inventory: InventoryConfig {
                path: inventory.path,
                format: inventory.format,
                shard,
            },
            db,
            options: Arc::new(options),
            geoip: GeoipConfig {
                databases: geoip.databases,
            },
        }
    }
}

/// Relative inventory paths in a file are relative to the config file, as
/// users expect (a `postgres://` URL is not a path).
fn resolve_inventory_path(src: &Path, file: &mut FileConfig) {
    let Some(inv) = &file.inventory.path else {
        return;
    };
    let url = inv.to_str().is_some_and(crate::pharox_db::is_postgres_url);
    if inv.is_relative() && !url {
        if let Some(dir) = src.parent() {
            file.inventory.path = Some(dir.join(inv));
        }
    }
}

/// The checks that need file and flags merged: `(field, message)` of the
/// first that fails.
fn check_merged(file: &FileConfig) -> Result<(), (&'static str, &'static str)> {
    if file.sweep.concurrency == 0 || file.sweep.concurrency > 1_000_000 {
        return Err(("sweep.concurrency", "must be between 1 and 1000000"));
    }
    if file.sweep.interval.0.is_zero() {
        return Err(("sweep.interval", "must be > 0"));
    }
    if !(file.sweep.rate_limit >= 0.0 && file.sweep.rate_limit.is_finite()) {
        return Err(("sweep.rate_limit", "must be >= 0"));
    }
    if file.sweep.hysteresis.fail_threshold == 0 || file.sweep.hysteresis.success_threshold == 0 {
        return Err(("sweep.hysteresis", "thresholds must be >= 1"));
    }
    if !file.web.telemetry_path.starts_with('/') {
        return Err(("web.telemetry_path", "must start with /"));
    }
    if !(1..=1_000_000).contains(&file.web.max_connections) {
        return Err(("web.max_connections", "must be between 1 and 1000000"));
    }
    let b = &file.metrics.latency_buckets;
    if b.is_empty()
        || b.windows(2).any(|w| w[0] >= w[1])
        || b.iter().any(|x| !x.is_finite() || *x <= 0.0)
    {
        return Err((
            "metrics.latency_buckets",
            "must be a non-empty, strictly increasing list of positive seconds",
        ));
    }
    Ok(())
}

/// This replica's shard, its index taken from `$HOSTNAME` when asked.
fn shard(spec: &ShardSpec) -> Result<Shard, (&'static str, String)> {
    let index = if spec.from_hostname {
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        Shard::index_from_hostname(&host).map_err(|m| ("sharding.from_hostname", m))?
    } else {
        spec.index
    };
    Shard::new(index, spec.count).map_err(|m| ("sharding", m))
}

/// Resolve the options layers (defaults, then `protocols.<p>`, then
/// `pools.<name>`; flags are already in every layer) for every (pool,
/// protocol). An error names the layer it came from.
fn options_by_pool(file: &FileConfig) -> Result<OptionsByPool, (String, String)> {
    let mut tls_cache = TlsCache::new();
    let mut resolve =
        |field: String, spec: OptionsSpec| -> Result<Arc<CheckOptions>, (String, String)> {
            resolve_options(&spec, &mut tls_cache)
                .map(Arc::new)
                .map_err(|m| (field, m))
        };
    let layer = |p: &ProxyProtocol| file.protocols.get(p).cloned().unwrap_or_default();
    let mut out = OptionsByPool::try_per_protocol(|p| {
        resolve(format!("protocols.{p}"), file.defaults.merged(&layer(&p)))
    })?;
    for (pool, pool_layer) in &file.pools {
        for p in ProxyProtocol::ALL {
            let spec = file.defaults.merged(&layer(&p)).merged(pool_layer);
            out.set_pool(pool.clone(), p, resolve(format!("pools.{pool}"), spec)?);
        }
    }
    Ok(out)
}

/// TLS client configs already built, by (for proxies, CA file, insecure):
/// every layer that names the same CA shares one config, and targets and
/// proxies each have their own (separate session stores, see `probe::tls`).
type TlsCache = HashMap<(bool, Option<PathBuf>, bool), Arc<rustls::ClientConfig>>;

/// Body bytes read at most, whatever a config asks for.
const MAX_BODY_BYTES_CAP: usize = 16 * 1024 * 1024;

/// One layer's options: pharox's defaults ([`CheckOptions::with_tls`]) with
/// every field the layer sets written over them.
fn resolve_options(spec: &OptionsSpec, tls_cache: &mut TlsCache) -> Result<CheckOptions, String> {
    let target = match &spec.target_url {
        Some(t) => t.0.clone(),
        None => url::Url::parse(PHAROX_DEFAULT_TARGET).map_err(|e| e.to_string())?,
    };
    let mut tls = |for_proxies: bool,
                   ca: &Option<PathBuf>,
                   insecure: bool|
     -> Result<Arc<rustls::ClientConfig>, String> {
        let key = (for_proxies, ca.clone(), insecure);
        if let Some(c) = tls_cache.get(&key) {
            return Ok(c.clone());
        }
        // The proxies' twin shares the target config's trust when that is built already.
        let base = match tls_cache.get(&(false, ca.clone(), insecure)) {
            Some(c) => c.clone(),
            None => {
                let c = probe::tls::client_config(ca.as_deref(), insecure)
                    .map_err(|e| e.to_string())?;
                tls_cache.insert((false, ca.clone(), insecure), c.clone());
                c
            }
        };
        let c = if for_proxies {
            probe::tls::for_proxies(&base)
        } else {
            base
        };
        tls_cache.insert(key, c.clone());
        Ok(c)
    };
    let target_tls = tls(
        false,
        &spec.tls_ca_file,
        spec.tls_insecure_skip_verify.unwrap_or(false),
    )?;
    let proxy_tls = tls(
        true,
        &spec.proxy_tls_ca_file,
        spec.proxy_tls_insecure_skip_verify.unwrap_or(false),
    )?;
    let mut o = CheckOptions::with_tls(target, target_tls, proxy_tls);
    if let Some(c) = &spec.expected_status_codes {
        o.expected_status_codes = c.0.clone();
    }
    if let Some(t) = spec.timeout {
        o.timeout = t.0;
    }
    if let Some(a) = spec.attempts {
        o.attempts = a.0;
    }
    if let Some(ms) = spec.slow_threshold_ms {
        o.slow_threshold = Duration::from_millis(ms);
    }
    if let Some(r) = spec.allow_redirects {
        o.allow_redirects = r;
    }
    if let Some(h) = &spec.headers {
        o.headers = h.clone().into_iter().collect();
    }
    o.body_contains = spec.body_contains.clone();
    o.body_regex = spec.body_regex.clone().map(|r| r.0);
    if let Some(ips) = &spec.own_ips {
        o.own_ips = ips.clone();
    }
    if let Some(n) = spec.max_body_bytes {
        o.max_body_bytes = n.min(MAX_BODY_BYTES_CAP);
    }
    o.judge = spec.judge.unwrap_or(false);
    o.min_anonymity = spec.min_anonymity;
    o.geo_policy = spec.geo_policy.unwrap_or_default();
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::file::{DEFAULT_CONCURRENCY, DEFAULT_PORT};
    use super::*;
    use crate::model::Proxy;

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
            attempts: Some(Attempts(3)),
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
    fn durations_and_status_codes_parse_in_the_file() {
        // The value syntax itself is tested in `values`.
        let c =
            parse("defaults:\n  expected_status_codes: 204\nsweep:\n  interval: 30s\n").unwrap();
        assert_eq!(
            c.options
                .for_protocol(ProxyProtocol::Http)
                .expected_status_codes,
            vec![204]
        );
        assert_eq!(c.sweep.interval, Duration::from_secs(30));
        assert_eq!(c.policy.interval, Duration::from_secs(30));
    }

    #[test]
    fn sweep_settings_become_plain_durations_and_a_state_policy() {
        let c = parse("").unwrap();
        assert_eq!(
            c.policy,
            Policy::default(),
            "state's defaults are the file's"
        );
        assert_eq!(c.sweep.interval, Duration::from_secs(60));
        assert_eq!(c.sweep.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(c.web.listen_address, format!("0.0.0.0:{DEFAULT_PORT}"));

        let c = parse(
            "sweep:\n  interval: 2m\n  shutdown_grace: 500ms\n  \
             hysteresis: {fail_threshold: 3}\n  backoff: {enabled: true, max_interval: 5m}\n",
        )
        .unwrap();
        assert_eq!(c.sweep.shutdown_grace, Duration::from_millis(500));
        assert_eq!(c.policy.interval, Duration::from_secs(120));
        assert_eq!(c.policy.hysteresis.fail_threshold, 3);
        assert_eq!(c.policy.hysteresis.success_threshold, 1);
        assert!(c.policy.backoff.enabled);
        assert_eq!(c.policy.backoff.max_interval, Duration::from_secs(300));
    }

    #[test]
    fn serde_messages_still_name_the_original_types() {
        let err = parse("sweep:\n  hysteresis: 5\n").unwrap_err().to_string();
        assert!(
            err.starts_with("test.yaml:2:") && err.contains("expected struct Hysteresis"),
            "{err}"
        );
        let err = parse("sweep: 5\n").unwrap_err().to_string();
        assert!(err.contains("expected struct SweepSpec"), "{err}");
    }

    #[test]
    fn geoip_databases_follow_the_config_file_and_the_flag_replaces_them() {
        let text = "geoip:\n  databases: [City.mmdb, /var/lib/GeoIP/ASN.mmdb]\n";
        let file = parse_file("conf/x.yaml", text).unwrap();
        let c = Config::from_file(
            Some("conf/x.yaml".into()),
            file.clone(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.geoip.databases,
            vec![
                PathBuf::from("conf/City.mmdb"),
                PathBuf::from("/var/lib/GeoIP/ASN.mmdb")
            ]
        );
        let flag = Overrides {
            geoip_databases: vec!["a.mmdb".into(), "b.mmdb".into()],
            ..Overrides::default()
        };
        let c = Config::from_file(Some("conf/x.yaml".into()), file, &flag).unwrap();
        assert_eq!(
            c.geoip.databases,
            vec![PathBuf::from("a.mmdb"), PathBuf::from("b.mmdb")]
        );
        assert_eq!(parse("").unwrap().geoip, GeoipConfig::default());
        let err = parse("geoip:\n  database: x.mmdb\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.yaml:2:") && err.contains("unknown field `database`"),
            "{err}"
        );
    }

    #[test]
    fn relative_inventory_follows_the_config_file_but_a_flag_is_taken_as_given() {
        let file = parse_file("conf/x.yaml", "inventory:\n  path: proxies.txt\n").unwrap();
        let c = Config::from_file(
            Some("conf/x.yaml".into()),
            file.clone(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.inventory.path, Some(PathBuf::from("conf/proxies.txt")));
        let flag = Overrides {
            inventory: Some("other.txt".into()),
            ..Overrides::default()
        };
        let c = Config::from_file(Some("conf/x.yaml".into()), file, &flag).unwrap();
        assert_eq!(c.inventory.path, Some(PathBuf::from("other.txt")));
    }
}
