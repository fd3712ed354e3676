//! Compares a contender's JSON-lines results with the ground truth.
//!
//! Status must match exactly; the reason matches when it is one of the
//! truth's `|`-separated alternatives (empty for ACTIVE/SLOW). Prints one JSON
//! object: totals, accuracies, mismatches per class and a few examples.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Score checker results against the benchmark ground truth")]
struct Args {
    /// Truth CSV from geninv.
    #[arg(long)]
    truth: PathBuf,
    /// JSON-lines results (fields `id`, `status`, optional `reason`); other lines are skipped.
    #[arg(long)]
    results: PathBuf,
    /// How many example mismatches to print.
    #[arg(long, default_value_t = 5)]
    examples: usize,
}

#[derive(serde::Deserialize)]
struct Truth {
    id: String,
    class: String,
    protocol: String,
    expected_status: String,
    #[serde(default)]
    expected_reason: Option<String>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut rdr = csv::Reader::from_path(&a.truth).context("open truth")?;
    let truth: Vec<Truth> = rdr.deserialize().collect::<Result<_, _>>()?;
    let index: HashMap<&str, usize> = truth
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut seen = vec![false; truth.len()];
    let (mut lines, mut unknown, mut dup, mut status_ok, mut reason_ok) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    // Wrong status, and right status with a wrong reason, kept apart: a
    // checker without reasons (pharox) is scored on the first alone.
    let mut status_miss: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut reason_miss: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut examples = Vec::new();
    let f = std::fs::File::open(&a.results).context("open results")?;
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let (Some(id), Some(status)) = (v["id"].as_str(), v["status"].as_str()) else {
            continue;
        };
        lines += 1;
        let Some(&i) = index.get(id) else {
            unknown += 1;
            continue;
        };
        if seen[i] {
            dup += 1;
            continue;
        }
        seen[i] = true;
        let t = &truth[i];
        let reason = v["reason"].as_str().unwrap_or("");
        let expected_reason = t.expected_reason.as_deref().unwrap_or("");
        let s_ok = status.eq_ignore_ascii_case(&t.expected_status);
        let r_ok = if expected_reason.is_empty() {
            reason.is_empty()
        } else {
            expected_reason.split('|').any(|r| r == reason)
        };
        status_ok += u64::from(s_ok);
        reason_ok += u64::from(s_ok && r_ok);
        let key = format!("{}/{}", t.class, t.protocol);
        let got = format!("{status}/{reason}");
        if !(s_ok && r_ok) {
            let by_class = if s_ok {
                &mut reason_miss
            } else {
                &mut status_miss
            };
            *by_class
                .entry(key.clone())
                .or_default()
                .entry(got.clone())
                .or_default() += 1;
            if examples.len() < a.examples {
                examples.push(json!({"id": id, "class": key, "expected": format!("{}/{}", t.expected_status, expected_reason), "got": got}));
            }
        }
    }
    let total = truth.len() as u64;
    let missing = seen.iter().filter(|s| !**s).count() as u64;
    let pct = |x: u64| {
        if total == 0 {
            0.0
        } else {
            100.0 * x as f64 / total as f64
        }
    };
    println!(
        "{}",
        json!({
            "total": total,
            "result_lines": lines,
            "missing": missing,
            "duplicates": dup,
            "unknown_ids": unknown,
            "status_match": status_ok,
            "status_accuracy_pct": pct(status_ok),
            "status_and_reason_match": reason_ok,
            "reason_accuracy_pct": pct(reason_ok),
            "status_mismatches_by_class": status_miss,
            "reason_mismatches_by_class": reason_miss,
            "examples": examples,
        })
    );
    Ok(())
}
