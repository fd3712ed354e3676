//! The HTTP server: `/metrics`, `/probe`, `/-/healthy`, `/-/ready`,
//! `/-/reload`, the status page and its JSON.
//!
//! The server reads state and never drives sweeps; the one exception is
//! `/probe`, which calls the probe directly for one proxy, and only for a
//! proxy in the inventory unless the config allows arbitrary targets (so the
//! exporter cannot be turned into an open prober of the world).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::model::{Phase, ProxyStatus};
use crate::sinks::metrics::Metrics;
use crate::state::{status_index, StateStore};
use crate::sweep::{Shutdown, SweepGauges};

/// A reload request: the reply says whether the new file was accepted.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// Everything the handlers read.
pub struct AppState {
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

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics only when the scraper asks for it (Prometheus does); curl,
/// browsers and promtool get the classic text format.
fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// Serve until `shutdown` triggers.
pub async fn serve(listener: TcpListener, app: Arc<AppState>, shutdown: Shutdown) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(req, app).await) }
            });
            // Client disconnects mid-response are not our problem to log loudly.
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
}

/// Bind the listen address.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
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

async fn handle(req: Request<Incoming>, app: Arc<AppState>) -> Resp {
    let telemetry = app.current_config().web.telemetry_path.clone();
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, p) if p == telemetry => {
            let om = wants_openmetrics(&req);
            let metrics = app.metrics.clone();
            // Rendering walks every proxy's state; keep it off the async workers.
            let body = tokio::task::spawn_blocking(move || metrics.render(om))
                .await
                .unwrap_or_default();
            respond(
                StatusCode::OK,
                if om { OPENMETRICS } else { TEXT_004 },
                body,
            )
        }
        (&Method::GET, "/-/healthy") => {
            respond(StatusCode::OK, "text/plain; charset=utf-8", "Healthy.\n")
        }
        (&Method::GET, "/-/ready") => {
            if app.ready.load(Ordering::Relaxed) {
                respond(StatusCode::OK, "text/plain; charset=utf-8", "Ready.\n")
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "Not ready: inventory not loaded or no sweep started yet.\n",
                )
            }
        }
        (&Method::POST, "/-/reload") | (&Method::PUT, "/-/reload") => {
            let (tx, rx) = oneshot::channel();
            if app.reload.send(tx).await.is_err() {
                return respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "shutting down\n",
                );
            }
            match rx.await {
                Ok(Ok(())) => respond(StatusCode::OK, "text/plain; charset=utf-8", "Reloaded.\n"),
                Ok(Err(e)) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("failed to reload config: {e}\n"),
                ),
                Err(_) => respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "shutting down\n",
                ),
            }
        }
        (_, "/-/reload") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use POST\n",
        ),
        (&Method::GET, "/probe") => probe(&req, &app).await,
        (&Method::GET, "/api/status") => {
            let app2 = app.clone();
            let body = tokio::task::spawn_blocking(move || status_json(&app2))
                .await
                .unwrap_or_default();
            respond(StatusCode::OK, "application/json", body)
        }
        (&Method::GET, "/") | (&Method::GET, "/status") => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status_page(&telemetry),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "Not found. See / for the endpoints.\n",
        ),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
    phase: String,
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// blackbox_exporter-style multi-target probe: one check, its own registry.
async fn probe(req: &Request<Incoming>, app: &Arc<AppState>) -> Resp {
    let Some(target) = query_param(req, "target") else {
        return respond(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "missing ?target=<proxy-url>\n",
        );
    };
    let asked = match crate::inventory::parse_proxy_url(&target) {
        Ok(p) => p,
        Err(e) => {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                format!("bad target: {e}\n"),
            )
        }
    };
    let cfg = app.current_config();
    // A scan, not an index: /probe is rare and ad hoc, while an index would
    // cost ~100 bytes per proxy, every proxy, all the time.
    let known = {
        let (app, asked) = (app.clone(), asked.clone());
        tokio::task::spawn_blocking(move || {
            app.state.find(|p| {
                p.protocol == asked.protocol
                    && p.port == asked.port
                    && p.host.eq_ignore_ascii_case(&asked.host)
                    && (asked.username.is_none() || p.username == asked.username)
            })
        })
        .await
        .ok()
        .flatten()
    };
    // Inventory proxies are checked with their own credentials, labels and options.
    let proxy = match known {
        Some(p) => p,
        None if cfg.web.allow_arbitrary_probe_targets => Arc::new(asked),
        None => {
            return respond(
                StatusCode::FORBIDDEN,
                "text/plain; charset=utf-8",
                format!(
                    "target {} is not in the inventory; set web.allow_arbitrary_probe_targets: true to probe any proxy\n",
                    asked.redacted_url()
                ),
            )
        }
    };
    let opts = cfg.options.for_proxy(&proxy).clone();
    let started = Instant::now();
    let r = crate::probe::check(&proxy, &opts).await;
    let elapsed = started.elapsed();

    let mut reg = Registry::default();
    let success = Gauge::<i64>::default();
    success.set(r.is_up() as i64);
    reg.register("probe_success", "1 if the proxy is ACTIVE or SLOW", success);
    let dur = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    dur.set(elapsed.as_secs_f64());
    reg.register_with_unit(
        "probe_duration",
        "Wall time of the probe",
        Unit::Seconds,
        dur,
    );
    let lat = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    lat.set(r.latency_ms as f64 / 1000.0);
    reg.register_with_unit(
        "probe_proxy_latency",
        "Latency of the check as classified (timeout when INACTIVE)",
        Unit::Seconds,
        lat,
    );
    let status = Family::<StatusLabel, Gauge>::default();
    for s in [
        ProxyStatus::Active,
        ProxyStatus::Slow,
        ProxyStatus::Inactive,
    ] {
        status
            .get_or_create(&StatusLabel {
                status: s.as_str().into(),
            })
            .set((r.status == s) as i64);
    }
    reg.register(
        "probe_proxy_status",
        "1 for the status of the check",
        status,
    );
    let attempts = Gauge::<i64>::default();
    attempts.set(r.attempts as i64);
    reg.register("probe_attempts", "Attempts the check used", attempts);
    let code = Gauge::<i64>::default();
    code.set(r.status_code.map(i64::from).unwrap_or(0));
    reg.register(
        "probe_http_status_code",
        "HTTP status of the last response (0 if none)",
        code,
    );
    let phases = Family::<PhaseLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for ph in Phase::ALL {
        if let Some(ms) = r.phases.get(ph) {
            phases
                .get_or_create(&PhaseLabel {
                    phase: ph.as_str().into(),
                })
                .set(ms / 1000.0);
        }
    }
    reg.register_with_unit(
        "probe_phase_duration",
        "Time spent in each phase",
        Unit::Seconds,
        phases,
    );
    if let Some(reason) = r.reason {
        let fam = Family::<ReasonLabel, Gauge>::default();
        fam.get_or_create(&ReasonLabel {
            reason: reason.as_str().into(),
            phase: r.phase.map(Phase::as_str).unwrap_or("").into(),
        })
        .set(1);
        reg.register(
            "probe_failure",
            "1 with the failure reason and phase of the last attempt",
            fam,
        );
    }
    let om = wants_openmetrics(req);
    let mut out = String::new();
    let _ = if om {
        prometheus_client::encoding::text::encode(&mut out, &reg)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg)
    };
    respond(StatusCode::OK, if om { OPENMETRICS } else { TEXT_004 }, out)
}

