"""``suite run`` and ``suite validate`` as a command line: what reaches ``run_suite``, which exit code
a failed entry and the gate make together, and where the gate's summary goes; ``run_suite`` and
``check_suite`` replaced by stand-ins (no model is run)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from simpool_bench import suite_run

from conftest import invoke_cli, said

SUITE = """
[[checkpoints]]
label = "tiny"
checkpoint = "tiny.pth.tar"

[[checkpoints]]
label = "none"
baselines = { localize = "center-gaussian" }

[[evaluations]]
task = "{task}"
dataset = "{dataset}"
data = "images"
"""
GATE = "## gate: the baseline's numbers\n"


@pytest.fixture()
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A suite file, a baseline folder, and stand-ins whose outcome the test sets: ``failed``
    (entry ids that failed) and ``gate`` (the gate's exit code); what ``run_suite`` got is in ``ran``."""
    state: dict[str, Any] = {"failed": [], "gate": 0, "ran": None}

    def run_suite(suite: Any, out: Any, engine: Any, formats: Any, resume: bool = True, on_entry: Any = None) -> Any:
        state["ran"] = dict(out=out, formats=formats, resume=resume, batch_size=engine.batch_size)
        failed = [SimpleNamespace(entry=SimpleNamespace(id=i), message="it broke") for i in state["failed"]]
        return SimpleNamespace(compare=None, failed=failed, outcomes=[*failed, None])

    def check_suite(report: Any, baseline: Any, tolerances: Any = None) -> Any:
        return SimpleNamespace(markdown=GATE, exit_code=state["gate"])

    monkeypatch.setattr(suite_run, "run_suite", run_suite)
    monkeypatch.setattr(suite_run, "check_suite", check_suite)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    state["file"] = tmp_path / "suite.toml"
    state["file"].write_text(SUITE.replace("{task}", "classify").replace("{dataset}", "toy"))
    (tmp_path / "base" / "tiny" / "classify-toy").mkdir(parents=True)
    (tmp_path / "base" / "tiny" / "classify-toy" / "results.csv").write_text("")
    state["base"], state["out"] = tmp_path / "base", tmp_path / "out"
    return state


def _run(suite: dict[str, Any], *flags: Any):
    return invoke_cli("suite", "run", suite["file"], "--out", suite["out"], "--device", "cpu", *flags)


def test_run_passes_its_flags(suite):
    assert _run(suite).exit_code == 0
    assert suite["ran"] == dict(out=suite["out"], formats=("json",), resume=True, batch_size=64)
    assert _run(suite, "--no-resume", "--formats", "md", "-b", "3").exit_code == 0
    assert suite["ran"] == dict(out=suite["out"], formats=("md",), resume=False, batch_size=3)


@pytest.mark.parametrize("failed, gate, code", [([], 0, 0), (["tiny/classify-toy"], 0, 1), ([], 1, 1), (["tiny/classify-toy"], 2, 2)])
def test_a_failed_entry_and_the_gate_give_the_worse_exit_code(suite, failed, gate, code, tmp_path):
    suite.update(failed=failed, gate=gate)
    res = _run(suite, "--baseline", suite["base"], "--summary", tmp_path / "summary.md", "--no-github")
    assert res.exit_code == code, res.output
    assert (tmp_path / "summary.md").read_text() == GATE
    assert ("1 of 2 suite entries failed: ✗ tiny/classify-toy: it broke" in said(res)) == bool(failed)


def test_the_gate_summary_goes_to_github_unless_no_github(suite, tmp_path, monkeypatch):
    step = tmp_path / "step.md"
    step.write_text("earlier\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    assert _run(suite, "--baseline", suite["base"], "--no-github").exit_code == 0
    assert step.read_text() == "earlier\n"
    assert _run(suite, "--baseline", suite["base"]).exit_code == 0
    assert step.read_text() == "earlier\n" + GATE


def test_a_baseline_that_is_not_a_suite_folder_is_refused_before_any_entry_runs(suite, tmp_path):
    res = _run(suite, "--baseline", tmp_path)
    assert res.exit_code == 2 and suite["ran"] is None
    assert said(res).startswith(f"error: --baseline {tmp_path}: no results in it"), res.output


def test_validate_counts_the_skipped_entries(suite, tmp_path):
    """One whole line per fact, however long the path (rich cut it at 80 columns, inside the file
    name, in a log), and a path with brackets printed as it is, not read as markup."""
    file = tmp_path / ("deep-" * 16) / "suite[ci].toml"
    file.parent.mkdir()
    file.write_text(suite["file"].read_text())
    res = invoke_cli("suite", "validate", file, "--root", suite["file"].parent)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [
        f"{file}: OK — 2 checkpoint(s) x 1 evaluation(s) = 1 run(s) (1 skipped: no model and no baseline for the task)",
        "  tiny/classify-toy",
        "  none/classify-toy  (skipped)",
    ]
