"""Error bars for the relation metrics: a bootstrap over videos, and a paired bootstrap for the difference of two
models evaluated on the same videos.

The official metrics aggregate per video: ``R@K = Σ_v hits_v(K) / Σ_v n_gt_v`` (a ratio of sums over every video
with ground truth) and ``mAP = mean_v AP_v`` (over the videos with ground truth). A bootstrap replicate draws V
videos with replacement from those V and recomputes both from the drawn videos' numbers; the 95 % interval is the
2.5 / 97.5 percentiles of B replicates (percentile bootstrap, Efron & Tibshirani 1993, ch. 13). The paired version
draws the *same* videos for both models, so the video-to-video variation both share cancels in the difference —
what tells two models apart on one test set. Replicates are seeded: the same inputs give the same interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "VideoScores",
    "bootstrap_intervals",
    "compare_runs",
    "paired_difference",
    "strip_per_video",
    "video_scores",
]

DEFAULT_REPLICATES = 1000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class VideoScores:
    """Per-video numbers behind one evaluation: ``videos`` (V,) with ground truth, ``ap`` (V,), ``hits`` (V, K) the
    hits among each video's top ``ks[j]`` predictions, ``n_gt`` (V,) ground-truth relations."""

    videos: tuple[Any, ...]
    ap: np.ndarray
    hits: np.ndarray
    n_gt: np.ndarray
    ks: tuple[int, ...]

    def metrics(self, idx: np.ndarray | None = None) -> dict[str, np.ndarray | float]:
        """mAP and R@K of the videos ``idx`` (B, V') per row, or of all videos."""
        if idx is None:
            idx = np.arange(len(self.videos))[None]
        out: dict[str, Any] = {"mAP": self.ap[idx].mean(-1) if idx.shape[-1] else np.zeros(len(idx))}
        gt = self.n_gt[idx].sum(-1)
        for j, k in enumerate(self.ks):
            out[f"R@{k}"] = np.divide(self.hits[idx, j].sum(-1), gt, out=np.zeros(len(idx)), where=gt > 0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "videos": list(self.videos),
            "ap": self.ap.tolist(),
            "hits": {f"R@{k}": self.hits[:, j].tolist() for j, k in enumerate(self.ks)},
            "n_gt": self.n_gt.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VideoScores:
        ks = tuple(int(k.split("@")[1]) for k in data["hits"])
        hits = np.array([data["hits"][f"R@{k}"] for k in ks], dtype=np.float64).T.reshape(len(data["videos"]), len(ks))
        return cls(tuple(data["videos"]), np.asarray(data["ap"], float), hits, np.asarray(data["n_gt"], float), ks)


def video_scores(
    per_video_ap: Mapping[Any, float],
    per_video_hits: Mapping[Any, Sequence[int]],
    n_gt: Mapping[Any, int],
    ks: Sequence[int],
) -> VideoScores:
    """:class:`VideoScores` of the videos with ground truth (``n_gt[v] > 0``), in sorted order; a video the
    predictions missed has AP 0 and no hits."""
    videos = tuple(sorted((v for v, n in n_gt.items() if n > 0), key=str))
    ap = np.array([per_video_ap.get(v, 0.0) for v in videos], dtype=np.float64)
    hits = np.array([list(per_video_hits.get(v, [0] * len(ks))) for v in videos], dtype=np.float64)
    return VideoScores(videos, ap, hits.reshape(len(videos), len(ks)), np.array([n_gt[v] for v in videos], float),
                       tuple(int(k) for k in ks))  # fmt: skip


def _draws(n: int, replicates: int, seed: int) -> np.ndarray:
    if replicates < 1:
        raise ValueError(f"bootstrap: expected replicates >= 1, got {replicates}")
    return np.random.default_rng(seed).integers(0, n, size=(replicates, n)) if n else np.zeros((replicates, 0), int)


def bootstrap_intervals(
    scores: VideoScores, *, replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED, level: float = 0.95
) -> dict[str, list[float]]:
    """``{metric: [low, high]}``: the ``level`` percentile interval of every metric over ``replicates`` resamples of
    the videos (``[v, v]`` with fewer than two videos: nothing to resample)."""
    if not 0 < level < 1:
        raise ValueError(f"bootstrap: expected level in (0, 1), got {level}")
    point = {k: float(v[0]) for k, v in scores.metrics().items()}
    if len(scores.videos) < 2:
        return {k: [v, v] for k, v in point.items()}
    reps = scores.metrics(_draws(len(scores.videos), replicates, seed))
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    return {k: [float(x) for x in np.percentile(v, q)] for k, v in reps.items()}


def paired_difference(
    a: VideoScores,
    b: VideoScores,
    *,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """``{metric: {"diff", "ci", "se", "significant"}}`` of ``a − b`` on the same videos: the point difference, its
    ``level`` percentile interval and standard error over paired resamples (the same videos drawn for both), and
    whether the interval excludes 0."""
    if a.videos != b.videos or a.ks != b.ks:
        raise ValueError("paired_difference: the two evaluations must cover the same videos with the same K")
    pa, pb = a.metrics(), b.metrics()
    idx = _draws(len(a.videos), replicates, seed) if len(a.videos) >= 2 else None
    ra, rb = (a.metrics(idx), b.metrics(idx)) if idx is not None else (pa, pb)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out = {}
    for key in pa:
        d = np.asarray(ra[key]) - np.asarray(rb[key])
        lo, hi = (float(x) for x in np.percentile(d, q))
        out[key] = {
            "diff": float(pa[key][0] - pb[key][0]),
            "ci": [lo, hi],
            "se": float(d.std(ddof=1)) if d.size > 1 else 0.0,
            "significant": bool(lo > 0 or hi < 0),
        }
    return out


def compare_runs(
    per_video_a: Mapping[str, Mapping[str, Mapping[str, Any]]],
    per_video_b: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``{mode: {split: paired_difference(a, b)}}`` over the modes and splits both runs have, from the
    ``metrics["per_video"]`` of two evaluations on the same test videos (``{mode: {split: VideoScores.to_dict()}}``,
    as :func:`uasan.predict.evaluate_predictions` gives them)."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for mode, by_split in per_video_a.items():
        for split, a in by_split.items():
            b = per_video_b.get(mode, {}).get(split)
            if b is not None:
                out.setdefault(mode, {})[split] = paired_difference(
                    VideoScores.from_dict(a), VideoScores.from_dict(b), replicates=replicates, seed=seed
                )
    return out


def strip_per_video(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` without the per-video numbers (``"per_video"`` at any depth): what ``metrics.json`` keeps."""
    return {k: strip_per_video(v) if isinstance(v, Mapping) else v for k, v in metrics.items() if k != "per_video"}
