"""CPU threads of a training process (``train.num_threads``).

0 (auto) keeps torch's default: one intra-op thread per core, or ``OMP_NUM_THREADS`` when set. What keeps that
graceful on a machine shared with other busy processes is the OpenMP wait policy the command-line tools set before
torch loads (``uasan._openmp``: ``OMP_WAIT_POLICY=PASSIVE``), not fewer threads: measured on a shared 2-core machine,
a stage-2 step with 2 threads took 1.2–1.9 s with it and 10–22 s without, 1.4–4.6 s with 1 thread
(benchmarks/RESULTS.md). Set ``train.num_threads=1`` to leave the other cores to other work.
"""

from __future__ import annotations

import torch

__all__ = ["configure_threads"]


def configure_threads(num_threads: int = 0) -> int:
    """Sets torch's intra-op threads (``torch.set_num_threads``) to ``num_threads`` (0 = torch's default) and returns
    the number in effect."""
    if num_threads < 0:
        raise ValueError(f"train.num_threads: expected >= 0 (0 = auto), got {num_threads}")
    if num_threads:
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()
