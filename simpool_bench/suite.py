"""Suites: an evaluation plan in a TOML file, parsed and checked into the run layer's frozen specs.

A suite names checkpoints (the rows of the final table) and evaluations (task, dataset, data paths,
protocol options); ``suite run`` runs every checkpoint x evaluation (see ``suite_run``)::

    [compare]                          # optional: the compare table (compare.md / .tex)
    reference = "ViT-S CLS"            # the row the deltas are taken against (default: the first)
    metrics = ["top1", "maxboxacc_v2", "corloc"]   # default: every metric

    [[checkpoints]]
    label = "ViT-S SimPool"            # row label; the folder is `name` (default: the label, slugged)
    checkpoint = "${CKPT}/vits_supervised_simpool_ep300.pth.tar"
    # any model flag of the commands, `--` dropped and `-` as `_`: model, pool, gamma, format, ...

    [[checkpoints]]
    label = "no-model baseline"        # no model: only the tasks named here, with these baselines
    baselines = { localize = "center-gaussian", discover = "center" }

    [[evaluations]]
    task = "localize"                  # classify | localize | discover
    dataset = "cub"
    data = "/data/CUB_200_2011/images"
    metadata = "/data/wsol/metadata/CUB/test"
    # data flags (split, labels, subset, annotations, list, no_hard, label = the dataset name
    # recorded) and the task's protocol flags (interval, v1, cam_target; mass, method, ...)
    checkpoints = ["ViT-S SimPool", "no-model baseline"]   # optional: only these (labels or names)

Keys are the commands' long flags with ``-`` as ``_``. Paths expand ``~`` and ``${VAR}``; a
relative path is taken from ``root`` (default: the suite file's folder). Every unknown key and
bad value is a problem of its own, one line naming the file, the entry and the key; ``load_suite``
raises ``SuiteError`` holding all of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from .errors import SimpoolBenchError
from .families import POOLS
from .files import read_toml
from .registry import CLASSIFY_DEFAULT_SPLIT, DATASETS, DISCOVER_DATASETS, LOST, WSOL
from .specs import DATA_FIELDS_READ, OPTIONAL_DATA_FIELDS, ClassifySpec, DataSpec, DiscoverSpec, LocalizeSpec, ModelOptions

TASKS = ("classify", "localize", "discover")
SPEC_TYPES: dict[str, type] = {"classify": ClassifySpec, "localize": LocalizeSpec, "discover": DiscoverSpec}
#: What a no-model checkpoint (``baselines``) can run, per task.
BASELINES: dict[str, tuple[str, ...]] = {"localize": WSOL.baselines, "discover": ("center", "full-image")}
#: TOML key -> dataclass field where the command's flag is named otherwise.
_MODEL_ALIASES = {"model": "arch", "trust_checkpoint": "trust"}
_DATA_ALIASES = {"list": "list_file"}
#: Spec fields a suite does not set per evaluation (the checkpoint decides them).
_NOT_EVALUATION = {"data", "model", "maps", "baseline"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "pool": tuple(POOLS),
    "min_scope": ("sample", "batch", "channel"),
    "prefer": ("auto", "ema", "raw", "teacher", "student"),
    "cam_target": ("gt", "pred"),
    "method": tuple(m for m in LOST.methods if m not in BASELINES["discover"]),
    "rollout_fusion": ("mean", "max", "min"),
}
#: Numeric keys with a range (the commands' ``min=`` and run-time checks), as (test, what is expected).
_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    **{
        k: ((lambda v: v >= 1), "an integer >= 1")
        for k in ("subset", "knn_subset", "knn_k", "knn_chunks", "k_patches", "resize", "crop", "num_classes", "img_size")
    },
    "cls_head": ((lambda v: v >= 0), "an integer >= 0"),
    "knn_temperature": ((lambda v: v > 0), "a number > 0"),
    "crop_pct": ((lambda v: 0 < v <= 1), "a fraction in (0, 1]"),
    "rollout_discard": ((lambda v: 0 <= v < 1), "a fraction in [0, 1)"),
    "interval": ((lambda v: 0 < v < 1), "a step in (0, 1), e.g. 0.001 or 0.01"),
    "mass": ((lambda v: 0 < v <= 1), "a fraction in (0, 1]"),
}
_TASK_DATASETS = {"localize": tuple(n for n, r in DATASETS.items() if r.protocol == "localize"), "discover": DISCOVER_DATASETS}
#: DataSpec's own checks name the command's flag; a suite's problem names its key.
_DATA_FLAGS = {"--dataset": "dataset", "--split": "split", "--data-label": "label"}
_VAR = re.compile(r"\$\{?(\w+)")
_SPEC_FIELD = re.compile(r"^\w+Spec\.(\w+) = (.*)$", re.S)  # a spec's error: "ClassifySpec.knn_k = (): expected ..."
#: What ``load_suite`` checks of the paths: nothing, every ``${VAR}`` set ("vars": what ``suite run`` needs), or that too and every path there (True).
PathCheck = bool | Literal["vars"]
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class SuiteError(SimpoolBenchError):
    """A suite file with problems: ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


