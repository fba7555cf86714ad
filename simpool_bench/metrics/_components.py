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

Work per map: one counting sort (the thresholds give at most 256 distinct levels, each evaluated
once), the foreground sweep over every pixel, and the background sweep only as far as it is
needed: the foreground sweep also keeps the Euler number (components minus holes, from each
pixel's neighbour mask), so it knows how many holes every level has; the background sweep stops
after the highest observed level that has a hole and is not already settled by the foreground
boxes at every IoU threshold. Indices in the hot loops are unsigned (no negative-index fix-ups).

Conventions of wsolevaluation ``evaluation.py``: a contour's box is ``(x, y, min(x + w, W - 1),
min(y + h, H - 1))`` from ``cv2.boundingRect``, i.e. one past the last column/row, clipped;
IoU as ``calculate_multiple_iou`` (+1 areas, float64 ``inter / union``, union <= 0 -> 0) and
correct when ``iou >= iou_threshold / 100``.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba import uint64 as U  # unsigned indices: no negative-index fix-ups in the hot loops

from ._numba_cache import cache_enabled

_CACHE = cache_enabled()  # compiled kernels kept on disk: only the first run compiles


def _neighbour_tables(pos: list[tuple[int, int]], adjacent, touching: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each mask of present neighbours, one representative per group of mutually connected
    present neighbours (present pixels that are adjacent are already in one component), keeping
    only the groups with a member in ``touching`` (default all), represented by such a member."""
    n = len(pos)
    touch = range(n) if touching is None else touching
    rep = np.zeros((1 << n, 4), dtype=np.int64)
    n_rep = np.zeros(1 << n, dtype=np.int64)
    for mask in range(1 << n):
        present = [i for i in range(n) if mask >> i & 1]
        seen: set[int] = set()
        for i in present:
            if i in seen or i not in touch:
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


def _side_table(pos: list[tuple[int, int]], rep: np.ndarray, n_rep: np.ndarray, adjacent) -> np.ndarray:
    """For each mask, the sides (bit 0: x0, 1: y0, 2: x1, 3: y1) on which the pixel may extend the
    box of the component it joins: none of the present neighbours known to be in that component
    (the groups of ``rep``) lies beyond it on that side. A new component (no group) has all four."""
    need = np.zeros(len(rep), dtype=np.int64)
    for mask in range(len(rep)):
        present = [i for i in range(len(pos)) if mask >> i & 1]
        members = [int(rep[mask, g]) for g in range(n_rep[mask])]
        stack = list(members)
        while stack:  # everything connected to a group's representative within the ring
            a = stack.pop()
            for b in present:
                if b not in members and adjacent(pos[a], pos[b]):
                    members.append(b)
                    stack.append(b)
        dx = [pos[i][0] for i in members]
        dy = [pos[i][1] for i in members]
        need[mask] = all(d >= 0 for d in dx) | all(d >= 0 for d in dy) << 1 | all(d <= 0 for d in dx) << 2 | all(d <= 0 for d in dy) << 3
    return need


def _euler_table(pos: list[tuple[int, int]]) -> np.ndarray:
    """4 x the change of the 8-connected Euler number (components minus holes) when a pixel is
    added to a binary image whose 8 neighbours present are the mask: Gray's bit quads,
    E = (n(Q1) - n(Q3) - 2 n(QD)) / 4, over the four 2x2 quads holding the pixel."""
    index = {d: i for i, d in enumerate(pos)}
    table = np.zeros(1 << len(pos), dtype=np.int64)
    for mask in range(1 << len(pos)):
        total = 0
        for qx in (-1, 0):
            for qy in (-1, 0):
                cells = [(qx, qy), (qx + 1, qy), (qx, qy + 1), (qx + 1, qy + 1)]  # tl, tr, bl, br
                for centre in (0, 1):
                    on = [centre if c == (0, 0) else mask >> index[c] & 1 for c in cells]
                    n_on = sum(on)
                    diag = n_on == 2 and on[0] == on[3]
                    value = (n_on == 1) - (n_on == 3) - 2 * diag
                    total += value if centre else -value
        table[mask] = total
    return table


# neighbour order: bit k of a mask <-> position k
_POS8 = [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)]
_ORTHO = (1, 3, 4, 6)  # the 4-neighbours among _POS8


def _adjacent8(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return max(abs(a[0] - b[0]), abs(a[1] - b[1])) == 1


def _adjacent4(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1


_REP8, _NREP8 = _neighbour_tables(_POS8, _adjacent8)
# background (4-connected): present ring pixels that are 4-adjacent are in one component, so two
# 4-neighbours joined through a present diagonal need no union; only groups with a 4-neighbour count
_REP4, _NREP4 = _neighbour_tables(_POS8, _adjacent4, _ORTHO)
_SIDE8 = _side_table(_POS8, _REP8, _NREP8, _adjacent8)
_SIDE4 = _side_table(_POS8, _REP4, _NREP4, _adjacent4)
_EULER8 = _euler_table(_POS8)


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
def _best_iou(x0, y0, x1, y1, gt, g0, g1):
    """The best IoU of box (x0, y0, x1, y1) over gt[g0:g1] (wsolevaluation ``calculate_multiple_iou``:
    +1 areas, a non-positive union gives 0)."""
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
    return best


@njit(cache=_CACHE, nogil=True)
def _iou_flags(x0, y0, x1, y1, gt, g0, g1, iou_thr):
    """Bitmask of the IoU thresholds met by box (x0, y0, x1, y1) against the best of gt[g0:g1]."""
    best = _best_iou(x0, y0, x1, y1, gt, g0, g1)
    flags = 0
    for j in range(iou_thr.shape[0]):
        if best >= iou_thr[j]:
            flags |= 1 << j
    return flags


@njit(cache=_CACHE, nogil=True)
def _workspace(H, W):
    """Per-thread arrays for maps of size (H, W). The union-find lives on the map padded by one
    pixel (flat index ``(y + 1) * (W + 2) + x + 1``); slot ``n`` is the border root of the
    background sweep."""
    n = (H + 2) * (W + 2)
    parent = np.full(n + 1, -1, dtype=np.int32)
    size = np.empty(n + 1, dtype=np.int32)
    box = np.empty(4 * (n + 1), dtype=np.int32)  # x0, y0, x1, y1 of each root, at 4 * root
    flags = np.zeros(n + 1, dtype=np.int64)  # bitmask of the IoU thresholds met by each root
    dirty = np.zeros(n + 1, dtype=np.uint8)
    dlist = np.empty(n + 1, dtype=np.int32)  # roots whose box changed since the last refresh
    yx = np.empty(H * W, dtype=np.int32)  # y << 16 | x of the pixels sorted by value (raster order within a value)
    img = np.full((H + 2, W + 2), -1, dtype=np.int16)  # the map inside a ring of -1
    starts = np.zeros(258, dtype=np.int64)
    m8 = np.zeros(n, dtype=np.uint8)  # neighbours present when added, foreground sweep (padded layout)
    m4 = np.zeros(n, dtype=np.uint8)  # neighbours present when added, background sweep (padded layout)
    return parent, size, box, flags, dirty, dlist, yx, img, starts, m8, m4


@njit(cache=_CACHE, nogil=True)
def _sort_levels(u8, ws):
    """Counting sort of the pixels by value into the workspace, with each pixel's mask of the
    neighbours already present when a sweep adds it: the foreground sweep (values decreasing,
    raster order within a value) has added q before p iff u8[q] > v, or u8[q] == v and q comes
    first in raster order; the background sweep (values increasing) iff u8[q] < v, or u8[q] == v
    and q comes first, or q is on the padding ring. Returns the max value."""
    H, W = u8.shape
    Wp = W + 2
    yx, img, starts, m8, m4 = ws[6], ws[7], ws[8], ws[9], ws[10]
    # four bands of rows, counted and placed in lockstep: four independent chains of counter
    # updates instead of one (neighbouring pixels often share a value); band b holds rows
    # [b * R, (b + 1) * R), the last band also the H - 4R rows left over
    R = H // 4
    hist = np.zeros((4, 256), dtype=np.int64)
    for y in range(H):
        img[y + 1, 1 : W + 1] = u8[y]
    for r in range(R):
        for x in range(W):
            hist[0, u8[r, x]] += 1
            hist[1, u8[R + r, x]] += 1
            hist[2, u8[2 * R + r, x]] += 1
            hist[3, u8[3 * R + r, x]] += 1
    for y in range(4 * R, H):
        for x in range(W):
            hist[3, u8[y, x]] += 1
    starts[0] = 0
    vmax = 0
    fill = np.empty((4, 256), dtype=np.int64)  # where band b puts its next pixel of value v
    for v in range(256):
        total = starts[v]
        for b in range(4):
            fill[b, v] = total
            total += hist[b, v]
        starts[v + 1] = total
        if total > starts[v]:
            vmax = v
    starts[257] = starts[256]
    # the masks in raster order (row slices and uint8 bits: the compiler vectorises this loop);
    # bit order of _POS8; the ring (-1) is never >= v and always <= v
    one = np.uint8(1)
    for y in range(H):
        a, b, c = img[y], img[y + 1], img[y + 2]
        o8 = m8[(y + 1) * Wp + 1 : (y + 1) * Wp + 1 + W]
        o4 = m4[(y + 1) * Wp + 1 : (y + 1) * Wp + 1 + W]
        for x in range(W):
            v = b[x + 1]
            o8[x] = (
                np.uint8(a[x] >= v)
                | np.uint8(a[x + 1] >= v) << one
                | np.uint8(a[x + 2] >= v) << 2
                | np.uint8(b[x] >= v) << 3
                | np.uint8(b[x + 2] > v) << 4
                | np.uint8(c[x] > v) << 5
                | np.uint8(c[x + 1] > v) << 6
                | np.uint8(c[x + 2] > v) << 7
            )
            o4[x] = (
                np.uint8(a[x] <= v)
                | np.uint8(a[x + 1] <= v) << one
                | np.uint8(a[x + 2] <= v) << 2
                | np.uint8(b[x] <= v) << 3
                | np.uint8(b[x + 2] < v) << 4
                | np.uint8(c[x] < v) << 5
                | np.uint8(c[x + 1] < v) << 6
                | np.uint8(c[x + 2] < v) << 7
            )
    for r in range(R):
        for x in range(W):
            for b in range(4):  # (unrolled by the compiler: independent chains)
                y = b * R + r
                v = u8[y, x]
                k = fill[b, v]
                fill[b, v] = k + 1
                yx[k] = y << 16 | x
    for y in range(4 * R, H):
        for x in range(W):
            v = u8[y, x]
            k = fill[3, v]
            fill[3, v] = k + 1
            yx[k] = y << 16 | x
    return vmax


@njit(cache=_CACHE, nogil=True, inline="always")
def _find(parent, r):
    """Root of r, halving the path (indices unsigned: no negative-index fix-ups in the loop)."""
    pr = parent[U(r)]
    if parent[U(pr)] == pr:  # usual: r is a root or points at one
        return pr
    while parent[U(r)] != r:
        g = parent[U(parent[U(r)])]
        parent[U(r)] = g
        r = g
    return r


@njit(cache=_CACHE, nogil=True)
def _sweep(H, W, vmax, steps, background, ws, gt, g0, g1, iou_thr, observed, ok, holes, emit):
    """One union-find sweep over the first ``steps`` values of the map sorted in ``ws`` (max ``vmax``).

    Foreground (``background=False``): values vmax, vmax-1, ... added in turn, 8-connected; after
    value v the components are those of ``u8 > v - 1``, and ``holes[v - 1]`` receives the number
    of holes of that binary image (components minus the Euler number, kept up to date from each
    pixel's neighbour mask). Background: values 0, 1, ..., 4-connected; the padding ring belongs
    to a border root that wins every union (its size is larger than the image), so after value v
    the other components are the holes of ``u8 > v``.
    Sets ``ok[L, j]`` when a box of level L meets IoU threshold j, for the levels with
    ``observed[L]`` (the flags of the others are not brought up to date). With ``emit`` it
    returns instead every (level, x0, y0, x1, y1) box (a test helper, O(levels x pixels)).
    """
    parent, size, box, flags, dirty, dlist, yx, img, starts, m8, m4 = ws
    Wp = W + 2
    n = (H + 2) * Wp
    n_thr = iou_thr.shape[0]
    offs = np.array([-Wp - 1, -Wp, -Wp + 1, -1, 1, Wp - 1, Wp, Wp + 1], dtype=np.int64)
    if background:
        rep, n_rep, masks = _REP4, _NREP4, m4
        pad = n  # the border root
        size[n] = 2 * n
    else:
        rep, n_rep, masks = _REP8, _NREP8, m8
        pad = -1  # absent
    first = np.empty(256, dtype=np.int64)  # offset of the first group's representative
    for m in range(256):
        first[m] = offs[rep[m, 0]]
    euler = _EULER8
    parent[:] = pad
    parent[n] = n
    for y in range(H):
        row = (y + 1) * Wp + 1
        parent[row : row + W] = -1
    grow = 1 if background else 0  # a hole's contour box is the hole's box grown by one pixel
    # boxes smaller than this meet no threshold: IoU <= box area / GT area, and the margin keeps
    # the float IoU of the reference below every threshold too
    small = np.inf
    for k in range(g0, g1):
        small = min(small, float((gt[k, 2] - gt[k, 0] + 1) * (gt[k, 3] - gt[k, 1] + 1)))
    small *= iou_thr.min() * (1 - 1e-9) if n_thr > 0 else 0.0
    cnt = np.zeros(n_thr, dtype=np.int64)
    rows = np.empty((64 if emit else 0, 5), dtype=np.int64)
    n_rows = 0
    nd = 0  # length of dlist
    n_comp = 0  # foreground components
    e4 = 0  # 4 x the Euler number of the foreground

    for step in range(steps):
        v = step if background else vmax - step
        level = v if background else v - 1
        for idx in range(starts[v], starts[v + 1]):
            c = yx[U(idx)]
            y = c >> 16
            x = c & 0xFFFF
            p = y * Wp + x + Wp + 1
            mask = U(masks[U(p)])
            e4 += euler[mask]
            k = n_rep[mask]
            if k == 0:  # a new component
                parent[U(p)] = p
                size[U(p)] = 1
                b = U(4 * p)
                box[b] = x
                box[b + U(1)] = y
                box[b + U(2)] = x
                box[b + U(3)] = y
                flags[U(p)] = 0
                dirty[U(p)] = 1
                dlist[U(nd)] = p
                nd += 1
                n_comp += 1
                continue
            # join the component of the first neighbour group, then merge the others into it
            r = np.int64(_find(parent, p + first[mask]))
            parent[U(p)] = r  # (sizes count merged components only: a balancing heuristic)
            if r != n:
                b = U(4 * r)
                b0, b1, b2, b3 = box[b], box[b + U(1)], box[b + U(2)], box[b + U(3)]
                if (x < b0) | (x > b2) | (y < b1) | (y > b3):  # the box grows: its flags need a refresh
                    box[b] = min(b0, x)
                    box[b + U(1)] = min(b1, y)
                    box[b + U(2)] = max(b2, x)
                    box[b + U(3)] = max(b3, y)
                    if dirty[U(r)] == 0:
                        dirty[U(r)] = 1
                        dlist[U(nd)] = r
                        nd += 1
            for i in range(1, k):
                q = np.int64(_find(parent, p + offs[rep[mask, i]]))
                if q == r:
                    continue
                n_comp -= 1
                if size[U(r)] < size[U(q)]:
                    r, q = q, r
                parent[U(q)] = r
                size[U(r)] += size[U(q)]
                if r != n:
                    b = U(4 * r)
                    bq = U(4 * q)
                    box[b] = min(box[b], box[bq])
                    box[b + U(1)] = min(box[b + U(1)], box[bq + U(1)])
                    box[b + U(2)] = max(box[b + U(2)], box[bq + U(2)])
                    box[b + U(3)] = max(box[b + U(3)], box[bq + U(3)])
                    if dirty[U(r)] == 0:
                        dirty[U(r)] = 1
                        dlist[U(nd)] = r
                        nd += 1
                fq = flags[U(q)]
                if fq != 0:
                    for j in range(n_thr):
                        cnt[j] -= (fq >> j) & 1
                    flags[U(q)] = 0
                dirty[U(q)] = 0
        if not background:
            holes[level] = n_comp - e4 // 4
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
            x0, y0 = box[4 * r] - grow, box[4 * r + 1] - grow
            x1, y1 = min(box[4 * r + 2] + 1 + grow, W - 1), min(box[4 * r + 3] + 1 + grow, H - 1)
            if (x1 - x0 + 1) * (y1 - y0 + 1) < small:
                new = 0
            else:
                new = _iou_flags(x0, y0, x1, y1, gt, g0, g1, iou_thr)
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
                    rows[n_rows, 1] = box[4 * p] - grow
                    rows[n_rows, 2] = box[4 * p + 1] - grow
                    rows[n_rows, 3] = min(box[4 * p + 2] + 1 + grow, W - 1)
                    rows[n_rows, 4] = min(box[4 * p + 3] + 1 + grow, H - 1)
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
    Each distinct level is evaluated once. The background sweep (holes) runs only up to the
    highest such level that has a hole and is not already settled by the foreground boxes.
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
            f = _iou_flags(vmax, vmax, vmax, vmax, gt, g0, g1, iou_thr)  # the box (0, 0, 0, 0); not literals: no second signature
            for j in range(n_thr):
                for t in range(thresholds.shape[0]):
                    hits[i, j, t] = (f >> j) & 1
            continue
        ok = np.zeros((vmax, n_thr), dtype=np.bool_)
        observed = np.zeros(vmax, dtype=np.bool_)
        holes = np.zeros(vmax, dtype=np.int64)
        for t in range(thresholds.shape[0]):
            observed[int(thresholds[t] * vmax)] = True
        _sweep(H, W, vmax, vmax, flag[0], ws, gt, g0, g1, iou_thr, observed, ok, holes, flag[0])
        steps = vmax - vmax  # background values to sweep: levels 0 .. steps - 1 (0, typed int64: a literal 0 would compile _sweep twice)
        for level in range(vmax):
            settled = True
            for j in range(n_thr):
                settled = settled and ok[level, j]
            observed[level] = observed[level] and holes[level] > 0 and not settled
            if observed[level]:
                steps = level + 1
        _sweep(H, W, vmax, steps, flag[1], ws, gt, g0, g1, iou_thr, observed, ok, holes, flag[0])
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
    holes = np.zeros(max(vmax, 1), dtype=np.int64)
    fg = _sweep(H, W, vmax, vmax, flag[0], ws, gt, g[0], g[1], iou_thr, observed, ok, holes, flag[1])
    bg = _sweep(H, W, vmax, vmax, flag[1], ws, gt, g[0], g[1], iou_thr, observed, ok, holes, flag[1])
    out = np.empty((fg.shape[0] + bg.shape[0], 5), dtype=np.int64)
    out[: fg.shape[0]] = fg
    out[fg.shape[0] :] = bg
    return out


@njit(cache=_CACHE, nogil=True)
def level_hole_counts(u8):
    """Number of holes of the binary image ``u8 > L`` for L = 0..max-1, as the foreground sweep
    counts them (components minus the Euler number). Test helper."""
    H, W = u8.shape
    ws = _workspace(H, W)
    vmax = _sort_levels(u8, ws)
    holes = np.zeros(max(vmax, 1), dtype=np.int64)
    gt = np.zeros((1, 4), dtype=np.int64)
    iou_thr = np.zeros(1, dtype=np.float64)
    ok = np.zeros((max(vmax, 1), 1), dtype=np.bool_)
    flag = np.zeros(2, dtype=np.bool_)  # run-time flags: share _sweep's compiled signature
    g = np.arange(2)
    observed = np.zeros(max(vmax, 1), dtype=np.bool_)
    _sweep(H, W, vmax, vmax, flag[0], ws, gt, g[0], g[1], iou_thr, observed, ok, holes, flag[0])
    return holes[:vmax]


@njit(cache=_CACHE, nogil=True)
def best_box_at_level(u8, level, gt, out):
    """The RETR_TREE box of the binary image ``u8 > level`` with the best IoU against ``gt``
    (K >= 1 boxes, +1 convention, the best over them): its coordinates in ``out[:4]``; returns
    that IoU, or -1.0 when another box, of other coordinates, has the same IoU (OpenCV's contour
    order then decides which one the reference's ``np.argmax`` takes: the caller asks OpenCV).

    The boxes are the module's: 8-connected foreground components (``(x0, y0, min(x1 + 1, W - 1),
    min(y1 + 1, H - 1))``) and 4-connected background components that do not touch the border
    (holes: their box grown by one pixel, then clipped the same way); no foreground at all is
    the box (0, 0, 0, 0). They come from one labelling of the image's runs (row segments of one
    side), each run joined to the touching runs of the row above (diagonally too, foreground)."""
    H, W = u8.shape
    n_max = H * ((W + 1) // 2 + 1)
    rs = np.empty(n_max, dtype=np.int32)  # a run's first column,
    re = np.empty(n_max, dtype=np.int32)  # its last column,
    ry = np.empty(n_max, dtype=np.int32)  # its row
    parent = np.empty(n_max, dtype=np.int32)
    box = np.empty((n_max, 4), dtype=np.int32)
    border = np.empty(n_max, dtype=np.bool_)
    best = -1.0
    tie = False
    for side in range(2):  # 0: the foreground (u8 > level), 8-connected; 1: the background, 4-connected
        fg = side == 0
        reach = 1 if fg else 0  # runs of consecutive rows touch when they overlap by -reach columns or more
        n = 0
        prev_lo = prev_hi = 0
        for y in range(H):
            cur_lo = n
            x = 0
            while x < W:
                if (u8[y, x] > level) != fg:
                    x += 1
                    continue
                s = x
                while x < W and (u8[y, x] > level) == fg:
                    x += 1
                rs[n], re[n], ry[n], parent[n] = s, x - 1, y, n
                n += 1
            j = prev_lo
            for i in range(cur_lo, n):
                while j < prev_hi and re[j] + reach < rs[i]:
                    j += 1
                k = j
                while k < prev_hi and rs[k] <= re[i] + reach:
                    a = _find(parent, i)
                    b = _find(parent, k)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
                    k += 1
            prev_lo, prev_hi = cur_lo, n
        if fg and n == 0:  # no contour: the reference's box (0, 0, 0, 0), and no holes to look for
            out[0] = out[1] = out[2] = out[3] = 0
            return _best_iou(out[0], out[1], out[2], out[3], gt, 0, gt.shape[0])
        for i in range(n):  # runs are numbered in raster order: a root comes before its members
            r = _find(parent, i)
            touches = rs[i] == 0 or re[i] == W - 1 or ry[i] == 0 or ry[i] == H - 1
            if r == i:
                box[i, 0], box[i, 1], box[i, 2], box[i, 3], border[i] = rs[i], ry[i], re[i], ry[i], touches
            else:
                box[r, 0] = min(box[r, 0], rs[i])
                box[r, 2] = max(box[r, 2], re[i])
                box[r, 3] = max(box[r, 3], ry[i])
                border[r] = border[r] or touches
        for i in range(n):
            if parent[i] != i:
                continue
            if fg:
                bx0, by0, bx1, by1 = box[i, 0], box[i, 1], min(box[i, 2] + 1, W - 1), min(box[i, 3] + 1, H - 1)
            elif border[i]:
                continue
            else:
                bx0, by0, bx1, by1 = box[i, 0] - 1, box[i, 1] - 1, min(box[i, 2] + 2, W - 1), min(box[i, 3] + 2, H - 1)
            iou = _best_iou(bx0, by0, bx1, by1, gt, 0, gt.shape[0])
            if iou > best:
                best = iou
                tie = False
                out[0], out[1], out[2], out[3] = bx0, by0, bx1, by1
            elif iou == best and (out[0] != bx0 or out[1] != by0 or out[2] != bx1 or out[3] != by1):
                tie = True
    return -1.0 if tie else best
