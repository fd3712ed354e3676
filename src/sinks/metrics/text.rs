//! Exposition text written straight into the response buffer, for the
//! families whose size makes a scrape's cost: the per-proxy series and the
//! event families with a series per label set (see [`super::families`]).
//!
//! Why by hand: prometheus-client encodes every label of every line through
//! a chain of encoders (most of a scrape's time at 100k proxies), while here
//! a series' labels are escaped once, when it is created, and copied after.
//! Everything printed is what prometheus-client 0.26 prints for the same
//! family in the same format, byte for byte: the same number formatters
//! (`itoa`, `dtoa`), the same HELP/TYPE/UNIT lines, the same label order
//! (pinned by the tests below, against the crate's own output).

use std::fmt::Write as _;

/// What a family is, as its TYPE line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A family's name and help, as registered or as a collector describes it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Family<'a> {
    /// Full name with prefix and unit (`pharox_check_duration_seconds`),
    /// without `_total`.
    pub name: &'a str,
    /// The unit's name when the family has one (`seconds`).
    pub unit: Option<&'a str>,
    /// Help text exactly as printed (a registered family's ends with the
    /// `.` the registry appends).
    pub help: &'a str,
    pub kind: Kind,
}

impl Family<'_> {
    /// `# HELP`, `# TYPE` (and in OpenMetrics `# UNIT`) lines.
    pub(super) fn header(&self, out: &mut String, openmetrics: bool) {
        // Text 0.0.4 names a counter family with its `_total`; OpenMetrics
        // names the family without it.
        let total = if self.kind == Kind::Counter && !openmetrics {
            "_total"
        } else {
            ""
        };
        out.push_str("# HELP ");
        out.push_str(self.name);
        out.push_str(total);
        out.push(' ');
        if openmetrics {
            out.push_str(self.help);
        } else {
            push_escaped_help(out, self.help);
        }
        out.push_str("\n# TYPE ");
        out.push_str(self.name);
        out.push_str(total);
        out.push_str(match self.kind {
            Kind::Counter => " counter\n",
            Kind::Gauge => " gauge\n",
            Kind::Histogram => " histogram\n",
        });
        if let (true, Some(unit)) = (openmetrics, self.unit) {
            out.push_str("# UNIT ");
            out.push_str(self.name);
            out.push(' ');
            out.push_str(unit);
            out.push('\n');
        }
    }
}

