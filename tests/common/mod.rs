//! Shared helpers for integration tests: `mod common;` in a test file.
//!
//! - [`process`]: free loopback ports, per-server temp dirs, [`process::ChildGuard`]
//!   (kills the process group on Drop), bounded waits, log tails.
//! - [`pki`]: a throwaway CA + `localhost` leaf (rcgen), rustls configs.
//! - [`targets`]: in-process HTTP / HTTPS targets (`/`, `/status/<code>`, `/ip`).
//! - [`proxies`]: real proxies from Debian packages (squid, tinyproxy, dante,
//!   microsocks, stunnel, ssh -D) on 127.0.0.1:<free port>.
//!
//! Every server listens on loopback only and dies with its guard, so tests
//! stay parallel-safe. Not every test binary uses every helper.
#![allow(dead_code)]

pub mod pki;
pub mod process;
pub mod proxies;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

use pharox_exporter::probe::CheckOptions;

/// Check options with pharox's defaults (expect 200, one attempt), aimed at
/// `target_url`, trusting the given rustls configs for the target and for
/// HTTPS proxies.
///
/// The timeout is generous and the slow threshold equals it, so a loaded CI
/// machine never turns ACTIVE into SLOW: tests assert behaviour, not speed.
pub fn check_options(
    target_url: &str,
    target_tls: Arc<rustls::ClientConfig>,
    proxy_tls: Arc<rustls::ClientConfig>,
) -> CheckOptions {
    let timeout = Duration::from_secs(10);
    CheckOptions {
        target_url: url::Url::parse(target_url).expect("target url"),
        expected_status_codes: vec![200],
        timeout,
        attempts: 1,
        slow_threshold: timeout,
        allow_redirects: false,
        headers: Vec::new(),
        body_contains: None,
        body_regex: None,
        own_ips: Vec::new(),
        max_body_bytes: 64 * 1024,
        max_header_bytes: 32 * 1024,
        target_tls,
        proxy_tls,
    }
}
