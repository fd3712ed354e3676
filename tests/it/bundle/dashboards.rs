//! The Grafana dashboards and provisioning files: valid JSON/YAML, stable
//! uids, the template variables, a description and the `${datasource}`
//! variable on every panel, the panels the issue asks for, and only metric
//! names that exist in docs/metrics.md (or are recorded by our rules).

use std::collections::BTreeSet;

use crate::support::bundle::*;
use serde_json::Value as Json;

const UIDS: [(&str, &str); 2] = [
    ("pharox-latency-providers.json", "pharox-latency-providers"),
    ("pharox-pool-health.json", "pharox-pool-health"),
];

fn load(name: &str) -> Json {
    dashboard(&path(&format!("grafana/dashboards/{name}")))
}

#[test]
fn dashboards_have_stable_uids_titles_and_import_inputs() {
    let files = dashboard_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        UIDS.iter().map(|(f, _)| f.to_string()).collect::<Vec<_>>()
    );
    let mut seen = BTreeSet::new();
    for (file, uid) in UIDS {
        let d = load(file);
        assert_eq!(d["uid"], uid, "{file}: uid");
        assert!(
            uid.len() <= 40,
            "{file}: Grafana uids are at most 40 characters"
        );
        assert!(seen.insert(uid));
        assert!(
            d["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("pharox / ")),
            "{file}: title"
        );
        assert!(
            d["description"].as_str().is_some_and(|t| !t.is_empty()),
            "{file}: description"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{file}: schemaVersion"
        );
        // Importable: an __inputs data source for the import dialog...
        let input = &d["__inputs"][0];
        assert_eq!(input["name"], "DS_PROMETHEUS", "{file}: __inputs");
        assert_eq!(input["type"], "datasource");
        assert_eq!(input["pluginId"], "prometheus");
        // ...whose only use is the datasource variable's default, so that a
        // provisioned copy (where nothing replaces ${DS_PROMETHEUS}) falls
        // back to the default data source instead of breaking panels.
        let text =
            std::fs::read_to_string(path(&format!("grafana/dashboards/{file}"))).expect("read");
        assert_eq!(
            text.matches("${DS_PROMETHEUS}").count(),
            2,
            "{file}: ${{DS_PROMETHEUS}} used outside the variable"
        );
    }
}

#[test]
fn dashboards_have_the_template_variables() {
    for (file, _) in UIDS {
        let d = load(file);
        let vars = d["templating"]["list"].as_array().expect("templating.list");
        let by_name = |n: &str| {
            vars.iter()
                .find(|v| v["name"] == n)
                .unwrap_or_else(|| panic!("{file}: no ${n} variable"))
        };
        let ds = by_name("datasource");
        assert_eq!(ds["type"], "datasource", "{file}");
        assert_eq!(ds["query"], "prometheus", "{file}");
        for name in ["pool", "provider", "protocol"] {
            let v = by_name(name);
            assert_eq!(v["type"], "query", "{file}: ${name}");
            assert_eq!(
                v["datasource"]["uid"], "${datasource}",
                "{file}: ${name} datasource"
            );
            assert_eq!(v["includeAll"], true, "{file}: ${name} includeAll");
            assert_eq!(v["multi"], true, "{file}: ${name} multi");
            assert_eq!(v["allValue"], ".*", "{file}: ${name} allValue");
            let q = variable_query(v).unwrap_or_else(|| panic!("{file}: ${name} has no query"));
            let (_, label) =
                label_values_selector(&q).unwrap_or_else(|| panic!("{file}: ${name}: {q}"));
            assert_eq!(label, name, "{file}: ${name} queries label {label}");
        }
        for v in vars {
            assert!(
                v["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{file}: ${} has no description",
                v["name"]
            );
        }
    }
}

#[test]
fn every_panel_has_a_description_and_the_datasource_variable() {
    for (file, _) in UIDS {
        let d = load(file);
        let mut ids = BTreeSet::new();
        let all = panels(&d);
        assert!(all.len() >= 8, "{file}: only {} panels", all.len());
        for p in all {
            let title = p["title"].as_str().unwrap_or("?");
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{file}: duplicate panel id in {title}"
            );
            assert!(
                p["description"]
                    .as_str()
                    .is_some_and(|s| s.trim().len() > 10),
                "{file}: panel {title:?} has no description"
            );
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
            assert!(x + w <= 24, "{file}: panel {title:?} wider than the grid");
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: panel {title:?} datasource"
            );
            let targets = p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("{file}: panel {title:?} has no targets"));
            assert!(
                !targets.is_empty(),
                "{file}: panel {title:?} has no targets"
            );
            for t in targets {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{file}: {title:?} target datasource"
                );
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                    "{file}: {title:?} target without expr"
                );
            }
        }
    }
}

