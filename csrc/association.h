// association: greedy relational association of segment relations into video relations (DESIGN §4), with the
// semantics of VidVRD-II common/association.py: greedy_relation_association. See uasan/ops/association.py for
// the reference implementation; this file holds the fast path over flat arrays built by the Python wrapper.
#pragma once

#include <cstdint>
#include <vector>

namespace uasan {

// Segment relations, already in processing order: segments by start frame, within a segment by score
// (descending, stable) and cut to inference_topk. Relation i belongs to the segment s with
// segment_offsets[s] <= i < segment_offsets[s + 1].
struct AssociationInput {
  int64_t num_segments;
  const int64_t* segment_offsets;  // (num_segments + 1,), 0 .. num_relations
  int64_t num_relations;
  const int64_t* triplets;     // (num_relations,) interned triplet ids (equal ids <=> equal triplets)
  const double* scores;        // (num_relations,)
  const int64_t* spans;        // (num_relations, 4): sub_start, sub_end, obj_start, obj_end (end exclusive)
  const int64_t* box_offsets;  // (num_relations + 1,): relation i owns rows [box_offsets[i], box_offsets[i+1]):
                               // its subject boxes, then its object boxes
  const double* boxes;         // (num_boxes, 4) [x1, y1, x2, y2], inclusive pixels
  int64_t num_boxes;
};

struct AssociationParams {
  // The linkage test is `cubic_iou > threshold`, where the cubic IoU is a float32 when it was computed and a
  // Python float 0.0 when the trajectories are too far apart. threshold_f32 is the threshold as NumPy compares
  // it with a float32 (rounded to float32 under NumPy >= 2, unchanged under NumPy 1.x); threshold is the raw one.
  double linkage_threshold;
  double linkage_threshold_f32;
  double temporal_tolerance;  // a gap of g frames between two trajectories still links when g < tolerance
  int64_t association_topk;   // > 0
  double nms;                 // cubic_enclose NMS when nms < 1
  bool compensated_sum;       // scores are summed like Python >= 3.12's sum() (Neumaier) instead of left to right
};

// Video relations in output order. Output relation k started from input relation origin[k]; it spans frames
// [duration[2k], duration[2k+1]) and owns rows [offsets[k], offsets[k+1]) of sub_boxes and obj_boxes.
struct AssociationOutput {
  std::vector<int64_t> origin;
  std::vector<double> score;
  std::vector<int64_t> duration;
  std::vector<int64_t> offsets;
  std::vector<double> sub_boxes;
  std::vector<double> obj_boxes;
};

// Validates the flat input (offsets, spans, finite ordered boxes) and raises std::invalid_argument on misuse.
AssociationOutput greedy_relation_association(const AssociationInput& in, const AssociationParams& params);

}  // namespace uasan
