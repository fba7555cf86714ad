"""The run layer under every command, the demo and Python users: a frozen spec, engine options
and an output folder in, a ``RunResult`` (table, files, extras) out.

``run_classify``, ``run_localize``, ``run_discover`` and ``run_extract`` read the data the spec
names, build the model (or open the stored maps, or take the baseline), run the protocol's task
(``tasks``) and write the tidy, provenance-stamped table. A run records as its ``command`` the
CLI's command line, or, called from Python, the function ('simpool_bench.api.run_localize'). Each run's resume key is
``runkey.resume_key`` of the command, the model, the spec's records and transform, the spec's
protocol parameters and the engine settings (see ``runkey``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from . import tasks
from .caller import called_as
from .data.imagenet import in_timm_class_order
from .data.manifests import note_unpublished
from .data.records import Record, records_sha256
from .engine import EngineConfig, resolve_device
from .errors import SimpoolBenchError
from .fields import path_argument
from .loading import check_model_options, load_model
from .metrics.knn import check_chunks
from .readers import (
    classification_split,
    read_classification_data,
    read_data,
    read_discovery_data,
    read_localization_data,
    refuse_split_folders_as_classes,
    split_of,
)
from .registry import DATASETS, LOCALIZE_DATASETS, MIN_INTERVAL, WSOL
from .results import Provenance
from .results.table import EXPORT_FILES
from .run_records import finish_run, map_transform_record, per_image_of, provenance, stored_provenance
from .specs import (
    DATA_FIELDS_READ,
    ClassifySpec,
    DataSpec,
    DiscoverSpec,
    ExtractSpec,
    LocalizeSpec,
    ModelOptions,
    RunResult,
    protocol_of,
    unread_data_fields,
)

#: The files a run writes besides results.csv, results.parquet and per_image.parquet, unless told
#: otherwise (as the CLI's default; "csv" also writes per_image.csv).
DEFAULT_FORMATS = ("json",)


def expect(value: Any, kind: type, what: str) -> None:
    """One error when an argument is not of the ``kind`` a run takes (swapped arguments, a path or
    a built model where a spec goes), instead of an AttributeError inside the run."""
    if not isinstance(value, kind):
        raise SimpoolBenchError(f"{what}: expected {kind.__name__}, got {type(value).__module__}.{type(value).__qualname__}")


def _formats(formats: Sequence[str] | str) -> Sequence[str]:
    """``formats`` as a sequence; a string is a comma list, as ``--formats`` takes it ('json,md')."""
    return [f.strip() for f in formats.split(",") if f.strip()] if isinstance(formats, str) else formats


def _unread_data_fields(d: DataSpec, task: str) -> None:
    unread = unread_data_fields(d, task)
    if unread:
        name = unread[0]
        raise SimpoolBenchError(
            f"DataSpec.{name} = {getattr(d, name)!r}: {task} does not read it (it reads dataset, data, split, label, "
            f"{', '.join(DATA_FIELDS_READ[task])}); drop it"
        )


def _check_output(out: Any, formats: Any, what: str) -> None:
    """``out`` and ``formats`` refused before the run, not when its table is written (which lost the run)."""
    from .results.store import export_format

    if out is not None:
        path_argument(out, f"{what}: out", "a folder", none_too=True)
    if not isinstance(formats, (str, Sequence)):
        raise SimpoolBenchError(f"{what}: formats {formats!r}: expected a sequence or a comma list of {', '.join(EXPORT_FILES)}")
    for f in _formats(formats):
        export_format(f)


def _result(outcome: tasks.Outcome, prov: Provenance, out: Path | None, formats: Sequence[str] | str, **kwargs: Any) -> RunResult:
    table, files = finish_run(outcome, prov, out, _formats(formats), **kwargs)
    extras = {**outcome.extras, "n_images": outcome.n_images, "n_failed": outcome.n_failed, "n_nonfinite": outcome.n_nonfinite}
    extras["per_image"] = per_image_of(outcome)
    return RunResult(table, files, extras)


@called_as("simpool_bench.api.run_classify")
def run_classify(
    spec: ClassifySpec, engine: EngineConfig, out: Path | None = None, formats: Sequence[str] | str = DEFAULT_FORMATS
) -> RunResult:
    """Top-1/top-5 (and DINO's weighted k-NN with ``spec.knn_train``) of the spec's model."""
    from .transforms import classification_config, eval_transform, transform_record

    expect(spec, ClassifySpec, "run_classify: spec")
    expect(engine, EngineConfig, "run_classify: engine")
    _check_output(out, formats, "run_classify")
    _unread_data_fields(spec.data, "classify")
    d = spec.data
    if d.data is None:
        raise SimpoolBenchError("--data is required (the image root of the dataset)")
    if not spec.knn_temperature > 0:  # also NaN
        raise SimpoolBenchError(f"--knn-temperature {spec.knn_temperature}: expected a number > 0 (DINO: 0.07)")
    check_chunks(spec.knn_chunks)
    if spec.knn_train is None and spec.knn_subset is not None:  # before the data is read, not once it is
        raise SimpoolBenchError("--knn-subset picks part of the k-NN memory bank: give --knn-train DIR too")
    check_before_data(engine, _with_interpolation(spec))
    records, classes = read_classification_data(d.data, d.split, d.labels, d.metadata, d.subset, default_split=spec.default_split)
    split = classification_split(d.data, d.split, d.labels, d.metadata, spec.default_split) or spec.default_split  # the folder read
    bank = _knn_bank_records(spec, classes)  # read before the model loads: a wrong bank folder fails at once
    # the data as read (labels in the folders' sorted order): the same folders give the same digests
    # whether a head relabels them in timm's class order below or not
    data_sha256 = records_sha256(records)
    knn_data_sha256 = None if bank is None else records_sha256(records, bank)
    net, ckpt = load_model(_with_interpolation(spec))
    if getattr(net, "num_classes", 0) > 0 and classes is not None and d.labels is None and d.metadata is None:
        # a head's logits are scored as timm's validate.py reads the class folders (natural_key order)
        records, timm_classes = in_timm_class_order(records, classes)
        bank = None if bank is None else in_timm_class_order(bank, classes)[0]  # the same class folders (checked)
        classes = timm_classes
    cfg = classification_config(net.data_config, spec.resize, spec.crop, spec.interpolation)
    transform = eval_transform(cfg, spec.prefetcher)
    outcome = tasks.classify(
        net,
        records,
        transform,
        engine,
        dataset=d.name,
        split=split,
        knn_train=bank,
        knn_k=spec.knn_k,
        knn_temperature=spec.knn_temperature,
        knn_chunks=spec.knn_chunks,
        bank_cache=out,
    )
    size = cfg.get("input_size", (3, 0, 0))[-1]  # the crop: --crop, else the model's
    used = transform_record(transform, cfg["mean"], cfg["std"], cfg.get("crop_pct", 0.875))
    prov = provenance(
        net,
        ckpt,
        engine,
        image_size=int(size),
        n_images=outcome.n_images,
        protocol=protocol_of(spec),
        transform=used,
        data_sha256=data_sha256,
        knn_data_sha256=knn_data_sha256,
    )
    return _result(outcome, prov, out, formats, per_class=spec.per_class, classes=classes)


def _with_interpolation(spec: ClassifySpec) -> ModelOptions:
    """The model options with the spec's ``interpolation`` in its data config too (the CLI's
    ``--interpolation`` sets both), so that the table's data-config and transform records agree."""
    chosen, model = spec.interpolation, spec.model
    if chosen is None or model.interpolation == chosen:
        return model
    if model.interpolation is not None:
        raise SimpoolBenchError(
            f"interpolation {chosen!r} (ClassifySpec) and {model.interpolation!r} (ModelOptions) differ; give one of them"
        )
    return replace(model, interpolation=chosen)


