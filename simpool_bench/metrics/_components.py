"""Numba kernels for MaxBoxAcc: the boxes OpenCV's ``findContours(RETR_TREE)`` gives at every
level of a quantised score map, from one sweep per map instead of one OpenCV call per threshold.

For a binary image ``u8 > L`` the bounding boxes of the RETR_TREE contours are exactly
- the boxes of the 8-connected foreground components, and
- for each 4-connected background component not touching the image border (a hole), its box
  grown by one pixel on each side (a hole's contour runs through the foreground around it).
(Checked against OpenCV by tests/test_boxacc.py.)

The foreground sets ``{u8 > L}`` shrink as L grows, so adding pixels to a union-find in
decreasing value order yields the foreground components of every level in turn; the background
sets ``{u8 <= L}`` grow with L, so adding pixels in increasing order yields every level's holes.
Each live component carries a bitmask of the IoU thresholds its box meets (best over the
image's GT boxes); a per-threshold count of such components tells, at the end of each level,
whether some box of that level meets the threshold. The two sweeps are OR-ed per level.

Conventions of wsolevaluation ``evaluation.py``: a contour's box is ``(x, y, min(x + w, W - 1),
min(y + h, H - 1))`` from ``cv2.boundingRect``, i.e. one past the last column/row, clipped;
IoU as ``calculate_multiple_iou`` (+1 areas, float64 ``inter / union``, union <= 0 -> 0) and
correct when ``iou >= iou_threshold / 100``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._numba_cache import cache_enabled

_CACHE = cache_enabled()  # compiled kernels kept on disk: only the first run compiles


def _neighbour_tables(pos: list[tuple[int, int]], adjacent) -> tuple[np.ndarray, np.ndarray]:
    """For each mask of present neighbours, one representative per group of mutually connected
    present neighbours (present pixels that are adjacent are already in one component)."""
    n = len(pos)
    rep = np.zeros((1 << n, 4), dtype=np.int64)
    n_rep = np.zeros(1 << n, dtype=np.int64)
    for mask in range(1 << n):
        present = [i for i in range(n) if mask >> i & 1]
        seen: set[int] = set()
        for i in present:
            if i in seen:
                continue
            seen.add(i)
            stack = [i]
            while stack:
                a = stack.pop()
                for b in present:
                    if b not in seen and adjacent(pos[a], pos[b]):
                        seen.add(b)
                        stack.append(b)
            rep[mask, n_rep[mask]] = i
            n_rep[mask] += 1
    return rep, n_rep


# neighbour order: bit k of the mask <-> position k
_POS8 = [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)]
_POS4 = [(0, -1), (-1, 0), (1, 0), (0, 1)]
_REP8, _NREP8 = _neighbour_tables(_POS8, lambda a, b: max(abs(a[0] - b[0]), abs(a[1] - b[1])) == 1)
_REP4, _NREP4 = _neighbour_tables(_POS4, lambda a, b: abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1)


@njit(cache=_CACHE, nogil=True)
def normalise_quantise(resized, out):
    """wsolevaluation ``normalize_scoremap`` then ``(map * 255).astype(np.uint8)``, written to
    ``out``: a map with a NaN, or a constant map, becomes zeros; else ``(x - min) / max(x - min)``
    with the same float64 operations in the same order as the reference."""
    flat = resized.ravel()
    dst = out.ravel()
    mn = np.inf
    mx = -np.inf
    for i in range(flat.shape[0]):
        v = flat[i]
        if np.isnan(v):
            dst[:] = 0
            return
        if v < mn:
            mn = v
        if v > mx:
            mx = v
    if mn == mx:
        dst[:] = 0
        return
    top = mx - mn  # == max(x - mn): rounding is monotone
    for i in range(flat.shape[0]):
        dst[i] = np.uint8(((flat[i] - mn) / top) * 255)


@njit(cache=_CACHE, nogil=True)
def _iou_flags(x0, y0, x1, y1, gt, g0, g1, iou_thr):
    """Bitmask of the IoU thresholds met by box (x0, y0, x1, y1) against the best of gt[g0:g1]."""
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    best = 0.0
    for k in range(g0, g1):
        iw = min(x1, gt[k, 2]) - max(x0, gt[k, 0]) + 1
        ih = min(y1, gt[k, 3]) - max(y0, gt[k, 1]) + 1
        inter = max(0, iw) * max(0, ih)
        union = area + (gt[k, 2] - gt[k, 0] + 1) * (gt[k, 3] - gt[k, 1] + 1) - inter
        if union > 0:
            iou = inter / union
            if iou > best:
                best = iou
    flags = 0
    for j in range(iou_thr.shape[0]):
        if best >= iou_thr[j]:
            flags |= 1 << j
    return flags


@njit(cache=_CACHE, nogil=True)
def _workspace(H, W):
    """Per-thread arrays for maps of size (H, W). The union-find lives on the map padded by one
    pixel; slot ``n`` is the border root of the background sweep."""
    n = (H + 2) * (W + 2)
    parent = np.full(n + 1, -1, dtype=np.int32)
    size = np.empty(n + 1, dtype=np.int32)
    box = np.empty((n + 1, 4), dtype=np.int32)  # x0, y0, x1, y1 of each root
    flags = np.zeros(n + 1, dtype=np.int64)  # bitmask of the IoU thresholds met by each root
    dirty = np.zeros(n + 1, dtype=np.uint8)
    dlist = np.empty(n + 1, dtype=np.int32)  # roots whose box changed since the last refresh
    yx = np.empty(H * W, dtype=np.int32)  # y << 16 | x of the pixels sorted by value (raster order within a value)
    img = np.full((H + 2, W + 2), -1, dtype=np.int16)  # the map inside a ring of -1
    starts = np.zeros(258, dtype=np.int64)
    m8 = np.empty((H, W), dtype=np.uint8)  # neighbours present when added, foreground sweep
    m4 = np.empty((H, W), dtype=np.uint8)  # neighbours present when added, background sweep
    return parent, size, box, flags, dirty, dlist, yx, img, starts, m8, m4


@njit(cache=_CACHE, nogil=True)
def _sort_levels(u8, ws):
    """Counting sort of the pixels by value into the workspace, with each pixel's mask of the
    neighbours already present when a sweep adds it: the foreground sweep (values decreasing,
    raster order within a value) has added q before p iff u8[q] > v, or u8[q] == v and q comes
    first in raster order; the background sweep (values increasing) iff u8[q] < v, or u8[q] == v
    and q comes first, or q is on the padding ring. Returns the max value."""
    H, W = u8.shape
    yx, img, starts, m8, m4 = ws[6], ws[7], ws[8], ws[9], ws[10]
    starts[:] = 0
    vmax = 0
    for y in range(H):
        for x in range(W):
            v = u8[y, x]
            img[y + 1, x + 1] = v
            starts[v + 1] += 1
            vmax = max(vmax, v)
    for v in range(256):
        starts[v + 1] += starts[v]
    # the masks in raster order (row slices and uint8 bits: the compiler vectorises this loop);
    # bit order of _POS8 / _POS4; the ring (-1) is never >= v and always <= v
    one = np.uint8(1)
    for y in range(H):
        a, b, c, o8, o4 = img[y], img[y + 1], img[y + 2], m8[y], m4[y]
        for x in range(W):
            v = b[x + 1]
            o8[x] = (np.uint8(a[x] >= v) | np.uint8(a[x + 1] >= v) << one | np.uint8(a[x + 2] >= v) << 2
                     | np.uint8(b[x] >= v) << 3 | np.uint8(b[x + 2] > v) << 4 | np.uint8(c[x] > v) << 5
                     | np.uint8(c[x + 1] > v) << 6 | np.uint8(c[x + 2] > v) << 7)
            o4[x] = (np.uint8(a[x + 1] <= v) | np.uint8(b[x] <= v) << one | np.uint8(b[x + 2] < v) << 2
                     | np.uint8(c[x + 1] < v) << 3)
    fill = starts[:256].copy()
    for y in range(H):
        for x in range(W):
            v = u8[y, x]
            k = fill[v]
            fill[v] = k + 1
            yx[k] = y << 16 | x
    return vmax


@njit(cache=_CACHE, nogil=True)
def _sweep(H, W, vmax, background, ws, gt, g0, g1, iou_thr, observed, ok, emit):
    """One union-find sweep over the levels of the map sorted in ``ws``.

    Foreground (``background=False``): values vmax..1 added in turn, 8-connected; after value v
    the components are those of ``u8 > v - 1``. Background: values 0..vmax-1, 4-connected; the
    padding ring belongs to a border root that wins every union (its size is larger than the
    image), so after value v the other components are the holes of ``u8 > v``.
    Sets ``ok[L, j]`` when a box of level L meets IoU threshold j, for the levels with
    ``observed[L]`` (the flags of the others are not brought up to date). With ``emit`` it
    returns instead every (level, x0, y0, x1, y1) box (a test helper, O(levels x pixels)).
    """
    parent, size, box, flags, dirty, dlist, yx, img, starts, m8, m4 = ws
    Wp = W + 2
    n = (H + 2) * Wp
    n_thr = iou_thr.shape[0]
    if background:
        rep, n_rep, masks = _REP4, _NREP4, m4
        offs = np.array([-Wp, -1, 1, Wp], dtype=np.int64)
        pad = n  # the border root
        size[n] = 2 * n
    else:
        rep, n_rep, masks = _REP8, _NREP8, m8
        offs = np.array([-Wp - 1, -Wp, -Wp + 1, -1, 1, Wp - 1, Wp, Wp + 1], dtype=np.int64)
        pad = -1  # absent
    parent[:] = pad
    parent[n] = n
    for y in range(H):
        row = (y + 1) * Wp + 1
        parent[row:row + W] = -1
    grow = 1 if background else 0  # a hole's contour box is the hole's box grown by one pixel
    cnt = np.zeros(n_thr, dtype=np.int64)
    rows = np.empty((64 if emit else 0, 5), dtype=np.int64)
    n_rows = 0
    nd = 0  # length of dlist

    for step in range(vmax):
        v = step if background else vmax - step
        level = v if background else v - 1
        for idx in range(starts[v], starts[v + 1]):
            y = yx[idx] >> 16
            x = yx[idx] & 0xFFFF
            p = (y + 1) * Wp + x + 1
            mask = masks[y, x]
            k = n_rep[mask]
            if k == 0:  # a new component
                parent[p] = p
                size[p] = 1
                box[p, 0] = x
                box[p, 1] = y
                box[p, 2] = x
                box[p, 3] = y
                flags[p] = 0
                dirty[p] = 1
                dlist[nd] = p
                nd += 1
                continue
            # join the component of the first neighbour group, then merge the others into it
            r = p + offs[rep[mask, 0]]
            pr = parent[r]
            if parent[pr] == pr:  # usual: the neighbour is a root or points at one
                r = pr
            else:
                while parent[r] != r:  # path halving
                    g = parent[parent[r]]
                    parent[r] = g
                    r = g
            parent[p] = r  # (sizes count merged components only: a balancing heuristic)
            if r != n:
                b0, b1, b2, b3 = box[r, 0], box[r, 1], box[r, 2], box[r, 3]
                if x < b0 or x > b2 or y < b1 or y > b3:  # the box grows: its flags need a refresh
                    box[r, 0] = min(b0, x)
                    box[r, 1] = min(b1, y)
                    box[r, 2] = max(b2, x)
                    box[r, 3] = max(b3, y)
                    if dirty[r] == 0:
                        dirty[r] = 1
                        dlist[nd] = r
                        nd += 1
            for i in range(1, k):
                q = p + offs[rep[mask, i]]
                pq = parent[q]
                if parent[pq] == pq:
                    q = pq
                else:
                    while parent[q] != q:
                        g = parent[parent[q]]
                        parent[q] = g
                        q = g
                if q == r:
                    continue
                if size[r] < size[q]:
                    r, q = q, r
                parent[q] = r
                size[r] += size[q]
                if r != n:
                    box[r, 0] = min(box[r, 0], box[q, 0])
                    box[r, 1] = min(box[r, 1], box[q, 1])
                    box[r, 2] = max(box[r, 2], box[q, 2])
                    box[r, 3] = max(box[r, 3], box[q, 3])
                    if dirty[r] == 0:
                        dirty[r] = 1
                        dlist[nd] = r
                        nd += 1
                fq = flags[q]
                if fq != 0:
                    for j in range(n_thr):
                        cnt[j] -= (fq >> j) & 1
                    flags[q] = 0
                dirty[q] = 0
        if not (emit or observed[level]):
            continue
        # end of an observed level: refresh the IoU flags of the roots whose box changed
        for i in range(nd):
            r = dlist[i]
            if dirty[r] == 0:
                continue
            dirty[r] = 0
            if emit or parent[r] != r:
                continue
            new = _iou_flags(box[r, 0] - grow, box[r, 1] - grow, min(box[r, 2] + 1 + grow, W - 1),
                             min(box[r, 3] + 1 + grow, H - 1), gt, g0, g1, iou_thr)
            old = flags[r]
            if new != old:
                for j in range(n_thr):
                    cnt[j] += ((new >> j) & 1) - ((old >> j) & 1)
                flags[r] = new
        nd = 0
        if emit:
            for y in range(H):
                for x in range(W):
                    p = (y + 1) * Wp + x + 1
                    if parent[p] != p:
                        continue
                    if n_rows == rows.shape[0]:
                        bigger = np.empty((2 * n_rows, 5), dtype=np.int64)
                        bigger[:n_rows] = rows
                        rows = bigger
                    rows[n_rows, 0] = level
                    rows[n_rows, 1] = box[p, 0] - grow
                    rows[n_rows, 2] = box[p, 1] - grow
                    rows[n_rows, 3] = min(box[p, 2] + 1 + grow, W - 1)
                    rows[n_rows, 4] = min(box[p, 3] + 1 + grow, H - 1)
                    n_rows += 1
        else:
            for j in range(n_thr):
                if cnt[j] > 0:
                    ok[level, j] = True
    return rows[:n_rows]


@njit(cache=_CACHE, nogil=True)
def batch_hits(u8, gt, offsets, thresholds, iou_thr, hits):
    """``hits[i, j, t] = 1`` if, at score-map threshold ``thresholds[t]``, some RETR_TREE box of
    map ``u8[i]`` has IoU >= ``iou_thr[j]`` with one of its GT boxes ``gt[offsets[i]:offsets[i+1]]``.

    Threshold t binarises at level ``int(t * u8[i].max())`` (the reference's ``cv2.threshold``
    argument, keeping ``u8 > level``); a map with no foreground gives the box (0, 0, 0, 0).
    """
    B, H, W = u8.shape
    n_thr = iou_thr.shape[0]
    ws = _workspace(H, W)
    flag = np.zeros(2, dtype=np.bool_)  # run-time flags: keep _sweep to one compiled signature
    flag[1] = True
    for i in range(B):
        g0 = offsets[i]
        g1 = offsets[i + 1]
        vmax = _sort_levels(u8[i], ws)
        if vmax == 0:
            f = _iou_flags(0, 0, 0, 0, gt, g0, g1, iou_thr)
            for j in range(n_thr):
                for t in range(thresholds.shape[0]):
                    hits[i, j, t] = (f >> j) & 1
            continue
        ok = np.zeros((vmax, n_thr), dtype=np.bool_)
        observed = np.zeros(vmax, dtype=np.bool_)
        for t in range(thresholds.shape[0]):
            observed[int(thresholds[t] * vmax)] = True
        _sweep(H, W, vmax, flag[0], ws, gt, g0, g1, iou_thr, observed, ok, flag[0])
        _sweep(H, W, vmax, flag[1], ws, gt, g0, g1, iou_thr, observed, ok, flag[0])
        for t in range(thresholds.shape[0]):
            level = int(thresholds[t] * vmax)
            for j in range(n_thr):
                hits[i, j, t] = 1 if ok[level, j] else 0


@njit(cache=_CACHE, nogil=True)
def level_box_rows(u8):
    """Every (level, x0, y0, x1, y1) RETR_TREE box of the map ``u8`` (H, W) at the levels
    0..max-1: foreground components, then holes. Test helper, O(levels x pixels)."""
    H, W = u8.shape
    ws = _workspace(H, W)
    vmax = _sort_levels(u8, ws)
    gt = np.zeros((1, 4), dtype=np.int64)
    iou_thr = np.zeros(1, dtype=np.float64)
    ok = np.zeros((1, 1), dtype=np.bool_)
    flag = np.zeros(2, dtype=np.bool_)  # run-time flags: share _sweep's compiled signature
    flag[1] = True
    g = np.arange(2)
    observed = np.ones(max(vmax, 1), dtype=np.bool_)
    fg = _sweep(H, W, vmax, flag[0], ws, gt, g[0], g[1], iou_thr, observed, ok, flag[1])
    bg = _sweep(H, W, vmax, flag[1], ws, gt, g[0], g[1], iou_thr, observed, ok, flag[1])
    out = np.empty((fg.shape[0] + bg.shape[0], 5), dtype=np.int64)
    out[: fg.shape[0]] = fg
    out[fg.shape[0]:] = bg
    return out
