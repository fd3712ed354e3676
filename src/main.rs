//! The `pharox-exporter` binary: parse flags, build the library's types,
//! call one function. Exit codes: 0 success (a sweep that ran, whatever the
//! proxies' health), 1 a usage or configuration error, 3 `check` found a
//! proxy INACTIVE.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use pharox_exporter::config::{self, Attempts, Config, Overrides, StatusCodes, TargetUrl, Timeout};
use pharox_exporter::inventory::pharox_db::{PharoxDbSource, SweepPlan};
use pharox_exporter::inventory::{self, Loaded};
use pharox_exporter::model::{CheckResult, Proxy};
use pharox_exporter::report::{self, ResultLine, Summary};
use pharox_exporter::sinks::db_writer::ResultWriter;
use pharox_exporter::sweep::{self, Shutdown, SweepGauges, SweepParams};

#[derive(Parser, Debug)]
#[command(
    name = "pharox-exporter",
    version,
    about = "Prometheus exporter that sweeps proxy pools and classifies each proxy ACTIVE / SLOW / INACTIVE",
    long_about = "Without a subcommand, runs the exporter: sweeps the inventory every --sweep.interval and serves \
                  /metrics. `check` validates proxies ad hoc, `sweep --once` runs one sweep and prints JSON lines, \
                  `validate` checks a config and its inventory."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check proxies now and print a table (or JSON): ad-hoc validation before leasing.
    Check {
        /// Proxy URLs, e.g. socks5://user:pass@host:1080 (passwords are never printed).
        urls: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Sweep the whole inventory, streaming one JSON object per line to stdout.
    Sweep {
        /// Run one sweep and exit (the only mode; the continuous loop is the exporter itself).
        #[arg(long, required = true)]
        once: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Check a config file and its inventory without running anything.
    Validate {
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

/// Flags shared by every mode; each overrides the config file's value.
#[derive(Args, Debug, Clone, Default)]
struct CommonArgs {
    /// YAML config file.
    #[arg(long = "config.file", visible_alias = "config", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Inventory file: proxy URLs one per line, CSV with a header, or a YAML/JSON list.
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// URL fetched through each proxy (pharox: target_url).
    #[arg(long = "target-url", value_name = "URL")]
    target_url: Option<String>,
    /// Statuses that count as success, e.g. 200,204.
    #[arg(long = "expected-status-codes", value_name = "CODES")]
    expected_status_codes: Option<String>,
    /// Per-attempt timeout in seconds (e.g. 5, 0.5, 1500ms).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<String>,
    /// Attempts per check, 1..5.
    #[arg(long)]
    attempts: Option<u64>,
    /// Above this latency a working proxy is SLOW.
    #[arg(long = "slow-threshold-ms", value_name = "MS")]
    slow_threshold_ms: Option<u64>,
    /// Checks running at once.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Extra CA (PEM) trusted for the target's TLS.
    #[arg(long = "tls.ca-file", value_name = "FILE")]
    tls_ca_file: Option<PathBuf>,
    /// Accept any target certificate (dangerous).
    #[arg(long = "tls.insecure-skip-verify")]
    tls_insecure: bool,
    /// Extra CA (PEM) trusted for HTTPS proxies.
    #[arg(long = "proxy-tls.ca-file", value_name = "FILE")]
    proxy_tls_ca_file: Option<PathBuf>,
    /// Accept any HTTPS proxy certificate (dangerous).
    #[arg(long = "proxy-tls.insecure-skip-verify")]
    proxy_tls_insecure: bool,
    /// This replica's index (0-based) when sharding the inventory across replicas.
    #[arg(long = "shard.index", value_name = "N")]
    shard_index: Option<u32>,
    /// Number of replicas sharing the inventory (jump consistent hashing by proxy id).
    #[arg(long = "shard.count", value_name = "N")]
    shard_count: Option<u32>,
    /// Take the shard index from the ordinal ending $HOSTNAME (Kubernetes StatefulSet).
    #[arg(long = "shard.from-hostname")]
    shard_from_hostname: bool,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long = "log.level", default_value = "info")]
    log_level: String,
    /// Log format: logfmt or json (to stderr).
    #[arg(long = "log.format", default_value = "logfmt")]
    log_format: String,
}

/// Flags of the exporter (no subcommand).
#[derive(Args, Debug, Clone, Default)]
struct RunArgs {
    /// Time between sweep starts (e.g. 60s, 5m).
    #[arg(long = "sweep.interval", value_name = "DURATION")]
    sweep_interval: Option<String>,
    /// Address to listen on.
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    listen_address: Option<String>,
    /// Path of the metrics endpoint.
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    telemetry_path: Option<String>,
    /// Export per-proxy series (capped by metrics.per_proxy_limit).
    #[arg(long = "metrics.per-proxy")]
    per_proxy: bool,
}

impl CommonArgs {
    fn overrides(&self, run: &RunArgs) -> Result<Overrides> {
        let target_url = match &self.target_url {
            Some(u) => Some(
                TargetUrl::try_from(u.clone())
                    .map_err(anyhow::Error::msg)
                    .context("--target-url")?,
            ),
            None => None,
        };
        let expected_status_codes = match &self.expected_status_codes {
            Some(c) => Some(
                c.parse::<StatusCodes>()
                    .map_err(anyhow::Error::msg)
                    .context("--expected-status-codes")?,
            ),
            None => None,
        };
        let timeout = match &self.timeout {
            Some(t) => Some(
                t.parse::<Timeout>()
                    .map_err(anyhow::Error::msg)
                    .context("--timeout")?,
            ),
            None => None,
        };
        let attempts = match self.attempts {
            Some(a) => Some(
                Attempts::checked(a)
                    .map_err(anyhow::Error::msg)
                    .context("--attempts")?,
            ),
            None => None,
        };
        let interval = match &run.sweep_interval {
            Some(s) => Some(
                config::parse_duration(s)
                    .map_err(anyhow::Error::msg)
                    .context("--sweep.interval")?,
            ),
            None => None,
        };
        Ok(Overrides {
            inventory: self.inventory.clone(),
            target_url,
            expected_status_codes,
            timeout,
            attempts,
            slow_threshold_ms: self.slow_threshold_ms,
            tls_ca_file: self.tls_ca_file.clone(),
            tls_insecure_skip_verify: self.tls_insecure,
            proxy_tls_ca_file: self.proxy_tls_ca_file.clone(),
            proxy_tls_insecure_skip_verify: self.proxy_tls_insecure,
            concurrency: self.concurrency,
            interval,
            listen_address: run.listen_address.clone(),
            telemetry_path: run.telemetry_path.clone(),
            per_proxy: run.per_proxy,
            shard_index: self.shard_index,
            shard_count: self.shard_count,
            shard_from_hostname: self.shard_from_hostname,
        })
    }

    fn load(&self, run: &RunArgs) -> Result<Config> {
        let o = self.overrides(run)?;
        Ok(Config::load(self.config_file.as_deref(), &o)?)
    }
}

fn init_logging(common: &CommonArgs) -> Result<()> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(&common.log_level)
        .with_context(|| format!("--log.level {:?}", common.log_level))?;
    let registry = tracing_subscriber::registry().with(filter);
    match common.log_format.as_str() {
        "json" => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(false),
            )
            .try_init()
            .ok(),
        "logfmt" => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .try_init()
            .ok(),
        other => bail!("--log.format {other:?}: expected logfmt or json"),
    };
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = match &cli.cmd {
        Some(Cmd::Check { common, .. })
        | Some(Cmd::Sweep { common, .. })
        | Some(Cmd::Validate { common }) => common,
        None => &cli.common,
    };
    if let Err(e) = init_logging(common) {
        eprintln!("error: {e:#}");
        return ExitCode::from(1);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        match cli.cmd {
            Some(Cmd::Check {
                urls,
                output,
                common,
            }) => cmd_check(urls, output, &common).await,
            Some(Cmd::Sweep { common, .. }) => cmd_sweep(&common).await,
            Some(Cmd::Validate { common }) => cmd_validate(&common).await,
            None => cmd_run(&cli.common, &cli.run).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Read the configured inventory, printing each skipped row to stderr.
async fn read_inventory(cfg: &Config) -> Result<Loaded> {
    let mut loaded = if let Some(pg) = &cfg.db {
        // pharox's database: release expired leases first, as the exporter does
        // before every sweep. A lease burst pauses the exporter's sweeps; a
        // one-shot run was asked for explicitly, so it goes ahead.
        let src = PharoxDbSource::new(pg.clone())?;
        let proxies = match src.before_sweep().await? {
            SweepPlan::Sweep(list) => list,
            SweepPlan::Paused(b) => {
                eprintln!(
                    "warning: lease acquisitions are bursting ({:.1}/s); sweeping anyway (one-shot run)",
                    b.rate
                );
                src.load().await?
            }
        };
        let skipped = src.rows_skipped_total();
        if skipped > 0 {
            eprintln!("warning: {skipped} proxy rows skipped as malformed (see the log)");
        }
        Loaded::from_proxies(proxies)
    } else {
        let Some(path) = &cfg.inventory.path else {
            bail!("no inventory: pass --inventory FILE or set inventory.path in the config file");
        };
        inventory::load_file_shard(path, cfg.inventory.format, cfg.inventory.shard)?
    };
    for e in &loaded.errors {
        eprintln!("warning: {e}");
    }
    if cfg.inventory.shard.count > 1 {
        // The database path loads every row; files were filtered while parsing.
        let before = loaded.proxies.len() + loaded.other_shards;
        loaded.proxies.retain(|p| cfg.inventory.shard.owns(&p.id));
        eprintln!(
            "shard {}: checking {} of {} proxies",
            cfg.inventory.shard,
            loaded.proxies.len(),
            before
        );
    }
    if loaded.duplicates > 0 {
        eprintln!(
            "warning: {} duplicate inventory entries (same id) ignored",
            loaded.duplicates
        );
    }
    Ok(loaded)
}

async fn cmd_check(urls: Vec<String>, output: Output, common: &CommonArgs) -> Result<ExitCode> {
    let cfg = common.load(&RunArgs::default())?;
    let mut proxies: Vec<Arc<Proxy>> = Vec::new();
    let mut bad = 0;
    for u in &urls {
        match inventory::parse_proxy_url(u) {
            Ok(p) => proxies.push(Arc::new(p)),
            Err(e) => {
                eprintln!(
                    "warning: argument {:?}: {e}; skipped",
                    pharox_exporter::secret::redact_credentials(
                        u,
                        pharox_exporter::secret::Userinfo::KeepUsername
                    )
                );
                bad += 1;
            }
        }
    }
    if cfg.inventory.path.is_some() || cfg.db.is_some() {
        proxies.extend(
            read_inventory(&cfg)
                .await?
                .proxies
                .into_iter()
                .map(Arc::new),
        );
    }
    if proxies.is_empty() {
        bail!(
            "nothing to check: give proxy URLs or --inventory FILE{}",
            if bad > 0 {
                " (all arguments were invalid)"
            } else {
                ""
            }
        );
    }
    // Arguments first, then the inventory, each in the order given.
    let order: std::collections::HashMap<String, usize> = proxies
        .iter()
        .enumerate()
        .rev()
        .map(|(i, p)| (p.id.clone(), i))
        .collect();
    let results = Arc::new(Mutex::new(Vec::with_capacity(proxies.len())));
    let sink = results.clone();
    let list: Arc<[Arc<Proxy>]> = proxies.into();
    let params = SweepParams::new(cfg.sweep.concurrency, 0.0, None);
    sweep::run(
        list,
        cfg.options.clone(),
        params,
        Arc::default(),
        Shutdown::new(),
        Duration::ZERO,
        move |p, r| {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((p.clone(), r));
        },
    )
    .await;
    let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    // Results arrive in completion order; print them in the order asked.
    results.sort_by_key(|(p, _)| order.get(p.id.as_str()).copied());
    let any_down = results.iter().any(|(_, r)| !r.is_up());
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => {
            for (p, r) in &results {
                writeln!(out, "{}", ResultLine::new(p, r).to_json())?;
            }
        }
        Output::Table => {
            let rows: Vec<(&Proxy, &CheckResult)> =
                results.iter().map(|(p, r)| (p.as_ref(), r)).collect();
            write!(out, "{}", report::table(&rows))?;
        }
    }
    out.flush()?;
    Ok(if any_down {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

async fn cmd_sweep(common: &CommonArgs) -> Result<ExitCode> {
    let cfg = common.load(&RunArgs::default())?;
    let loaded = read_inventory(&cfg).await?;
    let skipped = loaded.errors.len();
    // With pharox's database, results are written back as they complete.
    let store = match &cfg.db {
        Some(pg) => Some(ResultWriter::spawn(pg.clone())?),
        None => None,
    };
    let store2 = store.clone();
    let list: Arc<[Arc<Proxy>]> = loaded.proxies.into_iter().map(Arc::new).collect();
    let total = list.len() as u64;

    // Results go to one writer thread through a bounded channel: workers never
    // contend on stdout, and a slow consumer of stdout slows the sweep down
    // instead of growing memory.
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(4096);
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
        {
            b.set_style(style);
        }
        b
    });
    let summary = Arc::new(Mutex::new(Summary::default()));
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        while let Ok(line) = rx.recv() {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()
    });
    let (s2, bar2) = (summary.clone(), bar.clone());
    let outcome = sweep::run(
        list,
        cfg.options.clone(),
        SweepParams::new(cfg.sweep.concurrency, cfg.sweep.rate_limit, None),
        Arc::new(SweepGauges::default()),
        Shutdown::new(),
        Duration::ZERO,
        move |p, r| {
            s2.lock().unwrap_or_else(|e| e.into_inner()).add(&r);
            if let Some(h) = &store2 {
                h.submit(p, &r);
            }
            // A closed channel means the writer failed (stdout gone); the error is reported below.
            let _ = tx.send(ResultLine::new(p, &r).to_json());
            if let Some(b) = &bar2 {
                b.inc(1);
            }
        },
    )
    .await;
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
        // Wait for the database (bounded): a one-shot run exists to persist.
        let report = h
            .close(tokio::time::Instant::now() + Duration::from_secs(60))
            .await;
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
    }
    Ok(ExitCode::SUCCESS)
}

