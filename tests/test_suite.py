"""Suites (``simpool_bench.suite``, ``suite_run``, ``simpool-bench suite``): a TOML file checked into
specs, every checkpoint x evaluation run (one failing entry does not stop the others), the suite's
files, resume, and the gate against a baseline suite folder."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest

from simpool_bench.errors import SimpoolBenchError
from simpool_bench.results import read_run
from simpool_bench.suite import SuiteError, load_suite, shipped_suite
from simpool_bench.suite_run import SUITE_COLUMNS

from conftest import build_image_folder, build_tiny_checkpoint, build_voc_dataset, invoke_cli, said

pytestmark = pytest.mark.usefixtures("one_thread")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


SUITE = """
[compare]
reference = "tiny CLS-free GAP"

[[checkpoints]]
label = "tiny SimPool"
checkpoint = "simpool.pth.tar"

[[checkpoints]]
label = "tiny CLS-free GAP"
name = "gap"
checkpoint = "gap.pth.tar"

[[evaluations]]
task = "classify"
dataset = "toy"
data = "images"
default_split = "test"

[[evaluations]]
task = "discover"
dataset = "voc07"
data = "VOC2007"
{only}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two tiny checkpoints (SimPool, GAP), an image folder and a VOC folder, and two suite files:
    the full 2 x 2 matrix (discover fails for the GAP model: it has no attention map) and one
    without that entry."""
    root = tmp_path_factory.mktemp("suite")
    build_tiny_checkpoint(root / "simpool.pth.tar", pool="simpool")
    build_tiny_checkpoint(root / "gap.pth.tar", pool="gap", seed=1)
    build_image_folder(root / "images", counts=(3, 3, 2))
    build_voc_dataset(root / "VOC2007", n=6)
    full = _write(root / "full.toml", SUITE.format(only=""))
    ok = _write(root / "ok.toml", SUITE.format(only='checkpoints = ["tiny SimPool"]'))
    return root, full, ok


def _run(suite: Path, out: Path, *extra: object):
    return invoke_cli("suite", "run", suite, "--out", out, "--device", "cpu", "--batch-size", 4, "--workers", 0, "--shard-size", 4, *extra)


@pytest.fixture(scope="module")
def full_run(tiny):
    root, full, _ = tiny
    res = _run(full, root / "out-full")
    return root / "out-full", res


# ------------------------------------------------------------------------------------ validation
def test_validate_lists_every_problem_on_its_own_line(tmp_path):
    bad = _write(
        tmp_path / "bad.toml",
        """
[[checkpoints]]
label = "a"
checkpoint = "a.pth"
gama = 1.25
pool = "simpol"

[[checkpoints]]
checkpoint = 3

[[evaluations]]
task = "localise"
dataset = "cub"

[[evaluations]]
task = "discover"
dataset = "voc07"
data = "VOC"
mass = "a lot"
interval = 0.01
k_patches = 0

[compare]
reference = "nobody"
""",
    )
    res = invoke_cli("suite", "validate", bad)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert all(line.startswith(f"error: {bad}: ") for line in lines), res.output
    expected = [
        "[[checkpoints]] #1 ('a'): unknown key 'gama' (did you mean gamma?)",
        "[[checkpoints]] #1 ('a'): key 'pool': 'simpol': expected one of",
        "[[checkpoints]] #2: key 'label': required",
        "[[checkpoints]] #2: key 'checkpoint': 3: expected a path (string)",
        "[[evaluations]] #1 (localise cub): key 'task' 'localise': expected one of classify, localize, discover",
        "[[evaluations]] #2 (discover voc07): unknown key 'interval'",
        "[[evaluations]] #2 (discover voc07): key 'mass': 'a lot': expected a number",
        "[[evaluations]] #2 (discover voc07): key 'k_patches': 0: expected an integer >= 1",
        "[compare]: key 'reference' 'nobody': expected a checkpoint label",
    ]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, res.output)
    assert len(lines) == len(expected)


def test_validate_rejects_mixed_rows_and_unknown_checkpoint_names(tmp_path):
    base = """
[[checkpoints]]
label = "A"
checkpoint = "a.pth"

[[checkpoints]]
label = "B"
checkpoint = "b.pth"

