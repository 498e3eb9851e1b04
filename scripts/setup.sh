#!/usr/bin/env bash
# Idempotent set-up on Debian 12: system packages, npm dependencies, the native encoder addon.
# Run as root or with sudo available. Nothing is downloaded at run time afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# Node 20 or newer with npm (Debian 12's own nodejs is 18): not installed here, it needs another package source
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$NODE_MAJOR" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
  echo "setup: Node.js >= 20 with npm is required (found: $(node -v 2>/dev/null || echo none)); install it (e.g. the NodeSource 20.x packages) and run this again" >&2
  exit 2
fi
PKGS=(ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libx264-dev pkg-config cmake g++ make
      python3 mosquitto mosquitto-clients chromium systemd) # python3: node-gyp builds unix-dgram
[ "${CAMSTREAM_TRAINING:-0}" = 1 ] && PKGS+=(python3-torch python3-onnx)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# onnxruntime-node's install script would fetch CUDA binaries; the CPU build ships in the package.
export ONNXRUNTIME_NODE_INSTALL=skip
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
if [ ! -f build/encoder/Release/camstream_encoder.node ] || [ -n "$(find encoder/native -newer build/encoder/Release/camstream_encoder.node -type f 2>/dev/null | head -1)" ]; then
  npm run build:native --silent
fi
# The CUDA kernels addon (native-cuda/): compiled with nvcc where it exists (JetPack keeps it in
# /usr/local/cuda/bin, off PATH), otherwise with its CPU twins only. CAMSTREAM_CUDA_ARCHS="87" limits the
# GPU targets to one board (faster build); the default covers Jetson Nano/Xavier/Orin and T4/A100/H100.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi
if [ ! -f build/cuda/Release/camstream_cuda.node ] || [ -n "$(find native-cuda encoder/native -newer build/cuda/Release/camstream_cuda.node -type f 2>/dev/null | head -1)" ]; then
  npm run build:cuda --silent
fi
if [ ! -d ../shared/videos ] && [ -z "${CAMSTREAM_SHARED:-}" ]; then
  echo "setup: warning: ../shared (sample videos, detector model) not found beside the repo; set CAMSTREAM_SHARED" >&2
fi
echo "setup: ok"
