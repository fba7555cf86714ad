"""The registry's protocol records agree with the constants the numeric code uses, and its
dataset records with the readers and manifests."""

from __future__ import annotations

from simpool_bench import discovery, registry, transforms
from simpool_bench.metrics import boxacc, classification, corloc


def test_protocol_records_match_the_numeric_modules():
    assert registry.WSOL.image_size == transforms.WSOL_IMAGE_SIZE
    assert registry.WSOL.iou_thresholds == boxacc.WSOL_IOU_THRESHOLDS
    assert registry.WSOL.interval == boxacc.WSOL_CAM_CURVE_INTERVAL
    assert registry.LOST.mass == discovery.DINO_ATTENTION_MASS
    assert registry.LOST.k_patches == discovery.LOST_K_PATCHES
    assert registry.LOST.dinoseg_head == discovery.LOST_DINOSEG_HEAD
    assert registry.LOST.iou == corloc.CORLOC_IOU_THRESHOLD
    assert registry.LOST.eps == corloc.LOST_IOU_EPS
    assert (registry.DINO_KNN.ks, registry.DINO_KNN.temperature) == (classification.DINO_KNN_KS, classification.DINO_KNN_TEMPERATURE)
    for proto in (registry.WSOL, registry.LOST, registry.DINO_KNN):
        assert (proto.mean, proto.std) == (transforms.IMAGENET_MEAN, transforms.IMAGENET_STD)


def test_one_split_name_per_dataset_everywhere():
    from simpool_bench import api
    from simpool_bench.map_store import protocol_for

    assert registry.DATASETS["coco20k"].default_split == "train"  # LOST: COCO20k is a subset of train2014
    for name, record in registry.DATASETS.items():
        assert api.DEFAULT_SPLITS[name] == record.default_split
        assert protocol_for(name) == record.protocol
