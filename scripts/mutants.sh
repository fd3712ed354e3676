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
#   scripts/mutants.sh                     # the six core files (about 30-60 min)
#   scripts/mutants.sh src/state.rs        # some files only
#   MUTANTS_JOBS=2 scripts/mutants.sh      # parallel builds (default 1)
#
# Installs cargo-mutants if missing. Not run in CI (too slow); its table goes
# to docs/mutants.md each time the core changes, with every survivor argued.
# The tree is copied for each file (cargo-mutants' default), so edits made
# while it runs end up in the next file's copy: run it from a clean checkout.
# Build artifacts go to CARGO_TARGET_DIR (or target/), which must not be
# shared with other builds of this tree (cargo keys artifacts by the path
# relative to the workspace, so two checkouts would overwrite each other's);
# the reports go to <target dir>/mutants-out/<file>/mutants.out/.
set -euo pipefail
cd "$(dirname "$0")/.."

files=(
    src/probe/socks4.rs
    src/probe/socks5.rs
    src/state.rs
    src/probe/mod.rs
    src/probe/http_proxy.rs
    src/inventory/shard.rs
)
if [[ $# -gt 0 ]]; then
    files=("$@")
fi

if ! command -v cargo-mutants >/dev/null 2>&1; then
    cargo install --locked cargo-mutants
fi

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TARGET_DIR=$target_dir
out_root=$target_dir/mutants-out
mkdir -p "$out_root"

# The fast tests: every unit test of the library and tests/probe_faults.rs
# (a test binary of its own, so a mutant rebuilds the library, its unit
# tests and that one small binary, never tests/it).

score() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
file, path = sys.argv[1], sys.argv[2]
o = json.load(open(path))
caught, missed, timeout, unviable = (o.get(k, 0) for k in ("caught", "missed", "timeout", "unviable"))
viable = caught + missed + timeout
pct = 100.0 * (caught + timeout) / viable if viable else 100.0
print(f"| {file} | {caught + timeout} | {viable} | {pct:.0f}% | {missed} | {unviable} |")
EOF
}

table=()
for f in "${files[@]}"; do
    out=$out_root/$(echo "$f" | tr / _)
    rm -rf "$out"
    mkdir -p "$out"
    echo "== cargo mutants --file $f"
    # Exit status 2 means some mutants were missed: that is the measurement.
    status=0
    # --cargo-arg applies to the build too: without it every mutant would
    # rebuild every test binary of the package (tests/it above all).
    cargo mutants --file "$f" --jobs "${MUTANTS_JOBS:-1}" --output "$out" \
        --cargo-arg=--lib --cargo-arg=--test=probe_faults || status=$?
    if [[ $status -ne 0 && $status -ne 2 && $status -ne 3 ]]; then
        echo "cargo mutants failed on $f (exit $status)" >&2
        exit "$status"
    fi
    table+=("$(score "$f" "$out/mutants.out/outcomes.json")")
    if [[ -s $out/mutants.out/missed.txt ]]; then
        echo "-- missed in $f:"
        cat "$out/mutants.out/missed.txt"
    fi
done

echo
echo "| file | caught | viable | score | missed | unviable |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${table[@]}"
