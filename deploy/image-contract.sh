#!/usr/bin/env bash
# The image's runtime contract, with podman and no registry: an image built
# FROM scratch from BINARY plus the glibc libraries `ldd` names, run as
# 65532:65532 with a read-only root, no capabilities, the config and the
# inventory mounted where the Kubernetes manifests mount them and with the
# ownership and modes the kubelet gives them. Checks /-/ready is 200 for the
# sidecar and sharded layouts, and 503 for the old one (0440, no fsGroup).
#
#   deploy/image-contract.sh target/release/pharox-exporter
#
# Needs root, podman and runc (Debian packages). Not part of `cargo test`:
# it depends on the host's container runtime. On a sandbox where crun
# cannot set rlimits or handle hybrid cgroups, the flags below (runc, lower
# nofile/nproc limits) are what made it run.
set -euo pipefail
bin=${1:?usage: image-contract.sh BINARY}
repo=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-18977}
work=$(mktemp -d)
name=pharox-contract-$$
image=localhost/pharox-exporter:contract-$$
cleanup() {
    podman rm -f "$name" >/dev/null 2>&1 || true
    podman rmi -f "$image" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

root="$work/rootfs"
install -D -m 0755 "$bin" "$root/usr/local/bin/pharox-exporter"
objcopy --strip-debug "$root/usr/local/bin/pharox-exporter"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
cat >"$work/Containerfile" <<'CF'
FROM scratch
COPY rootfs/ /
USER 65532:65532
EXPOSE 10187
ENTRYPOINT ["/usr/local/bin/pharox-exporter"]
CMD ["--config.file=/etc/pharox/config/pharox.yml"]
CF
podman build -q -t "$image" "$work" >/dev/null

mkdir -p "$work/config" "$work/inventory"
kubectl kustomize "$repo/deploy/kubernetes/sidecar" |
    awk '/^  pharox.yml: \|/{on=1; next} on && /^[^ ]/{on=0} on{sub(/^    /, ""); print}' \
        >"$work/config/pharox.yml"
chmod 0644 "$work/config/pharox.yml"
printf 'id,protocol,host,port,username,password,pool,provider\nt-1,http,127.0.0.1,1,u,secret-pw,test,test\n' \
    >"$work/inventory/proxies.csv"

ready() { # [podman run flags...] -> prints the /-/ready status
    podman --runtime runc run -d --name "$name" "$@" \
        --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
        --network host --read-only --cap-drop ALL --security-opt no-new-privileges \
        -v "$work/config:/etc/pharox/config:ro" -v "$work/inventory:/etc/pharox/inventory:ro" \
        "$image" --config.file=/etc/pharox/config/pharox.yml \
        --web.listen-address="127.0.0.1:$port" --target-url=http://127.0.0.1:1/ >/dev/null
    local code=000
    for _ in $(seq 50); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/-/ready" || true)
        [[ $code == 200 ]] && break
        sleep 0.2
    done
    podman logs "$name" 2>&1 | grep -q secret-pw && { echo "password in the log" >&2; exit 1; }
    podman rm -f "$name" >/dev/null
    echo "$code"
}
inv="$work/inventory/proxies.csv"
fail=0
chown 0:0 "$inv"; chmod 0444 "$inv"
got=$(ready); echo "sidecar (root:root 0444): /-/ready $got"; [[ $got == 200 ]] || fail=1
chown 0:65532 "$inv"; chmod 0440 "$inv"
got=$(ready --group-add 65532); echo "sharded (root:65532 0440, fsGroup): /-/ready $got"; [[ $got == 200 ]] || fail=1
chown 0:0 "$inv"; chmod 0440 "$inv"
got=$(ready); echo "old (root:root 0440, no fsGroup): /-/ready $got"; [[ $got == 503 ]] || fail=1
exit "$fail"
