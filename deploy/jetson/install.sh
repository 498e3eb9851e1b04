#!/usr/bin/env bash
# Install camstream on this machine as a systemd service.
#
#   sudo deploy/jetson/install.sh [--dry-run] [--role agent|server] [--profile P]
#                                 [--prefix /opt/camstream] [--config-dir /etc/camstream]
#                                 [--unit-dir /etc/systemd/system] [--no-start]
#
# Detects the profile from the hardware:
#   aarch64 + Jetson (/etc/nv_tegra_release or "nvidia,tegra" in the device tree)  → edge-jetson (agent)
#   aarch64 otherwise                                                              → edge-cpu    (agent)
#   x86_64 with nvidia-smi                                                         → server-gpu  (server)
#   x86_64 without                                                                 → edge-cpu    (agent)
# --role/--profile override it. Steps: create the "camstream" system user, copy the app to the
# prefix, npm ci + native addons + tsc build to dist/ + prune dev dependencies, install the config (never overwriting an existing one),
# install and enable the unit. --dry-run prints every step and changes nothing (no root needed).
# For tests, CAMSTREAM_UNAME_M, CAMSTREAM_JETSON (1/0) and CAMSTREAM_NVIDIA_SMI (1/0) override detection.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DRY_RUN=0
ROLE=""
PROFILE=""
PREFIX=/opt/camstream
CONFIG_DIR=/etc/camstream
UNIT_DIR=/etc/systemd/system
START=1
SVC_USER=camstream

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --role) ROLE="${2:?--role needs agent|server}"; shift ;;
    --profile) PROFILE="${2:?--profile needs a value}"; shift ;;
    --prefix) PREFIX="${2:?}"; shift ;;
    --config-dir) CONFIG_DIR="${2:?}"; shift ;;
    --unit-dir) UNIT_DIR="${2:?}"; shift ;;
    --no-start) START=0 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done

# run CMD...: print it; execute unless --dry-run
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] %s\n' "$*"
  else
    printf '+ %s\n' "$*"
    "$@"
  fi
}

# ---- detect ------------------------------------------------------------------------------
ARCH="${CAMSTREAM_UNAME_M:-$(uname -m)}"
is_jetson() {
  if [ -n "${CAMSTREAM_JETSON:-}" ]; then [ "$CAMSTREAM_JETSON" = 1 ]; return; fi
  [ -f /etc/nv_tegra_release ] && return 0
  [ -r /proc/device-tree/compatible ] && tr '\0' '\n' < /proc/device-tree/compatible | grep -q '^nvidia,tegra' && return 0
  return 1
}
has_nvidia_smi() {
  if [ -n "${CAMSTREAM_NVIDIA_SMI:-}" ]; then [ "$CAMSTREAM_NVIDIA_SMI" = 1 ]; return; fi
  command -v nvidia-smi >/dev/null 2>&1
}

if [ -z "$PROFILE" ]; then
  case "$ARCH" in
    aarch64|arm64)
      if is_jetson; then PROFILE=edge-jetson; else PROFILE=edge-cpu; fi ;;
    x86_64|amd64)
      if [ "$ROLE" = agent ]; then PROFILE=edge-cpu
      elif [ "$ROLE" = server ]; then if has_nvidia_smi; then PROFILE=server-gpu; else PROFILE=server-cpu; fi
      elif has_nvidia_smi; then PROFILE=server-gpu
      else PROFILE=edge-cpu; fi ;;
    *) die "unsupported architecture: $ARCH (expected aarch64 or x86_64)" ;;
  esac
fi
case "$PROFILE" in
  edge-cpu|edge-jetson) : "${ROLE:=agent}" ;;
  server-gpu|server-cpu) : "${ROLE:=server}" ;;
  *) die "unknown profile: $PROFILE (edge-cpu|edge-jetson|server-gpu|server-cpu)" ;;
esac
case "$ROLE" in agent|server) ;; *) die "unknown role: $ROLE (agent|server)" ;; esac
case "$ROLE/$PROFILE" in
  agent/server-*|server/edge-*) die "role $ROLE does not match profile $PROFILE" ;;
esac

UNIT="camstream-$ROLE.service"
CONFIG_FILE="$CONFIG_DIR/$ROLE.yaml"
NODE_BIN="$(command -v node || true)"
echo "camstream install: arch=$ARCH profile=$PROFILE role=$ROLE prefix=$PREFIX config=$CONFIG_FILE unit=$UNIT_DIR/$UNIT$([ "$DRY_RUN" = 1 ] && echo ' (dry run)')"

# ---- preconditions -----------------------------------------------------------------------
if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" -ne 0 ]; then die "run as root (or with --dry-run)"; fi
if [ -z "$NODE_BIN" ]; then
  [ "$DRY_RUN" = 1 ] || die "node not found: install Node.js >= 20 (JetPack 5/6: NodeSource arm64 packages; JetPack 4: see deploy/jetson/README.md, container)"
  echo "warning: node not found (Node.js >= 20 is required)"; NODE_BIN=/usr/bin/node
