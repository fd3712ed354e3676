//! TLS client configuration, built once and shared by every check.
//!
//! A `rustls::ClientConfig` holds the root store and the session-resumption
//! cache; building one per check would reload the system roots and throw the
//! resumption cache away, so the config layer builds one per distinct
//! (CA file, insecure) pair and every check clones the `Arc`.
//!
//! Targets and HTTPS proxies get separate configs (same trust, separate
//! session stores): rustls's default store keeps the sessions of 32 servers,
//! so one store shared with thousands of HTTPS proxies would evict the
//! target's session after every 32 proxy handshakes and every check would
//! pay a full handshake with the target. See [`for_proxies`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::tls_roots::CaFileError;

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The CA file could not be read.
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        /// The file named in the configuration.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The CA file is not valid PEM.
    #[error("cannot parse CA file {path} as PEM: {source}")]
    ParseCa {
        /// The file named in the configuration.
        path: PathBuf,
        /// The underlying parse error.
        source: std::io::Error,
    },
    /// The CA file holds no certificate at all.
    #[error("CA file {path} contains no PEM certificate")]
    EmptyCa {
        /// The file named in the configuration.
        path: PathBuf,
    },
    /// A certificate of the CA file was rejected as a trust anchor.
    #[error("CA file {path} holds an unusable certificate: {source}")]
    BadCa {
        /// The file named in the configuration.
        path: PathBuf,
        /// Why rustls refused it.
        source: rustls::Error,
    },
    /// rustls refused the protocol configuration.
    #[error("cannot build TLS client configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider of every config we build: `ring`, named explicitly so
/// no process-wide default provider has to be installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Build the one TLS client configuration shared by every check.
///
/// Trust anchors are the bundled webpki roots, plus the system's roots (a
/// failure to load those is ignored: containers often have none), plus every
/// certificate of `ca_file` when given. ALPN offers `http/1.1` only, since the
/// probe speaks HTTP/1.1.
///
/// `insecure` accepts **any** server certificate, whatever its issuer, name or
/// validity: it is dangerous (anyone on the path can impersonate the target or
/// the proxy) and only meant for labs with throwaway certificates. Handshake
/// signatures are still checked, so the connection is at least consistent.
pub fn client_config(
    ca_file: Option<&Path>,
    insecure: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { provider }))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(root_store(ca_file)?)
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Sessions kept for HTTPS proxies: rustls keeps up to 8 per server, so
/// this covers the last 256 proxies, enough for the retries of the checks in
/// flight; resuming every proxy of a large inventory from one sweep to the
/// next would cost kilobytes per proxy (each session holds the server's
/// certificate chain).
const PROXY_SESSIONS: usize = 2048;

/// The config for HTTPS proxies that goes with `target` (a config from
/// [`client_config`]): the same trust and verifier (shared, not copied),
/// with a session store of its own, so proxies never evict the target's
/// sessions.
pub(crate) fn for_proxies(target: &rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    let mut c = target.clone();
    c.resumption = rustls::client::Resumption::in_memory_sessions(PROXY_SESSIONS);
    Arc::new(c)
}

/// `client_config(None, false)` for targets and its [`for_proxies`] twin,
/// built once per process: loading the system roots reads files, so callers
/// that just want defaults share them.
pub(crate) fn default_client_configs() -> Result<DefaultConfigs, TlsConfigError> {
    static DEFAULT: OnceLock<DefaultConfigs> = OnceLock::new();
    if let Some(c) = DEFAULT.get() {
        return Ok(c.clone());
    }
    let target = client_config(None, false)?;
    let proxy = for_proxies(&target);
    // A concurrent caller may have won the race; either pair is equivalent.
    Ok(DEFAULT.get_or_init(|| (target, proxy)).clone())
}

/// (target config, proxy config).
pub(crate) type DefaultConfigs = (Arc<rustls::ClientConfig>, Arc<rustls::ClientConfig>);

fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsConfigError> {
    crate::tls_roots::root_store(ca_file).map_err(TlsConfigError::from)
}

impl From<CaFileError> for TlsConfigError {
    fn from(e: CaFileError) -> Self {
        match e {
            CaFileError::Read { path, source } => TlsConfigError::ReadCa { path, source },
            CaFileError::Parse { path, source } => TlsConfigError::ParseCa { path, source },
            CaFileError::Empty { path } => TlsConfigError::EmptyCa { path },
            CaFileError::BadCert { path, source } => TlsConfigError::BadCa { path, source },
        }
    }
}

