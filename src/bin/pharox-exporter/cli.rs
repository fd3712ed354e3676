//! The command line: subcommands and flags, and how flags become the
//! library's [`Overrides`].
//!
//! Flags shared by every mode are global: they mean the same before or after
//! the subcommand (`--config.file x validate` and `validate --config.file x`).
//! Exporter-only flags exist only without a subcommand; given with one they
//! are refused ([`Cli::parse_checked`]), never silently dropped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use pharox_exporter::{
    parse_duration, Attempts, Config, Overrides, StatusCodes, TargetUrl, Timeout,
};

#[derive(Parser, Debug)]
#[command(
    name = "pharox-exporter",
    disable_version_flag = true,
    about = "Prometheus exporter that sweeps proxy pools and classifies each proxy ACTIVE / SLOW / INACTIVE",
    long_about = "Without a subcommand, runs the exporter: sweeps the inventory every --sweep.interval and serves \
                  /metrics. `check` validates proxies ad hoc, `sweep --once` runs one sweep and prints JSON lines, \
                  `validate` checks a config and its inventory, `judge` serves a proxy judge.\n\n\
                  Global options may be given before or after the subcommand. Exporter options apply only \
                  without a subcommand and are refused with one. Flags override the config file; a \
                  \"[default: X, ...]\" names the value used when neither sets it.",
    after_help = "Exit codes: 0 success, 1 configuration or runtime error, 2 usage error, 3 `check` found a proxy INACTIVE."
)]
pub(crate) struct Cli {
    /// Print version, revision, build date and toolchain, then exit.
    #[arg(short = 'V', long)]
    pub(crate) version: bool,
    #[command(subcommand)]
    pub(crate) cmd: Option<Cmd>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Check proxies now and print a table (or JSON): ad-hoc validation before leasing.
    Check {
        /// Proxy URLs, e.g. socks5://user:pass@host:1080 (passwords are never printed).
        urls: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Sweep the whole inventory, streaming one JSON object per line to stdout.
    Sweep {
        /// Run one sweep and exit (the only mode; the continuous loop is the exporter itself).
        #[arg(long, required = true)]
        once: bool,
    },
    /// Check a config file and its inventory without running anything.
    Validate,
    /// Serve a proxy judge: every request is answered with JSON naming the
    /// client's IP, every header received and the request line; point a
    /// pool's target_url at it with `judge: true`.
    Judge {
        /// Address to listen on (loopback unless you mean it).
        #[arg(
            long = "web.listen-address",
            value_name = "ADDR",
            default_value = DEFAULT_JUDGE_ADDRESS
        )]
        listen_address: String,
        /// Open connections at most; past it, the longest-idle one is closed.
        #[arg(long = "web.max-connections", value_name = "N", default_value_t = pharox_exporter::JUDGE_MAX_CONNECTIONS)]
        max_connections: usize,
    },
}

/// Where `judge` listens by default: loopback, so that nothing is exposed
/// unless asked for.
pub(crate) const DEFAULT_JUDGE_ADDRESS: &str = "127.0.0.1:10188";

