//! A throwaway certificate authority per server: a CA and one leaf for
//! `localhost` and 127.0.0.1, written as PEM files, plus rustls configs that
//! trust exactly those CAs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// PEM files of a test CA and a leaf it signed.
pub struct TestPki {
    /// The CA certificate: what clients must trust.
    pub ca_pem: PathBuf,
    /// The leaf certificate (for `localhost` and 127.0.0.1).
    pub cert_pem: PathBuf,
    /// The leaf's private key (PKCS#8).
    pub key_pem: PathBuf,
    /// Leaf certificate DER, for in-process servers.
    pub cert_der: Vec<u8>,
    /// Leaf key DER (PKCS#8), for in-process servers.
    pub key_der: Vec<u8>,
}

impl TestPki {
    /// Generate a CA and a leaf into `dir` (`ca.pem`, `cert.pem`, `key.pem`).
    pub fn generate(dir: &Path) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "pharox-exporter test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("sign leaf");

        let ca_pem = dir.join("ca.pem");
        let cert_pem = dir.join("cert.pem");
        let key_pem = dir.join("key.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).expect("write ca.pem");
        std::fs::write(&cert_pem, leaf_cert.pem()).expect("write cert.pem");
        std::fs::write(&key_pem, leaf_key.serialize_pem()).expect("write key.pem");
        TestPki {
            ca_pem,
            cert_pem,
            key_pem,
            cert_der: leaf_cert.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        }
    }

    /// A rustls server config presenting the leaf.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![rustls::pki_types::CertificateDer::from(
            self.cert_der.clone(),
        )];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert");
        Arc::new(cfg)
    }
}

/// A rustls client config trusting exactly the CAs in the given PEM files
/// (no system roots: nothing in the tests talks to the internet).
pub fn client_tls(ca_pems: &[&Path]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for p in ca_pems {
        let pem = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.expect("parse CA PEM")).expect("add CA");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}