/// The server name to send as SNI and to verify: an IP literal is checked
/// against the certificate's IP SANs, anything else as a DNS name.
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Some(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).ok()
}

/// Accepts every certificate: see [`client_config`]'s `insecure`.
#[derive(Debug)]
struct AcceptAnyCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS handshake over `stream` with `host` as SNI and verified name. `what`
/// names the peer in errors ("proxy" or "target").
pub(crate) async fn handshake<S>(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    stream: S,
    what: &str,
    quote: impl Fn(&str) -> String,
) -> Result<tokio_rustls::client::TlsStream<S>, super::StepError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use crate::model::Reason;
    let name = server_name(host).ok_or_else(|| {
        super::StepError::new(
            Reason::Tls,
            format!("{what} host {host:?} is not a valid TLS server name"),
        )
    })?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    connector.connect(name, stream).await.map_err(|e| {
        let tls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match tls_error {
            Some(te) => super::StepError::new(
                Reason::Tls,
                // rustls names the peer's certificate: the peer's text.
                format!(
                    "TLS handshake with {what} {host} failed: {}",
                    quote(&te.to_string())
                ),
            ),
            None => match e.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => {
                    super::dial::io_error(&e, &format!("TLS handshake with {what} {host}"))
                }
                _ => super::StepError::new(
                    Reason::Tls,
                    format!("TLS handshake with {what} {host} failed: {e}"),
                ),
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::HandshakeKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS server on a free loopback port (the test PKI's leaf, session
    /// resumption as rustls serves it by default) that says `ok` and closes.
    async fn server() -> std::net::SocketAddr {
        let acceptor = pharox_testkit::pki::acceptor();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut t) = acceptor.accept(s).await {
                        let _ = t.write_all(b"ok").await;
                        let _ = t.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    /// One connection with `name` as SNI; how its handshake went.
    async fn connect(
        config: &Arc<rustls::ClientConfig>,
        addr: std::net::SocketAddr,
        name: &str,
    ) -> HandshakeKind {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut t = handshake(config, name, tcp, "target", |s| s.to_string())
            .await
            .unwrap();
        // TLS 1.3 tickets arrive after the handshake: read to the end, as a check does.
        let mut body = Vec::new();
        let _ = t.read_to_end(&mut body).await;
        assert_eq!(body, b"ok");
        t.get_ref().1.handshake_kind().expect("handshake done")
    }

    #[tokio::test]
    async fn the_target_session_survives_handshakes_with_many_https_proxies() {
        let addr = server().await;
        // `insecure`, so any name can be the SNI of the one test server.
        let target = client_config(None, true).unwrap();
        let proxies = for_proxies(&target);
        assert_eq!(
            connect(&target, addr, "target.test").await,
            HandshakeKind::Full
        );
        assert_eq!(
            connect(&target, addr, "target.test").await,
            HandshakeKind::Resumed
        );
        for i in 0..40 {
            connect(&proxies, addr, &format!("proxy{i}.test")).await;
        }
        assert_eq!(
            connect(&target, addr, "target.test").await,
            HandshakeKind::Resumed,
            "40 proxies did not evict the target's session"
        );
        assert_eq!(
            connect(&proxies, addr, "proxy39.test").await,
            HandshakeKind::Resumed,
            "a proxy retried at once resumes"
        );

        // What the separate store prevents: one store for both loses the
        // target's session after 32 other servers.
        let shared = client_config(None, true).unwrap();
        connect(&shared, addr, "target.test").await;
        for i in 0..40 {
            connect(&shared, addr, &format!("proxy{i}.test")).await;
        }
        assert_eq!(
            connect(&shared, addr, "target.test").await,
            HandshakeKind::Full
        );
    }

    #[tokio::test]
    async fn the_default_configs_are_built_once_with_separate_stores() {
        let (t1, p1) = default_client_configs().unwrap();
        let (t2, p2) = default_client_configs().unwrap();
        assert!(Arc::ptr_eq(&t1, &t2) && Arc::ptr_eq(&p1, &p2));
        assert!(!Arc::ptr_eq(&t1, &p1));
    }
}
