//! pharox's lease bookkeeping, as the exporter must respect it: release
//! expired leases the way pharox's `cleanup_expired_leases` does, measure how
//! fast consumers acquire leases (to pause sweeps during a burst), and find
//! the proxies that are exclusively leased right now.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;

use super::connect::Session;
use super::{Error, Stats};

/// Pause sweeps while pharox consumers are acquiring leases faster than this.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseBurst {
    /// Width of the window the acquisition rate is measured over.
    pub window_seconds: u64,
    /// Above this many acquisitions per second (averaged over the window), sweeps pause.
    pub max_acquisitions_per_second: f64,
}

/// Lease acquisition rate and whether it exceeds the configured burst limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstState {
    /// Acquisitions per second over the window.
    pub rate: f64,
    /// True when `rate` exceeds `max_acquisitions_per_second`: pause the sweep.
    pub bursting: bool,
}

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

/// pharox's `cleanup_expired_leases`: release every active lease whose
/// `expires_at` has passed and fix the proxies' `current_leases`. All pools,
/// like pharox. Returns how many leases were released.
pub(crate) async fn cleanup_expired_leases(session: &Session, stats: &Stats) -> Result<u64, Error> {
    let now = Utc::now();
    let rows = session
        .query("expired-lease cleanup", CLEANUP_SQL, &[&now])
        .await?;
    let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
    let n = u64::try_from(n).unwrap_or(0);
    stats
        .expired_leases_released
        .fetch_add(n, Ordering::Relaxed);
    if n > 0 {
        tracing::info!(released = n, "released expired leases");
    }
    Ok(n)
}

/// Leases acquired per second over the last `window`, in `pools` (empty: all).
pub(crate) async fn acquisition_rate(
    session: &Session,
    window: Duration,
    pools: &[String],
) -> Result<f64, Error> {
    let secs = window.as_secs_f64().max(1e-3);
    let since = Utc::now()
        - chrono::Duration::from_std(window).map_err(|e| Error::Config(format!("window: {e}")))?;
    let rows = session
        .query("lease burst check", RATE_SQL, &[&since, &pools])
        .await?;
    let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
    Ok(n as f64 / secs)
}

/// The current rate against `limit`: whether sweeps should pause.
pub(crate) async fn burst_state(
    session: &Session,
    limit: LeaseBurst,
    pools: &[String],
) -> Result<BurstState, Error> {
    let rate = acquisition_rate(session, Duration::from_secs(limit.window_seconds), pools).await?;
    Ok(BurstState {
        rate,
        bursting: rate > limit.max_acquisitions_per_second,
    })
}

/// Ids of proxies exclusively leased right now: an active lease that has
/// not expired, and no capacity left (`current_leases >= max_concurrency`).
/// A proxy without `max_concurrency` is shared, so never exclusive.
pub(crate) async fn leased_proxy_ids(
    session: &Session,
    pools: &[String],
) -> Result<HashSet<String>, Error> {
    let rows = session
        .query("leased proxies query", LEASED_SQL, &[&Utc::now(), &pools])
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, uuid::Uuid>(0).to_string())
        .collect())
}
