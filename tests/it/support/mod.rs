//! Helpers only the integration tests need; the in-process fakes are in
//! `pharox-testkit`.
//!
//! - [`process`]: per-server temp dirs, [`process::ChildGuard`] (kills the
//!   process group on Drop), bounded waits, log tails.
//! - [`proxies`]: real proxies from Debian packages (squid, tinyproxy, dante,
//!   microsocks, stunnel, ssh -D) on 127.0.0.1:<free port>.
//! - [`exporter`]: the `pharox-exporter` binary as a process, and the
//!   inventories and flags tests start it with.
//! - [`exposition`]: the text exposition format, parsed.
//! - [`pg`]: a throwaway PostgreSQL server, and pharox in a venv.
//! - [`bundle`]: paths and contracts of the monitoring bundle.
//!
//! Every server listens on loopback only and dies with its guard, so tests
//! stay parallel-safe.

pub(crate) mod bundle;
pub(crate) mod dns;
pub(crate) mod exporter;
pub(crate) mod exposition;
pub(crate) mod pg;
pub(crate) mod process;
pub(crate) mod proxies;

use std::sync::Arc;
use std::time::Duration;

use pharox_exporter::CheckOptions;

/// Check options with pharox's defaults ([`CheckOptions::new`]: expect 200,
/// one attempt), aimed at `target_url`, with the given rustls configs for the
/// target and for HTTPS proxies.
///
/// The timeout is generous and the slow threshold equals it, so a loaded CI
/// machine never turns ACTIVE into SLOW: tests assert behaviour, not speed.
pub(crate) fn check_options(
    target_url: &str,
    target_tls: Arc<rustls::ClientConfig>,
    proxy_tls: Arc<rustls::ClientConfig>,
) -> CheckOptions {
    let url = url::Url::parse(target_url).expect("target url");
    let mut opts = CheckOptions::new(url).expect("check options");
    opts.timeout = Duration::from_secs(10);
    opts.slow_threshold = opts.timeout;
    opts.target_tls = target_tls;
    opts.proxy_tls = proxy_tls;
    opts
}

/// The probe's own TLS client config trusting `ca_pem` (plus its default
/// roots), as an operator would configure it with `--ca-file`.
pub(crate) fn probe_tls(ca_pem: &std::path::Path) -> Arc<rustls::ClientConfig> {
    pharox_exporter::client_config(Some(ca_pem), false).expect("probe TLS config")
}

/// Give SIGTERM, SIGINT and SIGHUP back their default action in this test
/// process. An exporter run in-process installs handlers for them that
/// outlive it; in the one test binary that would leave the rest of the suite
/// deaf to Ctrl-C and to a CI timeout's SIGTERM. (It does not lower the
/// file-descriptor limit the run raised: only children started later see it.)
pub(crate) fn restore_default_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: SIG_DFL is always a valid disposition; no handler code of
        // ours runs, and tokio's registry only stops receiving these signals.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// The revision a binary built from this tree must report (`--version`,
/// `pharox_exporter_build_info{revision}`): `$PHAROX_REVISION` as given at
/// build time, else the checkout's `git rev-parse HEAD`, else `unknown` (a
/// source tarball), as build.rs decides.
pub(crate) fn expected_revision() -> String {
    if let Some(r) = option_env!("PHAROX_REVISION").filter(|r| !r.trim().is_empty()) {
        return r.trim().to_string();
    }
    std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
