//! Geography written back to pharox (`postgres.write_geo`), read back by
//! pharox's own model, and leased by with pharox's own `ProxyFilters`.
//!
//! The exits are located by our `GeoDb` in databases built here (Debian's
//! MaxMind writer, checked with `mmdblookup`), from results as a judge check
//! yields them (`exit.ip` set): this proves the geolocation, the mismatch
//! policy, the write-back and pharox's leasing end to end without needing
//! the judge itself.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use pharox_exporter::{
    CheckResult, Exit, GeoDb, GeoPolicy, PharoxDbSource, Proxy, ProxyStatus, Reason, ResultWriter,
};
use pharox_testkit::mmdb::{mmdblookup, write_mmdb};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::pg::*;

const POOL: &str = "geo";

fn geo_dbs(dir: &Path) -> GeoDb {
    let city = dir.join("City.mmdb");
    write_mmdb(
        &city,
        "GeoLite2-City",
        &[
            (
                "127.0.0.2/32",
                r#"{"country":{"iso_code":"DE"},"city":{"names":{"en":"Berlin"}},"location":{"latitude":52.52,"longitude":13.405}}"#,
            ),
            (
                "127.0.0.3/32",
                r#"{"country":{"iso_code":"US"},"city":{"names":{"en":"Dallas"}},"location":{"latitude":32.78,"longitude":-96.8}}"#,
            ),
            (
                "127.0.0.4/32",
                r#"{"country":{"iso_code":"FR"},"city":{"names":{"en":"Paris"}},"location":{"latitude":48.85,"longitude":2.35}}"#,
            ),
        ],
    );
    let asn = dir.join("ASN.mmdb");
    write_mmdb(
        &asn,
        "GeoLite2-ASN",
        &[
            (
                "127.0.0.2/32",
                r#"{"autonomous_system_number":64500,"autonomous_system_organization":"Example Transit"}"#,
            ),
            (
                "127.0.0.3/32",
                r#"{"autonomous_system_number":64501,"autonomous_system_organization":"Example Hosting"}"#,
            ),
        ],
    );
    assert_eq!(
        mmdblookup(&city, "127.0.0.3", &["country", "iso_code"]).as_deref(),
        Some("US")
    );
    assert_eq!(
        mmdblookup(&asn, "127.0.0.2", &["autonomous_system_organization"]).as_deref(),
        Some("Example Transit")
    );
    assert_eq!(mmdblookup(&asn, "127.0.0.4", &[]), None);
    GeoDb::open(&[city, asn]).unwrap()
}

/// An ACTIVE result whose judge saw `exit` (or no judge: `None`).
fn judged(proxy: &Proxy, exit: Option<&str>) -> CheckResult {
    let mut r = result(&proxy.id, ProxyStatus::Active, 20, Utc::now(), None);
    r.exit = exit.map(|ip| Exit {
        ip: Some(ip.parse().unwrap()),
        ..Exit::default()
    });
    r
}

