"""One box per image for unsupervised object discovery (CorLoc), as LOST (Simeoni et al., BMVC 2021).

Boxes are (x0, y0, x1, y1) int64 in pixels of the original (unpadded) image, exclusive max, as
LOST's ``detect_box``/``dino_seg`` produce them: patch-grid extents times the stride.

- ``boxes_from_attention``: DINO's "keep 60% of the attention mass" mask (``visualize_attention.py``,
  reused by LOST's ``dino_seg``), then the largest 4-connected component.
- ``boxes_lost``: LOST's seed selection / seed expansion / ``detect_box`` on last-block keys.
- ``center_boxes``, ``full_image_boxes``: model-free baselines.

Exactness notes:
- every sort is LOST's own op, called the way LOST calls it, on the device the tensors are on:
  ``torch.argsort(-degree as float32, descending=True)`` on one image's (N,) degrees (LOST
  ``patch_scoring``) and ``torch.sort`` of each (N,) attention row (``dino_seg``). Neither is stable:
  the tie order is the device's (on CPU, ``std::sort``: stable up to 16 elements, not beyond; CUDA
  has its own). Degrees are integer counts, so ties are the rule and decide seeds; a box therefore
  equals LOST's run on the same kind of device, and the tie order of a number is that of the
  device given by ``--device``: ``evaluate.discover`` runs ``attention_mass_mask`` and
  ``lost_seed_maps`` (the sort-dependent halves) on the model's device, the component halves
  (``boxes_from_masks``, ``boxes_from_seed_maps``; scipy, as LOST) on the host.
- the similarity of one image is ``(f @ f^T)`` of its own (1, N, d) keys, as LOST computes it.
- connected components are 4-connected (``scipy.ndimage.label``'s default, as LOST); labels are
  numbered in row-major order of each component's first patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import SimpoolBenchError

#: DINO ``visualize_attention.py`` / LOST ``dino_seg``: keep the patches holding 60% of the mass.
DINO_ATTENTION_MASS = 0.6
#: LOST ``main_lost.py --k_patches``: lowest-degree patches considered at seed expansion.
LOST_K_PATCHES = 100
#: LOST ``main_lost.py --dinoseg_head``: the head of the CLS row ``dino_seg`` boxes by default.
LOST_DINOSEG_HEAD = 4


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``scipy.ndimage.label`` (4-connected), imported on first use: ``--method center`` needs no scipy."""
    import scipy.ndimage

    return scipy.ndimage.label(mask)


# ------------------------------------------------------------------------------------ validation
def _as_hw(value: object, n: int, name: str) -> np.ndarray:
    """(n, 2) positive int64 array from a (2,) pair (broadcast) or an (n, 2) array."""
    arr = np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value)
    if arr.ndim == 1 and arr.shape == (2,):
        arr = np.broadcast_to(arr, (n, 2))
    if arr.shape != (n, 2):
        raise SimpoolBenchError(f"{name}: expected shape ({n}, 2) (height, width per image), got {arr.shape}")
    if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) or np.any(arr != np.floor(arr)):
        raise SimpoolBenchError(f"{name}: expected integer sizes, got {arr.dtype} values {arr.tolist()[:4]}")
    out = arr.astype(np.int64)
    if np.any(out < 1):
        raise SimpoolBenchError(f"{name}: expected sizes >= 1, got {out[(out < 1).any(axis=1)][0].tolist()}")
    return out


