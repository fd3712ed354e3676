//! pharox's PostgreSQL database: everything the inventory source
//! ([`crate::inventory::pharox_db`]) and the result writer (`db_writer` in
//! `sinks`) share. Below both of them: it imports only `model`, `secret`
//! and `tls_roots`.
//!
//! The schema is pharox's own (`pharox.storage.postgres.tables`): `proxy_pool`,
//! `proxy`, `lease`, `consumer`, `proxy_health_record`. We never create or
//! migrate it; pharox owns it. This module holds the connection settings
//! ([`Config`], [`resolve`]), connecting ([`Connector`]), errors, the shared
//! counters ([`Stats`]) and pharox's lease bookkeeping ([`leases`]).
//!
//! The connection URL holds a password, so it is a [`Secret`] from the moment
//! it is read (the config's `url`, the content of `url_file` or `url_env`):
//! it prints `***`, and a URL that does not parse is never quoted (its
//! password may sit in the userinfo or in `?password=`). Every driver and
//! server message passes through [`crate::secret::redact_credentials`]
//! before it is stored in an [`Error`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::model::ProxyStatus;
use crate::secret::Secret;

mod connect;
mod error;
pub(crate) mod leases;
mod stats;

pub(crate) use connect::{Connector, Session};
pub(crate) use error::is_server_timeout;
pub use error::Error;
pub(crate) use leases::BurstState;
pub use leases::LeaseBurst;
pub use stats::Stats;
pub(crate) use stats::{Operation, StatsSnapshot};

/// TLS to the database server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PgTls {
    /// Plain TCP (the default; a sidecar usually talks to a database on a private network).
    #[default]
    Disable,
    /// TLS with certificate and host name verification (libpq's `verify-full`):
    /// Mozilla's roots, the system's roots, and `tls_ca_file` if given.
    Require,
}

/// Configuration of the PostgreSQL inventory and sink (the `postgres:` section).
///
/// Exactly one of `url`, `url_file`, `url_env` names the database.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `postgresql://user:password@host:port/db?...`; may carry our own `pools=a,b` parameter.
    #[serde(default)]
    pub url: Option<Secret>,
    /// A file whose (trimmed) content is the URL: keeps the password out of the config.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// An environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Pool names to sweep; empty means every pool.
    #[serde(default)]
    pub pools: Vec<String>,
    /// Proxy statuses to sweep (default: active, slow, inactive; banned proxies are left alone).
    #[serde(default = "default_statuses")]
    pub statuses: Vec<ProxyStatus>,
    /// TLS to the server.
    #[serde(default)]
    pub tls: PgTls,
    /// Extra PEM CA certificates trusted when `tls: require`.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Results written per transaction.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Results held in memory while the database is slow or down.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Where results go (JSON lines) when the in-memory queue is full, and at
    /// shutdown when the database is unreachable; picked up again at start.
    /// One directory per exporter process.
    #[serde(default)]
    pub spill_dir: Option<PathBuf>,
    /// Do not check proxies that are exclusively leased right now (an active,
    /// unexpired lease and `current_leases >= max_concurrency`).
    #[serde(default)]
    pub skip_leased: bool,
    /// Write the exits' observed geography (country, city, latitude,
    /// longitude, isp, asn) into their `proxy` rows when it changed, so
    /// pharox's `ProxyFilters` lease by where proxies really exit. Off by
    /// default: it overwrites what pharox holds (docs/postgres.md).
    #[serde(default)]
    pub write_geo: bool,
    /// Pause sweeps while lease acquisitions are bursting.
    #[serde(default)]
    pub lease_burst: Option<LeaseBurst>,
    /// POST a JSON event here when a leased proxy's health changes.
    #[serde(default)]
    pub leased_event_webhook: Option<String>,
    /// Upper bound of the exponential backoff between write retries.
    #[serde(default = "default_max_backoff")]
    pub retry_max_backoff_seconds: f64,
    /// Server-side limit on one statement (PostgreSQL's `statement_timeout`,
    /// set on every session at connect). `15s`, `500ms`, `1m` or seconds.
    #[serde(
        default = "default_statement_timeout",
        deserialize_with = "de_duration"
    )]
    pub statement_timeout: Duration,
    /// Server-side limit on waiting for a lock (PostgreSQL's `lock_timeout`):
    /// a row held by another client ends the statement instead of stalling it.
    #[serde(default = "default_lock_timeout", deserialize_with = "de_duration")]
    pub lock_timeout: Duration,
    /// Client-side limit on one whole exchange: connecting (TCP, TLS, startup
    /// and authentication) plus the query, so a server that accepts and never
    /// answers cannot hang a sweep or a command.
    #[serde(
        default = "default_operation_timeout",
        deserialize_with = "de_duration"
    )]
    pub operation_timeout: Duration,
}

