"""Start-up: the light commands import no heavy library, and numba's kernel cache falls back when
its usual folders are not writable. (No timing here: benchmarks/ prints the figures.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, **env: str) -> str:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_cli_and_center_discovery_import_no_heavy_library(tmp_path):
    from tests.conftest import build_voc_dataset

    voc = build_voc_dataset(tmp_path / "VOC2007", n=3)
    code = (
        "import sys, json\n"
        "from simpool_bench.cli import main\n"
        "after_cli = sorted(m for m in ('torch', 'pandas') if m in sys.modules)\n"
        f"sys.argv = ['simpool-bench', 'discover', '--data', {str(voc)!r}, '--method', 'center', '--out', {str(tmp_path / 'o')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = sorted(m for m in ('torchvision', 'timm', 'numba', 'scipy', 'cv2') if m in sys.modules)\n"
        "print(json.dumps([after_cli, heavy]))\n"
    )
    after_cli, heavy = json.loads(_run(code))
    assert after_cli == []  # `--help` and argument parsing need neither torch nor pandas
    assert heavy == []
    assert (tmp_path / "o" / "results.csv").is_file()


def test_numba_cache_falls_back_to_temp_dir_then_to_no_cache(tmp_path):
    probe = "from simpool_bench.metrics import _components as C; from numba.core import config; print(C._CACHE, config.CACHE_DIR)"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    # only the NUMBA_CACHE_DIR locator allowed: the fallback points it at the temp dir
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **env,
            "PYTHONPATH": str(ROOT),
            "TMPDIR": str(tmp_path),
            "NUMBA_CACHE_LOCATOR_CLASSES": "numba.core.caching.UserProvidedCacheLocator",
        },
    )
    assert out.returncode == 0, out.stderr
    flag, where = out.stdout.split()
    assert flag == "True" and Path(where).parent == tmp_path and Path(where).is_dir()
    # no locator can place the file at all: kernels compile without a cache instead of failing
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path), "NUMBA_CACHE_LOCATOR_CLASSES": "numba.core.caching.ZipCacheLocator"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "False"


def test_compile_kernels_covers_what_a_localize_run_compiles():
    """``compile_kernels`` (what vs_peers runs before timing) leaves nothing for a run to compile:
    the kernels' compiled signatures do not grow in a localize-like update afterwards."""
    import numpy as np

    from simpool_bench.metrics import _components
    from simpool_bench.metrics.boxacc import BoxAccumulator, compile_kernels, prepare_scoremap

    kernels = [getattr(_components, name) for name in ("batch_hits", "normalise_quantise")]
    compile_kernels()
    before = [list(k.signatures) for k in kernels]
    assert all(before)
    rng = np.random.default_rng(0)
    acc = BoxAccumulator()  # interval 0.001, as localize
    acc.update(rng.random((5, 7, 7)).astype(np.float32), [np.array([[3, 4, 150, 160], [0, 0, 20, 20]])] * 5, correct_cls=np.ones(5, bool))
    acc.update(rng.random((3, 14, 14)), [np.array([[10, 10, 50, 60]])] * 3)  # float64 maps too
    prepare_scoremap(rng.random((14, 14)).astype(np.float32))  # the per-image table's path
    assert [list(k.signatures) for k in kernels] == before


def test_box_accumulator_imports_numba_only_in_warm_up_and_leaves_its_counts():
    """Making a BoxAccumulator imports no numba (a run's set-up stays light); ``warm_up`` imports it
    and loads every kernel a localize update uses, without counting anything."""
    code = (
        "import sys, json\n"
        "from simpool_bench.metrics.boxacc import BoxAccumulator\n"
        "acc = BoxAccumulator()\n"
        "before = 'numba' in sys.modules\n"
        "state = {k: v.clone() for k, v in acc.state_dict().items()}\n"
        "acc.warm_up()\n"
        "from simpool_bench.metrics import _components as C\n"
        "same = all(bool((acc.state_dict()[k] == v).all()) for k, v in state.items())\n"
        "print(json.dumps([before, same, [len(k.signatures) for k in (C.batch_hits, C.normalise_quantise)]]))\n"
    )
    before, same, signatures = json.loads(_run(code))
    assert before is False
    assert same is True
    assert all(n >= 1 for n in signatures)
