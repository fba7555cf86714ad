"""Paper-ready attention figures: a row per image, a column per checkpoint or map source.

Each map is shown as the protocol sees it: upsampled to the image (bicubic, as ``plotting.heatmap_overlay``)
and min-max normalised per image, in a perceptual colour map (``inferno`` by default) with one
colour bar for the figure. Ground-truth boxes are drawn solid green, the predicted box dashed red;
every cell is captioned (image id and GT box under the image column; predicted box and IoU under
each map). For LOST columns the seed patch (cyan outline) and its expanded patches (cyan tint)
are drawn. Vector output (pdf, svg) keeps text and boxes as vectors; the images are embedded at
their own resolution. matplotlib's object API (no pyplot state).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SimpoolBenchError
from .files import atomic_write

FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf", "svg")
DEFAULT_CMAP = "inferno"
PERCEPTUAL_CMAPS: tuple[str, ...] = ("inferno", "viridis", "magma", "plasma", "cividis", "turbo")
GT_RGB = (0.10, 0.85, 0.25)
PRED_RGB = (0.95, 0.15, 0.15)
SEED_RGB = (0.0, 0.9, 1.0)
CELL_INCHES = 1.9
FONT_PT = 6.5


@dataclass
class LostPatches:
    """LOST's seed expansion on one image: the seed patch and the expanded patches (indices on
    the patch grid of ``grid_w`` columns, row-major) of patch size ``stride`` pixels."""

    seed: int
    expanded: np.ndarray
    grid_w: int
    stride: int


def normalized_map(scoremap: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The map upsampled to ``hw`` (bicubic, OpenCV) and min-max normalised (constant/NaN -> 0)."""
    import cv2

    m: np.ndarray = np.asarray(scoremap, dtype=np.float32)
    if m.ndim != 2 or m.size == 0:
        raise SimpoolBenchError(f"a score map must be 2-D (h, w); got shape {m.shape}")
    h, w = hw
    m = cv2.resize(m, (w, h), interpolation=cv2.INTER_CUBIC) if m.shape != (h, w) else m.copy()
    if not np.isfinite(m).all():
        return np.zeros_like(m)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def _box_text(box: np.ndarray | None) -> str:
    if box is None:
        return "-"
    return "(" + ", ".join(f"{float(v):g}" for v in np.asarray(box).reshape(-1)[:4]) + ")"  # COCO's boxes are fractional


def _wrap(title: str, width: int = 28) -> str:
    """A column title on up to three lines: breaks at ': ' and ' (' first, then after the last '_'
    (or space) that keeps a line within ``width`` characters."""
    lines: list[str] = []
    for part in title.replace(": ", ":\n").replace(" (", "\n(").split("\n"):
        while len(part) > width:
            cut = max(part.rfind("_", 0, width), part.rfind(" ", 0, width))
            cut = cut + 1 if cut > 0 else width
            lines.append(part[:cut].rstrip())
            part = part[cut:].lstrip()
        lines.append(part)
    return "\n".join(lines[:3])


def _rect(ax, box, color, style: str, lw: float, exclusive: bool = False) -> None:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(-1)[:4])
    # the outline runs along the outer edges of pixels x0..x1, y0..y1 (exclusive: x0..x1 - 1, at least one)
    w, h = (max(x1 - x0, 1.0), max(y1 - y0, 1.0)) if exclusive else (x1 - x0 + 1, y1 - y0 + 1)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, edgecolor=color, linestyle=style, linewidth=lw))


def _lost(ax, lp: LostPatches) -> None:
    from matplotlib.patches import Rectangle

    s = lp.stride
    for j in np.asarray(lp.expanded).reshape(-1):
        r, c = divmod(int(j), lp.grid_w)
        ax.add_patch(Rectangle((c * s - 0.5, r * s - 0.5), s, s, facecolor=SEED_RGB, alpha=0.35, edgecolor="none"))
    r, c = divmod(int(lp.seed), lp.grid_w)
    ax.add_patch(Rectangle((c * s - 0.5, r * s - 0.5), s, s, fill=False, edgecolor=SEED_RGB, linewidth=1.6))


