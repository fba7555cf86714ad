"""End to end: ``simpool-bench discover`` (default flags) against LOST's own pipeline on the same images
and the same seeded DINO ViT-S/16 weights.

The reference is ``lost_reference.main_lost`` (LOST ``main_lost.py``'s per-image loop: torchvision
``VOCDetection`` reading, ToTensor + ImageNet Normalize, zero padding to the patch size, DINO's
``VisionTransformer`` with its ``interpolate_pos_encoding``, the qkv hook for the keys, ``lost`` and
``dino_seg`` head 4) over ``dino_reference`` (DINO's ``vision_transformer.py``); it shares no code
with simpool_bench. COCO20k goes through LOST's COCO path (``select_coco_20k``, torchvision
``CocoDetection``, ``extract_gt_COCO``) the same way (``test_discover_coco20k_equals_main_lost``). The weights are saved as DINO publishes them (a bare backbone state dict) and as
a DINO training checkpoint (teacher/student); both must give LOST's every box and CorLoc, for
``--method lost`` and for ``--method attn --lost-compat``. The other DINO ViTs main_lost.py runs
(ViT-S/8, ViT-B/16, ViT-B/8: ``test_discover_other_archs_equal_main_lost``) are bare backbone files
under DINO's own names, on small images of odd sizes. The reference runs on the device LOST
picks (CUDA when available), which is also ``--device auto``'s.

The case is built to tell LOST's behaviour from its look-alikes (``test_case_catches_each_departure_from_lost``
checks that on the reference itself): trained-like smooth position embeddings as large as the
patch embeddings, on grids that all differ from 14x14 (DINO's ``interpolate_pos_encoding`` versus
timm's antialiased resampling), pairs of identical objects whose patches tie in integer degree on
grids beyond 16 patches (``torch.argsort``'s tie order versus a stable sort), and head 4 versus
the head mean; annotations whose ``<size>`` is not their image's (``WRONG_SIZES``: LOST never reads it). ``torch.sort``'s tie order in ``dino_seg`` needs exactly equal attention values,
which real position embeddings do not give: ``test_discovery``'s tie tests cover it.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import dino_reference
import lost_reference as ref
from conftest import invoke_cli

pytestmark = pytest.mark.usefixtures("one_thread")

# (width, height, PIL mode, EXIF orientation, kind): non-square, odd sizes, grayscale, CMYK, an
# EXIF-rotated JPEG (LOST does not rotate it), several padded sizes, two images per padded size
# (batched together by discover), grids from 3x4 to 15x20 patches (beyond LOST's k = 100 and
# beyond the 16 elements up to which a CPU sort is stable), all resampling the 14x14 position grid.
# kind "blobs": 1-2 bright boxes on noise; "twins": two identical grey objects on a flat
# background, aligned to the patch grid: their patches have equal integer degrees, so LOST's seed
# (and its box: the left or the right object) is decided by the sort's tie order.
IMAGES = [
    (97, 75, "RGB", None, "blobs"),
    (99, 77, "RGB", None, "blobs"),
    (61, 47, "L", None, "blobs"),
    (47, 61, "RGB", None, "blobs"),
    (130, 101, "CMYK", None, "blobs"),
    (131, 99, "RGB", 6, "blobs"),
    (200, 150, "RGB", None, "blobs"),
    (177, 41, "L", None, "blobs"),
    (161, 123, "RGB", 8, "blobs"),
    (33, 49, "CMYK", None, "blobs"),
    (320, 240, "RGB", None, "twins"),
    (317, 236, "L", None, "twins"),
    (288, 224, "RGB", None, "twins"),
    (250, 186, "CMYK", None, "twins"),
    (256, 256, "RGB", None, "twins"),
    (224, 160, "RGB", None, "twins"),
]


def _blobs(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, list]:
    """1-2 bright blobs on noise, and their VOC boxes (1-based, inclusive)."""
    arr = rng.integers(0, 100, size=(h, w, 3), dtype=np.uint8)
    boxes = []
    for _ in range(1 + int(rng.integers(0, 2))):
        bw, bh = int(rng.integers(w // 4, w * 3 // 4)), int(rng.integers(h // 4, h * 3 // 4))
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        arr[y0 : y0 + bh, x0 : x0 + bw] = rng.integers(140, 256, size=3, dtype=np.uint8)
        boxes.append((x0 + 1, y0 + 1, x0 + bw, y0 + bh))
    return arr, boxes


def _twins(w: int, h: int, patch: int = 16) -> tuple[np.ndarray, list]:
    """Two identical light-grey objects (a quarter of the width, a third of the height, on whole
    patches) at the left and right edges of a flat dark-grey background, and their VOC boxes."""
    arr = np.full((h, w, 3), 40, dtype=np.uint8)
    gw, gh = w // patch, h // patch
    bw, bh = max(1, gw // 4), max(1, gh // 3)
    boxes = []
    for cx in (0, gw - bw):
        x0, y0 = cx * patch, (gh // 3) * patch
        arr[y0 : y0 + bh * patch, x0 : x0 + bw * patch] = 220
        boxes.append((x0 + 1, y0 + 1, x0 + bw * patch, y0 + bh * patch))
    return arr, boxes


def _image(rng: np.random.Generator, w: int, h: int, mode: str, orientation: int | None, kind: str, patch: int = 16) -> tuple[bytes, list]:
    """A JPEG of the given kind (twins on a ``patch`` grid), and its VOC boxes (1-based, inclusive)."""
    arr, boxes = _blobs(rng, w, h) if kind == "blobs" else _twins(w, h, patch)
    im = Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    im.save(buf, format="JPEG", quality=92, **kw)
    return buf.getvalue(), boxes


# Annotations whose <size> is not their image's (index: listed width, height): LOST never reads
# <size> (it pads, boxes and clips on the decoded image), so neither may discover.
WRONG_SIZES = {0: (137, 95), 7: (220, 64), 12: (300, 240)}


def build_voc(root: Path, seed: int = 0, images: list = IMAGES, wrong_sizes: dict = WRONG_SIZES, patch: int = 16) -> Path:
    """``root/VOCdevkit/VOC2007`` (the layout torchvision's VOCDetection reads) of ``images``, some
    ``<size>``s wrong (``wrong_sizes``), twins on a ``patch`` grid; returns the VOC2007 folder."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    ids = []
    for i, (w, h, mode, orient, kind) in enumerate(images):
        image_id = f"{2007_000100 + i:06d}"
        data, boxes = _image(rng, w, h, mode, orient, kind, patch)
        (voc / "JPEGImages" / f"{image_id}.jpg").write_bytes(data)
        objects = "".join(
            f"<object><name>thing</name><truncated>0</truncated><difficult>{int(j == 1)}</difficult>"
            f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for j, (x0, y0, x1, y1) in enumerate(boxes)
        )
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{wrong_sizes.get(i, (w, h))[0]}</width>"
            f"<height>{wrong_sizes.get(i, (w, h))[1]}</height>"
            f"<depth>3</depth></size>{objects}</annotation>"
        )
        ids.append(image_id)
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids) + "\n")
    return voc


