//! Signals: SIGTERM and SIGINT stop the exporter, SIGHUP reloads its config.

use tokio::sync::mpsc;

use crate::server::ReloadRequest;
use crate::shutdown::Shutdown;

/// Listen for signals until the first stop signal (or until nobody takes
/// reload requests any more).
pub(super) fn spawn(shutdown: Shutdown, reload: mpsc::Sender<ReloadRequest>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); shutdown.trigger(); return; }
                    _ = int.recv() => { tracing::info!("SIGINT: shutting down"); shutdown.trigger(); return; }
                    _ = hup.recv() => {
                        // Nobody waits for the answer: the reloader logs it.
                        let (tx, _rx) = tokio::sync::oneshot::channel();
                        if reload.send(tx).await.is_err() { return; }
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = reload;
            let _ = tokio::signal::ctrl_c().await;
            shutdown.trigger();
        }
    });
}
