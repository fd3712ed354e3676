//! One batch of results in one transaction, the way pharox's
//! `PostgresStorage.apply_health_check_result` writes one result: a history
//! row with `status_before`/`status_after`, and the proxy's status moved
//! forward.
//!
//! History row ids are derived from proxy id and `checked_at` (UUID v5) and
//! inserted with `ON CONFLICT DO NOTHING`, and a proxy's status only moves
//! forward in `checked_at`, so a retry, a late spill or a second replica can
//! never duplicate a row or roll a status back.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use super::events::LeasedHealthEvent;
use crate::model::{CheckResult, Proxy, ProxyStatus};
use crate::secret::{redact_credentials, Userinfo};

/// Namespace of the deterministic history record ids (UUID v5).
const RECORD_NAMESPACE: Uuid = Uuid::from_u128(0x7068_6172_6f78_2d65_7870_6f72_7465_7201);

/// One result waiting to be written; also the spill file line format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) proxy_id: Uuid,
    pub(super) protocol: String,
    pub(super) status: ProxyStatus,
    pub(super) latency_ms: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) reason: Option<String>,
    pub(super) checked_at: DateTime<Utc>,
    /// False: a status-only update whose history row was already counted as dropped.
    #[serde(default = "yes")]
    pub(super) history: bool,
    /// The exit's observed geography, when `write_geo` is on and the
    /// result has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) geo: Option<GeoRow>,
}

/// Observed geography in pharox's `proxy` columns and types (`country`
/// varchar(8), `city` varchar(128), `latitude`/`longitude` double,
/// `isp` varchar(255), `asn` integer). Two groups, each written whole
/// and only when its database answered: the location (`country`, `city`,
/// coordinates; from a City/Country database, present when the country
/// is known) and the network (`isp`, `asn`; from an ASN database, present
/// when the ASN is known). A City-only setup thus never erases the ISP an
/// operator entered, and a city the new location lacks is cleared rather
/// than left from the old one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GeoRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) location: Option<GeoLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) network: Option<GeoNetwork>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GeoLocation {
    pub(super) country: String,
    pub(super) city: Option<String>,
    pub(super) latitude: Option<f64>,
    pub(super) longitude: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GeoNetwork {
    pub(super) isp: Option<String>,
    /// `None` for an ASN above `integer`'s range (private-use 4-byte ASNs).
    pub(super) asn: Option<i32>,
}

/// At most `n` characters (varchar(n) counts characters).
fn chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl GeoRow {
    /// The row for `r`'s exit geography; `None` when it has none to write.
    pub(crate) fn from_result(r: &CheckResult) -> Option<GeoRow> {
        let g = r.exit.as_ref()?.geo.as_ref()?;
        let location = g.country.as_ref().map(|c| GeoLocation {
            country: chars(c, 8),
            city: g.city.as_deref().map(|c| chars(c, 128)),
            latitude: g.latitude,
            longitude: g.longitude,
        });
        let network = g.asn.map(|asn| GeoNetwork {
            isp: g.org.as_deref().map(|o| chars(o, 255)),
            asn: i32::try_from(asn).ok(),
        });
        (location.is_some() || network.is_some()).then_some(GeoRow { location, network })
    }
}

fn yes() -> bool {
    true
}

impl Pending {
    /// Deterministic, so a retried insert hits `ON CONFLICT DO NOTHING`.
    pub(super) fn record_id(&self) -> Uuid {
        let micros = self.checked_at.timestamp_micros();
        let mut name = [0u8; 24];
        name[..16].copy_from_slice(self.proxy_id.as_bytes());
        name[16..].copy_from_slice(&micros.to_be_bytes());
        Uuid::new_v5(&RECORD_NAMESPACE, &name)
    }

    /// PostgreSQL keeps microseconds; round here so the status guard, the
    /// record id and the stored value all agree.
    pub(super) fn new(proxy_id: Uuid, proxy: &Proxy, r: &CheckResult) -> Pending {
        let checked_at = DateTime::<Utc>::from_timestamp_micros(r.checked_at.timestamp_micros())
            .unwrap_or(r.checked_at);
        Pending {
            proxy_id,
            protocol: proxy.protocol.as_str().to_string(),
            status: r.status,
            latency_ms: i32::try_from(r.latency_ms).unwrap_or(i32::MAX),
            error: r
                .error
                .as_deref()
                .map(|e| redact_credentials(e, Userinfo::Drop)),
            reason: r.reason.map(|x| x.as_str().to_string()),
            checked_at,
            history: true,
            geo: None,
        }
    }
}

