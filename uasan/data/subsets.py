"""The held-out validation videos of a real data set: a seeded, machine-independent choice among the training videos.

Real data sets publish train and test only (VidVRD ``train``/``test``, VidOR ``training``/``validation``, the latter
used as the test set by the open-vocabulary protocol). Validation — per-epoch evaluation, curves, checkpoint
choice — must not touch the test videos, so a fraction of the *training* videos is held out and never used for a
gradient step::

    rank(vid) = BLAKE2b-64(f"{seed}:{vid}")        (hashlib; the same on every machine and Python version)
    k = round(fraction * N), at least 1 when fraction > 0 and N >= 2, at most N - 1
    val = the k training videos of smallest (rank, vid); train = the others

Ranking (rather than a per-video threshold) gives exactly ``k`` videos, so a tiny data set still has a validation
video. A data set root that ships its own validation annotations (``ROOT/val/`` next to ``train/``, as the
synthetic world writes) uses those instead and trains on every training video.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

DEFAULT_VAL_FRACTION = 0.1
DEFAULT_VAL_SEED = 0


def check_val_fraction(fraction: float, name: str = "val_fraction") -> float:
    """``fraction`` as a float in [0, 1), or a ``ValueError`` naming ``name``."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f"{name}: expected a number in [0, 1), got {fraction!r}")
    return float(fraction)


def video_rank(vid: str, seed: int = DEFAULT_VAL_SEED) -> int:
    """The 64-bit seeded hash of a video id that orders the training videos for the hold-out."""
    digest = hashlib.blake2b(f"{int(seed)}:{vid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def num_held_out(n: int, fraction: float) -> int:
    """How many of ``n`` training videos are held out for validation (see the module docstring)."""
    fraction = check_val_fraction(fraction)
    if fraction == 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(fraction * n)))


def held_out_videos(
    vids: Iterable[str], fraction: float = DEFAULT_VAL_FRACTION, seed: int = DEFAULT_VAL_SEED
) -> frozenset[str]:
    """The validation videos among the training videos ``vids`` (order and duplicates of ``vids`` do not matter)."""
    unique = sorted(set(vids))
    k = num_held_out(len(unique), fraction)
    ranked = sorted(unique, key=lambda v: (video_rank(v, seed), v))
    return frozenset(ranked[:k])