[[evaluations]]
task = "classify"
dataset = "imagenet"
data = "in"

[[evaluations]]
task = "classify"
dataset = "imagenet"
data = "in"
knn_train = "in/train"
checkpoints = [{only}]
"""
    mixed = _write(tmp_path / "mixed.toml", base.format(only='"A"'))
    with pytest.raises(SuiteError) as err:
        load_suite(mixed)
    assert sum("2 entries have the folder name 'classify-imagenet'" in p for p in err.value.problems) == 1
    named = _write(tmp_path / "named.toml", base.format(only='"A"').replace("knn_train", 'name = "knn"\nknn_train'))
    with pytest.raises(SuiteError) as err:
        load_suite(named)
    (problem,) = err.value.problems
    assert "'classify-imagenet' and 'knn' both record dataset/split imagenet/val for checkpoint 'A'" in problem
    labelled = _write(tmp_path / "ok.toml", base.format(only='"B"').replace("knn_train", 'name = "knn"\nlabel = "imagenet-knn"\nknn_train'))
    suite = load_suite(labelled)
    assert [e.id for e in suite.entries()] == ["a/classify-imagenet", "b/classify-imagenet", "b/knn"]
    assert dict(suite.entries()[2].evaluation.options)["knn_train"] == tmp_path / "in" / "train"
    unknown = _write(tmp_path / "unknown.toml", base.format(only='"C"').replace("knn_train", 'name = "knn"\nlabel = "x"\nknn_train'))
    with pytest.raises(SuiteError) as err:
        load_suite(unknown)
    assert err.value.problems == [f"{unknown}: [[evaluations]] #2 (classify imagenet): key 'checkpoints': 'C' names no checkpoint"]


def test_validate_names_a_data_key_its_task_does_not_read(tmp_path):
    """A data key the evaluation's task does not read (``subset`` or ``list`` on localize,
    ``annotations`` on classify) was accepted by ``suite validate`` and dropped by the run (localize
    scored every image); it is a problem naming the key and the keys that task reads. ``no_hard =
    false`` (the default) and the keys a task reads pass."""
    suite = _write(
        tmp_path / "keys.toml",
        """
[[checkpoints]]
label = "A"
checkpoint = "a.pth"

[[evaluations]]
task = "localize"
dataset = "cub"
data = "x"
metadata = "m"
subset = 2
list = "y.txt"

[[evaluations]]
task = "discover"
dataset = "voc07"
data = "v"
no_hard = true

[[evaluations]]
task = "classify"
dataset = "imagenet"
data = "i"
subset = 3
no_hard = false
annotations = "a.json"
""",
    )
    with pytest.raises(SuiteError) as err:
        load_suite(suite)
    where = f"{suite}: [[evaluations]]"
    assert err.value.problems == [
        f"{where} #1 (localize cub): key 'subset': localize does not read it (its data keys besides data, split and label: metadata)",
        f"{where} #1 (localize cub): key 'list': localize does not read it (its data keys besides data, split and label: metadata)",
        f"{where} #3 (classify imagenet): key 'annotations': classify does not read it "
        "(its data keys besides data, split and label: labels, metadata, subset)",
    ]


def test_validate_invalid_toml_and_missing_file_are_one_line(tmp_path):
    broken = _write(tmp_path / "broken.toml", "[[checkpoints]\nlabel = 1\n")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[[checkpoints]]\nlabel = "caf\xe9"\n')  # Latin-1, not UTF-8
    for path in (broken, tmp_path / "absent.toml", latin):
        res = invoke_cli("suite", "validate", path)
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and str(path) in res.output
    assert f"{latin}: not UTF-8 text (byte 28: b'\\xe9\"\\n'); TOML files are UTF-8" in res.output


def test_shipped_suites_validate_and_paths_are_checked_on_request(tmp_path, monkeypatch):
    paper = shipped_suite("simpool_paper")
    suite = load_suite(paper)
    assert {e.evaluation.data.dataset for e in suite.entries()} == {"imagenet", "cub", "voc07", "voc12", "coco20k"}
    assert {e.evaluation.task for e in suite.entries()} == {"classify", "localize", "discover"}
    assert any(dict(e.evaluation.options).get("knn_train") for e in suite.entries())
    res = invoke_cli("suite", "validate", paper)
    assert res.exit_code == 0, res.output
    monkeypatch.delenv("SIMPOOL_CKPT", raising=False)
    with pytest.raises(SuiteError) as err:
        load_suite(paper, check_paths=True)
    assert any("environment variable SIMPOOL_CKPT is not set" in p for p in err.value.problems)
    demo = load_suite(shipped_suite("demo"), root=tmp_path)
    assert [c.name for c in demo.checkpoints] == ["vit-simpool", "vit-cls", "baseline"]
    assert demo.checkpoints[0].model.checkpoint == tmp_path / "models" / "vit_demo_supervised_simpool.pth.tar"


def test_the_readme_example_suite_validates_and_names_its_folders(tmp_path):
    """The TOML example of the README's Suites section is a valid suite, with the folders the README
    names (OUT/<checkpoint>/<entry>/)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Suites") :]
    example = section[section.index("```toml\n") + len("```toml\n") : section.index("```\n", section.index("```toml\n") + 8)]
    (tmp_path / "example.toml").write_text(example, encoding="utf-8")
    suite = load_suite(tmp_path / "example.toml")
    assert suite.reference == "ViT-S CLS" and suite.metrics == ("top1", "maxboxacc_v2", "corloc")
    assert [e.folder.as_posix() for e in suite.entries()] == [
        "vit-s-simpool/localize-cub",
        "vit-s-cls/localize-cub",
        "no-model-baseline/localize-cub",
    ]
    assert "`vit-s-simpool/localize-cub`" in readme
    res = invoke_cli("suite", "validate", str(tmp_path / "example.toml"))
    assert res.exit_code == 0, res.output


