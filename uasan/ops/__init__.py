"""Public fast ops. Each op ``<op>`` has a reference ``<op>_ref`` beside it and dispatches with ``impl=``.

Nothing here imports models, data or engine code, and nothing queries the GPU at import time.
"""

from uasan.ops.association import (
    AssociationArrays,
    SegmentRelations,
    greedy_relation_association,
    greedy_relation_association_ref,
)
from uasan.ops.attention import (
    pair_cross_attention,
    pair_cross_attention_ref,
    pair_self_attention,
    pair_self_attention_ref,
    shared_query_attention,
    shared_query_attention_ref,
)
from uasan.ops.boxes import box_giou, box_giou_ref, box_iou, box_iou_ref
from uasan.ops.pairs import (
    pair_giou_start_end,
    pair_giou_start_end_ref,
    pair_motion_features,
    pair_motion_features_ref,
    pair_union_boxes,
    pair_union_boxes_ref,
)
from uasan.ops.seq_nms import Track, seq_nms, seq_nms_ref
from uasan.ops.viou import viou_matrix, viou_matrix_ref, viou_ref, vpoi_matrix, vpoi_matrix_ref, vpoi_ref

__all__ = [
    "AssociationArrays",
    "SegmentRelations",
    "Track",
    "box_giou",
    "box_giou_ref",
    "box_iou",
    "box_iou_ref",
    "greedy_relation_association",
    "greedy_relation_association_ref",
    "pair_cross_attention",
    "pair_cross_attention_ref",
    "pair_giou_start_end",
    "pair_giou_start_end_ref",
    "pair_motion_features",
    "pair_motion_features_ref",
    "pair_self_attention",
    "pair_self_attention_ref",
    "pair_union_boxes",
    "pair_union_boxes_ref",
    "seq_nms",
    "seq_nms_ref",
    "shared_query_attention",
    "shared_query_attention_ref",
    "viou_matrix",
    "viou_matrix_ref",
    "viou_ref",
    "vpoi_matrix",
    "vpoi_matrix_ref",
    "vpoi_ref",
]
