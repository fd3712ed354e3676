//! TLS client configuration, built once and shared by every check.
//!
//! A `rustls::ClientConfig` holds the root store and the session-resumption
//! cache; building one per check would reload the system roots and throw the
//! resumption cache away, so the config layer builds one per distinct
//! (CA file, insecure) pair and every check clones the `Arc`.

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

/// `client_config(None, false)`, built once per process: loading the system
/// roots reads files, so callers that just want defaults share one.
pub(crate) fn default_client_config() -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    static DEFAULT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = DEFAULT.get() {
        return Ok(c.clone());
    }
    let built = client_config(None, false)?;
    // A concurrent caller may have won the race; either config is equivalent.
    Ok(DEFAULT.get_or_init(|| built).clone())
}

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