def _knn_bank_records(spec: ClassifySpec, classes: list[str] | None = None) -> list[Record] | None:
    """The k-NN memory bank's records: ``knn_train`` (ImageFolder), with ``knn_subset`` N the first
    N images of every class in sorted file order (as ``--subset``). Its class folders must be
    ``classes`` (the evaluated data's names, where it has names: not wsolevaluation metadata, not
    integer labels): k-NN compares labels by index, and another class list pairs other classes."""
    if spec.knn_train is None:  # (a knn_subset without it is refused before the data is read)
        return None
    refuse_split_folders_as_classes(Path(spec.knn_train), "--knn-train")
    try:
        bank = read_classification_data(spec.knn_train, subset=spec.knn_subset)
    except SimpoolBenchError as err:
        said = str(err)
        if said.startswith("--data "):  # the reader speaks of --data; here the folder came by --knn-train
            raise SimpoolBenchError("--knn-train " + said[len("--data ") :]) from None
        if spec.knn_subset is None or not said.startswith("subset per class"):
            raise
        raise SimpoolBenchError(f"--knn-subset {spec.knn_subset}: {err} (bank {spec.knn_train})") from None
    named = classes is not None and not (spec.data.labels is not None and classes == [str(i) for i in range(len(classes))])
    if named and bank.classes != classes:
        theirs, ours = bank.classes or [], classes or []
        i = next(i for i in range(max(len(theirs), len(ours))) if i >= len(theirs) or i >= len(ours) or theirs[i] != ours[i])
        shown = [repr(names[i]) if i < len(names) else "absent" for names in (theirs, ours)]
        raise SimpoolBenchError(
            f"--knn-train {spec.knn_train}: its class folders are not those of --data {spec.data.data} ({len(theirs)} vs "
            f"{len(ours)} classes; first difference: label {i} is {shown[0]} in the bank, {shown[1]} in --data); "
            "k-NN compares labels by class index, so both need the same classes"
        )
    return bank.records