impl Cmd {
    fn name(&self) -> &'static str {
        match self {
            Cmd::Check { .. } => "check",
            Cmd::Sweep { .. } => "sweep",
            Cmd::Validate => "validate",
            Cmd::Judge { .. } => "judge",
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Table,
    Json,
}

/// Log levels, as Prometheus exporters spell them (plus trace).
pub(crate) const LOG_LEVELS: [&str; 5] = ["debug", "info", "warn", "error", "trace"];

/// Flags shared by every mode; each overrides the config file's value.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Global options (any mode; before or after the subcommand)")]
pub(crate) struct CommonArgs {
    /// YAML config file.
    #[arg(
        long = "config.file",
        visible_alias = "config",
        value_name = "FILE",
        global = true
    )]
    pub(crate) config_file: Option<PathBuf>,
    /// Inventory file (proxy URLs one per line, CSV with a header, or a YAML/JSON list), or a postgresql:// URL of pharox's database.
    #[arg(long, value_name = "FILE", global = true)]
    inventory: Option<PathBuf>,
    /// URL fetched through each proxy (pharox: target_url). [default: https://httpbin.org/ip, or the config's defaults.target_url]
    #[arg(long = "target-url", value_name = "URL", global = true)]
    target_url: Option<String>,
    /// Statuses that count as success, e.g. 200,204. [default: 200, or the config's]
    #[arg(long = "expected-status-codes", value_name = "CODES", global = true)]
    expected_status_codes: Option<String>,
    /// Per-attempt timeout (e.g. 5, 0.5, 1500ms, 1m30s; a bare number is seconds). [default: 5s, or the config's]
    #[arg(long, value_name = "DURATION", global = true)]
    timeout: Option<String>,
    /// Attempts per check, 1..5. [default: 1, or the config's]
    #[arg(long, value_name = "N", global = true)]
    attempts: Option<u64>,
    /// Above this latency a working proxy is SLOW. [default: 2000, or the config's]
    #[arg(long = "slow-threshold-ms", value_name = "MS", global = true)]
    slow_threshold_ms: Option<u64>,
    /// Checks running at once. [default: 256, or the config's sweep.concurrency]
    #[arg(long, value_name = "N", global = true)]
    concurrency: Option<usize>,
    /// Extra CA (PEM) trusted for the target's TLS.
    #[arg(long = "tls.ca-file", value_name = "FILE", global = true)]
    tls_ca_file: Option<PathBuf>,
    /// Accept any target certificate (dangerous).
    #[arg(long = "tls.insecure-skip-verify", global = true)]
    tls_insecure: bool,
    /// Extra CA (PEM) trusted for HTTPS proxies.
    #[arg(long = "proxy-tls.ca-file", value_name = "FILE", global = true)]
    proxy_tls_ca_file: Option<PathBuf>,
    /// Accept any HTTPS proxy certificate (dangerous).
    #[arg(long = "proxy-tls.insecure-skip-verify", global = true)]
    proxy_tls_insecure: bool,
    /// This replica's index (0-based) when sharding the inventory across replicas. [default: 0, or the config's]
    #[arg(long = "shard.index", value_name = "N", global = true)]
    shard_index: Option<u32>,
    /// Number of replicas sharing the inventory (jump consistent hashing by proxy id). [default: 1, or the config's]
    #[arg(long = "shard.count", value_name = "N", global = true)]
    shard_count: Option<u32>,
    /// Take the shard index from the ordinal ending $HOSTNAME (Kubernetes StatefulSet).
    #[arg(long = "shard.from-hostname", global = true)]
    shard_from_hostname: bool,
    /// MaxMind-format geolocation database (GeoLite2/GeoIP2 City, Country, ASN; DB-IP) for the exits judges report; repeat to combine files (first file first). Replaces the config's geoip.databases.
    #[arg(long = "geoip.database", value_name = "FILE", global = true)]
    geoip_databases: Vec<PathBuf>,
    /// Log level of this program: debug, info, warn or error (any case; also trace). Other crates log warnings and errors only.
    #[arg(
        long = "log.level",
        value_name = "LEVEL",
        default_value = "info",
        global = true
    )]
    pub(crate) log_level: String,
    /// Log format (to stderr): logfmt or json.
    #[arg(
        long = "log.format",
        value_name = "FORMAT",
        default_value = "logfmt",
        global = true
    )]
    pub(crate) log_format: String,
}

