//! Where an exit is: MaxMind-format geolocation databases (GeoLite2 /
//! GeoIP2 City, Country, ASN or ISP, DB-IP's mmdb files), read with the
//! `maxminddb` crate, and the comparison of the exit's country with the one
//! the inventory declares.
//!
//! Several files combine: a City and an ASN database are typical. Each
//! field of [`Geo`] comes from the first file, in configured order, that
//! has it for the address.
//!
//! Files are re-read when they change ([`GeoDb::refresh`], called at the
//! start of every sweep): users refresh them with `geoipupdate`, which
//! writes a new file and renames it over the old one, so a change of inode,
//! size or mtime means "re-read". A file that no longer parses (or is gone)
//! is logged and counted, and the previous contents keep answering: a
//! broken download never blinds the checks. Lookups take a read lock just
//! long enough to clone an `Arc` of the current reader, so a reload never
//! waits for, or stalls, a lookup.
//!
//! L1: imports `model` only.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use maxminddb::Reader;
use serde::{Deserialize, Serialize};

use crate::model::{parse_country, CheckResult, Geo, GeoPolicy, Phase, Proxy, ProxyStatus, Reason};

/// A geolocation database that could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read.
    #[error("geoip database {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a MaxMind DB.
    #[error("geoip database {path}: not a MaxMind DB file: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The reader's complaint.
        message: String,
    },
}

/// Counters of the geolocation work, ready for a metrics collector to read
/// at scrape time (all monotonic).
#[derive(Debug, Default)]
pub struct GeoStats {
    /// Exit IPs looked up.
    pub lookups: AtomicU64,
    /// Lookups that found no country for the exit (no database answered):
    /// never a mismatch, counted here instead.
    pub unknown_country: AtomicU64,
    /// Exits outside the declared country (whatever the pool's policy).
    pub mismatches: AtomicU64,
    /// Of those, checks turned INACTIVE by `geo_policy: fail`.
    pub mismatches_failed: AtomicU64,
    /// Records a database could not decode (counted, treated as no answer).
    pub lookup_errors: AtomicU64,
    /// Files re-read successfully after they changed.
    pub reloads: AtomicU64,
    /// Changed files that could not be read or parsed; the previous
    /// contents kept answering.
    pub reload_errors: AtomicU64,
}

/// A point-in-time copy of [`GeoStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GeoStatsSnapshot {
    /// See [`GeoStats::lookups`].
    pub lookups: u64,
    /// See [`GeoStats::unknown_country`].
    pub unknown_country: u64,
    /// See [`GeoStats::mismatches`].
    pub mismatches: u64,
    /// See [`GeoStats::mismatches_failed`].
    pub mismatches_failed: u64,
    /// See [`GeoStats::lookup_errors`].
    pub lookup_errors: u64,
    /// See [`GeoStats::reloads`].
    pub reloads: u64,
    /// See [`GeoStats::reload_errors`].
    pub reload_errors: u64,
}

impl GeoStats {
    /// Current values.
    pub fn snapshot(&self) -> GeoStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GeoStatsSnapshot {
            lookups: l(&self.lookups),
            unknown_country: l(&self.unknown_country),
            mismatches: l(&self.mismatches),
            mismatches_failed: l(&self.mismatches_failed),
            lookup_errors: l(&self.lookup_errors),
            reloads: l(&self.reloads),
            reload_errors: l(&self.reload_errors),
        }
    }
}

