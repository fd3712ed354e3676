//! The import rule of the library, as a test: every top-level module of
//! `src/` may import (`crate::x`) only the modules listed for it, which
//! sit in lower layers (docs: the map in `src/lib.rs`, README "Layout").
//! A cycle needs an upward edge, so holding this rule keeps the crate
//! acyclic. The walk skips `#[cfg(test)]` modules: unit tests may reach
//! anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may import. `app` is the
/// composition root: it may import anything, and nothing may import it.
const ALLOWED: &[(&str, &[&str])] = &[
    // L0: vocabulary and primitives (`secret` and `text` first: the model's
    // password is a Secret, its strings are Texts)
    ("secret", &[]),
    ("text", &[]),
    ("model", &["secret", "text"]),
    ("shutdown", &[]),
    ("tls_roots", &[]),
    // L1: leaf capabilities
    ("probe", &["model", "secret", "text", "tls_roots"]),
    ("state", &["model", "text"]),
    ("pharox_db", &["model", "secret", "tls_roots"]),
    ("geo", &["model"]),
    // L2: pipeline stages
    ("inventory", &["model", "secret", "text", "pharox_db"]),
    ("sweep", &["model", "probe", "shutdown", "geo"]),
    // L3: settings, and consumers of results
    (
        "config",
        &[
            "model",
            "secret",
            "probe",
            "state",
            "inventory",
            "pharox_db",
        ],
    ),
    (
        "sinks",
        &["model", "secret", "state", "sweep", "pharox_db", "geo"],
    ),
    // L4: HTTP
    (
        "server",
        &[
            "model",
            "secret",
            "config",
            "state",
            "sinks",
            "probe",
            "inventory",
            "shutdown",
            "sweep",
        ],
    ),
];

/// `crate::name` references in Rust source, outside `#[cfg(test)]` items
/// and comments (a doc link to a higher layer is not a dependency).
/// Handles `crate::a::b`, `crate::{a, b::c}` and nested groups.
fn imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .flat_map(|l| [l, "\n"])
        .collect();
    let code = strip_test_modules(&code);
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        // `pharox_crate::` or `$crate::` are not ours.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            for item in top_level_items(group) {
                if let Some(name) = ident(item) {
                    out.insert(name.to_string());
                }
            }
        } else if let Some(name) = ident(rest) {
            out.insert(name.to_string());
        }
    }
    // `self` in `crate::{self, ..}` names the crate root, not a module.
    out.remove("self");
    out
}

/// The comma-separated items at depth 0 of a `{...}` group whose opening
/// brace is already consumed.
fn top_level_items(group: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0usize, 0usize, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

fn ident(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// Drop every item annotated `#[cfg(test)]` (a `mod tests { .. }` block or a
/// single item), by brace matching from the attribute on.
fn strip_test_modules(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        // The item ends at the `;` of a one-line item or the brace that
        // closes its block, whichever comes first.
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, c) in after.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every import that breaks the rule, as "file: crate::x (layer of top)".
fn violations(src: &Path) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    // A set: an unlisted module is reported once per file, not per import.
    let mut found = BTreeSet::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy());
        let first = parts.next().expect("a path").to_string();
        // The binary uses the library's public API, not `crate::`.
        if first == "bin" || first == "lib.rs" || first == "main.rs" {
            continue;
        }
        let top = first.trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&file).expect("readable source");
        for name in imports(&text) {
            if name == top {
                continue;
            }
            if name == "app" {
                found.insert(format!(
                    "{}: imports crate::app (the composition root)",
                    rel.display()
                ));
                continue;
            }
            if top == "app" {
                continue;
            }
            match allowed.get(top.as_str()) {
                Some(ok) if ok.contains(&name.as_str()) => {}
                Some(_) => {
                    found.insert(format!(
                        "{}: crate::{name} is not below `{top}`",
                        rel.display()
                    ));
                }
                None => {
                    found.insert(format!(
                        "{}: module `{top}` has no entry in ALLOWED (add it with its layer)",
                        rel.display()
                    ));
                }
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn modules_import_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "layering violations:\n{}",
        found.join("\n")
    );
}

/// The checker itself can fail: a tree with an upward import, a grouped
/// import and an unlisted module is reported, and test modules are not.
#[test]
fn the_layering_check_reports_forbidden_imports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("probe")).expect("mkdir");
    std::fs::write(
        src.join("probe/mod.rs"),
        "use crate::model::Proxy;\nuse crate::{tls_roots, sinks::metrics::Metrics};\n\
         #[cfg(test)]\nmod tests { use crate::app::App; }\n",
    )
    .expect("write");
    std::fs::write(
        src.join("model.rs"),
        "/// Read by [`crate::sinks`].\npub struct Proxy;\nfn f() { crate::config::x(); }\n",
    )
    .expect("write");
    std::fs::write(src.join("newthing.rs"), "use crate::model::Proxy;\n").expect("write");
    std::fs::write(src.join("sweep.rs"), "use crate::app::App;\n").expect("write");
    let found = violations(src);
    assert_eq!(
        found,
        vec![
            "model.rs: crate::config is not below `model`".to_string(),
            "newthing.rs: module `newthing` has no entry in ALLOWED (add it with its layer)"
                .to_string(),
            "probe/mod.rs: crate::sinks is not below `probe`".to_string(),
            "sweep.rs: imports crate::app (the composition root)".to_string(),
        ],
        "{found:#?}"
    );
}
