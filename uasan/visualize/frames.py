"""Frames with boxes: the key-frame strip and the MP4 overlay.

Frames come from the video file through PyAV (``av``, imported lazily: ``pip install "uasan[visualize]"``) or,
without a file, are a blank canvas of the annotation's width × height. Boxes live in the annotation's pixel
space; a video file of another size gets them scaled. Ground-truth objects are drawn solid with ``category#tid``,
predicted tracks dashed with ``category P<k>``; a track that follows a ground-truth object shares its colour.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from uasan.files import atomic_write
from uasan.visualize.place import Placer
from uasan.visualize.view import STATUS_COLOR, VideoView

_BLANK = 235  # grey level of the canvas without a video file
MIN_OVERLAY_HEIGHT = 360  # pixels: a smaller video is scaled up for the overlay, so that its text is legible


def import_av() -> Any:
    """PyAV, or a ``ValueError`` saying how to install it (reading or writing video needs it)."""
    try:
        import av
    except ImportError as exc:
        raise ValueError(
            f"--video-file: reading and writing video needs PyAV, which is not installed ({exc}); "
            'pip install "uasan[visualize]" (or: pip install "av>=12")'
        ) from None
    return av


@dataclass(frozen=True)
class DrawnBox:
    """One box as drawn on a frame (annotation pixels)."""

    frame: int
    kind: str  # "gt" or "pred"
    id: int  # tid or track id
    label: str
    box: tuple[float, float, float, float]
    color: str


def boxes_at(view: VideoView, frame: int) -> list[DrawnBox]:
    """Ground-truth objects and predicted tracks with a box at ``frame``."""
    ann = view.annotation
    out = []
    if 0 <= frame < ann.num_frames_annotated:
        for k in np.flatnonzero(ann.valid[:, frame]):
            tid = int(ann.tids[k])
            box = tuple(float(v) for v in ann.boxes[k, frame])
            out.append(DrawnBox(frame, "gt", tid, view.gt_label(tid), box, view.gt_colors[tid]))
    for t in view.tracks:
        if frame in t.boxes:
            out.append(DrawnBox(frame, "pred", t.id, t.label, tuple(float(v) for v in t.boxes[frame]), t.color))
    return out


def active_triplets(view: VideoView, frame: int) -> list[tuple[str, str]]:
    """(text, colour) of the ground truth and the top-K predictions whose duration holds ``frame``."""
    out = []
    for g, r in enumerate(view.groundtruth):
        if r["duration"][0] <= frame < r["duration"][1]:
            s, p, o = r["triplet"]
            text = f"GT {view.gt_label(r['subject_tid'])} {p} {view.gt_label(r['object_tid'])}"
            out.append((text, STATUS_COLOR[view.gt_status(g)]))
    for i in view.top:
        r = view.predictions[i]
        if r["duration"][0] <= frame < r["duration"][1]:
            text = f"#{int(view.match.rank[i]) + 1} " + " ".join(r["triplet"]) + f" {float(r['score']):.2f}"
            out.append((text, STATUS_COLOR[view.pred_status(int(i))]))
    return out


def draw_frame(
    ax: Any,
    view: VideoView,
    frame: int,
    image: np.ndarray | None,
    fontsize: float = 8,
    extent: tuple[float, float, float, float] | None = None,
    avoid: Sequence[Text] = (),
) -> list[DrawnBox]:
    """The frame (or the blank canvas) with its boxes on ``ax``, in annotation pixels; returns the boxes drawn.

    ``extent`` (left, right, bottom, top) places the image in annotation pixels; default the annotation's frame.
    A box's label sits above it (ground truth) or below it (predicted track); when that would leave the image or
    cover another label or one of the texts in ``avoid`` it moves to the nearest free spot inside the image
    (:class:`Placer`): never cut off.
    """
    w, h = view.width, view.height
    if image is None:
        image = np.full((h, w, 3), _BLANK, dtype=np.uint8)
    extent = extent or (0, w, h, 0)
    ax.imshow(image, extent=extent, interpolation="bilinear")
    placer = Placer(ax)
    for t in avoid:
        placer.fixed(t, pad=0.6)
    drawn = boxes_at(view, frame)
    for b in drawn:
        x1, y1, x2, y2 = b.box
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, ec=b.color, ls="-" if b.kind == "gt" else "--")
        )
        gt = b.kind == "gt"
        text = ax.text(x1, y1 if gt else y2, b.label, fontsize=fontsize, color="white", va="bottom" if gt else "top",
                       bbox={"facecolor": b.color, "edgecolor": "none", "pad": 1.0, "alpha": 0.85})  # fmt: skip
        placer.add([text], (x1, y1 if gt else y2), pad=1.0)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    return drawn


# ----------------------------------------------------------------------------------------------------------------
# video files
# ----------------------------------------------------------------------------------------------------------------


def _open_video(path: str | os.PathLike) -> Any:
    av = import_av()
    if not Path(path).is_file():
        raise ValueError(f"--video-file: {path} does not exist")
    try:
        container = av.open(os.fspath(path))
        if not container.streams.video:
            raise ValueError(f"--video-file: {path} has no video stream")
    except av.FFmpegError as exc:
        raise ValueError(f"--video-file: {path} is not a readable video ({exc})") from None
    return container


def read_frames(path: str | os.PathLike, frames: list[int]) -> dict[int, np.ndarray]:
    """RGB frames (H, W, 3) uint8 at the given indices (decode order), decoding once from the start."""
    wanted = set(frames)
    out: dict[int, np.ndarray] = {}
    with _open_video(path) as container:
        for i, fr in enumerate(container.decode(video=0)):
            if i in wanted:
                out[i] = fr.to_ndarray(format="rgb24")
            if len(out) == len(wanted):
                break
    return out


def key_frames(view: VideoView, n: int) -> list[int]:
    """``n`` frames spread over the span where any drawn relation is active (middle of equal slices)."""
    spans = [r["duration"] for r in view.groundtruth] + [view.predictions[i]["duration"] for i in view.top]
    lo = min((int(s[0]) for s in spans), default=0)
    hi = max((int(s[1]) for s in spans), default=view.frame_count)
    hi = max(hi, lo + 1)
    edges = np.linspace(lo, hi, n + 1)
    return sorted({int(f) for f in (edges[:-1] + edges[1:]) / 2})


def keyframe_grid(view: VideoView, n: int) -> tuple[int, int]:
    """(rows, columns) of the key-frame strip: three frames a row (six for portrait video), so that each is large
    enough to read its box labels."""
    cols = max(min(n, 3 if view.width >= view.height else 6), 1)
    return -(-n // cols), cols


def draw_keyframes(
    fig: Figure | SubFigure, view: VideoView, frames: list[int], video_file: str | os.PathLike | None = None
) -> list[DrawnBox]:
    """``frames`` with boxes, in the rows of :func:`keyframe_grid`; returns every box drawn."""
    images = read_frames(video_file, frames) if video_file is not None else {}
    rows, cols = keyframe_grid(view, len(frames))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    drawn = []
    for ax, f in zip(axes, frames, strict=False):
        drawn += draw_frame(ax, view, f, images.get(f))
        ax.set_title(f"frame {f}", fontsize=8)
    for ax in axes[len(frames) :]:
        ax.set_axis_off()
    return drawn


def write_overlay(view: VideoView, video_file: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """An MP4 of the video with the boxes and the active triplets drawn on every frame, written atomically.

    Frames keep the file's size and rate, except that a video under :data:`MIN_OVERLAY_HEIGHT` pixels high is
    scaled up to it (its text would not be legible) and sizes are rounded up to even numbers (H.264 needs them);
    text scales with the frame height. Frames are decoded, drawn and encoded one at a time. Returns ``{"frames",
    "width", "height", "codec", "font_px"}`` (``font_px``: the text's size in output pixels).
    """
    av = import_av()
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with _open_video(video_file) as src:
        stream = src.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or Fraction(view.annotation.fps or 30).limit_denominator(1001)
        scale = max(1.0, MIN_OVERLAY_HEIGHT / max(h, 1))
        sw, sh = round(w * scale), round(h * scale)  # the video's pixels, scaled
        W, H = sw + sw % 2, sh + sh % 2
        # the padded image in annotation pixels: the scaled sw × sh pixels cover the annotation's width × height
        extent = (0.0, view.width * W / sw, view.height * H / sh, 0.0)
        dpi = 100
        fig = Figure(figsize=(W / dpi, H / dpi), dpi=dpi)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        font = H / 45  # points: a text line is H / 20 pixels (18 at 360 high); eight lines leave most of the frame
        step = font * 1.6 * dpi / 72 / H  # one text line in axes fractions
        count = 0

        def encode(f: Any) -> None:
            nonlocal count
            with av.open(f, "w", format="mp4") as dst:
                vs = dst.add_stream(codec, rate=rate)
                vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
                for i, fr in enumerate(src.decode(video=0)):
                    if (sw, sh) != (w, h):
                        fr = fr.reformat(width=sw, height=sh, interpolation="BICUBIC")
                    padded = np.zeros((H, W, 3), dtype=np.uint8)
                    padded[:sh, :sw] = fr.to_ndarray(format="rgb24")
                    ax.clear()
                    lines = active_triplets(view, i)
                    gt = [x for x in lines if x[0].startswith("GT ")]
                    shown = [x for x in lines if not x[0].startswith("GT ")][:4] + gt[:4]
                    texts = []
                    for k, (text, color) in enumerate(shown):
                        box = {"facecolor": color, "edgecolor": "none", "pad": 0.6, "alpha": 0.8}
                        texts.append(ax.text(0.01, 0.99 - k * step, text, transform=ax.transAxes, va="top",
                                             fontsize=font, color="white", bbox=box, zorder=4))  # fmt: skip
                    draw_frame(ax, view, i, padded, fontsize=font, extent=extent, avoid=texts)
                    ax.set_aspect("auto")  # the frame fills the video, whatever the annotation's aspect
                    ax.set_axis_off()
                    canvas.draw()
                    rgb = np.asarray(canvas.buffer_rgba())[:H, :W, :3]
                    if rgb.shape[:2] != (H, W):  # Agg rounds the figure size; never by more than a pixel
                        rgb = np.pad(rgb, ((0, H - rgb.shape[0]), (0, W - rgb.shape[1]), (0, 0)))
                    for packet in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                        dst.mux(packet)
                    count += 1
                if count == 0:
                    raise ValueError(f"--video-file: {video_file} has no frames")
                for packet in vs.encode():
                    dst.mux(packet)

        atomic_write(out, encode)
    return {"frames": count, "width": W, "height": H, "codec": codec, "font_px": font * dpi / 72}
