"""Suites (``simpool_bench.suite``, ``suite_run``, ``simpool-bench suite``): a TOML file checked into
specs, every checkpoint x evaluation run (one failing entry does not stop the others), the suite's
files, resume, and the gate against a baseline suite folder."""

from __future__ import annotations

import shlex
import shutil
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from simpool_bench import results as R
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.results import read_run
from simpool_bench.suite import SuiteError, load_suite, parse_suite, shipped_suite
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
    (f / "results.manifest.json").unlink()  # a hand-made baseline (with it, the edited table is refused)
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


def test_a_rerun_in_which_every_entry_fails_leaves_no_earlier_suite_files(tiny, tmp_path, monkeypatch):
    """all_results.csv, compare.md/.tex and per_image/ hold exactly the entries that succeeded in
    this run: when none did, an earlier run's copies are removed, not left to read as this run's
    (the entry folders keep their own tables)."""
    from simpool_bench import runs
    from simpool_bench.engine import EngineConfig
    from simpool_bench.suite_run import run_suite

    _, _, ok = tiny
    out = tmp_path / "out"
    config = EngineConfig(device="cpu", batch_size=4, workers=0, shard_size=4, progress=False)
    assert not run_suite(load_suite(ok), out, config).failed
    assert (out / "all_results.csv").is_file() and any((out / "per_image").iterdir())

    def broken(*args, **kwargs):
        raise SimpoolBenchError("the data went away")

    monkeypatch.setattr(runs, "run_classify", broken)
    monkeypatch.setattr(runs, "run_discover", broken)
    again = run_suite(load_suite(ok), out, config)
    assert len(again.failed) == len(again.outcomes) == 3
    assert not (out / "all_results.csv").exists() and not (out / "compare.md").exists() and not (out / "compare.tex").exists()
    assert list((out / "per_image").iterdir()) == []
    assert (out / "tiny-simpool" / "discover-voc07" / "per_image.parquet").is_file()  # the entry folder keeps its own


# ------------------------------------------------------------------- parsing, value by value
CKPT = '[[checkpoints]]\nlabel = "A"\ncheckpoint = "a.pth"\n'
CLASSIFY = '[[evaluations]]\ntask = "classify"\ndataset = "imagenet"\ndata = "in"\n'
LOCALIZE = '[[evaluations]]\ntask = "localize"\ndataset = "cub"\ndata = "cub"\n'
DISCOVER = '[[evaluations]]\ntask = "discover"\ndataset = "voc07"\ndata = "voc"\n'
WHERE_C, WHERE_L, WHERE_D = (
    "[[evaluations]] #1 (classify imagenet)",
    "[[evaluations]] #1 (localize cub)",
    "[[evaluations]] #1 (discover voc07)",
)


