"""A detectron2-style evaluator: ``reset()``, ``process(video_id, predictions)`` / ``process_columns(columns)``,
``evaluate()``. Prediction (:func:`uasan.predict.evaluate_predictions`) evaluates through it."""

from __future__ import annotations

import inspect
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from uasan.evaluation.columns import ColumnarRelations, RelationColumns
from uasan.evaluation.protocol import filter_groundtruth
from uasan.evaluation.relations import Relation, RelationsByVideo, evaluate_relations


class RelationEvaluator:
    """Accumulates video-level relation predictions and evaluates them with :func:`evaluate_relations`.

    ``groundtruth`` is the official dict video → relations or columns (:class:`~uasan.evaluation.RelationColumns`);
    ``objects`` / ``predicates`` restrict it to a split (:func:`~uasan.evaluation.filter_groundtruth`; predictions
    are never filtered). ``videos="all"`` evaluates over every ground-truth video (a video never processed has no
    predictions, as in the official evaluator); ``"processed"`` only over the videos passed to :meth:`process` /
    :meth:`process_columns` (for a partial validation pass). Predictions come as one video's official dicts
    (:meth:`process`) or as the columns of many videos (:meth:`process_columns`, no Python object per box); the two
    may be mixed, a video once. ``options`` are the metric keywords of
    :func:`evaluate_relations` (``viou_threshold``, ``det_nreturns``, ``tag_nreturns``, ``per_video``,
    ``check_boxes``, ``impl``), with its defaults; a name it does not take is a ``TypeError`` here.
    """

    def __init__(
        self,
        groundtruth: RelationsByVideo | ColumnarRelations,
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
        self._gt_videos = set(self._gt.videos if isinstance(self._gt, ColumnarRelations) else self._gt)
        self._videos = videos
        self._options = options
        self._predictions: dict[Any, list[Relation]] = {}
        self._columns: list[RelationColumns] = []
        self._column_videos: set = set()

    def reset(self) -> None:
        """Forgets every processed prediction."""
        self._predictions = {}
        self._columns = []
        self._column_videos = set()

    def process(self, video_id: Any, predictions: Sequence[Relation]) -> None:
        """Adds one video's predicted relations (official prediction dicts); calls for the same video accumulate."""
        if video_id not in self._gt_videos:
            raise ValueError(f"RelationEvaluator.process: video {video_id!r} is not in the ground truth")
        if video_id in self._column_videos:
            raise ValueError(f"RelationEvaluator.process: video {video_id!r} was already given as columns")
        if isinstance(predictions, (str, bytes, dict)) or not isinstance(predictions, Sequence):
            raise ValueError(
                f"RelationEvaluator.process: expected predictions for {video_id!r} to be a list of relation dicts, "
                f"got {type(predictions).__name__}"
            )
        self._predictions.setdefault(video_id, []).extend(predictions)

    def process_columns(self, columns: ColumnarRelations) -> None:
        """Adds the predicted relations of the videos in ``columns`` (each video once over all calls): in-memory
        :class:`~uasan.evaluation.RelationColumns` or a prediction file read lazily."""
        if not isinstance(columns, ColumnarRelations) or columns.score is None:
            raise ValueError(
                "RelationEvaluator.process_columns: expected RelationColumns with scores (predictions), "
                f"got {type(columns).__name__}"
            )
        for vid in columns.videos:
            if vid not in self._gt_videos:
                raise ValueError(f"RelationEvaluator.process_columns: video {vid!r} is not in the ground truth")
            if vid in self._column_videos or vid in self._predictions:
                raise ValueError(f"RelationEvaluator.process_columns: video {vid!r} was already processed")
        self._column_videos.update(columns.videos)
        self._columns.append(columns)

    def evaluate(self) -> dict[str, Any]:
        """``{"mAP", "R@50", "R@100", "P@1", "P@5", "P@10"}`` (and ``"per_video"``) over the accumulated videos."""
        gt = self._gt
        if self._videos == "processed":
            keep = set(self._predictions) | self._column_videos
            if isinstance(gt, ColumnarRelations):
                gt = gt.select(np.repeat([v in keep for v in gt.videos], np.diff(gt.video_offsets)))
            else:
                gt = {vid: gt[vid] for vid in keep}
        if not self._columns:
            return evaluate_relations(gt, self._predictions, **self._options)
        if len(self._columns) == 1 and not self._predictions:  # one columnar side as it is (no copy)
            return evaluate_relations(gt, self._columns[0], **self._options)
        parts = [c if isinstance(c, RelationColumns) else c.to_columns() for c in self._columns]
        if self._predictions:  # dicts next to columns: one columnar side (the dict videos checked as columns)
            parts.append(RelationColumns.from_dicts(self._predictions, scores=True))
        return evaluate_relations(gt, RelationColumns.concat(parts), **self._options)
