#!/usr/bin/env bash
# One command for the whole benchmark (needs root, for the network namespace):
#
#   sudo bench/run.sh                # full matrix, writes bench/RESULTS.md
#   RUNS=1 SIZES="1000 10000" CONCS=256 bench/run.sh    # a quicker pass
#
# Everything runs inside a fresh network namespace that holds only `lo`: the
# fleet binds 0.0.0.0 there and nowhere else. The fleet and every exporter
# are started by PID and killed on exit; the namespace is deleted on exit.
# Every run is bounded by `timeout`, every wait loop by a count.
#
# Knobs (environment): RUNS (3), SIZES ("1000 10000 100000"), CONCS
# ("512"), TARGETS ("http https": the HTTPS target is served by the fleet
# with a CA made at its start; its cells are labelled `<mix>_https`, and the
# lean loop runs twice there, resuming TLS sessions (`lean`) and not
# (`lean_nores`)), STRACE (1: one `strace -c -f` run of lean and ours per
# target at STRACE_N (20000) proxies, for futex/recvfrom counts),
# PHAROX_SIZES ("1000"), PHAROX_EXTRA_CONCS ("4": pharox runs
# also at these, where it is not CPU-starved), PHAROX_UNBOUNDED (1: one run
# of stream_health_checks as shipped, every check at once; reported as
# concurrency 0), TIMEOUT_S (1), SLOW_MS (500),
# SLOW_DELAY_MS (700), HEALTHY_SIZES ("100000": all-healthy inventories,
# CPU-bound), EXPORTER_STAGE (1), EXPORTER_STAGES ("agg-100k
# perproxy-100k-cap10k perproxy-100k-all agg-1m-3sweeps shard0of4-1m"; also agg-1m,
# after one sweep), EXPORTER_1M (1),
# OUT (bench/out), KEEP_OUT (0; 1 keeps earlier runs in OUT and only adds,
# e.g. `KEEP_OUT=1 SIZES= HEALTHY_SIZES= PHAROX_SIZES= EXPORTER_STAGES=agg-1m`),
# BASE_BIN (unset; a pharox-exporter binary of another revision: it runs as
# contender `base` beside `ours`, same flags, order alternating, and its
# exporter stages are measured too, labelled `base-<stage>`; this is how a
# change is compared with the code before it, side by side in one run;
# BASE_REV names its revision in the report).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export RUNS=${RUNS:-3}
export SIZES=${SIZES-"1000 10000 100000"}
export CONCS=${CONCS-"512"}
export TARGETS=${TARGETS-"http https"}
export STRACE=${STRACE:-1}
export STRACE_N=${STRACE_N:-20000}
export PHAROX_SIZES=${PHAROX_SIZES-1000}
export PHAROX_EXTRA_CONCS=${PHAROX_EXTRA_CONCS-4}
export PHAROX_UNBOUNDED=${PHAROX_UNBOUNDED:-1}
export TIMEOUT_S=${TIMEOUT_S:-1}
export SLOW_MS=${SLOW_MS:-500}
export SLOW_DELAY_MS=${SLOW_DELAY_MS:-700}
export HEALTHY_SIZES=${HEALTHY_SIZES-100000}
export EXPORTER_STAGE=${EXPORTER_STAGE:-1}
export EXPORTER_1M=${EXPORTER_1M:-1}
export EXPORTER_STAGES=${EXPORTER_STAGES-"agg-100k perproxy-100k-cap10k perproxy-100k-all agg-1m-3sweeps shard0of4-1m"}
export KEEP_OUT=${KEEP_OUT:-0}
export OUT=${OUT:-$HERE/out}
export BIN=$ROOT/target/release
export BASE_BIN=${BASE_BIN:-}
export TARGET_URL=http://127.0.0.1:8080/
export TARGET_URL_TLS=https://127.0.0.1:8443/

log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