def _parse(text: str, root: Path = Path("/suites"), check_paths: bool | str = False):
    """The suite of ``text``, or its problems without the file name (a ``SuiteError``)."""
    path = root / "s.toml"
    try:
        return parse_suite(tomllib.loads(text), path, root, check_paths)
    except SuiteError as err:
        assert all(p.startswith(f"{path}: ") for p in err.problems), err.problems
        return [p[len(f"{path}: ") :] for p in err.problems]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (CKPT.replace('"a.pth"', '""') + CLASSIFY, "[[checkpoints]] #1 ('A'): key 'checkpoint': '': expected a path (string)"),
        (CKPT + "gamma = true\n" + CLASSIFY, "[[checkpoints]] #1 ('A'): key 'gamma': True: expected a number or \"none\""),
        (CKPT + CLASSIFY + "subset = 2.5\n", f"{WHERE_C}: key 'subset': 2.5: expected an integer"),
        (CKPT + CLASSIFY + "knn_temperature = 0\n", f"{WHERE_C}: key 'knn_temperature': 0: expected a number > 0"),
        # tomllib reads integers of any length; one beyond the float range is a problem, not an OverflowError
        (
            CKPT + "gamma = 1" + "0" * 400 + "\n" + CLASSIFY,
            "[[checkpoints]] #1 ('A'): key 'gamma': an integer of 401 digits: expected a number within the float range",
        ),
        (
            CKPT + CLASSIFY + "knn_temperature = 1" + "0" * 400 + "\n",
            f"{WHERE_C}: key 'knn_temperature': an integer of 401 digits: expected a number within the float range",
        ),
        (CKPT + CLASSIFY + "knn_subset = 0\n", f"{WHERE_C}: key 'knn_subset': 0: expected an integer >= 1"),
        (CKPT + CLASSIFY + "knn_k = [20, 0]\n", f"{WHERE_C}: key 'knn_k': 0: expected an integer >= 1"),
        # the spec's own check across the list: no k at all, or one k twice (two equal rows)
        (CKPT + CLASSIFY + "knn_k = []\n", f"{WHERE_C}: key 'knn_k': (): expected distinct whole numbers >= 1, e.g. (10, 20, 100, 200)"),
        (
            CKPT + CLASSIFY + "knn_k = [10, 10]\n",
            f"{WHERE_C}: key 'knn_k': (10, 10): expected distinct whole numbers >= 1, e.g. (10, 20, 100, 200)",
        ),
        (CKPT + LOCALIZE + "interval = 1\n", f"{WHERE_L}: key 'interval': 1: expected a step in (0, 1), e.g. 0.001 or 0.01"),
        (CKPT + DISCOVER + "mass = 0\n", f"{WHERE_D}: key 'mass': 0: expected a fraction in (0, 1]"),
        (
            CKPT + 'name = "a/b"\n' + CLASSIFY,
            "[[checkpoints]] #1 ('A'): key 'name' 'a/b': expected a folder name (letters, digits, . _ + -)",
        ),
        (CKPT + CLASSIFY + 'name = ".."\n', f"{WHERE_C}: key 'name' '..': expected a folder name (letters, digits, . _ + -)"),
        (
            CKPT + 'name = ["x"]\n' + CLASSIFY,
            "[[checkpoints]] #1 ('A'): key 'name' ['x']: expected a folder name (letters, digits, . _ + -)",
        ),
        (
            '[[checkpoints]]\nlabel = "A"\npool = "simpool"\n' + CLASSIFY,
            "[[checkpoints]] #1 ('A'): names no model: give checkpoint, or model with pretrained/pretrained_file, or baselines = {...}",
        ),
        (
            CKPT + 'baselines = { localize = "center-gaussian" }\n' + LOCALIZE,
            "[[checkpoints]] #1 ('A'): key 'baselines': a no-model checkpoint takes no model keys (checkpoint)",
        ),
        (
            '[[checkpoints]]\nlabel = "B"\nbaselines = { localize = "centre" }\n' + LOCALIZE,
            "[[checkpoints]] #1 ('B'): key 'baselines.localize' 'centre': expected one of center-gaussian, full-box",
        ),
        (
            '[[checkpoints]]\nlabel = "B"\nbaselines = {}\n' + LOCALIZE,
            "[[checkpoints]] #1 ('B'): key 'baselines': expected a table, e.g. { localize = \"center-gaussian\", discover = \"center\" }",
        ),
        (
            CKPT + LOCALIZE.replace('"cub"', '"voc07"', 1),
            "[[evaluations]] #1 (localize voc07): key 'dataset' 'voc07': expected one of cub, imagenet, folder for localize",
        ),
        (CKPT + CLASSIFY.replace('data = "in"\n', ""), f"{WHERE_C}: key 'data': required, the image root of the dataset"),
        (CKPT + CLASSIFY + "checkpoints = []\n", f"{WHERE_C}: key 'checkpoints': expected a list of checkpoint names or labels"),
        (  # "A": the label of one checkpoint and the name of another (it picked the named one without a word)
            CKPT + '[[checkpoints]]\nlabel = "B"\nname = "A"\ncheckpoint = "b.pth"\n' + CLASSIFY + 'checkpoints = ["A"]\n',
            f"{WHERE_C}: key 'checkpoints': 'A' is the label of checkpoint 'A' and the name of checkpoint 'B'; write 'a' (its name) or 'B' (its label)",
        ),
        ("checkpoints = []\n" + CLASSIFY, "no [[checkpoints]]: a suite needs at least one"),
        (
            CKPT + CKPT.replace('"a.pth"', '"b.pth"') + 'name = "b"\n' + CLASSIFY,
            "[[checkpoints]]: label 'A' is used more than once; labels name the rows and must be unique",
        ),
        (
            CKPT + CLASSIFY + '[compare]\nmetrics = ["top1", "top2"]\n',
            "[compare]: key 'metrics': unknown metric 'top2'; expected some of "
            + "best_threshold, corloc, gt_known_loc, knn_top1, knn_top5, maxboxacc, maxboxacc_v1, maxboxacc_v2, n_failed, n_images, n_nonfinite, top1, top1_loc, top5",
        ),
    ],
)
def test_each_bad_value_is_its_one_problem(text, problem):
    """Every check of the parser on its own: the one problem line it gives (the file name first)."""
    assert _parse(text) == [problem]


