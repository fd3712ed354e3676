//! The Prometheus rules and the Alertmanager config, checked with the real
//! tools: `promtool check rules`, `promtool test rules` (unit tests for every
//! alert and recording rule), `promtool check config`, `amtool check-config`
//! and `amtool config routes test`. Mutation tests prove that the unit tests
//! catch a wrong comparison or a per-instance aggregation.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::support::bundle::*;
use serde_yaml_ng::Value as Yaml;

const PROMTOOL: &str = "/usr/bin/promtool";
const AMTOOL: &str = "/usr/bin/amtool";
const UNIT_TESTS: [&str; 2] = [
    "deploy/prometheus/tests/pharox-recording.test.yml",
    "deploy/prometheus/tests/pharox-alerts.test.yml",
];

fn promtool() -> Command {
    Command::new(tool(PROMTOOL, "prometheus"))
}

fn alerts() -> Vec<Yaml> {
    rules_of(RULE_FILES[1])
        .into_iter()
        .filter(|r| r["alert"].is_string())
        .collect()
}

#[test]
fn promtool_check_rules_passes() {
    let (ok, out) = run(promtool()
        .arg("check")
        .arg("rules")
        .args(RULE_FILES.map(path)));
    assert!(ok, "promtool check rules failed:\n{out}");
    assert!(out.contains("SUCCESS: 14 rules found"), "{out}");
}

#[test]
fn promtool_unit_tests_pass() {
    let (ok, out) = run(promtool()
        .arg("test")
        .arg("rules")
        .args(UNIT_TESTS.map(path)));
    assert!(ok, "promtool test rules failed:\n{out}");
    assert_eq!(out.matches("SUCCESS").count(), UNIT_TESTS.len(), "{out}");
}

/// Copy the rules and unit tests to a temp dir with `edit` applied to the
/// rule file `which`, and run the unit tests there.
fn unit_tests_with_mutation(which: usize, edit: impl Fn(&str) -> String) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("tests")).expect("mkdir");
    for (i, f) in RULE_FILES.iter().enumerate() {
        let text = read(f);
        let text = if i == which {
            let edited = edit(&text);
            assert_ne!(edited, text, "mutation of {f} changed nothing");
            edited
        } else {
            text
        };
        let name = std::path::Path::new(f).file_name().expect("file name");
        std::fs::write(dir.path().join("rules").join(name), text).expect("write");
    }
    let mut tests = Vec::new();
    for f in UNIT_TESTS {
        let name = std::path::Path::new(f).file_name().expect("file name");
        let p = dir.path().join("tests").join(name);
        std::fs::write(&p, read(f)).expect("write");
        tests.push(p);
    }
    run(promtool().arg("test").arg("rules").args(&tests))
}

#[test]
fn unit_tests_catch_a_strict_comparison() {
    // Every threshold alert must fire AT its threshold: with `>` instead of
    // `>=` the tests that sit exactly on a threshold must fail.
    let (ok, out) = unit_tests_with_mutation(1, |t| {
        t.replace(">= scalar(", "> scalar(")
            .replace(">= on (pool)", "> on (pool)")
    });
    assert!(!ok, "unit tests still pass with strict comparisons:\n{out}");
    for name in [
        "PharoxPoolInactiveRatioHigh",
        "PharoxPoolLatencyHigh",
        "PharoxProviderErrorRatioHigh",
        "PharoxStorageWritesFailing",
    ] {
        assert!(
            out.contains(&format!("alertname: {name}")),
            "{name} not caught:\n{out}"
        );
    }
}