#[test]
fn every_metric_name_exists_in_the_contract() {
    let known = known_series();
    let mut used = BTreeSet::new();
    for (file, _) in UIDS {
        let d = load(file);
        for (title, expr) in panel_exprs(&d) {
            for m in metric_names(&expr) {
                assert!(
                    known.contains(&m),
                    "{file}: panel {title:?} uses {m}, not in docs/metrics.md nor recorded: {expr}"
                );
                used.insert(m);
            }
        }
        for v in d["templating"]["list"].as_array().expect("vars") {
            if let Some((sel, _)) = variable_query(v).as_deref().and_then(label_values_selector) {
                for m in metric_names(&sel) {
                    assert!(
                        known.contains(&m),
                        "{file}: variable {} uses {m}",
                        v["name"]
                    );
                }
            }
        }
    }
    // The dashboards cover the contract's main families.
    for m in [
        "pharox_proxies",
        "pharox_proxies_unchecked",
        "pharox_checks_total",
        "pharox_check_errors_total",
        "pharox_check_timeouts_total",
        "pharox_check_duration_seconds_bucket",
        "pharox_check_phase_duration_seconds_bucket",
        "pharox_check_phase_duration_seconds_sum",
        "pharox_exporter_sweep_last_duration_seconds",
        "pharox_exporter_sweep_interval_seconds",
        "pharox_exporter_sweep_last_completed_timestamp_seconds",
        "pharox:alert_threshold:pool_inactive_ratio_warning",
        "pharox:alert_threshold:pool_inactive_ratio_critical",
        "pharox_proxies_by_anonymity",
        "pharox_proxies_by_exit_country",
        "pharox_exit_ips_distinct",
        "pharox_proxies_geo_mismatched",
    ] {
        assert!(used.contains(m), "no dashboard panel uses {m}");
    }
}

fn find<'a>(d: &'a Json, title_part: &str) -> &'a Json {
    panels(d)
        .into_iter()
        .find(|p| p["title"].as_str().is_some_and(|t| t.contains(title_part)))
        .unwrap_or_else(|| panic!("no panel titled like {title_part:?}"))
}