def test_model_values_the_run_would_refuse_are_problems_of_the_suite_file():
    """mean/std of the wrong length or a zero std, an interpolation timm's transforms lack: each was
    accepted by validate and failed only when its entry ran (check_model_options), hours into a
    suite. Now each is a line naming the key; a model name timm does not know is one too, where
    timm is imported (``--check-paths``, ``suite run``); hf-hub names wait for their entry (a
    config to fetch)."""
    where = "[[checkpoints]] #1 ('A')"
    bad = 'mean = [0.5, 0.5]\nstd = [0.2, 0, 0.2]\ninterpolation = "lanczos"\n'
    expected = [
        f"{where}: key 'mean': 0.5,0.5: expected 3 numbers (R,G,B), each in [0, 1] (pixels are read as 0..1, ToTensor)",
        f"{where}: key 'std': 0.2,0.0,0.2: expected 3 numbers (R,G,B), each in [0.001, 1] (pixels are read as 0..1, ToTensor)",
        f"{where}: key 'interpolation': 'lanczos': expected bilinear, bicubic or nearest",
    ]
    assert _parse(CKPT + bad + CLASSIFY) == expected
    assert not isinstance(_parse(CKPT + "mean = [0.5]\nstd = [0.5, 0.25, 0.5]\n" + CLASSIFY), list)  # one value stands for all three
    assert _parse(CKPT + "mean = [123.675, 116.28, 103.53]\n" + CLASSIFY) == [  # 0..255 values
        f"{where}: key 'mean': 123.675,116.28,103.53: expected 3 numbers (R,G,B), each in [0, 1]: pixels are read as 0..1 "
        "(ToTensor), so 0..255 values are 255 times too large: 0.485,0.456,0.406 is their 0..1 equivalent"
    ]

    typo = CKPT + 'model = "resnet181"\n' + CLASSIFY
    assert not isinstance(_parse(typo), list)  # types and names only: no timm import
    unknown = (
        f"{where}: key 'model': unknown model 'resnet181': expected a timm model name of a supported family, such as "
        "vit_small_patch16_224, vit_small_patch8_224, deit_tiny_patch16_224, resnet50, convnext_tiny, efficientnet_b0, regnetx_002"
    )
    assert _parse(typo, check_paths="vars") == [unknown]
    assert _parse(CKPT + 'model = "resnet18"\n' + CLASSIFY, check_paths="vars") != [unknown]
    hub = CKPT + 'model = "hf-hub:nobody/nothing"\n' + CLASSIFY
    assert not isinstance(_parse(hub, check_paths="vars"), list)


def test_a_recorded_name_with_spaces_around_it_is_a_problem_of_the_suite_file():
    """``label``/``split`` with spaces around them (the table would record another dataset) stopped
    ``suite validate`` and ``run`` at the first with one line naming neither the file nor the key
    but the command's flag (``--data-label ' x'``), the other problems unsaid; ``knn_subset = 0``
    did too (``ClassifySpec.knn_subset = 0``). Each is now a problem line naming the file, the entry
    and the key (of names, the first found), beside the evaluation's other problems."""
    assert _parse(CKPT + CLASSIFY + 'label = " x"\nsplit = " "\nknn_subset = 0\nknn_temperature = 0\n') == [
        f"{WHERE_C}: key 'knn_subset': 0: expected an integer >= 1",
        f"{WHERE_C}: key 'knn_temperature': 0: expected a number > 0",
        f"{WHERE_C}: key 'split': ' ': expected a name without spaces around it or line breaks",
    ]
    assert _parse(CKPT + CLASSIFY + 'label = "imagenet "\n') == [
        f"{WHERE_C}: key 'label': 'imagenet ': expected a name without spaces around it or line breaks ('imagenet'?)"
    ]