fn default_statuses() -> Vec<ProxyStatus> {
    vec![
        ProxyStatus::Active,
        ProxyStatus::Slow,
        ProxyStatus::Inactive,
    ]
}
fn default_batch_size() -> usize {
    1000
}
fn default_queue_capacity() -> usize {
    100_000
}
fn default_max_backoff() -> f64 {
    30.0
}
fn default_statement_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_lock_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_operation_timeout() -> Duration {
    Duration::from_secs(20)
}

/// A duration as the config file writes it: `15s`, `500ms`, `2m`, or a
/// number of seconds. (The config layer's `parse_duration` sits above this
/// module, so this small parser is its own.)
fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(f64),
        Text(String),
    }
    let secs = match Raw::deserialize(d)? {
        Raw::Secs(s) => s,
        Raw::Text(t) => parse_secs(&t).map_err(serde::de::Error::custom)?,
    };
    if !(secs.is_finite() && secs > 0.0 && secs < 86_400.0) {
        return Err(serde::de::Error::custom(format!(
            "expected a duration between 1ms and 24h, got {secs}s"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_secs(t: &str) -> Result<f64, String> {
    let t = t.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .map(|v| v * scale)
        .map_err(|_| format!("invalid duration {t:?}: expected e.g. 15s, 500ms, 1m"))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: None,
            url_file: None,
            url_env: None,
            pools: Vec::new(),
            statuses: default_statuses(),
            tls: PgTls::Disable,
            tls_ca_file: None,
            batch_size: default_batch_size(),
            queue_capacity: default_queue_capacity(),
            spill_dir: None,
            skip_leased: false,
            write_geo: false,
            lease_burst: None,
            leased_event_webhook: None,
            retry_max_backoff_seconds: default_max_backoff(),
            statement_timeout: default_statement_timeout(),
            lock_timeout: default_lock_timeout(),
            operation_timeout: default_operation_timeout(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("url_file", &self.url_file)
            .field("url_env", &self.url_env)
            .field("pools", &self.pools)
            .field("statuses", &self.statuses)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("batch_size", &self.batch_size)
            .field("queue_capacity", &self.queue_capacity)
            .field("spill_dir", &self.spill_dir)
            .field("skip_leased", &self.skip_leased)
            .field("write_geo", &self.write_geo)
            .field("lease_burst", &self.lease_burst)
            .field(
                "leased_event_webhook",
                &self.leased_event_webhook.as_deref().map(error::redact),
            )
            .field("retry_max_backoff_seconds", &self.retry_max_backoff_seconds)
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl Config {
    /// A config from an inventory URL such as
    /// `postgresql://USER@HOST:PORT/DB?pools=a,b`: `pools` is ours and is
    /// removed; `sslmode=require` selects [`PgTls::Require`]; every other
    /// parameter is passed to the driver.
    pub fn from_url(raw: &str) -> Result<Config, Error> {
        let (url, pools, tls) = split_url(raw)?;
        Ok(Config {
            url: Some(Secret::new(url)),
            pools,
            tls,
            ..Config::default()
        })
    }

    /// Check values and that exactly one URL source is given.
    pub fn validate(&self) -> Result<(), Error> {
        let sources = [
            self.url.is_some(),
            self.url_file.is_some(),
            self.url_env.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            return Err(Error::Config(
                "exactly one of url, url_file, url_env must be set".into(),
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::Config("batch_size must be at least 1".into()));
        }
        if self.queue_capacity == 0 {
            return Err(Error::Config("queue_capacity must be at least 1".into()));
        }
        if self.statuses.is_empty() {
            return Err(Error::Config("statuses must not be empty".into()));
        }
        if !(self.retry_max_backoff_seconds.is_finite() && self.retry_max_backoff_seconds > 0.0) {
            return Err(Error::Config(
                "retry_max_backoff_seconds must be a positive number".into(),
            ));
        }
        for (name, d) in [
            ("statement_timeout", self.statement_timeout),
            ("lock_timeout", self.lock_timeout),
            ("operation_timeout", self.operation_timeout),
        ] {
            if d < Duration::from_millis(1) {
                return Err(Error::Config(format!("{name} must be at least 1ms")));
            }
        }
        if let Some(b) = &self.lease_burst {
            if b.window_seconds == 0
                || !(b.max_acquisitions_per_second.is_finite()
                    && b.max_acquisitions_per_second > 0.0)
            {
                return Err(Error::Config(
                    "lease_burst needs window_seconds >= 1 and max_acquisitions_per_second > 0"
                        .into(),
                ));
            }
        }
        if let Some(u) = &self.leased_event_webhook {
            let u = url::Url::parse(u)
                .map_err(|e| Error::Config(format!("leased_event_webhook is not a URL: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(Error::Config(
                    "leased_event_webhook must be an http:// or https:// URL".into(),
                ));
            }
        }
        Ok(())
    }

    /// The URL from whichever source is configured, with `pools` stripped.
    pub(crate) fn resolve_url(&self) -> Result<(Secret, Vec<String>, PgTls), Error> {
        let raw = if let Some(u) = &self.url {
            u.clone()
        } else if let Some(path) = &self.url_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("reading url_file {}: {e}", path.display())))?;
            Secret::new(text.trim())
        } else if let Some(var) = &self.url_env {
            let value = std::env::var(var)
                .map_err(|_| Error::Config(format!("environment variable {var} is not set")))?;
            Secret::new(value.trim())
        } else {
            return Err(Error::Config(
                "exactly one of url, url_file, url_env must be set".into(),
            ));
        };
        let (url, pools, tls) = split_url(raw.expose())?;
        Ok((Secret::new(url), pools, tls))
    }
}

/// True for a `postgres://` or `postgresql://` inventory location.
pub(crate) fn is_postgres_url(s: &str) -> bool {
    let s = s.trim_start();
    s.starts_with("postgresql://") || s.starts_with("postgres://")
}

/// The effective database config of a run: an inventory that is a
/// PostgreSQL URL (`--inventory postgresql://...` or `inventory.path`) names
/// the database and may set `pools`; every other setting comes from the
/// `postgres:` section. A section with its own URL and no inventory makes
/// the database the inventory. `None`: no database in this run.
pub(crate) fn resolve(
    inventory: Option<&std::path::Path>,
    section: Option<&Config>,
) -> Result<Option<Config>, Error> {
    // `--inventory "host=db password=..."` would otherwise be read as a
    // file name, and its password quoted in "cannot read inventory".
    if let Some(p) = inventory.filter(|p| !p.exists()) {
        if is_conninfo(&p.to_string_lossy()) {
            return Err(Error::Url(CONNINFO_MESSAGE.into()));
        }
    }
    let inventory_url = inventory
        .and_then(|p| p.to_str())
        .filter(|s| is_postgres_url(s));
    let cfg = match (inventory_url, section) {
        (None, None) => return Ok(None),
        (None, Some(sec)) => {
            if inventory.is_some() {
                return Err(Error::Config(
                    "a postgres section needs the database as the inventory (its proxy ids are pharox UUIDs), not a file".into(),
                ));
            }
            sec.clone()
        }
        (Some(url), sec) => {
            let from_url = Config::from_url(url)?;
            let mut cfg = sec.cloned().unwrap_or_default();
            cfg.url = from_url.url;
            cfg.url_file = None;
            cfg.url_env = None;
            if !from_url.pools.is_empty() {
                cfg.pools = from_url.pools;
            }
            if from_url.tls == PgTls::Require {
                cfg.tls = PgTls::Require;
            }
            cfg
        }
    };
    cfg.validate()?;
    Ok(Some(cfg))
}

/// True for a libpq `key=value` connection string (`host=h password=p`),
/// which we do not take: it would be read as a file name and quoted.
pub(crate) fn is_conninfo(s: &str) -> bool {
    static CONNINFO: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)(^|\s)(host|hostaddr|port|dbname|user|password|sslmode|passfile)\s*=",
        )
        .expect("static regex compiles")
    });
    !s.contains("://") && CONNINFO.is_match(s)
}

