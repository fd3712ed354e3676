//! Against real MaxMind DB files written by Debian's MaxMind writer
//! (`pharox_testkit::mmdb`), each checked with `mmdblookup` first.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pharox_testkit::mmdb::{mmdblookup, write_mmdb};

use super::*;
use crate::model::{Exit, Phases, ProxyProtocol};

const BERLIN: &str = r#"{"country":{"iso_code":"DE"},"city":{"names":{"en":"Berlin","de":"Berlin"}},"location":{"latitude":52.52,"longitude":13.405}}"#;
const DALLAS: &str = r#"{"country":{"iso_code":"US"},"city":{"names":{"en":"Dallas"}},"location":{"latitude":32.78,"longitude":-96.8}}"#;
const PARIS: &str = r#"{"country":{"iso_code":"FR"},"city":{"names":{"en":"Paris"}},"location":{"latitude":48.85,"longitude":2.35}}"#;
const ASN_A: &str =
    r#"{"autonomous_system_number":64500,"autonomous_system_organization":"Example Transit"}"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Write `networks` to `dir/name` through a temporary file renamed into
/// place, as geoipupdate does.
fn install(dir: &Path, name: &str, db_type: &str, networks: &[(&str, &str)]) -> PathBuf {
    let tmp = dir.join(format!("{name}.tmp"));
    write_mmdb(&tmp, db_type, networks);
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn city(dir: &Path) -> PathBuf {
    let path = install(
        dir,
        "City.mmdb",
        "GeoLite2-City",
        &[("127.0.0.2/32", BERLIN), ("127.0.0.3/32", DALLAS)],
    );
    // The file says what the test means, by the reference reader.
    assert_eq!(
        mmdblookup(&path, "127.0.0.2", &["country", "iso_code"]).as_deref(),
        Some("DE")
    );
    assert_eq!(
        mmdblookup(&path, "127.0.0.3", &["city", "names", "en"]).as_deref(),
        Some("Dallas")
    );
    assert_eq!(mmdblookup(&path, "127.0.0.9", &[]), None);
    path
}

fn berlin() -> Geo {
    Geo {
        country: Some("DE".into()),
        city: Some("Berlin".into()),
        latitude: Some(52.52),
        longitude: Some(13.405),
        asn: None,
        org: None,
    }
}

#[test]
fn a_city_database_answers_country_city_and_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let db = GeoDb::open(&[city(dir.path())]).unwrap();
    assert_eq!(db.lookup(ip("127.0.0.2")), Some(berlin()));
    assert_eq!(
        db.lookup(ip("127.0.0.3")).and_then(|g| g.country),
        Some("US".into())
    );
    // IPv4 in an IPv6 tree, and an address the file does not hold.
    assert_eq!(db.lookup(ip("127.0.0.9")), None);
    assert_eq!(db.lookup(ip("::1")), None);
}

#[test]
fn city_and_asn_files_combine_field_by_field_first_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let city = city(dir.path());
    let asn = install(
        dir.path(),
        "ASN.mmdb",
        "GeoLite2-ASN",
        &[
            ("127.0.0.0/24", ASN_A),
            // An ISP-style record: the organisation comes from `isp`.
            (
                "127.0.1.0/24",
                r#"{"autonomous_system_number":64501,"isp":"Example ISP"}"#,
            ),
        ],
    );
    assert_eq!(
        mmdblookup(&asn, "127.0.0.3", &["autonomous_system_number"]).as_deref(),
        Some("64500")
    );
    let other_city = install(
        dir.path(),
        "Other.mmdb",
        "DBIP-City-Lite",
        &[("127.0.0.2/32", PARIS), ("127.0.1.5/32", PARIS)],
    );
    let db = GeoDb::open(&[city, asn, other_city]).unwrap();
    let mut want = berlin();
    want.asn = Some(64500);
    want.org = Some("Example Transit".into());
    // Berlin from the first file; Paris (third) only fills what is missing.
    assert_eq!(db.lookup(ip("127.0.0.2")), Some(want));
    assert_eq!(
        db.lookup(ip("127.0.1.5")),
        Some(Geo {
            country: Some("FR".into()),
            city: Some("Paris".into()),
            latitude: Some(48.85),
            longitude: Some(2.35),
            asn: Some(64501),
            org: Some("Example ISP".into()),
        })
    );
    let only_asn = db.lookup(ip("127.0.0.77")).unwrap();
    assert_eq!(
        (only_asn.country, only_asn.asn),
        (None, Some(64500)),
        "an address only the ASN file knows"
    );
}