fn exprs(p: &Json) -> Vec<String> {
    p["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn pool_health_dashboard_has_the_required_panels() {
    let d = load("pharox-pool-health.json");
    let by_status = find(&d, "Proxies by status");
    assert_eq!(by_status["repeat"], "pool", "one stacked panel per pool");
    assert_eq!(
        by_status["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"],
        "normal"
    );
    let ratio = exprs(find(&d, "INACTIVE ratio per pool"));
    assert!(ratio[0].starts_with("sum by (pool)"), "{ratio:?}");
    assert!(
        ratio
            .iter()
            .any(|e| e == "pharox:alert_threshold:pool_inactive_ratio_warning"),
        "{ratio:?}"
    );
    assert!(
        ratio
            .iter()
            .any(|e| e == "pharox:alert_threshold:pool_inactive_ratio_critical"),
        "{ratio:?}"
    );
    assert!(exprs(find(&d, "ACTIVE / SLOW / INACTIVE trend"))[0].contains("sum by (status)"));
    assert!(exprs(find(&d, "Checks per second"))[0].contains("rate(pharox_checks_total"));
    assert!(exprs(find(&d, "Errors per second by reason"))[0].contains("sum by (reason)"));
    assert!(exprs(find(&d, "Top providers by error ratio"))[0].starts_with("topk("));
    let sweep = exprs(find(&d, "Sweep duration vs interval"));
    assert!(sweep
        .iter()
        .any(|e| e.contains("pharox_exporter_sweep_last_duration_seconds")));
    assert!(sweep
        .iter()
        .any(|e| e.contains("pharox_exporter_sweep_interval_seconds")));
    assert!(exprs(find(&d, "Last sweep age"))[0]
        .contains("time() - pharox_exporter_sweep_last_completed_timestamp_seconds"));
}

#[test]
fn latency_dashboard_has_the_required_panels() {
    let d = load("pharox-latency-providers.json");
    let heat = find(&d, "heatmap");
    assert_eq!(heat["type"], "heatmap");
    assert_eq!(heat["targets"][0]["format"], "heatmap");
    assert!(exprs(heat)[0].contains("sum by (le) (rate(pharox_check_duration_seconds_bucket"));
    for (title, by) in [("by provider", "provider"), ("by protocol", "protocol")] {
        let e = exprs(find(&d, &format!("Latency p50 / p95 / p99 {title}")));
        for q in ["0.5", "0.95", "0.99"] {
            assert!(
                e.iter()
                    .any(|x| x.starts_with(&format!("histogram_quantile({q}, sum by ({by}, le)"))),
                "{title}: no p{q}: {e:?}"
            );
        }
    }
    let phases = exprs(find(&d, "Mean time per phase"));
    for ph in ["connect", "handshake", "tls", "first_byte"] {
        assert!(phases[0].contains(ph), "phase {ph} missing: {phases:?}");
    }
    let table = find(&d, "Provider comparison");
    assert_eq!(table["type"], "table");
    assert!(table["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .all(|t| t["instant"] == true && t["format"] == "table"));
}

#[test]
fn provisioning_points_at_the_dashboards() {
    let ds = yaml("grafana/provisioning/datasources/pharox-prometheus.yml");
    assert_eq!(ds["apiVersion"], 1);
    let p = &ds["datasources"][0];
    assert_eq!(p["type"], "prometheus");
    assert_eq!(p["isDefault"], true);
    assert!(p["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let prov = yaml("grafana/provisioning/dashboards/pharox.yml");
    assert_eq!(prov["apiVersion"], 1);
    let provider = &prov["providers"][0];
    assert_eq!(provider["type"], "file");
    let dir = provider["options"]["path"].as_str().expect("options.path");
    // docker-compose mounts grafana/dashboards exactly there.
    let compose = yaml("deploy/docker-compose.yml");
    let mounts: Vec<&str> = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("../grafana/dashboards:") && m.contains(&format!(":{dir}"))),
        "{mounts:?} vs {dir}"
    );
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("../grafana/provisioning:/etc/grafana/provisioning")),
        "{mounts:?}"
    );
}

/// Label names of each series of docs/metrics.md (histograms expanded).
fn contract_labels() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let re = regex::Regex::new(r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*([a-z]+)\s*\|([^|]*)\|")
        .expect("regex");
    let mut out = std::collections::BTreeMap::new();
    for line in read("docs/metrics.md").lines() {
        let Some(c) = re.captures(line) else { continue };
        // "pool, provider, protocol" or "kind (`read`, `empty`)": first word of each.
        let labels: BTreeSet<String> = c[3]
            .split([',', '('])
            .filter(|s| !s.contains('`'))
            .filter_map(|s| s.split_whitespace().next().map(str::to_string))
            .collect();
        let name = c[1].to_string();
        if &c[2] == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"), labels.clone());
            }
        } else {
            out.insert(name, labels);
        }
    }
    out
}

