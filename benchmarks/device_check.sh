#!/usr/bin/env bash
# Every GPU figure in one prepared run (for a session with a CUDA device): the device, then
# benchmarks/gpu.sh (simpool-bench vs a plain timm forward, bf16, batch 256, ViT-S/16, ViT-B/16,
# ResNet-50) and benchmarks/vs_peers.py --device cuda (LOST, wsolevaluation and timm validate loops
# against simpool-bench, identical numbers asserted). About 5 minutes on one H200-class GPU.
#
#     bash benchmarks/device_check.sh            # PY=... IMAGES=... PEER_IMAGES=... to change
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
export PY
export IMAGES=${IMAGES:-1024}
PEER_IMAGES=${PEER_IMAGES:-256}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
uptime
bash benchmarks/gpu.sh
echo "== vs_peers on cuda, $PEER_IMAGES images"
"$PY" benchmarks/vs_peers.py --device cuda --images "$PEER_IMAGES"
