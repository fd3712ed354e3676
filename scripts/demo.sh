#!/usr/bin/env bash
# The README's run command: on a fresh machine that has only Rust, install a
# few real proxy servers from Debian, start them on loopback (the ports in
# examples/demo/inventory.csv), start a local target, and run the exporter on
# examples/demo/pharox.yaml. Open http://127.0.0.1:10187/ for the status page
# and http://127.0.0.1:10187/metrics for Prometheus. Ctrl-C stops everything.
#
# Nothing listens beyond 127.0.0.1, and the proxies only relay to loopback.
# DEMO_SECONDS=N stops the demo after N seconds, and DEMO_BIN=PATH runs that
# binary instead of building a release one (both used by tests/it/demo.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

log() { printf 'demo: %s\n' "$*" >&2; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

need=()
command -v microsocks >/dev/null || need+=(microsocks)
[[ -x /usr/bin/tinyproxy ]] || need+=(tinyproxy)
[[ -x /usr/sbin/danted ]] || need+=(dante-server)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    log "installing ${need[*]} (no service is started by the install)"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 0755 /usr/sbin/policy-rc.d
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/pharox-demo.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

for port in 28080 21080 21081 21082 28888 10187; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        log "port 127.0.0.1:$port is already in use; stop what uses it and retry"
        exit 1
    fi
done

mkdir -p "$work/www"
echo "ok" >"$work/www/index.html"
python3 -m http.server 28080 --bind 127.0.0.1 --directory "$work/www" >"$work/target.log" 2>&1 &
pids+=($!)

microsocks -i 127.0.0.1 -p 21080 >"$work/ms-open.log" 2>&1 &
pids+=($!)
microsocks -i 127.0.0.1 -p 21081 -u demo -P demo-secret >"$work/ms-auth.log" 2>&1 &
pids+=($!)

cat >"$work/tinyproxy.conf" <<CONF
Port 28888
Listen 127.0.0.1
Timeout 30
MaxClients 64
Allow 127.0.0.0/8
LogFile "$work/tinyproxy.log"
PidFile "$work/tinyproxy.pid"
CONF
/usr/bin/tinyproxy -d -c "$work/tinyproxy.conf" >/dev/null 2>&1 &
pids+=($!)

users=""
[[ $(id -u) -eq 0 ]] && users=$'user.privileged: root\nuser.unprivileged: nobody'
cat >"$work/danted.conf" <<CONF
logoutput: $work/danted.log
internal: 127.0.0.1 port = 21082
external: 127.0.0.1
clientmethod: none
socksmethod: none
$users
client pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
  from: 127.0.0.0/8 to: 127.0.0.0/8
  protocol: tcp
}
CONF
chmod 0644 "$work/danted.conf"
/usr/sbin/danted -f "$work/danted.conf" -p "$work/danted.pid" >/dev/null 2>&1 &
pids+=($!)

# Wait (bounded) until the target and every proxy accept connections, so the
# first sweep measures the proxies, not their start-up.
for port in 28080 21080 21081 21082 28888; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { log "nothing listens on 127.0.0.1:$port; see $work"; exit 1; }
done

bin="${DEMO_BIN:-}"
if [[ -z "$bin" ]]; then
    log "proxies up on 127.0.0.1 (microsocks :21080 :21081, tinyproxy :28888, dante :21082); building the exporter"
    cargo build --release --quiet
    bin="$repo/target/release/pharox-exporter"
fi
log "status page: http://127.0.0.1:10187/   metrics: http://127.0.0.1:10187/metrics"
"$bin" --config.file examples/demo/pharox.yaml &
exporter=$!
pids+=("$exporter")
if [[ -n "${DEMO_SECONDS:-}" ]]; then
    sleep "$DEMO_SECONDS"
    kill -TERM "$exporter"
fi
wait "$exporter"
