//! The one way to read an inventory, whatever its source: the exporter's
//! sweeps, `check`, `sweep --once` and `validate` all call [`Source::read`],
//! so bad rows, duplicates, shards and lease bursts mean the same everywhere.
//!
//! What differs between callers is stated once, as a [`ReadMode`]: the
//! exporter pauses during a lease burst, a one-shot run sweeps anyway (it
//! was asked for explicitly) and `validate` only reads (no lease cleanup).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::pharox_db::PharoxDbSource as PgSource;
use super::{dedup, load_file, Duplicate, Format, InventoryError, RowError, Shard};
use crate::model::Proxy;
use crate::pharox_db::Stats as PgStats;
use crate::pharox_db::{BurstState, Config as PgConfig, Error as PgError};

/// Where the inventory comes from, as plain values: two equal specs read the
/// same inventory, so a reload rebuilds the [`Source`] only when its spec
/// changed (compared by value, secrets included, never by their redacted
/// `Debug` output).
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// An inventory file.
    File {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: Format,
    },
    /// pharox's PostgreSQL database (boxed: its config is large).
    PharoxDb(Box<PgConfig>),
}

/// How a read treats pharox's leases (files have none: every mode reads a
/// file the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// The exporter before a sweep: release expired leases; while lease
    /// acquisitions burst, load nothing and report [`InventoryRead::paused`]
    /// so the sweep is skipped.
    Sweep,
    /// A one-shot run (`check`, `sweep --once`): release expired leases; a
    /// burst is reported in [`InventoryRead::paused`] but the proxies are
    /// loaded anyway.
    OneShot,
    /// `validate`: read the proxies, write nothing (no lease cleanup), no
    /// burst check.
    ReadOnly,
}

/// Why a read failed as a whole (a bad row never fails a read).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be read or is not in its format.
    #[error(transparent)]
    File(#[from] InventoryError),
    /// The database could not be reached or queried.
    #[error(transparent)]
    Db(#[from] PgError),
}

impl SourceError {
    /// The `kind` label of `pharox_exporter_inventory_errors_total` for this error:
    /// `empty`, `not_regular`, `timeout` for a file in those states, else `read`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::File(e) => e.kind(),
            SourceError::Db(_) => "read",
        }
    }
}

/// A file read (or stat) that takes longer than this is abandoned: a hung
/// network file system must not hold a sweep (or shutdown) hostage.
pub(crate) const FILE_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Run blocking file work on a thread of its own, bounded by `timeout`.
/// Not `spawn_blocking`: a read stuck in the kernel would keep the runtime
/// from shutting down, while a detached thread dies with the process.
/// `None` when it did not finish in time (or could not be started).
async fn off_runtime<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("inventory-read".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    if spawned.is_err() {
        return None;
    }
    tokio::time::timeout(timeout, rx).await.ok()?.ok()
}

/// What one read produced.
#[derive(Debug, Default)]
pub struct InventoryRead {
    /// This shard's valid proxies, duplicates removed (first one kept),
    /// each in the `Arc` a sweep and the exporter's state share.
    pub proxies: Vec<Arc<Proxy>>,
    /// Malformed file entries, skipped, each naming its file, line and field.
    pub errors: Vec<RowError>,
    /// Malformed database rows, skipped (each logged as it was skipped).
    pub skipped_rows: u64,
    /// Entries dropped because their id was already seen.
    pub duplicates: usize,
    /// The first few of them ([`super::DUPLICATES_LISTED`]) with their file
    /// lines; empty for the database, whose ids are unique.
    pub first_duplicates: Vec<Duplicate>,
    /// Valid entries left to other replicas by sharding.
    pub other_shards: usize,
    /// Lease acquisitions are bursting. In [`ReadMode::Sweep`] nothing was
    /// loaded and the sweep should be skipped; in [`ReadMode::OneShot`] the
    /// proxies were loaded anyway.
    pub paused: Option<BurstState>,
}

impl InventoryRead {
    /// Malformed entries skipped, from either source.
    pub fn malformed(&self) -> u64 {
        self.errors.len() as u64 + self.skipped_rows
    }
}

/// What a file looked like when it was read: equal stamps mean "unchanged
/// since the last read", so the exporter does not re-parse it every sweep.
/// The shard is part of it, since a file is filtered by shard as it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    path: PathBuf,
    format: Format,
    shard: Shard,
    modified: SystemTime,
    len: u64,
}

impl FileStamp {
    /// The stamp of `path` now, or `None` when it cannot be stat'ed (the read
    /// then reports why).
    pub fn of(path: &std::path::Path, format: Format, shard: Shard) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            path: path.to_path_buf(),
            format,
            shard,
            modified: meta.modified().ok()?,
            len: meta.len(),
        })
    }
}

/// An opened inventory source. The database source holds one connection,
/// opened lazily and reused across reads.
pub struct Source {
    spec: SourceSpec,
    db: Option<PgSource>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("spec", &self.spec).finish()
    }
}

impl Source {
    /// A source for `spec`. Does not connect (the first read does); fails
    /// only when the database URL cannot be resolved (e.g. `url_file` unreadable).
    pub fn open(spec: SourceSpec) -> Result<Source, PgError> {
        let db = match &spec {
            SourceSpec::File { .. } => None,
            SourceSpec::PharoxDb(cfg) => Some(PgSource::new(PgConfig::clone(cfg))?),
        };
        Ok(Source { spec, db })
    }

    /// Count database work (released leases) in `stats`, shared with the
    /// result writer so both show up in the same storage metrics.
    pub fn with_db_stats(mut self, stats: Arc<PgStats>) -> Source {
        self.db = self.db.map(|db| db.with_stats(stats));
        self
    }

