"""The three steps over a list of videos: detect, tracklets, features. Each is resumable, reports a bad video by
name and goes on, and returns a :class:`Summary`.

* detect: a video whose detections file exists is skipped (resume per video).
* tracklets: a segment whose proposal file exists is skipped.
* features: a segment whose feature and union-feature files both exist is skipped; otherwise both are (re)written,
  so a segment's two files always come from one tower. Ground-truth proposal files are written first when missing.

Every file is written atomically; a failure in one video leaves every file already written in place.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from uasan.data import parse_segment_tag, read_annotation, read_proposals, segment_tag, segments
from uasan.extract.detections import detections_path, read_detections, write_detections
from uasan.extract.features import FeatureEngine, Listener, SegmentJob, VideoTask
from uasan.extract.layout import KINDS, Layout, VideoItem, save_npy
from uasan.extract.towers import ObjectDetector
from uasan.extract.tracklets import dump_proposals, gt_tracklets, segment_tracklets
from uasan.extract.video import VideoError, iter_frames
from uasan.files import atomic_write_text

__all__ = ["Summary", "run_detect", "run_features", "run_tracklets"]

T = TypeVar("T")
_PER_VIDEO_ERRORS = (VideoError, ValueError, OSError)


@dataclass
class Summary:
    """What one step did."""

    step: str
    videos: int = 0
    done: list[str] = field(default_factory=list)  # videos with something written
    complete: list[str] = field(default_factory=list)  # videos with nothing left to do
    failed: dict[str, str] = field(default_factory=dict)  # vid → reason
    warnings: dict[str, str] = field(default_factory=dict)
    segments: int = 0  # segments (or videos, for detect) written
    skipped: int = 0  # segments found complete
    crops: int = 0  # crops through the tower
    requests: int = 0  # crops a direct computation would have run
    seconds: float = 0.0

    def report(self) -> str:
        head = (
            f"{self.step}: {self.videos} videos: {len(self.done)} written, {len(self.complete)} already complete, "
            f"{len(self.failed)} failed"
        )
        if self.step != "detect":
            head += f"; {self.segments} segments written, {self.skipped} skipped as complete"
        lines = [head]
        if self.crops:
            rate = self.crops / max(self.seconds, 1e-9)
            lines.append(
                f"  {self.crops} crops through the tower ({self.requests} before deduplication), "
                f"{rate:.1f} crops/s over {self.seconds:.1f} s"
            )
        lines += [f"  warning {vid}: {why}" for vid, why in self.warnings.items()]
        lines += [f"  FAILED {vid}: {why}" for vid, why in self.failed.items()]
        return "\n".join(lines)


def _bar(total: int, desc: str, quiet: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="video", disable=quiet, dynamic_ncols=True)


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, (VideoError, ValueError)) else f"{type(exc).__name__}: {exc}"


def prefetch(it: Iterable[T], size: int = 4) -> Iterator[T]:
    """Runs an iterator in a thread, ``size`` items ahead (decoding overlaps the detector). Re-raises its error."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    end = object()

    def work() -> None:
        try:
            for x in it:
                while not stop.is_set():
                    try:
                        q.put((x, None), timeout=0.1)
                        break
                    except queue.Full:
                        pass
                if stop.is_set():
                    return
            q.put((end, None))
        except BaseException as exc:  # handed to the consumer
            q.put((end, exc))

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            x, exc = q.get()
            if x is end:
                if exc is not None:
                    raise exc
                return
            yield x
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass


# ---------------------------------------------------------------------------------------------------------------
# detect
# ---------------------------------------------------------------------------------------------------------------