/// What identifies one version of a file: `geoipupdate` renames a new file
/// into place (new inode); an in-place copy changes size or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        let m = std::fs::metadata(path)?;
        Ok(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// One configured file: the reader answering now, and the version of the
/// file last looked at (loaded or refused), so a broken file is reported
/// once, not at every sweep.
struct DbFile {
    path: PathBuf,
    current: RwLock<Arc<Reader<Vec<u8>>>>,
    seen: Mutex<Option<Stamp>>,
}

impl DbFile {
    fn reader(&self) -> Arc<Reader<Vec<u8>>> {
        // A poisoned lock only means a panic while swapping an Arc: the
        // value is whole either way.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn load(path: &Path) -> Result<(Reader<Vec<u8>>, Stamp), GeoError> {
    let read_err = |source| GeoError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Stamp first: a file replaced between the two calls is then re-read
    // at the next refresh instead of being taken for the old version.
    let stamp = Stamp::of(path).map_err(read_err)?;
    let bytes = std::fs::read(path).map_err(read_err)?;
    let reader = Reader::from_source(bytes).map_err(|e| GeoError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // `from_source` reads only the metadata; a file truncated mid-download
    // passes it. Checking the whole tree once per load is what makes
    // "keep the old one if the new file is broken" hold.
    reader.verify().map_err(|e| GeoError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok((reader, stamp))
}

/// The configured geolocation databases, re-read when they change. Shared
/// by every worker of a sweep (`Arc<GeoDb>`).
pub struct GeoDb {
    files: Vec<DbFile>,
    stats: GeoStats,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("paths", &self.paths().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl GeoDb {
    /// Open every file; any one that cannot be read or parsed is an error
    /// (at start there is no previous version to fall back on).
    pub fn open(paths: &[PathBuf]) -> Result<GeoDb, GeoError> {
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let (reader, stamp) = load(path)?;
            tracing::info!(
                path = %path.display(),
                database_type = %reader.metadata().database_type,
                build_epoch = reader.metadata().build_epoch,
                "geoip database loaded"
            );
            files.push(DbFile {
                path: path.clone(),
                current: RwLock::new(Arc::new(reader)),
                seen: Mutex::new(Some(stamp)),
            });
        }
        Ok(GeoDb {
            files,
            stats: GeoStats::default(),
        })
    }

    /// The configured files, in lookup order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// The counters (for metrics).
    pub fn stats(&self) -> &GeoStats {
        &self.stats
    }

    /// Re-read every file whose inode, size or mtime changed since it was
    /// last looked at. A file that fails to load is logged and counted, and
    /// its previous contents keep answering. Blocking (reads whole files):
    /// call it off the async workers. Returns the number of files reloaded.
    pub fn refresh(&self) -> usize {
        let mut reloaded = 0;
        for f in &self.files {
            let mut seen = f.seen.lock().unwrap_or_else(|e| e.into_inner());
            let now = Stamp::of(&f.path).ok();
            if now == *seen {
                continue;
            }
            *seen = now;
            match load(&f.path) {
                Ok((reader, stamp)) => {
                    *seen = Some(stamp);
                    tracing::info!(
                        path = %f.path.display(),
                        database_type = %reader.metadata().database_type,
                        build_epoch = reader.metadata().build_epoch,
                        "geoip database reloaded"
                    );
                    *f.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(reader);
                    self.stats.reloads.fetch_add(1, Ordering::Relaxed);
                    reloaded += 1;
                }
                Err(e) => {
                    self.stats.reload_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "geoip database changed but cannot be used; keeping the previous version");
                }
            }
        }
        reloaded
    }

    /// Where `ip` is, each field from the first file that has it; `None`
    /// when no file knows anything of it.
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        let mut geo = Geo::default();
        for f in &self.files {
            let reader = f.reader();
            let rec = match reader.lookup(ip).and_then(|r| r.decode::<Record<'_>>()) {
                Ok(Some(rec)) => rec,
                Ok(None) => continue,
                Err(e) => {
                    self.stats.lookup_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(path = %f.path.display(), %ip, error = %e, "geoip record unreadable");
                    continue;
                }
            };
            rec.fill(&mut geo);
        }
        (geo != Geo::default()).then_some(geo)
    }

    /// Geolocate the exit a judge reported (`result.exit.ip`; nothing to do
    /// without one) and compare it with the declared country:
    ///
    /// - `exit.geo` gets what the databases know;
    /// - a declared country that differs from the exit's sets
    ///   `exit.geo_mismatch`; with [`GeoPolicy::Fail`] an up result becomes
    ///   INACTIVE, reason `geo_mismatch`, phase `body`, error
    ///   `exit country US, declared DE`, and `latency_ms` = `fail_latency`
    ///   (as every INACTIVE result reports its timeout); with
    ///   [`GeoPolicy::Report`] the status stays;
    /// - an exit whose country no database knows is never a mismatch: it is
    ///   counted in [`GeoStats::unknown_country`] and the result is left as
    ///   it was (an incomplete database must not fail a pool).
    pub fn enrich(
        &self,
        result: &mut CheckResult,
        proxy: &Proxy,
        policy: GeoPolicy,
        fail_latency: Duration,
    ) {
        let Some(ip) = result.exit.as_ref().and_then(|e| e.ip) else {
            return;
        };
        self.stats.lookups.fetch_add(1, Ordering::Relaxed);
        let geo = self.lookup(ip);
        let actual = geo.as_ref().and_then(|g| g.country.clone());
        let up = result.is_up();
        let Some(exit) = result.exit.as_mut() else {
            return;
        };
        exit.geo = geo;
        let Some(actual) = actual else {
            self.stats.unknown_country.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(declared) = proxy.country.as_deref() else {
            return;
        };
        if declared.eq_ignore_ascii_case(&actual) {
            return;
        }
        exit.geo_mismatch = true;
        self.stats.mismatches.fetch_add(1, Ordering::Relaxed);
        if policy == GeoPolicy::Fail && up {
            self.stats.mismatches_failed.fetch_add(1, Ordering::Relaxed);
            result.status = ProxyStatus::Inactive;
            result.reason = Some(Reason::GeoMismatch);
            result.phase = Some(Phase::Body);
            result.error = Some(format!("exit country {actual}, declared {declared}"));
            result.latency_ms = u64::try_from(fail_latency.as_millis()).unwrap_or(u64::MAX);
        }
    }
}

/// The fields we read from any of the supported database types: GeoIP2 /
/// GeoLite2 City and Country and DB-IP (`country`, `city`, `location`),
/// GeoLite2 ASN (`autonomous_system_*`), GeoIP2 ISP (`isp`,
/// `organization`). Borrowed: a lookup allocates only what it keeps.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<CountryRec<'a>>,
    #[serde(borrow, default)]
    city: Option<CityRec<'a>>,
    #[serde(default)]
    location: Option<LocationRec>,
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
    #[serde(borrow, default)]
    isp: Option<&'a str>,
    #[serde(borrow, default)]
    organization: Option<&'a str>,
}

#[derive(Deserialize)]
struct CountryRec<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct CityRec<'a> {
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

#[derive(Deserialize)]
struct LocationRec {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

impl Record<'_> {
    /// Set every field of `geo` that is still empty and this record has.
    fn fill(self, geo: &mut Geo) {
        let text = |s: Option<&str>| s.map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        if geo.country.is_none() {
            // A code that is not ISO alpha-2 is no answer rather than a
            // certain mismatch.
            geo.country = self
                .country
                .and_then(|c| c.iso_code)
                .and_then(|c| parse_country(c).ok());
        }
        if geo.city.is_none() {
            geo.city = text(self.city.and_then(|c| c.names).and_then(|n| n.en));
        }
        if geo.latitude.is_none() && geo.longitude.is_none() {
            if let Some(LocationRec {
                latitude: Some(lat),
                longitude: Some(lon),
            }) = self.location
            {
                geo.latitude = Some(lat);
                geo.longitude = Some(lon);
            }
        }
        if geo.asn.is_none() {
            geo.asn = self.autonomous_system_number;
        }
        if geo.org.is_none() {
            geo.org = text(
                self.autonomous_system_organization
                    .or(self.isp)
                    .or(self.organization),
            );
        }
    }
}

#[cfg(test)]
mod tests;
