//! The opt-in per-proxy series (`pharox_proxy_*`) and
//! `pharox_exporter_proxy_series_dropped`, written by hand at the end of a
//! scrape (see [`super::text`] for why by hand).
//!
//! What a scrape of 100k proxies would otherwise redo every time: sort the
//! ids, and escape four labels per proxy per family. Both depend only on
//! which proxies the store holds, so they are kept in [`Order`] and rebuilt
//! only when [`StateStore::membership_version`] moves. The values (status,
//! latency, last check, exit) are read fresh at every scrape.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::families::render_pairs;
use super::text::{push_escaped, push_f64, push_i64, Family, Kind};
use super::PerProxy;
use crate::model::Proxy;
use crate::state::{ExitSeen, ProxyState, StateStore};

/// The per-proxy families, in the order they are written.
const UP: Family<'static> = Family {
    name: "pharox_proxy_up",
    unit: None,
    help: "1 if the proxy is ACTIVE or SLOW (per-proxy, opt-in)",
    kind: Kind::Gauge,
};
const LATENCY: Family<'static> = Family {
    name: "pharox_proxy_latency_seconds",
    unit: Some("seconds"),
    help: "Latency of the proxy's last check (per-proxy, opt-in)",
    kind: Kind::Gauge,
};
const LAST_CHECK: Family<'static> = Family {
    name: "pharox_proxy_last_check_timestamp_seconds",
    unit: Some("seconds"),
    help: "Unix time of the proxy's last check (per-proxy, opt-in)",
    kind: Kind::Gauge,
};
const EXIT_INFO: Family<'static> = Family {
    name: "pharox_proxy_exit_info",
    unit: None,
    help: "The exit IP, exit country and anonymity level the proxy's last check saw at a judge (per-proxy, opt-in); always 1",
    kind: Kind::Gauge,
};
const DROPPED: Family<'static> = Family {
    name: "pharox_exporter_proxy_series_dropped",
    unit: None,
    help: "Proxies left out of per-proxy series by the cap at this scrape",
    kind: Kind::Gauge,
};

/// What a scrape exports of one checked proxy.
#[derive(Debug, Clone)]
struct Row {
    up: bool,
    latency_ms: u64,
    checked_at: f64,
    exit: Option<ExitSeen>,
}

/// The row of a proxy that has been checked (and so has a status).
fn row_of(s: &ProxyState) -> Option<Row> {
    match (s.reported, &s.last) {
        (Some(rep), Some(last)) => Some(Row {
            up: rep.is_up(),
            latency_ms: last.latency_ms,
            checked_at: last.checked_at,
            exit: last.exit.as_deref().cloned(),
        }),
        _ => None,
    }
}

/// The store's proxies sorted by id, with their labels rendered, valid for
/// one membership version.
#[derive(Debug, Default)]
struct Order {
    /// The membership version this was built at (`None`: never built).
    version: Option<u64>,
    /// In the order [`StateStore::for_each`] visits them: each proxy (held,
    /// so its address cannot be reused by another while cached) and its
    /// position in id order.
    walk: Vec<(Arc<Proxy>, usize)>,
    /// Index into `walk` of each position in id order.
    by_position: Vec<usize>,
    /// `proxy_id="…",pool="…",provider="…",protocol="…"` of the proxies in
    /// id order, back to back; the i-th is `labels[ends[i-1]..ends[i]]`.
    /// Only the first (as many as the cap exports) are kept: at a million
    /// proxies under the default cap, the rest would be ~80 MB never read.
    labels: String,
    ends: Vec<usize>,
}

/// Whether two records have the same series labels (what
/// [`render_labels`] prints).
fn same_series(a: &Arc<Proxy>, b: &Arc<Proxy>) -> bool {
    Arc::ptr_eq(a, b)
        || (a.id == b.id
            && a.pool == b.pool
            && a.provider == b.provider
            && a.protocol == b.protocol)
}

/// Append a proxy's labels, escaped.
fn render_labels(out: &mut String, p: &Proxy) {
    render_pairs(
        out,
        &[
            ("proxy_id", p.id.as_str()),
            ("pool", p.pool.as_str()),
            ("provider", p.provider.as_str()),
            ("protocol", p.protocol.as_str()),
        ],
    );
}