/// What a libpq connection string is told.
pub(crate) const CONNINFO_MESSAGE: &str = "a libpq key=value connection string is not supported \
     (not shown: it may hold a password); give a URL: \
     postgresql://user:password@host:port/dbname";

/// Split our own `pools` parameter off a URL; map `sslmode`. The URL is
/// never quoted in an error: a password may sit in its userinfo or in a
/// `password=` parameter, which no redactor of text can find reliably in a
/// string that does not parse.
fn split_url(raw: &str) -> Result<(String, Vec<String>, PgTls), Error> {
    if is_conninfo(raw) {
        return Err(Error::Url(CONNINFO_MESSAGE.into()));
    }
    let mut url = url::Url::parse(raw.trim()).map_err(|e| {
        Error::Url(format!(
            "not a URL ({e}); the value is not shown (it may hold a password)"
        ))
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(Error::Url(format!(
            "scheme must be postgresql:// (got {}://)",
            url.scheme()
        )));
    }
    let mut pools = Vec::new();
    let mut tls = PgTls::Disable;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "pools" => pools.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            "sslmode" => {
                match v.as_ref() {
                    "require" | "verify-ca" | "verify-full" => tls = PgTls::Require,
                    "disable" | "prefer" | "allow" => {}
                    other => return Err(Error::Url(format!("unsupported sslmode {other:?}"))),
                }
                // We do TLS ourselves (always verifying); the driver only needs
                // to know whether to ask for it.
                let mode = if tls == PgTls::Require {
                    "require"
                } else {
                    "disable"
                };
                kept.push((k.into_owned(), mode.to_string()));
            }
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((url.to_string(), pools, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_url_strips_pools_and_keeps_the_rest() {
        let c = Config::from_url(
            "postgresql://bob:pw@db.internal:5433/pharox?pools=eu,%20us&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(c.pools, vec!["eu".to_string(), "us".to_string()]);
        let url = c.url.clone().unwrap().expose().to_string();
        assert!(!url.contains("pools"), "{url}");
        assert!(url.contains("connect_timeout=5"), "{url}");
        assert_eq!(c.tls, PgTls::Disable);
        c.validate().unwrap();
        // The driver accepts what is left.
        Connector::new(&c).unwrap();
    }

    #[test]
    fn resolve_merges_the_inventory_url_with_the_section() {
        use std::path::Path;
        assert!(resolve(Some(Path::new("proxies.txt")), None)
            .unwrap()
            .is_none());
        assert!(resolve(None, None).unwrap().is_none());
        let section = Config {
            url_env: Some("DB".into()),
            batch_size: 10,
            pools: vec!["x".into()],
            ..Config::default()
        };
        let c = resolve(
            Some(Path::new("postgresql://u@h/db?pools=eu")),
            Some(&section),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.batch_size, c.pools.clone()),
            (10, vec!["eu".to_string()])
        );
        assert!(c.url_env.is_none() && c.url.is_some());
        let c = resolve(None, Some(&section)).unwrap().unwrap();
        assert_eq!(c.url_env.as_deref(), Some("DB"));
        assert!(resolve(Some(Path::new("proxies.txt")), Some(&section)).is_err());
        assert!(is_postgres_url("postgres://h/db") && !is_postgres_url("/tmp/postgres.txt"));
    }

    #[test]
    fn sslmode_require_selects_tls_and_other_schemes_fail() {
        let c = Config::from_url("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(c.tls, PgTls::Require);
        assert!(Config::from_url("mysql://u@h/db").is_err());
    }

    #[test]
    fn debug_and_errors_hide_the_password() {
        let c = Config::from_url("postgresql://bob:hunter2@h:5432/db").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        let bad = Config {
            url: Some(Secret::new("postgresql://bob:hunter2@h:notaport/db")),
            ..Config::default()
        };
        let err = match Connector::new(&bad) {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn an_empty_tls_ca_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("empty-ca.pem");
        std::fs::write(&ca, "").unwrap();
        let mut c = Config::from_url("postgresql://u@h/db").unwrap();
        c.tls = PgTls::Require;
        c.tls_ca_file = Some(ca);
        let err = match Connector::new(&c) {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        assert!(
            err.contains("empty-ca.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
    }

    #[test]
    fn exactly_one_url_source_and_unknown_fields_rejected() {
        let two = Config {
            url: Some(Secret::new("postgresql://h/db")),
            url_env: Some("X".into()),
            ..Config::default()
        };
        assert!(two.validate().is_err());
        assert!(Config::default().validate().is_err());
        let yaml = "url: postgresql://h/db\nbogus: 1\n";
        assert!(serde_yaml_ng::from_str::<Config>(yaml).is_err());
        let yaml = "url_env: PHAROX_DB\npools: [a]\nstatuses: [active]\nlease_burst: {window_seconds: 10, max_acquisitions_per_second: 5}\n";
        let c: Config = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(c.statuses, vec![ProxyStatus::Active]);
        assert_eq!(c.batch_size, 1000);
        assert_eq!(
            (c.statement_timeout, c.lock_timeout, c.operation_timeout),
            (
                Duration::from_secs(15),
                Duration::from_secs(5),
                Duration::from_secs(20)
            )
        );
        c.validate().unwrap();
    }

    #[test]
    fn deadlines_parse_from_the_section() {
        let yaml =
            "url_env: X\nstatement_timeout: 2s\nlock_timeout: 500ms\noperation_timeout: 1.5\n";
        let c: Config = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(c.statement_timeout, Duration::from_secs(2));
        assert_eq!(c.lock_timeout, Duration::from_millis(500));
        assert_eq!(c.operation_timeout, Duration::from_millis(1500));
        for bad in ["lock_timeout: 0", "lock_timeout: soon", "lock_timeout: -1s"] {
            let yaml = format!("url_env: X\n{bad}\n");
            assert!(serde_yaml_ng::from_str::<Config>(&yaml).is_err(), "{bad}");
        }
    }
}
