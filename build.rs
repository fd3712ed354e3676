//! Build metadata for `--version` and `pharox_exporter_build_info`, with std
//! only (no build dependencies):
//!
//! - `PHAROX_GIT_REVISION`: `$PHAROX_REVISION` if set (container builds,
//!   where `.git` is not in the context), else `git rev-parse HEAD`, else
//!   `unknown` (a source tarball without git);
//! - `PHAROX_BUILD_DATE`: `$SOURCE_DATE_EPOCH` if set (reproducible builds),
//!   else the time this script last ran, as Prometheus prints it
//!   (`20260130-12:00:00`, UTC). The script reruns when the revision or
//!   these variables change, not on every edit: a date that changed with
//!   each incremental build would relink the binary each time for nothing;
//! - `PHAROX_RUSTC_VERSION`: the compiler's version (`1.95.0`).

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=PHAROX_REVISION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let revision = std::env::var("PHAROX_REVISION")
        .ok()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PHAROX_GIT_REVISION={revision}");

    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=PHAROX_BUILD_DATE={}", format_utc(epoch));

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = run(Command::new(rustc).arg("--version"))
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PHAROX_RUSTC_VERSION={version}");
}

/// `git rev-parse HEAD` in the crate's directory, and rerun-if-changed on
/// HEAD and the branch it points to (`--git-path` finds both in a worktree
/// too), plus packed-refs, where a fetched or gc'ed branch lives.
fn git_revision() -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| run(Command::new("git").arg("-C").arg(&dir).args(args));
    let rev = git(&["rev-parse", "HEAD"])?;
    for name in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", name]) {
            rerun_if_changed(&dir, &p);
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
            rerun_if_changed(&dir, &p);
        }
    }
    Some(rev)
}

fn rerun_if_changed(dir: &str, path: &str) {
    let p = Path::new(dir).join(path);
    if p.exists() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

/// A command's trimmed stdout when it succeeds.
fn run(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Unix seconds as `YYYYMMDD-HH:MM:SS` UTC (Howard Hinnant's civil-from-days).
fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