fn lease_by(pg: &PgServer, filters: Value) -> Vec<String> {
    let out = pharox(
        &["lease_by", &pg.sqlalchemy_url("db")],
        &json!({"pool": POOL, "consumer": "geo-test", "filters": filters}),
    );
    serde_json::from_value(out["leased"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pharox_reads_back_the_geography_we_wrote_and_leases_by_it() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let pool = uuid_for(1, 1);
    let ids: Vec<String> = (1..=4).map(|i| uuid_for(2, i)).collect();
    let seeded = |i: usize, country: Option<&str>, isp: Option<&str>, asn: Option<i32>| {
        json!({"id": ids[i], "pool_id": pool, "host": "127.0.0.1", "port": 9 + i,
               "protocol": "http", "status": "active", "country": country,
               "isp": isp, "asn": asn, "max_concurrency": 1})
    };
    pharox(
        &["seed", &pg.sqlalchemy_url("db")],
        &json!({"pools": [{"id": pool, "name": POOL}], "proxies": [
            // Sold as DE (pharox stores it upper case), exits in Berlin.
            seeded(0, Some("de"), None, None),
            // Sold as DE, exits in Dallas.
            seeded(1, Some("DE"), None, None),
            // Nothing declared, exits in Paris (no ASN known): the ISP an
            // operator entered stays.
            seeded(2, None, Some("Seeded ISP"), Some(65000)),
            // Sold as DE, checked without a judge: nothing observed.
            seeded(3, Some("DE"), None, None),
        ]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let geo = geo_dbs(dir.path());
    let exits = [
        Some("127.0.0.2"),
        Some("127.0.0.3"),
        Some("127.0.0.4"),
        None,
    ];

    let mut cfg = config(&pg.url("db"));
    cfg.write_geo = true;
    let source = PharoxDbSource::new(cfg.clone()).unwrap();
    let sink = ResultWriter::spawn(cfg).unwrap();

    // Sweep 1: the declared countries come from pharox's proxy.country.
    let proxies = source.load().await.unwrap();
    assert_eq!(proxies.len(), 4);
    let declared: Vec<Option<&str>> = proxies.iter().map(|p| p.country.as_deref()).collect();
    assert_eq!(declared, vec![Some("DE"), Some("DE"), None, Some("DE")]);
    let mut reasons = Vec::new();
    for (p, exit) in proxies.iter().zip(exits) {
        let mut r = judged(p, exit);
        geo.enrich(&mut r, p, GeoPolicy::Fail, Duration::from_secs(5));
        reasons.push(r.reason);
        sink.submit(p, &r);
    }
    assert_eq!(reasons, vec![None, Some(Reason::GeoMismatch), None, None]);
    assert_eq!(
        sink.flush(Instant::now() + Duration::from_secs(30)).await,
        0
    );
    assert_eq!(sink.stats().geo_updated, 3, "three proxies had news");

    let read = pharox(
        &["geo", &pg.sqlalchemy_url("db")],
        &json!({"proxy_ids": ids}),
    );
    assert_eq!(
        read[&ids[0]],
        json!({"country": "DE", "city": "Berlin", "latitude": 52.52, "longitude": 13.405,
               "isp": "Example Transit", "asn": 64500})
    );
    assert_eq!(
        read[&ids[1]],
        json!({"country": "US", "city": "Dallas", "latitude": 32.78, "longitude": -96.8,
               "isp": "Example Hosting", "asn": 64501})
    );
    assert_eq!(
        read[&ids[2]],
        json!({"country": "FR", "city": "Paris", "latitude": 48.85, "longitude": 2.35,
               "isp": "Seeded ISP", "asn": 65000})
    );
    assert_eq!(
        read[&ids[3]],
        json!({"country": "DE", "city": null, "latitude": null, "longitude": null,
               "isp": null, "asn": null}),
        "not observed: left as pharox had it"
    );
    let status = pg.psql("db", "SELECT status FROM proxy ORDER BY id");
    assert_eq!(status, "active\ninactive\nactive\nactive");

    // pharox leases by what we wrote. The mismatched proxy failed its check,
    // so nobody leases it as German, nor (yet) as American; the unobserved
    // one is still leased as what it was sold as.
    assert_eq!(
        lease_by(&pg, json!({"country": "DE"})),
        vec![ids[0].clone(), ids[3].clone()]
    );
    assert_eq!(
        lease_by(&pg, json!({"country": "US"})),
        Vec::<String>::new()
    );
    assert_eq!(lease_by(&pg, json!({"asn": 64500})), vec![ids[0].clone()]);
    assert_eq!(
        lease_by(
            &pg,
            json!({"latitude": 48.8566, "longitude": 2.3522, "radius_km": 50.0})
        ),
        vec![ids[2].clone()]
    );
    assert_eq!(
        lease_by(&pg, json!({"city": "Paris"})),
        vec![ids[2].clone()]
    );

    // Sweep 2: pharox now says US for the Dallas exit, so it matches and is
    // up again; nothing changed geographically, so no row is rewritten.
    let proxies = source.load().await.unwrap();
    assert_eq!(proxies[1].country.as_deref(), Some("US"));
    for (p, exit) in proxies.iter().zip(exits) {
        let mut r = judged(p, exit);
        geo.enrich(&mut r, p, GeoPolicy::Fail, Duration::from_secs(5));
        assert_eq!(r.reason, None, "{}", p.id);
        sink.submit(p, &r);
    }
    assert_eq!(
        sink.flush(Instant::now() + Duration::from_secs(30)).await,
        0
    );
    assert_eq!(
        sink.stats().geo_updated,
        3,
        "unchanged rows are not rewritten"
    );
    assert_eq!(
        lease_by(&pg, json!({"country": "US"})),
        vec![ids[1].clone()]
    );
    sink.close(Instant::now() + Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_write_geo_pharox_keeps_its_geography() {
    let pg = PgServer::start();
    pharox_db(&pg, "db");
    let pool = uuid_for(1, 1);
    let id = uuid_for(2, 1);
    pharox(
        &["seed", &pg.sqlalchemy_url("db")],
        &json!({"pools": [{"id": pool, "name": POOL}], "proxies": [
            {"id": id, "pool_id": pool, "host": "127.0.0.1", "port": 9,
             "protocol": "http", "status": "inactive", "country": "DE"}]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let geo = geo_dbs(dir.path());
    let cfg = config(&pg.url("db"));
    assert!(!cfg.write_geo, "opt-in");
    let sink = ResultWriter::spawn(cfg).unwrap();
    let p = proxy(&id, pharox_exporter::ProxyProtocol::Http);
    let mut r = judged(&p, Some("127.0.0.3"));
    geo.enrich(&mut r, &p, GeoPolicy::Report, Duration::from_secs(5));
    assert!(r.exit.as_ref().is_some_and(|e| e.geo.is_some()));
    sink.submit(&p, &r);
    assert_eq!(
        sink.flush(Instant::now() + Duration::from_secs(30)).await,
        0
    );
    let row = pg.psql("db", "SELECT status, country, city, asn FROM proxy");
    assert_eq!(row, "active|DE||");
    assert_eq!(sink.stats().geo_updated, 0);
    sink.close(Instant::now() + Duration::from_secs(10)).await;
}
