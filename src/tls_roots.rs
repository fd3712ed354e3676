//! The trust anchors of every TLS client we build (the probe's, towards
//! targets and HTTPS proxies, and the PostgreSQL connection's): one builder,
//! so both follow the same rules.
//!
//! Anchors are Mozilla's roots (bundled, so a scratch container still
//! verifies), plus the system's roots (unparsable or missing ones are skipped:
//! containers often have none), plus every certificate of an optional CA file.
//! A CA file the user named but that yields no usable certificate is an
//! error: silently trusting only the public roots would turn a typo into
//! "certificate verify failed" far from its cause.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// Why the CA file could not be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The CA file could not be read.
    #[error("cannot read CA file {path}: {source}")]
    Read {
        /// The file named in the configuration.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The CA file is not valid PEM.
    #[error("cannot parse CA file {path} as PEM: {source}")]
    Parse {
        /// The file named in the configuration.
        path: PathBuf,
        /// The underlying parse error.
        source: std::io::Error,
    },
    /// The CA file holds no certificate at all.
    #[error("CA file {path} contains no PEM certificate")]
    Empty {
        /// The file named in the configuration.
        path: PathBuf,
    },
    /// A certificate of the CA file was rejected as a trust anchor.
    #[error("CA file {path} holds an unusable certificate: {source}")]
    BadCert {
        /// The file named in the configuration.
        path: PathBuf,
        /// Why rustls refused it.
        source: rustls::Error,
    },
}

/// Webpki roots + system roots + every certificate of `ca_file`.
pub(crate) fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, CaFileError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let native = rustls_native_certs::load_native_certs();
    // Unparsable system roots are skipped: they must not make the exporter unusable.
    let _ = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in ca_certificates(path)? {
            roots.add(cert).map_err(|source| CaFileError::BadCert {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(roots)
}

fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let pem = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| CaFileError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(CaFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        for path in [&empty, &junk] {
            let err = root_store(Some(path)).unwrap_err();
            assert!(matches!(err, CaFileError::Empty { .. }), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()));
        }
        let missing = dir.path().join("missing.pem");
        let err = root_store(Some(&missing)).unwrap_err();
        assert!(matches!(err, CaFileError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn without_a_ca_file_the_public_roots_are_there() {
        let roots = root_store(None).unwrap();
        assert!(roots.len() >= webpki_roots::TLS_SERVER_ROOTS.len() / 2);
    }
}
