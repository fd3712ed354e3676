//! Every command in the README's code blocks is accounted for: run here as
//! written when it can run offline on loopback, or named with the reason it
//! cannot (a user's own inventory, an address that is not ours to dial, the
//! internet) and the test that covers it instead. A command added to the
//! README without an entry here fails the suite.

use std::process::Command;

use crate::support::bundle::{read, root};

/// How each README command is proven.
enum Proof {
    /// Run from the repository root exactly as written (with `pharox-exporter`
    /// being the binary under test); it must exit 0.
    Run,
    /// Covered elsewhere, or not runnable here: why.
    Elsewhere(&'static str),
}

const COMMANDS: &[(&str, Proof)] = &[
    (
        "./scripts/demo.sh",
        Proof::Elsewhere("run by demo::demo_script_sweeps_real_proxies_and_serves_metrics (installs and starts real proxies)"),
    ),
    (
        "./scripts/test.sh",
        Proof::Elsewhere("CI's own command (.ci/run): this suite is what it runs"),
    ),
    (
        "cargo run --release -- --inventory proxies.txt --target-url https://your.endpoint/health",
        Proof::Elsewhere("the user's own inventory and endpoint; the same flags are exercised on loopback by e2e:: tests"),
    ),
    (
        "cargo run --release -- --config.file examples/pharox.yaml",
        Proof::Elsewhere("would dial the example's documentation-range addresses (not ours); its config is validated by the `validate` line below"),
    ),
    (
        "pharox-exporter check socks5://alice:secret@10.0.0.7:1080 http://10.0.0.8:3128 --target-url https://example.com/",
        Proof::Elsewhere("10.0.0.x and example.com are not ours to dial; `check` with these shapes of URL runs on loopback in cli:: tests"),
    ),
    (
        "pharox-exporter sweep --once --inventory proxies.csv --target-url https://example.com/ --concurrency 512 > results.jsonl",
        Proof::Elsewhere("the user's own inventory and the internet; `sweep --once` runs on loopback in cli:: tests"),
    ),
    ("pharox-exporter validate --config examples/pharox.yaml", Proof::Run),
    (
        "pharox-exporter judge --web.listen-address 127.0.0.1:10188",
        Proof::Elsewhere("serves until stopped, on a fixed port; anonymity::the_judge_subcommand_serves_check_which_learns_our_ips starts this command on a free loopback port and checks through it"),
    ),
    (
        "scripts/mutants.sh",
        Proof::Elsewhere("mutation testing takes about half an hour (not CI); the tests it runs are lib unit tests and tests/probe_faults.rs, its last table is docs/mutants.md"),
    ),
    (
        "pharox-exporter --config.file examples/pharox.yaml",
        Proof::Elsewhere("the exporter on the example's documentation-range addresses (not ours); started on loopback configs by e2e:: tests"),
    ),
    (
        "pharox-exporter --inventory proxies.txt --target-url https://example.com/ --sweep.interval 60s --concurrency 256",
        Proof::Elsewhere("the user's own inventory and the internet; these flags run on loopback in e2e:: tests"),
    ),
    (
        "pharox-exporter --inventory 'postgresql://exporter@db:5432/pharox?pools=eu,us' --target-url https://example.com/",
        Proof::Elsewhere("the user's database host; the same inventory URL form runs against a real loopback PostgreSQL in postgres::exporter"),
    ),
    (
        "pharox-exporter sweep --once --inventory 'postgresql://exporter@db:5432/pharox'",
        Proof::Elsewhere("the user's database host; `sweep --once` on a postgresql:// inventory runs against a real loopback PostgreSQL in postgres::cli"),
    ),
    (
        "kubectl apply -k deploy/kubernetes/sidecar",
        Proof::Elsewhere("needs a cluster; rendered with kubectl kustomize and schema-checked by deploy_k8s::every_kustomization_renders_and_validates_against_kubernetes_schemas"),
    ),
    (
        "kubectl apply -k deploy/kubernetes/sharded",
        Proof::Elsewhere("needs a cluster; rendered with kubectl kustomize and schema-checked by deploy_k8s::every_kustomization_renders_and_validates_against_kubernetes_schemas"),
    ),
];

/// The commands of the README's `sh`/`console` code blocks (a `$ ` prompt
/// stripped, comments and blank lines skipped).
fn readme_commands() -> Vec<String> {
    let text = read("README.md");
    let mut out = Vec::new();
    let mut in_block = false;
    let mut shell = false;
    for line in text.lines() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            if in_block {
                in_block = false;
            } else {
                in_block = true;
                shell = matches!(lang.trim(), "sh" | "console" | "bash" | "shell");
            }
            continue;
        }
        if !(in_block && shell) {
            continue;
        }
        // A trailing `# comment` is the README's, not the command's.
        let l = line.split("  #").next().unwrap_or(line).trim();
        let l = l.strip_prefix("$ ").unwrap_or(l);
        let is_command = [
            "./",
            "pharox-exporter",
            "cargo ",
            "sudo ",
            "kubectl ",
            "bench/",
            "scripts/",
        ]
        .iter()
        .any(|p| l.starts_with(p));
        if is_command {
            out.push(l.to_string());
        }
    }
    out
}

#[test]
fn every_readme_command_is_run_or_accounted_for() {
    let commands = readme_commands();
    assert!(
        commands.len() >= 5,
        "README commands not found: {commands:?}"
    );
    let unknown: Vec<&String> = commands
        .iter()
        .filter(|c| !COMMANDS.iter().any(|(k, _)| k == c))
        .collect();
    assert!(
        unknown.is_empty(),
        "README commands with no entry in tests/it/readme.rs (run them here, or say why not): {unknown:#?}"
    );
    for (cmd, proof) in COMMANDS {
        assert!(
            commands.iter().any(|c| c == cmd),
            "{cmd:?} is no longer in the README: drop its entry"
        );
        if let Proof::Elsewhere(why) = proof {
            assert!(!why.is_empty());
            continue;
        }
        let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_pharox-exporter"))
            .args(&args)
            .current_dir(root())
            .output()
            .expect("run the binary");
        assert!(
            out.status.success(),
            "{cmd}: exit {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
