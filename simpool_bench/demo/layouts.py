"""Demo layouts: the rendered demo images written as every dataset layout the tool reads (ImageFolder,
CUB native, wsolevaluation metadata, VOC07, COCO20k), in a fixed order (see ``demo.data`` for the
box conventions of each)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .scenes import DEMO_CLASSES, DEMO_DATA_VERSION, SPLIT_CODES, DemoImage

CROWD_PROB = 0.3  # a multi-object discovery image gets an extra iscrowd=1 COCO annotation
COCO_ID_RANGE = (1, 581930)  # COCO train2014 ids lie in this range
CUB_SPLIT_FLAG = {"train": 1, "test": 0}


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", newline="\n")
    else:
        path.write_bytes(data)


def _file_name(img: DemoImage) -> str:
    return f"{DEMO_CLASSES[img.label]}_{img.split}_{img.index:05d}.jpg"


def _cub_folder(label: int) -> str:
    return f"{label + 1:03d}.{DEMO_CLASSES[label]}"


def _write_imagefolder(root: Path, images: list[DemoImage]) -> None:
    for img in images:
        _write(root / DEMO_CLASSES[img.label] / _file_name(img), img.jpeg)


def _write_cub(cub_root: Path, train: list[DemoImage], test: list[DemoImage]) -> dict[str, list[tuple[str, DemoImage]]]:
    """CUB-200-2011 native files; images numbered 1.. in (class folder, file name) order."""
    entries = sorted(((f"{_cub_folder(img.label)}/{_file_name(img)}", img) for img in train + test), key=lambda e: e[0])
    lines: dict[str, list[str]] = {"images": [], "labels": [], "split": [], "boxes": []}
    for n, (rel, img) in enumerate(entries, start=1):
        _write(cub_root / "images" / rel, img.jpeg)
        x0, y0, x1, y1 = img.objects[0].box
        lines["images"].append(f"{n} {rel}")
        lines["labels"].append(f"{n} {img.label + 1}")
        lines["split"].append(f"{n} {CUB_SPLIT_FLAG[img.split]}")
        lines["boxes"].append(f"{n} {float(x0)} {float(y0)} {float(x1 - x0)} {float(y1 - y0)}")
    files = {"images.txt": "images", "image_class_labels.txt": "labels", "train_test_split.txt": "split", "bounding_boxes.txt": "boxes"}
    for name, key in files.items():
        _write(cub_root / name, "\n".join(lines[key]) + "\n")
    _write(cub_root / "classes.txt", "".join(f"{i + 1} {_cub_folder(i)}\n" for i in range(len(DEMO_CLASSES))))
    by_split: dict[str, list[tuple[str, DemoImage]]] = {"train": [], "test": []}
    for rel, img in entries:
        by_split[img.split].append((rel, img))
    return by_split


def _write_wsol(meta_dir: Path, entries: list[tuple[str, DemoImage]]) -> None:
    """wsolevaluation metadata: image_ids, class_labels (0-based), image_sizes, localization."""
    ids, labels, sizes, boxes = [], [], [], []
    for rel, img in sorted(entries, key=lambda e: e[1].index):
        ids.append(rel)
        labels.append(f"{rel},{img.label}")
        sizes.append(f"{rel},{img.width},{img.height}")
        boxes += [f"{rel},{o.box[0]},{o.box[1]},{o.box[2]},{o.box[3]}" for o in img.objects]
    for name, lines in (("image_ids.txt", ids), ("class_labels.txt", labels), ("image_sizes.txt", sizes), ("localization.txt", boxes)):
        _write(meta_dir / name, "\n".join(lines) + "\n")


def _voc_xml(image_id: str, img: DemoImage) -> str:
    objs = []
    for o in img.objects:
        x0, y0, x1, y1 = o.box
        objs.append(
            "\t<object>\n"
            f"\t\t<name>{DEMO_CLASSES[o.label]}</name>\n"
            "\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>{int(o.truncated)}</truncated>\n"
            f"\t\t<difficult>{int(o.difficult)}</difficult>\n"
            "\t\t<bndbox>\n"
            f"\t\t\t<xmin>{x0 + 1}</xmin>\n\t\t\t<ymin>{y0 + 1}</ymin>\n"
            f"\t\t\t<xmax>{x1 + 1}</xmax>\n\t\t\t<ymax>{y1 + 1}</ymax>\n"
            "\t\t</bndbox>\n"
            "\t</object>\n"
        )
    return (
        "<annotation>\n"
        "\t<folder>VOC2007</folder>\n"
        f"\t<filename>{image_id}.jpg</filename>\n"
        "\t<source>\n\t\t<database>simpool-bench demo</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{img.width}</width>\n\t\t<height>{img.height}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        "\t<segmented>0</segmented>\n" + "".join(objs) + "</annotation>\n"
    )


def _write_voc(voc_root: Path, images: list[DemoImage], split: str) -> None:
    ids = []
    for img in images:
        image_id = f"{img.index + 1:06d}"
        ids.append(image_id)
        _write(voc_root / "JPEGImages" / f"{image_id}.jpg", img.jpeg)
        _write(voc_root / "Annotations" / f"{image_id}.xml", _voc_xml(image_id, img))
    _write(voc_root / "ImageSets" / "Main" / f"{split}.txt", "\n".join(ids) + "\n")


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _write_coco(coco_root: Path, discovery: list[DemoImage], extra: list[DemoImage], seed: int) -> tuple[Path, Path, Path]:
    """train2014 images, instances json (discovery + extra images) and the 20k-style list (discovery)."""
    rng = np.random.default_rng([int(seed), 99])
    all_images = discovery + extra
    ids = rng.choice(np.arange(*COCO_ID_RANGE), size=len(all_images), replace=False)
    image_dir = coco_root / "train2014"
    images_json, anns, listed = [], [], []
    ann_id = 1
    for img, image_id in zip(all_images, ids):
        image_id = int(image_id)
        name = f"COCO_train2014_{image_id:012d}.jpg"
        _write(image_dir / name, img.jpeg)
        images_json.append({"id": image_id, "file_name": name, "width": img.width, "height": img.height, "license": 1})
        if img.split == "discovery":
            listed.append(f"train2014/{name}")
        for o in img.objects:
            x0, y0, x1, y1 = o.box
            anns.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": o.label + 1,
                    "iscrowd": 0,
                    "area": float(o.area),
                    "bbox": [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)],
                    "segmentation": _rle(o.mask),
                }
            )
            ann_id += 1
        # a crowd region over all objects of some multi-object images (LOST removes iscrowd boxes)
        crowd_rng = np.random.default_rng([int(seed), 98, img.index, SPLIT_CODES[img.split]])
        if len(img.objects) > 1 and crowd_rng.random() < CROWD_PROB:
            union = np.logical_or.reduce([o.mask for o in img.objects])
            ys, xs = np.nonzero(union)
            anns.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": img.objects[0].label + 1,
                    "iscrowd": 1,
                    "area": float(union.sum()),
                    "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
                    "segmentation": _rle(union),
                }
            )
            ann_id += 1
    doc = {
        "info": {"description": "simpool-bench demo data (COCO train2014 layout)", "version": str(DEMO_DATA_VERSION)},
        "licenses": [{"id": 1, "name": "scikit-image sample data (see skimage/data/README)", "url": ""}],
        "images": images_json,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": c, "supercategory": "demo"} for i, c in enumerate(DEMO_CLASSES)],
    }
    ann_file = coco_root / "annotations" / "instances_train2014.json"
    _write(ann_file, json.dumps(doc, separators=(",", ":")))
    list_file = coco_root / "coco_20k_filenames.txt"
    _write(list_file, "\n".join(listed) + "\n")
    return image_dir, ann_file, list_file
