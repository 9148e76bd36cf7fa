"""Writing the pictures: PNG (timeline, key frames, graphs or all three), the HTML report, the MP4 overlay.

Every file is written atomically (:mod:`uasan.files`). Each writer returns a :class:`Rendered` holding the
data it drew (rows with their hit / miss colours, boxes, graphs), so that a caller or a test can check what was
shown without reading pixels.
"""

from __future__ import annotations

import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Headless without touching the user's backend: Figure + the Agg canvas directly, never pyplot.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from uasan.evaluation import evaluate_relations
from uasan.files import atomic_write, atomic_write_text
from uasan.visualize.frames import DrawnBox, draw_keyframes, key_frames, keyframe_grid, write_overlay
from uasan.visualize.graph import SegmentGraph, draw_graphs, graph_aspect, top_segments
from uasan.visualize.timeline import NOVEL_MARK, TimelineRow, draw_timeline, timeline_height
from uasan.visualize.view import STATUS_COLOR, VideoView, plural

WHATS = ("summary", "timeline", "keyframes", "graph")
WIDTH = 12.0  # inches
DPI = 90


@dataclass
class Rendered:
    """What a writer drew, and the files it wrote."""

    files: list[Path] = field(default_factory=list)
    timeline: list[TimelineRow] | None = None
    boxes: list[DrawnBox] | None = None
    frames: list[int] | None = None
    graphs: list[SegmentGraph] | None = None
    overlay: dict[str, Any] | None = None
    figure: Figure | None = None  # the PNG's figure, as saved (render_png)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def _segment_ids(view: VideoView, segment: int | None, graphs: int) -> list[int]:
    n = len(view.segments())
    if segment is None:
        return top_segments(view, graphs)
    if isinstance(segment, bool) or not isinstance(segment, int) or not 0 <= segment < n:
        raise ValueError(f"--segment: expected a segment index in [0, {n}) of {view.video_id}, got {segment!r}")
    return [segment]


# Section heights in inches, so that each picture fills its section's width or height exactly (no empty band):
# a frame's or a graph's cell is the figure width over its columns, less constrained layout's padding.
_PAD = 0.1  # inches around a cell
_TITLE = 0.22  # inches of one 8-9 pt title line


def _keyframe_height(view: VideoView, n: int) -> float:
    rows, cols = keyframe_grid(view, n)
    cell = WIDTH / cols - _PAD
    return _TITLE + rows * (_TITLE + _PAD + cell * view.height / max(view.width, 1))


def _graph_height(view: VideoView, seg_ids: list[int]) -> float:
    cell = WIDTH / max(len(seg_ids), 3) - _PAD  # one or two graphs: a third of the width each
    return 2 * _TITLE + _PAD + cell * graph_aspect(view, seg_ids)


