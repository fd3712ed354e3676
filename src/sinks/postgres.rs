//! Writing check results back to pharox's database, the way pharox's own
//! `PostgresStorage.apply_health_check_result` does, without ever slowing
//! the sweep down or losing a result.
//!
//! [`PgSinkHandle::submit`] only takes a short lock and pushes onto a bounded
//! in-memory queue. A background writer drains it in batches: one
//! transaction per batch, locking the batch's proxy rows, reading each
//! row's status (the history row's `status_before`), inserting all history
//! rows with one `INSERT ... SELECT FROM unnest(...)` and updating all
//! proxies with one `UPDATE ... FROM unnest(...)`.
//!
//! When the database is slow or down the writer retries with exponential
//! backoff, and the queue absorbs results. When the queue is full, results
//! go to JSON-lines files in `spill_dir`; without a spill directory, only
//! the newest result per proxy is kept (as a status-only update) and every
//! history row that could not be kept is counted in `dropped_history`.
//!
//! A batch whose commit outcome is unknown (connection lost during COMMIT)
//! is retried; history row ids are derived from proxy id and `checked_at`
//! (UUID v5) and inserted with `ON CONFLICT DO NOTHING`, and a proxy's
//! status only moves forward in `checked_at`, so a retry, a late spill or a
//! second replica can never duplicate a row or roll a status back.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::inventory::postgres::{pg_error_text, Connector, PgConfig, PgError};
use crate::model::{CheckResult, Proxy, ProxyStatus};

/// Namespace of the deterministic history record ids (UUID v5).
const RECORD_NAMESPACE: Uuid = Uuid::from_u128(0x7068_6172_6f78_2d65_7870_6f72_7465_7201);

/// Lines per spill file: bounds what the writer reads back into memory at once.
const SPILL_SEGMENT_LINES: u64 = 10_000;

/// A write that has not finished in this long is abandoned (connection
/// dropped) and retried: a hung server must not stall the writer forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Events waiting for the webhook; beyond this they are counted and dropped.
const EVENT_QUEUE: usize = 1024;

static CREDENTIALS_RE: LazyLock<regex::Regex> = LazyLock::new(|| {
    // scheme://user:pass@ or bare user:pass@ ; the password part is greedy up
    // to the last '@' of the token so a password containing '@' is removed whole.
    regex::Regex::new(r#"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)?[^\s/@:'"<>]*:[^\s'"<>]*@"#)
        .expect("static regex compiles")
});

/// Replace every `user:password@` (with or without a URL scheme) by `***@`.
/// Errors from the probe are already free of credentials; this is the belt
/// to that pair of braces, applied to everything we store or log.
pub fn redact_credentials(s: &str) -> String {
    if !s.contains('@') {
        return s.to_string();
    }
    CREDENTIALS_RE.replace_all(s, "${scheme}***@").into_owned()
}

/// Counters of the sink (and of the source's lease cleanup when shared via
/// [`crate::inventory::postgres::PgSource::with_stats`]).
#[derive(Debug, Default)]
pub struct PgStats {
    /// Results accepted and not yet written (memory, spill files, in flight).
    pub pending: AtomicU64,
    /// Batch transactions committed.
    pub writes_success: AtomicU64,
    /// Batch attempts that failed (including failed connects).
    pub writes_error: AtomicU64,
    /// Results persisted (status update and history row).
    pub results_written: AtomicU64,
    /// History rows lost because the queue was full and no spill was possible.
    pub dropped_history: AtomicU64,
    /// Status updates lost (superseded by a newer result while the queue was full).
    pub dropped_status: AtomicU64,
    /// Leases released by [`crate::inventory::postgres::PgSource::cleanup_expired_leases`].
    pub expired_leases_released: AtomicU64,
    /// Results for proxies no longer in the database (deleted since the sweep loaded them).
    pub unknown_proxy: AtomicU64,
    /// Health changes of leased proxies (events logged).
    pub leased_events: AtomicU64,
    /// Webhook deliveries that failed, timed out, or were dropped because the event queue was full.
    pub webhook_errors: AtomicU64,
}

/// A point-in-time copy of [`PgStats`] for the metrics module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PgStatsSnapshot {
    /// See [`PgStats::pending`].
    pub pending: u64,
    /// See [`PgStats::writes_success`].
    pub writes_success: u64,
    /// See [`PgStats::writes_error`].
    pub writes_error: u64,
    /// See [`PgStats::results_written`].
    pub results_written: u64,
    /// See [`PgStats::dropped_history`].
    pub dropped_history: u64,
    /// See [`PgStats::dropped_status`].
    pub dropped_status: u64,
    /// See [`PgStats::expired_leases_released`].
    pub expired_leases_released: u64,
    /// See [`PgStats::unknown_proxy`].
    pub unknown_proxy: u64,
    /// See [`PgStats::leased_events`].
    pub leased_events: u64,
    /// See [`PgStats::webhook_errors`].
    pub webhook_errors: u64,
}

