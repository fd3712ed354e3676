//! The deployment paths, run for real rather than read: every kustomization
//! renders with `kubectl kustomize` and validates against Kubernetes'
//! schemas (`kubernetes-validate`); the rendered security context and volume
//! modes are applied to real files (as the kubelet would) and the exporter
//! binary, run as that uid/gid, becomes ready on them; the shard count
//! follows the replicas; every example config validates; and
//! `scripts/demo.sh` removes the `policy-rc.d` it writes.
//!
//! Tools: `scripts/install-test-deps.sh` installs kubectl (kustomize v5) and
//! kubernetes-validate under /opt/pharox-test-tools when the machine lacks
//! them; `PHAROX_KUBECTL` and `PHAROX_KUBERNETES_VALIDATE` override the paths.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pharox_testkit::{free_port, refused_port, RefusedPort};
use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

use crate::support::bundle::root;

const TOOLS: &str = "/opt/pharox-test-tools";
/// The Kubernetes version the manifests are validated against (the kubectl
/// the tests use is 1.32).
const K8S_VERSION: &str = "1.32.0";
/// Kinds from CRDs, which kubernetes-validate has no schema for.
const CRD_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pharox-exporter")
}

fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn has_kustomize5(kubectl: &str) -> bool {
    Command::new(kubectl)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Kustomize Version: v5."))
}

/// A kubectl whose `kubectl kustomize` is kustomize v5.
fn kubectl() -> String {
    let mut tried = Vec::new();
    let candidates = [
        std::env::var("PHAROX_KUBECTL").ok(),
        Some("kubectl".to_string()),
        Some(format!("{TOOLS}/bin/kubectl")),
    ];
    for c in candidates.into_iter().flatten() {
        if has_kustomize5(&c) {
            return c;
        }
        tried.push(c);
    }
    panic!(
        "no kubectl with kustomize v5 (tried {tried:?}); run scripts/install-test-deps.sh as root"
    );
}

fn kubernetes_validate() -> String {
    let p = std::env::var("PHAROX_KUBERNETES_VALIDATE")
        .unwrap_or_else(|_| format!("{TOOLS}/venv/bin/kubernetes-validate"));
    assert!(
        Path::new(&p).exists(),
        "{p} missing; run scripts/install-test-deps.sh as root"
    );
    p
}