inner() {
    # Raise the fd limit for every contender; the hard limit may be lower
    # than 65536 in a container, then take what is allowed and record it.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    echo "$(ulimit -n)" >"$OUT/nofile"
    # Globals, not locals: the EXIT trap runs after this function returns.
    fleet_pid="" exp_pid=""
    cleanup_inner() {
        [ -n "$exp_pid" ] && kill "$exp_pid" 2>/dev/null && { wait "$exp_pid" 2>/dev/null || true; }
        [ -n "$fleet_pid" ] && kill "$fleet_pid" 2>/dev/null && { wait "$fleet_pid" 2>/dev/null || true; }
        true
    }
    trap cleanup_inner EXIT
    "$BIN/fleet" --addr 0.0.0.0 --in-netns --slow-delay-ms "$SLOW_DELAY_MS" \
        --ca-out "$OUT/ca.pem" --max-runtime-s 14400 >"$OUT/fleet.log" 2>&1 &
    fleet_pid=$!
    for _ in $(seq 50); do
        curl -s -m 1 "$TARGET_URL" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -s -m 1 "$TARGET_URL" | grep -q ok || { log "fleet did not come up"; exit 1; }
    curl -s -m 1 --cacert "$OUT/ca.pem" "$TARGET_URL_TLS" | grep -q ok \
        || { log "the fleet's HTTPS target does not answer"; exit 1; }
    local tck; tck=$(getconf CLK_TCK)
    fleet_cpu() { awk -v t="$tck" '{printf "%.2f", ($14+$15)/t}' "/proc/$fleet_pid/stat"; }

    # Is our sweep there and working? (A probe still at todo!() panics.)
    local ours=0
    if [ -x "$BIN/pharox-exporter" ]; then
        head -4 "$OUT/inv-mixed-1000.csv" >"$OUT/inv-smoke.csv"
        if timeout -k 2 20 "$BIN/pharox-exporter" sweep --once --inventory "$OUT/inv-smoke.csv" \
            --target-url "$TARGET_URL" --timeout "$TIMEOUT_S" --slow-threshold-ms "$SLOW_MS" \
            --concurrency 4 >"$OUT/smoke.jsonl" 2>"$OUT/smoke.err" \
            && [ "$(grep -c '"status"' "$OUT/smoke.jsonl")" -eq 3 ]; then
            ours=1
        else
            log "pharox-exporter sweep --once not usable yet (see $OUT/smoke.err); skipping 'ours'"
        fi
    fi
    echo "$ours" >"$OUT/ours_enabled"

    # The sweep contenders of run r (and mix: an HTTPS mix adds the lean
    # loop without TLS resumption), in an order that alternates with r so
    # that none always goes first.
    contenders() {
        local -a all=(lean)
        [[ ${2:-} == *_https ]] && all+=(lean_nores)
        [ "$ours" = 1 ] && all+=(ours)
        [ -n "$BASE_BIN" ] && all+=(base)
        if [ $(($1 % 2)) -eq 0 ]; then
            local i; for ((i = ${#all[@]} - 1; i >= 0; i--)); do printf '%s ' "${all[i]}"; done
        else
            printf '%s ' "${all[@]}"
        fi
    }

    # The command of contender $1 on inventory $2 at concurrency $3 against
    # mix $4 (a mix ending in _https targets the HTTPS target), in `cmd`.
    contender_cmd() {
        local who=$1 inv=$2 c=$3 mix=$4 url=$TARGET_URL
        local -a lean_tls=() ours_tls=()
        if [[ $mix == *_https ]]; then
            url=$TARGET_URL_TLS
            lean_tls=(--ca-file "$OUT/ca.pem")
            ours_tls=(--tls.ca-file "$OUT/ca.pem")
        fi
        case $who in
            lean|lean_nores)
                cmd=("$BIN/lean" --inventory "$inv" --target-url "$url" --timeout "$TIMEOUT_S"
                     --slow-threshold-ms "$SLOW_MS" --concurrency "$c" "${lean_tls[@]}")
                if [ "$who" = lean_nores ]; then cmd+=(--no-resume); fi ;;
            ours|base)
                local exe="$BIN/pharox-exporter"
                [ "$who" = base ] && exe=$BASE_BIN
                cmd=("$exe" sweep --once --inventory "$inv" --target-url "$url"
                     --timeout "$TIMEOUT_S" --slow-threshold-ms "$SLOW_MS" --attempts 1 --concurrency "$c"
                     "${ours_tls[@]}") ;;
        esac
    }

    run_one() { # contender mix N C r
        local who=$1 mix=$2 n=$3 c=$4 r=$5
        local d="$OUT/runs/$who-$mix-n$n-c$c-r$r"
        mkdir -p "$d"
        # The HTTPS mixes use the inventories (and truth) of their HTTP twins.
        local inv_mix=${mix%_https}
        local inv="$OUT/inv-$inv_mix-$n.csv" limit=900
        local -a cmd
        case $who in
            lean|lean_nores|ours|base) contender_cmd "$who" "$inv" "$c" "$mix" ;;
            pharox) cmd=("$HERE/.venv/bin/python" "$HERE/pharox_sweep.py" --inventory "$inv"
                       --target-url "$TARGET_URL" --timeout "$TIMEOUT_S" --slow-threshold-ms "$SLOW_MS"
                       --concurrency "$c"); limit=1200
                    [ "$c" = 0 ] && cmd+=(--unbounded) ;;
        esac
        printf '%q ' "${cmd[@]}" | sed "s#$ROOT/##g" >"$d/cmd"
        local f0; f0=$(fleet_cpu)
        local rc=0
        timeout -k 5 "$limit" /usr/bin/time -v -o "$d/time.txt" "${cmd[@]}" \
            >"$d/out.jsonl" 2>"$d/stderr.txt" || rc=$?
        local f1; f1=$(fleet_cpu)
        echo "$rc" >"$d/rc"
        awk -v a="$f0" -v b="$f1" 'BEGIN{printf "%.2f\n", b-a}' >"$d/fleet_cpu_s"
        "$BIN/accuracy" --truth "$OUT/truth-$inv_mix-$n.csv" --results "$d/out.jsonl" >"$d/accuracy.json" || true
        log "$who $mix n=$n c=$c r=$r rc=$rc $(grep -o '"status_accuracy_pct":[0-9.]*' "$d/accuracy.json") $(grep -E 'Elapsed' "$d/time.txt" | awk '{print $NF}')"
        # Keep the last run's results of each cell; the others are scored already.
        [ "$r" -lt "$RUNS" ] && rm -f "$d/out.jsonl"
        # Let TIME_WAIT sockets and the fleet's hanging connections drain.
        sleep 2
    }

    # `mixed` for the HTTP target, `mixed_https` for the HTTPS one.
    local -a sfx=()
    local t
    for t in $TARGETS; do
        case $t in http) sfx+=("") ;; https) sfx+=(_https) ;; *) log "unknown target $t" ;; esac
    done
    local n c r who x
    for n in $SIZES; do
        for c in $CONCS; do
            for r in $(seq "$RUNS"); do
                # Alternate the order so neither contender always goes first.
                for x in "${sfx[@]}"; do
                    for who in $(contenders "$r" "mixed$x"); do
                        run_one "$who" "mixed$x" "$n" "$c" "$r"
                    done
                done
                if [[ " $PHAROX_SIZES " == *" $n "* ]] && [ -x "$HERE/.venv/bin/python" ]; then
                    run_one pharox mixed "$n" "$c" "$r"
                fi
            done
        done
        if [[ " $PHAROX_SIZES " == *" $n "* ]] && [ -x "$HERE/.venv/bin/python" ]; then
            for c in $PHAROX_EXTRA_CONCS; do
                for r in $(seq "$RUNS"); do run_one pharox mixed "$n" "$c" "$r"; done
            done
            # As shipped: stream_health_checks starts every check at once.
            [ "$PHAROX_UNBOUNDED" = 1 ] && run_one pharox mixed "$n" 0 "$RUNS"
        fi
    done
    # All-healthy inventories: no sleeping proxies, so checks/s is bounded
    # by CPU alone (the per-core cost of a check, for docs/scaling.md).
    for n in $HEALTHY_SIZES; do
        for c in $CONCS; do
            for r in $(seq "$RUNS"); do
                for x in "${sfx[@]}"; do
                    for who in $(contenders "$r" "healthy$x"); do
                        run_one "$who" "healthy$x" "$n" "$c" "$r"
                    done
                done
            done
        done
    done

    # Where the CPU goes, insensitive to contention: syscall counts (futex:
    # cross-thread wake-ups; recvfrom: reads) of one run of each contender.
    if [ "$STRACE" = 1 ] && command -v strace >/dev/null; then
        mkdir -p "$OUT/strace"
        for x in "${sfx[@]}"; do
            for who in lean ours; do
                [ "$who" = ours ] && [ "$ours" != 1 ] && continue
                local -a cmd
                contender_cmd "$who" "$OUT/inv-mixed-$STRACE_N.csv" 512 "mixed$x"
                timeout -k 5 900 strace -c -f -o "$OUT/strace/$who-mixed$x.txt" "${cmd[@]}" \
                    >/dev/null 2>&1 || true
                log "strace $who mixed$x: $(awk '$NF=="futex"{print "futex " $4}' "$OUT/strace/$who-mixed$x.txt")"
                sleep 2
            done
        done
    fi

    [ "$ours" = 1 ] && [ "$EXPORTER_STAGE" = 1 ] || return 0
    # The long-running exporter: scrape time/size at 100k (aggregated and
    # per-proxy), RSS at 100k and 1M. Each waits for the first sweep to
    # complete, bounded in time.
    exporter_stage() { # label N sweeps-to-wait-for extra-flags...
        local label=$1 n=$2 want=$3; shift 3
        local exe="$BIN/pharox-exporter"
        [[ $label == base-* ]] && exe=$BASE_BIN
        local d="$OUT/exporter/$label"; mkdir -p "$d"
        local port; port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
        local -a cmd=("$exe" --inventory "$OUT/inv-mixed-$n.csv" --target-url "$TARGET_URL"
            --timeout "$TIMEOUT_S" --slow-threshold-ms "$SLOW_MS" --attempts 1 --concurrency 512
            --sweep.interval 30s --web.listen-address "127.0.0.1:$port" "$@")
        printf '%q ' "${cmd[@]}" | sed "s#$ROOT/##g" >"$d/cmd"
        "${cmd[@]}" >"$d/stdout.txt" 2>"$d/stderr.txt" &
        exp_pid=$!
        local url="http://127.0.0.1:$port/metrics" t0=$SECONDS done=0
        while [ $((SECONDS - t0)) -lt $((900 * want)) ] && kill -0 "$exp_pid" 2>/dev/null; do
            # Watch the log, not /metrics: at 1M proxies a scrape costs most of
            # a second of CPU, and polling it would slow the sweep it waits for.
            if [ "$(grep -Ec 'message="sweep (completed|overran)' "$d/stderr.txt")" -ge "$want" ]; then
                done=1; break
            fi
            sleep 1
        done
        echo "$done" >"$d/first_sweep_done"
        echo $((SECONDS - t0)) >"$d/first_sweep_wait_s"
        if kill -0 "$exp_pid" 2>/dev/null; then
            grep -E '^(VmRSS|VmHWM)' "/proc/$exp_pid/status" >"$d/rss_after_first_sweep.txt"
            : >"$d/scrapes.txt"
            for _ in $(seq 10); do
                curl -s -m 30 -o "$d/metrics.txt" -w '%{time_total} %{size_download}\n' "$url" >>"$d/scrapes.txt" || true
            done
            curl -s -m 30 -H 'Accept: application/openmetrics-text' -o /dev/null \
                -w '%{time_total} %{size_download}\n' "$url" >"$d/scrape_openmetrics.txt" || true
            grep -E '^(VmRSS|VmHWM)' "/proc/$exp_pid/status" >"$d/rss_after_scrapes.txt"
            gzip -f "$d/metrics.txt"
            kill "$exp_pid" 2>/dev/null; wait "$exp_pid" 2>/dev/null || true
        else
            wait "$exp_pid" 2>/dev/null || true
            log "exporter $label exited early"
        fi
        exp_pid=""
        log "exporter $label done=$done $(cat "$d/rss_after_first_sweep.txt" 2>/dev/null | tr '\n' ' ')"
        sleep 2
    }
    local st pfx
    local -a prefixes=("")
    [ -n "$BASE_BIN" ] && prefixes+=("base-")
    for st in $EXPORTER_STAGES; do
      for pfx in "${prefixes[@]}"; do
        case $st in
            agg-100k) exporter_stage "${pfx}agg-100k" 100000 1 ;;
            # Per-proxy series are capped (metrics.per_proxy_limit, default
            # 10,000): once at the default cap, once lifted to all 100k.
            perproxy-100k-cap10k) exporter_stage "$pfx$st" 100000 1 --metrics.per-proxy ;;
            perproxy-100k-all)
                printf 'metrics:\n  per_proxy_limit: 100000\n' >"$OUT/perproxy-all.yaml"
                exporter_stage "$pfx$st" 100000 1 --metrics.per-proxy --config.file "$OUT/perproxy-all.yaml" ;;
            agg-1m) [ "$EXPORTER_1M" = 1 ] && exporter_stage "${pfx}agg-1m" 1000000 1 ;;
            # Steady state: RSS after three back-to-back sweeps of 1M.
            agg-1m-3sweeps) [ "$EXPORTER_1M" = 1 ] && exporter_stage "${pfx}agg-1m-3sweeps" 1000000 3 ;;
            # One replica of four over the 1M inventory (~250k proxies).
            shard0of4-1m) [ "$EXPORTER_1M" = 1 ] && exporter_stage "$pfx$st" 1000000 1 --shard.index 0 --shard.count 4 ;;
        esac
      done
    done
    true
}

