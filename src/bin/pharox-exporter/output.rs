//! Human and machine output of check results for the CLI: one JSON object
//! per line, a readable table, and a sweep summary. Only the proxy's id,
//! protocol, user, host and port are printed: never passwords. The id is
//! what tells apart two entries that differ only in their password.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use pharox_exporter::{CheckResult, Exit, Phase, Phases, Proxy, ProxyProtocol, ProxyStatus};

/// One result as `sweep --once` and `check --output json` print it.
#[derive(Debug, Serialize)]
pub(crate) struct ResultLine<'a> {
    /// Proxy id.
    pub id: &'a str,
    /// Proxy protocol.
    pub protocol: ProxyProtocol,
    /// Proxy host.
    pub host: &'a str,
    /// Proxy port.
    pub port: u16,
    /// Pool label.
    pub pool: &'a str,
    /// Provider label.
    pub provider: &'a str,
    /// The country the inventory declares (ISO alpha-2), compared with the
    /// exit's; absent when none is declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'a str>,
    /// Outcome.
    pub status: ProxyStatus,
    /// Latency (timeout for INACTIVE, as pharox reports it).
    pub latency_ms: u64,
    /// How long the check really took, every attempt included.
    pub elapsed_ms: u64,
    /// Attempts used.
    pub attempts: u8,
    /// HTTP status of the last response.
    pub status_code: Option<u16>,
    /// Failure reason.
    pub reason: Option<&'static str>,
    /// Failure phase.
    pub phase: Option<&'static str>,
    /// Human error.
    pub error: Option<&'a str>,
    /// RFC 3339 time of the check.
    pub checked_at: String,
    /// Per-phase timings, ms.
    pub phases: &'a Phases,
    /// What a judge saw of the exit (IP, anonymity, geolocation, mismatch);
    /// absent when the target is not a judge or no answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<&'a Exit>,
}

impl<'a> ResultLine<'a> {
    /// Pair a proxy with its result.
    pub(crate) fn new(proxy: &'a Proxy, r: &'a CheckResult) -> Self {
        ResultLine {
            id: &proxy.id,
            protocol: proxy.protocol,
            host: &proxy.host,
            port: proxy.port,
            pool: &proxy.pool,
            provider: &proxy.provider,
            country: proxy.country.as_deref(),
            status: r.status,
            latency_ms: r.latency_ms,
            elapsed_ms: r.elapsed_ms,
            attempts: r.attempts,
            status_code: r.status_code,
            reason: r.reason.map(|x| x.as_str()),
            phase: r.phase.map(|x| x.as_str()),
            error: r.error.as_deref(),
            checked_at: r
                .checked_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            phases: &r.phases,
            exit: r.exit.as_ref(),
        }
    }

    /// The line as JSON (no trailing newline).
    pub(crate) fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Append the line as JSON and a newline to `out`, without an
    /// intermediate `String`.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // Serialising plain data with string keys cannot fail; should it,
        // the partial line is taken back rather than left unterminated.
        if serde_json::to_writer(&mut *out, self).is_err() {
            out.truncate(start);
            return;
        }
        out.push(b'\n');
    }
}

