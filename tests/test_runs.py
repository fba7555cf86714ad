"""The run layer: the CLI is parse -> spec -> run -> print (same table from both), specs are
checked in the run layer (so Python users get the CLI's errors), and the cli package has no
import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from simpool_bench import api
from simpool_bench.engine import EngineConfig
from simpool_bench.errors import SimpoolBenchError
from tests.conftest import invoke_cli

CLI_DIR = Path(api.__file__).parent / "cli"


def test_cli_and_run_layer_give_the_same_table(tmp_path, make_voc_dataset):
    voc = make_voc_dataset(tmp_path / "VOC2007", n=7)
    res = invoke_cli("discover", "--data", voc, "--method", "full-image", "--out", tmp_path / "cli")
    assert res.exit_code == 0, res.output
    spec = api.DiscoverSpec(api.DataSpec("voc07", data=voc), method="full-image")
    result = api.run_discover(spec, EngineConfig(device="cpu", workers=0, progress=False), tmp_path / "api")
    cli = pd.read_csv(tmp_path / "cli" / "results.csv")
    cols = ["dataset", "split", "metric", "value"]
    pd.testing.assert_frame_equal(cli[cols], result.table[cols].reset_index(drop=True), check_dtype=False)
    assert (cli["split"] == "trainval").all()  # VOC's default split, from the registry
    assert {p.name for p in result.files} >= {"results.csv", "results.parquet", "results.json"}
    assert result.extras["n_images"] == 7


@pytest.mark.parametrize(
    "spec, needle",
    [
        (lambda d: api.LocalizeSpec(d, baseline="full-box", maps=Path("m")), "--maps needs no model"),
        (lambda d: api.LocalizeSpec(d, model=api.ModelOptions(arch="resnet18"), baseline="full-box"), "--baseline needs no model"),
        (lambda d: api.LocalizeSpec(d, interval=1.5, baseline="full-box"), "--interval 1.5"),
        (lambda d: api.LocalizeSpec(d, cam_target="top", baseline="full-box"), "--cam-target 'top'"),
        (lambda d: api.LocalizeSpec(api.DataSpec("cub"), baseline="full-box"), "--data is required"),
    ],
)
def test_localize_spec_errors_are_the_cli_errors(tmp_path, spec, needle):
    with pytest.raises(SimpoolBenchError, match=needle.replace("(", r"\(")):
        api.run_localize(spec(api.DataSpec("cub", data=tmp_path)), EngineConfig(device="cpu", workers=0))


def test_cli_modules_import_no_cli_package_module_but_options():
    for path in CLI_DIR.glob("*.py"):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        tree = ast.parse(path.read_text())
        relative = {(n.level, n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}
        assert relative <= {(1, "options")}, f"{path.name} imports {relative}"
        absolute = [
            n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("simpool_bench.cli")
        ]
        assert not absolute, f"{path.name} imports {absolute}"
