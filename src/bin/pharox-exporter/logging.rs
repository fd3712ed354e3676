//! Logging: `--log.level` (Prometheus' levels, any case) scoped to this
//! program, and `--log.format` logfmt or JSON, to stderr.

use anyhow::{bail, Result};

use crate::cli::{self, CommonArgs};

/// The `--log.level` filter: the level given for this program, and for
/// every other crate (rustls, hyper, tokio-postgres) only warnings and
/// errors, so `debug` means our debug lines, not a TLS trace.
fn log_filter(level: &str) -> Result<tracing_subscriber::filter::Targets> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let ours = match level.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" => LevelFilter::WARN,
        "error" => LevelFilter::ERROR,
        _ => bail!(
            "--log.level {level:?}: expected one of {} (any case)",
            cli::LOG_LEVELS.join(", ")
        ),
    };
    // The library and this binary are both `pharox_exporter`. LevelFilter
    // orders by verbosity: min() is the quieter of the two.
    Ok(Targets::new()
        .with_target("pharox_exporter", ours)
        .with_default(ours.min(LevelFilter::WARN)))
}

/// Logs to stderr, as logfmt or JSON, at the `--log.level` of `common`.
pub(crate) fn init(common: &CommonArgs) -> Result<()> {
    use tracing_subscriber::prelude::*;
    let filter = log_filter(&common.log_level)?;
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
