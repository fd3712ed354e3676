//! Command-line flags as one overlay on the file: [`Overrides`] holds every
//! flag that can replace a file value, already validated, and [`apply`] is
//! the one place they are written onto the parsed file, before the merged
//! result is checked as a whole. A new flag is a field here and a line in
//! `apply`.

use std::path::PathBuf;
use std::time::Duration;

use super::file::{FileConfig, OptionsSpec};
use super::values::{Attempts, StatusCodes, TargetUrl, Timeout};

/// Flags that override the file (named after the options they set). `None`
/// or `false` leaves the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--inventory`.
    pub inventory: Option<PathBuf>,
    /// `--target-url`.
    pub target_url: Option<TargetUrl>,
    /// `--expected-status-codes`.
    pub expected_status_codes: Option<StatusCodes>,
    /// `--timeout`.
    pub timeout: Option<Timeout>,
    /// `--attempts`.
    pub attempts: Option<Attempts>,
    /// `--slow-threshold-ms`.
    pub slow_threshold_ms: Option<u64>,
    /// `--tls.ca-file`.
    pub tls_ca_file: Option<PathBuf>,
    /// `--tls.insecure-skip-verify`.
    pub tls_insecure_skip_verify: bool,
    /// `--proxy-tls.ca-file`.
    pub proxy_tls_ca_file: Option<PathBuf>,
    /// `--proxy-tls.insecure-skip-verify`.
    pub proxy_tls_insecure_skip_verify: bool,
    /// `--concurrency`.
    pub concurrency: Option<usize>,
    /// `--sweep.interval`.
    pub interval: Option<Duration>,
    /// `--web.listen-address`.
    pub listen_address: Option<String>,
    /// `--web.telemetry-path`.
    pub telemetry_path: Option<String>,
    /// `--web.config.file`.
    pub web_config_file: Option<PathBuf>,
    /// `--web.enable-lifecycle`.
    pub enable_lifecycle: bool,
    /// `--web.max-connections`.
    pub max_connections: Option<usize>,
    /// `--web.max-requests`.
    pub max_requests: Option<usize>,
    /// `--metrics.per-proxy`.
    pub per_proxy: bool,
    /// `--shard.index`.
    pub shard_index: Option<u32>,
    /// `--shard.count`.
    pub shard_count: Option<u32>,
    /// `--shard.from-hostname`.
    pub shard_from_hostname: bool,
    /// `--geoip.database` (repeatable); when given, replaces
    /// `geoip.databases`.
    pub geoip_databases: Vec<PathBuf>,
}

impl Overrides {
    /// The check-option flags as one options layer.
    fn options(&self) -> OptionsSpec {
        OptionsSpec {
            target_url: self.target_url.clone(),
            expected_status_codes: self.expected_status_codes.clone(),
            timeout: self.timeout,
            attempts: self.attempts,
            slow_threshold_ms: self.slow_threshold_ms,
            tls_ca_file: self.tls_ca_file.clone(),
            tls_insecure_skip_verify: self.tls_insecure_skip_verify.then_some(true),
            proxy_tls_ca_file: self.proxy_tls_ca_file.clone(),
            proxy_tls_insecure_skip_verify: self.proxy_tls_insecure_skip_verify.then_some(true),
            ..OptionsSpec::default()
        }
    }
}

/// Write every flag that is set onto the parsed file.
///
/// Check-option flags go onto `defaults` AND every `protocols`/`pools`
/// layer, since a flag is the user's last word: it must beat a pool's own
/// timeout as much as the default one.
pub(super) fn apply(o: &Overrides, file: &mut FileConfig) {
    if let Some(inv) = &o.inventory {
        file.inventory.path = Some(inv.clone());
    }
    let flags = o.options();
    file.defaults = file.defaults.merged(&flags);
    for layer in file.protocols.values_mut().chain(file.pools.values_mut()) {
        *layer = layer.merged(&flags);
    }
    if let Some(c) = o.concurrency {
        file.sweep.concurrency = c;
    }
    if let Some(i) = o.interval {
        file.sweep.interval = super::values::Seconds(i);
    }
    if let Some(l) = &o.listen_address {
        file.web.listen_address = l.clone();
    }
    if let Some(t) = &o.telemetry_path {
        file.web.telemetry_path = t.clone();
    }
    if let Some(w) = &o.web_config_file {
        file.web.config_file = Some(w.clone());
    }
    if o.enable_lifecycle {
        file.web.enable_lifecycle = true;
    }
    if let Some(n) = o.max_connections {
        file.web.max_connections = n;
    }
    if let Some(n) = o.max_requests {
        file.web.max_requests = n;
    }
    if o.per_proxy {
        file.metrics.per_proxy = true;
    }
    if let Some(i) = o.shard_index {
        file.sharding.index = i;
    }
    if let Some(c) = o.shard_count {
        file.sharding.count = c;
    }
    if o.shard_from_hostname {
        file.sharding.from_hostname = true;
    }
    if !o.geoip_databases.is_empty() {
        file.geoip.databases = o.geoip_databases.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::super::file::parse_file;
    use super::*;

    #[test]
    fn option_flags_beat_every_layer_and_leave_unset_fields_alone() {
        let text = "defaults:\n  timeout: 5\n  slow_threshold_ms: 100\n\
                    protocols:\n  socks5:\n    timeout: 8\n\
                    pools:\n  resi:\n    timeout: 9\n    attempts: 4\n";
        let mut file = parse_file("t.yaml", text).unwrap();
        let o = Overrides {
            timeout: Some(Timeout(Duration::from_secs(1))),
            per_proxy: true,
            shard_count: Some(3),
            ..Overrides::default()
        };
        apply(&o, &mut file);
        let one = Some(Timeout(Duration::from_secs(1)));
        assert_eq!(file.defaults.timeout, one);
        assert_eq!(file.protocols.values().next().unwrap().timeout, one);
        let resi = &file.pools["resi"];
        assert_eq!((resi.timeout, resi.attempts), (one, Some(Attempts(4))));
        assert_eq!(file.defaults.slow_threshold_ms, Some(100));
        assert!(file.metrics.per_proxy);
        assert_eq!((file.sharding.index, file.sharding.count), (0, 3));
    }

    #[test]
    fn no_flags_change_nothing() {
        let text = "defaults:\n  timeout: 5\nweb:\n  listen_address: 127.0.0.1:1\n";
        let mut file = parse_file("t.yaml", text).unwrap();
        apply(&Overrides::default(), &mut file);
        assert_eq!(file.defaults.timeout, Some(Timeout(Duration::from_secs(5))));
        assert_eq!(file.defaults.tls_insecure_skip_verify, None);
        assert_eq!(file.web.listen_address, "127.0.0.1:1");
        assert!(!file.metrics.per_proxy && !file.sharding.from_hostname);
    }
}
