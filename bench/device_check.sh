#!/usr/bin/env bash
# The GPU checks of issue 5 in one run, for a session lent a GPU machine (device tool):
#   1. our torch rasterizer (CPU) against nvdiffrast (CUDA): triangle ids, barycentrics, gradients;
#   2. the official HRN path on CUDA (generated files, random weights: timing only), per network
#      and end to end (HRN's own figure: under 1 s per image);
#   3. the default pipeline on CUDA (fast quality).
# Prepare here with tools/device_wheels.sh, then call the device tool's run with carry [".whl"],
# timeout_s 600 and the command `bash bench/device_check.sh`. The log comes back as
# $OUT/device_check.log. Nothing here has run yet: no GPU has been lent to this project so far.
set -uo pipefail
OUT=${OUT:-out/device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, numpy, cv2, mediapipe; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'cv2', cv2.__version__, 'mediapipe', mediapipe.__version__)"
    echo "== 1. rasterizer: torch (CPU) vs nvdiffrast (CUDA; first use compiles it)"
    timeout 240 python3 -m bench.bench_rasterizer --compare-nvdiffrast
    echo "== 2. official HRN path on CUDA"
    timeout 150 python3 -m bench.bench_hrn_official --device cuda --repeat 5 --albedo 1024
    echo "== 3. default pipeline on CUDA"
    timeout 150 python3 -m bench.bench_pipeline --device cuda --quality fast
} 2>&1 | tee "$OUT/device_check.log"
