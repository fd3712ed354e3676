//! Throwaway PKIs for TLS fakes and real TLS servers: a CA and one leaf
//! certificate for `localhost` and `127.0.0.1`, good for server and client
//! authentication alike.
//!
//! [`pki`] is one PKI shared by the whole test process (the in-process fakes
//! present it); [`TestPki::generate`] makes a fresh one, for tests that need
//! a CA nobody else trusts or PEM files for a server started as a process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA and a leaf it signed for `localhost` and `127.0.0.1`.
pub struct TestPki {
    /// The CA certificate, PEM: what clients must trust.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: CertificateDer<'static>,
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8), PEM.
    pub key_pem: String,
    /// Server TLS config presenting the leaf (ALPN http/1.1).
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Where [`TestPki::write_pem`] put the files.
#[derive(Clone, Debug)]
pub struct PemFiles {
    /// `ca.pem`: the CA certificate.
    pub ca: PathBuf,
    /// `cert.pem`: the leaf certificate.
    pub cert: PathBuf,
    /// `key.pem`: the leaf's private key.
    pub key: PathBuf,
}

impl TestPki {
    /// A fresh CA and leaf.
    pub fn generate() -> TestPki {
        build().expect("test PKI generation")
    }

    /// An acceptor presenting the leaf.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server_config.clone())
    }

    /// A client config trusting only this CA (no system roots: nothing in
    /// the tests talks to the internet), offering ALPN http/1.1.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("test CA is a valid trust anchor");
        let mut cfg = client_builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// Write `ca.pem`, `cert.pem` and `key.pem` into `dir`, for servers
    /// that read their certificate from files.
    pub fn write_pem(&self, dir: &Path) -> PemFiles {
        let files = PemFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        for (path, pem) in [
            (&files.ca, &self.ca_pem),
            (&files.cert, &self.cert_pem),
            (&files.key, &self.key_pem),
        ] {
            std::fs::write(path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        files
    }
}

/// The process-wide test PKI, generated on first use.
pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(TestPki::generate)
}

/// A client config trusting only the process-wide CA: what the probe builds
/// from a CA file, minus the file.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    static CLIENT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CLIENT.get_or_init(|| pki().client_config()).clone()
}

/// An acceptor presenting the process-wide leaf.
pub fn acceptor() -> tokio_rustls::TlsAcceptor {
    pki().acceptor()
}

/// A client config trusting exactly the CAs in the given PEM files (no
/// system roots), no ALPN.
pub fn client_tls(ca_pems: &[&Path]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for p in ca_pems {
        let pem = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.expect("parse CA PEM")).expect("add CA");
        }
    }
    Arc::new(
        client_builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn client_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("default TLS versions")
}

fn build() -> Result<TestPki, Box<dyn std::error::Error>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pharox-exporter test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()])?;
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Client auth too: the same leaf serves as a client certificate in the
    // tests of servers that require one.
    leaf_params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TestPki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
        server_config: Arc::new(server),
    })
}