    /// What this source was opened from.
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    /// The file's current stamp; `None` for the database, which has no cheap
    /// "unchanged" test and is read every time, and for a file whose stat
    /// did not answer in time (the read then reports it).
    pub async fn stamp(&self, shard: Shard) -> Option<FileStamp> {
        match &self.spec {
            SourceSpec::File { path, format } => {
                let (path, format) = (path.clone(), *format);
                off_runtime(FILE_READ_TIMEOUT, move || {
                    FileStamp::of(&path, format, shard)
                })
                .await
                .flatten()
            }
            SourceSpec::PharoxDb(_) => None,
        }
    }

    /// Read the proxies `shard` owns ([`Shard::default`] owns all). Bad
    /// entries are skipped and reported in the result, never fatal.
    pub async fn read(&self, shard: Shard, mode: ReadMode) -> Result<InventoryRead, SourceError> {
        match (&self.spec, &self.db) {
            (SourceSpec::File { path, format }, _) => {
                // Filtered by shard while parsing: peak memory follows the share.
                let (p, f) = (path.clone(), *format);
                let loaded = off_runtime(FILE_READ_TIMEOUT, move || load_file(&p, f, shard))
                    .await
                    .ok_or_else(|| InventoryError::Timeout {
                        file: path.clone(),
                        seconds: FILE_READ_TIMEOUT.as_secs(),
                    })??;
                Ok(InventoryRead {
                    proxies: loaded.proxies,
                    errors: loaded.errors,
                    skipped_rows: 0,
                    duplicates: loaded.duplicates,
                    first_duplicates: loaded.first_duplicates,
                    other_shards: loaded.other_shards,
                    paused: None,
                })
            }
            (SourceSpec::PharoxDb(_), Some(db)) => Ok(read_db(db, shard, mode).await?),
            (SourceSpec::PharoxDb(_), None) => Err(SourceError::Db(PgError::Config(
                "database source not opened".into(),
            ))),
        }
    }
}

/// pharox's database: lease bookkeeping as `mode` says, then the proxies,
/// deduplicated and filtered by shard exactly as a file's entries are.
async fn read_db(db: &PgSource, shard: Shard, mode: ReadMode) -> Result<InventoryRead, PgError> {
    let mut read = InventoryRead::default();
    if mode != ReadMode::ReadOnly {
        // As pharox's ProxyManager does before each acquisition; a failure
        // is not fatal, the proxies can still be read.
        if let Err(e) = db.cleanup_expired_leases().await {
            tracing::warn!(error = %e, "expired-lease cleanup failed");
        }
        match db.burst_state().await {
            Ok(Some(b)) if b.bursting => read.paused = Some(b),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "lease burst check failed; sweeping anyway"),
        }
    }
    if let Some(b) = read.paused {
        if mode == ReadMode::Sweep {
            tracing::info!(
                rate = b.rate,
                "lease acquisitions are bursting; sweep paused"
            );
            return Ok(read);
        }
    }
    let skipped_before = db.rows_skipped_total();
    let mut proxies = db.load().await?;
    read.skipped_rows = db.rows_skipped_total().saturating_sub(skipped_before);
    read.duplicates = dedup(&mut proxies);
    let before = proxies.len();
    proxies.retain(|p| shard.owns(&p.id));
    read.other_shards = before - proxies.len();
    let mut shared = super::Shared::default();
    read.proxies = proxies
        .into_iter()
        .map(|p| Arc::new(shared.share(p)))
        .collect();
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_inline_password_changes_the_spec() {
        let a = PgConfig::from_url("postgresql://u:old-secret@127.0.0.1:5432/db").unwrap();
        let b = PgConfig::from_url("postgresql://u:new-secret@127.0.0.1:5432/db").unwrap();
        // The redacted Debug output cannot tell them apart (the old cache key)...
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        // ...their values can, so a reload rebuilds the source.
        let spec = |c: &PgConfig| SourceSpec::PharoxDb(Box::new(c.clone()));
        assert_ne!(spec(&a), spec(&b));
        assert_eq!(spec(&a), spec(&a));
    }

    #[tokio::test]
    async fn a_file_read_reports_bad_rows_duplicates_and_other_shards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.txt");
        let mut text: String = (0..20)
            .map(|i| format!("socks5://u{i}@127.0.0.1:1080\n"))
            .collect();
        text.push_str("socks5://u0@127.0.0.1:1080\nhttp://127.0.0.1:99999\n");
        std::fs::write(&path, &text).unwrap();
        let src = Source::open(SourceSpec::File {
            path: path.clone(),
            format: Format::Auto,
        })
        .unwrap();
        let all = src.read(Shard::default(), ReadMode::Sweep).await.unwrap();
        assert_eq!(
            (all.proxies.len(), all.malformed(), all.duplicates),
            (20, 1, 1)
        );
        let half = src
            .read(Shard::new(0, 2).unwrap(), ReadMode::ReadOnly)
            .await
            .unwrap();
        // The duplicate of u0 counts where u0 falls: a duplicate, or another shard's.
        assert_eq!(half.proxies.len() + half.other_shards + half.duplicates, 21);
        assert!(half.paused.is_none());

        let stamp = src.stamp(Shard::default()).await;
        assert!(stamp.is_some());
        assert_eq!(stamp, src.stamp(Shard::default()).await, "unchanged file");
        assert_ne!(
            stamp,
            src.stamp(Shard::new(0, 2).unwrap()).await,
            "shard is part of it"
        );
        std::fs::write(&path, "socks5://127.0.0.1:1080\n").unwrap();
        assert_ne!(stamp, src.stamp(Shard::default()).await, "rewritten file");
    }
}