def paper_figure(
    images: Sequence[np.ndarray],
    maps: Sequence[Sequence[np.ndarray]],
    gt_boxes: Sequence[np.ndarray],
    pred_boxes: Sequence[Sequence[np.ndarray | None]],
    ious: Sequence[Sequence[float]],
    image_ids: Sequence[str],
    titles: Sequence[str],
    out_path: str | os.PathLike,
    *,
    fmt: str = "png",
    dpi: int = 200,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.55,
    lost: Sequence[Sequence[LostPatches | None]] | None = None,
    exclusive: bool = False,
) -> Path:
    """Write the figure (module docstring) to ``out_path`` in ``fmt`` at ``dpi``.

    Args:
        images: N images (H, W, 3) uint8, as the protocol sees them.
        maps: one list per column (M) of N raw score maps.
        gt_boxes: N arrays (K, 4) of inclusive pixel boxes (``exclusive``: max exclusive, as LOST's),
            captioned as given; pred_boxes/ious: per column, per image.
        image_ids: N captions of the image column; titles: M column titles.
        lost: per column, per image, LOST's seed expansion to draw (or None).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_figure(fmt, cmap, dpi, images, maps, gt_boxes, pred_boxes, ious, image_ids, titles)
    n, m = len(images), len(maps)

    cell_w = CELL_INCHES
    row_h = [cell_w * im.shape[0] / im.shape[1] for im in images]  # each row at its image's aspect
    n_handles = 4 if lost is not None else 2
    legend_cols = n_handles if (m + 1) * CELL_INCHES >= 1.7 * n_handles else 2  # a narrow figure: two rows
    caption_h, title_h, bar_w, legend_h = 0.34, 0.36, 0.12, 0.2 * math.ceil(n_handles / legend_cols)
    any_map = any(lost is None or lost[c][r] is None for c in range(m) for r in range(n))
    fig_w = (m + 1) * cell_w + (0.55 if any_map else 0.05)
    fig_h = title_h + sum(row_h) + n * caption_h + legend_h
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    colour = colormaps[cmap]
    pad = 0.04
    top = fig_h - title_h
    for r, img in enumerate(images):
        cell_h = row_h[r]
        top -= cell_h + caption_h
        gt = np.asarray(gt_boxes[r], dtype=np.float64).reshape(-1, 4)
        for c in range(m + 1):
            left = (c * cell_w + pad) / fig_w
            bottom = (top + caption_h) / fig_h
            ax = fig.add_axes((left, bottom, (cell_w - 2 * pad) / fig_w, (cell_h - pad) / fig_h))
            cell_lost = lost[c - 1][r] if (c > 0 and lost is not None) else None
            _cell(
                ax,
                img,
                c,
                maps[c - 1][r] if c > 0 else None,
                gt,
                pred_boxes[c - 1][r] if c > 0 else None,
                ious[c - 1][r] if c > 0 else None,
                cell_lost,
                colour,
                alpha,
                exclusive,
            )
            if c == 0:
                _caption(ax, _image_caption(image_ids[r], gt))
            if r == 0:
                ax.set_title("image" if c == 0 else _wrap(str(titles[c - 1])), fontsize=FONT_PT + 1, pad=3, linespacing=1.1)
    if any_map:
        bar_rect = ((m + 1) * cell_w / fig_w + 0.05 / fig_w, (legend_h + caption_h) / fig_h, bar_w / fig_w)
        _colorbar(fig, colour, (*bar_rect, (fig_h - title_h - caption_h - legend_h - 0.05) / fig_h))
    _legend(fig, lost is not None, pad / fig_w, legend_cols)
    return _save(fig, out_path, fmt, dpi)


def _caption(ax: Any, text: str) -> None:
    """The image column's caption under its axes."""
    ax.text(0.5, -0.03, text, transform=ax.transAxes, ha="center", va="top", fontsize=FONT_PT, linespacing=1.15)