def _check_localize(spec: LocalizeSpec) -> None:
    if spec.data.data is None:
        raise SimpoolBenchError("--data is required (the image root of the dataset)")
    if spec.data.dataset not in LOCALIZE_DATASETS:
        raise SimpoolBenchError(
            f"--dataset {spec.data.dataset!r}: localize takes {' | '.join(LOCALIZE_DATASETS)} (wsolevaluation's datasets)"
        )
    if spec.interval <= 0 or spec.interval >= 1:
        raise SimpoolBenchError(f"--interval {spec.interval}: expected a step in (0, 1), e.g. 0.001 or 0.01")
    if spec.interval < MIN_INTERVAL:  # each threshold is a contour search per image: 1e-9 ran for days, 8 GB of thresholds
        raise SimpoolBenchError(
            f"--interval {spec.interval:g}: {math.ceil(1 / spec.interval):,} thresholds; expected a step >= {MIN_INTERVAL:g} "
            "(wsolevaluation: 0.001 or 0.01)"
        )
    from .metrics.boxacc import cam_thresholds  # (imports OpenCV: not at start-up, which discover --method center keeps light)

    cam_thresholds(spec.interval)  # a NaN or float32 step: refused before the data is read, not by the run's accumulator
    if spec.cam_target not in ("gt", "pred"):
        raise SimpoolBenchError(f"--cam-target {spec.cam_target!r}: expected gt or pred")
    weights = spec.model is not None and spec.model.gives_weights
    if spec.maps is not None and (spec.baseline or weights):
        raise SimpoolBenchError("--maps needs no model: drop --model/--checkpoint/--pretrained/--baseline")
    if spec.maps is None and spec.baseline is not None and weights:
        raise SimpoolBenchError("--baseline needs no model: drop --model/--checkpoint/--pretrained")
    _no_model_options(spec.model, "--maps" if spec.maps is not None else "--baseline" if spec.baseline else None)


def check_before_data(engine: EngineConfig, model: ModelOptions | None) -> None:
    """What a run can refuse before it reads its data (which can take a while and warn about the
    data first): the engine's fields (set again since it was made: it is not frozen), the device,
    and the options of the ``model`` it will load (None: it loads none)."""
    engine.__post_init__()
    resolve_device(engine.device)
    if model is not None:
        check_model_options(model)


#: The flag of a model option where it is not ``--`` and the field's name with dashes (None: API and suite files only).
_MODEL_OPTION_FLAGS: dict[str, str | None] = {
    "arch": "--model",
    "trust": "--trust-checkpoint",
    "dino_pos_quirk": "--dino-pos-quirk/--no-dino-pos-quirk",
    "img_size": None,
    "pos_interp": None,
}
_WEIGHT_FIELDS = ("arch", "checkpoint", "pretrained", "pretrained_file")  # refused with their own message


def _no_model_options(model: ModelOptions | None, why: str | None) -> None:
    """A model option on a run that builds no model (``why``: what replaces it) is a mistake: it
    would be ignored without a word (``--random-init``, ``--prefer``, ``--pool``, ...)."""
    if why is None or model is None:
        return
    if model.random_init:
        raise SimpoolBenchError(f"--random-init: a run with {why} builds no model, so there are no weights to draw; drop --random-init")
    default = ModelOptions()
    for f in fields(ModelOptions):
        if f.name not in _WEIGHT_FIELDS and getattr(model, f.name) != getattr(default, f.name):
            flag = _MODEL_OPTION_FLAGS.get(f.name, "--" + f.name.replace("_", "-")) or f"ModelOptions.{f.name}"
            raise SimpoolBenchError(f"{flag}: a run with {why} builds no model, so it would not be used; drop {flag}")