#[test]
fn the_provider_variable_applies_exactly_where_series_carry_a_provider() {
    let labels = contract_labels();
    assert!(labels["pharox_checks_total"].contains("provider"));
    assert!(!labels["pharox_check_timeouts_total"].contains("provider"));
    let selector = regex::Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}").expect("regex");
    for (file, _) in UIDS {
        let d = load(file);
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or("?");
            let mut cannot = false;
            for e in exprs(p) {
                for c in selector.captures_iter(&e) {
                    let (m, sel) = (&c[1], &c[2]);
                    let Some(has) = labels.get(m) else { continue };
                    let has_provider = has.contains("provider");
                    assert_eq!(
                        sel.contains("$provider"),
                        has_provider && sel.contains("$pool"),
                        "{file}: {title:?}: {m} {{{sel}}}: $provider must filter every \
                         pool-filtered series with a provider label, and nothing else"
                    );
                    cannot |= !has_provider && sel.contains("$pool");
                }
            }
            if cannot {
                assert!(
                    p["description"]
                        .as_str()
                        .is_some_and(|s| s.contains("provider variable does not apply")),
                    "{file}: {title:?} ignores $provider: its description must say so"
                );
            }
        }
    }
}

#[test]
fn stat_panels_have_thresholds_green_at_zero_inactive() {
    for (file, _) in UIDS {
        let d = load(file);
        for p in panels(&d).into_iter().filter(|p| p["type"] == "stat") {
            let title = p["title"].as_str().unwrap_or("?");
            let fc = &p["fieldConfig"]["defaults"];
            assert_eq!(fc["color"]["mode"], "thresholds", "{file}: {title:?}");
            let steps = fc["thresholds"]["steps"].as_array().expect("steps");
            assert!(steps.len() >= 2, "{file}: {title:?}: {steps:?}");
        }
    }
    let d = load("pharox-pool-health.json");
    let inactive = find(&d, "INACTIVE proxies");
    let steps = &inactive["fieldConfig"]["defaults"]["thresholds"]["steps"];
    assert_eq!(steps[0]["color"], "green", "0 INACTIVE is green");
    assert_eq!(steps[1]["value"], 1, "from 1 INACTIVE it is not");
    let ratio = &find(&d, "INACTIVE ratio")["fieldConfig"]["defaults"]["thresholds"]["steps"];
    assert_eq!(
        (ratio[1]["value"].as_f64(), ratio[2]["value"].as_f64()),
        (Some(0.25), Some(0.5))
    );
    let usable = &find(&d, "Usable proxies")["fieldConfig"]["defaults"]["thresholds"]["steps"];
    assert_eq!(usable[0]["color"], "red", "no usable proxy is red");
}

#[test]
fn one_unit_per_axis() {
    for (file, _) in UIDS {
        let d = load(file);
        for p in panels(&d).into_iter().filter(|p| p["type"] == "timeseries") {
            let title = p["title"].as_str().unwrap_or("?");
            let fc = &p["fieldConfig"];
            let mut axes: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
            let default_unit = fc["defaults"]["unit"]
                .as_str()
                .unwrap_or("none")
                .to_string();
            let default_axis = fc["defaults"]["custom"]["axisPlacement"]
                .as_str()
                .unwrap_or("auto")
                .to_string();
            axes.entry(default_axis.clone())
                .or_default()
                .insert(default_unit.clone());
            for o in fc["overrides"].as_array().into_iter().flatten() {
                let props = o["properties"].as_array().expect("properties");
                let prop = |id: &str| {
                    props
                        .iter()
                        .find(|x| x["id"] == id)
                        .and_then(|x| x["value"].as_str())
                        .map(str::to_string)
                };
                if let Some(unit) = prop("unit") {
                    let axis = prop("custom.axisPlacement").unwrap_or(default_axis.clone());
                    axes.entry(axis).or_default().insert(unit);
                }
            }
            for (axis, units) in axes {
                assert_eq!(
                    units.len(),
                    1,
                    "{file}: {title:?}: axis {axis} mixes units {units:?}"
                );
            }
        }
    }
}