def test_values_at_the_edges_and_the_defaults_are_taken():
    """The values the checks let through, as the commands take them: the ranges' closed ends,
    gamma "None", an integer for a number key (a float, as the flag gives), metrics name@N."""
    suite = _parse(
        CKPT
        + 'gamma = "None"\ncls_head = 0\ncrop_pct = 1\n'
        + DISCOVER
        + "mass = 1\n"
        + CLASSIFY
        + "knn_temperature = 0.5\nknn_k = [10, 20]\n"
        + '[compare]\nmetrics = ["maxboxacc_v2@50", "top1"]\n'
    )
    assert not isinstance(suite, list), suite
    model = suite.checkpoints[0].model
    assert (model.gamma, model.cls_head, model.crop_pct) == (None, 0, 1.0)
    mass = dict(suite.evaluations[0].options)["mass"]
    assert mass == 1.0 and type(mass) is float
    assert dict(suite.evaluations[1].options)["knn_k"] == (10, 20)
    assert suite.metrics == ("maxboxacc_v2@50", "top1")


def test_a_suite_error_reads_as_its_first_problem_and_how_many_more():
    """A ``SuiteError`` reads as its first problem and how many more there are (one line)."""
    assert str(SuiteError(["one"])) == "one"
    assert str(SuiteError(["one", "two"])) == "one (and 1 more problem(s))"
    assert str(SuiteError(["one", "two", "three"])) == "one (and 2 more problem(s))"


def test_folder_names_from_labels():
    """A checkpoint's folder is its label slugged (runs of other characters as one '-', no leading or
    trailing '-' or '.': no hidden folder); an evaluation's is task-<recorded dataset name>."""
    suite = _parse(
        '[[checkpoints]]\nlabel = ".ViT-S  (SimPool)."\ncheckpoint = "a.pth"\n'
        '[[checkpoints]]\nlabel = "???"\ncheckpoint = "b.pth"\n' + LOCALIZE + 'label = "demo CUB"\n'
    )
    assert not isinstance(suite, list), suite
    assert [c.name for c in suite.checkpoints] == ["vit-s-simpool", "unnamed"]
    assert [e.id for e in suite.entries()] == ["vit-s-simpool/localize-demo-cub", "unnamed/localize-demo-cub"]


def test_paths_are_checked_as_asked(tmp_path):
    """check_paths: False takes any path; "vars" (what suite run asks) only refuses an unset
    ${VAR}, a missing file is then that entry's failure; True refuses a missing path too."""
    text = CKPT + CLASSIFY
    assert _parse(text, tmp_path, "vars").checkpoints[0].model.checkpoint == tmp_path / "a.pth"
    assert _parse(text, tmp_path, True) == [
        f"[[checkpoints]] #1 ('A'): key 'checkpoint': 'a.pth': {tmp_path / 'a.pth'} does not exist",
        f"{WHERE_C}: key 'data': 'in': {tmp_path / 'in'} does not exist",
    ]
    (tmp_path / "a.pth").touch()
    (tmp_path / "in").mkdir()
    assert not isinstance(_parse(text, tmp_path, True), list)


def test_a_split_given_is_the_split_recorded():
    """Two evaluations of one dataset on different splits record different columns (no collision);
    on the same split (one given, one the default) they collide."""
    other = CLASSIFY + 'name = "train"\n'
    assert not isinstance(_parse(CKPT + CLASSIFY + other + 'split = "train"\n'), list)
    assert _parse(CKPT + CLASSIFY + other + 'split = "val"\n') == [
        "[[evaluations]]: 'classify-imagenet' and 'train' both record dataset/split imagenet/val for checkpoint 'A'; "
        "give one a distinct 'label' (the dataset name recorded)"
    ]


def test_a_baseline_row_runs_its_baseline_whatever_the_evaluation_method():
    """The method of a discover evaluation is the model rows'; a no-model row runs its baseline."""
    suite = _parse(CKPT + '[[checkpoints]]\nlabel = "B"\nbaselines = { discover = "center" }\n' + DISCOVER + 'method = "lost"\n')
    assert not isinstance(suite, list), suite
    assert [(e.id, e.spec.method) for e in suite.entries()] == [("a/discover-voc07", "lost"), ("b/discover-voc07", "center")]