/// What a committed batch found besides the rows it wrote.
pub(super) struct WriteOutcome {
    /// Results for proxies no longer in the database.
    pub(super) unknown: u64,
    /// Health changes of leased proxies that this transaction recorded.
    pub(super) events: Vec<LeasedHealthEvent>,
    /// `proxy` rows whose geography changed (`write_geo`).
    pub(super) geo_updated: u64,
}

// Lock the batch's proxies in id order (two replicas writing overlapping
// batches then wait for each other instead of deadlocking) and read what
// status_before and the leased-event check need.
const LOCK_SQL: &str = "
SELECT p.id, p.status, p.checked_at, p.current_leases, pl.name,
       EXISTS (SELECT 1 FROM lease l
               WHERE l.proxy_id = p.id AND l.status = 'active' AND l.expires_at > now()) AS leased
FROM proxy p JOIN proxy_pool pl ON pl.id = p.pool_id
WHERE p.id = ANY($1::uuid[])
ORDER BY p.id
FOR UPDATE OF p";

const INSERT_SQL: &str = "
INSERT INTO proxy_health_record
    (id, proxy_id, checked_at, reachable, latency_ms, protocol, status_before, status_after, error)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::bool[], $5::int4[],
                     $6::text[], $7::text[], $8::text[], $9::text[])
ON CONFLICT (id) DO NOTHING
RETURNING id";

const UPDATE_SQL: &str = "
UPDATE proxy p SET status = v.status, checked_at = v.checked_at
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS v(id, status, checked_at)
WHERE p.id = v.id";

// Observed geography, per group, only where it differs from the row: an
// unchanged proxy is not rewritten (no dead tuple, no trigger, no
// replication traffic at every sweep).
const GEO_SQL: &str = "
UPDATE proxy p SET
    country   = CASE WHEN v.located   THEN v.country   ELSE p.country   END,
    city      = CASE WHEN v.located   THEN v.city      ELSE p.city      END,
    latitude  = CASE WHEN v.located   THEN v.latitude  ELSE p.latitude  END,
    longitude = CASE WHEN v.located   THEN v.longitude ELSE p.longitude END,
    isp       = CASE WHEN v.networked THEN v.isp       ELSE p.isp       END,
    asn       = CASE WHEN v.networked THEN v.asn       ELSE p.asn       END
FROM unnest($1::uuid[], $2::bool[], $3::text[], $4::text[], $5::float8[], $6::float8[],
            $7::bool[], $8::text[], $9::int4[])
    AS v(id, located, country, city, latitude, longitude, networked, isp, asn)
WHERE p.id = v.id
  AND ((v.located AND (p.country IS DISTINCT FROM v.country OR p.city IS DISTINCT FROM v.city
                       OR p.latitude IS DISTINCT FROM v.latitude
                       OR p.longitude IS DISTINCT FROM v.longitude))
    OR (v.networked AND (p.isp IS DISTINCT FROM v.isp OR p.asn IS DISTINCT FROM v.asn)))";

/// A locked proxy row as the batch sees it: read by [`LOCK_SQL`], then moved
/// forward by each newer result in the batch.
struct RowState {
    status: String,
    checked_at: DateTime<Utc>,
    current_leases: i32,
    pool: String,
    leased: bool,
}

