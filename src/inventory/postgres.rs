//! pharox's PostgreSQL database as an inventory: which proxies to sweep, and
//! the lease bookkeeping that has to happen around a sweep.
//!
//! The schema is pharox's own (`pharox.storage.postgres.tables`): `proxy_pool`,
//! `proxy`, `lease`, `consumer`, `proxy_health_record`. We never create or
//! migrate it; pharox owns it. This module reads proxies and leases and runs
//! pharox's expired-lease cleanup; [`crate::sinks::postgres`] writes results
//! back.
//!
//! The connection URL holds a password, so it is never logged: [`PgConfig`]
//! has a hand-written `Debug`, and every error message passes through
//! [`redact_credentials`] before it is stored in a [`PgError`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio_postgres::Client;

use crate::model::{Proxy, ProxyProtocol, ProxyStatus, DEFAULT_PROVIDER};
use crate::sinks::postgres::{redact_credentials, PgStats};

/// Everything that can go wrong talking to pharox's database. Messages are
/// free of credentials.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The configuration is invalid (missing or conflicting URL sources, bad values).
    #[error("postgres config: {0}")]
    Config(String),
    /// The connection URL could not be parsed.
    #[error("postgres url: {0}")]
    Url(String),
    /// Connecting (TCP, TLS or authentication) failed.
    #[error("postgres connect: {0}")]
    Connect(String),
    /// A query failed.
    #[error("postgres query: {0}")]
    Query(String),
    /// The spill directory could not be used.
    #[error("postgres spill: {0}")]
    Spill(String),
}

impl PgError {
    pub(crate) fn query(e: &tokio_postgres::Error) -> Self {
        PgError::Query(redact_credentials(&pg_error_text(e)))
    }
}

/// The full text of a driver error, including the server's message and
/// SQLSTATE when there is one (the driver's `Display` alone says only "db error").
pub(crate) fn pg_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

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

/// Pause sweeps while pharox consumers are acquiring leases faster than this.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseBurst {
    /// Width of the window the acquisition rate is measured over.
    pub window_seconds: u64,
    /// Above this many acquisitions per second (averaged over the window), sweeps pause.
    pub max_acquisitions_per_second: f64,
}

/// Configuration of the PostgreSQL inventory and sink (the `postgres:` section).
///
/// Exactly one of `url`, `url_file`, `url_env` names the database.
// PartialEq: the exporter rebuilds its database source when the config
// changes by value (the redacted Debug output hides a changed password).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// `postgresql://user:password@host:port/db?...`; may carry our own `pools=a,b` parameter.
    #[serde(default)]
    pub url: Option<String>,
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
    /// Pause sweeps while lease acquisitions are bursting.
    #[serde(default)]
    pub lease_burst: Option<LeaseBurst>,
    /// POST a JSON event here when a leased proxy's health changes.
    #[serde(default)]
    pub leased_event_webhook: Option<String>,
    /// Upper bound of the exponential backoff between write retries.
    #[serde(default = "default_max_backoff")]
    pub retry_max_backoff_seconds: f64,
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

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
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
            lease_burst: None,
            leased_event_webhook: None,
            retry_max_backoff_seconds: default_max_backoff(),
        }
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &self.url.as_deref().map(redact_credentials))
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
            .field("lease_burst", &self.lease_burst)
            .field(
                "leased_event_webhook",
                &self.leased_event_webhook.as_deref().map(redact_credentials),
            )
            .field("retry_max_backoff_seconds", &self.retry_max_backoff_seconds)
            .finish()
    }
}

impl PgConfig {
    /// A config from an inventory URL such as
    /// `postgresql://USER@HOST:PORT/DB?pools=a,b`: `pools` is ours and is
    /// removed; `sslmode=require` selects [`PgTls::Require`]; every other
    /// parameter is passed to the driver.
    pub fn from_url(raw: &str) -> Result<PgConfig, PgError> {
        let (url, pools, tls) = split_url(raw)?;
        Ok(PgConfig {
            url: Some(url),
            pools,
            tls,
            ..PgConfig::default()
        })
    }