# ------------------------------------------------------------------------------------------- run
def test_failing_entry_is_reported_and_the_others_run(full_run):
    out, res = full_run
    assert res.exit_code == 1, res.output
    text = said(res)
    assert "1 of 4 suite entries failed" in text and "gap/discover-voc07: " in text and "no attention map" in text
    for entry in ("tiny-simpool/classify-toy", "tiny-simpool/discover-voc07", "gap/classify-toy"):
        assert (out / entry / "results.csv").is_file(), entry
    assert not (out / "gap" / "discover-voc07" / "results.csv").exists()


def test_all_results_is_every_entry_table(full_run, tiny):
    out, _ = full_run
    allres = read_run(out / "all_results.csv")
    cli = ["suite", "run", str(tiny[1]), "--out", str(out), "--device", "cpu", "--batch-size", "4", "--workers", "0", "--shard-size", "4"]
    assert set(allres["command"]) == {shlex.join(["simpool-bench", *cli])}  # every entry records the suite's command line
    entries = {("tiny SimPool", "classify-toy"), ("tiny SimPool", "discover-voc07"), ("tiny CLS-free GAP", "classify-toy")}
    assert set(zip(allres["label"], allres["entry"])) == entries
    folder = {"tiny SimPool": "tiny-simpool", "tiny CLS-free GAP": "gap"}
    for label, entry in entries:
        part = allres[(allres["label"] == label) & (allres["entry"] == entry)].drop(columns=list(SUITE_COLUMNS)).reset_index(drop=True)
        own = read_run(out / folder[label] / entry / "results.parquet")
        pd.testing.assert_frame_equal(part, own, check_exact=True)
        assert part["run_id"].nunique() == 1
    assert len(allres) == sum(len(read_run(out / folder[lab] / e / "results.parquet")) for lab, e in entries)


def test_compare_files_have_a_row_per_checkpoint(full_run):
    out, _ = full_run
    md = (out / "compare.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| tiny")]
    assert [r.split("|")[1].strip() for r in rows] == ["tiny SimPool", "tiny CLS-free GAP (ref)"]
    assert "voc07 corloc" in md and "toy top1" in md
    top1 = read_run(out / "gap" / "classify-toy" / "results.parquet").query("metric == 'top1'")["value"].item()
    assert f"{top1:.2f}" in rows[1]
    assert (out / "compare.tex").read_text().count(r"\toprule") == 1