/// A HELP text as text 0.0.4 escapes it (`\` and newline).
fn push_escaped_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A label value escaped as both formats escape it: `\`, `"` and newline.
pub(super) fn push_escaped(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(i) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// `key="value"` (the caller puts the commas between labels).
pub(super) fn push_label(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    push_escaped(out, value);
    out.push('"');
}

/// An integer sample value.
pub(super) fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// An integer gauge value.
pub(super) fn push_i64(out: &mut String, v: i64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// A float sample value as the format prints it (the two differ only for
/// infinities: `+Inf` in text 0.0.4, `inf` in the crate's OpenMetrics).
pub(super) fn push_f64(out: &mut String, v: f64, openmetrics: bool) {
    let mut b = dtoa::Buffer::new();
    if openmetrics || v.is_finite() {
        out.push_str(b.format(v));
    } else if v.is_nan() {
        out.push_str("NaN");
    } else if v > 0.0 {
        out.push_str("+Inf");
    } else {
        out.push_str("-Inf");
    }
}

/// A histogram bound as its `le` label value prints: `dtoa` in OpenMetrics
/// (`1.0`), Go's shortest `%g` in text 0.0.4 (`1`, `1e-05`).
pub(super) fn le_value(bound: f64, openmetrics: bool) -> String {
    if bound == f64::INFINITY {
        return "+Inf".to_string();
    }
    if openmetrics {
        return dtoa::Buffer::new().format(bound).to_string();
    }
    go_float(bound)
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`, as prometheus-client's
/// text encoder writes `le` (whole numbers under 1e6 as integers, exponent
/// notation outside [1e-4, 1e6) with a signed two-digit exponent).
fn go_float(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v.fract() == 0.0 && v.abs() < 1e6 {
        return itoa::Buffer::new().format(v as i64).to_string();
    }
    if (1e-4..1e6).contains(&v.abs()) {
        return format!("{v}");
    }
    let sci = format!("{v:e}");
    match sci.split_once('e') {
        Some((mantissa, exp)) => {
            let exp: i32 = exp.parse().unwrap_or(0);
            let mut s = String::with_capacity(sci.len() + 2);
            let _ = write!(s, "{mantissa}e{exp:+03}");
            s
        }
        None => sci,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::EncodeMetric;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::metrics::MetricType;
    use prometheus_client::registry::{Registry, Unit};

    /// What prometheus-client prints for a collector's gauge family of one
    /// series `value` with `labels`, in both formats.
    fn crate_gauge(
        name: &str,
        help: &str,
        unit: Option<Unit>,
        labels: &[(&str, &str)],
        value: f64,
    ) -> [String; 2] {
        #[derive(Debug)]
        struct One(String, String, Option<Unit>, Vec<(String, String)>, f64);
        impl prometheus_client::collector::Collector for One {
            fn encode(
                &self,
                mut enc: prometheus_client::encoding::DescriptorEncoder,
            ) -> std::fmt::Result {
                let mut fam =
                    enc.encode_descriptor(&self.0, &self.1, self.2.as_ref(), MetricType::Gauge)?;
                let labels: Vec<(&str, &str)> = self
                    .3
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                ConstGauge::new(self.4).encode(fam.encode_family(&labels)?)
            }
        }
        let mut reg = Registry::default();
        reg.register_collector(Box::new(One(
            name.into(),
            help.into(),
            unit,
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        )));
        [true, false].map(|om| {
            let mut s = super::super::exposition::encode(&reg, om, 0);
            if om {
                s.truncate(s.len() - "# EOF\n".len());
            }
            s
        })
    }

    fn ours_gauge(
        name: &str,
        help: &str,
        unit: Option<&str>,
        labels: &[(&str, &str)],
        value: f64,
    ) -> [String; 2] {
        [true, false].map(|om| {
            let mut out = String::new();
            Family {
                name,
                unit,
                help,
                kind: Kind::Gauge,
            }
            .header(&mut out, om);
            out.push_str(name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_label(&mut out, k, v);
                }
                out.push('}');
            }
            out.push(' ');
            push_f64(&mut out, value, om);
            out.push('\n');
            out
        })
    }

    #[test]
    fn gauges_print_as_the_crate_prints_them() {
        let values = [
            0.0,
            -0.0,
            1.0,
            0.1,
            0.12,
            2.5,
            1e-5,
            1.5e-7,
            1234.5678,
            1_700_000_000.25,
            1_765_432_109.876,
            1e21,
            1.7976931348623157e308,
            f64::MIN_POSITIVE,
            -3.25,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let labels: &[&[(&str, &str)]] = &[
            &[],
            &[("proxy_id", "p1"), ("pool", "a\"b"), ("provider", "c\\d")],
            &[("pool", "line\nbreak"), ("protocol", "")],
            &[("k", "\\\"\n\n\"\\ ünïcode")],
        ];
        for v in values {
            for l in labels {
                for unit in [None, Some(Unit::Seconds)] {
                    let name = if unit.is_some() { "g_seconds" } else { "g" };
                    let want = crate_gauge("g", "Help \\ with\nnewline", unit.clone(), l, v);
                    let got = ours_gauge(
                        name,
                        "Help \\ with\nnewline",
                        unit.as_ref().map(|u| u.as_str()),
                        l,
                        v,
                    );
                    assert_eq!(got, want, "value {v:?}, labels {l:?}");
                }
            }
        }
    }

    #[test]
    fn le_values_print_as_the_crate_prints_them() {
        use prometheus_client::metrics::histogram::Histogram;
        let bounds = [
            1e-6,
            1e-5,
            0.0001,
            0.001,
            0.0025,
            0.1,
            0.25,
            0.3,
            1.0,
            2.5,
            10.0,
            999_999.0,
            1e6,
            1.5e6,
            3600.0,
            1e21,
            123_456_789.0,
        ];
        let h = Histogram::new(bounds);
        let mut reg = Registry::default();
        reg.register("h", "H", h);
        for om in [true, false] {
            let text = super::super::exposition::encode(&reg, om, 0);
            let les: Vec<&str> = text
                .split("le=\"")
                .skip(1)
                .filter_map(|r| r.split('"').next())
                .collect();
            let mut ours: Vec<String> = bounds.iter().map(|b| le_value(*b, om)).collect();
            ours.push(le_value(f64::INFINITY, om));
            assert_eq!(les, ours, "openmetrics={om}");
        }
    }

    #[test]
    fn escaping_of_label_values() {
        let mut s = String::new();
        push_escaped(&mut s, "a\\b\"c\nd");
        assert_eq!(s, "a\\\\b\\\"c\\nd");
        let mut s = String::new();
        push_label(&mut s, "b", "x\"");
        assert_eq!(s, "b=\"x\\\"\"");
    }
}