/// One batch in one transaction. The per-proxy logic runs here, not in SQL,
/// because a batch may hold several results for one proxy (a backlog after
/// an outage): each gets the previous one's status as `status_before`, and
/// only the newest moves the proxy row.
pub(super) async fn write_batch(
    client: &mut Client,
    batch: &[Pending],
    protect_banned: bool,
) -> Result<WriteOutcome, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let mut rows = lock_rows(&tx, batch).await?;
    let mut plan = Plan::new(batch.len());
    plan.apply(batch, &mut rows, protect_banned);
    let inserted = if plan.history.id.is_empty() {
        Vec::new()
    } else {
        plan.history.insert(&tx).await?
    };
    update_proxies(&tx, &rows, &plan.changed).await?;
    let geo_updated = update_geo(&tx, &plan.geo).await?;
    tx.commit().await?;

    // Only rows this transaction inserted raise events: a retried batch
    // whose first attempt did commit stays silent.
    let mut events = Vec::new();
    for r in inserted {
        let id: Uuid = r.get(0);
        if let Some(ev) = plan.candidates.remove(&id) {
            events.push(ev);
        }
    }
    Ok(WriteOutcome {
        unknown: plan.unknown,
        events,
        geo_updated,
    })
}

/// Lock the batch's proxy rows and read their current state, by proxy id.
async fn lock_rows(
    tx: &Transaction<'_>,
    batch: &[Pending],
) -> Result<HashMap<Uuid, RowState>, tokio_postgres::Error> {
    let mut ids: Vec<Uuid> = batch.iter().map(|p| p.proxy_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = tx.query(LOCK_SQL, &[&ids]).await?;
    let mut state: HashMap<Uuid, RowState> = HashMap::with_capacity(rows.len());
    for r in rows {
        state.insert(
            r.get(0),
            RowState {
                status: r.get(1),
                checked_at: r.get(2),
                current_leases: r.get(3),
                pool: r.get(4),
                leased: r.get(5),
            },
        );
    }
    Ok(state)
}

/// What one batch writes, worked out before any of it is sent.
struct Plan<'a> {
    history: HistoryColumns<'a>,
    /// Leased-proxy health changes, by history record id: sent only if that
    /// record is inserted now.
    candidates: BTreeMap<Uuid, LeasedHealthEvent>,
    /// Proxies whose row moves forward.
    changed: HashSet<Uuid>,
    /// Results for proxies no longer in the database.
    unknown: u64,
    /// The newest observed geography per proxy, among results that move
    /// its row forward.
    geo: HashMap<Uuid, &'a GeoRow>,
}

impl<'a> Plan<'a> {
    fn new(n: usize) -> Plan<'a> {
        Plan {
            history: HistoryColumns::with_capacity(n),
            candidates: BTreeMap::new(),
            changed: HashSet::new(),
            unknown: 0,
            geo: HashMap::new(),
        }
    }

    /// Walk the batch per proxy, oldest first: each result gets a history
    /// row with the status before it, and moves `rows` forward.
    fn apply(
        &mut self,
        batch: &'a [Pending],
        rows: &mut HashMap<Uuid, RowState>,
        protect_banned: bool,
    ) {
        let mut order: Vec<&Pending> = batch.iter().collect();
        order.sort_by_key(|p| (p.proxy_id, p.checked_at));
        for p in order {
            let Some(st) = rows.get_mut(&p.proxy_id) else {
                self.unknown += 1;
                continue;
            };
            let before = st.status.clone();
            if p.history {
                let rid = p.record_id();
                if before != p.status.as_str() && (st.current_leases > 0 || st.leased) {
                    self.candidates.insert(rid, leased_event(p, st, &before));
                }
                self.history.push(rid, p, before.clone());
            }
            // Status only moves forward in time, and an operator's ban stands
            // unless banned proxies are swept on purpose.
            let banned = before == ProxyStatus::Banned.as_str();
            if p.checked_at >= st.checked_at && !(banned && protect_banned) {
                st.status = p.status.as_str().to_string();
                st.checked_at = p.checked_at;
                self.changed.insert(p.proxy_id);
                // Oldest first: a newer result's geography replaces an older one's.
                if let Some(g) = &p.geo {
                    self.geo.insert(p.proxy_id, g);
                }
            }
        }
    }
}

/// The webhook event for a leased proxy whose health changes with `p`.
fn leased_event(p: &Pending, st: &RowState, before: &str) -> LeasedHealthEvent {
    LeasedHealthEvent {
        event: "leased_proxy_health_changed".to_string(),
        proxy_id: p.proxy_id.to_string(),
        pool: st.pool.clone(),
        status_before: before.parse().unwrap_or(ProxyStatus::Inactive),
        status_after: p.status,
        current_leases: st.current_leases,
        active_lease: st.leased,
        reason: p.reason.clone(),
        latency_ms: p.latency_ms,
        checked_at: p.checked_at,
    }
}

