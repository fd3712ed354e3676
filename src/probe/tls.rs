//! Placeholder until the probe branch lands (replaced by the real TLS module).

use std::path::Path;
use std::sync::Arc;

/// TLS configuration errors.
#[derive(Debug, thiserror::Error)]
#[error("tls: {0}")]
pub struct TlsConfigError(String);

/// Build the shared client config.
pub fn client_config(
    _ca: Option<&Path>,
    _insecure: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
