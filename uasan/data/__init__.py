"""Data layer: annotations, segments, proposals, features, category splits, label assignment, datasets.

On-disk layout of a data set root (VidVRD or VidOR; the synthetic world of :mod:`uasan.data.synth` writes the
same, plus ``pretrain/``)::

    ROOT/
      train/<vid>.json, test/<vid>.json                   VidVRD annotations (published layout)
      val/<vid>.json                                      a VidVRD-layout validation subset (the synthetic world)
      annotation/training/XXXX/<vid>.json                 VidOR annotations (published layout; XXXX = group folder)
      annotation/validation/XXXX/<vid>.json
      splits.json                                         optional category split (schema of the bundled ones);
                                                          default: the bundled split of the detected data set
      proposals/<subset>/<vid>/<tag>.json                 detected segment trajectories (RePro layout): a list of
                                                          {fstart (relative to the segment), score,
                                                           bboxes [[x1, y1, x2, y2] per frame], label}
      features/<subset>/<vid>/<tag>.npy                   trajectory features, one row per proposal in file order:
                                                          (n, D) or (n, S, D); a .pkl holding an array also works
      union_features/<subset>/<vid>/<tag>.npy             one row per ordered pair (s, o), s != o, row-major over
                                                          (s, o): (n(n-1), D) or (n(n-1), S, D)
      gt_proposals/<subset>/<vid>/<tag>.json              ground-truth trajectories per segment (same schema plus
                                                          "class" and "tid") for SGCls / PredCls
      gt_features/..., gt_union_features/...              features aligned with gt_proposals

* ``subset`` is ``train``/``test`` (and ``val`` where written) for VidVRD and ``training``/``validation`` for
  VidOR (``train``/``val`` aliases are accepted by the readers); ``vid`` is the annotation's file name, which must
  equal its ``video_id`` (for VidOR the group folder is not part of it).
* Segments are 30 frames with stride 15, ``[(i, i + 30) for i in range(0, frame_count - 30 + 1, 15)]``, and
  ``tag = f"{vid}-{fstart:04d}-{fend:04d}"`` (end exclusive). A dataset's items are the segments that have a
  proposal file.
* Proposal ``bboxes`` are contiguous (one box per frame from ``fstart``); ``null`` boxes are rejected. The default
  SGDet filter keeps a trajectory with at least 15 boxes whose largest height and largest width are at least 5
  pixels; feature rows always follow the file (before filtering) and are selected with it.
* Every bad file raises ``ValueError`` naming the file and the field.

Public API: :func:`load_split`, :func:`detect_dataset`, :func:`load_groundtruth`, :func:`segments`,
:func:`segment_tag`, :func:`read_annotation`, :func:`read_proposals`, :func:`read_features`, the label
assignment functions, :class:`SegmentDataset` and :func:`collate_segments`.
"""

from uasan.data.annotations import (
    Annotation,
    Relation,
    annotation_paths,
    canonical_subset,
    detect_dataset,
    load_groundtruth,
    read_annotation,
)
from uasan.data.dataset import MODES, Segment, SegmentBatch, SegmentDataset, collate_segments
from uasan.data.labels import (
    BACKGROUND,
    IGNORE,
    all_pairs,
    assign_predicate_labels,
    assign_trajectory_labels,
    pair_rows,
)
from uasan.data.proposals import Proposals, read_features, read_proposals
from uasan.data.segments import SEGMENT_LENGTH, SEGMENT_STRIDE, parse_segment_tag, segment_tag, segments
from uasan.data.splits import Vocabulary, load_split

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "MODES",
    "SEGMENT_LENGTH",
    "SEGMENT_STRIDE",
    "Annotation",
    "Proposals",
    "Relation",
    "Segment",
    "SegmentBatch",
    "SegmentDataset",
    "Vocabulary",
    "all_pairs",
    "annotation_paths",
    "assign_predicate_labels",
    "assign_trajectory_labels",
    "canonical_subset",
    "collate_segments",
    "detect_dataset",
    "load_groundtruth",
    "load_split",
    "pair_rows",
    "parse_segment_tag",
    "read_annotation",
    "read_features",
    "read_proposals",
    "segment_tag",
    "segments",
]
