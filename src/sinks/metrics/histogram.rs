//! A histogram of durations kept in whole microseconds.
//!
//! Why not the crate's `Histogram`: it adds `f64` seconds, so its `_sum`
//! shows binary noise (`0.1 + 0.2` is exposed as `0.30000000000000004`),
//! and an observation right on a bucket bound can land on either side of
//! it. Here every observation and bound is an integer number of
//! microseconds: comparisons are exact, and the sum is exposed as
//! `micros / 1e6`, which prints as the shortest decimal (`0.3`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::family::MetricConstructor;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of a histogram's buckets, in seconds as configured, and the
/// same in microseconds for comparisons.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    seconds: Arc<[f64]>,
    micros: Arc<[u64]>,
    /// `le` of each bucket, `+Inf` last, as text 0.0.4 and OpenMetrics
    /// print it: formatted once, not at every line of every scrape.
    le: Arc<[Box<[String]>; 2]>,
}

impl Bounds {
    /// Bounds from seconds (sorted, finite, positive: the config checks).
    pub(crate) fn new(seconds: &[f64]) -> Bounds {
        // Rounded to microseconds, then back: a bound given as 0.3 is 300000
        // µs, and its `le` label prints as "0.3" whatever the input's noise.
        let micros: Vec<u64> = seconds
            .iter()
            .map(|s| (s * 1e6).round().max(0.0) as u64)
            .collect();
        let seconds: Vec<f64> = micros.iter().map(|us| *us as f64 / 1e6).collect();
        let le = [false, true].map(|om| {
            seconds
                .iter()
                .chain([&f64::INFINITY])
                .map(|s| super::text::le_value(*s, om))
                .collect()
        });
        Bounds {
            seconds: seconds.into(),
            micros: micros.into(),
            le: Arc::new(le),
        }
    }
}

impl MetricConstructor<MicrosHistogram> for Bounds {
    fn new_metric(&self) -> MicrosHistogram {
        MicrosHistogram::new(self.clone())
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Per bucket (not cumulative), the last one being +Inf.
    counts: Vec<u64>,
    count: u64,
    sum_micros: u64,
}

/// A histogram of durations, exact to the microsecond. Clones share their
/// counts (one is registered, another observes).
#[derive(Debug, Clone)]
pub(crate) struct MicrosHistogram {
    bounds: Bounds,
    // One lock for count, sum and buckets so a scrape never sees them disagree.
    inner: Arc<Mutex<Inner>>,
}

impl MicrosHistogram {
    pub(crate) fn new(bounds: Bounds) -> MicrosHistogram {
        let n = bounds.micros.len() + 1;
        MicrosHistogram {
            bounds,
            inner: Arc::new(Mutex::new(Inner {
                counts: vec![0; n],
                ..Inner::default()
            })),
        }
    }

    /// Count one observation of `micros` microseconds.
    pub(crate) fn observe_micros(&self, micros: u64) {
        let i = self
            .bounds
            .micros
            .iter()
            .position(|b| micros <= *b)
            .unwrap_or(self.bounds.micros.len());
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.counts[i] += 1;
        g.count += 1;
        g.sum_micros = g.sum_micros.saturating_add(micros);
    }

    /// Run `f` on (sum in µs, count, per-bucket counts with +Inf last),
    /// read together under the lock.
    pub(crate) fn with_counts<R>(&self, f: impl FnOnce(u64, u64, &[u64]) -> R) -> R {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(g.sum_micros, g.count, &g.counts)
    }

    /// The `le` label values of the buckets, +Inf last.
    pub(crate) fn le_values(&self, openmetrics: bool) -> &[String] {
        &self.bounds.le[usize::from(openmetrics)]
    }

    /// Count one observation of `d`.
    pub(crate) fn observe(&self, d: Duration) {
        self.observe_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Count one observation of `ms` milliseconds (fractional, as
    /// [`crate::model::Phases`] holds them, to the microsecond).
    pub(crate) fn observe_ms(&self, ms: f64) {
        self.observe_micros((ms * 1000.0).round().max(0.0) as u64);
    }
}

impl TypedMetric for MicrosHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for MicrosHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = {
            let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let buckets: Vec<(f64, u64)> = self
                .bounds
                .seconds
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(g.counts.iter().copied())
                .collect();
            (g.sum_micros as f64 / 1e6, g.count, buckets)
        };
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::{Registry, Unit};

    #[test]
    fn sums_and_bounds_print_as_the_decimals_they_are() {
        // 0.1 + 0.2 in f64 is 0.30000000000000004; in microseconds it is 300000.
        let h = MicrosHistogram::new(Bounds::new(&[0.1, 0.2, 0.3, 0.1 + 0.2 + 0.4]));
        h.observe(Duration::from_millis(100));
        h.observe_ms(200.0);
        let mut reg = Registry::with_prefix("t");
        reg.register_with_unit("d", "D", Unit::Seconds, h);
        for om in [true, false] {
            let text = super::super::exposition::encode(&reg, om, 0);
            assert!(text.contains("t_d_seconds_sum 0.3\n"), "{text}");
            assert!(text.contains("le=\"0.7\""), "{text}");
            assert!(!text.contains("00000000"), "float noise:\n{text}");
            // On the bound counts as under it (`le` is "less or equal").
            assert!(
                text.contains("t_d_seconds_bucket{le=\"0.1\"} 1\n"),
                "{text}"
            );
            assert!(
                text.contains("t_d_seconds_bucket{le=\"0.2\"} 2\n"),
                "{text}"
            );
        }
    }
}