@dataclass(frozen=True)
class SuiteCheckpoint:
    """A row of the suite: a model (``model``), or no model with a baseline per task (``baselines``)."""

    label: str
    name: str
    model: ModelOptions | None = None
    baselines: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SuiteEvaluation:
    """A column group: a task on a dataset; ``options`` are the task spec's fields."""

    task: str
    name: str
    data: DataSpec
    options: tuple[tuple[str, Any], ...] = ()
    checkpoints: tuple[str, ...] | None = None  # only these checkpoint names (None: every one)


@dataclass(frozen=True)
class SuiteEntry:
    """One checkpoint x evaluation; ``spec`` None when the checkpoint cannot run the task (a
    no-model checkpoint without a baseline for it): the entry is skipped."""

    checkpoint: SuiteCheckpoint
    evaluation: SuiteEvaluation
    spec: ClassifySpec | LocalizeSpec | DiscoverSpec | None

    @property
    def folder(self) -> Path:
        """Where the entry's run goes, relative to the suite's output folder."""
        return Path(self.checkpoint.name) / self.evaluation.name

    @property
    def id(self) -> str:
        return f"{self.checkpoint.name}/{self.evaluation.name}"


@dataclass(frozen=True)
class Suite:
    """A parsed, checked suite file."""

    path: Path
    checkpoints: tuple[SuiteCheckpoint, ...]
    evaluations: tuple[SuiteEvaluation, ...]
    reference: str | None = None
    metrics: tuple[str, ...] | None = None

    def entries(self) -> list[SuiteEntry]:
        """Every checkpoint x evaluation, checkpoint by checkpoint, in file order."""
        return [
            SuiteEntry(c, e, make_spec(c, e))
            for c in self.checkpoints
            for e in self.evaluations
            if e.checkpoints is None or c.name in e.checkpoints
        ]


def make_spec(ckpt: SuiteCheckpoint, ev: SuiteEvaluation) -> ClassifySpec | LocalizeSpec | DiscoverSpec | None:
    """The run layer's spec of one entry (None: a no-model checkpoint has no baseline for the task)."""
    opts = dict(ev.options)
    if ckpt.model is not None:
        return SPEC_TYPES[ev.task](data=ev.data, model=ckpt.model, **opts)
    baseline = dict(ckpt.baselines).get(ev.task)
    if baseline is None:
        return None
    if ev.task == "localize":
        return LocalizeSpec(data=ev.data, baseline=baseline, **opts)
    return DiscoverSpec(data=ev.data, **{**opts, "method": baseline})


def slug(label: str) -> str:
    """A folder name from a label: lower case, runs of other characters than [a-z0-9._+] as '-'."""
    return re.sub(r"[^a-z0-9._+]+", "-", label.lower()).strip("-.") or "unnamed"