def test_per_image_files_are_copied(full_run):
    out, _ = full_run
    for entry in ("tiny-simpool/classify-toy", "tiny-simpool/discover-voc07", "gap/classify-toy"):
        src = out / entry / "per_image.parquet"
        dest = out / "per_image" / f"{entry.replace('/', '__')}.parquet"
        assert src.is_file() and dest.read_bytes() == src.read_bytes()
    assert not (out / "per_image" / "gap__discover-voc07.parquet").exists()  # the failed entry wrote none


# ---------------------------------------------------------------------------- resume and the gate
def test_rerun_resumes_each_entry_and_the_gate_exit_codes(tiny, tmp_path):
    root, _, ok = tiny
    base = tmp_path / "base"
    first = _run(ok, base)
    assert first.exit_code == 0, first.output
    shards = sorted(base.glob("*/*/.shards/*/shard_*.pt"))
    assert shards and {p.parts[-5] for p in shards} == {"tiny-simpool", "gap"}
    stamps = {p: p.stat().st_mtime_ns for p in shards}
    tables = {p: read_run(p) for p in base.glob("*/*/results.parquet")}

    again = _run(ok, base, "--baseline", base, "--no-github")  # resumes in place; gates against itself
    assert again.exit_code == 0, again.output
    assert said(again).count("(resumed") == 3 and "suite check: PASSED" in said(again)
    assert {p: p.stat().st_mtime_ns for p in shards} == stamps  # finished shards reused, not recomputed
    cols = ["dataset", "split", "metric", "iou_threshold", "value"]
    for p, table in tables.items():
        pd.testing.assert_frame_equal(read_run(p)[cols], table[cols])

    # a baseline whose top-1 is 5 points higher than the run: exit 1, naming the entry
    worse = tmp_path / "worse"
    shutil.copytree(base, worse, ignore=shutil.ignore_patterns(".shards"))
    f = worse / "gap" / "classify-toy"
    t = read_run(f / "results.parquet")
    t.loc[t["metric"] == "top1", "value"] += 5.0
    (f / "results.parquet").unlink()
    t.to_csv(f / "results.csv", index=False)
    res = _run(ok, base, "--baseline", worse, "--no-github", "--summary", tmp_path / "summary.md")
    assert res.exit_code == 1, res.output
    summary = (tmp_path / "summary.md").read_text()
    assert "suite check: FAILED" in summary and "#### gap/classify-toy" in summary and "**Regressed:**" in summary

    # with a tolerance that covers the 5 points: passes
    tol = _write(tmp_path / "tol.toml", "top1 = 6.0\n")
    assert _run(ok, base, "--baseline", worse, "--tolerances", tol, "--no-github").exit_code == 0

    # a bad tolerances file, a missing baseline folder: exit 2, one line
    bad_tol = _write(tmp_path / "bad.toml", "topone = 1\n")
    for extra in (("--baseline", worse, "--tolerances", bad_tol), ("--baseline", tmp_path / "nowhere")):
        res = _run(ok, base, *extra, "--no-github")
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and res.output.startswith("error:"), res.output


def test_a_baseline_folder_without_results_is_refused_before_the_run(tiny, tmp_path):
    """--baseline naming a folder with no <checkpoint>/<entry>/results.* (an empty folder, the suite
    folder's parent) gated nothing and passed, exit 0, after running every entry: now exit 2 before
    the run, naming the folder one level down that holds a suite's results."""
    _, _, ok = tiny
    empty, parent = tmp_path / "empty", tmp_path / "runs"
    empty.mkdir()
    (parent / "suite" / "gap" / "classify-toy").mkdir(parents=True)
    (parent / "suite" / "gap" / "classify-toy" / "results.csv").write_text("dataset,split,metric,iou_threshold,value\n")
    for base, hint in ((empty, ""), (parent, f"; did you mean --baseline {parent / 'suite'}?")):
        out = tmp_path / "out"
        res = _run(ok, out, "--baseline", base, "--no-github")
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert (
            said(res)
            == f"error: --baseline {base}: no results in it (expected a suite output folder: <checkpoint>/<entry>/results.parquet, .csv or .json){hint}"
        )
        assert not out.exists()