if [ "${1:-}" = --inner ]; then
    inner
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "needs root (network namespace)" >&2; exit 1; }
[ -x /usr/bin/time ] || apt-get install -y time >/dev/null
command -v curl >/dev/null || apt-get install -y curl >/dev/null

cd "$ROOT"
log "building release binaries"
cargo build --release -p pharox-bench
cargo build --release -p pharox-exporter || log "pharox-exporter did not build; 'ours' will be skipped"
if [ ! -x "$HERE/.venv/bin/python" ]; then
    log "creating the pharox venv"
    python3 -m venv "$HERE/.venv"
    "$HERE/.venv/bin/pip" install -q pharox 'httpx[socks]' || rm -rf "$HERE/.venv"
fi

[ "$KEEP_OUT" = 1 ] || rm -rf "$OUT"
mkdir -p "$OUT"
git -C "$ROOT" rev-parse --short HEAD >"$OUT/ours_revision" 2>/dev/null || echo unknown >"$OUT/ours_revision"
echo "TIMEOUT_S=$TIMEOUT_S SLOW_MS=$SLOW_MS SLOW_DELAY_MS=$SLOW_DELAY_MS" >"$OUT/knobs"
if [ -n "$BASE_BIN" ]; then
    [ -x "$BASE_BIN" ] || { log "BASE_BIN=$BASE_BIN is not an executable"; exit 1; }
    echo "${BASE_REV:-$BASE_BIN}" >"$OUT/base_revision"
