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
from matplotlib.patches import FancyArrowPatch, Rectangle

from uasan.visualize.place import Placer
from uasan.visualize.view import MISSED, STATUS_COLOR, VideoView

_RAD = 0.3  # arc bend: the two directions of a pair get separate arcs


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
    """Indices of up to ``n`` segments with something active, in time order: the largest summed score of active
    top-K predictions first (then the most missed ground truth), preferring segments that do not overlap one already
    chosen. A video with nothing active anywhere gets its first segment (drawn as "nothing active")."""
    segs = view.segments()
    top = [view.predictions[i] for i in view.top]
    missed = [r for k, r in enumerate(view.groundtruth) if not view.match.gt_hit[k]]
    weight = [
        (sum(float(r["score"]) for r in top if _active(r["duration"], seg)),
         sum(1 for r in missed if _active(r["duration"], seg)))
        for seg in segs
    ]  # fmt: skip
    order = sorted(range(len(segs)), key=lambda j: (-weight[j][0], -weight[j][1], j))
    order = [j for j in order if any(weight[j])] or [0]
    chosen: list[int] = []
    for j in order:  # consecutive segments share half their frames: spread the picks over the video first
        if len(chosen) < n and all(segs[j][1] <= segs[c][0] or segs[c][1] <= segs[j][0] for c in chosen):
            chosen.append(j)
    chosen += [j for j in order if j not in chosen][: max(n - len(chosen), 0)]
    return sorted(chosen)


def _layout(names: list[str]) -> tuple[dict[str, tuple[float, float]], tuple[float, float, float, float]]:
    """Node positions on a unit circle (from the left, clockwise) and the axes limits (x0, x1, y0, y1) that hold
    them, their names and their edges' labels, and no more."""
    n = len(names)
    angles = [math.pi - 2 * math.pi * k / max(n, 1) for k in range(n)]
    pos = {name: (0.0, 0.0) if n == 1 else (math.cos(a), math.sin(a)) for name, a in zip(names, angles, strict=True)}
    xs, ys = [p[0] for p in pos.values()] or [0.0], [p[1] for p in pos.values()] or [0.0]
    mx = 1.0 if n <= 1 else 0.6  # one node: room beside it for a note
    my = 0.6 if n <= 1 else 0.75 if n == 2 else 0.3  # two nodes side by side: room for their arcs' labels
    return pos, (min(xs) - mx, max(xs) + mx, min(ys) - my, max(ys) + my)


def graph_aspect(view: VideoView, segment_ids: list[int]) -> float:
    """Height over width of the tallest graph :func:`draw_graphs` draws for these segments."""
    segs = view.segments()
    aspects = []
    for j in segment_ids:
        _, (x0, x1, y0, y1) = _layout(list(segment_graph(view, segs[j]).nodes))
        aspects.append((y1 - y0) / (x1 - x0))
    return max(aspects, default=1.0)


def _point(p0: tuple[float, float], p1: tuple[float, float], t: float) -> tuple[float, float]:
    """The point at ``t`` of the arc FancyArrowPatch draws with ``arc3,rad=_RAD`` (a quadratic Bézier curve whose
    control point is the chord's middle + rad × (dy, −dx))."""
    (x0, y0), (x1, y1) = p0, p1
    cx, cy = (x0 + x1) / 2 + _RAD * (y1 - y0), (y0 + y1) / 2 - _RAD * (x1 - x0)
    return ((1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t**2 * x1, (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t**2 * y1)


def _lines(view: VideoView, edges: list[Edge], max_labels: int) -> list[tuple[str, str, str]]:
    """(text, colour, weight) lines of one pair's label: hits and misses first (what the picture is for), then
    false positives by rank; a predicate repeated with the same status once, counted (``left ×2``)."""
    edges = sorted(edges, key=lambda e: (e.status == "false_positive", -(e.score or 0.0)))
    counts: dict[tuple[str, str], int] = {}
    for e in edges:
        counts[e.predicate, e.status] = counts.get((e.predicate, e.status), 0) + 1
    lines = [(p + (f" ×{c}" if c > 1 else ""), STATUS_COLOR[st], "bold" if p in view.novel_predicates else "normal")
             for (p, st), c in counts.items()]  # fmt: skip
    if len(lines) > max_labels:
        more = sum(counts[k] for k in list(counts)[max_labels - 1 :])
        lines = [*lines[: max_labels - 1], (f"+{more} more", "#505050", "normal")]
    return lines


def draw_graph(ax: object, view: VideoView, segment: tuple[int, int], max_labels: int = 4) -> SegmentGraph:
    """Draws the segment's graph on ``ax``; at most ``max_labels`` lines of predicates per ordered pair.

    The predicates of one ordered pair form one label, centred on the middle of their arc (the two directions of a
    pair bend to opposite sides); a :class:`Placer` moves a label that would cover a node or another label, or leave
    the axes, to the nearest free spot when the figure is drawn, with a dotted leader back to its arc.
    """
    g = segment_graph(view, segment)
    names = list(g.nodes)
    pos, (x0, x1, y0, y1) = _layout(names)
    placer = Placer(ax, margin=2.5)
    pairs: dict[tuple[str, str], list[Edge]] = {}
    for e in g.edges:
        pairs.setdefault((e.src, e.dst), []).append(e)
    for (s, o), edges in pairs.items():
        dashed = all(e.status == "missed" for e in edges)
        if s == o:  # subject and object fell on one node: a note beside it instead of a loop
            anchor = (pos[s][0] * 1.25, pos[s][1] * 1.25 - 0.2)
        else:
            ax.add_patch(FancyArrowPatch(pos[s], pos[o], connectionstyle=f"arc3,rad={_RAD}", arrowstyle="-|>",
                                         mutation_scale=10, lw=1.0, color=MISSED if dashed else "#505050",
                                         ls="--" if dashed else "-", shrinkA=14, shrinkB=14))  # fmt: skip
            anchor = _point(pos[s], pos[o], 0.5)
        texts = [ax.text(*anchor, text, fontsize=7, ha="center", va="center", color=color, fontweight=weight, zorder=5)
                 for text, color, weight in _lines(view, edges, max_labels)]  # fmt: skip
        frame = ax.add_patch(Rectangle((0, 0), 0, 0, fc="white", ec="#c8c8c8", lw=0.5, alpha=0.9, zorder=4.5))
        frame.set_gid("edge-label")
        (leader,) = ax.plot([], [], ls=":", lw=0.8, color="#808080", zorder=4)
        placer.add(texts, anchor, pad=1.0, center=True, leader=leader, frame=frame)
    for name in names:
        box = {"boxstyle": "round,pad=0.35", "facecolor": g.nodes[name], "edgecolor": "none"}
        node = ax.text(*pos[name], name, ha="center", va="center", fontsize=7, color="white", zorder=6, bbox=box)
        node.set_gid("node")
        placer.fixed(node, pad=0.35 * 7)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"frames {segment[0]}–{segment[1]}", fontsize=8)
    if not names:
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


__all__ = ["Edge", "SegmentGraph", "draw_graph", "draw_graphs", "graph_aspect", "segment_graph", "top_segments"]