def smooth_position_field(g: torch.Generator, side: int, dim: int, waves: int = 4) -> torch.Tensor:
    """(1, side*side, dim) position embeddings like a trained ViT's: every channel a smooth 2-D
    field (a sum of ``waves`` random plane waves of at most 1.5 periods across the grid), std 1."""
    y, x = torch.meshgrid(torch.arange(side).float(), torch.arange(side).float(), indexing="ij")
    field = torch.zeros(side, side, dim)
    for _ in range(waves):
        fy, fx = (torch.rand(2, dim, generator=g) * 2 - 1) * 1.5 * 2 * math.pi / side
        phase = torch.rand(dim, generator=g) * 2 * math.pi
        field += torch.cos(y[..., None] * fy + x[..., None] * fx + phase)
    return (field / field.std()).reshape(1, side * side, dim)


def seeded_dino_vits16(seed: int = 0) -> dict[str, torch.Tensor]:
    """A DINO ViT-S/16 state dict (``seeded_dino_vit``)."""
    return seeded_dino_vit("vit_small", 16, seed)


def seeded_dino_vit(arch: str, patch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A DINO ``arch``/``patch_size`` state dict (DINO's own model, full depth, trained at 224: a
    (224 / patch)^2 position grid) with seeded weights under which both the image content and the
    position drive the keys: smooth position embeddings (std 0.5) as large as the patch embeddings
    of the images (patch projection std 0.02 at patch 16, times 16 / patch: the same embedding size
    from fewer pixels), so that how they are resampled to each grid changes boxes, as with trained
    DINO weights. Block weights: std 0.03 at ViT-S's width 384, times 384 / width (ViT-B's blocks
    at 0.03 swamp the embeddings: LOST then boxes every image whole)."""
    torch.manual_seed(seed)
    model = dino_reference.__dict__[arch](patch_size=patch_size)
    g = torch.Generator().manual_seed(seed)
    block_std = 0.03 * (384 / model.embed_dim)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "pos_embed":
                p[:, 1:] = smooth_position_field(g, 224 // patch_size, p.shape[-1]) * 0.5
                p[:, :1] = torch.randn(1, 1, p.shape[-1], generator=g) * 0.5
            elif name == "cls_token":
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * (0.02 * (16 / patch_size) if name.startswith("patch_embed") else block_std))
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)
    return {k: v.clone() for k, v in model.state_dict().items()}


def save_dino_files(sd: dict[str, torch.Tensor], folder: Path) -> tuple[Path, Path]:
    """The ViT-S/16 weights as DINO publishes them (bare backbone) and as a training checkpoint
    (``save_dino_training``)."""
    backbone = folder / "dino_deitsmall16_pretrain.pth"
    torch.save(sd, backbone)
    return backbone, save_dino_training(sd, folder / "checkpoint.pth", "vit_small", 16)


def save_dino_training(sd: dict[str, torch.Tensor], path: Path, arch: str, patch_size: int) -> Path:
    """``sd`` as ``main_dino.py`` saves a training checkpoint of ``--arch arch --patch_size
    patch_size``: teacher/student MultiCropWrapper dicts with ``backbone.``/``head.``, the student
    under DDP's ``module.``, with other weights than the teacher (``sd``): each tensor plus noise of
    its own spread, far enough that the student's boxes differ for every arch (a shift of 0.01 left
    ViT-S/8's boxes as they were)."""
    width = sd["cls_token"].shape[-1]
    head = {
        "head.mlp.0.weight": torch.randn(32, width),
        "head.mlp.0.bias": torch.zeros(32),
        "head.last_layer.weight_g": torch.ones(64, 1),
        "head.last_layer.weight_v": torch.randn(64, 32),
    }
    teacher = {**{f"backbone.{k}": v for k, v in sd.items()}, **head}
    noise = torch.Generator().manual_seed(7)
    student = {f"module.{k}": v + v.float().std().nan_to_num(1.0) * torch.randn(v.shape, generator=noise) for k, v in teacher.items()}
    args = argparse.Namespace(arch=arch, patch_size=patch_size, out_dim=64, norm_last_layer=True)
    torch.save(
        {"student": student, "teacher": teacher, "optimizer": {}, "epoch": 100, "args": args, "dino_loss": {"center": torch.zeros(1, 64)}},
        path,
    )
    return path


