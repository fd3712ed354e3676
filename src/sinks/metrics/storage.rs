//! `pharox_exporter_storage_*`: the counters of the result writer (and of the lease
//! cleanup), read at scrape time.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::pharox_db::Stats;

/// `pharox_exporter_storage_*` (docs/metrics.md), read from the result writer's
/// counters at scrape time.
#[derive(Debug)]
pub(crate) struct StorageCollector(pub Arc<Stats>);

impl Collector for StorageCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.snapshot();
        let e = enc.encode_descriptor(
            "exporter_storage_pending_results",
            "Results queued, not yet written",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(s.pending as i64).encode(e)?;
        let mut fam = enc.encode_descriptor(
            "exporter_storage_writes",
            "Batch write attempts",
            None,
            MetricType::Counter,
        )?;
        for (outcome, v) in [("success", s.writes_success), ("error", s.writes_error)] {
            ConstCounter::new(v).encode(fam.encode_family(&[("outcome", outcome)])?)?;
        }
        let e = enc.encode_descriptor(
            "exporter_storage_results_written",
            "Results persisted",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.results_written).encode(e)?;
        let mut fam = enc.encode_descriptor(
            "exporter_storage_dropped",
            "Results dropped (queue full)",
            None,
            MetricType::Counter,
        )?;
        for (kind, v) in [("history", s.dropped_history), ("status", s.dropped_status)] {
            ConstCounter::new(v).encode(fam.encode_family(&[("kind", kind)])?)?;
        }
        let e = enc.encode_descriptor(
            "exporter_storage_expired_leases_released",
            "Leases released by the pre-sweep cleanup",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.expired_leases_released).encode(e)?;
        let e = enc.encode_descriptor(
            "exporter_storage_geo_updates",
            "pharox proxy rows whose geography was rewritten (postgres.write_geo)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.geo_updated).encode(e)?;
        let e = enc.encode_descriptor(
            "exporter_storage_unknown_proxy_results",
            "Results for proxies no longer in the database (not written)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.unknown_proxy).encode(e)?;
        let e = enc.encode_descriptor(
            "leased_health_changes",
            "Health changes of proxies that were leased at the time (events emitted)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.leased_events).encode(e)?;
        let e = enc.encode_descriptor(
            "exporter_event_webhook_errors",
            "Leased-health-change events the webhook did not accept",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.webhook_errors).encode(e)?;
        let mut fam = enc.encode_descriptor(
            "exporter_storage_timeouts",
            "Database operations ended by a deadline (operation_timeout, statement_timeout or lock_timeout)",
            None,
            MetricType::Counter,
        )?;
        for (op, v) in [
            ("connect", s.timeouts_connect),
            ("read", s.timeouts_read),
            ("write", s.timeouts_write),
        ] {
            ConstCounter::new(v).encode(fam.encode_family(&[("operation", op)])?)?;
        }
        Ok(())
    }
}
