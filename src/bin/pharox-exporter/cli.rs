//! The command line: subcommands and flags, and how flags become the
//! library's [`Overrides`].

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use pharox_exporter::{
    parse_duration, Attempts, Config, Overrides, StatusCodes, TargetUrl, Timeout,
};

#[derive(Parser, Debug)]
#[command(
    name = "pharox-exporter",
    version,
    about = "Prometheus exporter that sweeps proxy pools and classifies each proxy ACTIVE / SLOW / INACTIVE",
    long_about = "Without a subcommand, runs the exporter: sweeps the inventory every --sweep.interval and serves \
                  /metrics. `check` validates proxies ad hoc, `sweep --once` runs one sweep and prints JSON lines, \
                  `validate` checks a config and its inventory."
)]
pub(crate) struct Cli {
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
pub(crate) enum Output {
    Table,
    Json,
}

/// Flags shared by every mode; each overrides the config file's value.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct CommonArgs {
    /// YAML config file.
    #[arg(long = "config.file", visible_alias = "config", value_name = "FILE")]
    pub(crate) config_file: Option<PathBuf>,
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
    pub(crate) log_level: String,
    /// Log format: logfmt or json (to stderr).
    #[arg(long = "log.format", default_value = "logfmt")]
    pub(crate) log_format: String,
}

/// Flags of the exporter (no subcommand).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct RunArgs {
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
            web_config_file: run.web_config_file.clone(),
            enable_lifecycle: run.enable_lifecycle,
            max_connections: run.max_connections,
            max_requests: run.max_requests,
            shard_index: self.shard_index,
            shard_count: self.shard_count,
            shard_from_hostname: self.shard_from_hostname,
        })
    }

    pub(crate) fn load(&self, run: &RunArgs) -> Result<Config> {
        let o = self.overrides(run)?;
        Ok(Config::load(self.config_file.as_deref(), &o)?)
    }
}
