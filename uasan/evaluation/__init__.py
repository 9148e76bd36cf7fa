"""Evaluation with the official VidVRD evaluator's numbers: relation detection (mAP, R@K) and tagging (P@K), the
open-vocabulary SGDet / SGCls / PredCls × split protocol, trajectory classification recall, and an evaluator class
for the trainer. See :mod:`uasan.evaluation.relations` for the exact definitions."""

from uasan.evaluation.evaluator import RelationEvaluator
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
    "RelationEvaluator",
    "RelationMatch",
    "evaluate_open_vocabulary",
    "evaluate_relations",
    "evaluate_relations_ref",
    "filter_groundtruth",
    "match_relations",
    "split_categories",
    "trajectory_recall",
]
