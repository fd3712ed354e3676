//! The HTTP server: `/metrics`, `/probe`, `/-/healthy`, `/-/ready`,
//! `/-/reload`, the status page and its JSON.
//!
//! The server reads state and never drives sweeps; the one exception is
//! `/probe`, which calls the probe directly for one proxy (see [`probe`]).
//! It stops on its own token, after everything else: `/metrics` keeps
//! answering while in-flight checks drain and sinks flush.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::shutdown::{Shutdown, Tracker};
use crate::sinks::metrics::Metrics;
use crate::state::StateStore;
use crate::sweep::SweepGauges;

mod probe;
pub(crate) mod routes;
mod status;

pub(crate) use routes::route;

/// A reload request: the reply says whether the new file was accepted.
pub(crate) type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// How long open connections get to finish their request once the server
/// stops; keep-alive connections idle at that moment close at once.
pub(crate) const CONNECTION_DRAIN: Duration = Duration::from_secs(5);

/// Everything the handlers read.
pub(crate) struct AppState {
    /// The registry.
    pub metrics: Arc<Metrics>,
    /// Per-proxy state.
    pub state: Arc<StateStore>,
    /// Live sweep counters.
    pub gauges: Arc<SweepGauges>,
    /// The running config (swapped whole on reload).
    pub config: Arc<RwLock<Arc<Config>>>,
    /// Set once the inventory is loaded and the first sweep has started.
    pub ready: AtomicBool,
    /// Where `/-/reload` sends its requests.
    pub reload: mpsc::Sender<ReloadRequest>,
    /// When the process started.
    pub started: Instant,
}

impl AppState {
    fn current_config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Serve until `stop` triggers; then stop accepting, let open connections
/// finish their request (at most [`CONNECTION_DRAIN`]) and return.
pub(crate) async fn serve(listener: TcpListener, app: Arc<AppState>, stop: Shutdown) {
    let connections = Tracker::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.wait() => break,
        };
        let guard = connections.track();
        tokio::spawn(serve_connection(stream, app.clone(), stop.clone(), guard));
    }
    drop(listener);
    let open = connections.live();
    if tokio::time::timeout(CONNECTION_DRAIN, connections.idle())
        .await
        .is_err()
    {
        tracing::debug!(
            open,
            left = connections.live(),
            "http connections still open after the drain; dropping them"
        );
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: Arc<AppState>,
    stop: Shutdown,
    _guard: crate::shutdown::TrackGuard,
) {
    let svc = hyper::service::service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(route(req, app).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.wait() => {
            // Finish the request in progress, then close (idle: at once).
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // Client disconnects mid-response are not our problem to log loudly.
    if let Err(e) = result {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

/// Bind the listen address (`:9199` means every interface, as Prometheus
/// exporters spell it).
pub(crate) async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addr = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    let sock: Vec<SocketAddr> = tokio::net::lookup_host(addr.as_str()).await?.collect();
    let mut last = std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("no address for {addr}"),
    );
    for a in sock {
        match TcpListener::bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}