@pytest.fixture(scope="module")
def lost_case(tmp_path_factory):
    """The VOC folder, the two weight files, LOST's own predictions for both methods, and what
    LOST needs to run again (model, dataset, device)."""
    root = tmp_path_factory.mktemp("lost_e2e")
    voc = build_voc(root)
    sd = seeded_dino_vits16()
    files = save_dino_files(sd, root)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")  # main_lost.py's rule
    model = ref.get_model_vit_small(torch.load(files[0], map_location="cpu", weights_only=True), device)
    dataset = ref.lost_voc_dataset(root)
    expected = {"lost": ref.main_lost(dataset, model, device), "attn": ref.main_lost(dataset, model, device, dinoseg=True, dinoseg_head=4)}
    return voc, files, expected, (model, dataset, device)


def run_discover(
    monkeypatch, tmp_path: Path, voc: Path, ckpt: Path, *flags: str, data: tuple = (), name=lambda image_id: image_id + ".jpg"
) -> tuple[dict[str, list[int]], float]:
    """``simpool-bench discover`` through the CLI; the boxes are read off ``evaluate.discover``'s
    ``on_boxes`` hook (the run itself is the command's own), keyed by ``name(record.image_id)``
    (LOST's image name). ``data``: the dataset arguments (default: VOC07 in ``voc``)."""
    from simpool_bench import tasks as ev

    boxes: dict[str, list[int]] = {}
    original = ev.discover

    def spy(model, records, config, **kw):
        def on_boxes(idx, b, hits):
            for i, box in zip(idx, b):
                boxes[name(records[i].image_id)] = [int(v) for v in box]

        return original(model, records, config, on_boxes=on_boxes, **kw)

    monkeypatch.setattr(ev, "discover", spy)
    out = tmp_path / "out"
    data = data or ("--dataset", "voc07", "--data", voc)
    res = invoke_cli("discover", *data, "--checkpoint", ckpt, "--out", out, *flags)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "results.csv")
    assert (table.pos_interp == "dino").all()  # provenance: DINO's own position interpolation
    assert (table.cls_head == 4).all() if "--lost-compat" in flags else table.cls_head.isna().all()
    return boxes, float(table.loc[table.metric == "corloc", "value"].iloc[0])