#[test]
fn unit_tests_catch_a_shorter_for() {
    // With every `for:` cut to 1m, every alert fires too early.
    let re = regex::Regex::new(r"(?m)^(\s+for:\s*)\d+[smh]$").expect("regex");
    let (ok, out) = unit_tests_with_mutation(1, |t| re.replace_all(t, "${1}1m").into_owned());
    assert!(
        !ok,
        "unit tests still pass with `for: 1m` everywhere:\n{out}"
    );
    let names: BTreeSet<String> = alerts()
        .iter()
        .filter_map(|a| a["alert"].as_str().map(str::to_string))
        .collect();
    for name in names {
        assert!(
            out.contains(&format!("alertname: {name}")),
            "{name}: a shorter `for` is not caught:\n{out}"
        );
    }
}

#[test]
fn unit_tests_catch_a_lower_threshold() {
    // Lowering the warning threshold to 20% makes pool beta (20%) alert.
    let (ok, out) = unit_tests_with_mutation(1, |t| {
        t.replacen(
            "pool_inactive_ratio_warning\n        expr: vector(0.25)",
            "pool_inactive_ratio_warning\n        expr: vector(0.2)",
            1,
        )
    });
    assert!(!ok, "unit tests still pass with a lower threshold:\n{out}");
    assert!(
        out.contains("alertname: PharoxPoolInactiveRatioHigh"),
        "{out}"
    );
}

#[test]
fn unit_tests_catch_per_instance_aggregation() {
    // Ratios taken per exporter replica instead of over the pool.
    let (ok, out) = unit_tests_with_mutation(0, |t| {
        t.replace("sum by (pool) (", "sum by (pool, instance) (")
            .replace("sum by (pool, le) (", "sum by (pool, instance, le) (")
    });
    assert!(
        !ok,
        "unit tests still pass with per-instance ratios:\n{out}"
    );
    assert!(out.contains("pool:pharox_proxies_inactive:ratio"), "{out}");
    assert!(
        out.contains("alertname: PharoxPoolInactiveRatioHigh"),
        "{out}"
    );
    assert!(out.contains("alertname: PharoxPoolLatencyHigh"), "{out}");
}

#[test]
fn every_alert_is_labelled_annotated_and_has_a_runbook_section() {
    let runbook = anchors("docs/runbook.md");
    let base = "https://github.com/pharox-exporter/pharox-exporter/blob/main/docs/runbook.md#";
    let list = alerts();
    assert!(
        list.len() >= 9,
        "expected at least 9 alerts, found {}",
        list.len()
    );
    for a in &list {
        let name = a["alert"].as_str().expect("alert name");
        let sev = a["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            matches!(sev, "warning" | "critical"),
            "{name}: severity {sev:?}"
        );
        assert!(a["for"].is_string(), "{name}: no `for`");
        for key in ["summary", "description", "runbook_url"] {
            let v = a["annotations"][key].as_str().unwrap_or("");
            assert!(!v.trim().is_empty(), "{name}: annotation {key} missing");
        }
        let url = a["annotations"]["runbook_url"]
            .as_str()
            .expect("runbook_url");
        let frag = url
            .strip_prefix(base)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} not under {base}"));
        assert_eq!(
            frag,
            name.to_lowercase(),
            "{name}: runbook anchor should be the alert name"
        );
        assert!(
            runbook.contains(frag),
            "{name}: docs/runbook.md has no section #{frag}"
        );
        // Numbers in the description: the value, a queried figure, or (for
        // an absent target, which has no value) the duration.
        let desc = a["annotations"]["description"]
            .as_str()
            .expect("description");
        assert!(
            desc.contains("{{") || desc.chars().any(|c| c.is_ascii_digit()),
            "{name}: description has no figures"
        );
    }
}

/// Seconds of a Prometheus duration such as `90s`, `5m`, `1h`.
fn seconds(d: &str) -> u64 {
    let (num, unit) = d.split_at(d.len() - 1);
    let n: u64 = num.parse().unwrap_or_else(|_| panic!("duration {d}"));
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("duration {d}"),
    }
}

