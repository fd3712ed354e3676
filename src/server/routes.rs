//! One HTTP request in, one response out. [`route`] is generic over the
//! request body (no handler reads one), so every endpoint can be tested in
//! process, without a socket.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{
    HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::body::{send_by, Body, Chunk, STREAM_DEADLINE};
use super::status::status_page;
use super::AppState;
use crate::sinks::metrics::exposition;

/// A response with its whole body in memory.
pub(crate) type Resp = Response<Body>;

pub(super) const PLAIN: &str = "text/plain; charset=utf-8";

pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Resp {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// OpenMetrics only when the scraper asks for it (Prometheus does); curl,
/// browsers and promtool get the classic text format.
pub(super) fn wants_openmetrics(req: &Parts) -> bool {
    exposition::wants_openmetrics(
        req.headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// Encode a one-shot registry in the negotiated format.
pub(super) fn encode(reg: &Registry, openmetrics: bool) -> Resp {
    respond(
        StatusCode::OK,
        exposition::content_type(openmetrics),
        exposition::encode(reg, openmetrics, 0),
    )
}

pub(super) fn query_param(req: &Parts, key: &str) -> Option<String> {
    let q = req.uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Answer one request. The body is dropped unread, which is why any body
/// type will do (and why the future does not hold it).
pub(crate) fn route<B>(req: Request<B>, app: Arc<AppState>) -> impl Future<Output = Resp> + Send {
    let (parts, _body) = req.into_parts();
    handle(parts, app)
}

/// Request bodies are never read; one announced larger than this is
/// refused before anything else happens.
pub(crate) const MAX_BODY_BYTES: u64 = 64 * 1024;

async fn handle(req: Parts, app: Arc<AppState>) -> Resp {
    let body_len = req
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if body_len > MAX_BODY_BYTES {
        return respond(
            StatusCode::PAYLOAD_TOO_LARGE,
            PLAIN,
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes\n"),
        );
    }
    // Read per request: web.telemetry_path is reloadable, unlike the listen address.
    let cfg = app.current_config();
    let telemetry = cfg.web.telemetry_path.clone();
    let path = req.uri.path().to_string();
    match (&req.method, path.as_str()) {
        (&Method::GET, p) if p == telemetry => {
            let Ok(slot) = app.requests.render() else {
                return busy(&app, "max_requests");
            };
            metrics(&req, &app, slot).await
        }
        (&Method::GET, "/-/healthy") => respond(StatusCode::OK, PLAIN, "Healthy.\n"),
        (&Method::GET, "/-/ready") => {
            if app.ready.load(Ordering::Relaxed) {
                respond(StatusCode::OK, PLAIN, "Ready.\n")
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    "Not ready: inventory not loaded or no sweep started yet.\n",
                )
            }
        }
        (&Method::POST, "/-/reload") | (&Method::PUT, "/-/reload") if !cfg.web.enable_lifecycle => {
            app.metrics.http_rejected("lifecycle_disabled");
            respond(
                StatusCode::FORBIDDEN,
                PLAIN,
                "Lifecycle API is not enabled: start with --web.enable-lifecycle to reload by HTTP \
                 (SIGHUP always reloads).\n",
            )
        }
        (&Method::POST, "/-/reload") | (&Method::PUT, "/-/reload") => reload(&app).await,
        (_, "/-/reload") => method_not_allowed("POST, PUT"),
        (&Method::GET, "/probe") => super::probe::probe(&req, &app).await,
        (&Method::GET, "/api/status") => {
            let Ok(_slot) = app.requests.render() else {
                return busy(&app, "max_requests");
            };
            super::status::api_status(&req, &app).await
        }
        (&Method::GET, "/") | (&Method::GET, "/status") => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status_page(&telemetry),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            PLAIN,
            "Not found. See / for the endpoints.\n",
        ),
    }
}

/// 503 for a request past a cap, counted by `reason`.
pub(super) fn busy(app: &AppState, reason: &'static str) -> Resp {
    app.metrics.http_rejected(reason);
    let mut r = respond(
        StatusCode::SERVICE_UNAVAILABLE,
        PLAIN,
        "Too many concurrent requests; try again shortly.\n",
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// 405 with the `Allow` header RFC 9110 requires on it.
fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "use POST\n");
    r.headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Chunks of a streamed scrape in flight at most (each about
/// [`crate::sinks::metrics::CHUNK`]).
const CHUNKS_IN_FLIGHT: usize = 4;

async fn metrics(req: &Parts, app: &Arc<AppState>, slot: Option<OwnedSemaphorePermit>) -> Resp {
    let om = wants_openmetrics(req);
    let metrics = app.metrics.clone();
    let (tx, mut rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let rt = tokio::runtime::Handle::current();
    let deadline = tokio::time::Instant::now() + STREAM_DEADLINE;
    // Rendering walks every proxy's state; keep it off the async workers.
    // The render slot is held until the last chunk is handed over, or the
    // deadline passes.
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut open = true;
        metrics.render_chunks(om, &mut |chunk| {
            // A scraper that went away or stopped reading: nothing more to send.
            open = open && send_by(&rt, &tx, Chunk::Data(chunk.into()), deadline);
        });
        if open {
            send_by(&rt, &tx, Chunk::End, deadline);
        }
    });
    let body = match rx.recv().await {
        Some(Chunk::Data(first)) => match rx.recv().await {
            // All of it in one chunk (any aggregated scrape): sent whole,
            // with its length, as before.
            Some(Chunk::End) => Body::full(first),
            Some(Chunk::Data(second)) => Body::Stream {
                head: [first, second].into(),
                rx,
                done: false,
            },
            None => Body::Stream {
                head: [first].into(),
                rx,
                done: false,
            },
        },
        // The renderer failed before its first chunk: an empty exposition.
        Some(Chunk::End) | None => Body::full(Bytes::new()),
    };
    let mut r = respond(StatusCode::OK, exposition::content_type(om), Bytes::new());
    *r.body_mut() = body;
    r
}

async fn reload(app: &AppState) -> Resp {
    let (tx, rx) = oneshot::channel();
    if app.reload.send(tx).await.is_err() {
        return respond(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "shutting down\n");
    }
    match rx.await {
        Ok(Ok(())) => respond(StatusCode::OK, PLAIN, "Reloaded.\n"),
        Ok(Err(e)) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            PLAIN,
            format!("failed to reload config: {e}\n"),
        ),
        Err(_) => respond(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "shutting down\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::metrics::exposition::{OPENMETRICS, TEXT_004};

    use http_body_util::BodyExt;

    fn app() -> Arc<AppState> {
        Arc::new(super::super::test_app(1))
    }

    async fn get(method: Method, path: &str, accept: Option<&str>) -> (StatusCode, String, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        let resp = route(req.body(()).expect("request"), app()).await;
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthy_ready_and_unknown_paths() {
        let (s, ct, body) = get(Method::GET, "/-/healthy", None).await;
        assert_eq!(
            (s, ct.as_str(), body.as_str()),
            (StatusCode::OK, PLAIN, "Healthy.\n")
        );
        let (s, _, _) = get(Method::GET, "/-/ready", None).await;
        assert_eq!(
            s,
            StatusCode::SERVICE_UNAVAILABLE,
            "no inventory loaded yet"
        );
        let (s, _, body) = get(Method::GET, "/nope", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(body.starts_with("Not found."), "{body}");
    }

    #[tokio::test]
    async fn reload_wants_post_and_the_lifecycle_flag() {
        let (s, _, body) = get(Method::GET, "/-/reload", None).await;
        assert_eq!(
            (s, body.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "use POST\n")
        );
        let req = Request::builder()
            .uri("/-/reload")
            .body(())
            .expect("request");
        let resp = route(req, app()).await;
        assert_eq!(
            resp.headers()
                .get(hyper::header::ALLOW)
                .map(|v| v.as_bytes()),
            Some(&b"POST, PUT"[..]),
            "a 405 names the methods that work"
        );
        let (s, _, body) = get(Method::POST, "/-/reload", None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "off by default");
        assert!(body.contains("--web.enable-lifecycle"), "{body}");
        let app = app();
        {
            let mut cfg = (*app.current_config()).clone();
            cfg.web.enable_lifecycle = true;
            *app.config.write().unwrap() = Arc::new(cfg);
        }
        let req = Request::post("/-/reload").body(()).unwrap();
        let resp = route(req, app).await;
        assert_eq!(
            resp.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "enabled; nobody reloads: shutting down"
        );
    }

    #[tokio::test]
    async fn renders_past_the_cap_and_big_bodies_are_refused() {
        let app = app(); // max_requests 1
        let held = app.requests.render().expect("first slot");
        let resp = route(Request::get("/metrics").body(()).unwrap(), app.clone()).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[RETRY_AFTER], "1");
        let resp = route(Request::get("/api/status").body(()).unwrap(), app.clone()).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(held);
        let resp = route(Request::get("/metrics").body(()).unwrap(), app.clone()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let big = Request::post("/-/reload")
            .header(CONTENT_LENGTH, "1000000")
            .body(())
            .unwrap();
        assert_eq!(
            route(big, app).await.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn metrics_negotiate_the_exposition_format() {
        let (s, ct, body) = get(Method::GET, "/metrics", None).await;
        assert_eq!((s, ct.as_str()), (StatusCode::OK, TEXT_004));
        assert!(body.contains("pharox_"), "{body}");
        assert!(!body.contains("# EOF"), "classic text has no EOF line");
        let (s, ct, body) = get(
            Method::GET,
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
        )
        .await;
        assert_eq!((s, ct.as_str()), (StatusCode::OK, OPENMETRICS));
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[tokio::test]
    async fn status_page_and_probe_guard() {
        let (s, ct, body) = get(Method::GET, "/", None).await;
        assert_eq!(
            (s, ct.as_str()),
            (StatusCode::OK, "text/html; charset=utf-8")
        );
        assert!(body.contains("/metrics"));
        let (s, _, _) = get(Method::GET, "/probe", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _, body) = get(Method::GET, "/probe?target=socks5://u:pw@127.0.0.1:1", None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "not in the inventory");
        assert!(!body.contains("pw@"), "{body}");
    }
}
