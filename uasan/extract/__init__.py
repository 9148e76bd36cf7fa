"""From raw videos to UASAN's inputs (``python -m uasan.extract``): detections → Seq-NMS tracklets → trajectory and
union-region features, written in the data-root layout of :mod:`uasan.data`.

Modules, each usable alone:

* :mod:`~uasan.extract.video`: PyAV decoding of only the wanted frames, in order, once.
* :mod:`~uasan.extract.detections`: the per-video detections file format (any detector), reader and writer.
* :mod:`~uasan.extract.tracklets`: class-agnostic Seq-NMS tracklets per segment (RePro's filter), ground truth.
* :mod:`~uasan.extract.crops`: sampled frames, union boxes, crop rectangles, square padding, deduplication.
* :mod:`~uasan.extract.towers`: the vision tower (BLIP-2 EVA ViT-g, CLIP, ...) and the optional detector,
  from local transformers checkpoints; the only model-specific module.
* :mod:`~uasan.extract.features`: the fast engine (batched, deduplicated, decoding overlapped with the model) and
  the direct reference beside it.
* :mod:`~uasan.extract.layout`, :mod:`~uasan.extract.pipeline`: output paths, shards, resumable steps.
"""

from uasan.extract.crops import SegmentPlan, plan_segment, sample_positions
from uasan.extract.detections import Detections, read_detections, write_detections
from uasan.extract.features import FeatureEngine, SegmentJob, VideoTask, segment_features_ref
from uasan.extract.tracklets import gt_tracklets, segment_tracklets

__all__ = [
    "Detections",
    "FeatureEngine",
    "SegmentJob",
    "SegmentPlan",
    "VideoTask",
    "gt_tracklets",
    "plan_segment",
    "read_detections",
    "sample_positions",
    "segment_features_ref",
    "segment_tracklets",
    "write_detections",
]
