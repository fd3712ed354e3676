//! Writing check results back to pharox's database, the way pharox's own
//! `PostgresStorage.apply_health_check_result` does, without ever slowing
//! the sweep down or losing a result.
//!
//! [`ResultWriter::submit`] only takes a short lock and pushes onto a bounded
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
//! is retried; [`batch`] explains why a retry is harmless.
//!
//! Files: [`queue`] (the bounded queue and its overflow policy), [`spill`]
//! (spill files), [`batch`] (the SQL of one batch), [`events`] (leased-proxy
//! health changes and their webhook).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::model::{CheckResult, Proxy, ProxyStatus};
use crate::pharox_db::{
    is_server_timeout, Config, Connector, Error, Operation, Stats, StatsSnapshot,
};

mod batch;
mod events;
mod queue;
mod spill;

use batch::{write_batch, GeoRow, Pending, WriteOutcome};
pub(crate) use events::LeasedHealthEvent;
use events::{emit_event, spawn_webhook};
use queue::{drop_batch, Pushed, Queue};
use spill::{remove_spill_file, Spill, SpillSegment};

/// A write that has not finished in this long is abandoned (connection
/// dropped) and retried: a hung server must not stall the writer forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

struct Inner {
    cfg: Config,
    queue: Mutex<Queue>,
    stats: Arc<Stats>,
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

/// Writes check results back to pharox's database in the background. The
/// sweep's side of it: cheap to clone, never blocks.
#[derive(Clone)]
pub struct ResultWriter {
    inner: Arc<Inner>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// What [`ResultWriter::close`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReport {
    /// Results not written to the database (0 on a clean shutdown).
    pub unwritten: u64,
    /// Of those, how many are safe in spill files for the next start.
    pub spilled: u64,
}

impl ResultWriter {
    /// Start the writer (and the webhook sender, if configured). Must be
    /// called inside a tokio runtime. Does not need the database to be up.
    pub fn spawn(cfg: Config) -> Result<ResultWriter, Error> {
        Self::spawn_with_stats(cfg, Arc::new(Stats::default()))
    }

