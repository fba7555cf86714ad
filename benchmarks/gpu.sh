#!/usr/bin/env bash
# GPU figures: simpool-bench's forward with attention maps and metric updates against a plain timm
# forward (same weights, same batches), bf16 autocast, batch 256, for ViT-S/16, ViT-B/16 and
# ResNet-50. Prints img/s of both and the overhead (ours / plain - 1) per model, pooling and pass.
#
#     bash benchmarks/gpu.sh                 # needs a CUDA GPU; PY=... to pick the interpreter
#     IMAGES=2048 bash benchmarks/gpu.sh
#
# It refuses to run without CUDA (the CPU figures come from benchmarks/throughput.py alone).
# Images are decoded on the CPU workers: nvjpeg gives other pixels than PIL on chroma-subsampled
# JPEGs (benchmarks/nvjpeg_check.py). Engine passes use min(8, cores) DataLoader workers here, and
# hand the GPU uint8 images that it normalises (as a run; HAND_OVER=float32 for the float path).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
IMAGES=${IMAGES:-1024}
HAND_OVER=${HAND_OVER:-auto}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "error: no CUDA device visible to $PY: this script measures GPU figures only" >&2
    exit 2
fi
"$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'device: {p.name}, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}')"
uptime

for spec in vit_small_patch16_224:simpool,cls vit_base_patch16_224:simpool,cls resnet50:simpool,gap; do
    model=${spec%%:*}
    echo "== $model"
    "$PY" benchmarks/throughput.py --device cuda --amp bf16 --batch-size 256 --images "$IMAGES" \
        --models "$model" --pools "${spec#*:}" --mode pass --no-memory --decode-workers 8 --hand-over "$HAND_OVER"
done