#[test]
fn a_missing_or_broken_file_is_refused_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.mmdb");
    let err = GeoDb::open(std::slice::from_ref(&missing))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "geoip database {}: cannot read",
            missing.display()
        )),
        "{err}"
    );
    let junk = dir.path().join("junk.mmdb");
    std::fs::write(&junk, b"not a database at all").unwrap();
    let err = GeoDb::open(std::slice::from_ref(&junk))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "geoip database {}: not a MaxMind DB file",
            junk.display()
        )),
        "{err}"
    );
}

#[test]
fn a_file_renamed_into_place_is_reread_and_a_broken_one_keeps_the_old_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = city(dir.path());
    let db = GeoDb::open(std::slice::from_ref(&path)).unwrap();
    assert_eq!(db.refresh(), 0, "unchanged: nothing re-read");
    assert_eq!(db.lookup(ip("127.0.0.2")), Some(berlin()));

    // geoipupdate: a new file renamed over the old one.
    install(
        dir.path(),
        "City.mmdb",
        "GeoLite2-City",
        &[("127.0.0.2/32", PARIS)],
    );
    assert_eq!(db.refresh(), 1);
    assert_eq!(
        db.lookup(ip("127.0.0.2")).and_then(|g| g.city),
        Some("Paris".into())
    );
    assert_eq!(db.lookup(ip("127.0.0.3")), None, "Dallas is gone");

    // A broken download renamed into place: the Paris answers stay.
    let tmp = dir.path().join("broken.tmp");
    std::fs::write(&tmp, b"\xab\xcd\xefMaxMind.com garbage").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(db.refresh(), 0);
    assert_eq!(
        db.lookup(ip("127.0.0.2")).and_then(|g| g.city),
        Some("Paris".into())
    );
    // A file cut short (a download in progress copied in place).
    let good = dir.path().join("good.tmp");
    write_mmdb(&good, "GeoLite2-City", &[("127.0.0.2/32", DALLAS)]);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&tmp, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(db.refresh(), 0);
    assert_eq!(db.refresh(), 0, "a broken version is reported once");
    let s = db.stats().snapshot();
    assert_eq!((s.reloads, s.reload_errors), (1, 2));
    assert_eq!(
        db.lookup(ip("127.0.0.2")).and_then(|g| g.city),
        Some("Paris".into())
    );
    // Gone altogether: still the old answers.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(db.refresh(), 0);
    assert_eq!(db.stats().snapshot().reload_errors, 3);
    // Fixed: the next refresh takes it.
    std::fs::rename(&good, &path).unwrap();
    assert_eq!(db.refresh(), 1);
    assert_eq!(
        db.lookup(ip("127.0.0.2")).and_then(|g| g.city),
        Some("Dallas".into())
    );
}

fn up_result(exit_ip: Option<&str>) -> CheckResult {
    CheckResult {
        proxy_id: "p".into(),
        status: ProxyStatus::Active,
        latency_ms: 12,
        elapsed_ms: 12,
        attempts: 1,
        status_code: Some(200),
        reason: None,
        phase: None,
        error: None,
        checked_at: chrono::Utc::now(),
        phases: Phases::default(),
        exit: exit_ip.map(|i| Exit {
            ip: Some(ip(i)),
            ..Exit::default()
        }),
    }
}

fn proxy(country: Option<&str>) -> Proxy {
    let mut p = Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", 1080);
    p.country = country.map(Into::into);
    p
}

const FIVE_S: Duration = Duration::from_secs(5);

#[test]
fn a_mismatch_fails_an_up_check_under_policy_fail() {
    let dir = tempfile::tempdir().unwrap();
    let db = GeoDb::open(&[city(dir.path())]).unwrap();
    let mut r = up_result(Some("127.0.0.3"));
    db.enrich(&mut r, &proxy(Some("DE")), GeoPolicy::Fail, FIVE_S);
    assert_eq!(r.status, ProxyStatus::Inactive);
    assert_eq!(r.reason, Some(Reason::GeoMismatch));
    assert_eq!(r.phase, Some(Phase::Body));
    assert_eq!(r.error.as_deref(), Some("exit country US, declared DE"));
    assert_eq!(r.latency_ms, 5000);
    assert_eq!(
        r.status_code,
        Some(200),
        "the answer we got stays on record"
    );
    let exit = r.exit.unwrap();
    assert!(exit.geo_mismatch);
    assert_eq!(exit.geo.and_then(|g| g.city), Some("Dallas".into()));
    let s = db.stats().snapshot();
    assert_eq!(
        (
            s.lookups,
            s.mismatches,
            s.mismatches_failed,
            s.unknown_country
        ),
        (1, 1, 1, 0)
    );
}