/// The exit columns of the table: IP, country (`US!=DE` when it differs
/// from the declared one), anonymity; `-` where unknown.
fn exit_cells(p: &Proxy, r: &CheckResult) -> [String; 3] {
    let dash = || "-".to_string();
    let Some(e) = &r.exit else {
        return [dash(), dash(), dash()];
    };
    let country = e.geo.as_ref().and_then(|g| g.country.clone());
    let country = match (country, p.country.as_deref()) {
        (Some(c), Some(d)) if e.geo_mismatch => format!("{c}!={d}"),
        (Some(c), _) => c,
        (None, _) => dash(),
    };
    [
        e.ip.map(|ip| ip.to_string()).unwrap_or_else(dash),
        country,
        e.anonymity
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(dash),
    ]
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

/// A fixed-width table of results, one row per proxy. Times are in the
/// headers' unit (ms). LATENCY is pharox's (the timeout for INACTIVE); TOOK
/// is how long the check really took, so a refused connection reads 1, not
/// the 5000 of its timeout. EXIT, COUNTRY and ANONYMITY appear only when a
/// result has an exit (a judge target), so tables of plain checks stay as
/// narrow as they were.
pub(crate) fn table(rows: &[(&Proxy, &CheckResult)]) -> String {
    let with_exit = rows.iter().any(|(_, r)| r.exit.is_some());
    let mut header = vec![
        "ID",
        "PROXY",
        "STATUS",
        "LATENCY(ms)",
        "TOOK(ms)",
        "CONNECT(ms)",
        "HANDSHAKE(ms)",
        "TLS(ms)",
        "TTFB(ms)",
        "CODE",
        "REASON",
        "ERROR",
    ];
    if with_exit {
        // Before REASON: the error is last, as it is the one cell of any length.
        header.splice(10..10, ["EXIT", "COUNTRY", "ANONYMITY"]);
    }
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for (p, r) in rows {
        let reason = match (r.reason, r.phase) {
            (Some(re), Some(ph)) => format!("{re} ({ph})"),
            (Some(re), None) => re.to_string(),
            _ => "-".into(),
        };
        let mut row = vec![
            p.id.to_string(),
            p.redacted_url(),
            r.status.as_str().to_uppercase(),
            r.latency_ms.to_string(),
            r.elapsed_ms.to_string(),
            ms(r.phases.get(Phase::Connect)),
            ms(r.phases.get(Phase::Handshake)),
            ms(r.phases.get(Phase::Tls)),
            ms(r.phases.get(Phase::FirstByte)),
            r.status_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            reason,
            r.error.clone().unwrap_or_else(|| "-".into()),
        ];
        if with_exit {
            row.splice(10..10, exit_cells(p, r));
        }
        cells.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            cells
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{:<w$}  ", cell, w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Completed checks per second of wall time: the one formula of the
/// summary and the progress bar.
pub(crate) fn checks_per_second(done: usize, elapsed: Duration) -> f64 {
    done as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// `42s`, `3m05s`, `2h07m`: an ETA at a glance.
fn human_secs(secs: f64) -> String {
    let s = secs.max(0.0).ceil() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Counts accumulated over a sweep for the summary.
#[derive(Debug, Default, Clone)]
pub(crate) struct Summary {
    /// Checks by status.
    pub by_status: BTreeMap<ProxyStatus, usize>,
    /// Failures by reason.
    pub by_reason: BTreeMap<&'static str, usize>,
}

impl Summary {
    /// Count one result.
    pub(crate) fn add(&mut self, r: &CheckResult) {
        *self.by_status.entry(r.status).or_default() += 1;
        if let Some(re) = r.reason {
            *self.by_reason.entry(re.as_str()).or_default() += 1;
        }
    }

    /// Total checks counted.
    pub(crate) fn total(&self) -> usize {
        self.by_status.values().sum()
    }

    /// Checks that found the proxy down (INACTIVE).
    pub(crate) fn failed(&self) -> usize {
        self.by_status
            .get(&ProxyStatus::Inactive)
            .copied()
            .unwrap_or(0)
    }

    /// The live line beside the progress bar after `elapsed` of a sweep of
    /// `total` proxies: failures so far, and the rate and ETA computed the
    /// way [`Summary::render`] computes its rate, so the last line of the
    /// bar and the summary agree.
    pub(crate) fn progress(&self, total: usize, elapsed: Duration) -> String {
        let done = self.total();
        let rate = checks_per_second(done, elapsed);
        let eta = if done == 0 || rate <= 0.0 {
            "?".to_string()
        } else {
            human_secs(total.saturating_sub(done) as f64 / rate)
        };
        format!("{} failed · {rate:.1} checks/s · eta {eta}", self.failed())
    }

    /// The human summary printed to stderr after a sweep.
    pub(crate) fn render(&self, elapsed: Duration, skipped_rows: usize) -> String {
        let total = self.total();
        let mut s = format!(
            "swept {total} proxies in {:.2}s ({:.1} checks/s)\n",
            elapsed.as_secs_f64(),
            checks_per_second(total, elapsed)
        );
        let statuses: Vec<String> = [
            ProxyStatus::Active,
            ProxyStatus::Slow,
            ProxyStatus::Inactive,
        ]
        .iter()
        .map(|st| {
            format!(
                "{}={}",
                st.as_str(),
                self.by_status.get(st).copied().unwrap_or(0)
            )
        })
        .collect();
        let _ = writeln!(s, "status: {}", statuses.join(" "));
        if !self.by_reason.is_empty() {
            let reasons: Vec<String> = self
                .by_reason
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(s, "reasons: {}", reasons.join(" "));
        }
        if skipped_rows > 0 {
            let _ = writeln!(
                s,
                "inventory: {skipped_rows} malformed entries skipped (see above)"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharox_exporter::{Anonymity, Geo, Phases, Reason};

    fn result(status: ProxyStatus) -> CheckResult {
        CheckResult {
            proxy_id: "p".into(),
            status,
            latency_ms: 5000,
            elapsed_ms: 1,
            attempts: 1,
            status_code: None,
            reason: (!status.is_up()).then_some(Reason::ConnectRefused),
            phase: None,
            error: None,
            checked_at: chrono::Utc::now(),
            phases: Phases::default(),
            exit: None,
        }
    }

    /// The `N.N checks/s` of a line.
    fn rate(line: &str) -> &str {
        let end = line.find(" checks/s").expect("a rate");
        let start = line[..end].rfind([' ', '(']).map(|i| i + 1).unwrap_or(0);
        &line[start..end]
    }

    #[test]
    fn progress_and_summary_agree_on_the_rate() {
        for (n, ms) in [(1usize, 3u64), (7, 999), (1000, 12_345), (123_457, 600_001)] {
            let mut s = Summary::default();
            for i in 0..n {
                s.add(&result(if i % 3 == 0 {
                    ProxyStatus::Inactive
                } else {
                    ProxyStatus::Active
                }));
            }
            let elapsed = Duration::from_millis(ms);
            let bar = s.progress(n, elapsed);
            let summary = s.render(elapsed, 0);
            assert_eq!(rate(&bar), rate(&summary), "{bar} vs {summary}");
            assert!(bar.ends_with("eta 0s"), "done: {bar}");
            assert!(
                bar.starts_with(&format!("{} failed", n.div_ceil(3))),
                "{bar}"
            );
        }
    }

    #[test]
    fn progress_mid_sweep() {
        let mut s = Summary::default();
        for st in [
            ProxyStatus::Active,
            ProxyStatus::Inactive,
            ProxyStatus::Slow,
        ] {
            s.add(&result(st));
        }
        // 3 done in 2 s: 1.5 checks/s, 297 left: 198 s.
        assert_eq!(
            s.progress(300, Duration::from_secs(2)),
            "1 failed · 1.5 checks/s · eta 3m18s"
        );
        assert_eq!(
            Summary::default().progress(10, Duration::ZERO),
            "0 failed · 0.0 checks/s · eta ?"
        );
        assert_eq!(human_secs(7300.0), "2h01m");
    }

    #[test]
    fn the_table_shows_how_long_a_failure_took_and_units() {
        let p = Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", 1);
        let r = result(ProxyStatus::Inactive);
        let t = table(&[(&p, &r)]);
        let mut lines = t.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        for h in [
            "LATENCY(ms)",
            "TOOK(ms)",
            "CONNECT(ms)",
            "HANDSHAKE(ms)",
            "TLS(ms)",
            "TTFB(ms)",
        ] {
            assert!(header.contains(&h), "{h}: {t}");
        }
        let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        let col = |h: &str| header.iter().position(|x| *x == h).map(|i| row[i]);
        assert_eq!(col("LATENCY(ms)"), Some("5000"), "pharox's latency: {t}");
        assert_eq!(col("TOOK(ms)"), Some("1"), "what it took: {t}");
        assert!(!header.contains(&"EXIT"), "no judge, no exit columns: {t}");
    }

    /// A proxy declared in DE whose judge saw it exit at 10.0.0.3 in US, transparent.
    fn judged() -> (Proxy, CheckResult) {
        let mut p = Proxy::new(ProxyProtocol::Http, "127.0.0.1", 3128);
        p.country = Some("DE".into());
        let mut r = result(ProxyStatus::Active);
        r.exit = Some(Exit {
            ip: Some(std::net::IpAddr::from([10, 0, 0, 3])),
            anonymity: Some(Anonymity::Transparent),
            anonymity_header: Some("x-forwarded-for".into()),
            geo: Some(Geo {
                country: Some("US".into()),
                ..Geo::default()
            }),
            geo_mismatch: true,
        });
        (p, r)
    }

    #[test]
    fn the_table_shows_the_exit_when_a_judge_saw_one() {
        let (p, r) = judged();
        let plain = Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", 1);
        let none = result(ProxyStatus::Active);
        let t = table(&[(&p, &r), (&plain, &none)]);
        let lines: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        let at = |h: &str| lines[0].iter().position(|x| *x == h).expect(h);
        let (exit, country, anon) = (at("EXIT"), at("COUNTRY"), at("ANONYMITY"));
        assert_eq!((exit, country, anon), (10, 11, 12), "before REASON: {t}");
        assert_eq!(
            [lines[1][exit], lines[1][country], lines[1][anon]],
            ["10.0.0.3", "US!=DE", "transparent"],
            "{t}"
        );
        assert_eq!(
            [lines[2][exit], lines[2][country], lines[2][anon]],
            ["-", "-", "-"],
            "empty when unknown: {t}"
        );
    }

    #[test]
    fn a_json_line_carries_the_exit_and_the_declared_country() {
        let (p, r) = judged();
        let v: serde_json::Value =
            serde_json::from_str(&ResultLine::new(&p, &r).to_json()).expect("JSON");
        assert_eq!(v["country"], "DE");
        assert_eq!(
            v["exit"],
            serde_json::json!({
                "ip": "10.0.0.3",
                "anonymity": "transparent",
                "anonymity_header": "x-forwarded-for",
                "geo": {"country": "US"},
                "geo_mismatch": true,
            })
        );
        let plain = Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", 1);
        let none = result(ProxyStatus::Active);
        let v: serde_json::Value =
            serde_json::from_str(&ResultLine::new(&plain, &none).to_json()).expect("JSON");
        assert!(v.get("exit").is_none() && v.get("country").is_none(), "{v}");
    }
}
