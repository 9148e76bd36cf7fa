"""Evaluation with the official VidVRD evaluator's numbers: relation detection (mAP, R@K) and tagging (P@K), the
open-vocabulary SGDet / SGCls / PredCls × split protocol, trajectory classification recall, an evaluator class for
the trainer, relations as columns (:mod:`~uasan.evaluation.columns`) and the fast file readers
(:mod:`~uasan.evaluation.files`). See :mod:`uasan.evaluation.relations` for the exact definitions."""

from uasan.evaluation.bootstrap import VideoScores, bootstrap_intervals, compare_runs, paired_difference
from uasan.evaluation.columns import RelationColumns
from uasan.evaluation.evaluator import RelationEvaluator
from uasan.evaluation.files import (
    RelationFile,
    evaluate_files,
    read_annotations,
    read_files,
    read_groundtruth,
    read_predictions,
)
from uasan.evaluation.matching import RelationMatch, match_relations
from uasan.evaluation.protocol import (
    MODES,
    SPLITS,
    evaluate_open_vocabulary,
    filter_groundtruth,
    split_categories,
    trajectory_recall,
)
from uasan.evaluation.relations import evaluate_relations, evaluate_relations_ref

__all__ = [
    "MODES",
    "SPLITS",
    "RelationColumns",
    "RelationEvaluator",
    "RelationFile",
    "RelationMatch",
    "VideoScores",
    "bootstrap_intervals",
    "compare_runs",
    "evaluate_files",
    "evaluate_open_vocabulary",
    "evaluate_relations",
    "evaluate_relations_ref",
    "filter_groundtruth",
    "match_relations",
    "paired_difference",
    "read_annotations",
    "read_files",
    "read_groundtruth",
    "read_predictions",
    "split_categories",
    "trajectory_recall",
]
