#!/usr/bin/env bash
# The checks that need a CUDA device, in one run (GPU machines are lent
# rarely and briefly, so this is prepared and tried without one first).
# Expects a built checkout: node_modules, dist/ and build/Release with the
# CUDA backend compiled in. Writes logs and bench JSON under $1.
#   bash scripts/gpu-check.sh /tmp/kvtier-gpu
set -u
out=${1:-/tmp/kvtier-gpu}
py=${KVTIER_PYTHON:-python3}
mkdir -p "$out"
cd "$(dirname "$0")/.."

nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv 2>&1 | tee "$out/gpu.txt"
node -e "import('./dist/native/index.js').then((m) => console.log(JSON.stringify(m.nativeInfo())))" 2>&1 | tee -a "$out/gpu.txt"

echo "== vitest test/native (the GPU suite included)"
timeout 180 node node_modules/vitest/vitest.mjs run test/native 2>&1 | tee "$out/vitest.log"

for mode in staged kernel; do
  echo "== bench throughput --source cuda --cuda-copy $mode"
  timeout 120 node dist/src/cli/main.js bench throughput --tier host --source cuda --cuda-copy "$mode" --json 2>&1 | tee "$out/bench-cuda-$mode.json"
done
echo "== bench throughput --source shm"
timeout 120 node dist/src/cli/main.js bench throughput --tier host --source shm --json 2>&1 | tee "$out/bench-shm.json"

echo "== pytest test/python with $py"
"$py" -c "import torch, google.protobuf as pb; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'protobuf', pb.__version__)" 2>&1 | tee "$out/pytest.log"
timeout 240 "$py" -m pytest -q -rs test/python 2>&1 | tee -a "$out/pytest.log"
