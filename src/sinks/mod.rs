//! Sinks consume check results as each check completes: [`metrics`] keeps
//! the Prometheus registry, [`db_writer`] writes results back to pharox's
//! database, and [`Sinks`] fans one result out to all of them. Sinks know
//! nothing of sockets or scheduling.

pub(crate) mod db_writer;
pub(crate) mod metrics;

use std::sync::Arc;
use std::time::Instant;

use crate::model::{CheckResult, Proxy};
use crate::state::StateStore;

use self::db_writer::{CloseReport, ResultWriter};
use self::metrics::Metrics;

/// Where every result of the exporter's sweeps goes: per-proxy state
/// (hysteresis), the metrics, and pharox's database when configured.
pub(crate) struct Sinks {
    /// Per-proxy state.
    pub state: Arc<StateStore>,
    /// The registry.
    pub metrics: Arc<Metrics>,
    /// The database writer, with pharox's database as inventory.
    pub db: Option<ResultWriter>,
}

impl Sinks {
    /// Record one result; called on a sweep worker, never blocks. The
    /// database gets the raw result, as pharox's own checker would write it;
    /// hysteresis only shapes what the exporter reports.
    ///
    /// A check that could not be done for a reason of ours (no file
    /// descriptor left) is counted and goes nowhere else: the proxy keeps
    /// the status it had, in the state and in the database alike.
    pub(crate) fn record(&self, proxy: &Arc<Proxy>, result: &CheckResult) {
        if result.is_unchecked() {
            if let Some(reason) = result.reason {
                self.metrics.skipped(reason.as_str());
            }
            return;
        }
        self.state.record(proxy, result, Instant::now());
        self.metrics.observe(proxy, result);
        if let Some(db) = &self.db {
            db.submit(proxy, result);
        }
    }

    /// Flush what is still queued (the database writer) until `deadline`,
    /// then stop it. `None` when there is nothing to flush.
    pub(crate) async fn close(&self, deadline: tokio::time::Instant) -> Option<CloseReport> {
        match &self.db {
            Some(db) => Some(db.close(deadline).await),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Phase, Phases, ProxyProtocol, ProxyStatus, Reason};

    fn result(proxy: &Proxy, status: ProxyStatus, reason: Option<Reason>) -> CheckResult {
        CheckResult {
            proxy_id: proxy.id.to_string(),
            status,
            latency_ms: 10,
            elapsed_ms: 10,
            attempts: 1,
            status_code: None,
            reason,
            phase: reason.map(|_| Phase::Connect),
            error: None,
            checked_at: chrono::Utc::now(),
            phases: Phases::default(),
            exit: None,
        }
    }

    #[test]
    fn a_check_short_of_descriptors_is_counted_and_recorded_nowhere() {
        let state = Arc::new(StateStore::new());
        let metrics = Arc::new(Metrics::new(
            &[1.0],
            state.clone(),
            Arc::new(crate::sweep::SweepGauges::default()),
            Vec::new(),
        ));
        let sinks = Sinks {
            state: state.clone(),
            metrics,
            db: None,
        };
        let p = Arc::new(Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", 1080));
        sinks.record(&p, &result(&p, ProxyStatus::Active, None));
        let unchecked = result(&p, ProxyStatus::Inactive, Some(Reason::LocalResources));
        assert!(unchecked.is_unchecked());
        for _ in 0..5 {
            sinks.record(&p, &unchecked);
        }
        let s = state.get(&p.id).expect("recorded once");
        assert_eq!(s.reported, Some(ProxyStatus::Active), "still ACTIVE");
        let text = sinks.metrics.render(false);
        assert!(
            text.contains("pharox_checks_skipped_total{reason=\"local_resources\"} 5"),
            "{text}"
        );
        for line in text.lines().filter(|l| l.contains("local_resources")) {
            assert!(
                line.starts_with("pharox_checks_skipped_total") || line.starts_with('#'),
                "counted nowhere else: {line}"
            );
        }
    }
}
