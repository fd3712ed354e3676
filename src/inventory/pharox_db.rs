//! pharox's PostgreSQL database as an inventory: which proxies to sweep
//! (the proxy query and its row mapping), and the lease bookkeeping that has
//! to happen before a sweep. Connection settings, connecting and the lease
//! SQL live in [`crate::pharox_db`]; results go back through the result
//! writer of `sinks`.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;

use crate::model::{parse_country, Proxy, ProxyProtocol, DEFAULT_PROVIDER};
use crate::pharox_db::{leases, BurstState, Config, Connector, Error, Session, Stats};
use crate::secret::Secret;
use crate::text::Text;

/// Reads proxies and leases from pharox's database. One connection, opened
/// lazily and reopened after a failure; calls are serialised on it, which is
/// plenty for a few queries per sweep.
pub struct PharoxDbSource {
    cfg: Arc<Config>,
    session: Session,
    stats: Arc<Stats>,
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

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: Secret,
}

impl PharoxDbSource {
    /// A source for `cfg`; does not connect yet (the first call does).
    pub fn new(cfg: Config) -> Result<PharoxDbSource, Error> {
        let connector = Connector::new(&cfg)?;
        let (_, url_pools, _) = cfg.resolve_url()?;
        let mut cfg = cfg;
        if cfg.pools.is_empty() {
            cfg.pools = url_pools;
        }
        Ok(PharoxDbSource {
            cfg: Arc::new(cfg),
            session: Session::new(connector),
            stats: Arc::new(Stats::default()),
            rows_skipped: AtomicU64::new(0),
        })
    }

    /// Connect now (useful at start-up to fail fast on a wrong URL).
    pub async fn connect(cfg: Config) -> Result<PharoxDbSource, Error> {
        let src = PharoxDbSource::new(cfg)?;
        src.session.connect().await?;
        Ok(src)
    }

    /// Share counters with the result writer, so `expired_leases_released`
    /// shows up in its stats (and in `pharox_exporter_storage_*`).
    pub fn with_stats(self, stats: Arc<Stats>) -> PharoxDbSource {
        PharoxDbSource {
            session: self.session.with_stats(stats.clone()),
            stats,
            ..self
        }
    }

    /// The configuration in use (pools from the URL merged in).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Rows skipped by [`PharoxDbSource::load`] as malformed, since start.
    pub fn rows_skipped_total(&self) -> u64 {
        self.rows_skipped.load(Ordering::Relaxed)
    }

    /// The proxies to sweep: pools and statuses as configured, without
    /// exclusively leased ones when `skip_leased` is on. Rows that cannot be
    /// used (unknown protocol, bad port) are skipped and counted.
    pub async fn load(&self) -> Result<Vec<Proxy>, Error> {
        let statuses: Vec<&str> = self.cfg.statuses.iter().map(|s| s.as_str()).collect();
        let rows = self
            .session
            .query(
                "proxy inventory query",
                LOAD_SQL,
                &[&self.cfg.pools, &statuses, &Utc::now()],
            )
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

    /// pharox's `cleanup_expired_leases`: release every active lease whose
    /// `expires_at` has passed and fix the proxies' `current_leases`. All
    /// pools, like pharox. Returns how many leases were released.
    pub async fn cleanup_expired_leases(&self) -> Result<u64, Error> {
        leases::cleanup_expired_leases(&self.session, &self.stats).await
    }

    /// Leases acquired per second over the last `window`, in the configured pools.
    pub async fn acquisition_rate(&self, window: Duration) -> Result<f64, Error> {
        leases::acquisition_rate(&self.session, window, &self.cfg.pools).await
    }

    /// With `lease_burst` configured: the current rate and whether sweeps
    /// should pause. `None` when no burst limit is configured.
    pub async fn burst_state(&self) -> Result<Option<BurstState>, Error> {
        let Some(limit) = self.cfg.lease_burst else {
            return Ok(None);
        };
        leases::burst_state(&self.session, limit, &self.cfg.pools)
            .await
            .map(Some)
    }

    /// Ids of proxies exclusively leased right now: an active lease that has
    /// not expired, and no capacity left (`current_leases >= max_concurrency`).
    /// A proxy without `max_concurrency` is shared, so never exclusive.
    pub async fn leased_proxy_ids(&self) -> Result<HashSet<String>, Error> {
        leases::leased_proxy_ids(&self.session, &self.cfg.pools).await
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
    // pharox's `proxy.country` is what the proxy is leased as: the declared
    // country. Not an ISO code: the row is skipped like any unusable row.
    let country: Option<String> = row.try_get(7).map_err(|e| format!("proxy {id}: {e}"))?;
    let country = match country.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => Some(parse_country(c).map_err(|e| format!("proxy {id}: country: {e}"))?),
        None => None,
    };
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
            id: id.into(),
            protocol,
            host: host.into(),
            port,
            username: username.map(Text::from),
            password,
            pool: pool.into(),
            provider: source
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_PROVIDER.to_string())
                .into(),
            labels: labels.into(),
            country: country.map(Text::from),
        },
        exclusive,
    ))
}
