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
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::shutdown::{Shutdown, TrackGuard, Tracker};
use crate::sinks::metrics::Metrics;
use crate::state::StateStore;
use crate::sweep::SweepGauges;

mod auth;
mod body;
mod judge;
mod limits;
mod probe;
pub(crate) mod routes;
mod status;
mod web_config;

pub use judge::{bind_judge, serve_judge, JUDGE_MAX_CONNECTIONS};
pub(crate) use limits::Requests;
pub(crate) use routes::route;
pub use web_config::WebConfigError;
pub(crate) use web_config::WebConfigFile;

use auth::BasicAuth;
use limits::{Admission, Connections, Ticket};
use web_config::WebSettings;

/// A reload request: the reply says whether the new file was accepted.
pub(crate) type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// How long open connections get to finish their request once the server
/// stops; keep-alive connections idle at that moment close at once.
pub(crate) const CONNECTION_DRAIN: Duration = Duration::from_secs(5);

/// A client must send a whole request head within this, on a new
/// connection and between requests on a kept-alive one (hyper's header
/// timer restarts for each request head, so it is the idle timeout too).
/// Slowloris clients and idle sockets are closed after it.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake must finish within this.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head read (hyper answers 431 past it).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Header lines per request at most.
const MAX_HEADERS: usize = 64;

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
    /// Caps on concurrent requests.
    pub requests: Requests,
}

impl AppState {
    fn current_config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What the server applies before any handler: fixed at start.
pub(crate) struct Front {
    /// `--web.config.file`, when given.
    pub web_config: Option<Arc<WebConfigFile>>,
    /// Open connections at most.
    pub max_connections: usize,
}

/// Per-server state shared by every connection.
struct Shared {
    app: Arc<AppState>,
    web_config: Option<Arc<WebConfigFile>>,
    auth: BasicAuth,
    stop: Shutdown,
}

/// Serve until `stop` triggers; then stop accepting, let open connections
/// finish their request (at most [`CONNECTION_DRAIN`]) and return.
pub(crate) async fn serve(listener: TcpListener, app: Arc<AppState>, front: Front, stop: Shutdown) {
    let connections = Tracker::new();
    let slots = Connections::new(front.max_connections);
    let shared = Arc::new(Shared {
        app,
        web_config: front.web_config,
        auth: BasicAuth::default(),
        stop: stop.clone(),
    });
    loop {
        let Some((stream, _)) = accept(&listener, &stop).await else {
            break;
        };
        let ticket = match slots.admit() {
            Admission::Admitted(t) => t,
            Admission::Evicted(t) => {
                shared.app.metrics.http_rejected("idle_evicted");
                t
            }
            Admission::Full => {
                shared.app.metrics.http_rejected("max_connections");
                drop(stream);
                continue;
            }
        };
        let guard = connections.track();
        tokio::spawn(serve_connection(stream, shared.clone(), ticket, guard));
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

/// Settings when there is no web config file.
fn open_settings() -> Arc<WebSettings> {
    static OPEN: OnceLock<Arc<WebSettings>> = OnceLock::new();
    OPEN.get_or_init(|| Arc::new(WebSettings::open())).clone()
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    ticket: Ticket,
    _guard: TrackGuard,
) {
    let settings = match &shared.web_config {
        None => open_settings(),
        // A stat per file, and a read when one changed: off the async workers.
        Some(w) => {
            let w = w.clone();
            match tokio::task::spawn_blocking(move || w.current()).await {
                Ok(s) => s,
                Err(_) => return,
            }
        }
    };
    let ticket = Arc::new(ticket);
    let Some(acceptor) = settings.tls.clone() else {
        return http(stream, shared, settings, ticket).await;
    };
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let tls = tokio::select! {
        r = handshake => r,
        _ = ticket.evicted.notified() => return,
        _ = shared.stop.wait() => return,
    };
    match tls {
        Ok(Ok(tls)) => http(tls, shared, settings, ticket).await,
        Ok(Err(e)) => {
            shared.app.metrics.http_rejected("tls_handshake");
            tracing::debug!(error = %e, "tls handshake failed");
        }
        Err(_) => {
            shared.app.metrics.http_rejected("tls_handshake");
            tracing::debug!("tls handshake timed out");
        }
    }
}

async fn http<I>(io: I, shared: Arc<Shared>, settings: Arc<WebSettings>, ticket: Arc<Ticket>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let evicted = ticket.evicted.clone();
    let stop = shared.stop.clone();
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (shared, settings, ticket) = (shared.clone(), settings.clone(), ticket.clone());
        async move {
            ticket.busy();
            let allowed = shared
                .auth
                .allows(&settings.users, req.headers().get(AUTHORIZATION))
                .await;
            let mut resp = if allowed {
                route(req, shared.app.clone()).await
            } else {
                shared.app.metrics.http_rejected("unauthorized");
                unauthorized()
            };
            for (name, value) in &settings.headers {
                resp.headers_mut().insert(name.clone(), value.clone());
            }
            ticket.idle();
            Ok::<_, Infallible>(resp)
        }
    });
    serve_http1(io, svc, &evicted, &stop, "http").await;
}

/// The next connection, or `None` once `stop` triggers. A failed accept
/// (EMFILE and friends) backs off briefly instead of spinning. Shared by
/// the exporter's server and the judge.
pub(crate) async fn accept(
    listener: &TcpListener,
    stop: &Shutdown,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => return Some(x),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.wait() => return None,
        }
    }
}

/// Drive one HTTP/1 connection under the server's bounds (head timeout,
/// head size, header count) until it ends, a newer connection evicts it,
/// or shutdown (which lets the request in progress finish). Shared by the
/// exporter's server and the judge.
pub(crate) async fn serve_http1<I, S, B>(
    io: I,
    svc: S,
    evicted: &tokio::sync::Notify,
    stop: &Shutdown,
    what: &'static str,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        // A newer connection took this idle one's slot: close it.
        _ = evicted.notified() => return,
        _ = stop.wait() => {
            // Finish the request in progress, then close (idle: at once).
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // Client disconnects mid-response are not our problem to log loudly.
    if let Err(e) = result {
        tracing::debug!(error = %e, connection = what, "connection ended with an error");
    }
}

fn unauthorized() -> routes::Resp {
    let mut r = routes::respond(StatusCode::UNAUTHORIZED, routes::PLAIN, "Unauthorized\n");
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    r
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

/// An `AppState` over the default config, an empty state and no reloader
/// (a reload answers "shutting down"), with `max_requests` render slots:
/// the fixture of the route and status-page unit tests.
#[cfg(test)]
pub(crate) fn test_app(max_requests: usize) -> AppState {
    use crate::config::{Config, Overrides};
    let cfg = Config::load(None, &Overrides::default()).expect("default config");
    let state = Arc::new(StateStore::new());
    let gauges = Arc::new(SweepGauges::default());
    let metrics = Arc::new(Metrics::new(
        &cfg.metrics.latency_buckets,
        state.clone(),
        gauges.clone(),
        Vec::new(),
    ));
    let (reload, _) = tokio::sync::mpsc::channel(1);
    AppState {
        metrics,
        state,
        gauges,
        config: Arc::new(RwLock::new(Arc::new(cfg))),
        ready: false.into(),
        reload,
        started: Instant::now(),
        requests: limits::Requests::new(max_requests),
    }
}
