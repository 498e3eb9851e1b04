#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build the CUDA kernels for this GPU, run the kernel tests (CUDA kernel =
# CPU twin = TypeScript reference) and the GPU profile test, then bench:native, and record the device, the
# driver, the date and the outcome in bench/results/gpu-check.json (bench/results/native.json gets gpu_ms).
#   scripts/gpu-check.sh            # after scripts/setup.sh
# Exits non-zero if there is no usable GPU or a test fails. Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null || { echo "gpu-check: nvidia-smi not found (no NVIDIA driver)" >&2; exit 2; }
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi
command -v nvcc >/dev/null 2>&1 || [ -n "${CUDACXX:-}" ] || { echo "gpu-check: nvcc not found (install the CUDA toolkit)" >&2; exit 2; }
GPU="$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | head -1)"
CC="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')"
echo "gpu-check: $GPU (sm_$CC)"
# build for this GPU only (fast); the addon is rebuilt by setup.sh for the default list afterwards if needed
rm -rf build/cuda
CAMSTREAM_CUDA_ARCHS="$CC" npm run build:cuda --silent
node -e 'const a=require("./build/cuda/Release/camstream_cuda.node").info(); console.log(JSON.stringify(a)); if(!a.cuda||a.devices<1) process.exit(3)' \
  || { echo "gpu-check: the CUDA addon sees no device" >&2; exit 3; }
mkdir -p bench/results
set +e
NODE_OPTIONS=--experimental-vm-modules npx jest --runInBand --json --outputFile=bench/results/gpu-check-jest.json \
  test/native-cuda.test.ts test/native-kernels.test.ts test/gpu-profile.test.ts
TESTS=$?
set -e
npm run bench:native --silent
node - "$GPU" "$TESTS" <<'JS'
const fs = require('fs');
const [gpu, tests] = process.argv.slice(2);
const j = JSON.parse(fs.readFileSync('bench/results/gpu-check-jest.json', 'utf8'));
const commit = require('child_process').execSync('git rev-parse --short HEAD').toString().trim();
const out = { date: new Date().toISOString(), commit, gpu, tests: { passed: j.numPassedTests, failed: j.numFailedTests, skipped: j.numPendingTests, exit: Number(tests) },
  failures: j.testResults.flatMap((f) => f.assertionResults.filter((a) => a.status === 'failed').map((a) => a.fullName)) };
fs.writeFileSync('bench/results/gpu-check.json', JSON.stringify(out, null, 2) + '\n');
console.log(JSON.stringify(out, null, 2));
JS
rm -f bench/results/gpu-check-jest.json
exit "$TESTS"