@pytest.mark.parametrize("which", [0, 1], ids=["dino-backbone", "dino-teacher-student"])
@pytest.mark.parametrize("method", ["lost", "attn"])
def test_discover_equals_main_lost(lost_case, monkeypatch, tmp_path, which, method):
    voc, files, expected, _ = lost_case
    flags = ("--method", "lost") if method == "lost" else ("--method", "attn", "--lost-compat")
    boxes, corloc = run_discover(monkeypatch, tmp_path, voc, files[which], *flags)
    want_boxes, want_corloc = expected[method]
    assert boxes == {k: [int(v) for v in b] for k, b in want_boxes.items()}
    assert corloc == pytest.approx(want_corloc, abs=1e-9)


# COCO20k (index: width, height, PIL mode, kind): sides under the patch size (a 1-patch row or
# column), a 17-pixel side (one pixel row into a second patch row), a VOC/COCO-like 481x353 (713
# patches, beyond k = 100), greyscale and CMYK, twins (tied degrees).
COCO_IMAGES = [
    (300, 10, "RGB", "blobs"),
    (10, 300, "L", "blobs"),
    (17, 300, "RGB", "blobs"),
    (300, 17, "CMYK", "blobs"),
    (481, 353, "RGB", "blobs"),
    (353, 481, "RGB", "twins"),
    (250, 186, "L", "twins"),
    (97, 75, "RGB", "blobs"),
]


def build_coco20k(root: Path, seed: int = 1) -> tuple[Path, Path, Path]:
    """A COCO train2014 layout: images, ``instances_train2014.json`` and a 20k-style list of all but
    one of its images (the unlisted one annotated too). Boxes are the blobs'/twins' with fractional
    corners (x + w at .5: Python's round, half to even), and every other image has a crowd
    annotation over the whole image, which LOST drops (a full-image box would hit it). Every listed
    image keeps a non-crowd box (LOST fails on an image without one). Returns (train2014, json, list)."""
    rng = np.random.default_rng(seed)
    image_dir = root / "coco" / "train2014"
    image_dir.mkdir(parents=True)
    images, anns = [], []
    for k, (w, h, mode, kind) in enumerate([*COCO_IMAGES, (64, 48, "RGB", "blobs")]):
        image_id = 9000 + 37 * k
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        data, boxes = _image(rng, w, h, mode, None, kind)
        (image_dir / file_name).write_bytes(data)
        images.append({"file_name": file_name, "height": h, "width": w, "id": image_id})
        for x0, y0, x1, y1 in boxes:  # VOC's 1-based inclusive corners -> COCO [x, y, w, h]
            bx, by = x0 - 1 + 0.5, y0 - 1 + 0.25
            anns.append({"image_id": image_id, "bbox": [bx, by, x1 - 0.5 - bx, y1 + 0.25 - by], "iscrowd": 0, "category_id": 1})
        if k % 2:
            anns.append({"image_id": image_id, "bbox": [0.0, 0.0, float(w), float(h)], "iscrowd": 1, "category_id": 1})
    for n, a in enumerate(anns, start=1):
        a.update(id=n, area=a["bbox"][2] * a["bbox"][3], segmentation=[[0.0, 0.0, 1.0, 0.0, 1.0, 1.0]])
    ann_file = root / "coco" / "annotations" / "instances_train2014.json"
    ann_file.parent.mkdir()
    categories = [{"id": 1, "name": "thing", "supercategory": "thing"}]
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    list_file = root / "coco" / "coco_20k_filenames.txt"
    list_file.write_text("".join(f"train2014/{im['file_name']}\n" for im in images[::-1][1:]))
    return image_dir, ann_file, list_file


