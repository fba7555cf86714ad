"""``check`` and ``compare`` as a command line: which file of a run folder is read, what the flags
pass to ``results.check``/``results.compare``, where the summary goes and the exit codes; the two
functions replaced by stand-ins (no tables are read)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from simpool_bench import results
from simpool_bench.errors import SimpoolBenchError

from conftest import invoke_cli, said
from results_helpers import _run

SUMMARY = "## check: the run's numbers\n"


@pytest.fixture()
def checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """What ``results.check`` got (``args``, ``tolerances``); it fails with ``raise`` when set, and
    its report's exit code is ``code``."""
    state: dict[str, Any] = {"code": 0, "raise": None}

    def check(run: Any, baseline: Any, tolerances: Any = None, allow_protocol_change: Any = ()) -> Any:
        if state["raise"] is not None:
            raise state["raise"]
        state.update(args=(run, baseline), tolerances=tolerances, allowed=allow_protocol_change)
        return SimpleNamespace(markdown=SUMMARY, code=state["code"])

    monkeypatch.setattr(results, "check", check)
    monkeypatch.setattr(results, "exit_code", lambda report: report.code)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    for name in ("results.json", "results.csv", "results.parquet"):
        (tmp_path / "run" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "run" / name).write_text("")
    state["run"] = tmp_path / "run"
    return state


def test_check_reads_the_parquet_of_a_run_folder_and_passes_its_flags(checked, tmp_path):
    base = tmp_path / "base.csv"
    flags = ("--tol", " top1 = 0.05", "--tol", "maxboxacc@70=2", "--allow-protocol-change", "mass", "--no-github")
    res = invoke_cli("check", checked["run"], "--baseline", base, *flags)
    assert res.exit_code == 0 and said(res) == SUMMARY.strip(), res.output
    assert checked["args"] == (checked["run"] / "results.parquet", base)
    assert (checked["tolerances"], checked["allowed"]) == ({"top1": 0.05, "maxboxacc@70": 2.0}, ("mass",))
    (checked["run"] / "results.parquet").unlink()
    assert invoke_cli("check", checked["run"], "--baseline", base, "--no-github").exit_code == 0
    assert checked["args"][0] == checked["run"] / "results.csv"


@pytest.mark.parametrize(
    "item, problem",
    [
        ("top1", "expected METRIC=NUMBER, e.g. top1=0.2"),
        ("top1=x", "expected METRIC=NUMBER, e.g. top1=0.2"),
        ("top1=nan", "expected METRIC=NUMBER, e.g. top1=0.2"),
        ("top2=1", "unknown metric 'top2' in tolerances; expected 'default' or one of"),
        ("top1=-1", "tolerance 'top1' = -1.0; expected a non-negative number"),
        ("maxboxacc@0=1", "tolerance key 'maxboxacc@0': IoU threshold after '@' must be an integer in (0, 100]"),
    ],
)
def test_a_bad_tol_is_one_line_naming_it(checked, tmp_path, item, problem):
    """A ``--tol`` typo names the flag and its value (it read 'tolerances: ...'), before any table is read."""
    res = invoke_cli("check", checked["run"], "--baseline", tmp_path / "base.csv", "--tol", item, "--no-github")
    assert res.exit_code == 2 and res.output.startswith(f"error: --tol {item!r}: {problem}") and res.output.count("\n") == 1, res.output
    assert "args" not in checked


@pytest.mark.parametrize("code", [0, 1])
def test_check_exit_code_summary_file_and_github(checked, tmp_path, monkeypatch, code):
    checked["code"] = code
    step = tmp_path / "step.md"
    step.write_text("earlier\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    res = invoke_cli("check", checked["run"], "--baseline", tmp_path / "b.csv", "--no-github", "--summary", tmp_path / "s.md")
    assert res.exit_code == code and (tmp_path / "s.md").read_text() == SUMMARY and step.read_text() == "earlier\n"
    assert invoke_cli("check", checked["run"], "--baseline", tmp_path / "b.csv").exit_code == code
    assert step.read_text() == "earlier\n" + SUMMARY


def test_a_crash_in_check_is_bad_input_not_a_regression(checked, tmp_path):
    checked["raise"] = ValueError("no such column")
    res = invoke_cli("check", checked["run"], "--baseline", tmp_path / "b.csv", "--no-github")
    assert res.exit_code == 2
    assert said(res) == f"error: check failed on {checked['run']} vs {tmp_path / 'b.csv'}: ValueError: no such column"


def test_compare_passes_its_flags(monkeypatch):
    seen: dict[str, Any] = {}

    def compare(runs: Any, reference: Any = 0, labels: Any = None, by: str = "run", metrics: Any = None) -> pd.DataFrame:
        seen.update(runs=runs, reference=reference, labels=labels, by=by, metrics=metrics)
        raise SimpoolBenchError("stop")

    monkeypatch.setattr(results, "compare", compare)
    res = invoke_cli("compare", "a", "b", "--by", "checkpoint", "--labels", " x , y", "--reference", "y", "--metrics", "top1")
    assert (res.exit_code, res.output) == (2, "error: stop\n")
    assert seen == dict(runs=[Path("a"), Path("b")], reference="y", labels=["x", "y"], by="checkpoint", metrics="top1")


def test_check_of_a_folder_without_results_is_one_error(checked, tmp_path):
    (tmp_path / "empty").mkdir()
    res = invoke_cli("check", tmp_path / "empty", "--baseline", tmp_path / "b.csv", "--no-github")
    assert (
        res.exit_code == 2 and said(res) == f"error: {tmp_path / 'empty'}: no results.parquet, results.csv or results.json in this folder"
    )
    assert "args" not in checked


def test_a_tol_overrides_the_tolerances_file(checked, tmp_path):
    toml = tmp_path / "tol.toml"
    toml.write_text("top1 = 0.5\ncorloc = 1.0\n")
    res = invoke_cli("check", checked["run"], "--baseline", tmp_path / "b.csv", "--tolerances", toml, "--tol", "top1=0.1", "--no-github")
    assert res.exit_code == 0, res.output
    assert checked["tolerances"] == {"top1": 0.1, "corloc": 1.0}


def test_compare_writes_each_format_to_its_file(tmp_path):
    for name, top1 in (("a", 80.0), ("b", 81.25)):
        results.write_run(_run({"top1": top1}, run_id=name), tmp_path / name)
    md, tex, csv = tmp_path / "c.md", tmp_path / "c.tex", tmp_path / "c.csv"
    res = invoke_cli("compare", tmp_path / "a", tmp_path / "b", "--labels", "A,B", "--markdown", md, "--latex", tex, "--csv", csv)
    assert res.exit_code == 0, res.output
    assert md.read_text().splitlines() == ["| run | cub/test top1 |", "|---|---:|", "| A (ref) | 80.00 |", "| B | **81.25** (+1.25) |"]
    assert tex.read_text().splitlines()[6:8] == [r"A (ref) & 80.00 \\", r"B & \textbf{81.25} {\scriptsize (+1.25)} \\"]
    assert csv.read_text().splitlines() == ["run,cub/test top1,cub/test top1 delta", "A,80.0,0.0", "B,81.25,1.25"]
    out = " ".join(res.output.split())
    assert all(f"wrote {p}" in out for p in (md, tex, csv))