impl PgStats {
    /// Read every counter.
    pub fn snapshot(&self) -> PgStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PgStatsSnapshot {
            pending: g(&self.pending),
            writes_success: g(&self.writes_success),
            writes_error: g(&self.writes_error),
            results_written: g(&self.results_written),
            dropped_history: g(&self.dropped_history),
            dropped_status: g(&self.dropped_status),
            expired_leases_released: g(&self.expired_leases_released),
            unknown_proxy: g(&self.unknown_proxy),
            leased_events: g(&self.leased_events),
            webhook_errors: g(&self.webhook_errors),
        }
    }
}

/// One result waiting to be written; also the spill file line format.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    proxy_id: Uuid,
    protocol: String,
    status: ProxyStatus,
    latency_ms: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    checked_at: DateTime<Utc>,
    /// False: a status-only update whose history row was already counted as dropped.
    #[serde(default = "yes")]
    history: bool,
}

fn yes() -> bool {
    true
}

impl Pending {
    /// Deterministic, so a retried insert hits `ON CONFLICT DO NOTHING`.
    fn record_id(&self) -> Uuid {
        let micros = self.checked_at.timestamp_micros();
        let mut name = [0u8; 24];
        name[..16].copy_from_slice(self.proxy_id.as_bytes());
        name[16..].copy_from_slice(&micros.to_be_bytes());
        Uuid::new_v5(&RECORD_NAMESPACE, &name)
    }

    /// PostgreSQL keeps microseconds; round here so the status guard, the
    /// record id and the stored value all agree.
    fn new(proxy_id: Uuid, proxy: &Proxy, r: &CheckResult) -> Pending {
        let checked_at = DateTime::<Utc>::from_timestamp_micros(r.checked_at.timestamp_micros())
            .unwrap_or(r.checked_at);
        Pending {
            proxy_id,
            protocol: proxy.protocol.as_str().to_string(),
            status: r.status,
            latency_ms: i32::try_from(r.latency_ms).unwrap_or(i32::MAX),
            error: r.error.as_deref().map(redact_credentials),
            reason: r.reason.map(|x| x.as_str().to_string()),
            checked_at,
            history: true,
        }
    }
}

/// A health change of a leased proxy, as logged and POSTed to the webhook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeasedHealthEvent {
    /// Always `leased_proxy_health_changed`.
    pub event: String,
    /// pharox proxy UUID.
    pub proxy_id: String,
    /// Pool name.
    pub pool: String,
    /// Status of the proxy row before this result.
    pub status_before: ProxyStatus,
    /// Status found by the check.
    pub status_after: ProxyStatus,
    /// `proxy.current_leases` at write time.
    pub current_leases: i32,
    /// True when an active, unexpired lease exists.
    pub active_lease: bool,
    /// Failure reason when the check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Latency recorded with the result.
    pub latency_ms: i32,
    /// When the check finished.
    pub checked_at: DateTime<Utc>,
}

/// Spill files: one open segment being appended to, closed ones waiting.
struct Spill {
    dir: PathBuf,
    current: Option<(PathBuf, File, u64)>,
    closed: VecDeque<PathBuf>,
    seq: u64,
    // Held for the life of the sink: a second process on the same directory
    // would read back and delete our files.
    _lock: DirLock,
}

