//! The `pharox-exporter` binary: parse flags, build the library's types,
//! call one function. Exit codes: 0 success (a sweep that ran, whatever the
//! proxies' health), 1 a configuration or runtime error, 2 a usage error
//! (clap's own code for unknown flags and missing arguments), 3 `check`
//! found a proxy INACTIVE.

mod check;
mod cli;
mod inventory;
mod output;
mod sweep_once;
mod validate;

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use cli::{Cli, Cmd, CommonArgs, RunArgs};
use pharox_exporter::App;
use pharox_exporter::Shutdown;

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
            }) => check::run(urls, output, &common).await,
            Some(Cmd::Sweep { common, .. }) => sweep_once::run(&common).await,
            Some(Cmd::Validate { common }) => validate::run(&common).await,
            None => run_exporter(&cli.common, &cli.run).await,
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

/// The exporter itself (no subcommand): runs until SIGTERM/SIGINT.
async fn run_exporter(common: &CommonArgs, run: &RunArgs) -> Result<ExitCode> {
    let overrides = common.overrides(run)?;
    App::build(common.config_file.clone(), overrides)
        .await?
        .run(Shutdown::new())
        .await;
    Ok(ExitCode::SUCCESS)
}
