//! `pharox_exporter_geoip_*`: the geolocation database's own counters
//! (lookups, unknown countries, undecodable records, re-reads by outcome), read at scrape time. A
//! database that stopped re-reading keeps answering with old data, so its
//! failures must be visible without reading logs.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use crate::geo::GeoDb;

/// `pharox_exporter_geoip_*` (docs/metrics.md), registered only when
/// `geoip.databases` is configured.
#[derive(Debug)]
pub(crate) struct GeoCollector(pub Arc<GeoDb>);

impl Collector for GeoCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats().snapshot();
        for (name, help, v) in [
            (
                "exporter_geoip_lookups",
                "Exit IPs looked up in the geolocation databases",
                s.lookups,
            ),
            (
                "exporter_geoip_unknown_country",
                "Lookups no database placed in a country (never a mismatch)",
                s.unknown_country,
            ),
            (
                "exporter_geoip_record_errors",
                "Database records that could not be decoded (treated as no answer)",
                s.lookup_errors,
            ),
        ] {
            let e = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(e)?;
        }
        let mut fam = enc.encode_descriptor(
            "exporter_geoip_reloads",
            "Re-reads of a changed geolocation database file, by outcome (on error the previous contents keep answering)",
            None,
            MetricType::Counter,
        )?;
        for (outcome, v) in [("success", s.reloads), ("error", s.reload_errors)] {
            ConstCounter::new(v).encode(fam.encode_family(&[("outcome", outcome)])?)?;
        }
        Ok(())
    }
}