#[test]
fn a_mismatch_under_policy_report_is_marked_but_keeps_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = GeoDb::open(&[city(dir.path())]).unwrap();
    let mut r = up_result(Some("127.0.0.3"));
    let before = r.clone();
    db.enrich(&mut r, &proxy(Some("DE")), GeoPolicy::Report, FIVE_S);
    assert_eq!(
        (r.status, r.reason, r.phase, &r.error, r.latency_ms),
        (ProxyStatus::Active, None, None, &None, 12)
    );
    let exit = r.exit.as_ref().unwrap();
    assert!(exit.geo_mismatch);
    assert_eq!(
        exit.geo.as_ref().and_then(|g| g.country.clone()),
        Some("US".into())
    );
    assert_ne!(r, before);
    let s = db.stats().snapshot();
    assert_eq!((s.mismatches, s.mismatches_failed), (1, 0));
}

#[test]
fn matching_undeclared_unknown_and_exitless_results_keep_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = GeoDb::open(&[city(dir.path())]).unwrap();

    // Declared and matching (case aside): geo set, no mismatch.
    let mut r = up_result(Some("127.0.0.2"));
    db.enrich(&mut r, &proxy(Some("de")), GeoPolicy::Fail, FIVE_S);
    assert_eq!(r.status, ProxyStatus::Active);
    assert_eq!(r.exit.as_ref().unwrap().geo, Some(berlin()));
    assert!(!r.exit.as_ref().unwrap().geo_mismatch);

    // Nothing declared: geo set, nothing to compare.
    let mut r = up_result(Some("127.0.0.3"));
    db.enrich(&mut r, &proxy(None), GeoPolicy::Fail, FIVE_S);
    assert_eq!(r.status, ProxyStatus::Active);
    assert!(!r.exit.as_ref().unwrap().geo_mismatch);

    // The database does not know the exit: unknown, never a mismatch.
    let mut r = up_result(Some("127.0.0.9"));
    db.enrich(&mut r, &proxy(Some("DE")), GeoPolicy::Fail, FIVE_S);
    assert_eq!(r.status, ProxyStatus::Active);
    let exit = r.exit.as_ref().unwrap();
    assert_eq!((exit.geo.clone(), exit.geo_mismatch), (None, false));

    // No exit (not a judge target), or an exit without an IP: untouched.
    let mut r = up_result(None);
    let before = r.clone();
    db.enrich(&mut r, &proxy(Some("DE")), GeoPolicy::Fail, FIVE_S);
    assert_eq!(r, before);
    let mut r = up_result(None);
    r.exit = Some(Exit::default());
    let before = r.clone();
    db.enrich(&mut r, &proxy(Some("DE")), GeoPolicy::Fail, FIVE_S);
    assert_eq!(r, before);

    let s = db.stats().snapshot();
    assert_eq!((s.lookups, s.unknown_country, s.mismatches), (3, 1, 0));
}

#[test]
fn a_failed_check_keeps_its_own_reason_and_is_only_marked() {
    let dir = tempfile::tempdir().unwrap();
    let db = GeoDb::open(&[city(dir.path())]).unwrap();
    let mut r = up_result(Some("127.0.0.3"));
    r.status = ProxyStatus::Inactive;
    r.reason = Some(Reason::BodyMismatch);
    r.phase = Some(Phase::Body);
    r.error = Some("body did not match".into());
    r.latency_ms = 5000;
    db.enrich(&mut r, &proxy(Some("DE")), GeoPolicy::Fail, FIVE_S);
    assert_eq!(r.reason, Some(Reason::BodyMismatch));
    assert_eq!(r.error.as_deref(), Some("body did not match"));
    assert!(r.exit.as_ref().unwrap().geo_mismatch);
    assert_eq!(db.stats().snapshot().mismatches_failed, 0);
}
