//! Families of counters and histograms with a series per label set, whose
//! labels are escaped once, when the series is created, and copied into
//! every scrape (see [`super::text`]). At 100 label sets these five families
//! are most of an aggregated scrape's bytes (the 1,140 error counters that
//! exist at 0 from the start, the 16 lines of each histogram).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use prometheus_client::metrics::counter::Counter;

use super::histogram::{Bounds, MicrosHistogram};
use super::text::{push_f64, push_label, push_u64, Family, Kind};

/// A label set that can render itself as `k="v",…`, in the order
/// prometheus-client's derive would encode its fields.
pub(crate) trait Labels: Clone + Eq + Hash {
    /// Append `k="v",…` (escaped, no braces).
    fn render(&self, out: &mut String);
}

/// Append the labels `pairs` as `k="v",…`.
pub(super) fn render_pairs(out: &mut String, pairs: &[(&str, &str)]) {
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_label(out, k, v);
    }
}

#[derive(Debug)]
struct Inner<K, M> {
    index: HashMap<K, usize>,
    /// Rendered labels and metric of each series, in creation order.
    series: Vec<(Box<str>, M)>,
}

/// Series of `M` by label set `K`. Clones share the series.
#[derive(Debug)]
pub(crate) struct LabeledFamily<K, M> {
    inner: Arc<RwLock<Inner<K, M>>>,
    /// Histogram bounds (`None` for counters).
    bounds: Option<Bounds>,
}

impl<K, M> Clone for LabeledFamily<K, M> {
    fn clone(&self) -> Self {
        LabeledFamily {
            inner: self.inner.clone(),
            bounds: self.bounds.clone(),
        }
    }
}

impl<K: Labels, M: Clone> LabeledFamily<K, M> {
    fn with_bounds(bounds: Option<Bounds>) -> Self {
        LabeledFamily {
            inner: Arc::new(RwLock::new(Inner {
                index: HashMap::new(),
                series: Vec::new(),
            })),
            bounds,
        }
    }

    /// The series of `labels`, created (at zero) if it did not exist. The
    /// result shares its value with the family's.
    pub(crate) fn get_or_create(&self, labels: &K, new: impl FnOnce() -> M) -> M {
        {
            let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = g.index.get(labels) {
                return g.series[*i].1.clone();
            }
        }
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = g.index.get(labels) {
            return g.series[*i].1.clone();
        }
        let mut rendered = String::new();
        labels.render(&mut rendered);
        let m = new();
        g.series.push((rendered.into_boxed_str(), m.clone()));
        let i = g.series.len() - 1;
        g.index.insert(labels.clone(), i);
        m
    }

    fn is_empty(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .series
            .is_empty()
    }
}

impl<K: Labels> LabeledFamily<K, Counter> {
    /// A family of counters.
    pub(crate) fn counters() -> Self {
        Self::with_bounds(None)
    }

    /// The counter of `labels`, created at 0 if it did not exist.
    pub(crate) fn counter(&self, labels: &K) -> Counter {
        self.get_or_create(labels, Counter::default)
    }

    /// Append the family (nothing when it has no series, as the registry
    /// leaves out empty families).
    pub(crate) fn encode(&self, fam: &Family<'_>, out: &mut String, openmetrics: bool) {
        debug_assert_eq!(fam.kind, Kind::Counter);
        if self.is_empty() {
            return;
        }
        fam.header(out, openmetrics);
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        for (labels, c) in &g.series {
            out.push_str(fam.name);
            out.push_str("_total{");
            out.push_str(labels);
            out.push_str("} ");
            push_u64(out, c.get());
            out.push('\n');
        }
    }
}

impl<K: Labels> LabeledFamily<K, MicrosHistogram> {
    /// A family of histograms with these bounds.
    pub(crate) fn histograms(bounds: Bounds) -> Self {
        Self::with_bounds(Some(bounds))
    }

    /// The histogram of `labels`, created empty if it did not exist.
    pub(crate) fn histogram(&self, labels: &K) -> MicrosHistogram {
        let bounds = self.bounds.clone().unwrap_or_else(|| Bounds::new(&[]));
        self.get_or_create(labels, || MicrosHistogram::new(bounds))
    }

    /// Append the family, line for line as prometheus-client encodes a
    /// histogram: text 0.0.4 has buckets then `_sum` and `_count`, with
    /// `le` last among labels; OpenMetrics has `_sum` and `_count` first,
    /// and `le` first.
    pub(crate) fn encode(&self, fam: &Family<'_>, out: &mut String, openmetrics: bool) {
        debug_assert_eq!(fam.kind, Kind::Histogram);
        if self.is_empty() {
            return;
        }
        fam.header(out, openmetrics);
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        for (labels, h) in &g.series {
            h.with_counts(|sum_micros, count, buckets| {
                let sum = sum_micros as f64 / 1e6;
                let les = h.le_values(openmetrics);
                if openmetrics {
                    sum_count(out, fam.name, labels, sum, count, true);
                }
                let mut cumulative = 0u64;
                for (le, n) in les.iter().zip(buckets) {
                    cumulative += n;
                    out.push_str(fam.name);
                    if openmetrics {
                        out.push_str("_bucket{le=\"");
                        out.push_str(le);
                        out.push_str("\",");
                        out.push_str(labels);
                        out.push_str("} ");
                    } else {
                        out.push_str("_bucket{");
                        out.push_str(labels);
                        out.push_str(",le=\"");
                        out.push_str(le);
                        out.push_str("\"} ");
                    }
                    push_u64(out, cumulative);
                    out.push('\n');
                }
                if !openmetrics {
                    sum_count(out, fam.name, labels, sum, count, false);
                }
            });
        }
    }
}