fn yaml_docs(text: &str, what: &str) -> Vec<Yaml> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Yaml::deserialize(d).unwrap_or_else(|e| panic!("{what}: invalid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every directory under deploy/kubernetes holding a kustomization.yaml.
fn kustomizations(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if dir.join("kustomization.yaml").exists() {
        out.push(dir.to_path_buf());
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for d in subdirs {
        out.extend(kustomizations(&d));
    }
    out
}

/// `kubectl kustomize DIR`, as text.
fn render_text(dir: &Path) -> String {
    let (ok, out, err) = output(Command::new(kubectl()).arg("kustomize").arg(dir));
    assert!(ok, "kubectl kustomize {} failed:\n{err}", dir.display());
    out
}

fn render(overlay: &str) -> Vec<Yaml> {
    let dir = root().join("deploy/kubernetes").join(overlay);
    yaml_docs(&render_text(&dir), overlay)
}

fn find<'a>(objs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let all: Vec<&Yaml> = objs.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(all.len(), 1, "expected one {kind}, got {}", all.len());
    all[0]
}

fn workload(objs: &[Yaml]) -> &Yaml {
    objs.iter()
        .find(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
        .expect("a Deployment or StatefulSet")
}

/// The exporter container of a pod spec (a plain container or a native
/// sidecar among the init containers).
fn exporter_container(pod: &Yaml) -> &Yaml {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod[*k].as_sequence())
        .flatten()
        .find(|c| c["name"] == "pharox-exporter")
        .expect("a pharox-exporter container")
}

#[test]
fn every_kustomization_renders_and_validates_against_kubernetes_schemas() {
    let dirs = kustomizations(&root().join("deploy/kubernetes"));
    let names: Vec<String> = dirs
        .iter()
        .map(|d| {
            d.strip_prefix(root())
                .expect("under root")
                .display()
                .to_string()
        })
        .collect();
    for want in ["base", "sidecar", "sharded"] {
        assert!(
            names.contains(&format!("deploy/kubernetes/{want}")),
            "no {want} kustomization: {names:?}"
        );
    }
    let validate = kubernetes_validate();
    let tmp = tempfile::tempdir().expect("tempdir");
    for (dir, name) in dirs.iter().zip(&names) {
        let text = render_text(dir);
        let objs = yaml_docs(&text, name);
        assert!(!objs.is_empty(), "{name} renders nothing");
        let file = tmp.path().join(format!("{}.yaml", name.replace('/', "_")));
        std::fs::write(&file, &text).expect("write rendering");
        let (ok, out, err) = output(
            Command::new(&validate)
                .args(["--strict", "-k", K8S_VERSION])
                .arg(&file),
        );
        let log = format!("{out}{err}");
        assert!(ok, "kubernetes-validate rejects {name}:\n{log}\n{text}");
        // Every object was checked against a schema, except the CRD kinds
        // (whose only gap is the one warned about).
        for o in &objs {
            let kind = o["kind"].as_str().expect("kind");
            let obj_name = o["metadata"]["name"].as_str().expect("metadata.name");
            if CRD_KINDS.contains(&kind) {
                continue;
            }
            let line = format!(
                "passed for resource {}/{obj_name}",
                kind.to_ascii_lowercase()
            );
            assert!(log.contains(&line), "{name}: no '{line}' in:\n{log}");
        }
        for l in log.lines().filter(|l| l.starts_with("WARN")) {
            assert!(
                CRD_KINDS
                    .iter()
                    .any(|k| l.contains(&format!("schema for kind {k} "))),
                "{name}: unexpected warning: {l}"
            );
        }
    }
    // The overlays are complete applications.
    for overlay in ["sidecar", "sharded"] {
        let objs = render(overlay);
        for kind in ["ConfigMap", "Secret", "ServiceMonitor", "Service"] {
            find(&objs, kind);
        }
        let rules = objs
            .iter()
            .filter(|o| o["kind"] == "PrometheusRule")
            .count();
        assert_eq!(rules, 2, "{overlay}: PrometheusRules");
        let pod = &workload(&objs)["spec"]["template"]["spec"];
        let c = exporter_container(pod);
        for m in c["volumeMounts"].as_sequence().expect("volumeMounts") {
            assert!(
                m["subPath"].is_null(),
                "{overlay}: a subPath mount never sees ConfigMap/Secret updates: {m:?}"
            );
        }
    }
}

// ---- Running the exporter as the manifests run it -------------------------

/// What the kubelet would put on disk and how it would start the exporter,
/// taken from a rendered overlay.
struct PodPlan {
    uid: u32,
    gid: u32,
    fs_group: Option<u32>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    volumes: Vec<Volume>,
}

/// One mounted ConfigMap or Secret volume.
struct Volume {
    mount: String,
    /// File name and content.
    files: Vec<(String, String)>,
    /// The volume's defaultMode.
    mode: u32,
}

fn int(v: &Yaml, what: &str) -> u32 {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or_else(|| panic!("{what}: not an integer: {v:?}"))
}

fn pod_plan(objs: &[Yaml]) -> PodPlan {
    let pod = &workload(objs)["spec"]["template"]["spec"];
    let c = exporter_container(pod);
    let sc = &c["securityContext"];
    let psc = &pod["securityContext"];
    let pick = |k: &str| {
        if sc[k].is_null() {
            &psc[k]
        } else {
            &sc[k]
        }
    };
    let uid = int(pick("runAsUser"), "runAsUser");
    // The image's USER (65532:65532) when no runAsGroup is set.
    let gid = if pick("runAsGroup").is_null() {
        65532
    } else {
        int(pick("runAsGroup"), "runAsGroup")
    };
    let fs_group = (!psc["fsGroup"].is_null()).then(|| int(&psc["fsGroup"], "fsGroup"));
    let args = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    let env = c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().expect("env name").to_string(),
                e["value"]
                    .as_str()
                    .expect("env value is a string")
                    .to_string(),
            )
        })
        .collect();
    let mut volumes = Vec::new();
    for m in c["volumeMounts"].as_sequence().expect("volumeMounts") {
        let vol = pod["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("the mounted volume");
        let mount = m["mountPath"].as_str().expect("mountPath").to_string();
        // The API's default for both volume kinds is 0644.
        let (files, mode) = if !vol["configMap"].is_null() {
            let cm = objs
                .iter()
                .find(|o| {
                    o["kind"] == "ConfigMap" && o["metadata"]["name"] == vol["configMap"]["name"]
                })
                .expect("the ConfigMap");
            let files = cm["data"]
                .as_mapping()
                .expect("data")
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().expect("key").into(),
                        v.as_str().expect("value").into(),
                    )
                })
                .collect();
            let mode = vol["configMap"]["defaultMode"].as_u64().unwrap_or(0o644);
            (files, mode)
        } else if !vol["secret"].is_null() {
            let s = objs
                .iter()
                .find(|o| {
                    o["kind"] == "Secret" && o["metadata"]["name"] == vol["secret"]["secretName"]
                })
                .expect("the Secret");
            let files = s["stringData"]
                .as_mapping()
                .expect("stringData")
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().expect("key").into(),
                        v.as_str().expect("value").into(),
                    )
                })
                .collect();
            let mode = vol["secret"]["defaultMode"].as_u64().unwrap_or(0o644);
            (files, mode)
        } else {
            panic!("unexpected volume {vol:?}");
        };
        volumes.push(Volume {
            mount,
            files,
            mode: u32::try_from(mode).expect("mode"),
        });
    }
    PodPlan {
        uid,
        gid,
        fs_group,
        args,
        env,
        volumes,
    }
}