impl Order {
    /// The labels of the proxy at position `i` in id order: cached, or
    /// rendered into `scratch` (past the cached ones, when proxies of
    /// lower ids are still unchecked).
    fn label<'a>(&'a self, i: usize, scratch: &'a mut String) -> &'a str {
        if let Some(end) = self.ends.get(i) {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            return &self.labels[start..*end];
        }
        scratch.clear();
        if let Some((p, _)) = self.by_position.get(i).and_then(|w| self.walk.get(*w)) {
            render_labels(scratch, p);
        }
        scratch
    }

    /// Whether labels are cached for the first `limit` positions (or all).
    fn covers(&self, limit: usize) -> bool {
        self.ends.len() >= limit.min(self.walk.len())
    }

    /// The rows of this scrape in id order, or `None` when the store no
    /// longer holds exactly the proxies this order was built for.
    ///
    /// A record replaced by a copy with the same series labels (every
    /// inventory read replaces them all) still matches: the cached one is
    /// swapped for it, so the previous read's proxies are not kept alive.
    fn rows(&mut self, state: &StateStore) -> Option<Vec<Option<Row>>> {
        let mut rows = vec![None; self.walk.len()];
        let mut seen = 0;
        let mut same = true;
        let walk = &mut self.walk;
        state.for_each(|s| {
            match walk.get_mut(seen) {
                Some((p, pos)) if same && same_series(p, &s.proxy) => {
                    if !Arc::ptr_eq(p, &s.proxy) {
                        *p = s.proxy.clone();
                    }
                    rows[*pos] = row_of(s);
                }
                _ => same = false,
            }
            seen += 1;
        });
        (same && seen == self.walk.len()).then_some(rows)
    }

    /// Rebuild from the store as it is now, with labels for the first
    /// `limit` positions; returns this scrape's rows.
    fn rebuild(&mut self, state: &StateStore, version: u64, limit: usize) -> Vec<Option<Row>> {
        let mut walk: Vec<(Arc<Proxy>, Option<Row>)> = Vec::new();
        state.for_each(|s| walk.push((s.proxy.clone(), row_of(s))));
        let mut sorted: Vec<usize> = (0..walk.len()).collect();
        // Ids are the store's keys: unique, so the order is total.
        sorted.sort_unstable_by(|a, b| walk[*a].0.id.as_str().cmp(walk[*b].0.id.as_str()));
        let mut position = vec![0; walk.len()];
        let mut rows = Vec::with_capacity(walk.len());
        self.labels = String::new();
        self.ends = Vec::with_capacity(limit.min(walk.len()));
        for (pos, w) in sorted.iter().enumerate() {
            position[*w] = pos;
            let (p, row) = &mut walk[*w];
            rows.push(row.take());
            if pos < limit {
                render_labels(&mut self.labels, p);
                self.ends.push(self.labels.len());
            }
        }
        self.by_position = sorted;
        self.walk = walk
            .into_iter()
            .zip(position)
            .map(|((p, _), pos)| (p, pos))
            .collect();
        self.version = Some(version);
        rows
    }
}

/// A float as `dtoa` printed it, kept with the value's bits: formatting
/// is most of the per-proxy cost left, and the same values come back
/// scrape after scrape (a proxy's last check time until it is checked
/// again; latencies in whole milliseconds).
#[derive(Debug, Clone, Copy)]
struct Memo {
    bits: u64,
    len: u8,
    text: [u8; 23],
}

impl Memo {
    const EMPTY: Memo = Memo {
        bits: 0,
        len: 0,
        text: [0; 23],
    };

    /// Append `v` as [`push_f64`] does, from the memo when it holds `v`.
    fn push(&mut self, out: &mut String, v: f64, openmetrics: bool) {
        // Only finite values: the formats print the others differently.
        if !v.is_finite() {
            return push_f64(out, v, openmetrics);
        }
        if self.len == 0 || self.bits != v.to_bits() {
            let mut b = dtoa::Buffer::new();
            let s = b.format_finite(v);
            let Some(dst) = self.text.get_mut(..s.len()) else {
                return out.push_str(s);
            };
            dst.copy_from_slice(s.as_bytes());
            self.len = s.len() as u8;
            self.bits = v.to_bits();
        }
        // What was copied in is dtoa's ASCII output.
        out.push_str(std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or(""));
    }
}

/// Latencies under this many milliseconds have a memo each.
const LATENCY_MEMOS: usize = 16_384;

/// What is kept between scrapes while per-proxy series are on.
#[derive(Debug, Default)]
struct Cache {
    order: Order,
    /// By latency in ms, up to [`LATENCY_MEMOS`].
    latency: Vec<Memo>,
    /// By position in id order, for the positions with cached labels.
    checked_at: Vec<Memo>,
}