def _each_video(step: str, items: list[VideoItem], quiet: bool, work: Callable[[VideoItem, Summary], None]) -> Summary:
    """The loop of the detect and tracklets steps: ``work(item, summary)`` per video under a progress bar; a
    per-video error marks that video failed (with its reason) and the others go on."""
    summary = Summary(step, videos=len(items))
    t0 = time.perf_counter()
    bar = _bar(len(items), step, quiet)
    for item in items:
        try:
            work(item, summary)
        except _PER_VIDEO_ERRORS as exc:
            summary.failed[item.vid] = _reason(exc)
        finally:
            bar.update(1)
    bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def run_detect(
    items: list[VideoItem],
    videos: dict[str, Path],
    detector: ObjectDetector,
    out_dir: Path,
    *,
    batch_size: int = 8,
    overwrite: bool = False,
    quiet: bool = False,
) -> Summary:
    """Runs ``detector`` on frames ``[0, frame_count)`` of every video; writes ``out_dir/<vid>.json``."""
    if batch_size < 1:
        raise ValueError(f"--det-batch: expected >= 1 frames per detector batch, got {batch_size}")

    def detect(item: VideoItem, summary: Summary) -> None:
        if not overwrite and detections_path(out_dir, item.vid) is not None:
            summary.complete.append(item.vid)
            return
        frame_count = read_annotation(item.annotation).frame_count
        path = videos.get(item.vid)
        if path is None:
            raise VideoError(f"{item.vid}: no video file found")
        per_frame: list[tuple[Any, Any, Any]] = []
        batch: list[np.ndarray] = []
        for f, img in prefetch(_frames_up_to(path, frame_count)):
            del f
            batch.append(img)
            if len(batch) == batch_size:
                per_frame.extend(detector.detect(batch))
                batch = []
        per_frame.extend(detector.detect(batch))
        if len(per_frame) < frame_count:
            summary.warnings[item.vid] = f"{path}: {len(per_frame)} frames decoded, the annotation says {frame_count}"
        write_detections(out_dir / f"{item.vid}.json", per_frame, item.vid)
        summary.done.append(item.vid)
        summary.segments += 1

    return _each_video("detect", items, quiet, detect)


def _frames_up_to(path: Path, count: int) -> Iterator[tuple[int, np.ndarray]]:
    for f, img in iter_frames(path):
        if f >= count:
            return
        yield f, img


# ---------------------------------------------------------------------------------------------------------------
# tracklets
# ---------------------------------------------------------------------------------------------------------------


def run_tracklets(
    items: list[VideoItem],
    layout: Layout,
    det_dir: Path,
    *,
    overwrite: bool = False,
    quiet: bool = False,
    **options: Any,
) -> Summary:
    """Seq-NMS tracklets of every segment of every video (``options``: :func:`segment_tracklets` keywords)."""

    def tracklets(item: VideoItem, summary: Summary) -> None:
        ann = read_annotation(item.annotation)
        todo = [
            (fs, fe)
            for fs, fe in segments(ann.frame_count)
            if overwrite or not layout.proposals("det", item.subset, item.vid, segment_tag(item.vid, fs, fe)).exists()
        ]
        summary.skipped += len(segments(ann.frame_count)) - len(todo)
        if not todo:
            summary.complete.append(item.vid)
            return
        path = detections_path(det_dir, item.vid)
        if path is None:
            raise ValueError(
                f"{det_dir}/{item.vid}.json: no detections file (nor .npz); run the detect step "
                f"(--detector) or write one per video (format: uasan.extract.detections)"
            )
        dets = read_detections(path)
        for fs, fe in todo:
            props = segment_tracklets(dets, fs, fe, **options)
            tag = segment_tag(item.vid, fs, fe)
            atomic_write_text(layout.proposals("det", item.subset, item.vid, tag), dump_proposals(props))
            summary.segments += 1
        summary.done.append(item.vid)

    return _each_video("tracklets", items, quiet, tracklets)


# ---------------------------------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------------------------------


def _writer(feat: Path, union: Path, dtype: np.dtype) -> Callable[[np.ndarray, np.ndarray], None]:
    def write(traj: np.ndarray, pair: np.ndarray) -> None:
        save_npy(feat, traj.astype(dtype))
        save_npy(union, pair.astype(dtype))

    return write