async fn cmd_validate(common: &CommonArgs) -> Result<ExitCode> {
    let cfg = common.load(&RunArgs::default())?;
    let name = cfg
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "flags".into());
    if let Some(pg) = &cfg.db {
        // Read only: no lease cleanup, no writes.
        let src = PharoxDbSource::new(pg.clone())?;
        let proxies = src.load().await?;
        let skipped = src.rows_skipped_total();
        println!(
            "{name}: config OK; postgres inventory: {} proxies, {skipped} malformed rows",
            proxies.len()
        );
        return Ok(if skipped == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    match &cfg.inventory.path {
        Some(path) => {
            let loaded = inventory::load_file(path, cfg.inventory.format)?;
            for e in &loaded.errors {
                eprintln!("error: {e}");
            }
            println!(
                "{name}: config OK; inventory {}: {} proxies, {} malformed entries, {} duplicates",
                path.display(),
                loaded.proxies.len(),
                loaded.errors.len(),
                loaded.duplicates
            );
            Ok(if loaded.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        None => {
            println!("{name}: config OK; no inventory configured");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn cmd_run(common: &CommonArgs, run: &RunArgs) -> Result<ExitCode> {
    let overrides = common.overrides(run)?;
    pharox_exporter::exporter::run(common.config_file.clone(), overrides, Shutdown::new()).await?;
    Ok(ExitCode::SUCCESS)
}