def _check_stride(stride: int) -> int:
    if isinstance(stride, bool) or int(stride) != stride or int(stride) < 1:
        raise SimpoolBenchError(f"stride: expected a positive integer, got {stride!r}")
    return int(stride)


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    """float32 (the references' dtype) unless the input is float64."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------------------------ pure steps
def attention_mass_mask(maps: torch.Tensor, mass: float = DINO_ATTENTION_MASS) -> torch.Tensor:
    """DINO's mass rule on flattened maps (G, N) -> bool (G, N), row by row, on the maps' device.

    Sort each row ascending with ``torch.sort`` (LOST ``dino_seg``'s op: not stable, so equal
    values come in the device's order), divide by the row's sum, cumulative sum, keep where
    ``cumsum > 1 - mass``; i.e. the smallest set of patches holding ``mass`` of the total, the
    same float ops as DINO ``visualize_attention.py``. A row summing to 0 (or with NaN) keeps nothing.
    """
    val, idx = torch.sort(maps, dim=1)
    val = val / torch.sum(val, dim=1, keepdim=True)
    keep_sorted = torch.cumsum(val, dim=1) > (1 - mass)
    keep = torch.empty_like(keep_sorted)
    keep.scatter_(1, idx, keep_sorted)
    return keep


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) patch extents of a non-empty boolean grid, max exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def largest_component_extent(mask: np.ndarray, lost_compat: bool = False) -> tuple[int, int, int, int]:
    """Patch extent (x0, y0, x1, y1) of the largest 4-connected component of a boolean grid.

    Default: the truly largest component; between equal sizes the one whose first patch comes
    first in row-major order (the lowest ``scipy.ndimage.label`` label). An empty mask gives the
    whole grid.

    ``lost_compat=True`` is LOST ``dino_seg``'s selection: the sizes of labels
    ``range(max(labels))`` are compared, so the last label is never chosen; with one component
    label 0 (the background) is chosen. Where that selects no patch (LOST would fail on an empty
    ``min``) the whole grid is returned.
    """
    labels, n = _label(mask)
    if n == 0:
        return 0, 0, mask.shape[1], mask.shape[0]
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    if not lost_compat:
        chosen = int(np.argmax(sizes[1:])) + 1
    elif n == 1:
        chosen = 0
    else:
        chosen = int(np.argmax(sizes[1:n])) + 1
    sel = labels == chosen
    if not sel.any():
        return 0, 0, mask.shape[1], mask.shape[0]
    return _bounds(sel)


def _scale_clip(ext: tuple[int, int, int, int], stride: int, hw: np.ndarray | None) -> list[int]:
    x0, y0, x1, y1 = (int(v) * stride for v in ext)
    if hw is None:
        return [x0, y0, x1, y1]
    h, w = int(hw[0]), int(hw[1])
    return [min(x0, w), min(y0, h), min(x1, w), min(y1, h)]


# ------------------------------------------------------------------------------------ attention
def boxes_from_attention(
    attn: torch.Tensor,
    image_hw: np.ndarray | Sequence[Sequence[int]],
    stride: int,
    mass: float = DINO_ATTENTION_MASS,
    lost_compat: bool = False,
    valid_hw: np.ndarray | Sequence[Sequence[int]] | None = None,
    clip: bool | None = None,
) -> np.ndarray:
    """One box per attention map (DINO mass mask + largest 4-connected component; LOST ``dino_seg``).

    Args:
        attn: (B, gh, gw) patch attention maps (e.g. one head's CLS row), possibly on a grid padded
            beyond each image's own grid.
        image_hw: (B, 2) unpadded image height, width in pixels (or one (2,) pair for all).
        stride: patch size in pixels.
        mass: fraction of the attention mass kept (0.6 in DINO/LOST).
        lost_compat: reproduce ``dino_seg``'s component choice (skips the last label; see
            ``largest_component_extent``) and, unless ``clip`` says otherwise, its unclipped box.
        valid_hw: (B, 2) grid of each image's own patches; default ``ceil(image_hw / stride)``,
            LOST's grid for an image zero-padded right/bottom to a multiple of ``stride``. The map
            is cropped to it *before* the mass rule: patches outside it take no part at all.
        clip: clip the box to the image (default: ``not lost_compat``; LOST ``dino_seg`` does not
            clip, so its box can reach into the < ``stride`` pixels of zero padding).

    Returns:
        (B, 4) int64 boxes (x0, y0, x1, y1), pixels, max exclusive.
    """
    if not isinstance(attn, torch.Tensor) or attn.ndim != 3:
        raise SimpoolBenchError(f"attn: expected a (B, gh, gw) tensor, got {getattr(attn, 'shape', type(attn))}")
    if not (0.0 < float(mass) <= 1.0):
        raise SimpoolBenchError(f"mass: expected a fraction in (0, 1], got {mass!r}")
    stride = _check_stride(stride)
    b = attn.shape[0]
    hw = _as_hw(image_hw, b, "image_hw")
    grid = -(-hw // stride) if valid_hw is None else _as_hw(valid_hw, b, "valid_hw")
    over = (grid[:, 0] > attn.shape[1]) | (grid[:, 1] > attn.shape[2])
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise SimpoolBenchError(
            f"attn: image {i} needs a {grid[i, 0]}x{grid[i, 1]} patch grid (image {hw[i, 0]}x{hw[i, 1]}, "
            f"stride {stride}) but the map is {attn.shape[1]}x{attn.shape[2]}"
        )
    work = attn.detach().to(dtype=_work_dtype(attn))
    out = np.zeros((b, 4), dtype=np.int64)
    keys = [tuple(g) for g in grid.tolist()]
    for gh, gw in sorted(set(keys)):
        members = [i for i, k in enumerate(keys) if k == (gh, gw)]
        rows = work[members, :gh, :gw].reshape(len(members), gh * gw).contiguous()
        masks = attention_mass_mask(rows, mass).cpu().numpy().reshape(len(members), gh, gw)
        out[members] = boxes_from_masks(masks, hw[members], stride, lost_compat=lost_compat, clip=clip)
    return out


def boxes_from_masks(
    masks: np.ndarray, image_hw: np.ndarray, stride: int, lost_compat: bool = False, clip: bool | None = None
) -> np.ndarray:
    """The host half of ``boxes_from_attention``: (B, gh, gw) boolean mass masks (each image's own
    grid) -> (B, 4) int64 boxes (largest 4-connected component, times ``stride``; ``lost_compat``
    and ``clip`` as there)."""
    do_clip = (not lost_compat) if clip is None else bool(clip)
    out = np.zeros((len(masks), 4), dtype=np.int64)
    for i, mask in enumerate(masks):
        ext = largest_component_extent(np.asarray(mask, dtype=bool), lost_compat=lost_compat)
        out[i] = _scale_clip(ext, stride, image_hw[i] if do_clip else None)
    return out


# ------------------------------------------------------------------------------------ LOST
def lost_degree_order(similarity: torch.Tensor) -> torch.Tensor:
    """LOST ``patch_scoring``: patches by increasing degree, (N,) indices of one image's (N, N)
    similarity, or (B, N) for (B, N, N), each image sorted on its own.

    The degree of a patch is its number of *other* patches with a positive similarity (diagonal
    and negative entries dropped). The order is LOST's op on the similarity's device,
    ``torch.argsort(-degree.float(), descending=True)`` on the (N,) vector: equal degrees come in
    that op's (unstable) tie order, exactly as in LOST.
    """
    if similarity.ndim == 3:
        if len(similarity) == 0:
            return torch.zeros((0, similarity.shape[1]), dtype=torch.long, device=similarity.device)
        return torch.stack([lost_degree_order(s) for s in similarity])
    positive = similarity > 0
    positive.fill_diagonal_(False)
    cent = -torch.sum(positive, dim=1).type(torch.float32)
    return torch.argsort(cent, descending=True)


def boxes_lost(
    keys: torch.Tensor,
    grid_hw: np.ndarray | Sequence[int] | Sequence[Sequence[int]],
    image_hw: np.ndarray | Sequence[Sequence[int]],
    stride: int,
    k_patches: int = LOST_K_PATCHES,
) -> np.ndarray:
    """LOST boxes (``object_discovery.lost`` + ``detect_box``) from last-block patch keys.

    Per image, on the keys' device: similarity A = K K^T of that image's (1, N, d) keys; seed = the
    lowest-degree patch (LOST's own sort, see ``lost_degree_order``); the seed is expanded with the
    patches among the ``k_patches`` lowest-degree ones that have a positive similarity to it; the
    box is the extent of the 4-connected component of ``sum of their A rows > 0`` that holds the
    seed, times ``stride``, its max clipped to the image (LOST's ``initial_im_size``).

    Args:
        keys: (B, N, d) key features of the patch tokens only (no CLS/register), heads
            concatenated, as LOST takes them from the last block's ``qkv`` output. Computed on the
            keys' device in float32 (float64 kept).
        grid_hw: the patch grid (gh, gw), gh * gw = N; one pair, or (B, 2) all equal to it. LOST
            runs each image on its own grid (padded to a multiple of the stride only): batch only
            images of the same padded size.
        image_hw: (B, 2) unpadded image height, width in pixels.
        stride: patch size in pixels.
        k_patches: LOST's k (100).

    Returns:
        (B, 4) int64 boxes. Where LOST raises (the seed's expanded map is not positive, e.g. a zero
        key), the seed patch's own box is returned.
    """
    if not isinstance(keys, torch.Tensor) or keys.ndim != 3:
        raise SimpoolBenchError(f"keys: expected a (B, N, d) tensor, got {getattr(keys, 'shape', type(keys))}")
    if isinstance(k_patches, bool) or int(k_patches) != k_patches or int(k_patches) < 1:
        raise SimpoolBenchError(f"k_patches: expected a positive integer, got {k_patches!r}")
    stride = _check_stride(stride)
    b, n, _ = keys.shape
    grids = _as_hw(grid_hw, b, "grid_hw")
    gh, gw = (int(v) for v in grids[0]) if b else (0, 0)
    if b and (np.any(grids != grids[0]) or gh * gw != n):
        raise SimpoolBenchError(
            f"grid_hw: expected one (gh, gw) grid with gh*gw = N = {n} for the batch, got {np.unique(grids, axis=0).tolist()}"
        )
    hw = _as_hw(image_hw, b, "image_hw")
    out = np.zeros((b, 4), dtype=np.int64)
    if b == 0:
        return out

    seeds, positive = lost_seed_maps(keys, k_patches)
    return boxes_from_seed_maps(seeds, positive, (gh, gw), hw, stride)


def lost_seed_maps(keys: torch.Tensor, k_patches: int = LOST_K_PATCHES) -> tuple[torch.Tensor, torch.Tensor]:
    """The sort-dependent half of ``boxes_lost``, on the keys' device, image by image as LOST:
    A = K K^T of the image's (1, N, d) keys, the seed (LOST's degree order, ``lost_degree_order``)
    and ``sum of the similar patches' A rows > 0`` cast as LOST's ``detect_box`` does.

    Returns (seeds (B,) int64, positive (B, N) bool), on the keys' device."""
    feats = keys.detach().to(_work_dtype(keys))
    seeds, expanded = [], []
    with torch.no_grad():
        for i in range(len(feats)):
            f = feats[i : i + 1]
            a = (f @ f.transpose(1, 2))[0]
            order = lost_degree_order(a)
            seed = order[0]
            pot = order[: int(k_patches)]
            similars = pot[a[seed, pot] > 0.0]
            expanded.append(torch.sum(a[similars, :], dim=0))
            seeds.append(seed)
        if not seeds:
            return (
                torch.zeros(0, dtype=torch.long, device=keys.device),
                torch.zeros((0, keys.shape[1]), dtype=torch.bool, device=keys.device),
            )
        # LOST's detect_box casts the map to float32 (``.float()``) before ``> 0``
        return torch.stack(seeds), torch.stack(expanded).float() > 0.0


def boxes_from_seed_maps(
    seeds: torch.Tensor | np.ndarray, positive: torch.Tensor | np.ndarray, grid_hw: Sequence[int], image_hw: np.ndarray, stride: int
) -> np.ndarray:
    """The host half of ``boxes_lost`` (LOST ``detect_box``): the extent of the 4-connected
    component of each (gh, gw) positive map holding its seed, times ``stride``, max clipped to the
    image; the seed patch's own box where the seed is not positive (LOST raises there)."""
    gh, gw = (int(v) for v in grid_hw)
    seeds_np = np.asarray(seeds.cpu() if isinstance(seeds, torch.Tensor) else seeds).reshape(-1)
    pos = np.asarray(positive.cpu() if isinstance(positive, torch.Tensor) else positive).reshape(-1, gh, gw)
    out = np.zeros((len(seeds_np), 4), dtype=np.int64)
    for i in range(len(seeds_np)):
        labels, _ = _label(pos[i])
        sy, sx = divmod(int(seeds_np[i]), gw)
        cc = labels[sy, sx]
        ext = _bounds(labels == cc) if cc != 0 else (sx, sy, sx + 1, sy + 1)
        x0, y0, x1, y1 = (v * stride for v in ext)
        out[i] = [x0, y0, min(x1, int(image_hw[i][1])), min(y1, int(image_hw[i][0]))]
    return out


# ------------------------------------------------------------------------------------ baselines
#: Side of the centered baseline box, as a fraction of the image side.
CENTER_BOX_FRACTION = 0.5


def center_boxes(image_hw: np.ndarray | Sequence[Sequence[int]], fraction: float = CENTER_BOX_FRACTION) -> np.ndarray:
    """Centered boxes covering ``fraction`` of each side (model-free baseline), (B, 4) int64.

    Symmetric integer box: x0 = floor(W * (1 - fraction) / 2), x1 = W - x0 (same for y), so the
    box is at least ``fraction`` of each side and exactly centered.
    """
    hw = np.asarray(image_hw)
    hw = _as_hw(hw, hw.shape[0] if hw.ndim == 2 else 1, "image_hw")
    if not (0.0 < float(fraction) <= 1.0):
        raise SimpoolBenchError(f"fraction: expected a value in (0, 1], got {fraction!r}")
    y0 = np.floor(hw[:, 0] * (1.0 - fraction) / 2.0).astype(np.int64)
    x0 = np.floor(hw[:, 1] * (1.0 - fraction) / 2.0).astype(np.int64)
    return np.stack([x0, y0, hw[:, 1] - x0, hw[:, 0] - y0], axis=1)


def full_image_boxes(image_hw: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """The whole image (0, 0, W, H) per image (model-free baseline), (B, 4) int64."""
    hw = np.asarray(image_hw)
    hw = _as_hw(hw, hw.shape[0] if hw.ndim == 2 else 1, "image_hw")
    zeros = np.zeros(len(hw), dtype=np.int64)
    return np.stack([zeros, zeros, hw[:, 1], hw[:, 0]], axis=1)
