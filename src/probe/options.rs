//! What one check is told to do: [`CheckOptions`], pharox's defaults for it
//! (written here and nowhere else), and [`OptionsByPool`], the resolved
//! options of every (pool, protocol) that a sweep looks up per proxy.
//!
//! The probe does not know where options come from: the config builds an
//! [`OptionsByPool`] from its layers, a test or a one-shot caller can build
//! one from a single [`CheckOptions`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::tls::{self, TlsConfigError};
use crate::model::{Anonymity, GeoPolicy, Proxy, ProxyProtocol};
use crate::secret::Secret;
use crate::text::Text;

/// pharox's default target (`HealthCheckOptions.target_url`).
pub const PHAROX_DEFAULT_TARGET: &str = "https://httpbin.org/ip";

/// Everything a check needs, resolved for one proxy (defaults, then
/// per-protocol, then per-pool overrides). Built once per (pool, protocol)
/// by the config and shared behind an `Arc`, so a check allocates no options.
#[derive(Clone)]
pub struct CheckOptions {
    /// The URL fetched through the proxy (`http://` or `https://`).
    pub target_url: url::Url,
    /// Statuses that count as success (pharox default: `[200]`).
    pub expected_status_codes: Vec<u16>,
    /// Deadline of one attempt, all phases included.
    pub timeout: Duration,
    /// Attempts before declaring INACTIVE (1..=5).
    pub attempts: u8,
    /// Above this, a successful check is SLOW.
    pub slow_threshold: Duration,
    /// Follow 3xx redirects (through the same proxy, at most [`super::MAX_REDIRECTS`]).
    pub allow_redirects: bool,
    /// Extra request headers. Values are secrets (Authorization, API
    /// keys); they are sent to the target's origin only, never after a
    /// redirect to another scheme, host or port.
    pub headers: Vec<(String, Secret)>,
    /// Optional: the body must contain this string.
    pub body_contains: Option<String>,
    /// Optional: the body must match this regex.
    pub body_regex: Option<regex::Regex>,
    /// Optional: our own egress IPs; if the body reports one of them as the
    /// exit IP, the proxy leaks us and the check fails with `exit_ip_leak`.
    pub own_ips: Vec<IpAddr>,
    /// The target is a proxy judge: its answer is parsed for the exit IP
    /// and the headers it received (anonymity), and an unparsable answer
    /// is [`crate::Reason::JudgeUnparsable`].
    pub judge: bool,
    /// With a judge: below this level the check fails with
    /// [`crate::Reason::Anonymity`].
    pub min_anonymity: Option<Anonymity>,
    /// What an exit in another country than the declared one does.
    pub geo_policy: GeoPolicy,
    /// At most this many body bytes are read (default 64 KiB).
    pub max_body_bytes: usize,
    /// At most this many bytes of status line + headers (default 32 KiB).
    pub max_header_bytes: usize,
    /// TLS to the target (shared by every check).
    pub target_tls: Arc<rustls::ClientConfig>,
    /// TLS to HTTPS proxies (shared by every check).
    pub proxy_tls: Arc<rustls::ClientConfig>,
}

/// Why [`CheckOptions::new`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// Only `http://` and `https://` targets can be fetched.
    #[error("target URL must be http:// or https://, not {0}://")]
    UnsupportedScheme(String),
    /// The target URL names no host.
    #[error("target URL has no host")]
    NoHost,
    /// The default TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

impl CheckOptions {
    /// Options with pharox's defaults for `target_url` (see
    /// [`CheckOptions::with_tls`]) and the process-wide default TLS
    /// configuration for target and proxy.
    pub fn new(target_url: Url) -> Result<Self, OptionsError> {
        match target_url.scheme() {
            "http" | "https" => {}
            other => return Err(OptionsError::UnsupportedScheme(other.to_string())),
        }
        if target_url.host_str().is_none_or(str::is_empty) {
            return Err(OptionsError::NoHost);
        }
        let (target_tls, proxy_tls) = tls::default_client_configs()?;
        Ok(CheckOptions::with_tls(target_url, target_tls, proxy_tls))
    }

