#!/usr/bin/env bash
# A bounded soak of the long-running exporter (needs root, for the network
# namespace):
#
#   sudo bench/soak.sh                  # 20 minutes, then the Soak section of bench/RESULTS.md
#   SOAK_SECONDS=120 bench/soak.sh      # a quick pass
#
# A 20k-proxy fleet of which a third misbehaves (slow, refused, reset,
# hanging, garbage, auth failures, destination refused), an inventory that
# churns every CHURN_SECONDS (ids stay and change address or behaviour, and
# 1,000 proxies leave and come back), a scrape every 5 s, and 200 idle
# connections held against the web port the whole time (re-opened as the
# server closes them). Every 5 s it samples the exporter's RSS, open fds and
# scrape latency; what it asks of them is that they stay flat.
#
# Everything runs in a fresh network namespace holding only `lo` (the fleet
# binds 0.0.0.0 there and nowhere else); every process is started by PID
# and killed on exit; every loop is bounded by SOAK_SECONDS.
#
# Knobs: SOAK_SECONDS (1200), SOAK_N (20000), CHURN_SECONDS (60),
# IDLE_CONNS (200), INTERVAL (30s), CONCURRENCY (512), OUT (bench/out).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export SOAK_SECONDS=${SOAK_SECONDS:-1200}
export SOAK_N=${SOAK_N:-20000}
export CHURN_SECONDS=${CHURN_SECONDS:-60}
export IDLE_CONNS=${IDLE_CONNS:-200}
export INTERVAL=${INTERVAL:-30s}
export CONCURRENCY=${CONCURRENCY:-512}
export OUT=${OUT:-$HERE/out}
export BIN=$ROOT/target/release
export TARGET_URL=http://127.0.0.1:8080/
SOAK="$OUT/soak"

log() { echo "[soak $(date -u +%H:%M:%S)] $*" >&2; }

inner() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    fleet_pid="" exp_pid="" idle_pid=""
    cleanup_inner() {
        for p in "$idle_pid" "$exp_pid" "$fleet_pid"; do
            [ -n "$p" ] && kill "$p" 2>/dev/null && { wait "$p" 2>/dev/null || true; }
        done
        true
    }
    trap cleanup_inner EXIT
    "$BIN/fleet" --addr 0.0.0.0 --in-netns --slow-delay-ms 800 \
        --max-runtime-s $((SOAK_SECONDS + 300)) >"$SOAK/fleet.log" 2>&1 &
    fleet_pid=$!
    for _ in $(seq 50); do
        curl -s -m 1 "$TARGET_URL" >/dev/null 2>&1 && break
        sleep 0.1
    done
    cp "$SOAK/inv-0.csv" "$SOAK/inventory.csv"
    local port=19187
    "$BIN/pharox-exporter" --inventory "$SOAK/inventory.csv" --target-url "$TARGET_URL" \
        --timeout 2 --slow-threshold-ms 500 --attempts 1 --concurrency "$CONCURRENCY" \
        --sweep.interval "$INTERVAL" --web.listen-address "127.0.0.1:$port" \
        >"$SOAK/exporter.out" 2>"$SOAK/exporter.log" &
    exp_pid=$!
    local url="http://127.0.0.1:$port/metrics"
    for _ in $(seq 100); do
        curl -s -m 1 -o /dev/null "$url" && break
        sleep 0.1
    done
    # Idle connections: opened, never written to; re-opened when the server
    # closes them (its header-read timeout), so IDLE_CONNS stay pending.
    python3 - "$port" "$IDLE_CONNS" "$SOAK_SECONDS" <<'PY' &
import socket, sys, time, select
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.time() + secs
socks = []
def fill():
    while len(socks) < n and time.time() < end:
        s = socket.socket()
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            return
        s.setblocking(False)
        socks.append(s)
while time.time() < end:
    fill()
    readable, _, _ = select.select(socks, [], [], 1.0)
    for s in readable:
        try:
            gone = s.recv(1) == b""
        except OSError:
            gone = True
        if gone:
            socks.remove(s)
            s.close()