/// Ownership of a spill directory: a `.owner` file holding our PID, removed
/// on drop. A file left by a process that no longer runs (no `/proc/PID`)
/// is taken over, so a crash does not lock the directory forever.
struct DirLock {
    path: PathBuf,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, PgError> {
        let path = dir.join(".owner");
        let me = std::process::id();
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(me.to_string().as_bytes())
                        .map_err(|e| PgError::Spill(format!("{}: {e}", path.display())))?;
                    return Ok(DirLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    let alive = owner.is_some_and(|pid| {
                        pid == me || Path::new(&format!("/proc/{pid}")).exists()
                    });
                    if alive {
                        return Err(PgError::Spill(format!(
                            "{} is in use by another sink (one spill_dir per exporter)",
                            dir.display()
                        )));
                    }
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(PgError::Spill(format!("{}: {e}", path.display()))),
            }
        }
        Err(PgError::Spill(format!("cannot take {}", path.display())))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Spill {
    fn open(dir: &Path, stats: &PgStats) -> Result<Spill, PgError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PgError::Spill(format!("creating {}: {e}", dir.display())))?;
        let lock = DirLock::acquire(dir)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| PgError::Spill(format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("spill-") && n.ends_with(".jsonl"))
            })
            .collect();
        files.sort();
        let mut leftover = 0u64;
        for f in &files {
            leftover += count_lines(f);
        }
        if leftover > 0 {
            tracing::info!(
                results = leftover,
                files = files.len(),
                "picking up spilled results"
            );
        }
        stats.pending.fetch_add(leftover, Ordering::Relaxed);
        Ok(Spill {
            dir: dir.to_path_buf(),
            current: None,
            closed: files.into(),
            seq: 0,
            _lock: lock,
        })
    }

    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.2 >= SPILL_SEGMENT_LINES)
        {
            self.rotate();
        }
        if self.current.is_none() {
            self.seq += 1;
            // Time first so files from successive runs sort in write order.
            let name = format!(
                "spill-{:020}-{:08}.jsonl",
                Utc::now().timestamp_micros(),
                self.seq
            );
            let path = self.dir.join(name);
            let f = OpenOptions::new().create(true).append(true).open(&path)?;
            self.current = Some((path, f, 0));
        }
        if let Some((_, f, n)) = self.current.as_mut() {
            // One write per line (no userspace buffer) so a crash loses at most a line.
            f.write_all(line)?;
            *n += 1;
        }
        Ok(())
    }

    fn rotate(&mut self) {
        if let Some((path, _, _)) = self.current.take() {
            self.closed.push_back(path);
        }
    }
}

fn count_lines(path: &Path) -> u64 {
    File::open(path)
        .map(|f| BufReader::new(f).lines().count() as u64)
        .unwrap_or(0)
}

struct Queue {
    items: VecDeque<Pending>,
    /// Status-only updates kept when the queue was full: newest per proxy.
    overflow: HashMap<Uuid, Pending>,
    spill: Option<Spill>,
}