/// Writes the per-proxy families of a scrape.
#[derive(Debug)]
pub(super) struct PerProxySeries {
    state: Arc<StateStore>,
    settings: Arc<PerProxy>,
    cache: Mutex<Cache>,
}

impl PerProxySeries {
    pub(super) fn new(state: Arc<StateStore>, settings: Arc<PerProxy>) -> PerProxySeries {
        PerProxySeries {
            state,
            settings,
            cache: Mutex::default(),
        }
    }

    /// Append the per-proxy families (when on) and the dropped gauge,
    /// calling `flush` after every line (it may take what `out` holds).
    pub(super) fn encode(
        &self,
        out: &mut String,
        openmetrics: bool,
        flush: &mut dyn FnMut(&mut String),
    ) {
        let (on, limit) = self.settings.get();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = if on {
            self.encode_series(&mut cache, out, openmetrics, limit, flush)
        } else {
            // Switched off (or never on): the cache would only hold memory.
            // And no cap applies, so nothing is dropped (a stale count would
            // keep a "series dropped" alert firing).
            *cache = Cache::default();
            0
        };
        drop(cache);
        DROPPED.header(out, openmetrics);
        out.push_str(DROPPED.name);
        out.push(' ');
        push_i64(out, i64::try_from(dropped).unwrap_or(i64::MAX));
        out.push('\n');
    }