@pytest.mark.parametrize("method", ["lost", "attn"])
def test_discover_coco20k_equals_main_lost(lost_case, monkeypatch, tmp_path, method):
    """COCO20k end to end: ``discover --dataset coco20k`` against LOST's own COCO path
    (``select_coco_20k``, torchvision ``CocoDetection``, ``extract_gt_COCO``: crowds dropped,
    ``int(round())``) on the same weights: every box and the CorLoc, for both LOST modes."""
    _, files, _, (model, _, device) = lost_case
    image_dir, ann_file, list_file = build_coco20k(tmp_path)
    dataset = ref.lost_coco20k_dataset(image_dir, list_file, ann_file, tmp_path / "instances_train2014_sel20k.json")
    want_boxes, want_corloc = ref.main_lost(dataset, model, device, dinoseg=method == "attn", dinoseg_head=4, coco=True)
    assert len(want_boxes) == len(COCO_IMAGES)
    flags = ("--method", "lost") if method == "lost" else ("--method", "attn", "--lost-compat")
    data = ("--dataset", "coco20k", "--data", image_dir, "--annotations", ann_file, "--list", list_file)
    boxes, corloc = run_discover(monkeypatch, tmp_path, image_dir, files[0], *flags, data=data, name=lambda f: str(int(f[-16:-4])))
    assert boxes == {k: [int(v) for v in b] for k, b in want_boxes.items()}
    assert corloc == pytest.approx(want_corloc, abs=1e-9)
    assert 0 < want_corloc < 100 or method == "attn"


# Small odd sizes (no side a multiple of 8), grids from 4x3 (stride 16) to 21x16 patches (stride 8:
# beyond k = 100 and the 16 elements of a stable CPU sort), all resampling the position grid down,
# greyscale and CMYK, blobs on noise and twins on the model's patch grid (tied degrees: LOST's box
# is the left or the right one). ``ARCH_UPSAMPLED``: a grid beyond the trained one (16x15 at stride
# 16, 32x30 at stride 8), left out for ViT-B/8 (960 tokens through ViT-B: seconds a pass on 2 cores).
ARCH_IMAGES = [
    (61, 45, "RGB", None, "blobs"),
    (83, 50, "L", None, "twins"),
    (75, 101, "CMYK", None, "twins"),
    (131, 99, "RGB", None, "twins"),
    (163, 123, "RGB", None, "twins"),
    (99, 77, "RGB", None, "blobs"),
]
ARCH_UPSAMPLED = [(249, 233, "RGB", None, "twins")]
# The other DINO ViTs main_lost.py runs (``--arch vit_small --patch_size 8``, ``--arch vit_base
# --patch_size 16|8``): (arch, patch size, the file names DINO publishes it under (LOST's
# networks.get_model downloads the first), the timm model discover must read off the file alone
# (no --model): a bare backbone, the weight seed: one under which timm's position resampling
# gives other boxes than DINO's, see test_arch_case_is_not_degenerate; ViT-S/8 seed 0 does not,
# the images).
ARCH_CASES = [
    (
        "vit_small",
        8,
        ("dino_deitsmall8_300ep_pretrain.pth", "dino_deitsmall8_pretrain.pth"),
        "vit_small_patch8_224",
        3,
        ARCH_IMAGES + ARCH_UPSAMPLED,
    ),
    ("vit_base", 16, ("dino_vitbase16_pretrain.pth",), "vit_base_patch16_224", 0, ARCH_IMAGES + ARCH_UPSAMPLED),
    ("vit_base", 8, ("dino_vitbase8_pretrain.pth",), "vit_base_patch8_224", 0, ARCH_IMAGES + ARCH_UPSAMPLED),
]


