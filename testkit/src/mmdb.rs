//! Geolocation databases for tests: MaxMind DB files (`.mmdb`) written by
//! Debian's `libmaxmind-db-writer-perl` from a JSON spec, and read back
//! with Debian's `mmdblookup` (package `mmdb-bin`), so a test can check the
//! file says what it meant before the exporter reads it. Both packages are
//! installed by `scripts/install-test-deps.sh`.
//!
//! Records use the GeoIP2 keys: `{"country": {"iso_code": "DE"}, "city":
//! {"names": {"en": "Berlin"}}, "location": {"latitude": 52.5,
//! "longitude": 13.4}}` for City/Country databases and
//! `{"autonomous_system_number": 64500, "autonomous_system_organization":
//! "Example"}` for ASN ones. Loopback networks are kept (the writer drops
//! reserved networks unless told not to).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const WRITER: &str = include_str!("mmdb_writer.pl");

/// Write a MaxMind DB of type `database_type` (e.g. `GeoLite2-City`) to
/// `path`, one record per `(network, record JSON)`. Panics with the
/// writer's message on failure (a missing package says which to install).
pub fn write_mmdb(path: &Path, database_type: &str, networks: &[(&str, &str)]) {
    let nets: Vec<String> = networks
        .iter()
        .map(|(net, rec)| format!("[\"{net}\",{rec}]"))
        .collect();
    let spec = format!(
        "{{\"database_type\":\"{database_type}\",\"networks\":[{}]}}",
        nets.join(",")
    );
    let dir = tempfile::tempdir().expect("temp dir for the writer script");
    let script = dir.path().join("mmdb_writer.pl");
    std::fs::write(&script, WRITER).expect("write the writer script");
    let mut child = Command::new("perl")
        .arg(&script)
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("perl (install scripts/install-test-deps.sh's libmaxmind-db-writer-perl)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(spec.as_bytes())
        .expect("write the spec");
    let out = child.wait_with_output().expect("perl finished");
    assert!(
        out.status.success(),
        "mmdb writer failed (is libmaxmind-db-writer-perl installed? see scripts/install-test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value at `path` (e.g. `["country", "iso_code"]`) for `ip` in the
/// database, as `mmdblookup` prints it without type or quotes (`DE`,
/// `52.520000`, `64500`); `None` when the address has no entry or no value
/// there.
pub fn mmdblookup(db: &Path, ip: &str, path: &[&str]) -> Option<String> {
    let out = Command::new("mmdblookup")
        .arg("--file")
        .arg(db)
        .arg("--ip")
        .arg(ip)
        .args(path)
        .output()
        .expect("mmdblookup (package mmdb-bin; see scripts/install-test-deps.sh)");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    // `"DE" <utf8_string>` or `64500 <uint32>`.
    let value = line.rsplit_once(" <").map_or(line, |(v, _)| v);
    Some(value.trim_matches('"').to_string())
}
