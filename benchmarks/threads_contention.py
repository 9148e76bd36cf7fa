"""Stage-2 step time vs. intra-op threads, with and without CPU contention (issue 14, item 8).

    python benchmarks/threads_contention.py [--world DIR] [--steps 8] [--busy 0 1 2]

Each cell runs in a fresh process (OpenMP reads its environment once, at start-up): the synthetic config's model
(``uasan/configs/synth.yaml``) takes stage-2 steps (forward, backward, AdamW) on the same 8-segment batches; the
median step time over ``--steps`` steps after 2 warm-up steps is printed. Contention = ``--busy`` other processes
spinning on the CPU (``while True: pass``) while the steps run, the situation of a shared 2-core machine. Cells:
``threads`` = ``train.num_threads`` (``auto`` = 0: torch's default, one per core), and
the OpenMP wait policy: ``default`` = ``OMP_WAIT_POLICY`` unset (libgomp spins, then sleeps), ``uasan`` = what the
command-line tools set before torch loads (``uasan._openmp``: ``PASSIVE``), or any value given with ``--policies``.
Not collected by pytest (a measurement, not a check); the figures go to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def worker(world: str, threads: str, policy: str, steps: int) -> dict[str, float]:
    if policy == "uasan":  # what python -m uasan.train does: uasan._openmp before torch
        import uasan._openmp  # noqa: F401
    import torch

    from uasan.config import TrainConfig, load_config
    from uasan.data import SegmentDataset, collate_segments
    from uasan.engine.threads import configure_threads
    from uasan.engine.trainer import build_optimizer
    from uasan.models import UASAN
    from uasan.predict import model_spec, quiet_libraries
    from uasan.train import stage2_loss

    quiet_libraries()
    cfg = load_config(TrainConfig, "synth", [f"train.num_threads={0 if threads == 'auto' else threads}"])
    n = configure_threads(cfg.train.num_threads)
    ds = SegmentDataset(world, "train")
    batches = [collate_segments([ds[(8 * b + i) % len(ds)] for i in range(8)]) for b in range(steps + 2)]
    torch.manual_seed(0)
    model = UASAN(model_spec(cfg, int(batches[0].traj_features.shape[-1])))
    model.freeze_bridge()
    model.train()
    opt = build_optimizer(model.relation_parameters(), lr=1e-4)
    vocab = ds.vocab
    objects = list(vocab.objects[: vocab.num_base_objects])
    predicates = list(vocab.predicates[: vocab.num_base_predicates])
    times = []
    for batch in batches:
        t0 = time.perf_counter()
        losses = stage2_loss(model, batch, objects, predicates)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"threads": n, "median_s": statistics.median(times[2:]), "pairs": float(batches[0].num_pairs)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--world", help="synthetic world (default: a tiny one generated in a temp folder)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", nargs="+", default=["1", "auto"])
    p.add_argument("--policies", nargs="+", default=["default", "uasan"])
    p.add_argument("--worker", nargs=3, metavar=("WORLD", "THREADS", "POLICY"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps)))
        return
    world = args.world
    if world is None:
        from uasan.data import synth

        world = str(synth.generate(tempfile.mkdtemp(), size="tiny", seed=3, progress=False))
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()}", flush=True)
    print("| busy processes | OMP_WAIT_POLICY | threads | step (median, s) |")
    print("|---|---|---|---|")
    for busy in args.busy:
        for policy in args.policies:
            for threads in args.threads:
                env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
                if policy not in ("default", "uasan"):
                    env["OMP_WAIT_POLICY"] = policy
                spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
                try:
                    out = subprocess.run(
                        [sys.executable, __file__, "--steps", str(args.steps), "--worker", world, threads, policy],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                finally:
                    for s in spinners:
                        s.kill()
                        s.wait()
                r = json.loads(out.strip().splitlines()[-1])
                print(f"| {busy} | {policy} | {threads} ({r['threads']}) | {r['median_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