PY
    idle_pid=$!

    local t0=$SECONDS next_churn=$CHURN_SECONDS k=0
    echo "t_s,rss_kib,fds,scrape_ms,scrape_bytes,sweeps,inactive,checks_in_flight" >"$SOAK/samples.csv"
    while [ $((SECONDS - t0)) -lt "$SOAK_SECONDS" ] && kill -0 "$exp_pid" 2>/dev/null; do
        local t=$((SECONDS - t0))
        if [ "$t" -ge "$next_churn" ]; then
            k=$(((k + 1) % 4))
            cp "$SOAK/inv-$k.csv" "$SOAK/inventory.next" && mv "$SOAK/inventory.next" "$SOAK/inventory.csv"
            next_churn=$((next_churn + CHURN_SECONDS))
        fi
        local rss fds scr
        rss=$(awk '/^VmRSS/ {print $2}' "/proc/$exp_pid/status")
        fds=$(ls "/proc/$exp_pid/fd" | wc -l)
        scr=$(curl -s -m 10 -o "$SOAK/last.prom" -w '%{time_total} %{size_download}' "$url" || echo "nan 0")
        local sweeps inactive inflight
        sweeps=$(awk '/^pharox_exporter_sweeps_total / {print $2}' "$SOAK/last.prom" 2>/dev/null)
        inactive=$(awk '/^pharox_proxies\{.*status="inactive"/ {s += $2} END {print s + 0}' "$SOAK/last.prom" 2>/dev/null)
        inflight=$(awk '/^pharox_exporter_checks_in_flight / {print $2}' "$SOAK/last.prom" 2>/dev/null)
        echo "$t,$rss,$fds,$(awk -v x="${scr% *}" 'BEGIN{printf "%.1f", x * 1000}'),${scr#* },${sweeps:-},${inactive:-},${inflight:-}" >>"$SOAK/samples.csv"
        sleep 5
    done
    grep -E '^(VmRSS|VmHWM)' "/proc/$exp_pid/status" >"$SOAK/final_rss.txt" 2>/dev/null || true
}

if [ "${1:-}" = --inner ]; then
    inner
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "needs root (network namespace)" >&2; exit 1; }
command -v curl >/dev/null || apt-get install -y curl >/dev/null
cd "$ROOT"
log "building release binaries"
cargo build --release -p pharox-bench -p pharox-exporter
rm -rf "$SOAK"
mkdir -p "$SOAK"
git -C "$ROOT" rev-parse --short HEAD >"$SOAK/revision" 2>/dev/null || echo unknown >"$SOAK/revision"
# Four inventories over the same ids: the same mix (a third misbehaving)
# drawn with other seeds, so ids change address and behaviour, and two of
# them 1,000 proxies short (those leave, then come back).
for k in 0 1 2 3; do
    n=$SOAK_N
    [ $((k % 2)) -eq 1 ] && n=$((SOAK_N - 1000))
    "$BIN/geninv" -n "$n" --seed $((100 + k)) --inventory "$SOAK/inv-$k.csv" --truth "$SOAK/truth-$k.csv" \
        --healthy 67 --slow 5 --refused 5 --reset 5 --hang 3 --auth-ok 0 --auth-missing 3 \
        --auth-bad 2 --garbage 5 --dest-refused 5
done
printf 'SOAK_SECONDS=%s SOAK_N=%s CHURN_SECONDS=%s IDLE_CONNS=%s INTERVAL=%s CONCURRENCY=%s\n' \
    "$SOAK_SECONDS" "$SOAK_N" "$CHURN_SECONDS" "$IDLE_CONNS" "$INTERVAL" "$CONCURRENCY" >"$SOAK/knobs"

NS=pxsoak$$
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
log "netns $NS ready; soaking for ${SOAK_SECONDS}s"
ip netns exec "$NS" "$HERE/soak.sh" --inner
python3 "$HERE/report.py" "$OUT" >"$HERE/RESULTS.md"
log "wrote $HERE/RESULTS.md (Soak section from $SOAK/samples.csv)"