@called_as("simpool_bench.api.run_localize")
def run_localize(
    spec: LocalizeSpec, engine: EngineConfig, out: Path | None = None, formats: Sequence[str] | str = DEFAULT_FORMATS
) -> RunResult:
    """MaxBoxAccV2 of the spec's model, of the maps stored in ``spec.maps``, or of ``spec.baseline``."""
    expect(spec, LocalizeSpec, "run_localize: spec")
    expect(engine, EngineConfig, "run_localize: engine")
    _check_output(out, formats, "run_localize")
    _unread_data_fields(spec.data, "localize")
    _check_localize(spec)
    check_before_data(engine, (spec.model or ModelOptions()) if spec.maps is None and spec.baseline is None else None)
    d = spec.data
    split = split_of(d, DATASETS["cub"].default_split)
    records = read_localization_data(d.dataset, d.data, d.metadata, split)  # type: ignore[arg-type]
    data_sha256 = records_sha256(records)
    note_unpublished(d.name, split, data_sha256, len(records), d.data, d.metadata)  # before the model loads (--data-label names other data)
    if spec.maps is not None:  # no model: the stored maps
        outcome, prov = from_maps(
            "localize",
            spec.maps,
            records,
            dataset=d.name,
            store_dataset=d.dataset,
            split=split,
            interval=spec.interval,
            v1=spec.v1,
            cam_target=spec.cam_target,
            allow_nonfinite=engine.allow_nonfinite,
            protocol=protocol_of(spec),
        )
        return _result(outcome, prov, out, formats)
    net = ckpt = None
    if spec.baseline is None:
        net, ckpt = load_model(spec.model or ModelOptions())
    outcome = tasks.localize(
        net,
        records,
        engine,
        dataset=d.name,
        split=split,
        interval=spec.interval,
        v1=spec.v1,
        baseline=spec.baseline,
        cam_target=spec.cam_target,
    )
    prov = provenance(
        net,
        ckpt,
        engine,
        image_size=WSOL.image_size,
        n_images=outcome.n_images,
        baseline=spec.baseline,
        protocol=protocol_of(spec),
        transform=map_transform_record(net, "localize"),
        data_sha256=data_sha256,
    )
    return _result(outcome, prov, out, formats)


def check_discovery_values(mass: float, k_patches: int) -> None:
    """``--mass`` in (0, 1] and ``--k-patches`` >= 1 (discover and visualize), else one error."""
    if not 0 < mass <= 1:  # also NaN
        raise SimpoolBenchError(f"--mass {mass}: expected a fraction of the attention mass in (0, 1] (DINO/LOST: 0.6)")
    if k_patches < 1:
        raise SimpoolBenchError(f"--k-patches {k_patches}: expected an integer >= 1 (LOST: 100)")


@called_as("simpool_bench.api.run_discover")
def run_discover(
    spec: DiscoverSpec, engine: EngineConfig, out: Path | None = None, formats: Sequence[str] | str = DEFAULT_FORMATS
) -> RunResult:
    """CorLoc of the spec's model (``method`` attn or lost), of stored maps, or of a no-model box."""
    expect(spec, DiscoverSpec, "run_discover: spec")
    expect(engine, EngineConfig, "run_discover: engine")
    _check_output(out, formats, "run_discover")
    _unread_data_fields(spec.data, "discover")
    d = spec.data
    if d.data is None:
        raise SimpoolBenchError("--data is required (VOC20XX folder or COCO train2014 images)")
    check_discovery_values(spec.mass, spec.k_patches)
    no_model = "--maps" if spec.maps is not None else f"--method {spec.method}" if spec.method in ("center", "full-image") else None
    _no_model_options(spec.model, no_model)
    weights = spec.model is not None and spec.model.gives_weights
    if spec.maps is not None and (spec.method != "attn" or weights):
        raise SimpoolBenchError("--maps scores stored attention maps: use --method attn, without --model/--checkpoint")
    if no_model is not None and weights:  # a no-model box would silently leave the model out
        raise SimpoolBenchError(f"{no_model} needs no model: drop --model/--checkpoint/--pretrained")
    check_before_data(engine, None if no_model else (spec.model or ModelOptions()))
    split = split_of(d, DATASETS["voc07"].default_split)
    records = read_discovery_data(d.dataset, d.data, split, d.no_hard, d.annotations, d.list_file)
    if spec.maps is not None:  # no model: the stored maps
        outcome, prov = from_maps(
            "discover",
            spec.maps,
            records,
            dataset=d.name,
            store_dataset=d.dataset,
            split=split,
            mass=spec.mass,
            lost_compat=spec.lost_compat,
            allow_nonfinite=engine.allow_nonfinite,
            protocol=protocol_of(spec),
        )
        return _result(outcome, prov, out, formats)
    net = ckpt = None
    if spec.method not in ("center", "full-image"):
        net, ckpt = load_model(spec.model or ModelOptions())
    outcome = tasks.discover(
        net,
        records,
        engine,
        dataset=d.name,
        split=split,
        method=spec.method,
        mass=spec.mass,
        lost_compat=spec.lost_compat,
        k_patches=spec.k_patches,
    )
    prov = provenance(
        net,
        ckpt,
        engine,
        image_size=None,
        n_images=outcome.n_images,
        method=spec.method,
        baseline=spec.method if net is None else None,
        protocol=protocol_of(spec),
        transform=map_transform_record(net, "discover"),
        data_sha256=records_sha256(records),
    )
    return _result(outcome, prov, out, formats)