/// History rows column by column, the shape [`INSERT_SQL`]'s `unnest` takes.
struct HistoryColumns<'a> {
    id: Vec<Uuid>,
    proxy: Vec<Uuid>,
    at: Vec<DateTime<Utc>>,
    reachable: Vec<bool>,
    latency: Vec<i32>,
    protocol: Vec<&'a str>,
    before: Vec<String>,
    after: Vec<&'a str>,
    error: Vec<Option<&'a str>>,
}

impl<'a> HistoryColumns<'a> {
    fn with_capacity(n: usize) -> HistoryColumns<'a> {
        HistoryColumns {
            id: Vec::with_capacity(n),
            proxy: Vec::with_capacity(n),
            at: Vec::with_capacity(n),
            reachable: Vec::with_capacity(n),
            latency: Vec::with_capacity(n),
            protocol: Vec::with_capacity(n),
            before: Vec::with_capacity(n),
            after: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, id: Uuid, p: &'a Pending, before: String) {
        self.id.push(id);
        self.proxy.push(p.proxy_id);
        self.at.push(p.checked_at);
        self.reachable.push(p.status.is_up());
        self.latency.push(p.latency_ms);
        self.protocol.push(p.protocol.as_str());
        self.before.push(before);
        self.after.push(p.status.as_str());
        self.error.push(p.error.as_deref());
    }

    /// Insert them all; returns the ids actually inserted (not already there).
    async fn insert(
        &self,
        tx: &Transaction<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        tx.query(
            INSERT_SQL,
            &[
                &self.id,
                &self.proxy,
                &self.at,
                &self.reachable,
                &self.latency,
                &self.protocol,
                &self.before,
                &self.after,
                &self.error,
            ],
        )
        .await
    }
}

/// Move the `changed` proxy rows to their new status and `checked_at`.
async fn update_proxies(
    tx: &Transaction<'_>,
    rows: &HashMap<Uuid, RowState>,
    changed: &HashSet<Uuid>,
) -> Result<(), tokio_postgres::Error> {
    let (mut u_id, mut u_status, mut u_at) = (Vec::new(), Vec::new(), Vec::new());
    for id in changed {
        if let Some(st) = rows.get(id) {
            u_id.push(*id);
            u_status.push(st.status.as_str());
            u_at.push(st.checked_at);
        }
    }
    if !u_id.is_empty() {
        tx.execute(UPDATE_SQL, &[&u_id, &u_status, &u_at]).await?;
    }
    Ok(())
}

