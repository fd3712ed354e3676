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
# For tests of the install step only: DEMO_APT_GET=CMD runs CMD instead of
# apt-get, DEMO_POLICY_RC_D=PATH replaces /usr/sbin/policy-rc.d, and
# DEMO_FORCE_INSTALL=1 runs the install step even when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

rust_version=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
ports=(10187 21080 21081 21082 28080 28888)

usage() {
    cat <<USAGE
Usage: scripts/demo.sh [--install-only] [--help]

Starts a few real proxies (microsocks, tinyproxy, dante) and a target on
127.0.0.1, then the exporter on examples/demo/pharox.yaml. Open
http://127.0.0.1:10187/ (status page) and http://127.0.0.1:10187/metrics.
Ctrl-C stops everything and removes what the demo wrote.

Prerequisites:
  - Debian or Ubuntu (apt-get installs microsocks, tinyproxy, dante-server
    and python3 when missing; no service is started by the install);
  - root, or sudo for the apt-get step;
  - Rust ${rust_version} or newer (Cargo.toml rust-version), with cargo;
    the first run builds the exporter in release mode (several minutes,
    with cargo's progress shown);
  - free loopback ports: ${ports[*]}.

  --install-only   install the missing packages, then exit
  --help           this text
USAGE
}

install_only=0
for arg in "$@"; do
    case "$arg" in
    -h | --help) usage; exit 0 ;;
    --install-only) install_only=1 ;;
    *) usage >&2; exit 2 ;;
    esac
done

log() { printf 'demo: %s\n' "$*" >&2; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

work=""
pids=()
policy_rc_d=${DEMO_POLICY_RC_D:-/usr/sbin/policy-rc.d}
wrote_policy=0
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n "$work" ]] && rm -rf "$work"
    # Only a policy-rc.d this run wrote: one that was there before is the
    # machine's own.
    if ((wrote_policy)); then
        as_root rm -f "$policy_rc_d" || log "could not remove $policy_rc_d; remove it by hand"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

need=()
command -v microsocks >/dev/null || need+=(microsocks)
[[ -x /usr/bin/tinyproxy ]] || need+=(tinyproxy)
[[ -x /usr/sbin/danted ]] || need+=(dante-server)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})) || [[ ${DEMO_FORCE_INSTALL:-0} == 1 ]]; then
    apt_get=${DEMO_APT_GET:-apt-get}
    log "installing ${need[*]:-nothing missing (forced)} (no service is started by the install)"
    # A policy-rc.d that exits 101 keeps apt from starting the daemons; it is
    # removed again when this script exits, whatever the outcome.
    if [[ ! -e "$policy_rc_d" ]]; then
        wrote_policy=1
        printf '#!/bin/sh\n# Written by scripts/demo.sh while it installs packages.\nexit 101\n' |
            as_root tee "$policy_rc_d" >/dev/null
        as_root chmod 0755 "$policy_rc_d"
    fi
    as_root "$apt_get" update -qq
    as_root env DEBIAN_FRONTEND=noninteractive "$apt_get" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if ((wrote_policy)); then
        as_root rm -f "$policy_rc_d"
        wrote_policy=0
    fi
fi
if ((install_only)); then
    log "packages ready"
    exit 0
fi

for port in "${ports[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        log "port 127.0.0.1:$port is already in use; stop what uses it and retry"
        exit 1
    fi
done

work=$(mktemp -d /tmp/pharox-demo.XXXXXX)
chmod 0755 "$work"
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
    log "proxies up on 127.0.0.1 (microsocks :21080 :21081, tinyproxy :28888, dante :21082)"
    if [[ ! -x "$repo/target/release/pharox-exporter" ]]; then
        log "building the exporter (release; the first build takes several minutes)"
    fi
    # Not --quiet: cargo's own progress (a bar on a terminal, one line per
    # crate otherwise) shows that the build is moving.
    cargo build --release --bin pharox-exporter
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
