#!/usr/bin/env bash
# Every GPU check and figure in one prepared run, for a session with a CUDA device. Steps, in order
# (STEPS="..." picks some; each has its own time limit, and a failed step does not stop the others):
#   env     the device, versions, cores, /dev/shm
#   smoke   the package imports and answers --version
#   nvjpeg  benchmarks/nvjpeg_check.py: nvjpeg's pixels against PIL's, decoding speed
#   gpu     benchmarks/gpu.sh: simpool-bench vs a plain timm forward (bf16, batch 256; ViT-S/16,
#           ViT-B/16, ResNet-50)
#   peers   benchmarks/vs_peers.py --device cuda: LOST, wsolevaluation and timm validate loops,
#           identical numbers asserted
#   handover benchmarks/hand_over.py --device cuda: uint8 batches normalised on the GPU against
#           float32 batches from the workers (localize, classify), identical numbers asserted
#   warmup  benchmarks/warm_up.py --device cuda: localize with the kernels loaded in a thread while
#           the first images decode and go forward, against loaded in line and by the first metric
#           step (fresh processes)
#   tests   the GPU tests (tests/test_cuda.py, tests/test_lost_e2e.py on CUDA, tests/test_decode.py)
#   demo    the demo suite on CUDA (needs a demo_out/ made by `make demo` here), compared with the
#           CPU's all_results.csv
#
#     bash benchmarks/device_check.sh                  # PY=... IMAGES=... PEER_IMAGES=... PEER_ARGS=... HANDOVER_IMAGES=... WARMUP_IMAGES=... STEPS=...
#
# Python wheels in .whl/ (packages the GPU machine lacks) are installed to /tmp/site first. The
# log goes to stdout and, where $OUT is set, to $OUT/device_check.log. The lent machine (python
# 3.12, torch with CUDA) has no network: fetch the wheels here before copying the tree over, e.g.
#     python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       pycocotools defusedxml timm typer click rich shellingham pydantic pydantic_core typing-inspection \
#       typing_extensions annotated-doc annotated-types
# (pin the versions this machine's .venv has: `.venv/bin/pip freeze`).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PY PYTHONUNBUFFERED=1
export IMAGES=${IMAGES:-1024}
PEER_IMAGES=${PEER_IMAGES:-256}
STEPS=${STEPS:-env smoke nvjpeg gpu peers handover warmup tests demo}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${OUT:-}" ]; then exec > >(tee -a "$OUT/device_check.log") 2>&1; fi

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

failed=()
step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    echo "== $name ($(date +%T), load $(cut -d' ' -f1 /proc/loadavg))"
    timeout "$limit" bash -c '"$@"' "$name" "$@"  # bash -c: the exported functions run too
    rc=$?
    echo "-- $name: exit $rc after $((SECONDS - t0)) s"
    [ "$rc" = 0 ] || failed+=("$name")
}

env_info() {
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
    "$PY" - << 'EOF'
import os, sys, torch, torchvision, timm, numba, numpy, typer
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (cuda {torch.version.cuda}), torchvision {torchvision.__version__}, "
      f"timm {timm.__version__}, numba {numba.__version__}, numpy {numpy.__version__}, typer {typer.__version__}; "
      f"cores {os.cpu_count()}, cuda available {torch.cuda.is_available()}")
EOF
    df -h /dev/shm | tail -1
}

demo_on_cuda() {
    [ -f demo_out/suite/all_results.csv ] || { echo "no demo_out/suite/all_results.csv (run make demo here first)"; return 3; }
    rm -rf /tmp/demo_cuda
    "$PY" -m simpool_bench.cli suite run suites/demo.toml --root demo_out --out /tmp/demo_cuda --device "${DEMO_DEVICE:-cuda}" || return $?
    "$PY" - << 'EOF'
import pandas as pd
key = ["label", "dataset", "split", "metric", "iou_threshold", "k"]
cpu, gpu = (pd.read_csv(p) for p in ("demo_out/suite/all_results.csv", "/tmp/demo_cuda/all_results.csv"))
key = [c for c in key if c in cpu.columns and c in gpu.columns]
both = cpu.merge(gpu, on=key, suffixes=("_cpu", "_cuda"))
both["diff"] = both.value_cuda - both.value_cpu
print(f"{len(both)} rows in both (cpu {len(cpu)}, cuda {len(gpu)}); identical values: {int((both['diff'] == 0).sum())}")
print(both.loc[both["diff"] != 0, key + ["value_cpu", "value_cuda", "diff"]].to_string(index=False))
EOF
}

export -f env_info demo_on_cuda
step env 60 env_info
step smoke 60 "$PY" -m simpool_bench.cli --version
step nvjpeg 120 "$PY" benchmarks/nvjpeg_check.py
step gpu 300 bash benchmarks/gpu.sh
step peers 420 "$PY" benchmarks/vs_peers.py --device cuda --images "$PEER_IMAGES" ${PEER_ARGS:-}
step handover 300 "$PY" benchmarks/hand_over.py --device cuda --images "${HANDOVER_IMAGES:-$PEER_IMAGES}" --reps 2
step warmup 180 "$PY" benchmarks/warm_up.py --device cuda --images "${WARMUP_IMAGES:-512}" --reps 2
step tests 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_lost_e2e.py tests/test_decode.py
step demo 180 demo_on_cuda

echo "== done ($(date +%T)); failed steps: ${failed[*]:-none}"
[ ${#failed[@]} = 0 ]
