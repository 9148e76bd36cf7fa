"""Data layer: annotations, segments, proposals, features, category splits, label assignment, datasets.

A data set root holds the published annotations (VidVRD or VidOR); the segment trajectories and their features are
read through a *layout* (:mod:`uasan.data.layouts`, ``data.layout``): ``uasan`` (this package's tree, below,
which the synthetic world of :mod:`uasan.data.synth` writes, plus its ``pretrain/`` corpus), ``repro`` (RePro's
released files as published) or ``uasan-public`` (UASAN's released features as published). Each kind of file may
live anywhere (``data.proposals``, ``data.features``, ``data.union_features`` and the ``gt_`` variants)::

    ROOT/
      train/<vid>.json, test/<vid>.json                   VidVRD annotations (published layout)
      annotation/training/XXXX/<vid>.json                 VidOR annotations (published layout; XXXX = group folder)
      annotation/validation/XXXX/<vid>.json
      val/<vid>.json                                      optional own validation videos (else held out of train)
      splits.json                                         optional category split (schema of the bundled ones);
                                                          default: the bundled split of the detected data set
      proposals/<subset>/<vid>/<tag>.json                 uasan layout: detected segment trajectories, a list of
                                                          {fstart (relative to the segment), score,
                                                           bboxes [[x1, y1, x2, y2] per frame], label}
      features/<subset>/<vid>/<tag>.npy                   trajectory features, one row per proposal in file order:
                                                          (n, D) or (n, S, D); a .pkl holding an array also works
      union_features/<subset>/<vid>/<tag>.npy             one row per ordered pair (s, o), s != o, row-major over
                                                          (s, o): (n(n-1), D) or (n(n-1), S, D)
      gt_proposals/<subset>/<vid>/<tag>.json              ground-truth trajectories per segment (same schema plus
                                                          "class" and "tid") for SGCls / PredCls
      gt_features/..., gt_union_features/...              features aligned with gt_proposals

* Subsets: VidVRD ``train``/``test``, VidOR ``training``/``validation`` (the protocol's test set), and ``val``: the
  root's own ``val`` folder or, without one, ``data.val_fraction`` of the training videos chosen by a seeded hash
  of the video id (:mod:`uasan.data.subsets`) — never used for a gradient step, and ``train`` excludes them.
  ``vid`` is the annotation's file name, which must equal its ``video_id`` (for VidOR the group folder is not part
  of it); the layouts translate to their own names (RePro's VidOR ``<group>_<vid>``).
* Segments are 30 frames with stride 15, ``[(i, i + 30) for i in range(0, frame_count - 30 + 1, 15)]``, and
  ``tag = f"{vid}-{fstart:04d}-{fend:04d}"`` (end exclusive). A dataset's items are the segments that have
  proposals.
* Proposal ``bboxes`` are contiguous (one box per frame from ``fstart``); ``null`` boxes are rejected. The default
  SGDet filter keeps a trajectory with at least 15 boxes whose largest height and largest width are at least 5
  pixels; feature rows always follow the file (before filtering) and are selected with it.
* Every bad file raises ``ValueError`` naming the file and the field.

Public API: :func:`load_split`, :func:`detect_dataset`, :func:`load_groundtruth`, :func:`subset_videos`,
:func:`segments`, :func:`segment_tag`, :func:`read_annotation`, :func:`read_proposals`, :func:`read_features`, the
label assignment functions, :func:`open_layout` / :func:`detect_layout`, :class:`SegmentDataset` and
:func:`collate_segments`.
"""

from uasan.data.annotations import (
    Annotation,
    Relation,
    annotation_paths,
    canonical_subset,
    detect_dataset,
    load_groundtruth,
    read_annotation,
    subset_videos,
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
from uasan.data.layouts import LAYOUTS, detect_layout, open_layout
from uasan.data.proposals import Proposals, read_features, read_proposals
from uasan.data.segments import SEGMENT_LENGTH, SEGMENT_STRIDE, parse_segment_tag, segment_tag, segments
from uasan.data.splits import Vocabulary, load_split
from uasan.data.subsets import held_out_videos

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "LAYOUTS",
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
    "detect_layout",
    "held_out_videos",
    "load_groundtruth",
    "load_split",
    "open_layout",
    "pair_rows",
    "parse_segment_tag",
    "read_annotation",
    "read_features",
    "read_proposals",
    "segment_tag",
    "segments",
    "subset_videos",
]
