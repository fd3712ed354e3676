//! Error responses that HTTP proxies make themselves, for
//! [`ProxyBehavior::answering`](crate::ProxyBehavior::answering): the stock
//! pages of real proxies (`fixtures/proxy_errors/`, whose README says where
//! each came from) and RFC 9209 `Proxy-Status` answers built to order.

/// squid 5.7, `GET http://127.0.0.1:1/`: 503 with `X-Squid-Error:
/// ERR_CONNECT_FAIL 111` and its page.
pub const SQUID_CONNECT_FAIL: &[u8] =
    include_bytes!("../fixtures/proxy_errors/squid-5.7-connect-fail.http");
/// tinyproxy 1.11.1: `500 Unable to connect`, `Server: tinyproxy/1.11.1`.
pub const TINYPROXY_UNABLE_TO_CONNECT: &[u8] =
    include_bytes!("../fixtures/proxy_errors/tinyproxy-1.11.1-unable-to-connect.http");
/// privoxy 3.0.34's `connect-failed` template: `503 Connect failed`.
pub const PRIVOXY_CONNECT_FAILED: &[u8] =
    include_bytes!("../fixtures/proxy_errors/privoxy-3.0.34-connect-failed.http");
/// privoxy 3.0.34's `blocked` template: `403 Request blocked by Privoxy`.
pub const PRIVOXY_BLOCKED: &[u8] =
    include_bytes!("../fixtures/proxy_errors/privoxy-3.0.34-blocked.http");
/// apache 2.4.71 mod_proxy: `502 Proxy Error`, `Reason: DNS lookup failure`.
pub const APACHE_PROXY_ERROR: &[u8] =
    include_bytes!("../fixtures/proxy_errors/apache-2.4.71-proxy-error.http");
/// apache 2.4.71: the canned `502 Bad Gateway` page of a proxy module.
pub const APACHE_BAD_GATEWAY: &[u8] =
    include_bytes!("../fixtures/proxy_errors/apache-2.4.71-bad-gateway.http");

/// A response `status` with `Proxy-Status: <proxy_status>` and a plain
/// body, as an RFC 9209 intermediary sends its own errors.
pub fn proxy_status(status: u16, proxy_status: &str) -> Vec<u8> {
    let body = format!("{status} from the proxy\n");
    format!(
        "HTTP/1.1 {status} Proxy Failure\r\nProxy-Status: {proxy_status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