struct Inner {
    cfg: PgConfig,
    queue: Mutex<Queue>,
    stats: Arc<PgStats>,
    wake: Notify,
    progress: Notify,
    stop: AtomicBool,
    stop_notify: Notify,
    warned_bad_id: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves the queue consistent (every
        // operation on it is a single push/pop), so keep going.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Builds the sink's background tasks.
pub struct PgSink;

/// The sweep's side of the sink: cheap to clone, never blocks.
#[derive(Clone)]
pub struct PgSinkHandle {
    inner: Arc<Inner>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl PgSink {
    /// Start the writer (and the webhook sender, if configured). Must be
    /// called inside a tokio runtime. Does not need the database to be up.
    pub fn spawn(cfg: PgConfig) -> Result<PgSinkHandle, PgError> {
        Self::spawn_with_stats(cfg, Arc::new(PgStats::default()))
    }

    /// As [`PgSink::spawn`], counting into `stats` (shared with a
    /// [`crate::inventory::postgres::PgSource`]).
    pub fn spawn_with_stats(cfg: PgConfig, stats: Arc<PgStats>) -> Result<PgSinkHandle, PgError> {
        let connector = Connector::new(&cfg)?;
        let spill = match &cfg.spill_dir {
            Some(dir) => Some(Spill::open(dir, &stats)?),
            None => None,
        };
        let events = match &cfg.leased_event_webhook {
            Some(url) => {
                let url = url::Url::parse(url)
                    .map_err(|e| PgError::Config(format!("leased_event_webhook: {e}")))?;
                let (tx, rx) = mpsc::channel(EVENT_QUEUE);
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .connect_timeout(Duration::from_secs(2))
                    .build()
                    .map_err(|e| PgError::Config(format!("webhook client: {e}")))?;
                tokio::spawn(run_webhook(client, url, rx, stats.clone()));
                Some(tx)
            }
            None => None,
        };
        let inner = Arc::new(Inner {
            cfg,
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                overflow: HashMap::new(),
                spill,
            }),
            stats,
            wake: Notify::new(),
            progress: Notify::new(),
            stop: AtomicBool::new(false),
            stop_notify: Notify::new(),
            warned_bad_id: AtomicBool::new(false),
        });
        let writer = tokio::spawn(run_writer(inner.clone(), connector, events));
        Ok(PgSinkHandle {
            inner,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }
}

/// What [`PgSinkHandle::close`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReport {
    /// Results not written to the database (0 on a clean shutdown).
    pub unwritten: u64,
    /// Of those, how many are safe in spill files for the next start.
    pub spilled: u64,
}

impl PgSinkHandle {
    /// Queue one result. Never blocks on the database and never fails:
    /// a result that cannot be queued is spilled, or reduced to a status
    /// update with its history row counted as dropped.
    pub fn submit(&self, proxy: &Proxy, result: &CheckResult) {
        let stats = &self.inner.stats;
        let Ok(proxy_id) = Uuid::parse_str(&proxy.id) else {
            stats.dropped_history.fetch_add(1, Ordering::Relaxed);
            stats.dropped_status.fetch_add(1, Ordering::Relaxed);
            if !self.inner.warned_bad_id.swap(true, Ordering::Relaxed) {
                tracing::warn!(proxy_id = %proxy.id, "postgres sink: proxy id is not a pharox UUID; result not stored");
            }
            return;
        };
        let p = Pending::new(proxy_id, proxy, result);
        let mut q = self.inner.lock();
        if q.items.len() < self.inner.cfg.queue_capacity {
            q.items.push_back(p);
            stats.pending.fetch_add(1, Ordering::Relaxed);
            drop(q);
            self.inner.wake.notify_one();
            return;
        }
        if let Some(spill) = q.spill.as_mut() {
            let mut line = serde_json::to_vec(&p).unwrap_or_default();
            line.push(b'\n');
            match spill.append(&line) {
                Ok(()) => {
                    stats.pending.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "postgres sink: spill write failed"),
            }
        }
        // Full and nowhere to spill: the history row is lost (counted), the
        // status survives if it is the newest we have for this proxy.
        stats.dropped_history.fetch_add(1, Ordering::Relaxed);
        let mut p = p;
        p.history = false;
        match q.overflow.get_mut(&proxy_id) {
            Some(old) => {
                stats.dropped_status.fetch_add(1, Ordering::Relaxed);
                if p.checked_at >= old.checked_at {
                    *old = p;
                }
            }
            None => {
                q.overflow.insert(proxy_id, p);
                stats.pending.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Current counters.
    pub fn stats(&self) -> PgStatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// The shared counters, to hand to [`crate::inventory::postgres::PgSource::with_stats`].
    pub fn shared_stats(&self) -> Arc<PgStats> {
        self.inner.stats.clone()
    }

    /// Wait until everything submitted so far is written, or `deadline`.
    /// Returns the number of results still pending (0: all written).
    pub async fn flush(&self, deadline: Instant) -> u64 {
        self.inner.wake.notify_one();
        loop {
            let pending = self.inner.stats.pending.load(Ordering::Relaxed);
            let now = Instant::now();
            if pending == 0 || now >= deadline {
                return pending;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(wait, self.inner.progress.notified()).await;
        }
    }

    /// Shutdown: flush until `deadline`, then stop the writer. Whatever is
    /// still unwritten goes to spill files when `spill_dir` is set.
    pub async fn close(&self, deadline: Instant) -> CloseReport {
        let _ = self.flush(deadline).await;
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.stop_notify.notify_waiters();
        self.inner.wake.notify_one();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = writer {
            let _ = w.await;
        }
        let unwritten = self.inner.stats.pending.load(Ordering::Relaxed);
        let spilled = {
            let q = self.inner.lock();
            match &q.spill {
                Some(s) => {
                    let mut n = 0;
                    for p in s.closed.iter().chain(s.current.as_ref().map(|c| &c.0)) {
                        n += count_lines(p);
                    }
                    n
                }
                None => 0,
            }
        };
        CloseReport { unwritten, spilled }
    }
}

/// Where the batch being written came from: a spill file is deleted only
/// once all of its lines are committed.
struct SpillSegment {
    path: PathBuf,
    rows: VecDeque<Pending>,
}

fn take_batch(inner: &Inner, segment: &mut Option<SpillSegment>) -> (Vec<Pending>, bool) {
    let max = inner.cfg.batch_size;
    if let Some(seg) = segment.as_mut() {
        let n = seg.rows.len().min(max);
        return (seg.rows.drain(..n).collect(), true);
    }
    let mut q = inner.lock();
    if !q.items.is_empty() || !q.overflow.is_empty() {
        let n = q.items.len().min(max);
        let mut batch: Vec<Pending> = q.items.drain(..n).collect();
        if batch.len() < max && !q.overflow.is_empty() {
            let keys: Vec<Uuid> = q.overflow.keys().take(max - batch.len()).copied().collect();
            for k in keys {
                if let Some(p) = q.overflow.remove(&k) {
                    batch.push(p);
                }
            }
        }
        return (batch, false);
    }
    // Memory is empty: read back the oldest spill file.
    let Some(spill) = q.spill.as_mut() else {
        return (Vec::new(), false);
    };
    if spill.closed.is_empty() {
        spill.rotate();
    }
    let Some(path) = spill.closed.pop_front() else {
        return (Vec::new(), false);
    };
    drop(q);
    let mut rows = VecDeque::new();
    let mut bad = 0u64;
    match File::open(&path) {
        Ok(f) => {
            for line in BufReader::new(f).lines() {
                match line
                    .ok()
                    .and_then(|l| serde_json::from_str::<Pending>(&l).ok())
                {
                    Some(p) => rows.push_back(p),
                    None => bad += 1,
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, file = %path.display(), "cannot read spill file"),
    }
    if bad > 0 {
        // A torn last line after a crash: it was counted as pending at start.
        tracing::warn!(lines = bad, file = %path.display(), "unreadable spill lines dropped");
        inner.stats.pending.fetch_sub(
            bad.min(inner.stats.pending.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        inner
            .stats
            .dropped_history
            .fetch_add(bad, Ordering::Relaxed);
    }
    *segment = Some(SpillSegment { path, rows });
    take_batch(inner, segment)
}

struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max_secs: f64) -> Backoff {
        let max = Duration::from_secs_f64(max_secs);
        Backoff {
            next: Duration::from_millis(100).min(max),
            max,
        }
    }
    fn reset(&mut self) {
        self.next = Duration::from_millis(100).min(self.max);
    }
    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        // Up to 25% jitter so replicas that lost the database together do not
        // all reconnect in the same millisecond.
        let jitter = (Utc::now().timestamp_subsec_nanos() % 1000) as f64 / 4000.0;
        d.mul_f64(1.0 + jitter)
    }
}

async fn run_writer(
    inner: Arc<Inner>,
    connector: Connector,
    events: Option<mpsc::Sender<LeasedHealthEvent>>,
) {
    let mut client: Option<Client> = None;
    let mut backoff = Backoff::new(inner.cfg.retry_max_backoff_seconds);
    let mut batch: Vec<Pending> = Vec::new();
    let mut from_spill = false;
    let mut segment: Option<SpillSegment> = None;
    let mut failures_in_a_row = 0u32;
    let protect_banned = !inner.cfg.statuses.contains(&ProxyStatus::Banned);

    loop {
        if inner.stop.load(Ordering::SeqCst) {
            break;
        }
        if batch.is_empty() {
            (batch, from_spill) = take_batch(&inner, &mut segment);
            if batch.is_empty() {
                if let Some(seg) = segment.take() {
                    remove_spill_file(&seg.path);
                    continue;
                }
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = inner.stop_notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = None;
            match connector.connect().await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    inner.stats.writes_error.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff.step();
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, pending = inner.stats.pending.load(Ordering::Relaxed), "postgres sink: cannot connect");
                    sleep_unless_stopped(&inner, wait).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let attempt = tokio::time::timeout(WRITE_TIMEOUT, write_batch(c, &batch, protect_banned));
        let outcome = tokio::select! {
            r = attempt => r,
            _ = inner.stop_notify.notified() => break,
        };
        match outcome {
            Ok(Ok(out)) => {
                let n = batch.len() as u64;
                let s = &inner.stats;
                s.writes_success.fetch_add(1, Ordering::Relaxed);
                s.results_written
                    .fetch_add(n - out.unknown, Ordering::Relaxed);
                s.unknown_proxy.fetch_add(out.unknown, Ordering::Relaxed);
                s.pending
                    .fetch_sub(n.min(s.pending.load(Ordering::Relaxed)), Ordering::Relaxed);
                batch.clear();
                failures_in_a_row = 0;
                backoff.reset();
                if from_spill && segment.as_ref().is_some_and(|s| s.rows.is_empty()) {
                    if let Some(seg) = segment.take() {
                        remove_spill_file(&seg.path);
                    }
                }
                for ev in out.events {
                    emit_event(&inner, events.as_ref(), ev);
                }
                inner.progress.notify_waiters();
            }
            Ok(Err(e)) => {
                inner.stats.writes_error.fetch_add(1, Ordering::Relaxed);
                let class = e
                    .code()
                    .map(|c| c.code().get(..2).unwrap_or("").to_string());
                // Only a data or constraint error (SQLSTATE 22xxx, 23xxx) can be
                // caused by one row; anything else (server restarting, schema
                // missing, deadlock) is retried as is, however long it lasts.
                let row_specific = matches!(class.as_deref(), Some("22") | Some("23"));
                if !row_specific {
                    failures_in_a_row = 0;
                    if c.is_closed() || matches!(class.as_deref(), None | Some("08") | Some("57")) {
                        client = None;
                    }
                } else {
                    failures_in_a_row += 1;
                    if failures_in_a_row >= 5 {
                        // Isolate the poison row by halving; give up on a
                        // single row so the queue keeps moving.
                        if batch.len() > 1 {
                            let back = batch.split_off(batch.len() / 2);
                            requeue_front(&inner, &mut segment, from_spill, back);
                        } else {
                            tracing::error!(error = %PgError::query(&e), "postgres sink: result rejected by the server, dropped");
                            drop_batch(&inner, &mut batch);
                        }
                        failures_in_a_row = 0;
                    }
                }
                let wait = backoff.step();
                tracing::warn!(error = %PgError::query(&e), retry_in_ms = wait.as_millis() as u64, "postgres sink: batch write failed");
                sleep_unless_stopped(&inner, wait).await;
            }
            Err(_) => {
                inner.stats.writes_error.fetch_add(1, Ordering::Relaxed);
                client = None;
                let wait = backoff.step();
                tracing::warn!(
                    retry_in_ms = wait.as_millis() as u64,
                    "postgres sink: batch write timed out"
                );
                sleep_unless_stopped(&inner, wait).await;
            }
        }
    }

    // Stopping with work left: put it where the next start will find it.
    let mut q = inner.lock();
    if q.spill.is_none() {
        return;
    }
    let mut leftovers: Vec<Pending> = Vec::new();
    if !from_spill {
        leftovers.append(&mut batch);
    }
    leftovers.extend(q.items.drain(..));
    let overflow: Vec<Pending> = q.overflow.drain().map(|(_, p)| p).collect();
    leftovers.extend(overflow);
    if let Some(spill) = q.spill.as_mut() {
        for p in &leftovers {
            let mut line = serde_json::to_vec(p).unwrap_or_default();
            line.push(b'\n');
            if let Err(e) = spill.append(&line) {
                tracing::error!(error = %e, "postgres sink: cannot spill at shutdown");
                break;
            }
        }
        spill.rotate();
        // The segment being read stays on disk: its written lines are
        // harmless to write again (idempotent), and the rest are kept.
        if let Some(seg) = segment.take() {
            spill.closed.push_front(seg.path);
        }
    }
}

fn requeue_front(
    inner: &Inner,
    segment: &mut Option<SpillSegment>,
    from_spill: bool,
    rows: Vec<Pending>,
) {
    if from_spill {
        if let Some(seg) = segment.as_mut() {
            for p in rows.into_iter().rev() {
                seg.rows.push_front(p);
            }
            return;
        }
    }
    let mut q = inner.lock();
    for p in rows.into_iter().rev() {
        q.items.push_front(p);
    }
}

fn drop_batch(inner: &Inner, batch: &mut Vec<Pending>) {
    let s = &inner.stats;
    for p in batch.drain(..) {
        if p.history {
            s.dropped_history.fetch_add(1, Ordering::Relaxed);
        }
        s.dropped_status.fetch_add(1, Ordering::Relaxed);
        s.pending
            .fetch_sub(1.min(s.pending.load(Ordering::Relaxed)), Ordering::Relaxed);
    }
}

fn remove_spill_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(error = %e, file = %path.display(), "cannot remove spill file");
    }
}

async fn sleep_unless_stopped(inner: &Inner, d: Duration) {
    if inner.stop.load(Ordering::SeqCst) {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = inner.stop_notify.notified() => {}
    }
}

fn emit_event(inner: &Inner, tx: Option<&mpsc::Sender<LeasedHealthEvent>>, ev: LeasedHealthEvent) {
    inner.stats.leased_events.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        target: "pharox_exporter::events",
        event = "leased_proxy_health_changed",
        proxy_id = %ev.proxy_id,
        pool = %ev.pool,
        status_before = %ev.status_before,
        status_after = %ev.status_after,
        current_leases = ev.current_leases,
        active_lease = ev.active_lease,
        reason = ev.reason.as_deref().unwrap_or(""),
        "leased proxy changed health"
    );
    if let Some(tx) = tx {
        if tx.try_send(ev).is_err() {
            inner.stats.webhook_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn run_webhook(
    client: reqwest::Client,
    url: url::Url,
    mut rx: mpsc::Receiver<LeasedHealthEvent>,
    stats: Arc<PgStats>,
) {
    while let Some(ev) = rx.recv().await {
        let ok = match client.post(url.clone()).json(&ev).send().await {
            Ok(resp) if resp.status().is_success() => true,
            Ok(resp) => {
                tracing::warn!(
                    status = resp.status().as_u16(),
                    "leased event webhook refused the event"
                );
                false
            }
            Err(e) => {
                // reqwest errors can name the URL; strip any credentials in it.
                tracing::warn!(error = %redact_credentials(&e.without_url().to_string()), "leased event webhook failed");
                false
            }
        };
        if !ok {
            stats.webhook_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct WriteOutcome {
    unknown: u64,
    events: Vec<LeasedHealthEvent>,
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
async fn write_batch(
    client: &mut Client,
    batch: &[Pending],
    protect_banned: bool,
) -> Result<WriteOutcome, tokio_postgres::Error> {
    let mut ids: Vec<Uuid> = batch.iter().map(|p| p.proxy_id).collect();
    ids.sort_unstable();
    ids.dedup();

    let tx = client.transaction().await?;
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

    let mut order: Vec<&Pending> = batch.iter().collect();
    order.sort_by_key(|p| (p.proxy_id, p.checked_at));

    let n = batch.len();
    let (mut h_id, mut h_proxy, mut h_at, mut h_reach, mut h_lat) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut h_proto, mut h_before, mut h_after, mut h_err) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut candidates: BTreeMap<Uuid, LeasedHealthEvent> = BTreeMap::new();
    let mut unknown = 0u64;
    let mut changed: HashSet<Uuid> = HashSet::new();

    for p in order {
        let Some(st) = state.get_mut(&p.proxy_id) else {
            unknown += 1;
            continue;
        };
        let before = st.status.clone();
        if p.history {
            let rid = p.record_id();
            if before != p.status.as_str() && (st.current_leases > 0 || st.leased) {
                candidates.insert(
                    rid,
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
                    },
                );
            }
            h_id.push(rid);
            h_proxy.push(p.proxy_id);
            h_at.push(p.checked_at);
            h_reach.push(p.status.is_up());
            h_lat.push(p.latency_ms);
            h_proto.push(p.protocol.as_str());
            h_before.push(before.clone());
            h_after.push(p.status.as_str());
            h_err.push(p.error.as_deref());
        }
        // Status only moves forward in time, and an operator's ban stands
        // unless banned proxies are swept on purpose.
        let banned = before == ProxyStatus::Banned.as_str();
        if p.checked_at >= st.checked_at && !(banned && protect_banned) {
            st.status = p.status.as_str().to_string();
            st.checked_at = p.checked_at;
            changed.insert(p.proxy_id);
        }
    }

    let (mut u_id, mut u_status, mut u_at) = (Vec::new(), Vec::new(), Vec::new());
    for id in &changed {
        if let Some(st) = state.get(id) {
            u_id.push(*id);
            u_status.push(st.status.as_str());
            u_at.push(st.checked_at);
        }
    }

    let inserted = if h_id.is_empty() {
        Vec::new()
    } else {
        tx.query(
            INSERT_SQL,
            &[
                &h_id, &h_proxy, &h_at, &h_reach, &h_lat, &h_proto, &h_before, &h_after, &h_err,
            ],
        )
        .await?
    };
    if !u_id.is_empty() {
        tx.execute(UPDATE_SQL, &[&u_id, &u_status, &u_at]).await?;
    }
    tx.commit().await?;

    // Only rows this transaction inserted raise events: a retried batch
    // whose first attempt did commit stays silent.
    let mut events = Vec::new();
    for r in inserted {
        let id: Uuid = r.get(0);
        if let Some(ev) = candidates.remove(&id) {
            events.push(ev);
        }
    }
    Ok(WriteOutcome { unknown, events })
}

/// Log-friendly text of a driver error (server message and SQLSTATE), redacted.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    redact_credentials(&pg_error_text(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_user_and_password() {
        let cases = [
            (
                "connect to socks5://alice:s3cret@10.0.0.1:1080 failed",
                "socks5://***@10.0.0.1:1080",
            ),
            ("proxy bob:pa@ss@host:1 refused", "***@host:1"),
            (
                "http://u:p@h and https://x:y@z",
                "http://***@h and https://***@z",
            ),
        ];
        for (input, want) in cases {
            let out = redact_credentials(input);
            assert!(out.contains(want), "{input} -> {out}");
            for secret in ["s3cret", "pa@ss", ":p@", ":y@"] {
                assert!(!out.contains(secret), "{input} -> {out}");
            }
        }
        assert_eq!(redact_credentials("timeout after 5s"), "timeout after 5s");
        assert_eq!(redact_credentials("mail me at a@b"), "mail me at a@b");
    }

    #[test]
    fn record_id_is_deterministic_and_per_check() {
        let id = Uuid::from_u128(42);
        let proxy = Proxy::new(crate::model::ProxyProtocol::Http, "127.0.0.1", 1);
        let mut r = CheckResult {
            proxy_id: id.to_string(),
            status: ProxyStatus::Active,
            latency_ms: 5,
            attempts: 1,
            status_code: Some(200),
            reason: None,
            phase: None,
            error: None,
            checked_at: Utc::now(),
            phases: Default::default(),
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
    fn spill_line_round_trips() {
        let id = Uuid::from_u128(7);
        let proxy = Proxy::new(crate::model::ProxyProtocol::Socks5, "127.0.0.1", 1);
        let r = CheckResult {
            proxy_id: id.to_string(),
            status: ProxyStatus::Inactive,
            latency_ms: 5000,
            attempts: 2,
            status_code: None,
            reason: Some(crate::model::Reason::Timeout),
            phase: Some(crate::model::Phase::Connect),
            error: Some("timeout via socks5://u:pw@h:1".into()),
            checked_at: Utc::now(),
            phases: Default::default(),
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