    /// As [`ResultWriter::spawn`], counting into `stats` (shared with a
    /// [`crate::inventory::pharox_db::PharoxDbSource`], so its lease cleanup
    /// is counted in the same place).
    pub fn spawn_with_stats(cfg: Config, stats: Arc<Stats>) -> Result<ResultWriter, Error> {
        let connector = Connector::new(&cfg)?.with_stats(stats.clone());
        let spill = match &cfg.spill_dir {
            Some(dir) => Some(Spill::open(dir, &stats)?),
            None => None,
        };
        let events = match &cfg.leased_event_webhook {
            Some(url) => Some(spawn_webhook(url, stats.clone())?),
            None => None,
        };
        let inner = Arc::new(Inner {
            cfg,
            queue: Mutex::new(Queue::new(spill)),
            stats,
            wake: Notify::new(),
            progress: Notify::new(),
            stop: AtomicBool::new(false),
            stop_notify: Notify::new(),
            warned_bad_id: AtomicBool::new(false),
        });
        let writer = tokio::spawn(run_writer(inner.clone(), connector, events));
        Ok(ResultWriter {
            inner,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// Queue one result. Never blocks on the database and never fails:
    /// a result that cannot be queued is spilled, or reduced to a status
    /// update with its history row counted as dropped.
    ///
    /// The raw check result goes to the database, as pharox's orchestrator
    /// would write it; hysteresis only shapes what the exporter reports.
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
        let mut p = Pending::new(proxy_id, proxy, result);
        if self.inner.cfg.write_geo {
            p.geo = GeoRow::from_result(result);
        }
        let pushed = self
            .inner
            .lock()
            .push(p, self.inner.cfg.queue_capacity, stats);
        if pushed == Pushed::Queued {
            self.inner.wake.notify_one();
        }
    }

    /// Current counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
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
        let spilled = self.inner.lock().spill.as_ref().map_or(0, Spill::lines);
        CloseReport { unwritten, spilled }
    }
}

/// The next batch: from the spill segment being read back, else from memory,
/// else from the oldest spill file. The bool says it came from a spill file.
fn take_batch(inner: &Inner, segment: &mut Option<SpillSegment>) -> (Vec<Pending>, bool) {
    let max = inner.cfg.batch_size;
    if let Some(seg) = segment.as_mut() {
        let n = seg.rows.len().min(max);
        return (seg.rows.drain(..n).collect(), true);
    }
    let mut q = inner.lock();
    let batch = q.take(max);
    if !batch.is_empty() {
        return (batch, false);
    }
    // Memory is empty: read back the oldest spill file.
    let Some(path) = q.spill.as_mut().and_then(Spill::next_segment) else {
        return (Vec::new(), false);
    };
    drop(q);
    *segment = Some(SpillSegment::read(path, &inner.stats));
    take_batch(inner, segment)
}

/// Exponential backoff with jitter between write retries (not to be confused
/// with the state's recheck back-off of failing proxies).
struct RetryBackoff {
    next: Duration,
    max: Duration,
}

impl RetryBackoff {
    fn new(max_secs: f64) -> RetryBackoff {
        let max = Duration::from_secs_f64(max_secs);
        RetryBackoff {
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

/// The background writer: take a batch, make sure of a connection, write it,
/// and on failure retry (isolating a row the server rejects); on stop, spill
/// what is left.
async fn run_writer(
    inner: Arc<Inner>,
    connector: Connector,
    events: Option<mpsc::Sender<LeasedHealthEvent>>,
) {
    let mut w = Writer::new(inner, connector, events);
    loop {
        if w.inner.stop.load(Ordering::SeqCst) {
            break;
        }
        if w.batch.is_empty() && !w.next_batch().await {
            continue;
        }
        if !w.connected().await {
            continue;
        }
        let Some(c) = w.client.as_mut() else { continue };
        let attempt = tokio::time::timeout(
            WRITE_TIMEOUT.max(w.connector.operation_timeout()),
            write_batch(c, &w.batch, w.protect_banned),
        );
        let outcome = tokio::select! {
            r = attempt => r,
            _ = w.inner.stop_notify.notified() => break,
        };
        match outcome {
            Ok(Ok(out)) => w.written(out),
            Ok(Err(e)) => w.write_failed(&e).await,
            Err(_) => w.timed_out().await,
        }
    }
    w.spill_leftovers();
}

/// The writer task's state from one batch to the next.
struct Writer {
    inner: Arc<Inner>,
    connector: Connector,
    events: Option<mpsc::Sender<LeasedHealthEvent>>,
    client: Option<Client>,
    backoff: RetryBackoff,
    /// The batch being written; kept across retries until written or dropped.
    batch: Vec<Pending>,
    /// The batch came from `segment`, not from memory.
    from_spill: bool,
    /// The spill file being read back.
    segment: Option<SpillSegment>,
    /// Consecutive row-specific errors (SQLSTATE 22xxx/23xxx) on this batch.
    failures_in_a_row: u32,
    protect_banned: bool,
}

impl Writer {
    fn new(
        inner: Arc<Inner>,
        connector: Connector,
        events: Option<mpsc::Sender<LeasedHealthEvent>>,
    ) -> Writer {
        Writer {
            backoff: RetryBackoff::new(inner.cfg.retry_max_backoff_seconds),
            protect_banned: !inner.cfg.statuses.contains(&ProxyStatus::Banned),
            inner,
            connector,
            events,
            client: None,
            batch: Vec::new(),
            from_spill: false,
            segment: None,
            failures_in_a_row: 0,
        }
    }

    /// Take the next batch. False when there is none to write yet: a spill
    /// file read back to its end was removed, or the writer waited for work.
    async fn next_batch(&mut self) -> bool {
        (self.batch, self.from_spill) = take_batch(&self.inner, &mut self.segment);
        if !self.batch.is_empty() {
            return true;
        }
        if let Some(seg) = self.segment.take() {
            remove_spill_file(&seg.path);
            return false;
        }
        tokio::select! {
            _ = self.inner.wake.notified() => {}
            _ = self.inner.stop_notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        false
    }

    /// Make sure of an open connection. False (after the back-off) when the
    /// database cannot be reached.
    async fn connected(&mut self) -> bool {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return true;
        }
        self.client = None;
        match self.connector.connect().await {
            Ok(c) => {
                self.client = Some(c);
                true
            }
            Err(e) => {
                self.inner
                    .stats
                    .writes_error
                    .fetch_add(1, Ordering::Relaxed);
                let wait = self.backoff.step();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, pending = self.inner.stats.pending.load(Ordering::Relaxed), "postgres sink: cannot connect");
                sleep_unless_stopped(&self.inner, wait).await;
                false
            }
        }
    }

    /// The batch is committed: count it, finish a drained spill file, and
    /// send the leased-proxy events it raised.
    fn written(&mut self, out: WriteOutcome) {
        let n = self.batch.len() as u64;
        let s = &self.inner.stats;
        s.writes_success.fetch_add(1, Ordering::Relaxed);
        s.results_written
            .fetch_add(n - out.unknown, Ordering::Relaxed);
        s.unknown_proxy.fetch_add(out.unknown, Ordering::Relaxed);
        s.geo_updated.fetch_add(out.geo_updated, Ordering::Relaxed);
        s.pending
            .fetch_sub(n.min(s.pending.load(Ordering::Relaxed)), Ordering::Relaxed);
        self.batch.clear();
        self.failures_in_a_row = 0;
        self.backoff.reset();
        if self.from_spill && self.segment.as_ref().is_some_and(|s| s.rows.is_empty()) {
            if let Some(seg) = self.segment.take() {
                remove_spill_file(&seg.path);
            }
        }
        for ev in out.events {
            emit_event(&self.inner.stats, self.events.as_ref(), ev);
        }
        self.inner.progress.notify_waiters();
    }

    /// The server refused the batch: drop the connection if it is the
    /// connection's fault, isolate a poison row if one keeps failing, and
    /// retry after the back-off.
    async fn write_failed(&mut self, e: &tokio_postgres::Error) {
        self.inner
            .stats
            .writes_error
            .fetch_add(1, Ordering::Relaxed);
        if is_server_timeout(e) {
            self.connector
                .timed_out(Operation::Write, "batch write", Some(&Error::query(e)));
        }
        let class = e
            .code()
            .map(|c| c.code().get(..2).unwrap_or("").to_string());
        // Only a data or constraint error (SQLSTATE 22xxx, 23xxx) can be
        // caused by one row; anything else (server restarting, schema
        // missing, deadlock) is retried as is, however long it lasts.
        let row_specific = matches!(class.as_deref(), Some("22") | Some("23"));
        if !row_specific {
            self.failures_in_a_row = 0;
            let closed = self.client.as_ref().is_some_and(Client::is_closed);
            if closed || matches!(class.as_deref(), None | Some("08") | Some("57")) {
                self.client = None;
            }
        } else {
            self.failures_in_a_row += 1;
            if self.failures_in_a_row >= 5 {
                self.isolate_poison_row(e);
                self.failures_in_a_row = 0;
            }
        }
        let wait = self.backoff.step();
        tracing::warn!(error = %Error::query(e), retry_in_ms = wait.as_millis() as u64, "postgres sink: batch write failed");
        sleep_unless_stopped(&self.inner, wait).await;
    }

    /// Halve the batch (the other half goes back to the front of its queue),
    /// or give up on a single row so the queue keeps moving.
    fn isolate_poison_row(&mut self, e: &tokio_postgres::Error) {
        if self.batch.len() > 1 {
            let back = self.batch.split_off(self.batch.len() / 2);
            requeue_front(&self.inner, &mut self.segment, self.from_spill, back);
        } else {
            tracing::error!(error = %Error::query(e), "postgres sink: result rejected by the server, dropped");
            drop_batch(&self.inner.stats, &mut self.batch);
        }
    }

    /// No answer within [`WRITE_TIMEOUT`]: drop the connection and retry.
    async fn timed_out(&mut self) {
        self.inner
            .stats
            .writes_error
            .fetch_add(1, Ordering::Relaxed);
        self.connector
            .timed_out(Operation::Write, "batch write", None);
        self.client = None;
        let wait = self.backoff.step();
        tracing::warn!(
            retry_in_ms = wait.as_millis() as u64,
            "postgres sink: batch write timed out"
        );
        sleep_unless_stopped(&self.inner, wait).await;
    }

    /// Stopping with work left: put it where the next start will find it.
    fn spill_leftovers(mut self) {
        let mut q = self.inner.lock();
        if q.spill.is_none() {
            return;
        }
        let mut leftovers: Vec<Pending> = Vec::new();
        if !self.from_spill {
            leftovers.append(&mut self.batch);
        }
        leftovers.extend(q.drain_all());
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
            if let Some(seg) = self.segment.take() {
                spill.closed.push_front(seg.path);
            }
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
    inner.lock().requeue_front(rows);
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
