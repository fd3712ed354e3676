//! Helpers shared by the observability-bundle tests (`tests/it/bundle/`):
//! paths into the repository, the metric names contract of
//! `docs/metrics.md`, metric-name extraction from PromQL, walking Grafana
//! dashboards, and locating the Debian tools the tests drive.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// The repository root (where Cargo.toml is).
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path relative to the repository root.
pub(crate) fn path(rel: &str) -> PathBuf {
    root().join(rel)
}

/// Read a file relative to the repository root, panicking with its name.
pub(crate) fn read(rel: &str) -> String {
    let p = path(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Parse one YAML document.
pub(crate) fn yaml(rel: &str) -> Yaml {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: invalid YAML: {e}"))
}

/// Parse every document of a multi-document YAML file (empty ones skipped).
pub(crate) fn yaml_docs(rel: &str) -> Vec<Yaml> {
    use serde::Deserialize;
    let text = read(rel);
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: invalid YAML: {e}"));
        if !v.is_null() {
            out.push(v);
        }
    }
    out
}

/// The two rule files, recording first.
pub(crate) const RULE_FILES: [&str; 2] = [
    "deploy/prometheus/rules/pharox-recording.rules.yml",
    "deploy/prometheus/rules/pharox-alerts.rules.yml",
];

/// The Grafana dashboards.
pub(crate) fn dashboard_files() -> Vec<PathBuf> {
    let dir = path("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// Metric families of `docs/metrics.md`: name -> type.
pub(crate) fn contract() -> BTreeMap<String, String> {
    let re = Regex::new(r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*([a-z]+)\s*\|").expect("regex");
    let mut out = BTreeMap::new();
    for line in read("docs/metrics.md").lines() {
        if let Some(c) = re.captures(line) {
            out.insert(c[1].to_string(), c[2].to_string());
        }
    }
    assert!(
        out.len() > 20,
        "docs/metrics.md: parsed only {} metrics",
        out.len()
    );
    out
}

/// Every series name the contract allows: histograms expand to their
/// `_bucket`, `_sum` and `_count` series.
pub(crate) fn contract_series() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, kind) in contract() {
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        } else {
            out.insert(name);
        }
    }
    out
}

/// All rules of a rule file, flattened over its groups.
pub(crate) fn rules_of(rel: &str) -> Vec<Yaml> {
    let doc = yaml(rel);
    let mut out = Vec::new();
    for g in doc["groups"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{rel}: no groups"))
    {
        for r in g["rules"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{rel}: group without rules"))
        {
            out.push(r.clone());
        }
    }
    out
}

/// Names recorded by our recording rules (both files).
pub(crate) fn recorded_names() -> BTreeSet<String> {
    RULE_FILES
        .iter()
        .flat_map(|f| rules_of(f))
        .filter_map(|r| r["record"].as_str().map(str::to_string))
        .collect()
}

/// Series names PromQL may use: the contract, our recorded series, and
/// Prometheus' own `up`.
pub(crate) fn known_series() -> BTreeSet<String> {
    let mut s = contract_series();
    s.extend(recorded_names());
    s.insert("up".into());
    s
}

/// PromQL keywords that look like identifiers.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
];

/// Metric names referenced by a PromQL expression (after Grafana variables
/// are substituted or not: `$x` tokens are ignored).
pub(crate) fn metric_names(expr: &str) -> BTreeSet<String> {
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`"#).expect("regex");
    let braces = Regex::new(r"\{[^}]*\}").expect("regex");
    let brackets = Regex::new(r"\[[^\]]*\]").expect("regex");
    let grouping = Regex::new(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
        .expect("regex");
    let offset = Regex::new(r"\boffset\s+-?[0-9a-zA-Z$_]+").expect("regex");
    let numbers =
        Regex::new(r"(^|[^A-Za-z0-9_:$])[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?").expect("regex");
    let ident = Regex::new(r"\$?[A-Za-z_:][A-Za-z0-9_:]*").expect("regex");

    let s = strings.replace_all(expr, " ");
    let s = braces.replace_all(&s, " ");
    let s = brackets.replace_all(&s, " ");
    let s = grouping.replace_all(&s, " ");
    let s = offset.replace_all(&s, " ");
    let s = numbers.replace_all(&s, "$1 ");
    let mut out = BTreeSet::new();
    for m in ident.find_iter(&s) {
        let word = m.as_str();
        if word.starts_with('$') || KEYWORDS.contains(&word) {
            continue;
        }
        let rest = s[m.end()..].trim_start();
        if rest.starts_with('(') {
            continue; // a function or aggregation
        }
        out.insert(word.to_string());
    }
    out
}

/// Every panel of a dashboard, rows' nested panels included.
pub(crate) fn panels(dash: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        if let Some(arr) = list.as_array() {
            for p in arr {
                out.push(p);
                walk(&p["panels"], out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// The PromQL of every panel target of a dashboard: (panel title, expr).
pub(crate) fn panel_exprs(dash: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((
                    p["title"].as_str().unwrap_or("?").to_string(),
                    e.to_string(),
                ));
            }
        }
    }
    out
}

/// The query of a template variable (string or `{query: ...}` form).
pub(crate) fn variable_query(var: &Json) -> Option<String> {
    match &var["query"] {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("query").and_then(|q| q.as_str()).map(str::to_string),
        _ => None,
    }
}

/// The series selector inside `label_values(selector, label)`.
pub(crate) fn label_values_selector(q: &str) -> Option<(String, String)> {
    let re = Regex::new(r"^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")
        .expect("regex");
    re.captures(q).map(|c| (c[1].to_string(), c[2].to_string()))
}

/// Parse a dashboard.
pub(crate) fn dashboard(p: &Path) -> Json {
    let text =
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", p.display()))
}

/// A Debian-packaged tool, or a panic that names the package to install.
pub(crate) fn tool(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} not found: install the Debian package `{package}` (apt-get install {package})"
    );
    p
}

/// Run a command, returning (success, stdout + stderr).
pub(crate) fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// GitHub's anchor for a Markdown heading.
pub(crate) fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => Some(c),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

/// Anchors of every heading of a Markdown file.
pub(crate) fn anchors(rel: &str) -> BTreeSet<String> {
    read(rel)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_metric_names_from_promql() {
        let e = r#"topk(10, (sum by (provider) (rate(pharox_check_errors_total{pool=~"$pool"}[$__range])) or sum by (provider) (rate(pharox_checks_total{x="a b"}[5m])) * 0) / on (provider) group_left () sum without (le) (rate(pharox_checks_total[1m] offset 5m)))"#;
        let names: Vec<_> = metric_names(e).into_iter().collect();
        assert_eq!(
            names,
            vec!["pharox_check_errors_total", "pharox_checks_total"]
        );
        let e = r#"histogram_quantile(0.95, sum by (pool, le) (rate(pharox_check_duration_seconds_bucket[5m]))) >= scalar(pharox:alert_threshold:x) * 1e6"#;
        let names: Vec<_> = metric_names(e).into_iter().collect();
        assert_eq!(
            names,
            vec![
                "pharox:alert_threshold:x",
                "pharox_check_duration_seconds_bucket"
            ]
        );
        assert_eq!(
            metric_names("time() - up").into_iter().collect::<Vec<_>>(),
            vec!["up"]
        );
    }

    #[test]
    fn github_anchors() {
        assert_eq!(
            anchor(" PharoxPoolInactiveRatioHigh"),
            "pharoxpoolinactiveratiohigh"
        );
        assert_eq!(anchor("How to check (quickly)"), "how-to-check-quickly");
    }
}
