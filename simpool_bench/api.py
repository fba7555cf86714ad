"""The importable API behind every command: describe a run with frozen specs, run it, get a
table (and the files written) back. The CLI and the demo call exactly these functions.

    >>> from simpool_bench import api
    >>> data = api.DataSpec("cub", data=images, metadata=metadata)          # wsolevaluation layout
    >>> model = api.ModelOptions(arch="vit_tiny_patch16_224", num_classes=3, img_size=64, random_init=True)
    >>> engine = api.EngineConfig(device="cpu", batch_size=4, workers=0, progress=False)
    >>> result = api.run_localize(api.LocalizeSpec(data, model=model), engine, out=out)
    >>> result.table.query("metric == 'maxboxacc_v2'")["value"].between(0, 100).item()
    True
    >>> sorted(p.name for p in result.files)                               # every file written in out
    ['boxacc_curve.csv', 'per_image.parquet', 'results.csv', 'results.json', 'results.manifest.json', 'results.parquet']
    >>> rows = result.extras["per_image"]                                   # one row per image
    >>> 100.0 * int(rows["hit_50"].sum()) / len(rows) == result.table.query("metric == 'maxboxacc' and iou_threshold == 50")["value"].item()
    True
    >>> saved = api.read_run(out)                                            # the table as written (not pandas.read_csv)
    >>> saved["value"].tolist() == result.table["value"].tolist() and api.check(saved, out).passed
    True
    >>> chance = api.run_localize(api.LocalizeSpec(data, baseline="center-gaussian"), engine)
    >>> chance.table.loc[chance.table.metric == "n_images", "value"].item() == len(api.read_localization_data("cub", images, metadata))
    True

``load_model(ModelOptions(checkpoint=...))`` builds a model from a checkpoint file alone and returns
``(model in eval mode, loaded checkpoint or None)``. A ``ModelOptions`` field left out (``UNSET``)
takes the checkpoint's or the default value; ``gamma=None`` means "no gamma", not "default".
``EngineConfig()`` defaults differ from the CLI's: ``workers=0`` and no resume folder (the CLI:
min(8, cores) workers and ``OUT/.shards``). ``formats`` takes a sequence or a comma list ('json,md').

Tables: ``read_run`` (a results file or run folder; use it rather than ``pandas.read_csv``, which
guesses the column types), ``read_baseline``, ``compare``, ``check`` and ``load_tolerances``, as
the ``compare`` and ``check`` commands use them.

Every mistake a user can make (a wrong path, value or kind of argument) raises
``SimpoolBenchError``, one message naming it.

Metrics on your own maps and boxes: ``BoxAccumulator`` (MaxBoxAcc; the GT boxes in 224x224 pixels,
0..224, ``resize_boxes_wsol`` maps them there from the image's size, as wsolevaluation does; a box
outside is refused) and ``CorLocAccumulator`` (LOST's CorLoc); ``update`` per batch, ``compute`` at
the end (with no image: BoxAccumulator raises, CorLocAccumulator gives NaN). Images as
localize feeds them to a model: ``wsol_transform(mean, std)`` (wsolevaluation's Resize to 224x224,
bilinear, no crop; the model's mean and std, ``model.data_config``), not timm's eval transform,
which crops and gives other numbers; the map is ``model(images).attn`` (B, h, w). The lower
layers (``tasks``: one object per protocol; ``engine``; ``metrics``) are importable too.
"""

from __future__ import annotations

from .engine import EngineConfig
from .errors import SimpoolBenchError
from .loading import load_model
from .metrics.boxacc import BoxAccumulator
from .metrics.boxes import resize_boxes_wsol
from .metrics.corloc import CorLocAccumulator
from .readers import (
    DEFAULT_SPLITS,
    read_classification_data,
    read_data,
    read_discovery_data,
    read_image_files,
    read_localization_data,
    read_map_data,
)
from .results import check, compare, load_tolerances, read_baseline, read_run
from .runs import from_maps, run_classify, run_discover, run_extract, run_localize
from .specs import ClassifySpec, DataSpec, DiscoverSpec, ExtractSpec, LocalizeSpec, ModelOptions, RunResult
from .transforms import wsol_transform
from .unset import UNSET

__all__ = [
    "DEFAULT_SPLITS",
    "UNSET",
    "BoxAccumulator",
    "CorLocAccumulator",
    "check",
    "compare",
    "load_tolerances",
    "read_baseline",
    "read_run",
    "resize_boxes_wsol",
    "ClassifySpec",
    "DataSpec",
    "DiscoverSpec",
    "EngineConfig",
    "ExtractSpec",
    "LocalizeSpec",
    "ModelOptions",
    "RunResult",
    "SimpoolBenchError",
    "from_maps",
    "load_model",
    "read_classification_data",
    "read_data",
    "read_discovery_data",
    "read_image_files",
    "read_localization_data",
    "read_map_data",
    "run_classify",
    "run_discover",
    "run_extract",
    "run_localize",
    "wsol_transform",
]
