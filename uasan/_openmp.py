"""Sets the OpenMP wait policy of the command-line tools before torch loads its OpenMP runtime.

OpenMP reads ``OMP_WAIT_POLICY`` once, when the runtime starts (at ``import torch``), so this module must be imported
before torch: ``uasan.train`` and ``uasan.predict`` import it first. By default libgomp lets a thread that reaches
the end of a parallel region spin for a while before it sleeps. On a machine where other processes compete for the
cores, the spinning threads and a descheduled straggler stall every one of the many small parallel regions of a
training step: a stage-2 step of the synthetic config took 10–22 s instead of 1.2–1.9 s with ``PASSIVE`` (threads
sleep at once) on a shared 2-core machine (benchmarks/RESULTS.md, "Threads under CPU contention"). A value the user
set is kept.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