    /// Check values and that exactly one URL source is given.
    pub fn validate(&self) -> Result<(), PgError> {
        let sources = [
            self.url.is_some(),
            self.url_file.is_some(),
            self.url_env.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            return Err(PgError::Config(
                "exactly one of url, url_file, url_env must be set".into(),
            ));
        }
        if self.batch_size == 0 {
            return Err(PgError::Config("batch_size must be at least 1".into()));
        }
        if self.queue_capacity == 0 {
            return Err(PgError::Config("queue_capacity must be at least 1".into()));
        }
        if self.statuses.is_empty() {
            return Err(PgError::Config("statuses must not be empty".into()));
        }
        if !(self.retry_max_backoff_seconds.is_finite() && self.retry_max_backoff_seconds > 0.0) {
            return Err(PgError::Config(
                "retry_max_backoff_seconds must be a positive number".into(),
            ));
        }
        if let Some(b) = &self.lease_burst {
            if b.window_seconds == 0
                || !(b.max_acquisitions_per_second.is_finite()
                    && b.max_acquisitions_per_second > 0.0)
            {
                return Err(PgError::Config(
                    "lease_burst needs window_seconds >= 1 and max_acquisitions_per_second > 0"
                        .into(),
                ));
            }
        }
        if let Some(u) = &self.leased_event_webhook {
            let u = url::Url::parse(u)
                .map_err(|e| PgError::Config(format!("leased_event_webhook is not a URL: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(PgError::Config(
                    "leased_event_webhook must be an http:// or https:// URL".into(),
                ));
            }
        }
        Ok(())
    }

    /// The URL from whichever source is configured, with `pools` stripped.
    fn resolve_url(&self) -> Result<(String, Vec<String>, PgTls), PgError> {
        let raw = if let Some(u) = &self.url {
            u.clone()
        } else if let Some(path) = &self.url_file {
            std::fs::read_to_string(path)
                .map_err(|e| PgError::Config(format!("reading url_file {}: {e}", path.display())))?
                .trim()
                .to_string()
        } else if let Some(var) = &self.url_env {
            std::env::var(var)
                .map_err(|_| PgError::Config(format!("environment variable {var} is not set")))?
                .trim()
                .to_string()
        } else {
            return Err(PgError::Config(
                "exactly one of url, url_file, url_env must be set".into(),
            ));
        };
        split_url(&raw)
    }
}

/// True for a `postgres://` or `postgresql://` inventory location.
pub fn is_postgres_url(s: &str) -> bool {
    let s = s.trim_start();
    s.starts_with("postgresql://") || s.starts_with("postgres://")
}