fn sum_count(out: &mut String, name: &str, labels: &str, sum: f64, count: u64, om: bool) {
    out.push_str(name);
    out.push_str("_sum{");
    out.push_str(labels);
    out.push_str("} ");
    push_f64(out, sum, om);
    out.push('\n');
    out.push_str(name);
    out.push_str("_count{");
    out.push_str(labels);
    out.push_str("} ");
    push_u64(out, count);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::family::Family as CrateFamily;
    use prometheus_client::registry::{Registry, Unit};

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct L {
        pool: String,
        reason: String,
    }

    impl Labels for L {
        fn render(&self, out: &mut String) {
            render_pairs(out, &[("pool", &self.pool), ("reason", &self.reason)]);
        }
    }

    fn l(pool: &str, reason: &str) -> L {
        L {
            pool: pool.into(),
            reason: reason.into(),
        }
    }

    /// Label sets whose values need escaping.
    fn sets() -> Vec<L> {
        vec![
            l("a", "timeout"),
            l("q\"uote", "back\\slash"),
            l("new\nline", ""),
            l("ünï", "x"),
        ]
    }

    /// The crate's text for `reg`, both formats, without `# EOF`.
    fn crate_text(reg: &Registry) -> [String; 2] {
        [true, false].map(|om| {
            let mut s = String::new();
            super::super::exposition::encode_into(&mut s, reg, om);
            s
        })
    }

    /// Lines sorted: the crate writes a family's series in hash order.
    fn sorted(s: &str) -> Vec<&str> {
        let mut v: Vec<&str> = s.lines().collect();
        v.sort_unstable();
        v
    }

    const C: Family<'static> = Family {
        name: "t_errs",
        unit: None,
        help: "Errors by reason.",
        kind: Kind::Counter,
    };
    const H: Family<'static> = Family {
        name: "t_dur_seconds",
        unit: Some("seconds"),
        help: "Durations.",
        kind: Kind::Histogram,
    };

    #[test]
    fn counters_equal_the_crates() {
        let ours = LabeledFamily::<L, Counter>::counters();
        let theirs = CrateFamily::<L, Counter>::default();
        let mut reg = Registry::with_prefix("t");
        reg.register("errs", "Errors by reason", theirs.clone());
        let empty: [String; 2] = [true, false].map(|om| {
            let mut s = String::new();
            ours.encode(&C, &mut s, om);
            s
        });
        assert_eq!(empty, crate_text(&reg), "an empty family is left out");
        for (n, set) in sets().iter().enumerate() {
            ours.counter(set).inc_by(n as u64 * 1000);
            theirs.get_or_create(set).inc_by(n as u64 * 1000);
        }
        // A series created at zero and one counted twice through clones.
        drop(ours.counter(&l("zero", "z")));
        drop(theirs.get_or_create(&l("zero", "z")));
        ours.counter(&l("a", "timeout")).inc();
        theirs.get_or_create(&l("a", "timeout")).inc();
        for (om, want) in [true, false].into_iter().zip(crate_text(&reg)) {
            let mut got = String::new();
            ours.encode(&C, &mut got, om);
            assert_eq!(sorted(&got), sorted(&want), "openmetrics={om}");
            // Header first, in the crate's order.
            let header: Vec<&str> = want.lines().take_while(|l| l.starts_with('#')).collect();
            assert_eq!(got.lines().take(header.len()).collect::<Vec<_>>(), header);
        }
    }

    #[test]
    fn histograms_equal_the_crates_line_for_line() {
        let bounds = Bounds::new(&[0.001, 0.0025, 0.1, 1.0, 2.5, 10.0]);
        let one = |set: &L, micros: &[u64]| {
            let ours = LabeledFamily::<L, MicrosHistogram>::histograms(bounds.clone());
            let theirs =
                CrateFamily::<L, MicrosHistogram, Bounds>::new_with_constructor(bounds.clone());
            let mut reg = Registry::with_prefix("t");
            reg.register_with_unit("dur", "Durations", Unit::Seconds, theirs.clone());
            for us in micros {
                ours.histogram(set).observe_micros(*us);
                theirs.get_or_create(set).observe_micros(*us);
            }
            for (om, want) in [true, false].into_iter().zip(crate_text(&reg)) {
                let mut got = String::new();
                ours.encode(&H, &mut got, om);
                // One series: the whole text, in order.
                assert_eq!(got, want, "openmetrics={om}");
            }
        };
        for set in sets() {
            // On a bound, between bounds, past the last, and a sum that is
            // noisy in f64 seconds (0.1 + 0.2).
            one(&set, &[1000, 1001, 2500, 100_000, 200_000, 30_000_000, 0]);
            one(&set, &[]);
        }
    }
}
