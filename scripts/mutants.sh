#!/usr/bin/env bash
# Mutation testing of the core with the fast tests only: cargo-mutants
# changes the code of each core file in small ways (a condition negated, a
# `+` made `-`, a function body replaced by a default) and runs the library's
# unit tests plus the integration tests of tests/probe_faults.rs on every
# such mutant; a mutant that no test notices ("missed") is behaviour that no
# fast test pins down. Prints the score per file: caught / viable, where a
# mutant that makes the tests hang (timeout) counts as caught and one that
# does not compile (unviable) is not counted.
#
#   scripts/mutants.sh                     # the core files (about 40-70 min)
#   scripts/mutants.sh src/state.rs        # some files only
#   MUTANTS_JOBS=2 scripts/mutants.sh      # parallel builds (default 1)
#
# Installs cargo-mutants and the test dependencies if missing (as root,
# like scripts/test.sh). Not run in CI (too slow); its table goes
# to docs/mutants.md each time the core changes, with every survivor argued.
# The tree is copied once, at the start (cargo-mutants' default); run it
# from a clean checkout all the same, so that what it measures is a commit.
# Build artifacts go to CARGO_TARGET_DIR (or target/), which must not be
# shared with other builds of this tree (cargo keys artifacts by the path
# relative to the workspace, so two checkouts would overwrite each other's);
# the report goes to <target dir>/mutants-out/run/mutants.out/.
set -euo pipefail
cd "$(dirname "$0")/.."

files=(
    src/probe/socks4.rs
    src/probe/socks5.rs
    src/state.rs
    src/probe/mod.rs
    src/probe/http_proxy.rs
    src/inventory/shard.rs
    src/text.rs
)
if [[ $# -gt 0 ]]; then
    files=("$@")
fi

# The library's unit tests build GeoIP databases with MaxMind's Perl writer
# (and the baseline fails without it): the suite's own installer, a no-op
# when everything is there.
bash scripts/install-test-deps.sh

if ! command -v cargo-mutants >/dev/null 2>&1; then
    cargo install --locked cargo-mutants
fi

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TARGET_DIR=$target_dir
out_root=$target_dir/mutants-out
# No debug info: every mutant relinks the test binaries, and the link is
# most of an incremental build; the tests behave the same without it.
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-0}
mkdir -p "$out_root"

# The fast tests: every unit test of the library and tests/probe_faults.rs
# (a test binary of its own, so a mutant rebuilds the library, its unit
# tests and that one small binary, never tests/it).

# One cargo-mutants run over all the files (one baseline build and test
# run, one copy of the tree), then a score per file from its outcomes.
args=()
for f in "${files[@]}"; do
    args+=(--file "$f")
done
out=$out_root/run
rm -rf "$out"
mkdir -p "$out"
echo "== cargo mutants ${args[*]}"
# Exit status 2 means some mutants were missed, 3 that some timed out:
# both are the measurement, not a failure of the run.
status=0
# --cargo-arg applies to the build too: without it every mutant would
# rebuild every test binary of the package (tests/it above all).
cargo mutants "${args[@]}" --jobs "${MUTANTS_JOBS:-1}" --output "$out" \
    --cargo-arg=--lib --cargo-arg=--test=probe_faults || status=$?
if [[ $status -ne 0 && $status -ne 2 && $status -ne 3 ]]; then
    echo "cargo mutants failed (exit $status)" >&2
    exit "$status"
fi

python3 - "$out/mutants.out/outcomes.json" "${files[@]}" <<'PY'
import json, sys
path, files = sys.argv[1], sys.argv[2:]
outcomes = json.load(open(path))["outcomes"]
tally = {f: {"caught": 0, "missed": 0, "timeout": 0, "unviable": 0} for f in files}
kinds = {"CaughtMutant": "caught", "MissedMutant": "missed",
         "Timeout": "timeout", "Unviable": "unviable"}
for o in outcomes:
    scenario = o.get("scenario")
    if not isinstance(scenario, dict) or "Mutant" not in scenario:
        continue  # the baseline
    kind = kinds.get(o.get("summary", ""))
    file = scenario["Mutant"].get("file")
    if kind is not None and file in tally:
        tally[file][kind] += 1
print()
print("| file | caught | viable | score | missed | unviable |")
print("|---|---:|---:|---:|---:|---:|")
for f in files:
    t = tally[f]
    viable = t["caught"] + t["missed"] + t["timeout"]
    pct = 100.0 * (t["caught"] + t["timeout"]) / viable if viable else 100.0
    print(f"| {f} | {t['caught'] + t['timeout']} | {viable} | {pct:.0f}% | {t['missed']} | {t['unviable']} |")
PY

if [[ -s $out/mutants.out/missed.txt ]]; then
    echo
    echo "-- missed:"
    cat "$out/mutants.out/missed.txt"
fi
