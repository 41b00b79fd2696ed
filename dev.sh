#!/usr/bin/env bash
# One entry point for setting up, running, testing and benchmarking netpath-exporter
# on a Debian machine, as root (it installs what is missing with apt-get and pip).
#
#   ./dev.sh run [exporter flags...]   install what the exporter needs, then run it
#   ./dev.sh test [pytest args...]     install what the tests need, then lint, type-check, test
#   ./dev.sh bench                     install, then build the benchmark labs and print figures
#
# Python packages go into .venv/ at the repository root; nothing is installed
# into the system Python.
set -euo pipefail
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
               podman netavark aardvark-dns slirp4netns)

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
    apt_install "${TEST_PACKAGES[@]}"
    ensure_venv dev
    exec "$VENV/bin/python" -m bench "$@"
    ;;
*)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
