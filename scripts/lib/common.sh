# Shared helpers for husk's scripts. Source it: `. "$(dirname "$0")/lib/common.sh"`.
set -euo pipefail

HUSK_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export HUSK_REPO
# Build output of scripts (test images, VM kernel, ...), kept between runs.
HUSK_BUILD="${HUSK_BUILD:-$HUSK_REPO/build}"
export HUSK_BUILD

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_root() {
  [ "$(id -u)" = 0 ] || die "$(basename "$0") must run as root (it creates namespaces, mounts and cgroups)"
}

# Debian packages every part of husk's build, tests, demo and benchmarks needs.
HUSK_APT_PACKAGES=(
  build-essential pkg-config protobuf-compiler libseccomp-dev
  busybox-static iproute2 iptables nftables util-linux procps kmod curl jq tini
  runc crun containerd containernetworking-plugins conmon
  docker-registry skopeo umoci apache2-utils
  qemu-system-x86 cpio hyperfine
  etcd-server openssl
)

# Install the Debian packages that are missing (idempotent; quiet when nothing is missing).
ensure_apt_packages() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
  command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install --locked cargo-nextest
  fi
}

# The Kubernetes client binaries the CRI tests drive (crictl, ...), unpacked
# into $HUSK_K8S_BIN (default build/k8s) from $HUSK_K8S_TOOLS, else from
# ../shared/tools next to the repo or the development machines' /work/shared/tools;
# without them those tests skip (kind k8s-tools) and the skip summary says so.
ensure_k8s_tools() {
  local src
  for src in "${HUSK_K8S_TOOLS:-}" "$HUSK_REPO/../shared/tools" /work/shared/tools; do
    if [ -n "$src" ] && [ -x "$src/unpack" ]; then
      "$src/unpack" "${HUSK_K8S_BIN:-$HUSK_BUILD/k8s}" >/dev/null
      return 0
    fi
  done
  log "no Kubernetes tools found (set HUSK_K8S_TOOLS, or HUSK_K8S_BIN to a dir with crictl): the crictl tests will skip"
}

# Everything the project needs on a fresh Debian 12 machine.
husk_setup() {
  require_root
  ensure_apt_packages "${HUSK_APT_PACKAGES[@]}"
  ensure_rust
  ensure_k8s_tools
  # The Debian registry package starts a daemon on :5000 on install; tests run their own.
  # So does etcd-server on :2379; the control-plane tests start their own.
  local svc
  for svc in docker-registry etcd; do
    if systemctl is-active --quiet "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
  done
}
