"""Per-epoch validation of stages 1 and 2 (issue 8): the held-out ``val`` subset only, base classes for model
selection. The test subset is read once, at the end of a run, by prediction; a run with ``--skip-eval`` never reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uasan.config import TrainConfig

__all__ = ["validation_fns"]


def validation_fns(root: Path, vocab, cfg: TrainConfig, split, device) -> tuple[Any, Any]:
    """(stage-1, stage-2) evaluation functions on the ``val`` subset, scoring base classes only: the protocol lets
    model selection see base labels only, and "all" would include the novel ones."""
    from uasan import predict as P
    from uasan.data import load_groundtruth

    groundtruth: dict[str, Any] = {}

    def stage1_fn(model) -> dict[str, float]:
        model.clear_class_cache()  # the bridge moves during stage 1
        r = P.trajectory_metrics(P.model_scorer(model, vocab), root, vocab, cfg, split, device=device, subset="val")
        model.clear_class_cache()
        return {"val_traj_base_R@5": r["base"]["R@5"]}

    def stage2_fn(model) -> dict[str, float]:
        if not groundtruth:
            groundtruth.update(
                load_groundtruth(root, "val", val_fraction=cfg.data.val_fraction, val_seed=cfg.data.val_seed)
            )  # the same held-out videos as the predictions (data.val_*)
        preds = P.predict(
            P.model_scorer(model, vocab), root, "PredCls", vocab, cfg, split, ("base",), device=device,
            progress=False, subset="val",
        )  # fmt: skip
        r = P.evaluate_predictions(groundtruth, {"PredCls": preds}, split)["PredCls"]
        return {"val_PredCls_base_R@50": r["base"]["R@50"]}

    return stage1_fn, stage2_fn