#[test]
fn every_alert_and_severity_has_unit_tests_before_and_after_its_for() {
    // For each (alertname, severity): a test case where it is absent at t and
    // present one evaluation interval later, at t + 1m >= its `for`, with
    // every annotation checked. That pins the `for` boundary.
    let t = yaml(UNIT_TESTS[1]);
    assert_eq!(t["evaluation_interval"], "1m");
    for a in alerts() {
        let name = a["alert"].as_str().expect("name");
        let sev = a["labels"]["severity"].as_str().expect("severity");
        let for_s = seconds(a["for"].as_str().expect("for"));
        let mut pinned = false;
        for case in t["tests"].as_sequence().expect("tests") {
            // eval_time -> does (name, sev) fire?
            let mut at: BTreeMap<u64, bool> = BTreeMap::new();
            for test in case["alert_rule_test"].as_sequence().into_iter().flatten() {
                if test["alertname"] != name {
                    continue;
                }
                let when = seconds(test["eval_time"].as_str().expect("eval_time"));
                let mut fires = false;
                for e in test["exp_alerts"].as_sequence().expect("exp_alerts") {
                    if e["exp_labels"]["severity"] == sev {
                        for key in ["summary", "description", "runbook_url"] {
                            assert!(
                                e["exp_annotations"][key].is_string(),
                                "{name}/{sev}: unit test does not check annotation {key}"
                            );
                        }
                        fires = true;
                    }
                }
                at.insert(when, fires);
            }
            pinned |= at
                .iter()
                .any(|(&t1, &f1)| !f1 && t1 + 60 >= for_s && at.get(&(t1 + 60)) == Some(&true));
        }
        assert!(pinned, "{name} ({sev}): no unit test shows it quiet one minute before firing at or after its for ({for_s}s)");
    }
}

#[test]
fn rule_expressions_only_use_contract_metrics() {
    let known = known_series();
    for f in RULE_FILES {
        for r in rules_of(f) {
            let expr = r["expr"].as_str().expect("expr");
            for m in metric_names(expr) {
                assert!(
                    known.contains(&m),
                    "{f}: {m} (in `{expr}`) is neither in docs/metrics.md nor recorded"
                );
            }
        }
    }
}

#[test]
fn thresholds_live_in_one_place() {
    // Alerts compare against recorded thresholds, never against literals.
    let thresholds: BTreeSet<String> = recorded_names()
        .into_iter()
        .filter(|n| n.starts_with("pharox:alert_threshold:"))
        .collect();
    assert!(thresholds.len() >= 5, "{thresholds:?}");
    for a in alerts() {
        let expr = a["expr"].as_str().expect("expr");
        if expr.contains(">=") {
            assert!(
                expr.contains("scalar(pharox:alert_threshold:"),
                "{}: threshold not read from a pharox:alert_threshold:* series: {expr}",
                a["alert"].as_str().unwrap_or("?")
            );
        }
    }
    for r in rules_of(RULE_FILES[1]) {
        if let Some(n) = r["record"].as_str() {
            assert!(
                n.starts_with("pharox:alert_threshold:"),
                "{n}: only thresholds are recorded in the alerts file"
            );
        }
    }
}

#[test]
fn promtool_check_config_passes() {
    let (ok, out) = run(promtool()
        .arg("check")
        .arg("config")
        .arg(path("deploy/prometheus/prometheus.yml")));
    assert!(ok, "promtool check config failed:\n{out}");
    // Debian's Prometheus is built without Kubernetes service discovery, so
    // the Kubernetes example can only be checked for shape here.
    let k8s = yaml("deploy/prometheus/prometheus-kubernetes.yml");
    let jobs = k8s["scrape_configs"].as_sequence().expect("scrape_configs");
    let job = jobs
        .iter()
        .find(|j| j["job_name"] == "pharox-exporter")
        .expect("job pharox-exporter");
    assert!(job["kubernetes_sd_configs"].is_sequence());
    let keep = job["relabel_configs"]
        .as_sequence()
        .expect("relabel_configs")
        .iter()
        .any(|r| r["action"] == "keep" && r["regex"] == "pharox-metrics");
    assert!(
        keep,
        "the Kubernetes job must keep the pharox-metrics container port"
    );
    let rules: Vec<_> = k8s["rule_files"]
        .as_sequence()
        .expect("rule_files")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        rules,
        vec![
            "rules/pharox-recording.rules.yml",
            "rules/pharox-alerts.rules.yml"
        ]
    );
}