# ------------------------------------------------------ run_suite and the gate, with the runs faked
FAKE_SUITE = """
[[checkpoints]]
label = "A"
checkpoint = "a.pth"

[[checkpoints]]
label = "B"
checkpoint = "b.pth"

[[checkpoints]]
label = "C"
baselines = { discover = "center" }

[[evaluations]]
task = "classify"
dataset = "toy"
data = "images"

[[evaluations]]
task = "discover"
dataset = "voc07"
data = "voc"
"""


@pytest.fixture
def fake_runs(monkeypatch):
    """``runs.run_classify``/``run_discover`` replaced: the entry ``<ckpt>/<eval>`` gives top1 or corloc
    = ``values[entry]`` (raises it when an exception), writes results.csv in its folder and
    ``extras``; ``calls`` records (entry, engine config)."""
    from simpool_bench import runs
    from simpool_bench.specs import RunResult

    from results_helpers import _prov

    state: dict = {"values": {}, "extras": {}, "calls": []}

    def fake(task: str, metric: str):
        dataset, split = ("toy", "val") if task == "classify" else ("voc07", "trainval")
        template = R.make_table(R.metric_rows(dataset, split, {metric: 0.0}), _prov())

        def run(spec, engine, out, formats):
            entry = f"{Path(out).parent.name}/{Path(out).name}"
            state["calls"].append((entry, engine))
            value = state["values"].get(entry, 50.0)
            if isinstance(value, BaseException):
                raise value
            table = template.assign(value=float(value), run_id=entry)
            Path(out).mkdir(parents=True, exist_ok=True)
            table.to_csv(Path(out) / "results.csv", index=False)
            return RunResult(table, extras=dict(state["extras"]))

        return run

    monkeypatch.setattr(runs, "run_classify", fake("classify", "top1"))
    monkeypatch.setattr(runs, "run_discover", fake("discover", "corloc"))
    return state


def _fake_suite(tmp_path: Path, extra: str = ""):
    from simpool_bench.engine import EngineConfig

    return load_suite(_write(tmp_path / "s.toml", FAKE_SUITE + extra)), EngineConfig(device="cpu", workers=0, progress=False)


def test_resume_and_no_resume_give_each_entry_its_shards_folder_or_none(fake_runs, tmp_path):
    """Each entry resumes from OUT/<entry>/.shards; --no-resume (resume=False) gives none; the no-model
    row's classify is skipped (not run); a run that tells no shard counts gives ``shards`` None."""
    from simpool_bench.suite_run import run_suite

    suite, config = _fake_suite(tmp_path)
    out = tmp_path / "out"
    report = run_suite(suite, out, config)
    ran = ["a/classify-toy", "a/discover-voc07", "b/classify-toy", "b/discover-voc07", "c/discover-voc07"]
    assert [(e, c.resume_dir) for e, c in fake_runs["calls"]] == [(e, out / e / ".shards") for e in ran]
    assert [(o.entry.id, o.status, o.shards) for o in report.outcomes] == [
        *[(e, "ok", None) for e in ran[:4]],
        ("c/classify-toy", "skipped", None),
        (ran[4], "ok", None),
    ]
    fake_runs["calls"].clear()
    fake_runs["extras"] = {"shards_resumed": 1, "shards_total": 3}
    again = run_suite(suite, out, config, resume=False)
    assert [(e, c.resume_dir) for e, c in fake_runs["calls"]] == [(e, None) for e in ran]
    assert {o.shards for o in again.outcomes if o.status == "ok"} == {(1, 3)}