else
  NODE_MAJOR="$("$NODE_BIN" -p 'process.versions.node.split(".")[0]')"
  [ "$NODE_MAJOR" -ge 20 ] || die "node $NODE_MAJOR found at $NODE_BIN; camstream needs >= 20 (JetPack 4 / glibc 2.27 cannot run official Node 20: use deploy/jetson/Dockerfile.jetpack4)"
fi
[ -f "$SRC/package.json" ] || die "no package.json in $SRC"

# ---- user ---------------------------------------------------------------------------------
if id "$SVC_USER" >/dev/null 2>&1; then
  echo "user $SVC_USER exists"
else
  run useradd --system --user-group --home-dir /var/lib/camstream --no-create-home --shell /usr/sbin/nologin "$SVC_USER"
fi
for g in video render; do
  if getent group "$g" >/dev/null 2>&1; then run usermod -a -G "$g" "$SVC_USER"; fi
done

# ---- application -------------------------------------------------------------------------
# an upgrade: stop the running service before its files are replaced (it is restarted at the end)
WAS_ACTIVE=0
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$UNIT" 2>/dev/null; then
  WAS_ACTIVE=1
  run systemctl stop "$UNIT"
fi
run mkdir -p "$PREFIX"
if command -v rsync >/dev/null 2>&1; then
  run rsync -a --delete --exclude .git --exclude node_modules --exclude build --exclude dist --exclude shared "$SRC/" "$PREFIX/"
else
  run sh -c "tar -C '$SRC' --exclude=./.git --exclude=./node_modules --exclude=./build --exclude=./dist --exclude=./shared -cf - . | tar -C '$PREFIX' -xf -"
fi
# build with the dev dependencies (tsc, cmake-js), then keep only the production ones: the services run
# the compiled JavaScript in dist/ with plain node. onnxruntime-node's CUDA provider libraries are fetched
# only when CAMSTREAM_ORT_CUDA=1 (server-gpu with network; see deploy/jetson/README.md).
ORT_INSTALL=skip
[ "${CAMSTREAM_ORT_CUDA:-0}" = 1 ] && ORT_INSTALL=cuda12
run env ONNXRUNTIME_NODE_INSTALL="$ORT_INSTALL" npm --prefix "$PREFIX" ci --no-audit --no-fund
run npm --prefix "$PREFIX" run build:native
# CUDA kernels: compiled with nvcc where it exists (JetPack: /usr/local/cuda/bin), CPU twins otherwise
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi
run npm --prefix "$PREFIX" run build:cuda
run npm --prefix "$PREFIX" run build
run npm --prefix "$PREFIX" prune --omit=dev --no-audit --no-fund
run chown -R root:root "$PREFIX"

# ---- config --------------------------------------------------------------------------------
run install -d -m 0770 -o root -g "$SVC_USER" "$CONFIG_DIR"
if [ -e "$CONFIG_FILE" ]; then
  echo "keeping existing $CONFIG_FILE (not overwriting)"
else
  run install -m 0660 -o root -g "$SVC_USER" "$SRC/config/examples/$ROLE.yaml" "$CONFIG_FILE"
  DEVICE_ID="$(hostname -s 2>/dev/null | tr -c 'A-Za-z0-9_\n-' '-' || echo camstream)"
  run sed -i -e "s/^profile: .*/profile: $PROFILE/" -e "s/^deviceId: .*/deviceId: ${DEVICE_ID:-camstream}/" "$CONFIG_FILE"
  echo "edit $CONFIG_FILE (source, server.url, models), then: systemctl restart $UNIT"
fi

# ---- systemd unit ------------------------------------------------------------------------
run install -d -m 0755 "$UNIT_DIR"
if [ "$NODE_BIN" != /usr/bin/node ]; then
  # the unit names /usr/bin/node; point it at the node that is actually installed
  run sh -c "sed 's#/usr/bin/node #$NODE_BIN #' '$SRC/deploy/jetson/$UNIT' > '$UNIT_DIR/$UNIT' && chmod 0644 '$UNIT_DIR/$UNIT'"
else
  run install -m 0644 "$SRC/deploy/jetson/$UNIT" "$UNIT_DIR/$UNIT"
fi
run systemctl daemon-reload
if [ "$START" = 1 ] || [ "$WAS_ACTIVE" = 1 ]; then
  run systemctl enable "$UNIT"
  run systemctl restart "$UNIT" # the new code and unit (enable --now leaves an already running one as it was)
else
  run systemctl enable "$UNIT"
fi

if [ "$PROFILE" = edge-jetson ]; then
  echo "Jetson: for steady encoder/GPU clocks consider 'nvpmodel -m 0' and 'jetson_clocks' (not done here)"
fi
if [ "$ROLE" = agent ]; then
  echo "done: journalctl -u $UNIT -f   |   systemctl reload $UNIT re-reads $CONFIG_FILE"
else
  echo "done: journalctl -u $UNIT -f   |   systemctl restart $UNIT applies changes to $CONFIG_FILE"
fi
