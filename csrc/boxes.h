// Box and trajectory geometry: IoU / GIoU, per-pair union boxes, relative motion features and vIoU.
// Boxes are [x1, y1, x2, y2]; `plus_one` selects inclusive pixels (width = x2 - x1 + 1).
#pragma once

#include <cstdint>

namespace uasan {

// out (n, m): IoU of a (n, 4) against b (m, 4); 0 where the union is empty.
template <typename T>
void box_iou(const T* a, int64_t n, const T* b, int64_t m, bool plus_one, T* out);

// out (n, m): generalised IoU, iou - (enclosing - union) / enclosing; equals iou where the enclosing box is empty.
template <typename T>
void box_giou(const T* a, int64_t n, const T* b, int64_t m, bool plus_one, T* out);

// boxes (n, t, 4), valid (n, t), pairs (p, 2) -> out_union (p, t, 4), out_valid (p, t).
// The union box exists at frame f only where both members exist; elsewhere it is zero.
template <typename T>
void pair_union_boxes(const T* boxes, const uint8_t* valid, int64_t n, int64_t t, const int64_t* pairs, int64_t p,
                      T* out_union, uint8_t* out_valid);

// out (p, 12): relative motion features of DESIGN §4 from each member's first and last valid box,
// widths and heights floored at min_size. A pair with a member that never exists gets a zero row.
template <typename T>
void pair_motion_features(const T* boxes, const uint8_t* valid, int64_t n, int64_t t, const int64_t* pairs, int64_t p,
                          double min_size, T* out);

// out (p, 2): [GIoU(first_s, first_o) + 1, GIoU(last_s, last_o) + 1]; zero row for a member that never exists.
template <typename T>
void pair_giou_start_end(const T* boxes, const uint8_t* valid, int64_t n, int64_t t, const int64_t* pairs, int64_t p,
                         bool plus_one, T* out);

// Trajectories as CSR: trajectory i starts at frame starts[i] and owns boxes[offsets[i] : offsets[i+1]].
struct TrajSet {
  const double* boxes;     // (sum T, 4)
  const int64_t* starts;   // (count,)
  const int64_t* offsets;  // (count + 1,)
  int64_t count;
};

// out (a.count, b.count): official vIoU (VidVRD-helper evaluation/common.py: viou).
void viou_matrix(const TrajSet& a, const TrajSet& b, bool plus_one, double* out);

// out (a.count, b.count): vPoI, the intersection volume over a's volume within the temporal overlap (0 without
// overlap). Used for label assignment of proposal pairs (DESIGN §4).
void vpoi_matrix(const TrajSet& a, const TrajSet& b, bool plus_one, double* out);

// Validates a TrajSet (finite ordered boxes, non-negative starts, monotone offsets); raises std::invalid_argument.
void check_traj_set(const char* op, const char* arg, const TrajSet& s);

}  // namespace uasan
