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
    assert!(out.contains("SUCCESS: 13 rules found"), "{out}");
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
    let group_by: Vec<_> = am["route"]["group_by"]
        .as_sequence()
        .expect("group_by")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        group_by.contains(&"pool"),
        "alerts must be grouped by pool: {group_by:?}"
    );
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