@pytest.fixture(scope="module", params=ARCH_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def lost_arch_case(request, tmp_path_factory):
    """``lost_case`` for another DINO ViT: the VOC folder of its images, the backbone file(s),
    LOST's own predictions (``networks.get_model(arch, patch_size)``, ``main_lost`` with that
    ``--patch_size``) for both methods, the timm name, and what LOST needs to run again."""
    arch, patch, names, timm_name, seed, images = request.param
    root = tmp_path_factory.mktemp(f"lost_{arch}{patch}")
    voc = build_voc(root, images=images, wrong_sizes={}, patch=patch)
    sd = seeded_dino_vit(arch, patch, seed)
    files = [root / n for n in names]
    for f in files:
        torch.save(sd, f)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model = ref.get_model(arch, torch.load(files[0], map_location="cpu", weights_only=True), device, patch_size=patch)
    dataset = ref.lost_voc_dataset(root)
    expected = {
        "lost": ref.main_lost(dataset, model, device, patch_size=patch),
        "attn": ref.main_lost(dataset, model, device, patch_size=patch, dinoseg=True, dinoseg_head=4),
    }
    yield voc, files, expected, timm_name, (model, dataset, device, patch, images)
    for f in files:  # ViT-B weights are 344 MB a file: not left in pytest's kept temp folders
        f.unlink()


@pytest.mark.parametrize("method", ["lost", "attn"])
def test_discover_other_archs_equal_main_lost(lost_arch_case, monkeypatch, tmp_path, method):
    """ViT-S/8, ViT-B/16, ViT-B/8 backbone files as DINO publishes them: ``discover`` (arch and
    patch size from the file alone) gives LOST's every box and CorLoc for both LOST modes (the
    ViT-S/8 weights under both of DINO's names: one per mode)."""
    voc, files, expected, timm_name, _ = lost_arch_case
    flags = ("--method", "lost") if method == "lost" else ("--method", "attn", "--lost-compat")
    ckpt = files[-1] if method == "attn" else files[0]
    boxes, corloc = run_discover(monkeypatch, tmp_path, voc, ckpt, *flags)
    assert (pd.read_csv(tmp_path / "out" / "results.csv").model == timm_name).all()
    want_boxes, want_corloc = expected[method]
    assert boxes == {k: [int(v) for v in b] for k, b in want_boxes.items()}
    assert corloc == pytest.approx(want_corloc, abs=1e-9)


def test_discover_other_archs_from_dino_training_checkpoints_equal_main_lost(lost_arch_case, monkeypatch, tmp_path):
    """The same weights as ``main_dino.py``'s training checkpoint of that arch (teacher/student, the
    student's weights other): ``discover`` reads the teacher, arch and patch size off the file, and
    gives LOST's every box and CorLoc on the published backbone."""
    voc, files, expected, timm_name, (model, *_rest) = lost_arch_case
    arch, patch = next((c[0], c[1]) for c in ARCH_CASES if c[3] == timm_name)
    sd = torch.load(files[0], map_location="cpu", weights_only=True)
    training = save_dino_training(sd, tmp_path / "checkpoint.pth", arch, patch)
    del sd
    try:
        boxes, corloc = run_discover(monkeypatch, tmp_path, voc, training, "--method", "lost")
        table = pd.read_csv(tmp_path / "out" / "results.csv")
    finally:
        training.unlink()  # ViT-B: teacher and student, 690 MB
    assert (table.model == timm_name).all() and (table.checkpoint_format == "official-dino").all()
    want_boxes, want_corloc = expected["lost"]
    assert boxes == {k: [int(v) for v in b] for k, b in want_boxes.items()}
    assert corloc == pytest.approx(want_corloc, abs=1e-9)


def test_arch_case_is_not_degenerate(lost_arch_case, monkeypatch):
    """Each arch's case boxes: distinct boxes, LOST boxing less than the whole image in two images at
    least, CorLoc strictly between 0 and 100 for one method at least, the two methods disagreeing somewhere, and DINO's position interpolation telling: LOST's
    own pipeline with timm's resampling instead gives other boxes for one method at least (the
    model code both share; which one moves depends on the arch)."""
    from timm.layers import resample_abs_pos_embed

    _, _, expected, _, (model, dataset, device, patch, images) = lost_arch_case
    lost_boxes, attn_boxes = expected["lost"][0], expected["attn"][0]
    assert len({tuple(b) for b in lost_boxes.values()}) > 3
    assert sum(b.tolist() != [0, 0, w, h] for b, (w, h, *_) in zip(lost_boxes.values(), images)) >= 2
    assert any(lost_boxes[k].tolist() != attn_boxes[k].tolist() for k in lost_boxes)
    assert any(0 < c < 100 for c in (expected["lost"][1], expected["attn"][1]))

    def timm_positions(x, w, h):
        side = 224 // patch
        return resample_abs_pos_embed(model.pos_embed, new_size=(w // patch, h // patch), old_size=(side, side), num_prefix_tokens=1)

    def changed(method: str) -> bool:
        got = ref.main_lost(dataset, model, device, patch_size=patch, dinoseg=method == "attn", dinoseg_head=4)[0]
        return any(b.tolist() != got[k].tolist() for k, b in expected[method][0].items())

    monkeypatch.setattr(model, "interpolate_pos_encoding", timm_positions)
    assert changed("lost") or changed("attn")


def test_case_is_not_degenerate(lost_case):
    """The fixture exercises what it claims: distinct boxes, CorLoc strictly between 0 and 100 for
    one method at least, the two methods disagreeing somewhere, and EXIF-rotated images read as stored."""
    voc, _, expected, _ = lost_case
    lost_boxes, attn_boxes = expected["lost"][0], expected["attn"][0]
    assert len({tuple(b) for b in lost_boxes.values()}) > 3
    assert any(lost_boxes[k].tolist() != attn_boxes[k].tolist() for k in lost_boxes)
    assert any(0 < c < 100 for c in (expected["lost"][1], expected["attn"][1]))
    with Image.open(voc / "JPEGImages" / "2007000105.jpg") as im:
        assert im.getexif().get(0x0112) == 6 and im.size == (131, 99)


def _stable_patch_scoring(M, threshold=0.0):
    """``lost_reference.patch_scoring`` with a stable sort (what LOST does not do)."""
    A = M.clone()
    A.fill_diagonal_(0)
    A[A < 0] = 0
    cent = -torch.sum(A > threshold, dim=1).type(torch.float32)  # noqa: SIM300 (reference text; A is a tensor, not a constant)
    return torch.argsort(cent, descending=True, stable=True), cent


def test_case_catches_each_departure_from_lost(lost_case, monkeypatch):
    """The images and weights are such that each way of departing from LOST changes boxes: LOST's
    own pipeline, run once with that change, gives other boxes than ``expected`` (and so would
    ``discover``). Departures: timm's position resampling (bicubic, antialias) instead of DINO's
    ``interpolate_pos_encoding``; a stable degree sort instead of ``torch.argsort``; the head mean
    instead of head 4 in ``dino_seg``."""
    from timm.layers import resample_abs_pos_embed

    _, _, expected, (model, dataset, device) = lost_case

    def changed(method: str) -> list[str]:
        got = ref.main_lost(dataset, model, device, dinoseg=method == "attn", dinoseg_head=4)[0]
        return [k for k, b in expected[method][0].items() if b.tolist() != got[k].tolist()]

    with monkeypatch.context() as m:

        def timm_positions(x, w, h):
            return resample_abs_pos_embed(model.pos_embed, new_size=(w // 16, h // 16), old_size=(14, 14), num_prefix_tokens=1)

        m.setattr(model, "interpolate_pos_encoding", timm_positions)
        assert changed("lost") and changed("attn")
    with monkeypatch.context() as m:
        m.setattr(ref, "patch_scoring", _stable_patch_scoring)
        if device.type == "cpu":
            assert changed("lost")
        else:  # CUDA's sort keeps tied degrees in index order (seen on an H200): a stable sort IS LOST's order there
            assert not changed("lost")
    with monkeypatch.context() as m:
        seg = ref.dino_seg
        m.setattr(ref, "dino_seg", lambda att, dims, ps, head=0: seg(att.mean(0, keepdim=True), dims, ps, head=0))
        assert changed("attn")


def test_lost_compat_head_is_lost_default_or_the_users():
    from simpool_bench.errors import SimpoolBenchError
    from simpool_bench.models import build_model
    from simpool_bench.tasks import use_lost_head

    kw = dict(img_size=32, embed_dim=48, depth=1)
    six = build_model("vit_small_patch16_224", pool="cls", variant="dino", num_heads=6, **kw)
    assert use_lost_head(six) and six.cls_head == 4  # main_lost.py --dinoseg_head default
    chosen = build_model("vit_small_patch16_224", pool="cls", variant="dino", num_heads=6, cls_head=1, **kw)
    assert not use_lost_head(chosen) and chosen.cls_head == 1
    simpool = build_model("vit_small_patch16_224", variant="dino", num_heads=6, **kw)
    assert not use_lost_head(simpool) and simpool.attn_source == "simpool"
    with pytest.raises(SimpoolBenchError, match="head 4 .* has 3 heads: pass --cls-head"):
        use_lost_head(build_model("vit_tiny_patch16_224", pool="cls", variant="dino", num_heads=3, **kw))


def test_lost_compat_head_4_needs_a_fifth_head():
    """Head 4 exists from five heads on (heads 0..4): a four-head model is refused, a five-head one
    takes it."""
    from types import SimpleNamespace

    from simpool_bench.errors import SimpoolBenchError
    from simpool_bench.tasks import use_lost_head

    with pytest.raises(SimpoolBenchError, match="has 4 heads: pass --cls-head"):
        use_lost_head(SimpleNamespace(attn_source="cls", cls_head=None, num_heads=4, arch="four"))
    five = SimpleNamespace(attn_source="cls", cls_head=None, num_heads=5, arch="five")
    assert use_lost_head(five) and five.cls_head == 4


@pytest.mark.parametrize("method", ["lost", "attn"])
def test_discover_forward_is_lost_one_image_loop(method):
    """``discover`` runs the model one image at a time, as ``main_lost.py``: what it boxes is
    bit for bit a batch-1 forward of each image, whatever the batch (on this CPU a 16-image batch
    of 2x2-patch images gives keys up to ~2e-6 away from batch 1; GPU kernels are chosen by shape)."""
    from simpool_bench.discovery import attention_mass_mask, lost_seed_maps
    from simpool_bench.models import build_model
    from simpool_bench.tasks import discover_forward

    torch.manual_seed(0)
    model = build_model(
        "vit_small_patch16_224", pool="cls", variant="dino", pos_interp="dino", fused_attn=False, depth=2, cls_head=4
    ).eval()
    for h, w in ((32, 32), (16, 48), (64, 80)):
        x = torch.randn(16, 3, h, w)
        with torch.no_grad():
            out, prep = discover_forward(model, x, method)
            for i in range(len(x)):
                one = model(x[i : i + 1], return_keys=method == "lost")
                if method == "lost":
                    assert torch.equal(out.keys[i], one.keys[0])
                    seeds, positive = lost_seed_maps(one.keys)
                    assert int(prep[0][i]) == int(seeds[0]) and torch.equal(prep[1][i], positive[0])
                else:
                    assert torch.equal(out.attn[i], one.attn[0])
                    assert torch.equal(prep[i], attention_mass_mask(one.attn.flatten(1))[0])
