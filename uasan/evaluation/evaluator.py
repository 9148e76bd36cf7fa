"""A detectron2-style evaluator for the trainer: ``reset()``, ``process(video_id, predictions)``, ``evaluate()``."""

from __future__ import annotations

import inspect
from collections.abc import Collection, Sequence
from typing import Any

from uasan.evaluation.protocol import filter_groundtruth
from uasan.evaluation.relations import Relation, RelationsByVideo, evaluate_relations


class RelationEvaluator:
    """Accumulates video-level relation predictions and evaluates them with :func:`evaluate_relations`.

    ``groundtruth`` is the official dict video → relations; ``objects`` / ``predicates`` restrict it to a split
    (:func:`~uasan.evaluation.filter_groundtruth`; predictions are never filtered). ``videos="all"`` evaluates over
    every ground-truth video (a video never processed has no predictions, as in the official evaluator);
    ``"processed"`` only over the videos passed to :meth:`process` (for a partial validation pass). ``options`` are
    the metric keywords of :func:`evaluate_relations` (``viou_threshold``, ``det_nreturns``, ``tag_nreturns``,
    ``per_video``, ``check_boxes``, ``impl``), with its defaults; a name it does not take is a ``TypeError`` here.
    """

    def __init__(
        self,
        groundtruth: RelationsByVideo,
        *,
        objects: Collection | None = None,
        predicates: Collection | None = None,
        videos: str = "all",
        **options: Any,
    ) -> None:
        if videos not in ("all", "processed"):
            raise ValueError(f"RelationEvaluator: expected videos to be 'all' or 'processed', but got {videos!r}")
        inspect.signature(evaluate_relations).bind({}, {}, **options)  # TypeError for a name it does not take
        self._gt = filter_groundtruth(groundtruth, objects, predicates)
        self._videos = videos
        self._options = options
        self._predictions: dict[Any, list[Relation]] = {}

    def reset(self) -> None:
        """Forgets every processed prediction."""
        self._predictions = {}

    def process(self, video_id: Any, predictions: Sequence[Relation]) -> None:
        """Adds one video's predicted relations (official prediction dicts); calls for the same video accumulate."""
        if video_id not in self._gt:
            raise ValueError(f"RelationEvaluator.process: video {video_id!r} is not in the ground truth")
        if isinstance(predictions, (str, bytes, dict)) or not isinstance(predictions, Sequence):
            raise ValueError(
                f"RelationEvaluator.process: expected predictions for {video_id!r} to be a list of relation dicts, "
                f"got {type(predictions).__name__}"
            )
        self._predictions.setdefault(video_id, []).extend(predictions)

    def evaluate(self) -> dict[str, Any]:
        """``{"mAP", "R@50", "R@100", "P@1", "P@5", "P@10"}`` (and ``"per_video"``) over the accumulated videos."""
        gt = self._gt
        if self._videos == "processed":
            gt = {vid: gt[vid] for vid in self._predictions}
        return evaluate_relations(gt, self._predictions, **self._options)