#[test]
fn alertmanager_config_routes_by_severity_and_inhibits_warnings() {
    let amtool = tool(AMTOOL, "prometheus-alertmanager");
    let cfg = path("deploy/alertmanager/alertmanager.yml");
    let (ok, out) = run(Command::new(&amtool).arg("check-config").arg(&cfg));
    assert!(ok, "amtool check-config failed:\n{out}");
    for (labels, receiver) in [
        (vec!["severity=critical", "pool=alpha"], "pharox-critical"),
        (vec!["severity=warning", "pool=alpha"], "pharox-warning"),
        (
            vec!["severity=critical", "alertname=PharoxStorageWritesFailing"],
            "pharox-critical",
        ),
    ] {
        let (ok, out) = run(Command::new(&amtool)
            .args(["config", "routes", "test", "--config.file"])
            .arg(&cfg)
            .args(&labels));
        assert!(ok, "amtool routes test failed:\n{out}");
        assert_eq!(
            out.lines().next().unwrap_or("").trim(),
            receiver,
            "{labels:?}:\n{out}"
        );
    }
    let am = yaml("deploy/alertmanager/alertmanager.yml");
    // Grouping, for an alert of each kind of the rules file: pool alerts by
    // pool, provider alerts by provider, the pool-less rest by what they are
    // (never all together as pool="").
    for (labels, receiver, group_by) in [
        (
            vec![
                ("severity", "critical"),
                ("alertname", "PharoxPoolNoUsableProxies"),
                ("pool", "alpha"),
            ],
            "pharox-critical",
            vec!["pool"],
        ),
        (
            vec![
                ("severity", "warning"),
                ("alertname", "PharoxPoolLatencyHigh"),
                ("pool", "alpha"),
            ],
            "pharox-warning",
            vec!["pool"],
        ),
        (
            vec![
                ("severity", "warning"),
                ("alertname", "PharoxProviderErrorRatioHigh"),
                ("provider", "acme"),
            ],
            "pharox-warning",
            vec!["provider"],
        ),
        (
            vec![
                ("severity", "warning"),
                ("alertname", "PharoxSweepStalled"),
                ("instance", "r1"),
                ("job", "pharox-exporter"),
            ],
            "pharox-warning",
            vec!["alertname", "job", "instance"],
        ),
        (
            vec![
                ("severity", "critical"),
                ("alertname", "PharoxStorageWritesFailing"),
                ("job", "pharox-exporter"),
            ],
            "pharox-critical",
            vec!["alertname", "job", "instance"],
        ),
        (
            vec![
                ("severity", "warning"),
                ("alertname", "PharoxExporterAbsent"),
            ],
            "pharox-warning",
            vec!["alertname", "job", "instance"],
        ),
    ] {
        let (got_receiver, got_group_by) = route_of(&am["route"], &labels);
        assert_eq!(
            (got_receiver.as_str(), got_group_by),
            (
                receiver,
                group_by.iter().map(|s| s.to_string()).collect::<Vec<_>>()
            ),
            "{labels:?}"
        );
    }
    let inhibit = &am["inhibit_rules"][0];
    let src: Vec<_> = inhibit["source_matchers"]
        .as_sequence()
        .expect("source")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let dst: Vec<_> = inhibit["target_matchers"]
        .as_sequence()
        .expect("target")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(src.contains(&"severity=\"critical\""), "{src:?}");
    assert!(dst.contains(&"severity=\"warning\""), "{dst:?}");
    assert_eq!(inhibit["equal"][0], "pool");
}