/// The effective database config of a run: an inventory that is a
/// PostgreSQL URL (`--inventory postgresql://...` or `inventory.path`) names
/// the database and may set `pools`; every other setting comes from the
/// `postgres:` section. A section with its own URL and no inventory makes
/// the database the inventory. `None`: no database in this run.
pub fn resolve(
    inventory: Option<&std::path::Path>,
    section: Option<&PgConfig>,
) -> Result<Option<PgConfig>, PgError> {
    let inventory_url = inventory
        .and_then(|p| p.to_str())
        .filter(|s| is_postgres_url(s));
    let cfg = match (inventory_url, section) {
        (None, None) => return Ok(None),
        (None, Some(sec)) => {
            if inventory.is_some() {
                return Err(PgError::Config(
                    "a postgres section needs the database as the inventory (its proxy ids are pharox UUIDs), not a file".into(),
                ));
            }
            sec.clone()
        }
        (Some(url), sec) => {
            let from_url = PgConfig::from_url(url)?;
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

/// Split our own `pools` parameter off a URL; map `sslmode`.
fn split_url(raw: &str) -> Result<(String, Vec<String>, PgTls), PgError> {
    let mut url = url::Url::parse(raw.trim())
        .map_err(|e| PgError::Url(format!("not a URL ({e}): {}", redact_credentials(raw))))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(PgError::Url(format!(
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
                    other => return Err(PgError::Url(format!("unsupported sslmode {other:?}"))),
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

/// Opens connections to the database; shared by the source and the sink.
#[derive(Clone)]
pub(crate) struct Connector {
    cfg: PgConfig,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Connector {
    pub(crate) fn new(cfg: &PgConfig) -> Result<Connector, PgError> {
        cfg.validate()?;
        let (_, _, url_tls) = cfg.resolve_url()?;
        let tls = if cfg.tls == PgTls::Require || url_tls == PgTls::Require {
            Some(make_tls(cfg)?)
        } else {
            None
        };
        let c = Connector {
            cfg: cfg.clone(),
            tls,
        };
        c.driver_config()?;
        Ok(c)
    }

    /// The driver's config, from the URL as it is now: `url_file` and
    /// `url_env` are read again on every (re)connect, so a rotated password
    /// is picked up without a restart.
    fn driver_config(&self) -> Result<tokio_postgres::Config, PgError> {
        let (url, _, url_tls) = self.cfg.resolve_url()?;
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| PgError::Url(redact_credentials(&e.to_string())))?;
        if config.get_application_name().is_none() {
            config.application_name("pharox-exporter");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if self.tls.is_some() {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        } else if url_tls == PgTls::Require {
            return Err(PgError::Config(
                "the URL now asks for sslmode=require: restart to enable TLS".into(),
            ));
        } else {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        Ok(config)
    }

    /// Connect once; the connection's I/O runs on its own task until the
    /// client is dropped or the server goes away.
    pub(crate) async fn connect(&self) -> Result<Client, PgError> {
        let to_err =
            |e: tokio_postgres::Error| PgError::Connect(redact_credentials(&pg_error_text(&e)));
        let config = self.driver_config()?;
        match &self.tls {
            None => {
                let (client, conn) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(to_err)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %redact_credentials(&e.to_string()), "postgres connection closed");
                    }
                });
                Ok(client)
            }
            Some(tls) => {
                let (client, conn) = config.connect(tls.clone()).await.map_err(to_err)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %redact_credentials(&e.to_string()), "postgres connection closed");
                    }
                });
                Ok(client)
            }
        }
    }
}

fn make_tls(cfg: &PgConfig) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        // A broken system certificate must not stop us from trusting the rest.
        let _ = roots.add(cert);
    }
    if let Some(path) = &cfg.tls_ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| PgError::Config(format!("reading tls_ca_file {}: {e}", path.display())))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| PgError::Config(format!("tls_ca_file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| PgError::Config(format!("tls_ca_file: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Config(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}

/// Lease acquisition rate and whether it exceeds the configured burst limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstState {
    /// Acquisitions per second over the window.
    pub rate: f64,
    /// True when `rate` exceeds `max_acquisitions_per_second`: pause the sweep.
    pub bursting: bool,
}

/// What to do at the start of a sweep, from [`PgSource::before_sweep`].
#[derive(Debug)]
pub enum SweepPlan {
    /// Sweep these proxies.
    Sweep(Vec<Proxy>),
    /// Lease acquisitions are bursting: skip this sweep.
    Paused(BurstState),
}

/// Reads proxies and leases from pharox's database. One connection, opened
/// lazily and reopened after a failure; calls are serialised on it, which is
/// plenty for a few queries per sweep.
pub struct PgSource {
    cfg: Arc<PgConfig>,
    connector: Connector,
    client: Mutex<Option<Client>>,
    stats: Arc<PgStats>,
    rows_skipped: AtomicU64,
}

const LOAD_SQL: &str = "
SELECT p.id, p.protocol, p.host, p.port, p.credentials::text, pl.name, p.source,
       p.country, p.city, p.isp, p.asn,
       (p.max_concurrency IS NOT NULL AND p.current_leases >= p.max_concurrency
        AND EXISTS (SELECT 1 FROM lease l
                    WHERE l.proxy_id = p.id AND l.status = 'active' AND l.expires_at > $3)) AS exclusive
FROM proxy p JOIN proxy_pool pl ON pl.id = p.pool_id
WHERE (cardinality($1::text[]) = 0 OR pl.name = ANY($1::text[]))
  AND p.status = ANY($2::text[])
ORDER BY p.id";

// pharox's cleanup_expired_leases in one statement: lock the active leases
// past expires_at, mark them released at `now`, and decrement each proxy's
// current_leases by its number of released leases, never below zero. The row
// locks make two replicas running it at once release each lease exactly once.
const CLEANUP_SQL: &str = "
WITH expired AS (
    SELECT id, proxy_id FROM lease
    WHERE status = 'active' AND expires_at <= $1
    FOR UPDATE
), released AS (
    UPDATE lease l SET status = 'released', released_at = $1
    FROM expired e WHERE l.id = e.id AND l.status = 'active'
    RETURNING l.proxy_id
), decremented AS (
    UPDATE proxy p SET current_leases = greatest(0, p.current_leases - d.n)
    FROM (SELECT proxy_id, count(*)::int AS n FROM released GROUP BY proxy_id) d
    WHERE p.id = d.proxy_id
    RETURNING p.id
)
SELECT count(*) FROM released";

const RATE_SQL: &str = "
SELECT count(*) FROM lease
WHERE acquired_at > $1 AND (cardinality($2::text[]) = 0 OR pool_name = ANY($2::text[]))";

const LEASED_SQL: &str = "
SELECT p.id FROM proxy p JOIN proxy_pool pl ON pl.id = p.pool_id
WHERE p.max_concurrency IS NOT NULL AND p.current_leases >= p.max_concurrency
  AND EXISTS (SELECT 1 FROM lease l
              WHERE l.proxy_id = p.id AND l.status = 'active' AND l.expires_at > $1)
  AND (cardinality($2::text[]) = 0 OR pl.name = ANY($2::text[]))";

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

impl PgSource {
    /// A source for `cfg`; does not connect yet (the first call does).
    pub fn new(cfg: PgConfig) -> Result<PgSource, PgError> {
        let connector = Connector::new(&cfg)?;
        let (_, url_pools, _) = cfg.resolve_url()?;
        let mut cfg = cfg;
        if cfg.pools.is_empty() {
            cfg.pools = url_pools;
        }
        Ok(PgSource {
            cfg: Arc::new(cfg),
            connector,
            client: Mutex::new(None),
            stats: Arc::new(PgStats::default()),
            rows_skipped: AtomicU64::new(0),
        })
    }

    /// Connect now (useful at start-up to fail fast on a wrong URL).
    pub async fn connect(cfg: PgConfig) -> Result<PgSource, PgError> {
        let src = PgSource::new(cfg)?;
        {
            let mut guard = src.client.lock().await;
            *guard = Some(src.connector.connect().await?);
        }
        Ok(src)
    }

    /// Share counters with a sink, so `expired_leases_released` shows up in
    /// the sink's [`crate::sinks::postgres::PgSinkHandle::stats`].
    pub fn with_stats(mut self, stats: Arc<PgStats>) -> PgSource {
        self.stats = stats;
        self
    }

    /// The configuration in use (pools from the URL merged in).
    pub fn config(&self) -> &PgConfig {
        &self.cfg
    }

    /// Rows skipped by [`PgSource::load`] as malformed, since start.
    pub fn rows_skipped_total(&self) -> u64 {
        self.rows_skipped.load(Ordering::Relaxed)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        let mut guard = self.client.lock().await;
        for attempt in 0..2 {
            if guard.as_ref().is_none_or(|c| c.is_closed()) {
                *guard = Some(self.connector.connect().await?);
            }
            let Some(client) = guard.as_ref() else {
                continue;
            };
            match client.query(sql, params).await {
                Ok(rows) => return Ok(rows),
                // A connection that died since the last call: reconnect once.
                Err(e) if attempt == 0 && client.is_closed() => {
                    tracing::debug!(error = %PgError::query(&e), "postgres connection lost, reconnecting");
                    *guard = None;
                }
                Err(e) => return Err(PgError::query(&e)),
            }
        }
        Err(PgError::Connect("connection lost twice in a row".into()))
    }

    /// The proxies to sweep: pools and statuses as configured, without
    /// exclusively leased ones when `skip_leased` is on. Rows that cannot be
    /// used (unknown protocol, bad port) are skipped and counted.
    pub async fn load(&self) -> Result<Vec<Proxy>, PgError> {
        let statuses: Vec<&str> = self.cfg.statuses.iter().map(|s| s.as_str()).collect();
        let rows = self
            .query(LOAD_SQL, &[&self.cfg.pools, &statuses, &Utc::now()])
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            match proxy_from_row(&row) {
                Ok((proxy, exclusive)) => {
                    if !(self.cfg.skip_leased && exclusive) {
                        out.push(proxy);
                    }
                }
                Err(why) => {
                    self.rows_skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(why = %why, "skipping proxy row");
                }
            }
        }
        Ok(out)
    }

    /// Everything the exporter does against the database before a sweep:
    /// release expired leases (as pharox's `ProxyManager` does before each
    /// acquisition; a failure is logged, not fatal), check for a lease
    /// burst, then load the proxies.
    pub async fn before_sweep(&self) -> Result<SweepPlan, PgError> {
        if let Err(e) = self.cleanup_expired_leases().await {
            tracing::warn!(error = %e, "expired-lease cleanup failed");
        }
        match self.burst_state().await {
            Ok(Some(b)) if b.bursting => {
                tracing::info!(
                    rate = b.rate,
                    "lease acquisitions are bursting; sweep paused"
                );
                return Ok(SweepPlan::Paused(b));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "lease burst check failed; sweeping anyway"),
        }
        Ok(SweepPlan::Sweep(self.load().await?))
    }

    /// pharox's `cleanup_expired_leases`: release every active lease whose
    /// `expires_at` has passed and fix the proxies' `current_leases`. All
    /// pools, like pharox. Returns how many leases were released.
    pub async fn cleanup_expired_leases(&self) -> Result<u64, PgError> {
        let now = Utc::now();
        let rows = self.query(CLEANUP_SQL, &[&now]).await?;
        let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        let n = u64::try_from(n).unwrap_or(0);
        self.stats
            .expired_leases_released
            .fetch_add(n, Ordering::Relaxed);
        if n > 0 {
            tracing::info!(released = n, "released expired leases");
        }
        Ok(n)
    }

    /// Leases acquired per second over the last `window`, in the configured pools.
    pub async fn acquisition_rate(&self, window: Duration) -> Result<f64, PgError> {
        let secs = window.as_secs_f64().max(1e-3);
        let since = Utc::now()
            - chrono::Duration::from_std(window)
                .map_err(|e| PgError::Config(format!("window: {e}")))?;
        let rows = self.query(RATE_SQL, &[&since, &self.cfg.pools]).await?;
        let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        Ok(n as f64 / secs)
    }

    /// With `lease_burst` configured: the current rate and whether sweeps
    /// should pause. `None` when no burst limit is configured.
    pub async fn burst_state(&self) -> Result<Option<BurstState>, PgError> {
        let Some(b) = self.cfg.lease_burst else {
            return Ok(None);
        };
        let rate = self
            .acquisition_rate(Duration::from_secs(b.window_seconds))
            .await?;
        Ok(Some(BurstState {
            rate,
            bursting: rate > b.max_acquisitions_per_second,
        }))
    }

    /// Ids of proxies exclusively leased right now: an active lease that has
    /// not expired, and no capacity left (`current_leases >= max_concurrency`).
    /// A proxy without `max_concurrency` is shared, so never exclusive.
    pub async fn leased_proxy_ids(&self) -> Result<HashSet<String>, PgError> {
        let rows = self
            .query(LEASED_SQL, &[&Utc::now(), &self.cfg.pools])
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, uuid::Uuid>(0).to_string())
            .collect())
    }
}

