//! `tls: require` against a server that only accepts TLS, verified against
//! a CA given in `tls_ca_file`; an untrusted server certificate is refused.

use crate::support::pg::*;
use pharox_exporter::PharoxDbSource;
use pharox_exporter::{DbConfig, DbTls};
use pharox_testkit::pki::TestPki;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_require_verifies_the_server() {
    let mut pg = PgServer::start();
    pharox_db(&pg, "db");
    let ids = seed_sql(&pg, "db", 3);
    let pki = TestPki::generate();
    tokio::task::block_in_place(|| pg.enable_tls(&pki.cert_pem, &pki.key_pem));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();

    // Plain TCP is refused by pg_hba (hostssl only).
    let plain = PharoxDbSource::new(config(&pg.url("db"))).unwrap();
    let err = plain.load().await.unwrap_err().to_string();
    assert!(
        err.contains("no pg_hba.conf entry") || err.contains("connect"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");

    // TLS with our CA: works.
    let mut cfg = config(&pg.url("db"));
    cfg.tls = DbTls::Require;
    cfg.tls_ca_file = Some(ca.clone());
    let loaded = PharoxDbSource::connect(cfg)
        .await
        .unwrap()
        .load()
        .await
        .unwrap();
    assert_eq!(loaded.len(), ids.len());

    // sslmode=require in the URL selects TLS too.
    let mut cfg = DbConfig::from_url(&format!("{}?sslmode=require", pg.url("db"))).unwrap();
    cfg.tls_ca_file = Some(ca);
    assert_eq!(cfg.tls, DbTls::Require);
    assert_eq!(
        PharoxDbSource::new(cfg)
            .unwrap()
            .load()
            .await
            .unwrap()
            .len(),
        3
    );

    // TLS without trusting the CA: the certificate is rejected.
    let mut cfg = config(&pg.url("db"));
    cfg.tls = DbTls::Require;
    let err = PharoxDbSource::new(cfg)
        .unwrap()
        .load()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}
