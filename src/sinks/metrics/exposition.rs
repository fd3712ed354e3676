//! The exposition formats of a scrape: OpenMetrics when the scraper asks for
//! it (Prometheus does), the classic text format 0.0.4 otherwise (curl,
//! browsers and promtool, which rejects the crate's OpenMetrics).

use prometheus_client::registry::Registry;

/// `Content-Type` of an OpenMetrics response.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of a Prometheus text 0.0.4 response.
pub(crate) const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// True when any of the request's `Accept` header values asks for OpenMetrics.
pub(crate) fn wants_openmetrics<'a>(accept: impl IntoIterator<Item = &'a str>) -> bool {
    accept
        .into_iter()
        .any(|v| v.contains("application/openmetrics-text"))
}

/// The `Content-Type` of a response encoded with `openmetrics`.
pub(crate) fn content_type(openmetrics: bool) -> &'static str {
    if openmetrics {
        OPENMETRICS
    } else {
        TEXT_004
    }
}

/// Encode `registry` as OpenMetrics or Prometheus text 0.0.4.
pub(crate) fn encode(registry: &Registry, openmetrics: bool, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    // Writing into a String cannot fail.
    let _ = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
    };
    out
}

/// Append `registry` to `out` without OpenMetrics' `# EOF` (the caller
/// writes more families, then the EOF).
pub(crate) fn encode_into(out: &mut String, registry: &Registry, openmetrics: bool) {
    // Writing into a String cannot fail.
    let _ = if openmetrics {
        prometheus_client::encoding::text::encode_registry(out, registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(out, registry)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn negotiation_and_both_formats() {
        assert!(wants_openmetrics([
            "text/html",
            "application/openmetrics-text; version=1.0.0"
        ]));
        assert!(!wants_openmetrics(["text/plain; version=0.0.4", "*/*"]));
        assert!(!wants_openmetrics([]));
        let mut reg = Registry::with_prefix("pharox");
        let c = Counter::<u64>::default();
        c.inc();
        reg.register("sweeps", "Completed sweeps", c);
        let om = encode(&reg, true, 0);
        assert!(
            om.contains("pharox_sweeps_total 1") && om.ends_with("# EOF\n"),
            "{om}"
        );
        let text = encode(&reg, false, 0);
        assert!(
            text.contains("# TYPE pharox_sweeps_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(content_type(true), OPENMETRICS);
        assert_eq!(content_type(false), TEXT_004);
    }
}