@called_as("simpool_bench.api.run_extract")
def run_extract(spec: ExtractSpec, engine: EngineConfig, out: Path) -> RunResult:
    """The spec's model's attention maps into the map store ``out`` (resumable; see ``map_store``).
    ``RunResult.extras['report']`` is the ``extraction.ExtractReport``."""
    from .extraction import extract_maps
    from .map_store import MANIFEST_NAME, protocol_for

    expect(spec, ExtractSpec, "run_extract: spec")
    expect(engine, EngineConfig, "run_extract: engine")
    path_argument(out, "run_extract: out", "the map store's folder")
    d = spec.data
    protocol = protocol_for(d.dataset)
    split = split_of(d, DATASETS[d.dataset].default_split)
    check_before_data(engine, spec.model)
    records = read_data(d)
    net, ckpt = load_model(spec.model)
    prov = provenance(
        net,
        ckpt,
        engine,
        image_size=WSOL.image_size if protocol == "localize" else None,
        n_images=len(records),
        protocol={**protocol_of(spec), "maps_for": protocol},
        transform=map_transform_record(net, protocol),
        data_sha256=records_sha256(records),
    )
    info = {
        "dataset": d.dataset,
        "split": split,
        "data": str(d.data),
        "metadata": None if d.metadata is None else str(d.metadata),
        "provenance": asdict(prov),
    }
    rep = extract_maps(
        net,
        records,
        engine,
        out,
        info=info,
        protocol=protocol,
        dtype=spec.dtype,
        features=spec.features,
        cam_target=spec.cam_target,
        resume=spec.resume,
    )
    store = rep.store
    files = [p for s in range(store.n_shards) for p in (store.shard_path(s), store.checksum_path(s))]
    return RunResult(None, (store.root / MANIFEST_NAME, *files), {"report": rep})


@called_as("simpool_bench.api.from_maps")
def from_maps(
    kind: str, maps: Path, records: Sequence[Record], *, protocol: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[tasks.Outcome, Provenance]:
    """``localize`` or ``discover`` (method attn) scored on the maps stored by ``extract`` in
    ``maps`` instead of a model's; ``kwargs`` go to ``tasks.localize_stored``/``discover_stored``.
    The provenance is the extracting model's (from the store's manifest, its transform too) with
    this run's ``protocol`` record (default: ``specs.protocol_of`` of the parameters in ``kwargs``)."""
    from .map_store import MapStore

    if not isinstance(kind, str) or kind not in ("localize", "discover"):  # before the store is opened
        raise SimpoolBenchError(f"from_maps: kind {kind!r}, expected localize or discover")
    store = MapStore.open(path_argument(maps, "from_maps: maps", "the map store's folder"))  # 0 was a TypeError from pathlib
    if protocol is None and kind in ("localize", "discover"):
        protocol = _stored_protocol(kind, maps, kwargs, store.manifest)
    if kind == "localize":
        outcome = tasks.localize_stored(store, records, **kwargs)
        method = None
    else:
        outcome = tasks.discover_stored(store, records, **kwargs)
        method = "attn"
    return outcome, stored_provenance(
        store, n_images=outcome.n_images, method=method, protocol=protocol, data_sha256=records_sha256(records)
    )


def _stored_protocol(kind: str, maps: Path, kwargs: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The protocol record of ``from_maps`` called without one: the spec's defaults with the
    parameters ``kwargs`` give; a CAM store's ``cam_target`` where none is given (the CAMs are of
    the class they were extracted for)."""
    data = DataSpec(str(kwargs.get("dataset", "")))
    given = {k: v for k, v in kwargs.items() if v is not None}
    from .map_store import holds_cams

    if holds_cams(manifest) and manifest.get("cam_target") in ("gt", "pred"):
        given.setdefault("cam_target", manifest["cam_target"])
    if kind == "localize":
        return protocol_of(LocalizeSpec(data, maps=maps, **{k: given[k] for k in ("interval", "v1", "cam_target") if k in given}))
    return protocol_of(DiscoverSpec(data, maps=maps, **{k: given[k] for k in ("mass", "lost_compat") if k in given}))
