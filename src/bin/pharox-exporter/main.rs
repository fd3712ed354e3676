//! The `pharox-exporter` binary: parse flags, build the library's types,
//! call one function. Exit codes: 0 success (a sweep that ran, whatever the
//! proxies' health), 1 a configuration or runtime error, 2 a usage error
//! (clap's own code for unknown flags and missing arguments), 3 `check`
//! found a proxy INACTIVE.

mod check;
mod cli;
mod inventory;
mod judge;
mod logging;
mod output;
mod sweep_once;
mod validate;

use std::process::ExitCode;

use anyhow::{bail, Result};

use cli::{Cli, Cmd, CommonArgs, RunArgs};
use pharox_exporter::App;
use pharox_exporter::Shutdown;

/// `--version`, in the shape of Prometheus binaries' `--version`.
fn version_text() -> String {
    format!(
        "pharox-exporter, version {} (revision: {})\n  build date:       {}\n  rustc version:    {}\n  platform:         {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        env!("PHAROX_GIT_REVISION"),
        env!("PHAROX_BUILD_DATE"),
        env!("PHAROX_RUSTC_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

/// An error and its causes, each once: library errors quote their source
/// in their own message (so a log line is complete), and anyhow's `{:#}`
/// would print it a second time.
fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// How long the runtime's blocking threads get to end once the command is
/// done, before the process exits without them.
const RUNTIME_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    if cli.version {
        print!("{}", version_text());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::init(&cli.common) {
        eprintln!("error: {}", render_error(&e));
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
        let common = &cli.common;
        match cli.cmd {
            Some(Cmd::Check { urls, output }) => check::run(urls, output, common).await,
            Some(Cmd::Sweep { .. }) => sweep_once::run(common).await,
            Some(Cmd::Validate) => validate::run(common).await,
            Some(Cmd::Judge {
                listen_address,
                max_connections,
            }) => judge::run(&listen_address, max_connections).await,
            None => run_exporter(common, &cli.run).await,
        }
    });
    // Everything is written by now. What may still run is a host-name
    // lookup stuck in getaddrinfo (a resolver that never answers): its check
    // gave up at its deadline, but the blocking thread cannot be cancelled,
    // and dropping the runtime would wait for every such thread, minutes
    // after the last result.
    rt.shutdown_timeout(RUNTIME_GRACE);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            ExitCode::from(1)
        }
    }
}

/// The exporter itself (no subcommand): runs until SIGTERM/SIGINT.
async fn run_exporter(common: &CommonArgs, run: &RunArgs) -> Result<ExitCode> {
    // A config file may gain an inventory at the next reload; with neither,
    // the exporter would sweep nothing, forever, and look healthy.
    if common.nothing_configured() {
        bail!(
            "nothing to sweep: pass --inventory FILE (or a postgresql:// URL) or --config.file FILE \
             (see --help; `check URL...` checks proxies once)"
        );
    }
    let overrides = common.overrides(run)?;
    App::build(common.config_path(), overrides)
        .await?
        .run(Shutdown::new())
        .await;
    Ok(ExitCode::SUCCESS)
}
