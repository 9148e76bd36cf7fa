"""Labels placed when the figure is drawn: whole, inside their axes and clear of one another.

Where a label fits depends on the final layout (constrained layout sizes the axes, and an image's or a graph's
equal aspect shrinks them, only when the figure is drawn), so placement happens then: a :class:`Placer` is an
invisible artist drawn first in its axes. It moves each of its labels, in the order they were added, to the free
spot nearest to where the label asked to be: inside the axes, overlapping no label placed before it and no fixed
artist (a graph's node names). A label is a block of text lines moved together, each line under the one before; a
label that had to move away from its anchor can draw a leader line back to it. Everything is in display pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.artist import Artist
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text

_MAX_CANDIDATES = 6000  # positions tried per label that does not fit where it asked to be
_LEADER = 4.0  # points: a label this far from its anchor gets its leader line


@dataclass
class _Block:
    texts: list[Text]
    anchor: tuple[float, float]  # data coordinates
    pad: float  # points around each line (its background box)
    center: bool  # centre the block on the anchor; else the first line keeps its own alignment there
    leader: Line2D | None
    frame: Rectangle | None


def _overlap(boxes: np.ndarray, obstacles: np.ndarray) -> np.ndarray:
    """(K, M) overlap areas of boxes (K, 4) and obstacles (M, 4), rows x0, y0, x1, y1."""
    w = np.minimum(boxes[:, None, 2], obstacles[None, :, 2]) - np.maximum(boxes[:, None, 0], obstacles[None, :, 0])
    h = np.minimum(boxes[:, None, 3], obstacles[None, :, 3]) - np.maximum(boxes[:, None, 1], obstacles[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


class Placer(Artist):
    """Places the labels of one axes when it is drawn (see the module docstring).

    After a draw, :attr:`placed` holds each label's box (display pixels, x0, y0, x1, y1) in the order added.
    """

    def __init__(self, ax, margin: float = 1.0) -> None:
        super().__init__()
        self._blocks: list[_Block] = []
        self._fixed: list[tuple[Text, float]] = []
        self.margin = margin  # points kept free between labels and around fixed artists
        self.placed: list[tuple[float, float, float, float]] = []
        self.set_zorder(-1e9)  # drawn before every other artist of the axes
        self.set_in_layout(False)
        ax.add_artist(self)

    def fixed(self, text: Text, pad: float = 0.0) -> None:
        """``text`` (with ``pad`` points around it) is an obstacle no label may cover."""
        self._fixed.append((text, pad))

    def add(
        self,
        texts: list[Text],
        anchor: tuple[float, float],
        *,
        pad: float = 0.0,
        center: bool = False,
        leader: Line2D | None = None,
        frame: Rectangle | None = None,
    ) -> None:
        """A label of ``texts`` (lines, top to bottom; data coordinates, clipped to the axes) at ``anchor``; ``pad``
        points around each line; ``leader`` is set to a line from the anchor to a label placed away from it, and
        ``frame`` to the label's box (a background for all its lines)."""
        for t in texts:
            t.set_clip_on(True)  # inside the axes anyway; keeps them out of the layout's sums
        self._blocks.append(_Block(list(texts), (float(anchor[0]), float(anchor[1])), pad, center, leader, frame))

    def draw(self, renderer) -> None:
        if not self.get_visible() or self.axes is None:
            return
        px = renderer.points_to_pixels(1.0)
        ax_box = self.axes.get_window_extent(renderer)
        bounds = np.array([ax_box.x0, ax_box.y0, ax_box.x1, ax_box.y1]) + np.array([1, 1, -1, -1])
        m = self.margin * px
        obstacles = []
        for t, pad in self._fixed:
            e = t.get_window_extent(renderer)
            p = pad * px + m
            obstacles.append([e.x0 - p, e.y0 - p, e.x1 + p, e.y1 + p])
        self.placed = []
        for b in self._blocks:
            box = self._place(b, renderer, px, bounds, np.array(obstacles, dtype=float).reshape(-1, 4))
            self.placed.append(tuple(float(v) for v in box))
            obstacles.append([box[0] - m, box[1] - m, box[2] + m, box[3] + m])
        self.stale = False

    def _place(self, b: _Block, renderer, px: float, bounds: np.ndarray, obstacles: np.ndarray) -> np.ndarray:
        tr = self.axes.transData
        pad = b.pad * px
        exts = []
        for t in b.texts:
            t.set_position(b.anchor)
            exts.append(t.get_window_extent(renderer))
        top = exts[0].y1 + pad
        shifts, y = [], top  # each line's box hangs from the bottom of the one before
        for e in exts:
            shifts.append((0.0, y - pad - e.y1))
            y -= e.height + 2 * pad
        box = np.array([min(e.x0 for e in exts) - pad, y, max(e.x1 for e in exts) + pad, top])
        anchor = tr.transform(b.anchor)
        off = anchor - (box[:2] + box[2:]) / 2 if b.center else np.zeros(2)
        # inside the axes (a label larger than the axes shows its start: left, top)
        lo, hi = bounds[:2] - (box[:2] + off), bounds[2:] - (box[2:] + off)
        off += [lo[0] if hi[0] < lo[0] else min(max(0.0, lo[0]), hi[0]),
                hi[1] if hi[1] < lo[1] else min(max(0.0, lo[1]), hi[1])]  # fmt: skip
        if len(obstacles) and _overlap((box + np.tile(off, 2))[None], obstacles).sum() > 0:
            off = self._search(box, off, bounds, obstacles, min(e.height for e in exts))
        inv = tr.inverted()
        for t, (dx, dy) in zip(b.texts, shifts, strict=True):
            t.set_position(tuple(inv.transform(anchor + off + (dx, dy))))
        box = box + np.tile(off, 2)
        if b.frame is not None:
            (x0, y0), (x1, y1) = inv.transform(box[:2]), inv.transform(box[2:])
            b.frame.set_bounds(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
        if b.leader is not None:
            near = np.clip(anchor, box[:2], box[2:])  # the box's point nearest to the anchor
            if np.hypot(*(near - anchor)) > _LEADER * px:
                (x0, y0), (x1, y1) = inv.transform(anchor), inv.transform(near)
                b.leader.set_data([x0, x1], [y0, y1])
            else:
                b.leader.set_data([], [])
        return box

    @staticmethod
    def _search(box: np.ndarray, off: np.ndarray, bounds: np.ndarray, obstacles: np.ndarray, line: float) -> np.ndarray:
        """The offset nearest to ``off`` that keeps ``box`` inside ``bounds`` and off the obstacles (the least
        overlap when none is free)."""
        w, h = box[2] - box[0], box[3] - box[1]
        # the offsets that keep the box inside, within a window around off (wide labels move little sideways)
        rx, ry = 3 * w + 20 * line, 10 * h + 20 * line
        x_lo, x_hi = max(bounds[0] - box[0], off[0] - rx), min(bounds[2] - box[2], off[0] + rx)
        y_lo, y_hi = max(bounds[1] - box[1], off[1] - ry), min(bounds[3] - box[3], off[1] + ry)
        if x_hi < x_lo or y_hi < y_lo:
            return off
        step = max(1.5, line / 4, np.sqrt((x_hi - x_lo + 1) * (y_hi - y_lo + 1) / _MAX_CANDIDATES))
        xs = np.unique(np.append(np.arange(x_lo, x_hi + 1e-9, step), np.clip(off[0], x_lo, x_hi)))
        ys = np.unique(np.append(np.arange(y_lo, y_hi + 1e-9, step), np.clip(off[1], y_lo, y_hi)))
        cand = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        cand = cand[np.argsort(np.hypot(*(cand - off).T), kind="stable")]
        area = _overlap(np.tile(box, (len(cand), 1)) + np.tile(cand, 2), obstacles).sum(1)
        free = np.flatnonzero(area <= 0)
        return cand[free[0]] if len(free) else cand[int(np.argmin(area))]


__all__ = ["Placer"]
