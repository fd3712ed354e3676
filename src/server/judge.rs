//! Our own proxy judge (`pharox-exporter judge`): every request, on any
//! path and with any method, is answered with what the judge saw of it:
//!
//! ```json
//! {"origin": "<client ip>", "headers": {"<name>": "<value>", ...},
//!  "method": "GET", "path": "/x?y", "version": "HTTP/1.1"}
//! ```
//!
//! `origin` is the address of the TCP peer (the proxy's exit), `headers` every
//! request header (names lower case, repeated headers joined with `", "`),
//! which the probe's judge mode reads like httpbin's answer. A user runs
//! this on a host they control instead of trusting a third-party judge.
//!
//! Bounded like the main server ([`super::limits`]): open connections are
//! capped (the longest-idle makes room), a request head must arrive within
//! [`HEADER_READ_TIMEOUT`] and fit in [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`],
//! and a stop lets requests in progress finish within [`CONNECTION_DRAIN`].

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};

use super::limits::{Admission, Connections, Ticket};
use super::CONNECTION_DRAIN;
use crate::shutdown::{Shutdown, TrackGuard, Tracker};

/// Open connections the judge serves at most, unless told otherwise.
pub const JUDGE_MAX_CONNECTIONS: usize = 256;

/// Bind the judge's listen address (as the main server does: `:PORT`
/// means every interface).
pub async fn bind_judge(addr: &str) -> std::io::Result<TcpListener> {
    super::bind(addr).await
}

/// Serve the judge on `listener` until `stop` triggers, with at most
/// `max_connections` open connections.
pub async fn serve_judge(listener: TcpListener, max_connections: usize, stop: Shutdown) {
    let connections = Tracker::new();
    let slots = Connections::new(max_connections);
    loop {
        let Some((stream, peer)) = super::accept(&listener, &stop).await else {
            break;
        };
        let ticket = match slots.admit() {
            Admission::Admitted(t) | Admission::Evicted(t) => t,
            Admission::Full => {
                tracing::debug!("every judge connection is busy; closing a new one");
                continue;
            }
        };
        let guard = connections.track();
        tokio::spawn(serve_connection(
            stream,
            peer.ip(),
            Arc::new(ticket),
            stop.clone(),
            guard,
        ));
    }
    drop(listener);
    let _ = tokio::time::timeout(CONNECTION_DRAIN, connections.idle()).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: IpAddr,
    ticket: Arc<Ticket>,
    stop: Shutdown,
    _guard: TrackGuard,
) {
    let evicted = ticket.evicted.clone();
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let ticket = ticket.clone();
        async move {
            ticket.busy();
            let (parts, _body) = req.into_parts();
            let resp = answer(peer, &parts);
            ticket.idle();
            Ok::<_, Infallible>(resp)
        }
    });
    super::serve_http1(stream, svc, &evicted, &stop, "judge").await;
}

/// The judge's answer to one request from `peer`.
fn answer(peer: IpAddr, parts: &Parts) -> Response<Full<Bytes>> {
    let body = judge_json(peer, parts).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

/// What the judge saw: see the module docs.
fn judge_json(peer: IpAddr, parts: &Parts) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                headers.insert(name.as_str().to_string(), serde_json::Value::String(v));
            }
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.to_string(), |p| p.as_str().to_string());
    serde_json::json!({
        "origin": peer.to_canonical().to_string(),
        "headers": headers,
        "method": parts.method.as_str(),
        "path": path,
        "version": format!("{:?}", parts.version),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_the_peer_every_header_and_the_request_line() {
        let req = Request::builder()
            .method("POST")
            .uri("/any/path?x=1")
            .header("Host", "judge.test")
            .header("Via", "1.1 a")
            .header("via", "1.1 b")
            .header("X-Forwarded-For", "127.0.0.1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let peer: IpAddr = "::ffff:127.0.0.23".parse().unwrap();
        let v = judge_json(peer, &parts);
        assert_eq!(
            v,
            serde_json::json!({
                "origin": "127.0.0.23",
                "headers": {"host": "judge.test", "via": "1.1 a, 1.1 b", "x-forwarded-for": "127.0.0.1"},
                "method": "POST",
                "path": "/any/path?x=1",
                "version": "HTTP/1.1",
            })
        );
    }
}