# ---------------------------------------------------------------------------------------- parsing
class _Problems:
    """Problems of one file, each one line starting with the file name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")


class _Bad(Exception):
    pass


def _type_name(ann: str) -> str:
    return {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string", "Path": "a path (string)"}.get(
        ann, ann.replace("tuple[float, ...]", "a list of numbers").replace("tuple[int, ...]", "a list of integers")
    )


def _path(value: Any, root: Path, check: PathCheck) -> Path:
    if not isinstance(value, str) or not value:
        raise _Bad(f"{value!r}: expected a path (string)")
    text = os.path.expanduser(os.path.expandvars(value))
    unset = _VAR.search(text)
    if check and unset:
        raise _Bad(f"{value!r}: environment variable {unset.group(1)} is not set")
    p = Path(text)
    p = p if p.is_absolute() else root / p
    if check is True and not p.exists():
        raise _Bad(f"{value!r}: {p} does not exist")
    return p


def _float(value: int | float) -> float:
    """A TOML number as a float; an integer beyond the float range (TOML's own are 64-bit, tomllib's are not) is a problem."""
    try:
        return float(value)
    except OverflowError:
        raise _Bad(f"an integer of {len(str(abs(value)))} digits: expected a number within the float range") from None


def _convert(key: str, value: Any, ann: str, root: Path, check: PathCheck) -> Any:
    """A TOML value checked against a dataclass field's annotation (a string: ``from __future__``)."""
    if key == "gamma":  # a number, or "none" (the plain attention-weighted mean)
        if isinstance(value, str) and value.lower() == "none":
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _float(value)
        raise _Bad(f'{value!r}: expected a number or "none"')
    kinds = [k.strip() for k in ann.split("|") if k.strip() != "None"]
    for kind in kinds:
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind in ("int", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
            if kind == "int" and not isinstance(value, int):
                continue
            test, what = _RANGES.get(key.split("[")[0], (lambda v: True, ""))
            if not test(value):
                raise _Bad(f"{value!r}: expected {what}")
            return value if kind == "int" else _float(value)
        if kind == "str" and isinstance(value, str):
            if key in _CHOICES and value not in _CHOICES[key]:
                raise _Bad(f"{value!r}: expected one of {', '.join(_CHOICES[key])}")
            return value
        if kind == "Path":
            return _path(value, root, check)
        if kind.startswith("tuple[") and isinstance(value, list):
            item = kind[len("tuple[") :].split(",")[0].strip()
            return tuple(_convert(f"{key}[{i}]", v, item, root, check) for i, v in enumerate(value))
    raise _Bad(f"{value!r}: expected {' or '.join(_type_name(k) for k in kinds)}")


def _fields(cls: type, aliases: Mapping[str, str], skip: set[str] = frozenset()) -> dict[str, tuple[str, str]]:  # type: ignore[assignment]
    """TOML key -> (field name, annotation) of a spec dataclass."""
    back = {v: k for k, v in aliases.items()}
    return {back.get(f.name, f.name): (f.name, str(f.type)) for f in fields(cls) if f.name not in skip}


def _fill(
    table: Mapping[str, Any], known: Mapping[str, tuple[str, str]], where: str, problems: _Problems, root: Path, check: PathCheck
) -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if key not in known:
            continue
        name, ann = known[key]
        try:
            out[name] = _convert(key, value, ann, root, check)
        except _Bad as bad:
            problems.add(where, f"key {key!r}: {bad}")
    return out


def _unknown(table: Mapping[str, Any], allowed: set[str], where: str, problems: _Problems) -> None:
    for key in table:
        if key not in allowed:
            close = [a for a in sorted(allowed) if a[:3] == key[:3]]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.add(where, f"unknown key {key!r}{hint}; expected some of {', '.join(sorted(allowed))}")


def _name(table: Mapping[str, Any], default: str, where: str, problems: _Problems) -> str:
    name = table.get("name", default)
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name in (".", ".."):
        problems.add(where, f"key 'name' {name!r}: expected a folder name (letters, digits, . _ + -)")
        return default
    return name


def _checkpoint(i: int, t: Any, problems: _Problems, root: Path, check: PathCheck) -> SuiteCheckpoint | None:
    label = t.get("label") if isinstance(t, dict) else None
    where = f"[[checkpoints]] #{i + 1}" + (f" ({label!r})" if isinstance(label, str) else "")
    if not isinstance(t, dict):
        problems.add(where, "expected a table")
        return None
    known = _fields(ModelOptions, _MODEL_ALIASES)
    _unknown(t, {"label", "name", "baselines", *known}, where, problems)
    if not isinstance(label, str) or not label.strip():
        problems.add(where, "key 'label': required, a non-empty string (the row label)")
        label = f"checkpoint {i + 1}"
    name = _name(t, slug(label), where, problems)
    opts = _fill(t, known, where, problems, root, check)
    baselines = t.get("baselines")
    if baselines is None:
        model = ModelOptions(**opts)
        _model_values(model, where, problems, check)
        if not model.gives_weights and not any(k in t for k in ("checkpoint", "model", "pretrained", "pretrained_file", "random_init")):
            problems.add(where, "names no model: give checkpoint, or model with pretrained/pretrained_file, or baselines = {...}")
        return SuiteCheckpoint(label, name, model)
    if opts:
        problems.add(where, f"key 'baselines': a no-model checkpoint takes no model keys ({', '.join(sorted(opts))})")
    if not isinstance(baselines, dict) or not baselines:
        problems.add(where, 'key \'baselines\': expected a table, e.g. { localize = "center-gaussian", discover = "center" }')
        return None
    pairs = []
    for task, b in baselines.items():
        if task not in BASELINES:
            problems.add(where, f"key 'baselines.{task}': expected a task with baselines: {', '.join(BASELINES)}")
        elif b not in BASELINES[task]:
            problems.add(where, f"key 'baselines.{task}' {b!r}: expected one of {', '.join(BASELINES[task])}")
        else:
            pairs.append((task, b))
    return SuiteCheckpoint(label, name, None, tuple(pairs))


def _model_values(model: ModelOptions, where: str, problems: _Problems, check: PathCheck) -> None:
    """What ``check_model_options`` refuses that a suite file states and no file or network is
    needed to check: bad ``mean``/``std``/``crop_pct``/``interpolation`` (each one on its own line)
    and, with ``check`` (``suite run``, ``validate --check-paths``: timm is imported), a timm model
    name it does not know. ``hf-hub:``/``torchvision:`` names are checked when the entry runs (a
    config to fetch)."""
    from .loading import data_overrides

    for name in ("mean", "std", "crop_pct", "interpolation"):
        if getattr(model, name) is not None:
            try:
                data_overrides(ModelOptions(**{name: getattr(model, name)}))
            except SimpoolBenchError as err:  # "--crop-pct 1.5: expected ...": the file's key, not a flag
                problems.add(where, f"key {name!r}: {str(err).partition(' ')[2]}")
    if check and model.arch is not None and ":" not in model.arch:
        from .models.build import model_family

        try:
            model_family(model.arch)
        except SimpoolBenchError as err:
            problems.add(where, f"key 'model': {err}")


def _evaluation(i: int, t: Any, problems: _Problems, root: Path, check: PathCheck) -> SuiteEvaluation | None:
    task, dataset = (t.get("task"), t.get("dataset")) if isinstance(t, dict) else (None, None)
    where = f"[[evaluations]] #{i + 1}" + (f" ({task} {dataset})" if isinstance(task, str) and isinstance(dataset, str) else "")
    if not isinstance(t, dict):
        problems.add(where, "expected a table")
        return None
    if task not in TASKS:
        problems.add(where, f"key 'task' {task!r}: expected one of {', '.join(TASKS)}")
        _unknown(t, {"task", "dataset", "name", "checkpoints", *_fields(DataSpec, _DATA_ALIASES)}, where, problems)
        return None
    data_keys = _fields(DataSpec, _DATA_ALIASES, {"dataset"})
    spec_keys = _fields(SPEC_TYPES[task], {}, _NOT_EVALUATION)
    _unknown(t, {"task", "dataset", "name", "checkpoints", *data_keys, *spec_keys}, where, problems)
    if not isinstance(dataset, str) or not dataset:
        problems.add(where, "key 'dataset': required, a string")
        return None
    if task in _TASK_DATASETS and dataset not in _TASK_DATASETS[task]:
        problems.add(where, f"key 'dataset' {dataset!r}: expected one of {', '.join(_TASK_DATASETS[task])} for {task}")
    if "data" not in t:
        problems.add(where, "key 'data': required, the image root of the dataset")
    for key, value in t.items():  # a data key the task does not read would be dropped silently (run_* refuse it too)
        name = data_keys[key][0] if key in data_keys else None
        if name in OPTIONAL_DATA_FIELDS and name not in DATA_FIELDS_READ[task] and value not in (None, False):
            toml_key = {v: k for k, v in _DATA_ALIASES.items()}
            keys = ", ".join(toml_key.get(n, n) for n in DATA_FIELDS_READ[task])
            problems.add(where, f"key {key!r}: {task} does not read it (its data keys besides data, split and label: {keys})")
    values = _fill(t, data_keys, where, problems, root, check)
    opts = _fill(t, spec_keys, where, problems, root, check)
    try:
        data = DataSpec(dataset, **values)
    except SimpoolBenchError as err:  # a name with spaces around it: the table would record another dataset
        flag, _, rest = str(err).partition(" ")
        problems.add(where, f"key {_DATA_FLAGS[flag]!r}: {rest}" if flag in _DATA_FLAGS else str(err))
        return None
    try:  # the spec's own checks across values (knn_k: distinct); the model is the checkpoint's, checked there
        SPEC_TYPES[task](data=data, **opts)
    except SimpoolBenchError as err:
        named = _SPEC_FIELD.match(str(err))
        problems.add(where, f"key {named[1]!r}: {named[2]}" if named and named[1] in opts else str(err))
    name = _name(t, f"{task}-{slug(data.name)}", where, problems)
    only = t.get("checkpoints")
    if only is not None and (not isinstance(only, list) or not only or not all(isinstance(c, str) for c in only)):
        problems.add(where, "key 'checkpoints': expected a list of checkpoint names or labels")
        only = None
    return SuiteEvaluation(task, name, data, tuple(opts.items()), None if only is None else tuple(only))


def _recorded(ev: SuiteEvaluation) -> tuple[str, str]:
    """The dataset/split an evaluation's rows record (what compare keys its columns on)."""
    if ev.data.split is not None:
        return ev.data.name, ev.data.split
    default = dict(ev.options).get("default_split", CLASSIFY_DEFAULT_SPLIT) if ev.task == "classify" else None
    return ev.data.name, default or (DATASETS[ev.data.dataset].default_split if ev.data.dataset in DATASETS else "")


def _collisions(checkpoints: list[SuiteCheckpoint], evaluations: list[SuiteEvaluation], problems: _Problems) -> None:
    """Two evaluations of one checkpoint recording the same dataset/split would mix their rows in compare."""
    for c in checkpoints:
        seen: dict[tuple[str, str], str] = {}
        for ev in evaluations:
            if ev.checkpoints is not None and c.name not in ev.checkpoints and c.label not in ev.checkpoints:
                continue
            key = _recorded(ev)
            if key in seen:
                problems.add(
                    "[[evaluations]]",
                    f"{seen[key]!r} and {ev.name!r} both record dataset/split {key[0]}/{key[1]} for checkpoint {c.label!r}; "
                    "give one a distinct 'label' (the dataset name recorded)",
                )
            seen.setdefault(key, ev.name)


def _compare(doc: Mapping[str, Any], labels: list[str], problems: _Problems) -> tuple[str | None, tuple[str, ...] | None]:
    from .metrics.catalog import METRICS

    t = doc.get("compare", {})
    if not isinstance(t, dict):
        problems.add("[compare]", "expected a table")
        return None, None
    _unknown(t, {"reference", "metrics"}, "[compare]", problems)
    ref, metrics = t.get("reference"), t.get("metrics")
    if ref is not None and ref not in labels:
        problems.add("[compare]", f"key 'reference' {ref!r}: expected a checkpoint label ({', '.join(map(repr, labels))})")
        ref = None
    if metrics is not None:
        names = {m.name for m in METRICS}
        if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
            problems.add("[compare]", "key 'metrics': expected a list of metric names")
            return ref, None
        for m in metrics:
            if m.split("@")[0] not in names:
                problems.add("[compare]", f"key 'metrics': unknown metric {m!r}; expected some of {', '.join(sorted(names))}")
        metrics = tuple(metrics)
    return ref, metrics


def parse_suite(doc: Mapping[str, Any], path: Path, root: Path | None = None, check_paths: PathCheck = False) -> Suite:
    """A suite from its parsed TOML (``path`` names it in messages; relative paths from ``root``,
    default ``path``'s folder). ``check_paths``: every path must exist (and every ``${VAR}`` be set); "vars": every ``${VAR}`` set."""
    problems = _Problems(path)
    root = Path(root) if root is not None else path.parent
    _unknown(doc, {"checkpoints", "evaluations", "compare"}, "", problems)
    ckpts, evals = doc.get("checkpoints", []), doc.get("evaluations", [])
    for key, items in (("checkpoints", ckpts), ("evaluations", evals)):
        if not isinstance(items, list) or not items:
            problems.add("", f"no [[{key}]]: a suite needs at least one")
    checkpoints = [
        c for i, t in enumerate(ckpts if isinstance(ckpts, list) else []) if (c := _checkpoint(i, t, problems, root, check_paths))
    ]
    evaluations = [
        e for i, t in enumerate(evals if isinstance(evals, list) else []) if (e := _evaluation(i, t, problems, root, check_paths))
    ]
    for what, items in (("checkpoints", checkpoints), ("evaluations", evaluations)):
        seen: dict[str, int] = {}
        for item in items:
            seen[item.name] = seen.get(item.name, 0) + 1
        for n, count in seen.items():
            if count > 1:
                problems.add(f"[[{what}]]", f"{count} entries have the folder name {n!r}; give each a distinct 'name'")
    labels = [c.label for c in checkpoints]
    by_key = {**{c.label: c.name for c in checkpoints}, **{c.name: c.name for c in checkpoints}}
    for j, ev in enumerate(evaluations):
        if ev.checkpoints is None:
            continue
        for key in ev.checkpoints:
            where = f"[[evaluations]] #{j + 1} ({ev.task} {ev.data.dataset})"
            if key not in by_key:
                problems.add(where, f"key 'checkpoints': {key!r} names no checkpoint")
            by_label = next((c for c in checkpoints if c.label == key), None)
            by_name = next((c for c in checkpoints if c.name == key), None)
            if by_label is not None and by_name is not None and by_label is not by_name:
                problems.add(
                    where,
                    f"key 'checkpoints': {key!r} is the label of checkpoint {by_label.label!r} and the name of checkpoint "
                    f"{by_name.label!r}; write {by_label.name!r} (its name) or {by_name.label!r} (its label)",
                )
        evaluations[j] = replace(ev, checkpoints=tuple(by_key[k] for k in ev.checkpoints if k in by_key))
    _collisions(checkpoints, evaluations, problems)
    for lab in sorted({lab for lab in labels if labels.count(lab) > 1}):
        problems.add("[[checkpoints]]", f"label {lab!r} is used more than once; labels name the rows and must be unique")
    reference, metrics = _compare(doc, labels, problems)
    if problems.lines:
        raise SuiteError(problems.lines)
    return Suite(path, tuple(checkpoints), tuple(evaluations), reference, metrics)


def load_suite(path: str | os.PathLike, root: str | os.PathLike | None = None, check_paths: PathCheck = False) -> Suite:
    """Read and check a suite file (see the module docstring); a ``SuiteError`` lists every problem."""
    path = Path(path)
    doc = read_toml(path, "suite file")
    return parse_suite(doc, path, None if root is None else Path(root), check_paths)


def shipped_suite(name: str) -> Path:
    """A suite shipped with the tool (``suites/NAME.toml`` in a checkout, else the installed copy)."""
    import importlib.util

    checkout = Path(__file__).resolve().parents[1] / "suites" / f"{name}.toml"
    if checkout.is_file():
        return checkout
    spec = importlib.util.find_spec("simpool_bench.suites")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / f"{name}.toml"
    raise SimpoolBenchError(f"shipped suite {name!r} not found (expected suites/{name}.toml; reinstall simpool-bench)")
