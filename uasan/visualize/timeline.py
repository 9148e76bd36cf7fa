"""The relation timeline: one row per ground-truth relation and per top-K prediction along the frame axis.

Ground truth (filtered to the split) is green when one of the top K predictions takes it in the official matching
and red when none does; a prediction is green when it is a true positive and orange when it is a false positive.
Rows whose predicate is novel carry a ★. Predictions are in the evaluator's score order; a hit names the
ground-truth row it took (``→ g3``).
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Patch

from uasan.visualize.view import FALSE_POSITIVE, HIT, MISSED, STATUS_COLOR, VideoView, plural

NOVEL_MARK = "★"


@dataclass(frozen=True)
class TimelineRow:
    """One drawn row: what it shows and the colour the evaluator's decision gave it."""

    kind: str  # "gt" or "pred"
    index: int  # into VideoView.groundtruth or VideoView.predictions
    label: str
    begin: int
    end: int  # exclusive
    status: str  # "recalled" / "missed" (gt), "hit" / "false_positive" (pred)
    color: str
    novel: bool  # the predicate is novel
    matched: int  # the ground truth a hit took / the prediction that recalled a ground truth; -1 otherwise


def timeline_rows(view: VideoView) -> list[TimelineRow]:
    """The rows of :func:`draw_timeline`: ground truth by start frame, then the top K predictions by rank."""
    m = view.match
    by_gt = {int(g): int(p) for p, g in enumerate(m.pred_gt) if g >= 0}
    rows = []
    order = sorted(range(len(view.groundtruth)), key=lambda g: (tuple(view.groundtruth[g]["duration"]), g))
    for g in order:
        r = view.groundtruth[g]
        s, p, o = r["triplet"]
        novel = p in view.novel_predicates
        label = f"g{g} {view.gt_label(r['subject_tid'])} {p} {view.gt_label(r['object_tid'])}"
        status = view.gt_status(g)
        b, e = (int(x) for x in r["duration"])
        rows.append(TimelineRow("gt", g, label, b, e, status, STATUS_COLOR[status], novel, by_gt.get(g, -1)))
    for i in view.top:
        r = view.predictions[i]
        s, p, o = r["triplet"]
        status = view.pred_status(int(i))
        g = int(m.pred_gt[i])
        label = f"#{int(m.rank[i]) + 1} {s} {p} {o}  {float(r['score']):.3f}" + (f" → g{g}" if g >= 0 else "")
        b, e = (int(x) for x in r["duration"])
        rows.append(
            TimelineRow("pred", int(i), label, b, e, status, STATUS_COLOR[status], p in view.novel_predicates, g)
        )
    return rows


def draw_timeline(fig: Figure | SubFigure, view: VideoView) -> list[TimelineRow]:
    """Draws the timeline into ``fig`` and returns the rows it drew (colours included)."""
    rows = timeline_rows(view)
    ax = fig.add_subplot(111)
    n = len(rows)
    for y, r in enumerate(rows):
        ax.barh(y, r.end - r.begin, left=r.begin, height=0.7, color=r.color, edgecolor="none")
    ax.set_yticks(range(n), [(f"{NOVEL_MARK} " if r.novel else "") + r.label for r in rows], fontsize=7)
    for tick, r in zip(ax.get_yticklabels(), rows, strict=True):
        tick.set_color("black" if r.kind == "gt" else "#404040")
    n_gt = sum(r.kind == "gt" for r in rows)
    if 0 < n_gt < n:
        ax.axhline(n_gt - 0.5, color="black", lw=0.8)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(0, max(view.frame_count, 1))
    for fs, _ in view.segments():
        ax.axvline(fs, color="#e0e0e0", lw=0.5, zorder=0)
    ax.set_xlabel("frame", loc="left")
    ax.tick_params(axis="y", length=0)
    # the legend sits under the axes, right of the axis label: the title above keeps the whole width
    fig.legend(
        handles=[
            Patch(color=HIT, label="hit / recalled"),
            Patch(color=FALSE_POSITIVE, label="false positive"),
            Patch(color=MISSED, label="missed"),
            Patch(color="none", label=f"{NOVEL_MARK} novel predicate"),
        ],
        loc="outside lower right",
        ncol=4,
        fontsize=7,
        frameon=False,
        borderaxespad=0.0,
        handlelength=1.4,
        columnspacing=1.2,
    )
    ax.set_title(
        f"{view.video_id}: {plural(n_gt, 'ground-truth relation')} ({view.split} split), top {view.top_k} of "
        f"{plural(len(view.predictions), 'prediction')}, {plural(view.hits(), 'hit')}",
        fontsize=9,
        loc="left",
    )
    if n == 0:
        ax.text(0.5, 0.5, "no ground truth and no predictions", ha="center", va="center", transform=ax.transAxes)
    return rows


def timeline_height(view: VideoView) -> float:
    """Figure height in inches that gives each row room for its label."""
    return 1.4 + 0.17 * (len(view.groundtruth) + len(view.top))
