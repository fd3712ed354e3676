//! Deployment files: the Kubernetes manifests (multi-document YAML) fit
//! together, the PrometheusRule objects equal the rule files and are exactly
//! what the generator script produces, the compose file wires every service
//! to files that exist, and the Dockerfile builds a small non-root image.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::bundle::*;
use serde_yaml_ng::Value as Yaml;

const K8S_DIR: &str = "deploy/kubernetes";
/// The shared objects (kustomize base) and the sidecar overlay.
const K8S_DIRS: [&str; 2] = ["deploy/kubernetes/base", "deploy/kubernetes/sidecar"];

/// Every object of every YAML file of the base and the sidecar overlay, by kind.
fn k8s_objects() -> BTreeMap<String, Vec<Yaml>> {
    let mut files: Vec<_> = K8S_DIRS
        .iter()
        .flat_map(|d| std::fs::read_dir(path(d)).expect("list deploy/kubernetes"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out: BTreeMap<String, Vec<Yaml>> = BTreeMap::new();
    for f in files {
        let rel = f
            .strip_prefix(root())
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        for doc in yaml_docs(&rel) {
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{rel}: object without kind"))
                .to_string();
            if kind != "Kustomization" {
                assert!(
                    doc["apiVersion"].is_string(),
                    "{rel}: {kind} without apiVersion"
                );
                assert!(
                    doc["metadata"]["name"].is_string(),
                    "{rel}: {kind} without metadata.name"
                );
            }
            out.entry(kind).or_default().push(doc);
        }
    }
    out
}

fn one<'a>(objs: &'a BTreeMap<String, Vec<Yaml>>, kind: &str) -> &'a Yaml {
    let list = objs
        .get(kind)
        .unwrap_or_else(|| panic!("no {kind} in {K8S_DIR}"));
    assert_eq!(list.len(), 1, "expected one {kind}");
    &list[0]
}

fn labels_match(selector: &Yaml, labels: &Yaml) -> bool {
    selector.as_mapping().is_some_and(|m| {
        !m.is_empty()
            && m.iter()
                .all(|(k, v)| &labels[k.as_str().unwrap_or("")] == v)
    })
}