def test_run_refuses_an_unset_variable_before_any_entry(tiny, tmp_path, monkeypatch):
    """A ${VAR} path with VAR unset: `suite run` failed every entry on a file named '${VAR}/...'
    (exit 1, as a failed run); it is bad input, one line naming the key and the variable, exit 2,
    before anything runs. `suite validate` without --check-paths still passes it (types and names)."""
    root = tiny[0]
    monkeypatch.delenv("SIMPOOL_TEST_CKPT", raising=False)
    suite = _write(tmp_path / "unset.toml", SUITE.format(only="").replace('"simpool.pth.tar"', '"${SIMPOOL_TEST_CKPT}/simpool.pth.tar"'))
    out = tmp_path / "out"
    res = _run(suite, out, "--root", root)
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert said(res) == (
        f"error: {suite}: [[checkpoints]] #1 ('tiny SimPool'): key 'checkpoint': '${{SIMPOOL_TEST_CKPT}}/simpool.pth.tar': "
        "environment variable SIMPOOL_TEST_CKPT is not set"
    )
    assert not out.exists()
    assert invoke_cli("suite", "validate", suite, "--root", root).exit_code == 0


def test_validate_imports_no_heavy_library():
    import json
    import subprocess
    import sys

    code = (
        "import sys, json\nfrom simpool_bench.cli import main\n"
        f"sys.argv = ['simpool-bench', 'suite', 'validate', {str(shipped_suite('simpool_paper'))!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(json.dumps(sorted(m for m in ('torch', 'pandas', 'timm', 'numba') if m in sys.modules)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(root), "PATH": ""}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_unexpected_error_in_one_entry_keeps_its_traceback_and_the_others_run(tiny, tmp_path, monkeypatch):
    from simpool_bench import runs
    from simpool_bench.engine import EngineConfig
    from simpool_bench.suite_run import run_suite

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(runs, "run_discover", broken)
    _, _, ok = tiny
    config = EngineConfig(device="cpu", batch_size=4, workers=0, shard_size=4, progress=False)
    report = run_suite(load_suite(ok), tmp_path / "out", config)
    assert [(o.entry.id, o.status) for o in report.outcomes] == [
        ("tiny-simpool/classify-toy", "ok"),
        ("tiny-simpool/discover-voc07", "failed"),
        ("gap/classify-toy", "ok"),
    ]
    (failed,) = report.failed
    error = tmp_path / "out" / "tiny-simpool" / "discover-voc07" / "error.txt"
    assert failed.message == f"RuntimeError: boom second line (traceback in {error})"
    assert "Traceback" in error.read_text() and "boom" in error.read_text()
    assert set(read_run(report.files["all_results"])["entry"]) == {"classify-toy"}
    assert set(read_run(report.files["all_results"])["command"]) == {"simpool_bench.suite_run.run_suite"}  # not pytest's argv


def test_per_image_copies_are_those_of_this_runs_all_results(tiny, tmp_path, monkeypatch):
    """A rerun in which an entry fails drops that entry's copy from per_image/ (it stood beside an
    all_results.csv without it); the entry's own folder keeps its earlier table."""
    from simpool_bench import runs
    from simpool_bench.engine import EngineConfig
    from simpool_bench.suite_run import run_suite

    _, _, ok = tiny
    out = tmp_path / "out"
    config = EngineConfig(device="cpu", batch_size=4, workers=0, shard_size=4, progress=False)
    first = run_suite(load_suite(ok), out, config)
    assert not first.failed
    names = ["gap__classify-toy.parquet", "tiny-simpool__classify-toy.parquet", "tiny-simpool__discover-voc07.parquet"]
    assert sorted(p.name for p in (out / "per_image").iterdir()) == names

    def broken(*args, **kwargs):
        raise SimpoolBenchError("the data went away")

    monkeypatch.setattr(runs, "run_discover", broken)
    again = run_suite(load_suite(ok), out, config)
    assert [o.entry.id for o in again.failed] == ["tiny-simpool/discover-voc07"]
    assert sorted(p.name for p in (out / "per_image").iterdir()) == [names[0], names[1]]
    assert set(read_run(out / "all_results.csv")["entry"]) == {"classify-toy"}
    assert (out / "tiny-simpool" / "discover-voc07" / "per_image.parquet").is_file()  # the original is kept