#[test]
fn latency_is_compared_with_each_pools_own_slow_threshold() {
    let d = load("pharox-latency-providers.json");
    let e = exprs(find(&d, "p95 latency per pool vs slow threshold"));
    assert!(
        e.iter()
            .any(|x| x.starts_with("max by (pool) (pharox_exporter_slow_threshold_seconds{")),
        "{e:?}"
    );
    assert!(
        !e.iter().any(|x| x.contains("pharox:alert_threshold")),
        "one constant for every pool: {e:?}"
    );
}

#[test]
fn pool_health_lists_the_proxies_down_now() {
    let d = load("pharox-pool-health.json");
    let p = find(&d, "Proxies down now");
    assert_eq!(p["type"], "table");
    let e = exprs(p);
    assert!(
        e[0].starts_with("pharox_proxy_up{") && e[0].ends_with("== 0"),
        "{e:?}"
    );
    assert!(p["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .all(|t| t["instant"] == true && t["format"] == "table"));
    assert!(
        p["description"]
            .as_str()
            .is_some_and(|s| s.contains("metrics.per_proxy")),
        "says it needs per-proxy series"
    );
}

#[test]
fn pool_health_has_an_exits_row() {
    let d = load("pharox-pool-health.json");
    let all = panels(&d);
    let row = all
        .iter()
        .position(|p| p["type"] == "row" && p["title"] == "Exits")
        .expect("an Exits row");
    // The row's panels sit below it, before the next row.
    let below: Vec<&str> = all[row + 1..]
        .iter()
        .take_while(|p| p["type"] != "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert_eq!(
        below,
        [
            "Proxies by anonymity level",
            "Exit countries",
            "Distinct exit IPs per pool (last sweep)",
            "Geo mismatches per pool",
            "Transparent proxies per pool",
        ]
    );
    let y = all[row]["gridPos"]["y"].as_u64().expect("y");
    for p in &all[row + 1..] {
        assert!(
            p["gridPos"]["y"].as_u64().expect("y") > y,
            "{}: above its row",
            p["title"]
        );
    }
    assert_eq!(
        exprs(find(&d, "Proxies by anonymity level"))[0],
        r#"sum by (level) (pharox_proxies_by_anonymity{pool=~"$pool", protocol=~"$protocol"})"#
    );
    let countries = find(&d, "Exit countries");
    assert_eq!(
        countries["targets"][0]["instant"], true,
        "the countries now"
    );
    assert!(exprs(countries)[0].contains("sum by (country) (pharox_proxies_by_exit_country{"));
    assert!(exprs(find(&d, "Distinct exit IPs"))[0]
        .starts_with("sum by (pool) (pharox_exit_ips_distinct{"));
    assert!(exprs(find(&d, "Geo mismatches per pool"))[0]
        .starts_with("sum by (pool) (pharox_proxies_geo_mismatched{"));
    // What PharoxTransparentProxiesInStrictPool counts, before its join on
    // the pools that require more (a panel must have data without one).
    let alert = rules_of("deploy/prometheus/rules/pharox-alerts.rules.yml")
        .into_iter()
        .find(|r| r["alert"] == "PharoxTransparentProxiesInStrictPool")
        .expect("the alert");
    let panel = exprs(find(&d, "Transparent proxies per pool"))[0]
        .replace(r#"pool=~"$pool", protocol=~"$protocol", "#, "");
    assert!(
        alert["expr"]
            .as_str()
            .expect("expr")
            .starts_with(&format!("{panel} > 0")),
        "{panel}"
    );
}
