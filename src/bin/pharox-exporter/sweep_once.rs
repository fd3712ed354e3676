//! `sweep --once`: sweep the whole inventory (this shard's share) once,
//! streaming one JSON object per line to stdout and a summary to stderr.
//! With pharox's database, results are written back as they complete.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Result};

use pharox_exporter::Proxy;
use pharox_exporter::ResultWriter;
use pharox_exporter::{run_sweep, SweepParams};

use crate::cli::{CommonArgs, RunArgs};
use crate::output::{ResultLine, Summary};

/// How long a one-shot run waits for the database at the end: it exists to persist.
const DB_FLUSH: Duration = Duration::from_secs(60);

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
    let list: Arc<[Arc<Proxy>]> = read.proxies.into_iter().map(Arc::new).collect();
    let total = list.len();
    let bar = progress_bar(total as u64);
    // Results go to one writer thread through a bounded channel: workers never
    // contend on stdout, and a slow consumer of stdout slows the sweep down
    // instead of growing memory.
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(4096);
    let writer = spawn_writer(rx);
    let summary = Arc::new(Mutex::new(Summary::default()));
    let started = std::time::Instant::now();
    let on_result = {
        let (summary, bar, store) = (summary.clone(), bar.clone(), store.clone());
        let tx: SyncSender<String> = tx;
        move |p: &Arc<Proxy>, r| {
            let line = {
                let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
                s.add(&r);
                // Same start as the sweep's own clock, give or take the spawn.
                bar.as_ref().map(|_| s.progress(total, started.elapsed()))
            };
            if let Some(h) = &store {
                h.submit(p, &r);
            }
            // A closed channel means the writer failed (stdout gone); the error is reported below.
            let _ = tx.send(ResultLine::new(p, &r).to_json());
            if let (Some(b), Some(line)) = (&bar, line) {
                b.set_message(line);
                b.inc(1);
            }
        }
    };
    let geo = pharox_exporter::open_geo(&cfg)?;
    let params = SweepParams::new(cfg.sweep.concurrency, cfg.sweep.rate_limit, None).geo(geo);
    let outcome = run_sweep(list, cfg.options.clone(), params, on_result).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match writer.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Ok(Err(e)) => bail!("writing results to stdout: {e}"),
        Err(_) => bail!("the output thread panicked"),
    }
    let s = summary.lock().unwrap_or_else(|e| e.into_inner()).clone();
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

fn spawn_writer(rx: Receiver<String>) -> JoinHandle<std::io::Result<()>> {
    std::thread::spawn(move || {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        while let Ok(line) = rx.recv() {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()
    })
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