/// Where Alertmanager's routing tree sends an alert with `labels` (first
/// matching child, recursively; no `continue` in our file): the receiver
/// and the `group_by`, each inherited from the parent when not set. Knows
/// the two matcher forms the file uses: `k="v"` and `k=~".+"`.
fn route_of(route: &Yaml, labels: &[(&str, &str)]) -> (String, Vec<String>) {
    fn walk(r: &Yaml, labels: &[(&str, &str)], receiver: &mut String, group_by: &mut Vec<String>) {
        if let Some(rc) = r["receiver"].as_str() {
            *receiver = rc.to_string();
        }
        if let Some(g) = r["group_by"].as_sequence() {
            *group_by = g
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
        }
        for child in r["routes"].as_sequence().into_iter().flatten() {
            assert!(
                child["continue"].is_null(),
                "route_of does not model `continue`"
            );
            let matches = child["matchers"]
                .as_sequence()
                .into_iter()
                .flatten()
                .all(|m| {
                    let m = m.as_str().expect("matcher string");
                    let label = |k: &str| labels.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
                    if let Some((k, _)) = m.split_once("=~\".+\"") {
                        label(k).is_some_and(|v| !v.is_empty())
                    } else {
                        let (k, v) = m.split_once('=').expect("k=v matcher");
                        label(k) == Some(v.trim_matches('"'))
                    }
                });
            if matches {
                walk(child, labels, receiver, group_by);
                return;
            }
        }
    }
    let (mut receiver, mut group_by) = (String::new(), Vec::new());
    walk(route, labels, &mut receiver, &mut group_by);
    (receiver, group_by)
}

#[test]
fn the_example_webhook_receiver_logs_notifications() {
    // deploy/alertmanager/receiver.py, the compose stack's `alert-receiver`.
    use std::io::{BufRead, BufReader, Read, Write};
    let python = tool("/usr/bin/python3", "python3");
    let mut child = Command::new(python)
        .arg(path("deploy/alertmanager/receiver.py"))
        .args(["127.0.0.1", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn receiver.py");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("first line");
    let port = first.trim().rsplit(':').next().unwrap_or("").to_string();
    let body = r#"{"receiver":"pharox-critical","status":"firing","groupLabels":{"pool":"alpha"},
        "alerts":[{"status":"firing","labels":{"alertname":"PharoxPoolNoUsableProxies","severity":"critical","pool":"alpha"},
        "annotations":{"summary":"Pool alpha has no ACTIVE or SLOW proxy"}}]}"#;
    let mut conn = std::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .unwrap_or_else(|e| panic!("connect to receiver ({first:?}): {e}"));
    write!(
        conn,
        "POST /critical HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut resp = String::new();
    conn.read_to_string(&mut resp).expect("response");
    let mut line = String::new();
    out.read_line(&mut line).expect("log line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"),
        "{resp}"
    );
    assert_eq!(
        line.trim(),
        "/critical receiver=pharox-critical group={pool=alpha} firing [critical] PharoxPoolNoUsableProxies pool=alpha: Pool alpha has no ACTIVE or SLOW proxy"
    );
}

#[test]
fn monitoring_doc_lists_every_alert_with_its_severity_and_for() {
    let doc = read("docs/monitoring.md");
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.starts_with("| `Pharox"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    let alerts = alerts();
    assert_eq!(
        rows.len(),
        alerts.len(),
        "docs/monitoring.md alert table: {rows:?}"
    );
    for a in alerts {
        let name = format!("`{}`", a["alert"].as_str().expect("name"));
        let sev = a["labels"]["severity"].as_str().expect("severity");
        let for_ = a["for"].as_str().expect("for");
        assert!(
            rows.iter()
                .any(|r| r[0] == name && r[1] == sev && r.last().map(String::as_str) == Some(for_)),
            "docs/monitoring.md has no row for {name} {sev} (for {for_})"
        );
    }
}