    /// pharox's defaults, the only copy of them: expect `[200]`, 5 s
    /// timeout, 1 attempt, SLOW above 2000 ms, follow redirects, no extra
    /// headers, no body checks, 64 KiB body and 32 KiB header limits. The
    /// URL is taken as given (the config has validated it already).
    pub fn with_tls(
        target_url: Url,
        target_tls: Arc<rustls::ClientConfig>,
        proxy_tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        CheckOptions {
            target_url,
            expected_status_codes: vec![200],
            timeout: Duration::from_secs(5),
            attempts: 1,
            slow_threshold: Duration::from_millis(2000),
            allow_redirects: true,
            headers: Vec::new(),
            body_contains: None,
            body_regex: None,
            own_ips: Vec::new(),
            judge: false,
            min_anonymity: None,
            geo_policy: GeoPolicy::Fail,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 32 * 1024,
            target_tls,
            proxy_tls,
        }
    }
}

/// Resolved [`CheckOptions`] for every (pool, protocol), built once per
/// config so a check only looks up an `Arc`.
#[derive(Clone)]
pub struct OptionsByPool {
    by_protocol: HashMap<ProxyProtocol, Arc<CheckOptions>>,
    /// Keyed by [`Text`], the type of [`Proxy::pool`]: a lookup clones the
    /// proxy's pool without allocating.
    by_pool: HashMap<(Text, ProxyProtocol), Arc<CheckOptions>>,
}

impl OptionsByPool {
    /// The same options for every protocol and pool.
    pub fn uniform(options: Arc<CheckOptions>) -> Self {
        let Ok(out) =
            Self::try_per_protocol(|_| Ok::<_, std::convert::Infallible>(options.clone()));
        out
    }

    /// Options per protocol, from `f` called once for each protocol in
    /// [`ProxyProtocol::ALL`] order; the first error stops it.
    pub fn try_per_protocol<E>(
        mut f: impl FnMut(ProxyProtocol) -> Result<Arc<CheckOptions>, E>,
    ) -> Result<Self, E> {
        let mut by_protocol = HashMap::new();
        for p in ProxyProtocol::ALL {
            by_protocol.insert(p, f(p)?);
        }
        Ok(OptionsByPool {
            by_protocol,
            by_pool: HashMap::new(),
        })
    }

    /// Use `options` for `protocol` in every pool without options of its own.
    pub fn set_protocol(&mut self, protocol: ProxyProtocol, options: Arc<CheckOptions>) {
        self.by_protocol.insert(protocol, options);
    }

    /// Use `options` for proxies of `protocol` in `pool`.
    pub fn set_pool(&mut self, pool: String, protocol: ProxyProtocol, options: Arc<CheckOptions>) {
        self.by_pool.insert((pool.into(), protocol), options);
    }

    /// Every resolved option set (each protocol, each pool).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CheckOptions>> {
        self.by_protocol.values().chain(self.by_pool.values())
    }

    /// The options for one proxy.
    pub fn for_proxy(&self, proxy: &Proxy) -> &Arc<CheckOptions> {
        if !self.by_pool.is_empty() {
            if let Some(o) = self.by_pool.get(&(proxy.pool.clone(), proxy.protocol)) {
                return o;
            }
        }
        self.for_protocol(proxy.protocol)
    }

    /// The options of every `pools.<name>` entry, per protocol.
    pub(crate) fn pools(&self) -> impl Iterator<Item = (&str, ProxyProtocol, &Arc<CheckOptions>)> {
        self.by_pool
            .iter()
            .map(|((pool, p), o)| (pool.as_str(), *p, o))
    }

    /// The options for a protocol, ignoring pools.
    pub fn for_protocol(&self, protocol: ProxyProtocol) -> &Arc<CheckOptions> {
        // Every protocol is filled in by `try_per_protocol`, the only constructor.
        &self.by_protocol[&protocol]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_entry_wins_only_for_its_pool_and_protocol() {
        let url = Url::parse("http://127.0.0.1/").unwrap();
        let base = Arc::new(CheckOptions::new(url).unwrap());
        let mut slow = (*base).clone();
        slow.timeout = Duration::from_secs(9);
        let slow = Arc::new(slow);
        let mut by = OptionsByPool::uniform(base.clone());
        by.set_pool("resi".into(), ProxyProtocol::Socks5, slow.clone());
        let mut p = Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", 1080);
        assert!(Arc::ptr_eq(by.for_proxy(&p), &base));
        p.pool = "resi".into();
        assert!(Arc::ptr_eq(by.for_proxy(&p), &slow));
        p.protocol = ProxyProtocol::Http;
        assert!(Arc::ptr_eq(by.for_proxy(&p), &base));
        for proto in ProxyProtocol::ALL {
            assert!(Arc::ptr_eq(by.for_protocol(proto), &base));
        }
    }
}