def _colorbar(fig: Any, colour: Any, rect: tuple[float, float, float, float]) -> None:
    """One colour bar for every heat map (each map is min-max normalised per image)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), colour), cax=fig.add_axes(rect))
    bar.set_label("normalised map (per image)", fontsize=FONT_PT)
    bar.ax.tick_params(labelsize=FONT_PT)


def _save(fig: Any, out_path: str | os.PathLike, fmt: str, dpi: int) -> Path:
    """Write ``fig`` atomically (an interrupted write leaves the old file, or none; editable text
    in vector output)."""
    from matplotlib import rc_context

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):
        atomic_write(out, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
    return out


def check_figure_options(fmt: str, cmap: str, dpi: int) -> None:
    """A known figure format and colour map and a sane dpi; visualize checks them before any map is computed."""
    from matplotlib import colormaps

    if fmt not in FIGURE_FORMATS:
        raise SimpoolBenchError(f"--format {fmt!r}: expected one of {', '.join(FIGURE_FORMATS)}")
    if cmap not in colormaps:
        raise SimpoolBenchError(f"--cmap {cmap!r}: not a matplotlib colour map (perceptual ones: {', '.join(PERCEPTUAL_CMAPS)})")
    if not 20 <= int(dpi) <= 1200:
        raise SimpoolBenchError(f"--dpi {dpi}: expected 20 to 1200")


def _check_figure(
    fmt: str,
    cmap: str,
    dpi: int,
    images: Sequence[Any],
    maps: Sequence[Sequence[Any]],
    gt_boxes: Sequence[Any],
    pred_boxes: Sequence[Sequence[Any]],
    ious: Sequence[Sequence[Any]],
    image_ids: Sequence[str],
    titles: Sequence[str],
) -> None:
    """paper_figure's arguments: a known format and colour map, a sane dpi, M columns of N entries."""
    check_figure_options(fmt, cmap, dpi)
    n, m = len(images), len(maps)
    if n == 0 or m == 0:
        raise SimpoolBenchError("paper_figure: nothing to draw (no image or no column)")
    for name, seq in (("maps", maps), ("pred_boxes", pred_boxes), ("ious", ious)):
        if len(seq) != m or any(len(col) != n for col in seq):
            raise SimpoolBenchError(f"paper_figure: {name} must hold {m} columns of {n} entries")
    if len(titles) != m or len(image_ids) != n or len(gt_boxes) != n:
        raise SimpoolBenchError(
            f"paper_figure: {len(titles)} titles, {len(image_ids)} ids, {len(gt_boxes)} GT sets for {m} columns, {n} images"
        )


def _image_caption(image_id: str, gt: np.ndarray) -> str:
    gts = " ".join(_box_text(b) for b in gt[:2]) + (" ..." if len(gt) > 2 else "") if len(gt) else "none"
    return f"{image_id}\nGT {gts}"


def _cell(
    ax: Any,
    img: np.ndarray,
    c: int,
    scoremap: np.ndarray | None,
    gt: np.ndarray,
    pred: np.ndarray | None,
    iou: float | None,
    lost: LostPatches | None,
    colour: Any,
    alpha: float,
    exclusive: bool = False,
) -> None:
    """One cell: the image (column 0) or its overlay (heat map or LOST's patches), boxes and caption."""
    h, w = img.shape[:2]
    ax.imshow(img, interpolation="nearest")
    if lost is not None:
        _lost(ax, lost)  # LOST's own picture: seed and expanded patches, no heat map
    elif c > 0:
        assert scoremap is not None  # a map column (c > 0) has a map
        ax.imshow(normalized_map(scoremap, (h, w)), cmap=colour, vmin=0.0, vmax=1.0, alpha=alpha, interpolation="nearest")
    for b in gt:
        _rect(ax, b, GT_RGB, "-", 1.1, exclusive)
    if c > 0 and pred is not None:
        _rect(ax, pred, PRED_RGB, "--", 1.1, exclusive)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    for sp in ax.spines.values():
        sp.set_visible(False)
    if c > 0:
        iou_s = "-" if iou is None or (isinstance(iou, float) and math.isnan(iou)) else f"{iou:.2f}"
        ax.text(
            0.5,
            -0.03,
            f"pred {_box_text(pred)}\nIoU {iou_s}",
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=FONT_PT,
            linespacing=1.15,
        )


def _legend(fig: Any, with_lost: bool, left: float, ncol: int) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Line2D([], [], color=GT_RGB, lw=1.1, label="ground-truth box"),
        Line2D([], [], color=PRED_RGB, lw=1.1, ls="--", label="predicted box"),
    ]
    if with_lost:
        handles += [
            Patch(facecolor="none", edgecolor=SEED_RGB, label="LOST seed"),
            Patch(facecolor=SEED_RGB, alpha=0.35, edgecolor="none", label="LOST expanded patches"),
        ]
    fig.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(left, 0.0),
        ncol=ncol,
        frameon=False,
        fontsize=FONT_PT,
        handlelength=2.2,
        borderaxespad=0.3,
    )