/// Write the observed geography of `geo`'s proxies where it changed.
/// Returns the rows rewritten.
async fn update_geo(
    tx: &Transaction<'_>,
    geo: &HashMap<Uuid, &GeoRow>,
) -> Result<u64, tokio_postgres::Error> {
    if geo.is_empty() {
        return Ok(0);
    }
    let n = geo.len();
    let mut c = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (id, g) in geo {
        let loc = g.location.as_ref();
        let net = g.network.as_ref();
        c.0.push(*id);
        c.1.push(loc.is_some());
        c.2.push(loc.map(|l| l.country.as_str()));
        c.3.push(loc.and_then(|l| l.city.as_deref()));
        c.4.push(loc.and_then(|l| l.latitude));
        c.5.push(loc.and_then(|l| l.longitude));
        c.6.push(net.is_some());
        c.7.push(net.and_then(|n| n.isp.as_deref()));
        c.8.push(net.and_then(|n| n.asn));
    }
    tx.execute(
        GEO_SQL,
        &[&c.0, &c.1, &c.2, &c.3, &c.4, &c.5, &c.6, &c.7, &c.8],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_id_is_deterministic_and_per_check() {
        let id = Uuid::from_u128(42);
        let proxy = Proxy::new(crate::model::ProxyProtocol::Http, "127.0.0.1", 1);
        let mut r = CheckResult {
            proxy_id: id.to_string(),
            status: ProxyStatus::Active,
            latency_ms: 5,
            elapsed_ms: 5,
            attempts: 1,
            status_code: Some(200),
            reason: None,
            phase: None,
            error: None,
            checked_at: Utc::now(),
            phases: Default::default(),
            exit: None,
        };
        let a = Pending::new(id, &proxy, &r);
        let b = Pending::new(id, &proxy, &r);
        assert_eq!(a.record_id(), b.record_id());
        r.checked_at += chrono::Duration::microseconds(1);
        assert_ne!(a.record_id(), Pending::new(id, &proxy, &r).record_id());
        let other = Pending::new(Uuid::from_u128(43), &proxy, &r);
        assert_ne!(other.record_id(), Pending::new(id, &proxy, &r).record_id());
    }

    #[test]
    fn geography_maps_to_pharox_columns_by_group() {
        use crate::model::{Exit, Geo};
        let mut r = CheckResult {
            proxy_id: "x".into(),
            status: ProxyStatus::Active,
            latency_ms: 5,
            elapsed_ms: 5,
            attempts: 1,
            status_code: Some(200),
            reason: None,
            phase: None,
            error: None,
            checked_at: Utc::now(),
            phases: Default::default(),
            exit: None,
        };
        assert_eq!(GeoRow::from_result(&r), None, "no exit");
        r.exit = Some(Exit::default());
        assert_eq!(GeoRow::from_result(&r), None, "no geography");
        let long_org = "O".repeat(300);
        r.exit = Some(Exit {
            geo: Some(Geo {
                country: Some("DE".into()),
                city: Some("Berlin".into()),
                latitude: Some(52.5),
                longitude: Some(13.4),
                asn: Some(3_000_000_000),
                org: Some(long_org),
            }),
            ..Exit::default()
        });
        let row = GeoRow::from_result(&r).unwrap();
        assert_eq!(
            row.location,
            Some(GeoLocation {
                country: "DE".into(),
                city: Some("Berlin".into()),
                latitude: Some(52.5),
                longitude: Some(13.4),
            })
        );
        let net = row.network.clone().unwrap();
        assert_eq!(net.isp.map(|i| i.chars().count()), Some(255));
        assert_eq!(net.asn, None, "beyond pharox's integer column");

        // An ASN-only answer writes the network group only, and the spill
        // line keeps it.
        r.exit = Some(Exit {
            geo: Some(Geo {
                asn: Some(64500),
                org: Some("Example".into()),
                ..Geo::default()
            }),
            ..Exit::default()
        });
        let row = GeoRow::from_result(&r).unwrap();
        assert_eq!(row.location, None);
        let proxy = Proxy::new(crate::model::ProxyProtocol::Http, "127.0.0.1", 1);
        let mut p = Pending::new(Uuid::from_u128(9), &proxy, &r);
        p.geo = Some(row.clone());
        let back: Pending = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back.geo, Some(row));
        // A spill line from before geography reads as "nothing to write".
        let old = r#"{"proxy_id":"00000000-0000-0000-0000-000000000009","protocol":"http","status":"active","latency_ms":5,"checked_at":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(serde_json::from_str::<Pending>(old).unwrap().geo, None);
    }

    #[test]
    fn spill_line_round_trips() {
        let id = Uuid::from_u128(7);
        let proxy = Proxy::new(crate::model::ProxyProtocol::Socks5, "127.0.0.1", 1);
        let r = CheckResult {
            proxy_id: id.to_string(),
            status: ProxyStatus::Inactive,
            latency_ms: 5000,
            elapsed_ms: 5000,
            attempts: 2,
            status_code: None,
            reason: Some(crate::model::Reason::Timeout),
            phase: Some(crate::model::Phase::Connect),
            error: Some("timeout via socks5://u:pw@h:1".into()),
            checked_at: Utc::now(),
            phases: Default::default(),
            exit: None,
        };
        let p = Pending::new(id, &proxy, &r);
        assert!(!p.error.as_deref().unwrap_or_default().contains("pw"));
        let line = serde_json::to_string(&p).unwrap();
        let back: Pending = serde_json::from_str(&line).unwrap();
        assert_eq!(back.record_id(), p.record_id());
        assert_eq!(back.status, ProxyStatus::Inactive);
        assert!(back.history);
    }
}