/// Flags of the exporter (no subcommand).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Exporter options (without a subcommand only)")]
pub(crate) struct RunArgs {
    /// Time between sweep starts (e.g. 60s, 5m, 1m30s). [default: 60s, or the config's sweep.interval]
    #[arg(long = "sweep.interval", value_name = "DURATION")]
    sweep_interval: Option<String>,
    /// Address to listen on. [default: 0.0.0.0:10187, or the config's web.listen_address]
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    listen_address: Option<String>,
    /// Path of the metrics endpoint. [default: /metrics, or the config's web.telemetry_path]
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    telemetry_path: Option<String>,
    /// Export per-proxy series (capped by metrics.per_proxy_limit).
    #[arg(long = "metrics.per-proxy")]
    per_proxy: bool,
    /// Web config (exporter-toolkit format): TLS, basic auth, response headers.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Allow POST /-/reload (SIGHUP always reloads).
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
    /// Open HTTP connections at most (default 256); past it, new ones are closed.
    #[arg(long = "web.max-connections", value_name = "N")]
    max_connections: Option<usize>,
    /// Concurrent /metrics and /api/status requests at most, 503 past it (default 40, 0 = no cap).
    #[arg(long = "web.max-requests", value_name = "N")]
    max_requests: Option<usize>,
}

impl Cli {
    /// Parse the command line, refusing exporter-only flags given with a
    /// subcommand (clap's usage error, exit 2): `validate --sweep.interval 5m`
    /// would otherwise be accepted and ignored.
    pub(crate) fn parse_checked() -> Cli {
        let mut cmd = Cli::command();
        let matches = cmd.get_matches_mut();
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
        if let Some(sub) = &cli.cmd {
            let given = exporter_only_flags_given(&matches);
            if !given.is_empty() {
                cmd.error(
                    ErrorKind::ArgumentConflict,
                    format!(
                        "{} {} only to the exporter (no subcommand), not to `{}`",
                        given.join(", "),
                        if given.len() == 1 { "applies" } else { "apply" },
                        sub.name()
                    ),
                )
                .exit();
            }
        }
        cli
    }
}

/// The exporter-only flags present on the command line, as `--name`.
fn exporter_only_flags_given(matches: &ArgMatches) -> Vec<String> {
    let run = RunArgs::augment_args(clap::Command::new("run"));
    run.get_arguments()
        .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .map(|a| format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())))
        .collect()
}

/// A path as given, made absolute against the working directory so that
/// every message names one unambiguous file. URLs (a `postgresql://`
/// inventory) are left alone.
fn absolute(p: &Path) -> PathBuf {
    if p.to_str().is_some_and(|s| s.contains("://")) {
        return p.to_path_buf();
    }
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl CommonArgs {
    pub(crate) fn overrides(&self, run: &RunArgs) -> Result<Overrides> {
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
                parse_duration(s)
                    .map_err(anyhow::Error::msg)
                    .context("--sweep.interval")?,
            ),
            None => None,
        };
        Ok(Overrides {
            inventory: self.inventory.as_deref().map(absolute),
            target_url,
            expected_status_codes,
            timeout,
            attempts,
            slow_threshold_ms: self.slow_threshold_ms,
            tls_ca_file: self.tls_ca_file.as_deref().map(absolute),
            tls_insecure_skip_verify: self.tls_insecure,
            proxy_tls_ca_file: self.proxy_tls_ca_file.as_deref().map(absolute),
            proxy_tls_insecure_skip_verify: self.proxy_tls_insecure,
            concurrency: self.concurrency,
            interval,
            listen_address: run.listen_address.clone(),
            telemetry_path: run.telemetry_path.clone(),
            per_proxy: run.per_proxy,
            web_config_file: run.web_config_file.clone(),
            enable_lifecycle: run.enable_lifecycle,
            max_connections: run.max_connections,
            max_requests: run.max_requests,
            shard_index: self.shard_index,
            shard_count: self.shard_count,
            shard_from_hostname: self.shard_from_hostname,
            geoip_databases: self.geoip_databases.iter().map(|p| absolute(p)).collect(),
        })
    }

    /// `--config.file`, absolute.
    pub(crate) fn config_path(&self) -> Option<PathBuf> {
        self.config_file.as_deref().map(absolute)
    }

    /// True when neither a config file nor an inventory was given.
    pub(crate) fn nothing_configured(&self) -> bool {
        self.config_file.is_none() && self.inventory.is_none()
    }

    pub(crate) fn load(&self, run: &RunArgs) -> Result<Config> {
        let o = self.overrides(run)?;
        Ok(Config::load(self.config_path().as_deref(), &o)?)
    }
}