def _segment_jobs(
    item: VideoItem, layout: Layout, kinds: tuple[str, ...], dtype: np.dtype, overwrite: bool, counters: dict[str, int]
) -> list[SegmentJob]:
    """The segments of a video still to featurize (writes missing ground-truth proposal files on the way)."""
    ann = read_annotation(item.annotation)
    grid = segments(ann.frame_count)
    for kind in kinds:  # temp files of writes a hard kill interrupted (this video's folders are ours alone)
        for i in (1, 2):
            folder = layout.out / KINDS[kind][i] / item.subset / item.vid
            for name in _listdir(folder):
                if name.startswith(".") and name.endswith(".tmp"):
                    (folder / name).unlink(missing_ok=True)
    jobs = []
    for kind in kinds:
        if kind == "gt":
            tags = [(segment_tag(item.vid, fs, fe), fs, fe) for fs, fe in grid]
            for tag, fs, fe in tags:
                p = layout.proposals("gt", item.subset, item.vid, tag)
                if overwrite or not p.exists():
                    atomic_write_text(p, dump_proposals(gt_tracklets(ann, fs, fe)))
        else:
            folder = layout.proposal_dir("det", item.subset, item.vid)
            names = sorted(n[:-5] for n in (_listdir(folder)) if n.endswith(".json") and not n.startswith("."))
            if grid and not names:
                raise ValueError(f"{folder}: no proposal files; run `python -m uasan.extract tracklets` first")
            tags = []
            for name in names:
                vid, fs, fe = parse_segment_tag(name)
                if vid != item.vid:
                    raise ValueError(f"{folder / name}.json: segment tag names video {vid!r}")
                tags.append((name, fs, fe))
        for tag, fs, fe in tags:
            feat = layout.features(kind, item.subset, item.vid, tag)
            union = layout.union_features(kind, item.subset, item.vid, tag)
            if not overwrite and feat.exists() and union.exists():
                counters["skipped"] += 1
                continue
            prop = read_proposals(
                layout.proposals(kind, item.subset, item.vid, tag),
                filter=False,
                gt=kind == "gt",
                segment_length=fe - fs,
            )
            boxes, valid = prop.padded(fe - fs)  # (n, L, 4), (n, L)
            jobs.append(SegmentJob(tag, fs, boxes, valid, _writer(feat, union, dtype)))
    return jobs


def _listdir(folder: Path) -> list[str]:
    return os.listdir(folder) if folder.is_dir() else []


class _Progress(Listener):
    def __init__(self, summary: Summary, bar: Any, t0: float) -> None:
        self.summary, self.bar, self.t0 = summary, bar, t0

    def _postfix(self) -> None:
        s = self.summary
        rate = s.crops / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix(segments=s.segments, skipped=s.skipped, failed=len(s.failed), crops_s=f"{rate:.1f}")

    def segment_done(self, task: VideoTask, job: SegmentJob) -> None:
        self.summary.segments += 1
        self._postfix()

    def crops_done(self, count: int, requests: int) -> None:
        self.summary.crops += count
        self.summary.requests += requests

    def video_done(self, task: VideoTask, num_jobs: int) -> None:
        (self.summary.done if num_jobs else self.summary.complete).append(task.name)
        self.bar.update(1)
        self._postfix()

    def video_failed(self, task: VideoTask, exc: BaseException) -> None:
        self.summary.failed[task.name] = _reason(exc)
        self.bar.update(1)
        self._postfix()


def run_features(
    items: list[VideoItem],
    layout: Layout,
    videos: dict[str, Path],
    engine: FeatureEngine,
    *,
    gt: bool = True,
    dtype: str = "float32",
    overwrite: bool = False,
    quiet: bool = False,
) -> Summary:
    """Features of the detected proposals (and, with ``gt``, of the ground-truth trajectories) of every video."""
    summary = Summary("features", videos=len(items))
    kinds = ("det", "gt") if gt else ("det",)
    counters = {"skipped": 0}
    np_dtype = np.dtype(dtype)

    def jobs_of(item: VideoItem) -> Callable[[], list[SegmentJob]]:
        def make() -> list[SegmentJob]:
            before = counters["skipped"]
            try:
                return _segment_jobs(item, layout, kinds, np_dtype, overwrite, counters)
            finally:
                summary.skipped += counters["skipped"] - before

        return make

    tasks = [VideoTask(item.vid, videos.get(item.vid), jobs_of(item)) for item in items]
    t0 = time.perf_counter()
    bar = _bar(len(items), "features", quiet)
    try:
        engine.run(tasks, _Progress(summary, bar, t0))
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
    return summary
