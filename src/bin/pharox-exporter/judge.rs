//! `judge`: serve our own proxy judge until SIGTERM or SIGINT (see the
//! library's `serve_judge`).

use std::process::ExitCode;

use anyhow::{Context, Result};

use pharox_exporter::{bind_judge, serve_judge, Shutdown};

pub(crate) async fn run(listen_address: &str, max_connections: usize) -> Result<ExitCode> {
    let listener = bind_judge(listen_address)
        .await
        .with_context(|| format!("cannot listen on {listen_address}"))?;
    let addr = listener
        .local_addr()
        .map_or_else(|_| listen_address.to_string(), |a| a.to_string());
    tracing::info!(address = %addr, "judge listening");
    let stop = Shutdown::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        on_signal.trigger();
    });
    serve_judge(listener, max_connections, stop).await;
    tracing::info!("judge stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop the judge with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