#[test]
fn kubernetes_manifests_fit_together() {
    let objs = k8s_objects();
    let deploy = one(&objs, "Deployment");
    let service = one(&objs, "Service");
    let monitor = one(&objs, "ServiceMonitor");
    let config = one(&objs, "ConfigMap");
    let secret = one(&objs, "Secret");

    let pod = &deploy["spec"]["template"];
    assert!(
        labels_match(
            &deploy["spec"]["selector"]["matchLabels"],
            &pod["metadata"]["labels"]
        ),
        "Deployment selector"
    );
    let containers = pod["spec"]["containers"].as_sequence().expect("containers");
    assert!(
        containers.len() >= 2,
        "the exporter runs as a sidecar next to an app container"
    );
    let exporter = containers
        .iter()
        .find(|c| c["name"] == "pharox-exporter")
        .expect("pharox-exporter container");
    let args: Vec<&str> = exporter["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        args.contains(&"--config.file=/etc/pharox/config/pharox.yml"),
        "{args:?}"
    );
    let port = &exporter["ports"][0];
    assert_eq!(port["name"], "pharox-metrics");
    assert_eq!(port["containerPort"], 10187);
    assert_eq!(exporter["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    // A sidecar's readiness would be the app pod's: no readinessProbe.
    assert!(exporter["readinessProbe"].is_null());
    assert_eq!(exporter["startupProbe"]["httpGet"]["path"], "/-/healthy");
    let sc = &exporter["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert!(sc["runAsUser"].as_u64().is_some_and(|u| u != 0));

    // Volumes: the ConfigMap holds the config, the Secret the inventory
    // (credentials), and the config points into the Secret's mount.
    let volumes = pod["spec"]["volumes"].as_sequence().expect("volumes");
    let vol = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    let mount = |name: &str| {
        exporter["volumeMounts"]
            .as_sequence()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("mount {name}"))
            .clone()
    };
    assert_eq!(
        vol("pharox-config")["configMap"]["name"],
        config["metadata"]["name"]
    );
    assert_eq!(
        vol("pharox-inventory")["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    assert_eq!(mount("pharox-config")["mountPath"], "/etc/pharox/config");
    let inv_dir = mount("pharox-inventory")["mountPath"]
        .as_str()
        .expect("mountPath")
        .to_string();
    let cfg: Yaml = serde_yaml_ng::from_str(
        config["data"]["pharox.yml"]
            .as_str()
            .expect("data.pharox.yml"),
    )
    .expect("config YAML");
    let inv_path = cfg["inventory"]["path"].as_str().expect("inventory.path");
    let inv_file = inv_path
        .strip_prefix(&format!("{inv_dir}/"))
        .unwrap_or_else(|| panic!("{inv_path} not under {inv_dir}"));
    let csv = secret["stringData"][inv_file]
        .as_str()
        .unwrap_or_else(|| panic!("Secret has no {inv_file}"));
    assert!(
        csv.starts_with("id,protocol,host,port,username,password,pool,provider\n"),
        "{csv}"
    );
    assert!(
        config["data"]["pharox.yml"]
            .as_str()
            .is_some_and(|c| !c.contains("password")),
        "no credentials in the ConfigMap"
    );

    // Service -> pods, ServiceMonitor -> Service, ports by name.
    assert!(
        labels_match(&service["spec"]["selector"], &pod["metadata"]["labels"]),
        "Service selects the pods"
    );
    let sport = &service["spec"]["ports"][0];
    assert_eq!(sport["name"], "pharox-metrics");
    assert_eq!(sport["targetPort"], "pharox-metrics");
    assert!(
        labels_match(
            &monitor["spec"]["selector"]["matchLabels"],
            &service["metadata"]["labels"]
        ),
        "ServiceMonitor selects the Service"
    );
    let ep = &monitor["spec"]["endpoints"][0];
    assert_eq!(ep["port"], "pharox-metrics");
    assert_eq!(ep["path"], "/metrics");
    let relabel = ep["relabelings"].as_sequence().expect("relabelings");
    assert!(
        relabel
            .iter()
            .any(|r| r["targetLabel"] == "job" && r["replacement"] == "pharox-exporter"),
        "the alert rules select job=\"pharox-exporter\""
    );

    // Each kustomization lists exactly the manifest files of its directory
    // (the overlays also the base).
    for dir in K8S_DIRS.iter().chain(&["deploy/kubernetes/sharded"]) {
        let kust = yaml(&format!("{dir}/kustomization.yaml"));
        let mut listed: Vec<String> = kust["resources"]
            .as_sequence()
            .expect("resources")
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .filter(|r| r != "../base")
            .collect();
        listed.sort();
        let mut files: Vec<String> = std::fs::read_dir(path(dir))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        files.sort();
        assert_eq!(listed, files, "{dir}");
    }
}

#[test]
fn prometheusrules_equal_the_rule_files() {
    let objs = k8s_objects();
    let rules = objs.get("PrometheusRule").expect("PrometheusRule objects");
    assert_eq!(rules.len(), 2);
    for (obj, (kind, file)) in rules
        .iter()
        .zip([("recording", RULE_FILES[0]), ("alerts", RULE_FILES[1])])
    {
        assert_eq!(obj["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(
            obj["metadata"]["name"],
            format!("pharox-exporter-{kind}").as_str()
        );
        let source = yaml(file);
        assert_eq!(
            obj["spec"]["groups"], source["groups"],
            "PrometheusRule pharox-exporter-{kind} differs from {file}"
        );
    }
}

#[test]
fn prometheusrule_file_is_what_the_generator_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("prometheusrule.yaml");
    let (ok, log) = run(Command::new("sh")
        .arg(path(&format!("{K8S_DIR}/generate-prometheusrule.sh")))
        .arg(&out));
    assert!(ok, "generator failed: {log}");
    let fresh = std::fs::read_to_string(&out).expect("generated file");
    let committed = read(&format!("{K8S_DIR}/base/prometheusrule.yaml"));
    assert!(
        fresh == committed,
        "deploy/kubernetes/base/prometheusrule.yaml is stale: run deploy/kubernetes/generate-prometheusrule.sh"
    );
}

#[test]
fn compose_file_wires_the_stack() {
    let compose = yaml("deploy/docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    for name in [
        "pharox-exporter",
        "prometheus",
        "alertmanager",
        "grafana",
        "alert-receiver",
    ] {
        assert!(services.contains_key(name), "compose has no {name} service");
    }
    // Every webhook of the Alertmanager example reaches a service of the
    // stack, on the port that service listens on.
    let am = read("deploy/alertmanager/alertmanager.yml");
    let url = regex::Regex::new(r"url: http://([a-z0-9-]+):([0-9]+)/").expect("regex");
    let hooks: Vec<_> = url.captures_iter(&am).collect();
    assert!(!hooks.is_empty(), "no webhook in alertmanager.yml");
    for c in hooks {
        let svc = &compose["services"][&c[1]];
        let command: Vec<&str> = svc["command"]
            .as_sequence()
            .unwrap_or_else(|| panic!("webhook host {} is not a compose service", &c[1]))
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(
            command.last(),
            Some(&&c[2]),
            "{}: listens on {command:?}",
            &c[0]
        );
    }
    assert!(
        compose["services"]["alertmanager"]["depends_on"]
            .as_sequence()
            .is_some_and(|d| d.iter().any(|v| v == "alert-receiver")),
        "alertmanager starts after its receiver"
    );
    let deploy_dir = path("deploy");
    for (name, svc) in services {
        let name = name.as_str().expect("service name");
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let spec = v.as_str().expect("short volume syntax");
            let host = spec.split(':').next().expect("host part");
            if host.starts_with('.') {
                let p = deploy_dir.join(host);
                assert!(
                    p.exists(),
                    "{name}: volume source {host} does not exist ({})",
                    p.display()
                );
            } else {
                assert!(
                    compose["volumes"]
                        .as_mapping()
                        .is_some_and(|m| m.contains_key(host)),
                    "{name}: named volume {host} not declared"
                );
            }
        }
        for p in svc["ports"].as_sequence().into_iter().flatten() {
            let p = p.as_str().expect("port string");
            assert!(
                p.starts_with("127.0.0.1:"),
                "{name}: port {p} must be published on loopback only"
            );
        }
    }
    let exporter = &compose["services"]["pharox-exporter"];
    assert_eq!(exporter["build"]["dockerfile"], "deploy/Dockerfile");
    assert_eq!(exporter["build"]["context"], "..");
    // Prometheus reaches the exporter and Alertmanager by service name.
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let job = prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|j| j["job_name"] == "pharox-exporter")
        .expect("job pharox-exporter")
        .clone();
    assert_eq!(
        job["static_configs"][0]["targets"][0],
        "pharox-exporter:10187"
    );
    assert_eq!(
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
        "alertmanager:9093"
    );
    let prom_mounts: Vec<&str> = compose["services"]["prometheus"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(prom_mounts.contains(&"./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"));
    assert!(prom_mounts.contains(&"./prometheus/rules:/etc/prometheus/rules:ro"));
    let am_mounts: Vec<&str> = compose["services"]["alertmanager"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(am_mounts
        .contains(&"./alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"));
    // The Grafana data source reaches Prometheus by service name.
    let ds = yaml("grafana/provisioning/datasources/pharox-prometheus.yml");
    assert_eq!(ds["datasources"][0]["url"], "http://prometheus:9090");
}

#[test]
fn dockerfile_is_multi_stage_small_and_non_root() {
    let text = read("deploy/Dockerfile");
    let froms: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage build expected: {froms:?}");
    let last = froms.last().expect("final stage");
    assert!(
        last.contains("distroless")
            || last.contains("scratch")
            || last.contains("chainguard/static"),
        "final stage must be static or distroless: {last}"
    );
    let final_stage = &text[text.rfind(last).expect("stage")..];
    let user = final_stage
        .lines()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("the final stage sets USER");
    let uid = user.split(':').next().expect("uid").trim();
    assert!(uid != "root" && uid != "0", "runs as root: USER {user}");
    assert!(text.contains("cargo build --release --locked --bin pharox-exporter"));
    // The context has no .git: the revision comes in as a build argument.
    assert!(
        text.contains("ARG REVISION") && text.contains("PHAROX_REVISION=${REVISION}"),
        "the build stage passes REVISION to build.rs"
    );
    assert!(final_stage.contains("ENTRYPOINT [\"/usr/local/bin/pharox-exporter\"]"));
    assert!(final_stage.contains("EXPOSE 10187"));
    // Every COPY source of the final stage that comes from the context exists.
    for l in final_stage
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let src = l.split_whitespace().nth(1).expect("COPY source");
        assert!(path(src).exists(), "COPY source {src} missing");
    }
    let ignore = read("deploy/Dockerfile.dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        "target/ must stay out of the build context"
    );
}

#[test]
fn exporter_config_examples_agree_with_the_latency_alert() {
    let objs = k8s_objects();
    let cm = one(&objs, "ConfigMap");
    let k8s: Yaml = serde_yaml_ng::from_str(cm["data"]["pharox.yml"].as_str().expect("pharox.yml"))
        .expect("YAML");
    for (name, cfg) in [
        (
            "deploy/exporter/pharox.yml",
            yaml("deploy/exporter/pharox.yml"),
        ),
        ("ConfigMap", k8s),
    ] {
        assert!(cfg["defaults"]["target_url"].is_string(), "{name}");
        assert_eq!(
            cfg["inventory"]["path"], "/etc/pharox/inventory/proxies.csv",
            "{name}"
        );
        // pharox:alert_threshold:pool_latency_p95_seconds is 2 (seconds).
        assert_eq!(
            cfg["defaults"]["slow_threshold_ms"], 2000,
            "{name}: the latency alert threshold assumes 2000 ms"
        );
    }
    let csv = read("deploy/exporter/proxies.example.csv");
    assert!(csv.starts_with("id,protocol,host,port,username,password,pool,provider\n"));
}

#[test]
fn exporter_accepts_the_example_configs() {
    // The real binary validates the config of the image/compose file and the
    // one in the Kubernetes ConfigMap, with the example inventories.
    let bin = env!("CARGO_BIN_EXE_pharox-exporter");
    let dir = tempfile::tempdir().expect("tempdir");
    let objs = k8s_objects();
    let cm = one(&objs, "ConfigMap");
    let secret = one(&objs, "Secret");
    let k8s_cfg = dir.path().join("k8s-pharox.yml");
    std::fs::write(
        &k8s_cfg,
        cm["data"]["pharox.yml"].as_str().expect("pharox.yml"),
    )
    .expect("write");
    let k8s_inv = dir.path().join("k8s-proxies.csv");
    std::fs::write(
        &k8s_inv,
        secret["stringData"]["proxies.csv"]
            .as_str()
            .expect("proxies.csv"),
    )
    .expect("write");
    for (cfg, inv) in [
        (
            path("deploy/exporter/pharox.yml"),
            path("deploy/exporter/proxies.example.csv"),
        ),
        (k8s_cfg, k8s_inv),
    ] {
        let (ok, out) = run(Command::new(bin)
            .arg("validate")
            .arg("--config.file")
            .arg(&cfg)
            .arg("--inventory")
            .arg(&inv));
        assert!(
            ok,
            "pharox-exporter validate {} failed:\n{out}",
            cfg.display()
        );
        assert!(
            !out.contains("change-me"),
            "validate printed a password:\n{out}"
        );
    }
}

#[test]
fn sharded_statefulset_shards_by_ordinal_and_is_scraped() {
    let docs = yaml_docs("deploy/kubernetes/sharded/statefulset.yaml");
    let sts = docs
        .iter()
        .find(|d| d["kind"] == "StatefulSet")
        .expect("a StatefulSet");
    let svc = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("its headless Service");
    let replicas = sts["spec"]["replicas"].as_u64().expect("replicas");
    let args: Vec<&str> = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    // --shard.count comes from PHAROX_SHARD_COUNT, which the kustomization
    // sets from spec.replicas (tests/deploy_k8s.rs renders it).
    assert!(
        args.contains(&"--shard.count=$(PHAROX_SHARD_COUNT)"),
        "--shard.count must follow replicas: {args:?}"
    );
    assert!(args.contains(&"--shard.from-hostname"), "{args:?}");
    assert_eq!(sts["spec"]["serviceName"], svc["metadata"]["name"]);
    assert!(svc["spec"]["clusterIP"] == "None", "headless");
    // The shared ServiceMonitor selects this Service, and the Service its pods.
    let sm = &yaml_docs("deploy/kubernetes/base/servicemonitor.yaml")[0];
    let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects the Service"
        );
    }
    for (k, v) in svc["spec"]["selector"].as_mapping().expect("selector") {
        assert_eq!(&pod_labels[k], v, "Service selects the pods");
    }
    let kust = &yaml_docs("deploy/kubernetes/sharded/kustomization.yaml")[0];
    assert_eq!(
        kust["replicas"][0]["count"].as_u64(),
        Some(replicas),
        "the kustomization's replicas (the one place to resize) and the file's"
    );
    for r in kust["resources"].as_sequence().expect("resources") {
        let f = path(&format!(
            "deploy/kubernetes/sharded/{}",
            r.as_str().expect("path")
        ));
        assert!(
            f.exists(),
            "kustomization names a missing file {}",
            f.display()
        );
    }
}
