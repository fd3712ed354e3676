//! Reloads (SIGHUP, `POST /-/reload`): validate the whole new file first,
//! then swap it in whole; the sweep loop picks it up at its next start.
//! A bad file keeps the running config.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::config::{Config, ConfigError, Overrides};
use crate::model::unix_now;
use crate::model::ProxyProtocol;
use crate::server::ReloadRequest;
use crate::shutdown::Shutdown;
use crate::sinks::metrics::{Metrics, MinAnonymity, SlowThresholds};
use crate::state::StateStore;

/// Apply the parts of `cfg` that live outside it: the state's hysteresis
/// policy and the metrics' per-proxy switch, interval and slow thresholds.
pub(super) fn apply_config(cfg: &Config, state: &StateStore, metrics: &Metrics) {
    state.set_policy(cfg.policy);
    metrics
        .per_proxy
        .set(cfg.metrics.per_proxy, cfg.metrics.per_proxy_limit);
    metrics
        .exporter
        .interval
        .set(cfg.sweep.interval.as_secs_f64());
    metrics.check_settings.set(slow_thresholds(cfg));
    metrics
        .exit_settings
        .set(min_anonymity(cfg), cfg.metrics.exit_country_limit);
}

/// The minimum anonymity levels `cfg` resolved, for
/// `pharox_exporter_min_anonymity_info`.
fn min_anonymity(cfg: &Config) -> MinAnonymity {
    MinAnonymity {
        by_protocol: ProxyProtocol::ALL
            .into_iter()
            .filter_map(|p| Some((p, cfg.options.for_protocol(p).min_anonymity?)))
            .collect(),
        by_pool: cfg
            .options
            .pools()
            .map(|(pool, p, o)| ((pool.to_string(), p), o.min_anonymity))
            .collect(),
    }
}

/// The slow thresholds `cfg` resolved, for `pharox_exporter_slow_threshold_seconds`.
fn slow_thresholds(cfg: &Config) -> SlowThresholds {
    SlowThresholds {
        by_protocol: ProxyProtocol::ALL
            .into_iter()
            .map(|p| (p, cfg.options.for_protocol(p).slow_threshold))
            .collect(),
        by_pool: cfg
            .options
            .pools()
            .map(|(pool, p, o)| ((pool.to_string(), p), o.slow_threshold))
            .collect(),
    }
}

/// Re-reads the config file on request.
pub(super) struct Reloader {
    pub(super) path: Option<PathBuf>,
    pub(super) overrides: Overrides,
    pub(super) config: Arc<RwLock<Arc<Config>>>,
    pub(super) state: Arc<StateStore>,
    pub(super) metrics: Arc<Metrics>,
}

impl Reloader {
    /// Answer reload requests until shutdown. Reloads are validated at once
    /// (so `/-/reload` answers immediately).
    pub(super) fn spawn(self, mut requests: mpsc::Receiver<ReloadRequest>, shutdown: Shutdown) {
        tokio::spawn(async move {
            loop {
                let req = tokio::select! {
                    r = requests.recv() => match r { Some(r) => r, None => return },
                    _ = shutdown.wait() => return,
                };
                let outcome = self.reload().map_err(|e| e.to_string());
                let _ = req.send(outcome);
            }
        });
    }

    fn reload(&self) -> Result<(), ConfigError> {
        let new = match Config::load(self.path.as_deref(), &self.overrides) {
            Ok(new) => new,
            Err(e) => {
                self.metrics.exporter.reload_ok.set(0);
                tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
                return Err(e);
            }
        };
        let old = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // These are fixed when the listener and registry are built.
        if new.web.listen_address != old.web.listen_address {
            tracing::warn!("web.listen_address changed: takes effect only after a restart");
        }
        if new.metrics.latency_buckets != old.metrics.latency_buckets {
            tracing::warn!("metrics.latency_buckets changed: takes effect only after a restart");
        }
        // The files themselves are re-read when they change; the list is opened once.
        if new.geoip != old.geoip {
            tracing::warn!("geoip.databases changed: takes effect only after a restart");
        }
        apply_config(&new, &self.state, &self.metrics);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        self.metrics.exporter.reload_ok.set(1);
        self.metrics.exporter.reload_ts.set(unix_now());
        tracing::info!("configuration reloaded; takes effect at the next sweep");
        Ok(())
    }
}

#[cfg(test)]
mod slow_threshold_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slow_thresholds_follow_the_config_layers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pharox.yaml");
        std::fs::write(
            &file,
            "defaults:\n  slow_threshold_ms: 1500\nprotocols:\n  http:\n    slow_threshold_ms: 900\npools:\n  beta:\n    slow_threshold_ms: 300\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&file), &Overrides::default()).expect("config");
        let t = slow_thresholds(&cfg);
        let ms = Duration::from_millis;
        assert_eq!(t.by_protocol[&ProxyProtocol::Socks5], ms(1500));
        assert_eq!(t.by_protocol[&ProxyProtocol::Http], ms(900));
        assert_eq!(
            t.by_pool[&("beta".to_string(), ProxyProtocol::Http)],
            ms(300)
        );
        assert_eq!(
            t.by_pool.len(),
            ProxyProtocol::ALL.len(),
            "beta, every protocol"
        );
    }
}