/// The status page's data.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// Unix time of this view.
    pub generated_at: f64,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Proxies in the inventory.
    pub inventory: u64,
    /// Sweep progress.
    pub sweep: SweepView,
    /// One row per pool.
    pub pools: Vec<PoolView>,
    /// Totals over every pool.
    pub totals: PoolView,
    /// INACTIVE proxies (most recently checked first), then the slowest up ones.
    pub worst: Vec<WorstView>,
    /// Latency distribution of up proxies' last checks.
    pub latency: LatencyView,
}

/// Sweep progress.
#[derive(Debug, Serialize)]
pub struct SweepView {
    /// Configured interval.
    pub interval_seconds: f64,
    /// Unix time of the last completed sweep (0 if none).
    pub last_completed: f64,
    /// Duration of the last completed sweep.
    pub last_duration_seconds: f64,
    /// Checks running now.
    pub in_flight: i64,
    /// Proxies in the current sweep.
    pub in_sweep: u64,
    /// Checks completed in the current sweep.
    pub completed: u64,
}

/// Counts for one pool.
#[derive(Debug, Serialize, Default)]
pub struct PoolView {
    /// Pool name.
    pub pool: String,
    /// ACTIVE.
    pub active: u64,
    /// SLOW.
    pub slow: u64,
    /// INACTIVE.
    pub inactive: u64,
    /// BANNED.
    pub banned: u64,
    /// Not yet checked.
    pub unchecked: u64,
    /// All.
    pub total: u64,
}

/// One bad proxy.
#[derive(Debug, Serialize)]
pub struct WorstView {
    /// Proxy id.
    pub id: String,
    /// Redacted URL.
    pub url: String,
    /// Pool.
    pub pool: String,
    /// Provider.
    pub provider: String,
    /// Reported status.
    pub status: &'static str,
    /// Reason of the last check.
    pub reason: Option<&'static str>,
    /// Phase of the failure.
    pub phase: Option<&'static str>,
    /// Error of the last check.
    pub error: Option<String>,
    /// Latency of the last check.
    pub latency_ms: u64,
    /// Unix time of the last check.
    pub checked_at: f64,
}

/// A histogram of last latencies.
#[derive(Debug, Serialize)]
pub struct LatencyView {
    /// Upper bounds, ms (the last bucket is open-ended).
    pub bounds_ms: Vec<u64>,
    /// Proxies per bucket.
    pub counts: Vec<u64>,
}