fi
gen_sizes="$SIZES"
[[ " $SIZES " == *" 1000 "* ]] || gen_sizes="1000 $gen_sizes"
[ "$EXPORTER_STAGE" = 1 ] && [[ " $gen_sizes " != *" 100000 "* ]] && gen_sizes="$gen_sizes 100000"
[ "$EXPORTER_STAGE" = 1 ] && [ "$EXPORTER_1M" = 1 ] && gen_sizes="$gen_sizes 1000000"
[ "$STRACE" = 1 ] && [[ " $gen_sizes " != *" $STRACE_N "* ]] && gen_sizes="$gen_sizes $STRACE_N"
for n in $gen_sizes; do
    [ "$KEEP_OUT" = 1 ] && [ -f "$OUT/truth-mixed-$n.csv" ] && continue
    "$BIN/geninv" -n "$n" --inventory "$OUT/inv-mixed-$n.csv" --truth "$OUT/truth-mixed-$n.csv"
done
for n in $HEALTHY_SIZES; do
    [ "$KEEP_OUT" = 1 ] && [ -f "$OUT/truth-healthy-$n.csv" ] && continue
    "$BIN/geninv" -n "$n" --inventory "$OUT/inv-healthy-$n.csv" --truth "$OUT/truth-healthy-$n.csv" \
        --healthy 100 --slow 0 --refused 0 --reset 0 --hang 0 --auth-ok 0 --auth-missing 0 \
        --auth-bad 0 --garbage 0 --dest-refused 0
done

NS=pxbench$$
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
log "netns $NS ready; running the matrix (RUNS=$RUNS SIZES=$SIZES CONCS=$CONCS)"
ip netns exec "$NS" bash ${BENCH_TRACE:+-x} "$HERE/run.sh" --inner
python3 "$HERE/report.py" "$OUT" >"$HERE/RESULTS.md"
log "wrote $HERE/RESULTS.md"
