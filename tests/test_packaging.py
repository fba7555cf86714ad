"""A built wheel carries the dataset manifests, and an installed (non-editable) copy finds them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        import importlib.util

        if importlib.util.find_spec("setuptools") is None:  # no build backend here (--no-build-isolation): not our failure
            pytest.skip("cannot build a wheel here: setuptools (the build backend) is not installed")
        pytest.fail(f"pip wheel failed on the project: {proc.stderr.strip()[-2000:]}")  # a packaging error, not an environment one
    (whl,) = out.glob("simpool_bench-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed (non-editable) into a fresh folder, once for the module."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def _run_installed(target: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -c code`` seeing only the installed copy of the package."""
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_wheel_carries_every_manifest(wheel):
    expected = sorted(p.name for p in (ROOT / "data_manifests").glob("*.json"))
    with zipfile.ZipFile(wheel) as z:
        shipped = sorted(Path(n).name for n in z.namelist() if n.startswith("simpool_bench/data_manifests/") and n.endswith(".json"))
        for name in expected:
            assert json.loads(z.read(f"simpool_bench/data_manifests/{name}")) == json.loads((ROOT / "data_manifests" / name).read_text())
    assert shipped == expected and len(expected) >= 2


def test_installed_copy_lists_the_manifests(installed, tmp_path):
    target = installed
    code = "import simpool_bench.data.manifests as m; print(m.MANIFEST_DIR); print(','.join(m.list_manifests()))"
    proc = _run_installed(target, code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, names = proc.stdout.strip().splitlines()
    assert Path(where).resolve().is_relative_to(target.resolve())
    assert names.split(",") == sorted(p.stem for p in (ROOT / "data_manifests").glob("*.json"))


def test_wheel_carries_the_suites_and_an_installed_copy_finds_them(wheel, installed, tmp_path):
    target = installed
    expected = sorted(p.name for p in (ROOT / "suites").glob("*.toml"))
    with zipfile.ZipFile(wheel) as z:
        shipped = sorted(Path(n).name for n in z.namelist() if n.startswith("simpool_bench/suites/") and n.endswith(".toml"))
        for name in expected:
            assert z.read(f"simpool_bench/suites/{name}") == (ROOT / "suites" / name).read_bytes()
    assert shipped == expected and {"demo.toml", "simpool_paper.toml"} <= set(expected)
    code = "from simpool_bench.suite import shipped_suite, load_suite; p = shipped_suite('demo'); load_suite(p); print(p)"
    proc = _run_installed(target, code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(proc.stdout.strip()).resolve().is_relative_to(target.resolve())