def test_a_failed_entry_reads_as_the_users_message(fake_runs, tmp_path):
    """An error of a DataLoader worker (its traceback around the message) reads as the message; an
    OSError as 'FILE: reason'; a message quoting a library's error of several lines as one line."""
    from simpool_bench.suite_run import run_suite

    worker = SimpoolBenchError(
        "Caught SimpoolBenchError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nsimpool_bench.errors.SimpoolBenchError: voc/JPEGImages/1.jpg: not an image'
    )
    quoted = SimpoolBenchError(
        "b.pth: cannot read the checkpoint (UnpicklingError: Weights only load failed.\n  Unsupported global:\n\n GLOBAL x.Y)"
    )
    fake_runs["values"] = {
        "a/classify-toy": worker,
        "b/discover-voc07": FileNotFoundError(2, "No such file or directory", "/d/voc/x.xml"),
        "b/classify-toy": quoted,
    }
    suite, config = _fake_suite(tmp_path)
    report = run_suite(suite, tmp_path / "out", config)
    assert [(o.entry.id, o.message) for o in report.failed] == [
        ("a/classify-toy", "voc/JPEGImages/1.jpg: not an image"),
        ("b/classify-toy", "b.pth: cannot read the checkpoint (UnpicklingError: Weights only load failed. Unsupported global: GLOBAL x.Y)"),
        ("b/discover-voc07", "/d/voc/x.xml: No such file or directory"),
    ]


def test_only_rank_0_writes_the_suite_files(fake_runs, tmp_path, monkeypatch):
    """Under torchrun every rank runs the entries; the other ranks write no all_results.csv, per_image/
    or compare files (rank 0 does)."""
    from simpool_bench import engine
    from simpool_bench.suite_run import run_suite

    suite, config = _fake_suite(tmp_path)
    monkeypatch.setattr(engine, "dist_rank", lambda: 1)
    report = run_suite(suite, tmp_path / "out", config)
    assert len(report.outcomes) == 6 and report.files == {} and report.compare is None
    assert not (tmp_path / "out" / "all_results.csv").exists() and not (tmp_path / "out" / "compare.md").exists()
    monkeypatch.setattr(engine, "dist_rank", lambda: 0)
    assert set(run_suite(suite, tmp_path / "out", config).files) >= {"all_results", "compare_md", "compare_tex"}


def test_the_compare_reference_defaults_to_the_first_row_and_metrics_select_the_columns(fake_runs, tmp_path):
    """No [compare] reference: deltas against the first checkpoint; a reference whose entries all
    failed: the table without deltas (not an error after every entry ran); metrics: only those columns."""
    from simpool_bench.suite_run import run_suite

    fake_runs["values"] = {"a/classify-toy": 60.0, "b/classify-toy": 72.5, "a/discover-voc07": 40.0, "b/discover-voc07": 45.0}
    suite, config = _fake_suite(tmp_path)
    table = run_suite(suite, tmp_path / "out", config).compare
    assert table.attrs["reference"] == "A"
    assert table.loc["B", ("toy", "val", "top1", "delta")] == 12.5 and table.loc["C", ("voc07", "trainval", "corloc", "delta")] == 10.0

    suite, _ = _fake_suite(tmp_path, '\n[compare]\nreference = "B"\nmetrics = ["corloc"]\n')
    fake_runs["values"] = {"b/classify-toy": SimpoolBenchError("gone"), "b/discover-voc07": SimpoolBenchError("gone")}
    report = run_suite(suite, tmp_path / "out", config)
    assert report.compare.attrs["reference"] is None and list(report.compare.index) == ["A", "C"]
    assert list(report.compare.columns) == [("voc07", "trainval", "corloc", "value")]
    assert "corloc" in (tmp_path / "out" / "compare.md").read_text()


def test_the_gate_notes_what_it_did_not_check_and_gates_the_rest(fake_runs, tmp_path):
    """Against a baseline folder: a failed entry's stale results (an earlier run) are not gated; a
    skipped entry is not either, even with a baseline; an ok entry without a baseline, and a baseline
    entry the suite lacks, are notes; a failed entry without a baseline says nothing (it fails the run)."""
    from simpool_bench.suite_run import check_suite, run_suite

    suite, config = _fake_suite(tmp_path)
    base, out = tmp_path / "base", tmp_path / "out"
    run_suite(suite, base, config)
    for extra in ("d/classify-toy", "c/classify-toy"):
        shutil.copytree(base / "a" / "classify-toy", base / extra)
    for gone in ("b/discover-voc07", "c/discover-voc07"):
        shutil.rmtree(base / gone)
    run_suite(suite, out, config)  # every entry ok: results.csv in each folder
    fake_runs["values"] = {
        "a/classify-toy": SimpoolBenchError("gone"),
        "b/discover-voc07": SimpoolBenchError("gone"),
        "b/classify-toy": 40.0,
    }
    report = run_suite(suite, out, config)
    gate = check_suite(report, base)
    assert [(entry, r.passed) for entry, r in gate.reports] == [("a/discover-voc07", True), ("b/classify-toy", False)]
    assert gate.notes == [
        "a/classify-toy: failed in this run, its baseline not checked",
        f"c/discover-voc07: no baseline in {base / 'c' / 'discover-voc07'} (not gated)",
        "d/classify-toy: in the baseline, not in this suite (not gated)",
    ]
    assert (gate.errors, gate.passed, gate.exit_code) == ([], False, 1)
    assert gate.markdown.startswith("## simpool-bench suite check: FAILED (2 entries, 1 failing)\n")


