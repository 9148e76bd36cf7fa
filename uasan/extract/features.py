"""Trajectory and union-region features of video segments: the fast engine and the direct reference beside it.

For a segment with n trajectories (boxes (n, L, 4) on its frame grid) the features are, per trajectory i and per
ordered pair (s, o), s ≠ o, row-major (``uasan.data.all_pairs``)::

    traj[i]   = mean over i's K sampled frames t of  tower(processor(square(crop(frame t, box_i(t)))))
    union[r]  = mean over (s, o)'s K sampled frames t of  tower(processor(square(crop(frame t, union_so(t)))))

(definitions of sampling, crop and square padding in :mod:`uasan.extract.crops`): (n, D) and (n(n−1), D), or
(n, S, D) and (n(n−1), S, D) tokens. A pair that never co-occurs has a zero row.

:func:`segment_features_ref` computes exactly that, one crop at a time. :class:`FeatureEngine` computes the same
numbers fast:

* crops are deduplicated per segment (:func:`uasan.extract.crops.plan_segment`);
* frames are decoded once, in order (:func:`uasan.extract.video.iter_frames`), by a producer thread that cuts the
  crops and runs the image processor (on ``workers`` threads) while the main thread runs the tower on the previous
  batches: decoding overlaps the model;
* the tower sees batches of ``batch_size`` crops; on CUDA in bf16 autocast under ``torch.inference_mode``.

Determinism: a segment's batches hold only its own crops, in its plan's (frame, rectangle) order, so its features
depend on nothing else: a resumed run or a shard writes the same bytes as one uninterrupted run with the same
settings (batch size and device included). Memory: the producer keeps fewer than ``batch_size`` raw crops per
active segment (those whose sampled frames span the current frame: a few overlapping ones), at most ``prefetch``
batches wait for the model, and one decoded frame lives at a time, however long the video.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uasan.data import all_pairs
from uasan.extract.crops import SegmentPlan, crop_rects, plan_segment, sample_positions, take_crop
from uasan.extract.towers import VisionTower
from uasan.extract.video import VideoError, iter_frames, video_size

__all__ = ["FeatureEngine", "Listener", "SegmentJob", "VideoTask", "segment_features_ref"]


# ---------------------------------------------------------------------------------------------------------------
# reference
# ---------------------------------------------------------------------------------------------------------------


def segment_features_ref(
    frame: Callable[[int], np.ndarray],
    boxes: np.ndarray,
    valid: np.ndarray,
    fstart: int,
    tower: VisionTower,
    k: int = 8,
    tokens: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The direct computation: for each trajectory and each ordered pair, each sampled frame's crop through the
    processor and the tower alone, then the mean. ``frame(f)`` gives frame f (H, W, 3) uint8.

    Returns (n, D) and (n(n−1), D) float32, or (n, S, D) and (n(n−1), S, D) with ``tokens``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    n = valid.shape[0]
    shape = (tower.num_tokens, tower.dim) if tokens else (tower.dim,)

    def mean_of(crops: list[tuple[int, np.ndarray]]) -> np.ndarray:
        if not crops:
            return np.zeros(shape, np.float32)
        feats = []
        for f, box in crops:
            img = frame(f)
            rect = crop_rects(box, img.shape[1], img.shape[0])
            feats.append(tower.encode(tower.preprocess([take_crop(img, rect, tower.fill)]), tokens)[0])
        return torch.stack(feats).mean(0).numpy()

    traj = np.zeros((n, *shape), np.float32)
    for i in range(n):
        t, ok = sample_positions(valid[i][None], k)
        traj[i] = mean_of([(fstart + int(x), boxes[i, x]) for x in t[0][ok[0]]])
    pairs = all_pairs(n)
    union = np.zeros((len(pairs), *shape), np.float32)
    for r, (s, o) in enumerate(pairs):
        t, ok = sample_positions((valid[s] & valid[o])[None], k)
        crops = []
        for x in t[0][ok[0]]:
            box = np.concatenate(
                [np.minimum(boxes[s, x, :2], boxes[o, x, :2]), np.maximum(boxes[s, x, 2:], boxes[o, x, 2:])]
            )
            crops.append((fstart + int(x), box))
        union[r] = mean_of(crops)
    return traj, union


# ---------------------------------------------------------------------------------------------------------------
# engine
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class SegmentJob:
    """One segment to featurize: its trajectories and where the result goes."""

    tag: str
    fstart: int
    boxes: np.ndarray  # (n, L, 4) on the segment's frame grid
    valid: np.ndarray  # (n, L) bool
    write: Callable[[np.ndarray, np.ndarray], None]  # (traj (n, [S,] D), union (P, [S,] D)) → files
    plan: SegmentPlan | None = None  # filled by the engine


@dataclass
class VideoTask:
    """A video and a callable that lists its segment jobs (run by the engine's producer thread, so reading the
    proposal files overlaps the model too; a ``ValueError`` from it fails this video only)."""

    name: str
    path: Path | None
    jobs: Callable[[], list[SegmentJob]]
    info: dict[str, Any] = field(default_factory=dict)


class Listener:
    """Callbacks of :meth:`FeatureEngine.run` (all in the calling thread). Override what you need."""

    def segment_done(self, task: VideoTask, job: SegmentJob) -> None: ...
    def crops_done(self, count: int, requests: int) -> None: ...
    def video_done(self, task: VideoTask, num_jobs: int) -> None: ...
    def video_failed(self, task: VideoTask, exc: BaseException) -> None: ...


_END = object()
_PER_VIDEO_ERRORS = (VideoError, ValueError, OSError)


class FeatureEngine:
    """Batched, deduplicated, pipelined feature extraction (module docstring)."""

    def __init__(
        self,
        tower: VisionTower,
        *,
        frames: int = 8,
        batch_size: int = 64,
        tokens: bool = False,
        workers: int = 1,
        prefetch: int = 4,
        impl: str = "auto",
    ) -> None:
        if frames < 1 or batch_size < 1 or workers < 0 or prefetch < 1:
            raise ValueError(
                f"FeatureEngine: expected frames >= 1, batch_size >= 1, workers >= 0, prefetch >= 1, got "
                f"{frames}, {batch_size}, {workers}, {prefetch}"
            )
        self.tower, self.frames, self.batch_size, self.tokens = tower, frames, batch_size, tokens
        self.workers, self.prefetch, self.impl = workers, prefetch, impl

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (self.tower.num_tokens, self.tower.dim) if self.tokens else (self.tower.dim,)

    def run(self, tasks: Iterable[VideoTask], listener: Listener | None = None) -> None:
        """Featurizes every job of every task, writing each segment as soon as its last batch is through."""
        listener = listener or Listener()
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        producer = threading.Thread(target=self._produce, args=(list(tasks), q, stop), daemon=True)
        producer.start()
        try:
            self._consume(q, listener)
        finally:
            stop.set()
            while producer.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            producer.join()

    # -- producer thread: jobs, plans, decoding, crops, image processor --------------------------------------

    def _produce(self, tasks: Sequence[VideoTask], q: queue.Queue, stop: threading.Event) -> None:
        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="uasan-extract") if self.workers else None
        try:
            for ti, task in enumerate(tasks):
                if stop.is_set():
                    return
                try:
                    self._produce_video(ti, task, put, pool)
                except _PER_VIDEO_ERRORS as exc:
                    if not put(("failed", ti, task, exc)):
                        return
        except BaseException as exc:  # a bug: the consumer re-raises it
            put(("crash", exc))
        finally:
            put(_END)
            if pool is not None:
                # queued preprocessing still feeds the consumer; only an aborted run drops it
                pool.shutdown(wait=False, cancel_futures=stop.is_set())

    def _produce_video(self, ti: int, task: VideoTask, put: Callable[[Any], bool], pool: ThreadPoolExecutor | None):
        jobs = task.jobs()
        if not jobs:
            put(("video", ti, task, 0))
            return
        if task.path is None:
            raise VideoError(f"{task.name}: no video file found")
        W, H = video_size(task.path)
        for job in jobs:
            job.plan = plan_segment(job.boxes, job.valid, job.fstart, W, H, self.frames, impl=self.impl)
        if not put(("start", ti, task, jobs)):
            return
        todo = []  # jobs with crops, by their first crop frame
        for j, job in enumerate(jobs):
            if job.plan.num_crops:
                todo.append(j)
            elif not put(("segment", ti, j)):
                return
        todo.sort(key=lambda j: (int(jobs[j].plan.frames[0]), j))
        needed = np.unique(np.concatenate([jobs[j].plan.frames for j in todo])) if todo else np.zeros(0, np.int64)
        pending: dict[int, list[np.ndarray]] = {j: [] for j in todo}
        first = dict.fromkeys(todo, 0)  # index of the pending batch's first crop
        cursor = dict.fromkeys(todo, 0)  # next crop to cut
        fill = self.tower.fill

        def flush(j: int) -> bool:
            crops = pending[j]
            if not crops:
                return True
            pending[j] = []
            work: Any = pool.submit(self.tower.preprocess, crops) if pool else self.tower.preprocess(crops)
            c0 = first[j]
            first[j] += len(crops)
            return put(("batch", ti, j, c0, work))

        # Only the jobs whose frame span covers the current frame are active (a few overlapping segments), so no
        # per-video index of crops is built: memory stays bounded however long the video is.
        active: list[int] = []
        nxt = 0
        for f, img in iter_frames(task.path, needed):
            if img.shape[:2] != (H, W):
                raise VideoError(f"{task.path}: frame {f} is {img.shape[1]}x{img.shape[0]}, the stream said {W}x{H}")
            while nxt < len(todo) and jobs[todo[nxt]].plan.frames[0] <= f:
                active.append(todo[nxt])
                nxt += 1
            still = []
            for j in active:
                plan, c = jobs[j].plan, cursor[j]
                while c < plan.num_crops and plan.frames[c] == f:
                    pending[j].append(take_crop(img, plan.rects[c], fill))
                    c += 1
                    if len(pending[j]) == self.batch_size and not flush(j):
                        return
                cursor[j] = c
                if c < plan.num_crops:
                    still.append(j)
                elif not (flush(j) and put(("segment", ti, j))):
                    return
            active = still
        put(("video", ti, task, len(jobs)))

    # -- consumer (calling thread): the tower, accumulation, writing ------------------------------------------

    def _consume(self, q: queue.Queue, listener: Listener) -> None:
        jobs: dict[int, list[SegmentJob]] = {}
        tasks: dict[int, VideoTask] = {}
        sums: dict[tuple[int, int], torch.Tensor] = {}
        failed: set[int] = set()
        while True:
            item = q.get()
            if item is _END:
                return
            kind = item[0]
            if kind == "crash":
                raise item[1]
            ti = item[1]
            if ti in failed:
                continue
            try:
                if kind == "start":
                    tasks[ti], jobs[ti] = item[2], item[3]
                elif kind == "batch":
                    _, _, j, c0, work = item
                    pixels = work.result() if isinstance(work, Future) else work
                    feats = self.tower.encode(pixels, self.tokens)  # (B, D) or (B, S, D)
                    plan = jobs[ti][j].plan
                    lo, hi = np.searchsorted(plan.entry_crop, [c0, c0 + len(feats)])
                    acc = sums.get((ti, j))
                    if acc is None:
                        acc = sums[(ti, j)] = torch.zeros((plan.n + plan.num_pairs, *feats.shape[1:]))
                    acc.index_add_(
                        0,
                        torch.from_numpy(plan.entry_target[lo:hi]),
                        feats[torch.from_numpy(plan.entry_crop[lo:hi] - c0)],
                    )
                    listener.crops_done(len(feats), int(hi - lo))
                elif kind == "segment":
                    j = item[2]
                    job = jobs[ti][j]
                    self._finish(job, sums.pop((ti, j), None))
                    listener.segment_done(tasks[ti], job)
                elif kind == "video":
                    listener.video_done(item[2], item[3])
                    jobs.pop(ti, None)
                elif kind == "failed":
                    failed.add(ti)
                    for key in [k for k in sums if k[0] == ti]:
                        del sums[key]
                    listener.video_failed(item[2], item[3])
            except _PER_VIDEO_ERRORS as exc:  # e.g. the image processor refused a crop
                failed.add(ti)
                for key in [k for k in sums if k[0] == ti]:
                    del sums[key]
                listener.video_failed(tasks[ti], exc)

    def _finish(self, job: SegmentJob, acc: torch.Tensor | None) -> None:
        plan = job.plan
        rows = plan.n + plan.num_pairs
        if acc is None:
            acc = torch.zeros((rows, *self.row_shape))
        counts = torch.from_numpy(np.maximum(plan.counts, 1)).to(acc.dtype).reshape(-1, *([1] * (acc.dim() - 1)))
        mean = (acc / counts).numpy()  # a target without crops keeps its zero sum
        job.write(mean[: plan.n], mean[plan.n :])
