// seq_nms: Seq-NMS trajectory generation from per-frame detections (VidVRD-II semantics by default).
// See uasan/ops/seq_nms.py for the algorithm, the options and the reference implementation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace uasan {

// How a track's reported score is computed: the summed (current) score of its path (VidVRD-II), or the mean / max
// of the input scores of its boxes (Han et al. 2016 rescoring).
enum class SeqNmsRescore { kNone, kAvg, kMax };

// What happens to a box whose IoU with a box of the chosen path (same frame) is >= suppress_iou: its score becomes
// 0 and it stays in the graph (VidVRD-II), or it leaves the graph (no links, never a root, never in a path).
enum class SeqNmsSuppress { kZero, kRemove };

// "none" / "avg" / "max" and "zero" / "remove"; anything else raises std::invalid_argument.
SeqNmsRescore parse_seq_nms_rescore(const std::string& name);
SeqNmsSuppress parse_seq_nms_suppress(const std::string& name);

// Tracks as CSR: track k starts at frame starts[k], spans lengths[k] frames and takes, in frame starts[k] + i, the
// box indices[offset_k + i] with offset_k = lengths[0] + ... + lengths[k - 1]. Tracks are in emission order.
struct SeqNmsTracks {
  std::vector<int64_t> starts;
  std::vector<int64_t> lengths;
  std::vector<int64_t> indices;
  std::vector<double> scores;
};

// boxes (frames, num_boxes, 4) as [x1, y1, x2, y2]; scores (frames, num_boxes) with -inf marking an absent box
// (its coordinates are ignored); labels (frames, num_boxes) or nullptr. Thresholds in [0, 1]. Raises
// std::invalid_argument on NaN / +inf scores, non-finite or inverted present boxes and bad arguments.
SeqNmsTracks seq_nms(const double* boxes, const double* scores, const int64_t* labels, int64_t frames,
                     int64_t num_boxes, double link_iou, double suppress_iou, SeqNmsRescore rescore,
                     SeqNmsSuppress suppress, bool plus_one);

}  // namespace uasan