/// `GET path` on 127.0.0.1:port: the status code, or None when nothing
/// answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

struct Running {
    child: Child,
    log: PathBuf,
    /// The exporter's listen port (a free one, bound by the exporter).
    port: u16,
    /// The inventory's proxy and the target: ports that refuse for as long
    /// as the pod runs (bound here, never listening).
    dead: Option<[RefusedPort; 2]>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lay the pod's volumes out under `fs` as the kubelet does (root-owned;
/// with an fsGroup, group = fsGroup and the read-only volume's files get
/// g+r, u+r on top of their mode, see SetVolumeOwnership), rewrite the
/// absolute paths into `fs`, and start the real binary as the container's
/// uid/gid with its args ($(VAR) expanded from its env, as the kubelet does).
/// The listen port is a free one; an exporter that loses it to another
/// process before binding (it exits saying it cannot listen) is started
/// again on another, twice at most.
fn start_pod(plan: &PodPlan, fs: &Path, hostname: &str) -> Running {
    let dead_proxy = refused_port();
    let dead_target = refused_port();
    if let Some(g) = plan.fs_group {
        // std's uid()/gid() drop the supplementary groups the kubelet would
        // add (the fsGroup); with fsGroup == runAsGroup nothing is lost.
        assert_eq!(g, plan.gid, "this test models fsGroup == runAsGroup only");
    }
    let fs_str = fs.to_str().expect("utf-8 path");
    let relocate = |s: &str| s.replace("/etc/pharox/", &format!("{fs_str}/etc/pharox/"));
    for Volume { mount, files, mode } in &plan.volumes {
        let dir = PathBuf::from(format!("{fs_str}{mount}"));
        std::fs::create_dir_all(&dir).expect("mount dir");
        let mut mode = *mode;
        if plan.fs_group.is_some() {
            mode |= 0o440;
        }
        for (name, content) in files {
            let f = dir.join(name);
            let content = if name.ends_with(".csv") {
                // No network: one proxy on a refused loopback port.
                let dead = dead_proxy.port();
                format!(
                    "id,protocol,host,port,username,password,pool,provider\n\
                     t-1,http,127.0.0.1,{dead},u,secret-pw,test,test\n"
                )
            } else {
                relocate(content)
            };
            std::fs::write(&f, content).expect("write volume file");
            chown(&f, Some(0), Some(plan.fs_group.unwrap_or(0))).expect("chown");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
    }
    // Directories on the way are traversable, as in a container image.
    let mut d = Some(fs);
    while let Some(p) = d {
        if p == Path::new("/") || p == Path::new("/tmp") {
            break;
        }
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
        d = p.parent();
    }
    for sub in ["etc", "etc/pharox"] {
        let _ = std::fs::set_permissions(fs.join(sub), std::fs::Permissions::from_mode(0o755));
    }
    // The binary where uid 65532 can run it.
    let exe = fs.join("pharox-exporter");
    std::fs::copy(bin(), &exe).expect("copy binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let args: Vec<String> = plan
        .args
        .iter()
        .map(|a| {
            let mut a = a.clone();
            for (k, v) in &plan.env {
                a = a.replace(&format!("$({k})"), v);
            }
            relocate(&a)
        })
        .collect();
    let mut dead = Some([dead_proxy, dead_target]);
    for attempt in 0..3 {
        let port = free_port();
        let log = fs.join(format!("exporter-{attempt}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let target = dead.as_ref().expect("refused ports")[1].port();
        let child = Command::new(&exe)
            .args(&args)
            // Flags override the file: loopback only, and a dead target.
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--target-url=http://127.0.0.1:{target}/"))
            .env_clear()
            .env("HOSTNAME", hostname)
            .current_dir("/")
            .uid(plan.uid)
            .gid(plan.gid)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start the exporter");
        let mut run = Running {
            child,
            log,
            port,
            dead: dead.take(),
        };
        // Serving (any answer) or gone, within 20 s.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if http_status(port, "/-/healthy").is_some() {
                return run;
            }
            if run.child.try_wait().expect("try_wait").is_some() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = std::fs::read_to_string(&run.log).unwrap_or_default();
        if !text.contains("cannot listen") {
            // Not a port race: the caller's assertions report it.
            return run;
        }
        dead = run.dead.take();
    }
    panic!("the exporter lost its listen port 3 times");
}

/// Poll /-/ready for up to `secs`: the last status seen.
fn wait_ready(port: u16, secs: u64) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = None;
    while Instant::now() < deadline {
        last = http_status(port, "/-/ready");
        if last == Some(200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

fn check_overlay_becomes_ready(overlay: &str, hostname: &str) {
    let objs = render(overlay);
    let plan = pod_plan(&objs);
    assert_ne!(plan.uid, 0, "{overlay}: runs as root");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut run = start_pod(&plan, tmp.path(), hostname);
    let status = wait_ready(run.port, 20);
    let early_exit = run.child.try_wait().expect("try_wait");
    let log = std::fs::read_to_string(&run.log).unwrap_or_default();
    assert_eq!(
        status,
        Some(200),
        "{overlay}: /-/ready as uid {} gid {} (fsGroup {:?}, modes {:?}); exit {early_exit:?}; log:\n{log}",
        plan.uid,
        plan.gid,
        plan.fs_group,
        plan.volumes.iter().map(|v| format!("{} {:o}", v.mount, v.mode)).collect::<Vec<_>>()
    );
    assert!(!log.contains("secret-pw"), "password in the log:\n{log}");
}

#[test]
fn sidecar_becomes_ready_as_its_uid_on_files_with_the_manifest_modes() {
    check_overlay_becomes_ready("sidecar", "proxy-consumer-7d9f-abcde");
}

#[test]
fn sharded_pod_becomes_ready_as_its_uid_on_files_with_the_manifest_modes() {
    check_overlay_becomes_ready("sharded", "pharox-exporter-0");
}

/// The control: the manifests' old values (Secret 0440, no fsGroup) leave
/// the inventory unreadable to uid 65532, and /-/ready stays 503. Proves the
/// harness above can see the failure it guards against.
#[test]
fn old_secret_mode_without_fs_group_is_unreadable_and_never_ready() {
    let objs = render("sidecar");
    let mut plan = pod_plan(&objs);
    plan.fs_group = None;
    for v in &mut plan.volumes {
        if v.mount == "/etc/pharox/inventory" {
            v.mode = 0o440;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = start_pod(&plan, tmp.path(), "proxy-consumer-x");
    let port = run.port;
    // Serving, but not ready.
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_status(port, "/-/healthy") != Some(200) {
        assert!(Instant::now() < deadline, "exporter never served");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(http_status(port, "/-/ready"), Some(503));
    let log = std::fs::read_to_string(&run.log).unwrap_or_default();
    assert!(log.contains("Permission denied"), "{log}");
}

// ---- Sharding follows the replicas ------------------------------------------

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

#[test]
fn shard_count_follows_the_replicas_in_one_edit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let k8s = tmp.path().join("kubernetes");
    copy_tree(&root().join("deploy/kubernetes"), &k8s);
    let kust = k8s.join("sharded/kustomization.yaml");
    let text = std::fs::read_to_string(&kust).expect("read");
    let marker = "replicas:\n  - name: pharox-exporter\n    count: 3\n";
    assert!(text.contains(marker), "the one place to resize: {text}");
    for n in [3u32, 5] {
        std::fs::write(
            &kust,
            text.replace(marker, &marker.replace("3", &n.to_string())),
        )
        .expect("write");
        let objs = yaml_docs(&render_text(&k8s.join("sharded")), "sharded");
        let sts = find(&objs, "StatefulSet");
        assert_eq!(sts["spec"]["replicas"], n as u64);
        let plan = pod_plan(&objs);
        let count = plan
            .env
            .iter()
            .find(|(k, _)| k == "PHAROX_SHARD_COUNT")
            .map(|(_, v)| v.clone())
            .expect("PHAROX_SHARD_COUNT");
        assert_eq!(count, n.to_string());
        assert!(plan
            .args
            .contains(&"--shard.count=$(PHAROX_SHARD_COUNT)".to_string()));
        assert!(plan.args.contains(&"--shard.from-hostname".to_string()));
    }
    // `kubectl scale` past the count: the extra pod refuses to start.
    let out = Command::new(bin())
        .args([
            "--inventory",
            "/nonexistent.csv",
            "--shard.count=3",
            "--shard.from-hostname",
            "--web.listen-address=127.0.0.1:0",
        ])
        .env("HOSTNAME", "pharox-exporter-3")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shard index 3 must be below the shard count 3"),
        "{err}"
    );
}

// ---- Documented paths and example configs -------------------------------------

#[test]
fn every_example_config_validates_as_documented() {
    // The README's command, exactly as written, from the repository root.
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let mut commands: Vec<Vec<String>> = readme
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pharox-exporter validate "))
        .map(|rest| rest.split_whitespace().map(str::to_string).collect())
        .collect();
    assert!(!commands.is_empty(), "the README documents validate");
    commands.push(vec!["--config".into(), "examples/demo/pharox.yaml".into()]);
    commands.push(vec![
        "--config.file".into(),
        "deploy/exporter/pharox.yml".into(),
        "--inventory".into(),
        "deploy/exporter/proxies.example.csv".into(),
    ]);
    for args in commands {
        let (ok, out, err) = output(
            Command::new(bin())
                .arg("validate")
                .args(&args)
                .current_dir(root()),
        );
        assert!(ok, "pharox-exporter validate {args:?}:\n{out}{err}");
        assert!(out.contains("config OK"), "{args:?}: {out}");
        assert!(
            !format!("{out}{err}").contains("change-me"),
            "password printed"
        );
    }
}

#[test]
fn every_path_the_deploy_docs_and_configs_name_exists() {
    let re =
        regex::Regex::new(r"(?:deploy|examples|docs|scripts|grafana)/[A-Za-z0-9_./-]*[A-Za-z0-9_]")
            .expect("regex");
    let files = [
        "README.md",
        "docs/monitoring.md",
        "deploy/exporter/pharox.yml",
        "examples/pharox.yaml",
        "examples/demo/pharox.yaml",
        "deploy/Dockerfile",
        "deploy/kubernetes/base/configmap.yaml",
        "deploy/kubernetes/base/kustomization.yaml",
        "deploy/kubernetes/sidecar/kustomization.yaml",
        "deploy/kubernetes/sidecar/deployment.yaml",
        "deploy/kubernetes/sharded/kustomization.yaml",
        "deploy/kubernetes/sharded/statefulset.yaml",
        "scripts/demo.sh",
    ];
    let mut missing = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(root().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        for m in re.find_iter(&text) {
            let p = m.as_str().trim_end_matches('.');
            // Paths inside the container or a URL are not repository paths.
            let before = &text[..m.start()];
            if before.ends_with('/') || before.ends_with("//") {
                continue;
            }
            if !root().join(p).exists() {
                missing.push(format!("{f}: {p}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented paths that do not exist:\n{}",
        missing.join("\n")
    );

    // Every `kubectl apply -k DIR` / `kubectl kustomize DIR` a document
    // shows names a directory that kustomize can build.
    let kre =
        regex::Regex::new(r"kubectl (?:apply -k|kustomize) +(deploy/[A-Za-z0-9_./-]*[A-Za-z0-9_])")
            .expect("regex");
    let mut seen = 0;
    for f in files {
        let text = std::fs::read_to_string(root().join(f)).expect("read");
        for c in kre.captures_iter(&text) {
            seen += 1;
            let dir = root().join(&c[1]);
            assert!(
                dir.join("kustomization.yaml").exists(),
                "{f}: `{}` names no kustomization",
                &c[0]
            );
            render_text(&dir);
        }
    }
    assert!(seen >= 2, "the docs show how to apply the manifests");
}

// ---- scripts/demo.sh ---------------------------------------------------------

fn demo_install(dir: &Path, policy_exists: bool, apt_fails: bool) -> (bool, String) {
    let policy = dir.join("policy-rc.d");
    if policy_exists {
        std::fs::write(&policy, "#!/bin/sh\n# the machine's own\nexit 0\n").expect("write");
    }
    // A fake apt-get that records whether the policy was in place.
    let apt = dir.join("apt-get");
    std::fs::write(
        &apt,
        format!(
            "#!/bin/sh\nif [ -e '{p}' ]; then echo \"$1 policy\" >> '{d}/apt.log'; \
             else echo \"$1 no-policy\" >> '{d}/apt.log'; fi\nexit {code}\n",
            p = policy.display(),
            d = dir.display(),
            code = i32::from(apt_fails)
        ),
    )
    .expect("write");
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (ok, out, err) = output(
        Command::new("bash")
            .arg(root().join("scripts/demo.sh"))
            .arg("--install-only")
            .env("DEMO_APT_GET", &apt)
            .env("DEMO_POLICY_RC_D", &policy)
            .env("DEMO_FORCE_INSTALL", "1"),
    );
    (ok, format!("{out}{err}"))
}

#[test]
fn demo_removes_the_policy_rc_d_it_wrote_and_only_that() {
    // Written for the install, removed afterwards.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ok, log) = demo_install(tmp.path(), false, false);
    assert!(ok, "{log}");
    let apt_log = std::fs::read_to_string(tmp.path().join("apt.log")).expect("apt ran");
    assert_eq!(apt_log, "update policy\ninstall policy\n");
    assert!(
        !tmp.path().join("policy-rc.d").exists(),
        "policy-rc.d left behind"
    );

    // Removed even when the install fails.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ok, log) = demo_install(tmp.path(), false, true);
    assert!(!ok, "a failed apt-get must fail the script: {log}");
    assert!(
        !tmp.path().join("policy-rc.d").exists(),
        "policy-rc.d left behind after a failure"
    );

    // One that was there before is the machine's: untouched.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ok, log) = demo_install(tmp.path(), true, false);
    assert!(ok, "{log}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("policy-rc.d")).expect("still there"),
        "#!/bin/sh\n# the machine's own\nexit 0\n"
    );
}

#[test]
fn demo_states_its_prerequisites() {
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let rust = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"')
        .to_string();
    let (ok, help, err) = output(
        Command::new("bash")
            .arg(root().join("scripts/demo.sh"))
            .arg("--help"),
    );
    assert!(ok, "{err}");
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    for (what, text) in [("demo.sh --help", &help), ("README", &readme)] {
        for needle in [
            "Debian",
            "sudo",
            &format!("Rust {rust}"),
            "10187",
            "21080",
            "21081",
            "21082",
            "28080",
            "28888",
        ] {
            assert!(
                text.contains(needle),
                "{what} does not mention {needle}:\n{text}"
            );
        }
    }
    let script = std::fs::read_to_string(root().join("scripts/demo.sh")).expect("demo.sh");
    assert!(
        !script.contains("cargo build --release --quiet"),
        "the first build must show progress"
    );
}
