"""Scene graph of a segment: objects as nodes, the top-K predictions' predicates as labelled directed edges.

A relation is active in a 30-frame segment when it overlaps it by more than half of the shorter of the two (the
rule of :meth:`uasan.data.Annotation.segment_relations`). A predicted track that follows a ground-truth object
becomes that object's node (``dog#2``), otherwise its own (``dog P3``). Edge labels are coloured like the timeline:
green hit, orange false positive; ground truth that none of the top K takes is added as a dashed red edge. Nodes sit
on a circle (a handful per segment: a layout library would not earn its place).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import FancyArrowPatch

from uasan.visualize.view import MISSED, STATUS_COLOR, VideoView

_RAD = 0.3  # arc bend: the two directions of a pair get separate arcs
_LABEL_AT = 0.4  # where along its arc an edge's labels sit (0: subject, 1: object)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    predicate: str
    status: str  # "hit", "false_positive" or "missed"
    index: int  # prediction index (hit / false positive) or ground-truth index (missed)
    score: float | None


@dataclass
class SegmentGraph:
    """What :func:`draw_graph` drew for one segment."""

    segment: tuple[int, int]
    nodes: dict[str, str] = field(default_factory=dict)  # node label -> colour
    edges: list[Edge] = field(default_factory=list)


def _active(duration: tuple[int, int] | list, segment: tuple[int, int]) -> bool:
    b, e = int(duration[0]), int(duration[1])
    fs, fe = segment
    overlap = min(e, fe) - max(b, fs)
    return overlap > 0 and overlap > 0.5 * min(e - b, fe - fs)


def segment_graph(view: VideoView, segment: tuple[int, int]) -> SegmentGraph:
    """Nodes and edges of ``segment`` (see the module docstring); edges of one pair in rank order."""
    g = SegmentGraph(tuple(segment))

    def node(track_id: int) -> str:
        t = view.tracks[track_id]
        name = view.gt_label(t.gt_tid) if t.gt_tid is not None else t.label
        g.nodes.setdefault(name, t.color)
        return name

    for i in view.top:
        r = view.predictions[i]
        if _active(r["duration"], segment):
            s, o = (node(int(t)) for t in view.pred_tracks[i])
            g.edges.append(Edge(s, o, r["triplet"][1], view.pred_status(int(i)), int(i), float(r["score"])))
    for k, r in enumerate(view.groundtruth):
        if not view.match.gt_hit[k] and _active(r["duration"], segment):
            s, o = view.gt_label(r["subject_tid"]), view.gt_label(r["object_tid"])
            for tid, name in ((r["subject_tid"], s), (r["object_tid"], o)):
                g.nodes.setdefault(name, view.gt_colors[int(tid)])
            g.edges.append(Edge(s, o, r["triplet"][1], "missed", k, None))
    return g


def top_segments(view: VideoView, n: int) -> list[int]:
    """Indices of ``n`` segments, in time order: the largest summed score of active top-K predictions first (then
    the most missed ground truth), preferring segments that do not overlap one already chosen."""
    segs = view.segments()
    top = [view.predictions[i] for i in view.top]
    missed = [r for k, r in enumerate(view.groundtruth) if not view.match.gt_hit[k]]
    weight = [
        (sum(float(r["score"]) for r in top if _active(r["duration"], seg)),
         sum(1 for r in missed if _active(r["duration"], seg)))
        for seg in segs
    ]  # fmt: skip
    order = sorted(range(len(segs)), key=lambda j: (-weight[j][0], -weight[j][1], j))
    chosen: list[int] = []
    for j in order:  # consecutive segments share half their frames: spread the picks over the video first
        if len(chosen) < n and all(segs[j][1] <= segs[c][0] or segs[c][1] <= segs[j][0] for c in chosen):
            chosen.append(j)
    chosen += [j for j in order if j not in chosen][: max(n - len(chosen), 0)]
    return sorted(chosen)


def draw_graph(ax: object, view: VideoView, segment: tuple[int, int], max_labels: int = 3) -> SegmentGraph:
    """Draws the segment's graph on ``ax``; at most ``max_labels`` predicates per ordered pair are written out."""
    g = segment_graph(view, segment)
    names = list(g.nodes)
    n = len(names)
    # on a circle from the left, clockwise: two nodes sit side by side and their arcs' labels stack vertically
    angles = [math.pi - 2 * math.pi * k / max(n, 1) for k in range(n)]
    pos = {name: (0.0, 0.0) if n == 1 else (math.cos(a), math.sin(a)) for name, a in zip(names, angles, strict=True)}
    pairs: dict[tuple[str, str], list[Edge]] = {}
    for e in g.edges:
        pairs.setdefault((e.src, e.dst), []).append(e)
    for (s, o), edges in pairs.items():
        (x0, y0), (x1, y1) = pos[s], pos[o]
        dashed = all(e.status == "missed" for e in edges)
        if s == o:  # subject and object fell on one node: a note beside it instead of a loop
            mx, my = x0 * 1.25, y0 * 1.25 - 0.15
        else:
            ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), connectionstyle=f"arc3,rad={_RAD}", arrowstyle="-|>",
                                         mutation_scale=10, lw=1.0, color=MISSED if dashed else "#505050",
                                         ls="--" if dashed else "-", shrinkA=14, shrinkB=14))  # fmt: skip
            # a point of the quadratic arc (control point: chord middle + rad × (dy, −dx)) before its middle, so
            # that the two directions of a pair label their arcs apart
            cx, cy = (x0 + x1) / 2 + _RAD * (y1 - y0), (y0 + y1) / 2 - _RAD * (x1 - x0)
            t = _LABEL_AT
            mx = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t**2 * x1
            my = (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t**2 * y1
        # hits and misses first (they are what the picture is for), then false positives by rank
        edges = sorted(edges, key=lambda e: (e.status == "false_positive", -(e.score or 0.0)))
        shown = edges if len(edges) <= max_labels else [*edges[: max_labels - 1], None]
        for k, e in enumerate(shown):
            y = my - 0.11 * (k - (len(shown) - 1) / 2)
            if e is None:
                ax.text(mx, y, f"+{len(edges) - k} more", fontsize=6, ha="center", va="center", color="#505050")
                continue
            ax.text(mx, y, e.predicate, fontsize=6, ha="center", va="center", color=STATUS_COLOR[e.status],
                    fontweight="bold" if e.predicate in view.novel_predicates else "normal")  # fmt: skip
    for name in names:
        x, y = pos[name]
        ax.text(x, y, name, ha="center", va="center", fontsize=7, color="white",
                bbox={"boxstyle": "round,pad=0.35", "facecolor": g.nodes[name], "edgecolor": "none"})  # fmt: skip
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.4, 1.4)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"frames {segment[0]}–{segment[1]}", fontsize=8)
    if n == 0:
        ax.text(0, 0, "nothing active", ha="center", va="center", fontsize=7, color="#808080")
    return g


def draw_graphs(fig: Figure | SubFigure, view: VideoView, segment_ids: list[int]) -> list[SegmentGraph]:
    """One graph per segment index, side by side."""
    segs = view.segments()
    axes = fig.subplots(1, max(len(segment_ids), 1), squeeze=False)[0]
    out = [draw_graph(ax, view, segs[j]) for ax, j in zip(axes, segment_ids, strict=False)]
    if not segment_ids:
        axes[0].set_axis_off()
    return out


__all__ = ["Edge", "SegmentGraph", "draw_graph", "draw_graphs", "segment_graph", "top_segments"]