def test_the_gate_passes_every_entry_within_its_baseline_one_stored_as_json_too(fake_runs, tmp_path):
    """Every entry within its baseline: passed, exit 0, nothing noted; a baseline entry holding only
    results.json is read (as results.parquet and .csv)."""
    from simpool_bench.suite_run import check_suite, run_suite

    suite, config = _fake_suite(tmp_path)
    base = tmp_path / "base"
    run_suite(suite, base, config)
    for name in ("results.csv", "results.manifest.json"):
        (base / "b" / "discover-voc07" / name).unlink(missing_ok=True)
    R.write_run(
        read_run(base / "a" / "discover-voc07" / "results.csv").assign(run_id="b/discover-voc07"), tmp_path / "json", formats=["json"]
    )
    shutil.copyfile(tmp_path / "json" / "results.json", base / "b" / "discover-voc07" / "results.json")
    gate = check_suite(run_suite(suite, tmp_path / "out", config), base)
    ran = ["a/classify-toy", "a/discover-voc07", "b/classify-toy", "b/discover-voc07", "c/discover-voc07"]
    assert [e for e, _ in gate.reports] == ran
    assert (gate.passed, gate.exit_code, gate.notes, gate.errors) == (True, 0, [], [])
    assert gate.markdown.startswith("## simpool-bench suite check: PASSED (5 entries, 0 failing)\n")


def test_the_gate_errs_on_an_unreadable_baseline_and_on_a_crash(fake_runs, tmp_path, monkeypatch):
    """One baseline file unreadable: an error, exit 2 (not a pass, whatever the others); ``check``
    crashing: an error naming the entry, never a traceback or a regression."""
    from simpool_bench import results
    from simpool_bench.suite_run import check_suite, run_suite

    text = FAKE_SUITE[: FAKE_SUITE.index('[[checkpoints]]\nlabel = "B"')] + FAKE_SUITE[FAKE_SUITE.index("[[evaluations]]") :]
    suite, config = load_suite(_write(tmp_path / "s.toml", text)), _fake_suite(tmp_path)[1]
    base = tmp_path / "base"
    run_suite(suite, base, config)
    (base / "a" / "classify-toy" / "results.csv").write_text("not,a,table\n1,2,3\n")
    report = run_suite(suite, tmp_path / "out", config)
    gate = check_suite(report, base)
    assert len(gate.errors) == 1 and gate.errors[0].startswith("a/classify-toy: ")
    assert [(e, r.passed) for e, r in gate.reports] == [("a/discover-voc07", True)]
    assert (gate.passed, gate.exit_code) == (False, 2)

    def crash(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(results, "check", crash)
    gate = check_suite(report, base)
    assert gate.errors == [f"{e}: check failed: ValueError: boom" for e in ("a/classify-toy", "a/discover-voc07")]
    assert (gate.reports, gate.exit_code) == ([], 2)


def test_a_baseline_folder_holding_several_suites_gives_no_guess(tmp_path):
    """The hint names the one suite folder inside; with two there, it guesses neither."""
    from simpool_bench.suite_run import check_baseline_folder

    for suite in ("s1", "s2"):
        (tmp_path / suite / "a" / "e").mkdir(parents=True)
        (tmp_path / suite / "a" / "e" / "results.csv").write_text("x\n")
    with pytest.raises(SimpoolBenchError) as err:
        check_baseline_folder(tmp_path)
    assert str(err.value) == (
        f"--baseline {tmp_path}: no results in it (expected a suite output folder: <checkpoint>/<entry>/results.parquet, .csv or .json)"
    )
