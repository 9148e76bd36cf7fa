// eval: relation-detection matching for uasan.evaluation (see uasan/evaluation/relations.py for the semantics).
// Follows VidVRD-helper evaluation/visual_relation_detection.py (eval_detection_scores, eval_tagging_scores,
// the per-video parts of evaluate) and evaluation/common.py (viou, voc_ap) operation for operation, so that the
// float results are the official ones bit for bit.
#pragma once

#include <cstdint>

namespace uasan {

// Relations of many videos, flat. Relation r lasts frames [begin[r], begin[r] + length[r]).
struct RelationTable {
  const int64_t* triplet;  // (count,) interned triplet ids
  const int64_t* begin;    // (count,) >= 0
  const int64_t* length;   // (count,) >= 1
  const double* score;     // (count,) finite; predictions only, nullptr for ground truth
  int64_t count;
};

// Supplies the boxes of a relation's subject (which = 0) or object (which = 1) trajectory, (length, 4) float64
// [x1, y1, x2, y2], inclusive pixels, finite with x2 >= x1 and y2 >= y1. The matching asks for a trajectory only
// when it compares it (and at most once per call), so a source that reads slow storage (Python lists) reads no
// more than the official evaluator does. The pointer must stay valid until the source is told that its video is
// done (video_done); a source may throw to abort.
class TrajSource {
 public:
  virtual ~TrajSource() = default;
  virtual const double* get(bool is_pred, int64_t r, int which) = 0;
  // The matching of a video is over: ground truth [gt_begin, gt_end) and predictions [pred_begin, pred_end) are
  // not asked for again, so a source may drop what it parsed or cached for them.
  virtual void video_done(int64_t gt_begin, int64_t gt_end, int64_t pred_begin, int64_t pred_end) {}
};

struct RelationEvalOutput {
  double* ap;         // (videos,) all-point VOC AP of each video (common.py: voc_ap)
  int64_t* det_hits;  // (videos, n_det_k) true positives among the video's top min(K, n_pred) predictions
  float* tag_prec;    // (videos, n_tag_k) tagging precision at min(K, n_unique), float32 like the official; 0 if 0
  int64_t* n_tag;     // (videos,) distinct predicted triplets
  int64_t* match = nullptr;  // optional (pred count,): the ground truth (index within its video) each prediction
                             // took, -1 if none
};

// Evaluates every video v: ground truth gt[gt_offsets[v] : gt_offsets[v+1]] against the predictions
// pred[pred_offsets[v] : pred_offsets[v+1]]. Predictions are visited in a stable descending sort by score; each
// takes the not yet matched ground truth of its triplet with the largest min(vIoU_s, vIoU_o) >= viou_threshold
// (strict > between candidates, so the first in ground-truth order wins a tie). Checks the tables and raises
// std::invalid_argument; the boxes are the source's responsibility.
void eval_relations(TrajSource& boxes, const RelationTable& gt, const int64_t* gt_offsets, const RelationTable& pred,
                    const int64_t* pred_offsets, int64_t videos, double viou_threshold, const int64_t* det_k,
                    int64_t n_det_k, const int64_t* tag_k, int64_t n_tag_k, const RelationEvalOutput& out);

// NumPy's pairwise summation of a contiguous float64 array (np.sum), so that sums equal the official's bit for bit.
double numpy_pairwise_sum(const double* a, int64_t n);

// common.py voc_ap (use_07_metric=False) of float32 recall / precision curves of length n, summed like np.sum.
double voc_ap(const float* rec, const float* prec, int64_t n);

}  // namespace uasan