    /// The four families; returns how many proxies the cap left out.
    fn encode_series(
        &self,
        cache: &mut Cache,
        out: &mut String,
        openmetrics: bool,
        limit: usize,
        flush: &mut dyn FnMut(&mut String),
    ) -> usize {
        let Cache {
            order,
            latency,
            checked_at,
        } = cache;
        // Read before the walk: a change during it makes the next scrape
        // rebuild, whatever this one saw.
        let version = self.state.membership_version();
        let cached = match order.version {
            Some(v) if v == version && order.covers(limit) => order.rows(&self.state),
            _ => None,
        };
        let rows = match cached {
            Some(rows) => rows,
            None => order.rebuild(&self.state, version, limit),
        };
        // The cap keeps the lowest ids, so the exported set is stable across scrapes.
        let checked: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|_| i))
            .collect();
        let dropped = checked.len().saturating_sub(limit);
        let kept = &checked[..checked.len() - dropped];
        latency.resize(LATENCY_MEMOS, Memo::EMPTY);
        // A memo holds its value's bits: one left from another proxy
        // (after a rebuild) is only a miss.
        checked_at.resize(order.ends.len(), Memo::EMPTY);
        let mut scratch = String::new();
        let mut series = |out: &mut String, name: &str, i: usize| {
            out.push_str(name);
            out.push('{');
            out.push_str(order.label(i, &mut scratch));
        };
        // 0 and 1 as the float gauges print them.
        let [zero, one] = [0.0, 1.0].map(|v| {
            let mut s = String::new();
            push_f64(&mut s, v, openmetrics);
            s
        });
        UP.header(out, openmetrics);
        for (i, r) in kept.iter().filter_map(|i| Some((*i, rows[*i].as_ref()?))) {
            series(out, UP.name, i);
            out.push_str("} ");
            out.push_str(if r.up { &one } else { &zero });
            out.push('\n');
            flush(out);
        }
        LATENCY.header(out, openmetrics);
        for (i, r) in kept.iter().filter_map(|i| Some((*i, rows[*i].as_ref()?))) {
            series(out, LATENCY.name, i);
            out.push_str("} ");
            let v = r.latency_ms as f64 / 1000.0;
            match usize::try_from(r.latency_ms)
                .ok()
                .and_then(|ms| latency.get_mut(ms))
            {
                Some(memo) => memo.push(out, v, openmetrics),
                None => push_f64(out, v, openmetrics),
            }
            out.push('\n');
            flush(out);
        }
        LAST_CHECK.header(out, openmetrics);
        for (i, r) in kept.iter().filter_map(|i| Some((*i, rows[*i].as_ref()?))) {
            series(out, LAST_CHECK.name, i);
            out.push_str("} ");
            match checked_at.get_mut(i) {
                Some(memo) => memo.push(out, r.checked_at, openmetrics),
                None => push_f64(out, r.checked_at, openmetrics),
            }
            out.push('\n');
            flush(out);
        }
        EXIT_INFO.header(out, openmetrics);
        for (i, exit) in kept
            .iter()
            .filter_map(|i| Some((*i, rows[*i].as_ref()?.exit.as_ref()?)))
        {
            series(out, EXIT_INFO.name, i);
            out.push_str(",exit_ip=\"");
            if let Some(ip) = exit.ip {
                // An address prints no character that needs escaping.
                let _ = write!(out, "{ip}");
            }
            out.push_str("\",country=\"");
            push_escaped(out, exit.country.as_ref().map_or("", |c| c.as_str()));
            out.push_str("\",anonymity=\"");
            push_escaped(out, exit.anonymity.map_or("", |a| a.as_str()));
            out.push_str("\"} 1\n");
            flush(out);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use chrono::DateTime;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::metrics::MetricType;
    use prometheus_client::registry::{Registry, Unit};

    use super::*;
    use crate::model::{Anonymity, CheckResult, Exit, Geo, ProxyProtocol, ProxyStatus, Reason};

    /// (id, pool, provider, protocol, up, latency s, checked_at, exit)
    type RefRow = (
        String,
        String,
        String,
        &'static str,
        i64,
        f64,
        f64,
        Option<ExitSeen>,
    );

    /// The per-proxy families as prometheus-client encoded them before
    /// they were written by hand: the reference the output must equal.
    #[derive(Debug)]
    struct Reference(Vec<RefRow>, usize);

    impl Collector for Reference {
        fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
            type Pick = fn(&RefRow) -> ConstGauge<f64>;
            let families: [(&str, &str, Option<Unit>, Pick); 3] = [
                ("proxy_up", UP.help, None, |r| ConstGauge::new(r.4 as f64)),
                ("proxy_latency", LATENCY.help, Some(Unit::Seconds), |r| {
                    ConstGauge::new(r.5)
                }),
                (
                    "proxy_last_check_timestamp",
                    LAST_CHECK.help,
                    Some(Unit::Seconds),
                    |r| ConstGauge::new(r.6),
                ),
            ];
            for (name, help, unit, pick) in families {
                let mut fam =
                    enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
                for r in &self.0 {
                    let labels = [
                        ("proxy_id", r.0.as_str()),
                        ("pool", r.1.as_str()),
                        ("provider", r.2.as_str()),
                        ("protocol", r.3),
                    ];
                    pick(r).encode(fam.encode_family(&labels)?)?;
                }
            }
            let mut fam =
                enc.encode_descriptor("proxy_exit_info", EXIT_INFO.help, None, MetricType::Gauge)?;
            for r in &self.0 {
                let Some(exit) = &r.7 else { continue };
                let ip = exit.ip.map(|ip| ip.to_string()).unwrap_or_default();
                let labels = [
                    ("proxy_id", r.0.as_str()),
                    ("pool", r.1.as_str()),
                    ("provider", r.2.as_str()),
                    ("protocol", r.3),
                    ("exit_ip", ip.as_str()),
                    ("country", exit.country.as_ref().map_or("", |c| c.as_str())),
                    ("anonymity", exit.anonymity.map_or("", |a| a.as_str())),
                ];
                ConstGauge::new(1).encode(fam.encode_family(&labels)?)?;
            }
            let e = enc.encode_descriptor(
                "exporter_proxy_series_dropped",
                DROPPED.help,
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(self.1 as i64).encode(e)
        }
    }

    /// What the old code exported of `state` under `limit`, both formats.
    fn reference(state: &StateStore, on: bool, limit: usize) -> [String; 2] {
        let mut rows: Vec<RefRow> = Vec::new();
        state.for_each(|s| {
            if let (Some(rep), Some(last)) = (s.reported, &s.last) {
                let p = &s.proxy;
                rows.push((
                    p.id.to_string(),
                    p.pool.to_string(),
                    p.provider.to_string(),
                    p.protocol.as_str(),
                    rep.is_up() as i64,
                    last.latency_ms as f64 / 1000.0,
                    last.checked_at,
                    last.exit.as_deref().cloned(),
                ));
            }
        });
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let dropped = rows.len().saturating_sub(limit);
        rows.truncate(limit);
        if !on {
            return [true, false].map(|om| {
                let mut s = String::new();
                DROPPED.header(&mut s, om);
                s.push_str("pharox_exporter_proxy_series_dropped 0\n");
                s
            });
        }
        let mut reg = Registry::with_prefix("pharox");
        reg.register_collector(Box::new(Reference(rows, dropped)));
        [true, false].map(|om| {
            let mut s = String::new();
            super::super::exposition::encode_into(&mut s, &reg, om);
            s
        })
    }

    fn ours(series: &PerProxySeries) -> [String; 2] {
        [true, false].map(|om| {
            let mut s = String::new();
            series.encode(&mut s, om, &mut |_| ());
            s
        })
    }

    fn proxy(id: &str, pool: &str, provider: &str, protocol: ProxyProtocol) -> Arc<Proxy> {
        let mut p = Proxy::new(protocol, "127.0.0.1", 1080);
        p.id = id.into();
        p.pool = pool.into();
        p.provider = provider.into();
        Arc::new(p)
    }

    fn result(status: ProxyStatus, latency_ms: u64, at_ms: i64, exit: Option<Exit>) -> CheckResult {
        CheckResult {
            proxy_id: String::new(),
            status,
            latency_ms,
            elapsed_ms: latency_ms,
            attempts: 1,
            status_code: None,
            reason: (!status.is_up()).then_some(Reason::Timeout),
            phase: None,
            error: None,
            checked_at: DateTime::from_timestamp_millis(at_ms).unwrap_or_default(),
            phases: Default::default(),
            exit,
        }
    }

    fn exit(ip: Option<&str>, level: Option<Anonymity>, country: Option<&str>) -> Option<Exit> {
        Some(Exit {
            ip: ip.and_then(|i| i.parse().ok()),
            anonymity: level,
            anonymity_header: None,
            geo: Some(Geo {
                country: country.map(String::from),
                ..Geo::default()
            }),
            geo_mismatch: false,
        })
    }

    /// Proxies whose labels need escaping, numbers at the edges of the
    /// float formatting, exits with and without each field, one unchecked.
    fn fixture() -> (Arc<StateStore>, Vec<Arc<Proxy>>) {
        let state = Arc::new(StateStore::new());
        let http = ProxyProtocol::Http;
        let proxies = vec![
            proxy("p\"quote", "pool\\back", "prov\nline", http),
            proxy("p-a", "a", "x", ProxyProtocol::Socks5),
            proxy("p-b", "ünï", "\"\\\n", ProxyProtocol::Socks4),
            proxy("p-c", "a", "x", http),
            proxy("p-d", "a", "x", http),
            proxy("p-e", "a", "x", ProxyProtocol::Https),
            proxy("unchecked", "a", "x", http),
            // Unchecked with the second-lowest id: a cap of 2 exports the
            // first and third.
            proxy("p#unchecked", "a", "x", http),
        ];
        state.sync(&proxies);
        let results = [
            result(ProxyStatus::Active, 0, 1_700_000_000_000, None),
            result(
                ProxyStatus::Slow,
                2500,
                1_765_432_109_876,
                exit(Some("10.0.0.1"), Some(Anonymity::Elite), Some("DE")),
            ),
            result(ProxyStatus::Inactive, 1, 1, exit(None, None, None)),
            result(
                ProxyStatus::Active,
                123_456_789,
                999,
                exit(
                    Some("2001:db8::1"),
                    Some(Anonymity::Transparent),
                    Some("zz"),
                ),
            ),
            result(ProxyStatus::Active, 100, 1_700_000_000_100, None),
            result(ProxyStatus::Active, 300, 1_700_000_000_300, None),
        ];
        for (p, r) in proxies.iter().zip(&results) {
            state.record(p, r, Instant::now());
        }
        (state, proxies)
    }

    #[test]
    fn output_equals_the_crates_for_the_same_rows() {
        let (state, proxies) = fixture();
        let settings = Arc::new(PerProxy::default());
        let series = PerProxySeries::new(state.clone(), settings.clone());
        // Off, then on under the cap, at the cap, capped, and off again.
        for (on, limit) in [
            (false, 10),
            (true, 2),
            (true, 10),
            (true, 6),
            (true, 2),
            (true, 0),
            (false, 2),
        ] {
            settings.set(on, limit);
            // Twice: the second scrape uses the cached order.
            for _ in 0..2 {
                assert_eq!(
                    ours(&series),
                    reference(&state, on, limit),
                    "on={on} limit={limit}"
                );
            }
        }
        // Results change, membership does not: values are read fresh.
        settings.set(true, 10);
        state.record(
            &proxies[3],
            &result(ProxyStatus::Inactive, 5000, 1_800_000_000_001, None),
            Instant::now(),
        );
        assert_eq!(ours(&series), reference(&state, true, 10));
        // A proxy leaves, one arrives, one is relabelled: the cached order
        // and labels are rebuilt.
        let mut next = proxies.clone();
        next.remove(4);
        next[1] = proxy("p-a", "moved", "x", ProxyProtocol::Socks5);
        next.push(proxy("p-0", "a", "x", ProxyProtocol::Http));
        state.sync(&next);
        state.record(
            &next[next.len() - 1],
            &result(ProxyStatus::Active, 42, 1_700_000_000_042, None),
            Instant::now(),
        );
        let [om, text] = ours(&series);
        assert_eq!([om.clone(), text.clone()], reference(&state, true, 10));
        assert!(text.contains("proxy_id=\"p-0\""), "{text}");
        assert!(text.contains("proxy_id=\"p-a\",pool=\"moved\""), "{text}");
        assert!(!text.contains("proxy_id=\"p-d\""), "{text}");
    }

    #[test]
    fn a_memo_prints_what_push_f64_prints_whatever_came_before() {
        let mut memo = Memo::EMPTY;
        let values = [
            0.0,
            0.0,
            -0.0,
            1.0,
            1_765_432_109.876,
            1_765_432_109.876,
            0.001,
            f64::INFINITY,
            0.001,
            f64::NAN,
            1e300,
            -1.7976931348623157e308,
            5e-324,
            123_456.789,
        ];
        for v in values {
            for om in [true, false] {
                let (mut want, mut got) = (String::new(), String::new());
                push_f64(&mut want, v, om);
                memo.push(&mut got, v, om);
                assert_eq!(got, want, "{v:?} openmetrics={om}");
            }
        }
    }

    #[test]
    fn an_empty_store_has_the_families_and_nothing_dropped() {
        let state = Arc::new(StateStore::new());
        let settings = Arc::new(PerProxy::default());
        settings.set(true, 10);
        let series = PerProxySeries::new(state.clone(), settings);
        let got = ours(&series);
        assert_eq!(got, reference(&state, true, 10));
        assert!(
            got[1].contains("# TYPE pharox_proxy_up gauge\n"),
            "{}",
            got[1]
        );
        assert!(got[0].contains("# UNIT pharox_proxy_latency_seconds seconds\n"));
        assert!(got[1].ends_with("pharox_exporter_proxy_series_dropped 0\n"));
    }

    #[test]
    fn a_store_changed_behind_the_version_is_noticed() {
        let (state, proxies) = fixture();
        let mut order = Order::default();
        let version = state.membership_version();
        let rows = order.rebuild(&state, version, 2);
        assert_eq!(rows.iter().filter(|r| r.is_some()).count(), 6);
        assert!(order.rows(&state).is_some(), "same proxies, same order");
        // A re-read: equal copies of every record. The same series, so no
        // rebuild; the cache takes the new copies and lets the old go.
        let copies: Vec<Arc<Proxy>> = proxies.iter().map(|p| Arc::new((**p).clone())).collect();
        state.sync(&copies);
        assert_eq!(state.membership_version(), version);
        assert!(order.rows(&state).is_some(), "equal copies");
        assert!(
            proxies.iter().all(|p| Arc::strong_count(p) == 1),
            "the previous read's records are no longer held"
        );
        // A record relabelled (after the version was read): noticed by the
        // walk itself.
        let mut relabelled = copies.clone();
        let mut moved = (*relabelled[3]).clone();
        moved.pool = "elsewhere".into();
        relabelled[3] = Arc::new(moved);
        state.sync(&relabelled);
        assert!(order.rows(&state).is_none(), "relabelled");
        let rows = order.rebuild(&state, state.membership_version(), 2);
        assert_eq!(rows.iter().filter(|r| r.is_some()).count(), 6);
        // Another store with the same ids under other labels: not the same series.
        let (other, _) = fixture();
        assert!(order.rows(&other).is_none());
        let mut scratch = String::new();
        assert_eq!(
            order.label(0, &mut scratch),
            "proxy_id=\"p\\\"quote\",pool=\"pool\\\\back\",provider=\"prov\\nline\",protocol=\"http\""
        );
        // Past the cached labels, rendered on the spot.
        assert!(order.covers(2) && !order.covers(3));
        assert_eq!(
            order.label(2, &mut scratch),
            "proxy_id=\"p-a\",pool=\"a\",provider=\"x\",protocol=\"socks5\""
        );
    }
}