const LATENCY_BOUNDS_MS: [u64; 12] = [
    50,
    100,
    200,
    300,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    u64::MAX,
];
const WORST_LIMIT: usize = 50;

/// Build the status view (walks every proxy once).
pub fn status_view(app: &AppState) -> StatusView {
    let cfg = app.current_config();
    let x = &app.metrics.exporter;
    let mut pools: std::collections::BTreeMap<String, PoolView> = Default::default();
    for ((pool, _, _), row) in app.state.counts() {
        let v = pools.entry(pool.clone()).or_insert_with(|| PoolView {
            pool,
            ..Default::default()
        });
        v.active += row[status_index(Some(ProxyStatus::Active))];
        v.slow += row[status_index(Some(ProxyStatus::Slow))];
        v.inactive += row[status_index(Some(ProxyStatus::Inactive))];
        v.banned += row[status_index(Some(ProxyStatus::Banned))];
        v.unchecked += row[4];
        v.total += row.iter().sum::<u64>();
    }
    let mut totals = PoolView {
        pool: "all".into(),
        ..Default::default()
    };
    for v in pools.values() {
        totals.active += v.active;
        totals.slow += v.slow;
        totals.inactive += v.inactive;
        totals.banned += v.banned;
        totals.unchecked += v.unchecked;
        totals.total += v.total;
    }
    let mut counts = vec![0u64; LATENCY_BOUNDS_MS.len()];
    // Rank cheaply (an Arc clone per candidate), keep the worst few, and only
    // then build their views: with a million proxies, a quarter of them down,
    // cloning every candidate's strings made each refresh allocate megabytes.
    let mut candidates: Vec<(u8, std::cmp::Reverse<u64>, Arc<crate::model::Proxy>)> = Vec::new();
    app.state.for_each(|s| {
        let (Some(rep), Some(last)) = (s.reported, &s.last) else {
            return;
        };
        if rep.is_up() {
            let i = LATENCY_BOUNDS_MS
                .iter()
                .position(|b| last.latency_ms <= *b)
                .unwrap_or(LATENCY_BOUNDS_MS.len() - 1);
            counts[i] += 1;
        }
        if rep != ProxyStatus::Active || last.reason.is_some() {
            let rank = match rep {
                ProxyStatus::Inactive => 0,
                ProxyStatus::Banned => 1,
                ProxyStatus::Slow => 2,
                ProxyStatus::Active => 3,
            };
            candidates.push((rank, std::cmp::Reverse(last.latency_ms), s.proxy.clone()));
        }
    });
    let order = |a: &(u8, std::cmp::Reverse<u64>, Arc<crate::model::Proxy>),
                 b: &(u8, std::cmp::Reverse<u64>, Arc<crate::model::Proxy>)| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| a.2.id.cmp(&b.2.id))
    };
    if candidates.len() > WORST_LIMIT {
        candidates.select_nth_unstable_by(WORST_LIMIT, order);
        candidates.truncate(WORST_LIMIT);
    }
    candidates.sort_unstable_by(order);
    let worst: Vec<WorstView> = candidates
        .iter()
        .filter_map(|(_, _, p)| {
            let s = app.state.get(&p.id)?;
            let (rep, last) = (s.reported?, s.last?);
            Some(WorstView {
                id: p.id.clone(),
                url: p.redacted_url(),
                pool: p.pool.clone(),
                provider: p.provider.clone(),
                status: rep.as_str(),
                reason: last.reason.map(|r| r.as_str()),
                phase: last.phase.map(Phase::as_str),
                error: last.error.as_deref().map(str::to_string),
                latency_ms: last.latency_ms,
                checked_at: last.checked_at,
            })
        })
        .collect();
    StatusView {
        generated_at: chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
        uptime_seconds: app.started.elapsed().as_secs_f64(),
        inventory: x.inventory_size.get().max(0) as u64,
        sweep: SweepView {
            interval_seconds: cfg.sweep.interval.as_secs_f64(),
            last_completed: x.last_sweep_ts.get(),
            last_duration_seconds: x.last_sweep_duration.get(),
            in_flight: app.gauges.in_flight.load(Ordering::Relaxed).max(0),
            in_sweep: app.gauges.proxies.load(Ordering::Relaxed) as u64,
            completed: app.gauges.completed.load(Ordering::Relaxed) as u64,
        },
        pools: pools.into_values().collect(),
        totals,
        worst,
        latency: LatencyView {
            bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
            counts,
        },
    }
}

fn status_json(app: &AppState) -> String {
    serde_json::to_string(&status_view(app)).unwrap_or_else(|_| "{}".into())
}

/// The status page: self-contained HTML (inline CSS, JS and SVG, no external
/// assets) that polls `/api/status` and redraws without a reload.
fn status_page(telemetry: &str) -> String {
    include_str!("status_page.html").replace("{{TELEMETRY_PATH}}", &html_escape(telemetry))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
