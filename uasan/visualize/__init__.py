"""See a video's scene graph: relation timeline, key frames with trajectories, per-segment graphs, HTML report,
MP4 overlay (``python -m uasan.visualize``; see :mod:`uasan.visualize.__main__` for the command line).

Every hit, false positive, recalled and missed flag comes from :func:`uasan.evaluation.match_relations`, the
official evaluator's own matching over the top K predictions, with the ground truth filtered to the
open-vocabulary split as the protocol does. Pictures are drawn with matplotlib's Agg backend (headless); video is
read and written with PyAV (``pip install "uasan[visualize]"``), imported only when a video file is used.

    from uasan.visualize import load_view, render
    view = load_view("runs/uasan/data", "runs/uasan/predictions/SGCls_novel.json", "synth_test_0000", split="novel")
    render(view, "vid.html")  # or .png (what="summary" | "timeline" | "keyframes" | "graph") or .mp4 (video_file=)
"""

from uasan.visualize.frames import DrawnBox, active_triplets, boxes_at, draw_frame, key_frames, write_overlay
from uasan.visualize.graph import Edge, SegmentGraph, segment_graph, top_segments
from uasan.visualize.report import WHATS, Rendered, render, render_html, render_mp4, render_png
from uasan.visualize.run import run_picture
from uasan.visualize.timeline import TimelineRow, timeline_rows
from uasan.visualize.view import STATUS_COLOR, Track, VideoView, load_view

__all__ = [
    "STATUS_COLOR",
    "WHATS",
    "DrawnBox",
    "Edge",
    "Rendered",
    "SegmentGraph",
    "TimelineRow",
    "Track",
    "VideoView",
    "active_triplets",
    "boxes_at",
    "draw_frame",
    "key_frames",
    "load_view",
    "render",
    "render_html",
    "render_mp4",
    "render_png",
    "run_picture",
    "segment_graph",
    "timeline_rows",
    "top_segments",
    "write_overlay",
]
