"""Test oracle: literal, one-image-at-a-time re-implementations of valeoai/LOST's box code.

Written from LOST's ``object_discovery.py`` (``lost``, ``patch_scoring``, ``detect_box``,
``dino_seg``) and ``datasets.py`` (``bbox_iou``, the x1y1x2y2 IoU branch), step for step in the same
tensor ops, dtypes and sort calls (``torch.argsort(cent, descending=True)``, ``torch.sort``: not
stable, so ties come in the device's order, as in LOST). No shortcut, no batching.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
import torch


def lost(feats, dims, scales, init_image_size, k_patches=100):
    """LOST on one image: feats (1, N, d); dims (w_featmap, h_featmap) = (grid rows, grid cols)."""
    A = (feats @ feats.transpose(1, 2)).squeeze()
    sorted_patches, scores = patch_scoring(A)
    seed = sorted_patches[0]
    potentials = sorted_patches[:k_patches]
    similars = potentials[A[seed, potentials] > 0.0]
    M = torch.sum(A[similars, :], dim=0)
    pred, _ = detect_box(M, seed, dims, scales=scales, initial_im_size=init_image_size[1:])
    return np.asarray(pred), A, scores, seed


def patch_scoring(M, threshold=0.0):
    """Inverse degree: patches sorted by increasing number of positive similarities."""
    A = M.clone()
    A.fill_diagonal_(0)
    A[A < 0] = 0
    cent = -torch.sum(A > threshold, dim=1).type(torch.float32)  # noqa: SIM300 (reference text; A is a tensor, not a constant)
    sel = torch.argsort(cent, descending=True)
    return sel, cent


def detect_box(A, seed, dims, initial_im_size=None, scales=None):
    """Box of the connected component of ``A > 0`` holding the seed."""
    w_featmap, h_featmap = dims
    correl = A.reshape(w_featmap, h_featmap).float()
    labeled_array, num_features = scipy.ndimage.label(correl.cpu().numpy() > 0.0)
    cc = labeled_array[np.unravel_index(seed.cpu().numpy(), (w_featmap, h_featmap))]
    if cc == 0:
        raise ValueError("The seed is in the background component.")
    mask = np.where(labeled_array == cc)
    ymin, ymax = min(mask[0]), max(mask[0]) + 1
    xmin, xmax = min(mask[1]), max(mask[1]) + 1
    r_xmin, r_xmax = scales[1] * xmin, scales[1] * xmax
    r_ymin, r_ymax = scales[0] * ymin, scales[0] * ymax
    pred = [r_xmin, r_ymin, r_xmax, r_ymax]
    if initial_im_size:
        pred[2] = min(pred[2], initial_im_size[1])
        pred[3] = min(pred[3], initial_im_size[0])
    pred_feats = [ymin, xmin, ymax, xmax]
    return pred, pred_feats


def dino_seg(attentions, dims, patch_size, head=0, official_th=0.6):
    """DINO-seg box on one image; ``attentions`` is the CLS row per head, (nh, N) (LOST's
    ``attn[0, :, 0, 1:].reshape(nh, -1)``). Raises ValueError where LOST fails (empty mask)."""
    w_featmap, h_featmap = dims
    nh = attentions.shape[0]
    attentions = attentions.clone()
    val, idx = torch.sort(attentions)
    val /= torch.sum(val, dim=1, keepdim=True)
    cumval = torch.cumsum(val, dim=1)
    th_attn = cumval > (1 - official_th)
    idx2 = torch.argsort(idx)
    for h in range(nh):
        th_attn[h] = th_attn[h][idx2[h]]
    th_attn = th_attn.reshape(nh, w_featmap, h_featmap).float()
    labeled_array, num_features = scipy.ndimage.label(th_attn[head].cpu().numpy())
    size_components = [np.sum(labeled_array == c) for c in range(np.max(labeled_array))]
    if len(size_components) > 1:
        biggest_component = np.argmax(size_components[1:]) + 1
    else:
        biggest_component = 0
    mask = np.where(labeled_array == biggest_component)
    ymin, ymax = min(mask[0]), max(mask[0]) + 1
    xmin, xmax = min(mask[1]), max(mask[1]) + 1
    r_xmin, r_xmax = xmin * patch_size, xmax * patch_size
    r_ymin, r_ymax = ymin * patch_size, ymax * patch_size
    return [r_xmin, r_ymin, r_xmax, r_ymax]


def dino_seg_mask(attentions, dims, head=0, official_th=0.6):
    """The thresholded mask of ``dino_seg`` (its first half), (w_featmap, h_featmap) bool."""
    w_featmap, h_featmap = dims
    nh = attentions.shape[0]
    val, idx = torch.sort(attentions.clone())
    val /= torch.sum(val, dim=1, keepdim=True)
    cumval = torch.cumsum(val, dim=1)
    th_attn = cumval > (1 - official_th)
    idx2 = torch.argsort(idx)
    for h in range(nh):
        th_attn[h] = th_attn[h][idx2[h]]
    return th_attn.reshape(nh, w_featmap, h_featmap)[head].cpu().numpy()


def bbox_iou(box1, box2, eps=1e-7):
    """LOST ``bbox_iou`` (x1y1x2y2 IoU): box1 (4,), box2 (n, 4) tensors."""
    box2 = box2.T
    b1_x1, b1_y1, b1_x2, b1_y2 = box1[0], box1[1], box1[2], box1[3]
    b2_x1, b2_y1, b2_x2, b2_y2 = box2[0], box2[1], box2[2], box2[3]
    inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * (torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)).clamp(0)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    return inter / union


def corloc_hit(pred, gt_bbxs):
    """LOST ``main_lost.py``: ``torch.any(bbox_iou(pred, gt) >= 0.5)`` on int64 numpy boxes."""
    ious = bbox_iou(torch.from_numpy(pred), torch.from_numpy(gt_bbxs))
    return bool(torch.any(ious >= 0.5))


# ------------------------------------------------------------------------------ main_lost.py, end to end
# LOST ``datasets.py``: the transform applied to every image.
LOST_TRANSFORM_MEAN = (0.485, 0.456, 0.406)
LOST_TRANSFORM_STD = (0.229, 0.224, 0.225)


def lost_voc_dataset(root, year="2007", image_set="trainval"):
    """LOST ``datasets.Dataset`` for VOC: torchvision's ``VOCDetection`` (``root`` holds
    ``VOCdevkit/VOC<year>``) with LOST's transform. Images are read by torchvision's loader,
    ``Image.open(path).convert("RGB")``: no EXIF rotation."""
    import torchvision
    from torchvision import transforms as pth_transforms

    transform = pth_transforms.Compose([pth_transforms.ToTensor(), pth_transforms.Normalize(LOST_TRANSFORM_MEAN, LOST_TRANSFORM_STD)])
    return torchvision.datasets.VOCDetection(root, year=year, image_set=image_set, transform=transform, download=False)


def extract_gt_voc(targets, remove_hards=False):
    """LOST ``extract_gt_VOC``."""
    objects = targets["annotation"]["object"]
    nb_obj = len(objects)
    gt_bbxs = []
    gt_clss = []
    for o in range(nb_obj):
        if remove_hards and (objects[o]["truncated"] == "1" or objects[o]["difficult"] == "1"):
            continue
        gt_clss.append(objects[o]["name"])
        obj = objects[o]["bndbox"]
        x1y1x2y2 = [int(obj["xmin"]), int(obj["ymin"]), int(obj["xmax"]), int(obj["ymax"])]
        x1y1x2y2[0] -= 1
        x1y1x2y2[1] -= 1
        gt_bbxs.append(x1y1x2y2)
    return np.asarray(gt_bbxs), gt_clss


def select_coco_20k(sel_file, all_annotations_file, out_file):
    """LOST ``select_coco_20k``: the instances json of the listed images (written to ``out_file``,
    LOST's ``datasets/instances_train2014_sel20k.json``)."""
    import json

    with open(all_annotations_file) as f:
        train2014 = json.load(f)
    with open(sel_file) as f:
        sel_20k = f.readlines()
        sel_20k = [s.replace("\n", "") for s in sel_20k]
    im20k = [str(int(s.split("_")[-1].split(".")[0])) for s in sel_20k]
    new_anno = []
    new_images = []
    for i in im20k:
        new_anno.extend([a for a in train2014["annotations"] if a["image_id"] == int(i)])
        new_images.extend([a for a in train2014["images"] if a["id"] == int(i)])
    train2014_20k = {"images": new_images, "annotations": new_anno, "categories": train2014["categories"]}
    with open(out_file, "w") as outfile:
        json.dump(train2014_20k, outfile)


def lost_coco20k_dataset(image_dir, sel_file, all_annotations_file, annfile):
    """LOST ``datasets.Dataset`` for COCO20k: ``select_coco_20k`` then torchvision's ``CocoDetection``
    (``image_dir`` = ``train2014``; images sorted by id, ``Image.open(path).convert("RGB")``) with
    LOST's transform."""
    import torchvision
    from torchvision import transforms as pth_transforms

    select_coco_20k(sel_file, all_annotations_file, annfile)
    transform = pth_transforms.Compose([pth_transforms.ToTensor(), pth_transforms.Normalize(LOST_TRANSFORM_MEAN, LOST_TRANSFORM_STD)])
    return torchvision.datasets.CocoDetection(str(image_dir), annFile=str(annfile), transform=transform)


def extract_gt_coco(targets, remove_iscrowd=True):
    """LOST ``extract_gt_COCO``."""
    objects = targets
    nb_obj = len(objects)
    gt_bbxs = []
    gt_clss = []
    for o in range(nb_obj):
        if remove_iscrowd and objects[o]["iscrowd"] == 1:
            continue
        gt_clss.append(objects[o]["category_id"])
        bbx = objects[o]["bbox"]
        x1y1x2y2 = [bbx[0], bbx[1], bbx[0] + bbx[2], bbx[1] + bbx[3]]
        x1y1x2y2 = [int(round(x)) for x in x1y1x2y2]
        gt_bbxs.append(x1y1x2y2)
    return np.asarray(gt_bbxs), gt_clss


def get_model_vit_small(state_dict, device, patch_size=16, depth=12):
    """LOST ``networks.get_model`` for ``vit_small`` (``depth``: a shallower copy of the same layout)."""
    return get_model("vit_small", state_dict, device, patch_size, depth=depth)


def get_model(arch, state_dict, device, patch_size=16, **kw):
    """LOST ``networks.get_model`` for a ViT ``--arch`` (``vit_small``, ``vit_base``) and
    ``--patch_size``: ``vits.__dict__[arch](patch_size=patch_size, num_classes=0)`` (DINO's), the
    backbone state dict LOST downloads for that pair (here: given) loaded strictly, eval, on ``device``."""
    import dino_reference as vits

    model = vits.__dict__[arch](patch_size=patch_size, num_classes=0, **kw)
    for p in model.parameters():
        p.requires_grad = False
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    model.to(device)
    return model


def main_lost(dataset, model, device, patch_size=16, dinoseg=False, dinoseg_head=4, k_patches=100, no_hard=False, coco=False):
    """The per-image loop of LOST ``main_lost.py`` (ViT, ``--which_features k``), line for line:
    returns ({image name: pred box}, corloc in percent). ``coco``: COCO20k (``lost_coco20k_dataset``),
    where LOST names an image ``str(image_id)`` and reads its GT with ``extract_gt_COCO``."""
    preds_dict = {}
    cnt = 0
    corloc = np.zeros(len(dataset))
    for im_id, inp in enumerate(dataset):
        img = inp[0]
        init_image_size = img.shape
        im_name = str(inp[1][0]["image_id"]) if coco else inp[1]["annotation"]["filename"]
        if im_name is None:
            continue
        size_im = (img.shape[0], int(np.ceil(img.shape[1] / patch_size) * patch_size), int(np.ceil(img.shape[2] / patch_size) * patch_size))
        paded = torch.zeros(size_im)
        paded[:, : img.shape[1], : img.shape[2]] = img
        img = paded
        img = img.to(device, non_blocking=True)
        w_featmap = img.shape[-2] // patch_size
        h_featmap = img.shape[-1] // patch_size

        gt_bbxs, gt_cls = extract_gt_coco(inp[1], remove_iscrowd=True) if coco else extract_gt_voc(inp[1], remove_hards=no_hard)
        if gt_bbxs is not None and gt_bbxs.shape[0] == 0 and no_hard:
            continue

        with torch.no_grad():
            feat_out = {}

            def hook_fn_forward_qkv(module, input, output):
                feat_out["qkv"] = output  # noqa: B023 (reference text; the hook runs within this iteration)

            handle = model._modules["blocks"][-1]._modules["attn"]._modules["qkv"].register_forward_hook(hook_fn_forward_qkv)
            attentions = model.get_last_selfattention(img[None, :, :, :])
            handle.remove()
            scales = [patch_size, patch_size]
            nb_im = attentions.shape[0]
            nh = attentions.shape[1]
            nb_tokens = attentions.shape[2]
            if dinoseg:
                pred = dino_seg(attentions[0, :, 0, 1:].reshape(nh, -1), (w_featmap, h_featmap), patch_size, head=dinoseg_head)
                pred = np.asarray(pred)
            else:
                qkv = feat_out["qkv"].reshape(nb_im, nb_tokens, 3, nh, -1 // nh).permute(2, 0, 3, 1, 4)
                q, k, v = qkv[0], qkv[1], qkv[2]  # noqa: F841 (reference text)
                k = k.transpose(1, 2).reshape(nb_im, nb_tokens, -1)
                feats = k[:, 1:, :]

        if not dinoseg:
            pred, A, scores, seed = lost(feats, [w_featmap, h_featmap], scales, init_image_size, k_patches=k_patches)

        preds_dict[im_name] = pred
        ious = bbox_iou(torch.from_numpy(pred), torch.from_numpy(gt_bbxs))
        if torch.any(ious >= 0.5):
            corloc[im_id] = 1
        cnt += 1
    return preds_dict, 100 * np.sum(corloc) / cnt
