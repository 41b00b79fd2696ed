#!/usr/bin/env bash
# One entry point for setting up, running, testing and benchmarking netpath-exporter
# on a Debian machine, as root (it installs what is missing with apt-get and pip).
#
#   ./dev.sh run [exporter flags...]   install what the exporter needs, then run it
#   ./dev.sh test [pytest args...]     install what the tests need, then lint, type-check, test
#   ./dev.sh bench                     install, then build the benchmark labs and print figures
#   ./dev.sh image                     build the container image netpath-exporter:VERSION into the
#                                      Docker daemon DOCKER_HOST names (no registry needed)
#   ./dev.sh image prometheus          Prometheus for the compose stack, from Debian's package
#
# Python packages go into .venv/ at the repository root; nothing is installed
# into the system Python.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")"
ROOT=$PWD
VENV=$ROOT/.venv
PY=${PYTHON:-python3}

log() { printf '==> %s\n' "$*" >&2; }

APT_UPDATED=
apt_install() {
    # apt_install PKG... : install the packages that are not installed yet.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "missing system packages: ${missing[*]} (run as root, or install them first)"
        exit 1
    fi
    if [ -z "$APT_UPDATED" ]; then
        log "apt-get update"
        apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null
        APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

RUN_PACKAGES=(iptables nftables iproute2 ca-certificates)
TEST_PACKAGES=(iptables nftables iproute2 docker.io containerd containernetworking-plugins runc busybox-static prometheus
               curl procps util-linux libcap2-bin make git openssl systemd chromium conntrack
               podman netavark aardvark-dns slirp4netns mmdebstrap gcc libc6-dev linux-libc-dev)
# The benchmarks: a C compiler and the kernel's uapi headers for bench/kfloor.c (the kernel
# floor), Debian's node_exporter as an anchor (bench/floor.py runs the binary itself; whether
# the package's own service starts on install does not matter).
BENCH_PACKAGES=(gcc libc6-dev linux-libc-dev prometheus-node-exporter)

ensure_python() {
    if ! command -v "$PY" >/dev/null 2>&1; then
        apt_install python3 python3-venv
    fi
    if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
}

ensure_venv() {
    # ensure_venv EXTRA : create .venv and install the package (with extras) when pyproject changed.
    local extra=$1 stamp want have
    ensure_python
    [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)-$extra"
    stamp=$VENV/.netpath-installed
    have=$(cat "$stamp" 2>/dev/null || true)
    # A venv set up for the tests (dev) also has everything the exporter needs.
    if [ "$have" = "${want%-run}-dev" ]; then return 0; fi
    if [ "$have" != "$want" ]; then
        log "installing Python dependencies into .venv ($extra)"
        "$VENV/bin/pip" install -q --upgrade pip >/dev/null
        if [ "$extra" = dev ]; then
            "$VENV/bin/pip" install -q -e ".[dev]"
        else
            "$VENV/bin/pip" install -q -e .
        fi
        echo "$want" >"$stamp"
    fi
}

# --- ./dev.sh image ----------------------------------------------------------------------
# The Dockerfile's default base (the official slim image) when the daemon has it or can pull
# it; otherwise a Debian bookworm base made here with mmdebstrap from Debian's archive and
# imported (python3, python3-venv, libstdc++6, iptables, nftables, ca-certificates; no docs).
# Environment: IMAGE_BASE (use this base, no probing), IMAGE_PULL=never (do not try to pull),
# IMAGE_ROOTFS (where the mmdebstrap tarball is cached; default build/image/rootfs-SUITE.tar),
# IMAGE_TAG (default netpath-exporter:VERSION).
DEFAULT_BASE=python:3.11-slim-bookworm
LOCAL_SUITE=bookworm
LOCAL_BASE=netpath-exporter-base:$LOCAL_SUITE
# libstdc++6: grpcio's C++ core (the CRI source).
LOCAL_PACKAGES=python3,python3-venv,libstdc++6,iptables,nftables,ca-certificates

version() { sed -n 's/^__version__ = "\(.*\)"$/\1/p' exporter/__init__.py; }

make_rootfs() {
    # make_rootfs TARBALL : a minimal Debian root filesystem (Essential packages + ours).
    local out=$1
    apt_install mmdebstrap
    mkdir -p "$(dirname "$out")"
    log "mmdebstrap $LOCAL_SUITE ($LOCAL_PACKAGES) -> $out"
    mmdebstrap --quiet --format=tar --variant=essential --include="$LOCAL_PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        "$LOCAL_SUITE" "$out.part"
    mv "$out.part" "$out"
}

choose_base() {
    # Prints the base image to build on, making the local one when needed.
    if [ -n "${IMAGE_BASE:-}" ]; then echo "$IMAGE_BASE"; return; fi
    if docker image inspect "$DEFAULT_BASE" >/dev/null 2>&1; then echo "$DEFAULT_BASE"; return; fi
    if [ "${IMAGE_PULL:-}" != never ] && docker pull -q "$DEFAULT_BASE" >&2; then
        echo "$DEFAULT_BASE"; return
    fi
    ensure_local_base
    echo "$LOCAL_BASE"
}

ensure_local_base() {
    if ! docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
        local rootfs=${IMAGE_ROOTFS:-$ROOT/build/image/rootfs-$LOCAL_SUITE.tar}
        [ -s "$rootfs" ] || make_rootfs "$rootfs"
        log "docker import $rootfs $LOCAL_BASE"
        docker import -m "Debian $LOCAL_SUITE: $LOCAL_PACKAGES (mmdebstrap)" "$rootfs" "$LOCAL_BASE" >/dev/null
    fi
}

build_wheels() {
    # build_wheels PYVER : the project's wheel and its runtime dependencies' binary wheels for
    # CPython PYVER on this machine's architecture, into build/wheelhouse (whatever Python runs
    # pip here: a pyenv build or another version gets the image's wheels all the same).
    local pyver=$1 wh=$ROOT/build/wheelhouse arch plat plats=()
    arch=$(uname -m)
    for plat in manylinux2014 manylinux_2_17 manylinux_2_28 manylinux_2_34; do
        plats+=(--platform "${plat}_$arch")
    done
    rm -rf "$wh" && mkdir -p "$wh"
    log "wheels for CPython $pyver ($arch) -> build/wheelhouse"
    "$VENV/bin/pip" wheel -qq --no-deps -w "$wh" "$ROOT"
    "$VENV/bin/pip" download -qq --only-binary=:all: --implementation cp --python-version "$pyver" \
        "${plats[@]}" -d "$wh" "$wh"/netpath_exporter-*.whl
}

build_image() {
    local tag=${IMAGE_TAG:-netpath-exporter:$(version)} base pyver net=() size
    command -v docker >/dev/null 2>&1 || apt_install docker.io
    docker version >/dev/null 2>&1 || {
        log "no Docker daemon answers at ${DOCKER_HOST:-unix:///var/run/docker.sock}"; exit 1; }
    ensure_venv run
    base=$(choose_base)
    pyver=$(docker run --rm --pull never --network none --entrypoint python3 "$base" \
        -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    build_wheels "$pyver"
    # A base that has the tools (the local one) needs no network at all during the build.
    [ "$base" = "$LOCAL_BASE" ] && net=(--network none)
    # The legacy builder where the CLI has no buildx (it builds the same Dockerfile).
    docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
    log "docker build $tag (base $base, Python $pyver)"
    docker build -q "${net[@]}" --build-arg "BASE=$base" -f deploy/Dockerfile -t "$tag" . >/dev/null
    size=$(docker image inspect -f '{{.Size}}' "$tag")
    log "built $tag: $((size / 1000000)) MB"
    echo "$tag"
}

build_prometheus_image() {
    # Prometheus for the compose stack: Debian's package's binaries on the local base.
    local root=$ROOT/build/prometheus-root deb tag version
    command -v docker >/dev/null 2>&1 || apt_install docker.io
    ensure_local_base
    mkdir -p "$ROOT/build/debs"
    deb=$(ls "$ROOT"/build/debs/prometheus_*.deb /var/cache/apt/archives/prometheus_*.deb \
          2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        (cd "$ROOT/build/debs" && apt-get download -q prometheus >/dev/null)
        deb=$(ls "$ROOT"/build/debs/prometheus_*.deb | head -n1)
    fi
    version=$(dpkg-deb -f "$deb" Version | sed 's/[+~-].*//')
    rm -rf "$root" "$root.x" && mkdir -p "$root/usr/bin" "$root/etc/prometheus"
    dpkg-deb -x "$deb" "$root.x"
    cp "$root.x/usr/bin/prometheus" "$root.x/usr/bin/promtool" "$root/usr/bin/"
    rm -rf "$root.x"
    tag=netpath-exporter-prometheus:$version
    docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
    log "docker build $tag (Debian's prometheus $version on $LOCAL_BASE)"
    docker build -q --network none --build-arg "BASE=$LOCAL_BASE" \
        -f deploy/compose/prometheus.Dockerfile -t "$tag" . >/dev/null
    echo "$tag"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
run)
    apt_install "${RUN_PACKAGES[@]}"
    ensure_venv run
    exec "$VENV/bin/netpath-exporter" "$@"
    ;;
test)
    apt_install "${TEST_PACKAGES[@]}"
    ensure_venv dev
    log "ruff"
    "$VENV/bin/ruff" check exporter tests bench grafana
    "$VENV/bin/ruff" format --check exporter tests bench grafana
    log "mypy --strict exporter/"
    "$VENV/bin/mypy"
    log "pytest"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
bench)
    apt_install "${TEST_PACKAGES[@]}" "${BENCH_PACKAGES[@]}"
    ensure_venv dev
    exec "$VENV/bin/python" -m bench "$@"
    ;;
image)
    case "${1:-exporter}" in
    exporter) build_image ;;
    prometheus) build_prometheus_image ;;
    *) log "usage: ./dev.sh image [exporter|prometheus]"; exit 2 ;;
    esac
    ;;
*)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