fn proxy_from_row(row: &tokio_postgres::Row) -> Result<(Proxy, bool), String> {
    let id: uuid::Uuid = row.try_get(0).map_err(|e| e.to_string())?;
    let id = id.to_string();
    let protocol: String = row.try_get(1).map_err(|e| format!("proxy {id}: {e}"))?;
    let protocol = ProxyProtocol::from_str(&protocol).map_err(|e| format!("proxy {id}: {e}"))?;
    let host: String = row.try_get(2).map_err(|e| format!("proxy {id}: {e}"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port: i32 = row.try_get(3).map_err(|e| format!("proxy {id}: {e}"))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("proxy {id}: port {port} out of range"))?;
    let creds: Option<String> = row.try_get(4).map_err(|e| format!("proxy {id}: {e}"))?;
    let (username, password) = match creds.as_deref().map(str::trim) {
        None | Some("null") | Some("") => (None, None),
        Some(json) => {
            // Never put the JSON (or serde's excerpt of it) in the message.
            let c: Credentials = serde_json::from_str(json).map_err(|_| {
                format!("proxy {id}: credentials are not {{\"user\", \"password\"}}")
            })?;
            (Some(c.user), Some(c.password))
        }
    };
    let pool: String = row.try_get(5).map_err(|e| format!("proxy {id}: {e}"))?;
    let source: Option<String> = row.try_get(6).map_err(|e| format!("proxy {id}: {e}"))?;
    let mut labels = BTreeMap::new();
    for (idx, name) in [(7, "country"), (8, "city"), (9, "isp")] {
        let v: Option<String> = row.try_get(idx).map_err(|e| format!("proxy {id}: {e}"))?;
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            labels.insert(name.to_string(), v);
        }
    }
    let asn: Option<i32> = row.try_get(10).map_err(|e| format!("proxy {id}: {e}"))?;
    if let Some(asn) = asn {
        labels.insert("asn".to_string(), asn.to_string());
    }
    let exclusive: bool = row.try_get(11).map_err(|e| format!("proxy {id}: {e}"))?;
    Ok((
        Proxy {
            id,
            protocol,
            host,
            port,
            username,
            password,
            pool,
            provider: source
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_PROVIDER.to_string()),
            labels,
        },
        exclusive,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_url_strips_pools_and_keeps_the_rest() {
        let c = PgConfig::from_url(
            "postgresql://bob:pw@db.internal:5433/pharox?pools=eu,%20us&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(c.pools, vec!["eu".to_string(), "us".to_string()]);
        let url = c.url.clone().unwrap();
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
        let section = PgConfig {
            url_env: Some("DB".into()),
            batch_size: 10,
            pools: vec!["x".into()],
            ..PgConfig::default()
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
        let c = PgConfig::from_url("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(c.tls, PgTls::Require);
        assert!(PgConfig::from_url("mysql://u@h/db").is_err());
    }

    #[test]
    fn debug_and_errors_hide_the_password() {
        let c = PgConfig::from_url("postgresql://bob:hunter2@h:5432/db").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        let bad = PgConfig {
            url: Some("postgresql://bob:hunter2@h:notaport/db".into()),
            ..PgConfig::default()
        };
        let err = match Connector::new(&bad) {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn exactly_one_url_source_and_unknown_fields_rejected() {
        let two = PgConfig {
            url: Some("postgresql://h/db".into()),
            url_env: Some("X".into()),
            ..PgConfig::default()
        };
        assert!(two.validate().is_err());
        assert!(PgConfig::default().validate().is_err());
        let yaml = "url: postgresql://h/db\nbogus: 1\n";
        assert!(serde_yaml_ng::from_str::<PgConfig>(yaml).is_err());
        let yaml = "url_env: PHAROX_DB\npools: [a]\nstatuses: [active]\nlease_burst: {window_seconds: 10, max_acquisitions_per_second: 5}\n";
        let c: PgConfig = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(c.statuses, vec![ProxyStatus::Active]);
        assert_eq!(c.batch_size, 1000);
        c.validate().unwrap();
    }
}