def render_png(
    view: VideoView,
    out: str | os.PathLike,
    what: str = "summary",
    *,
    video_file: str | os.PathLike | None = None,
    frames: int = 6,
    segment: int | None = None,
    graphs: int = 4,
) -> Rendered:
    """One PNG: ``what`` = ``"timeline"``, ``"keyframes"``, ``"graph"`` (``segment``, else the ``graphs`` top
    segments) or ``"summary"`` (all three stacked)."""
    if what not in WHATS:
        raise ValueError(f"--what: expected one of {WHATS}, got {what!r}")
    for name, value in (("--frames", frames), ("--graphs", graphs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    parts = [what] if what != "summary" else ["timeline", "keyframes", "graph"]
    seg_ids = _segment_ids(view, segment, graphs) if "graph" in parts else []
    shown = key_frames(view, frames) if "keyframes" in parts else []
    heights = {
        "timeline": timeline_height(view),
        "keyframes": _keyframe_height(view, len(shown)),
        "graph": _graph_height(view, seg_ids),
    }
    fig = Figure(figsize=(WIDTH, sum(heights[p] for p in parts)), dpi=DPI, layout="constrained")
    subs = fig.subfigures(len(parts), 1, height_ratios=[heights[p] for p in parts], squeeze=False)[:, 0]
    result = Rendered()
    for sub, part in zip(subs, parts, strict=True):
        if part == "timeline":
            result.timeline = draw_timeline(sub, view)
        elif part == "keyframes":
            result.frames = shown
            result.boxes = draw_keyframes(sub, view, shown, video_file)
            src = "" if video_file is None else f" of {Path(video_file).name}"
            sub.suptitle(f"key frames{src}: ground truth solid, predicted tracks dashed", fontsize=9)
        else:
            result.graphs = draw_graphs(sub, view, seg_ids)
            sub.suptitle("scene graph per segment (top-K predictions; dashed: missed ground truth)", fontsize=9)
    result.files.append(_save(fig, Path(out)))
    result.figure = fig
    return result


# ----------------------------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------------------------

_CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse;font-size:13px}
td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}img,video{max-width:100%}
.s{color:white;padding:0 4px;border-radius:3px}"""


def _status(status: str) -> str:
    return f'<span class="s" style="background:{STATUS_COLOR[status]}">{status.replace("_", " ")}</span>'


def _tables(view: VideoView, rows: list[TimelineRow]) -> str:
    e = html.escape
    out = ["<h2>Ground truth</h2><table><tr><th>row</th><th>relation</th><th>frames</th><th>status</th>"
           "<th>recalled by</th></tr>"]  # fmt: skip
    for r in rows:
        if r.kind == "gt":
            by = f"#{int(view.match.rank[r.matched]) + 1}" if r.matched >= 0 else ""
            mark = f"{NOVEL_MARK} " if r.novel else ""
            out.append(f"<tr><td>g{r.index}</td><td>{mark}{e(r.label.split(' ', 1)[1])}</td><td>{r.begin}–{r.end}</td>"
                       f"<td>{_status(r.status)}</td><td>{by}</td></tr>")  # fmt: skip
    out.append("</table><h2>Top predictions</h2><table><tr><th>rank</th><th>triplet</th><th>score</th>"
               "<th>frames</th><th>status</th><th>took</th></tr>")  # fmt: skip
    for r in rows:
        if r.kind == "pred":
            p = view.predictions[r.index]
            took = f"g{r.matched}" if r.matched >= 0 else ""
            mark = f"{NOVEL_MARK} " if r.novel else ""
            out.append(f"<tr><td>{int(view.match.rank[r.index]) + 1}</td><td>{mark}{e(' '.join(p['triplet']))}</td>"
                       f"<td>{float(p['score']):.4f}</td><td>{r.begin}–{r.end}</td><td>{_status(r.status)}</td>"
                       f"<td>{took}</td></tr>")  # fmt: skip
    out.append("</table>")
    return "\n".join(out)


def render_html(
    view: VideoView,
    out: str | os.PathLike,
    *,
    video_file: str | os.PathLike | None = None,
    frames: int = 6,
    segment: int | None = None,
    graphs: int = 4,
) -> Rendered:
    """``OUT.html`` plus its assets in ``OUT_files/`` (referenced by relative paths): the timeline, key frames,
    segment graphs, the MP4 overlay when ``video_file`` is given, this video's official metrics and tables of the
    ground truth and the top predictions with their status."""
    out = Path(out)
    assets = out.parent / f"{out.stem}_files"
    result = Rendered()
    parts = {}
    for what in ("timeline", "keyframes", "graph"):
        r = render_png(view, assets / f"{what}.png", what, video_file=video_file, frames=frames, segment=segment,
                       graphs=graphs)  # fmt: skip
        parts[what] = r
        result.files += r.files
    result.timeline, result.boxes = parts["timeline"].timeline, parts["keyframes"].boxes
    result.frames, result.graphs = parts["keyframes"].frames, parts["graph"].graphs
    video_html = ""
    if video_file is not None:
        result.overlay = write_overlay(view, video_file, assets / "overlay.mp4")
        result.files.append(assets / "overlay.mp4")
        video_html = f'<h2>Overlay</h2><video controls src="{assets.name}/overlay.mp4"></video>'
    k = view.top_k
    metrics = evaluate_relations({view.video_id: view.groundtruth}, {view.video_id: view.predictions},
                                 det_nreturns=(k,), tag_nreturns=())  # fmt: skip
    e = html.escape
    n_gt = len(view.groundtruth)
    summary = (
        f"<p>Predictions <code>{e(view.source)}</code>, ground truth filtered to the <b>{e(view.split)}</b> split: "
        f"{plural(n_gt, 'relation')}. Top {k} of {plural(len(view.predictions), 'prediction')}: "
        f"<b>{plural(view.hits(), 'hit')}</b> "
        f"(R@{k} of this video {100 * metrics[f'R@{k}']:.1f}%, AP {100 * metrics['mAP']:.1f}%, the official "
        f"matching: same triplet, vIoU ≥ 0.5 for subject and object, greedy in score order). "
        f"{NOVEL_MARK} marks novel predicates.</p>"
    )
    titles = (("timeline", "Timeline"), ("keyframes", "Key frames"), ("graph", "Scene graphs"))
    img = "".join(f'<h2>{t}</h2><img src="{assets.name}/{w}.png" alt="{t}">' for w, t in titles)
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(view.video_id)}</title><style>{_CSS}</style>"
        f"</head><body><h1>{e(view.video_id)}</h1>{summary}{img}{video_html}{_tables(view, result.timeline)}"
        "</body></html>\n"
    )
    result.files.insert(0, atomic_write_text(out, page))
    return result


def render_mp4(view: VideoView, out: str | os.PathLike, *, video_file: str | os.PathLike | None) -> Rendered:
    """The MP4 overlay (needs the video file)."""
    if video_file is None:
        raise ValueError("--video-file: an MP4 overlay draws on the video's frames; give the video file")
    return Rendered(files=[Path(out)], overlay=write_overlay(view, video_file, out))


def render(view: VideoView, out: str | os.PathLike, **kwargs: Any) -> Rendered:
    """Dispatch on the suffix of ``out``: ``.png`` → :func:`render_png`, ``.html`` → :func:`render_html`,
    ``.mp4`` → :func:`render_mp4`."""
    suffix = Path(out).suffix.lower()
    if suffix == ".png":
        return render_png(view, out, **kwargs)
    what = kwargs.pop("what", "summary")
    if what != "summary":
        raise ValueError(f"--what: {what!r} selects the content of a PNG; {suffix or 'this'} output has a fixed one")
    if suffix in (".html", ".htm"):
        return render_html(view, out, **kwargs)
    if suffix == ".mp4":
        return render_mp4(view, out, video_file=kwargs.get("video_file"))
    raise ValueError(f"--out: expected a .png, .html or .mp4 file name, got {os.fspath(out)!r}")
