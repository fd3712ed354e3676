//! `sweep --once`: sweep the whole inventory (this shard's share) once,
//! streaming one JSON object per line to stdout and a summary to stderr.
//! With pharox's database, results are written back as they complete.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Result};

use pharox_exporter::Proxy;
use pharox_exporter::ResultWriter;
use pharox_exporter::{run_sweep, SweepParams};

use crate::cli::{CommonArgs, RunArgs};
use crate::output::{ResultLine, Summary};

/// How long a one-shot run waits for the database at the end: it exists to persist.
const DB_FLUSH: Duration = Duration::from_secs(60);

/// Result lines are written to stdout in blocks of about this size...
const BLOCK_BYTES: usize = 64 * 1024;
/// ...or at least this often, so lines still stream: a line reaches stdout
/// at most this long (plus the write itself) after its check completed.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

pub(crate) async fn run(common: &CommonArgs) -> Result<ExitCode> {
    let cfg = common.load(&RunArgs::default())?;
    let read = crate::inventory::read(&cfg).await?;
    let skipped = read.malformed() as usize;
    // The exporter's guard, before anything is probed or written (see check.rs).
    pharox_exporter::ensure_fd_limit(cfg.sweep.concurrency.min(read.proxies.len()), 0)
        .map_err(anyhow::Error::msg)?;
    let store = match &cfg.db {
        Some(pg) => Some(ResultWriter::spawn(pg.clone())?),
        None => None,
    };
    let list: Arc<[Arc<Proxy>]> = read.proxies.into();
    let total = list.len();
    let bar = progress_bar(total as u64);
    let out = Arc::new(Output::default());
    let flusher = tokio::spawn({
        let out = out.clone();
        async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                out.flush();
            }
        }
    });
    let started = std::time::Instant::now();
    let on_result = {
        let (out, bar, store) = (out.clone(), bar.clone(), store.clone());
        move |p: &Arc<Proxy>, r| {
            if let Some(h) = &store {
                h.submit(p, &r);
            }
            let (full, line) = {
                let mut pending = out.pending();
                pending.summary.add(&r);
                ResultLine::new(p, &r).write_json(&mut pending.buf);
                // Same start as the sweep's own clock, give or take the spawn.
                let line = bar
                    .as_ref()
                    .map(|_| pending.summary.progress(total, started.elapsed()));
                (pending.buf.len() >= BLOCK_BYTES, line)
            };
            if full {
                out.flush();
            }
            if let (Some(b), Some(line)) = (&bar, line) {
                b.set_message(line);
                b.inc(1);
            }
        }
    };
    let geo = pharox_exporter::open_geo(&cfg)?;
    let params = SweepParams::new(cfg.sweep.concurrency, cfg.sweep.rate_limit, None).geo(geo);
    let outcome = run_sweep(list, cfg.options.clone(), params, on_result).await;
    flusher.abort();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out.flush();
    let s = {
        let mut pending = out.pending();
        match pending.error.take() {
            None => {}
            Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Some(e) => bail!("writing results to stdout: {e}"),
        }
        pending.summary.clone()
    };
    eprint!("{}", s.render(outcome.elapsed, skipped));
    if let Some(h) = store {
        close_store(h).await?;
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        if let Ok(style) =
            // Rate and ETA come from `Summary::progress` (the message), not
            // indicatif's own estimates: those smooth over a window, so the
            // bar's last rate disagreed with the summary printed under it.
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
        {
            b.set_style(style);
        }
        b
    })
}

/// Result lines and counts, shared by the sweep's workers without a
/// cross-thread hand-off per result: a worker appends its line to one
/// buffer under a lock held for the length of a serialisation (uncontended
/// in practice, so no futex), and whoever fills a block, or the 100 ms
/// ticker, writes the block to stdout with one `write`. A consumer slower
/// than the sweep blocks those writes and so slows the sweep down, instead
/// of growing memory.
#[derive(Default)]
struct Output {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// Whole JSON lines not yet written.
    buf: Vec<u8>,
    /// Counts for the summary.
    summary: Summary,
    /// The first write error; after it, lines are dropped (stdout is gone).
    error: Option<std::io::Error>,
}

impl Output {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panic mid-append leaves at worst a partial line; keep going.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write what is buffered. stdout's lock is taken before the buffer is,
    /// so blocks reach stdout in the order they were filled.
    fn flush(&self) {
        let mut stdout = std::io::stdout().lock();
        let block = {
            let mut p = self.pending();
            if p.buf.is_empty() || p.error.is_some() {
                p.buf.clear();
                return;
            }
            std::mem::replace(&mut p.buf, Vec::with_capacity(BLOCK_BYTES + 4096))
        };
        if let Err(e) = stdout.write_all(&block).and_then(|()| stdout.flush()) {
            self.pending().error.get_or_insert(e);
        }
    }
}

/// Wait for the database (bounded), and fail the run if results were lost.
async fn close_store(h: ResultWriter) -> Result<()> {
    let report = h.close(tokio::time::Instant::now() + DB_FLUSH).await;
    let st = h.stats();
    eprintln!(
        "storage: {} results written to the database",
        st.results_written
    );
    if report.unwritten > 0 {
        bail!(
            "{} results could not be written to the database ({} spilled to disk for the next run)",
            report.unwritten,
            report.spilled
        );
    }
    Ok(())
}
