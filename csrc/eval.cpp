#include "eval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common.h"

namespace uasan {

namespace {

constexpr const char* kOp = "eval_relations";

// Inclusive-pixel area and intersection written as the official common.py writes them ((x2 - x1) + 1 and
// max(0, right - left + 1) * max(0, bottom - top + 1)), so every double operation happens in the same order.
inline double box_area(const double* b) { return (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0); }

inline double box_inter(const double* a, const double* b) {
  const double w = std::min(a[2], b[2]) - std::max(a[0], b[0]) + 1.0;
  const double h = std::min(a[3], b[3]) - std::max(a[1], b[1]) + 1.0;
  return (w > 0 ? w : 0.0) * (h > 0 ? h : 0.0);
}

// Sequential sum over the whole trajectory, like the official `v1 += ...` loop.
double traj_volume(const double* boxes, int64_t n) {
  double v = 0.0;
  for (int64_t i = 0; i < n; ++i) v += box_area(boxes + 4 * i);
  return v;
}

// common.py viou(traj_1 = prediction, traj_2 = ground truth) with precomputed whole-trajectory volumes.
double viou(const double* a, int64_t begin_a, int64_t len_a, double vol_a, const double* b, int64_t begin_b,
            int64_t len_b, double vol_b) {
  const int64_t lo = std::max(begin_a, begin_b), hi = std::min(begin_a + len_a, begin_b + len_b);
  if (lo >= hi) return 0.0;
  double ov = 0.0;
  for (int64_t f = lo; f < hi; ++f) ov += box_inter(a + 4 * (f - begin_a), b + 4 * (f - begin_b));
  const double den = vol_a + vol_b - ov;
  return den > 0 ? ov / den : 0.0;  // den > 0 always for validated inclusive boxes (each area >= 1)
}

void check_table(const char* arg, const RelationTable& t, const int64_t* offsets, int64_t videos, bool is_pred) {
  if (offsets[0] != 0 || offsets[videos] != t.count) {
    fail(kOp, "expected ", arg, " offsets to run from 0 to ", t.count, ", but got ", offsets[0], " .. ",
         offsets[videos]);
  }
  for (int64_t v = 0; v < videos; ++v) {
    if (offsets[v + 1] < offsets[v]) fail(kOp, "expected ", arg, " offsets to be non-decreasing at video ", v);
  }
  for (int64_t r = 0; r < t.count; ++r) {
    if (t.begin[r] < 0 || t.length[r] < 1 || t.begin[r] > std::numeric_limits<int64_t>::max() - t.length[r]) {
      fail(kOp, "expected ", arg, " relation ", r, " to last [begin, begin + length) with begin >= 0 and length >= 1,",
           " but got begin ", t.begin[r], ", length ", t.length[r]);
    }
    if (is_pred && !std::isfinite(t.score[r])) fail(kOp, "expected ", arg, " relation ", r, " to have a finite score");
  }
}

}  // namespace

double numpy_pairwise_sum(const double* a, int64_t n) {
  // numpy/_core/src/umath/loops_utils.h.src pairwise_sum: 8 accumulators up to 128 elements, halves above.
  if (n < 8) {
    double res = 0.0;
    for (int64_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_pairwise_sum(a, n2) + numpy_pairwise_sum(a + n2, n - n2);
}

double voc_ap(const float* rec, const float* prec, int64_t n) {
  // mrec = [0, rec, 1], mpre = [0, prec, 0] in float64; precision envelope from the right; sum of
  // (mrec[i+1] - mrec[i]) * mpre[i+1] where the recall changes.
  std::vector<double> mrec(n + 2), mpre(n + 2);
  mrec[0] = 0.0;
  mpre[0] = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    mrec[i + 1] = static_cast<double>(rec[i]);
    mpre[i + 1] = static_cast<double>(prec[i]);
  }
  mrec[n + 1] = 1.0;
  mpre[n + 1] = 0.0;
  for (int64_t i = n + 1; i > 0; --i) mpre[i - 1] = std::max(mpre[i - 1], mpre[i]);
  std::vector<double> terms;
  terms.reserve(n + 1);
  for (int64_t i = 0; i < n + 1; ++i) {
    if (mrec[i + 1] != mrec[i]) terms.push_back((mrec[i + 1] - mrec[i]) * mpre[i + 1]);
  }
  return numpy_pairwise_sum(terms.data(), static_cast<int64_t>(terms.size()));
}

void eval_relations(TrajSource& boxes, const RelationTable& gt, const int64_t* gt_offsets, const RelationTable& pred,
                    const int64_t* pred_offsets, int64_t videos, double viou_threshold, const int64_t* det_k,
                    int64_t n_det_k, const int64_t* tag_k, int64_t n_tag_k, const RelationEvalOutput& out) {
  if (videos < 0) fail(kOp, "expected a non-negative number of videos, but got ", videos);
  if (std::isnan(viou_threshold)) fail(kOp, "expected viou_threshold to be a number, but got nan");
  for (int64_t i = 0; i < n_det_k; ++i) {
    if (det_k[i] < 0) fail(kOp, "expected det_nreturns >= 0, but got ", det_k[i]);
  }
  for (int64_t i = 0; i < n_tag_k; ++i) {
    if (tag_k[i] < 0) fail(kOp, "expected tag_nreturns >= 0, but got ", tag_k[i]);
  }
  check_table("groundtruth", gt, gt_offsets, videos, false);
  check_table("prediction", pred, pred_offsets, videos, true);

  const float eps32 = std::numeric_limits<float>::epsilon();
  std::vector<std::pair<int64_t, int64_t>> gt_by_triplet;  // (triplet, gt index) sorted: groups in gt order
  // Per ground truth and member (subject, object): its boxes and the running sums of its box areas, summed in the
  // official order so that prefix[T] is the official whole-trajectory volume.
  std::vector<const double*> gt_boxes[2];
  std::vector<std::vector<double>> gt_prefix[2];
  std::vector<char> detected, tp;
  std::vector<int64_t> order, tag_cum;
  std::vector<float> rec, prec;
  std::unordered_set<int64_t> seen;

  for (int64_t v = 0; v < videos; ++v) {
    const int64_t g0 = gt_offsets[v], ng = gt_offsets[v + 1] - g0;
    const int64_t p0 = pred_offsets[v], np_ = pred_offsets[v + 1] - p0;

    gt_by_triplet.clear();
    for (int64_t g = 0; g < ng; ++g) gt_by_triplet.emplace_back(gt.triplet[g0 + g], g);
    std::sort(gt_by_triplet.begin(), gt_by_triplet.end());
    auto group = [&](int64_t triplet) {
      return std::equal_range(gt_by_triplet.begin(), gt_by_triplet.end(), std::make_pair(triplet, int64_t(0)),
                              [](const auto& a, const auto& b) { return a.first < b.first; });
    };
    for (int w = 0; w < 2; ++w) {
      gt_boxes[w].assign(ng, nullptr);
      gt_prefix[w].resize(ng);
    }
    auto gt_traj = [&](int64_t g, int w) {  // fetched on first use
      if (!gt_boxes[w][g]) {
        const int64_t len = gt.length[g0 + g];
        gt_boxes[w][g] = boxes.get(false, g0 + g, w);
        std::vector<double>& pre = gt_prefix[w][g];
        pre.resize(len + 1);
        pre[0] = 0.0;
        for (int64_t i = 0; i < len; ++i) pre[i + 1] = pre[i] + box_area(gt_boxes[w][g] + 4 * i);
      }
      return gt_boxes[w][g];
    };

    // sorted(pred, key=score, reverse=True) is stable: equal scores keep their input order.
    order.resize(np_);
    std::iota(order.begin(), order.end(), p0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return pred.score[a] > pred.score[b]; });

    // Detection: greedy matching in score order (visual_relation_detection.py: eval_detection_scores).
    detected.assign(ng, 0);
    tp.assign(np_, 0);
    for (int64_t k = 0; k < np_; ++k) {
      const int64_t p = order[k];
      const auto [lo, hi] = group(pred.triplet[p]);
      const int64_t pb = pred.begin[p], pl = pred.length[p];
      const double* pt[2] = {nullptr, nullptr};
      double pv[2] = {0.0, 0.0};
      double ov_max = -std::numeric_limits<double>::infinity();
      // vIoU of member w against ground truth g, or -inf where it provably fails `>= threshold and > ov_max`.
      // vIoU = I / (V_pred + V_gt - I) <= I / V_gt <= (gt volume within the common frames) / V_gt since
      // V_pred >= I; the bound needs no prediction boxes, so a prediction is only read when it can matter. The
      // 1e-9 margin covers the rounding of the sums (relative error ~ T * 2^-53).
      auto member_viou = [&](int64_t g, int w) {
        const int64_t r = g0 + g, gb = gt.begin[r], gl = gt.length[r];
        const int64_t f0 = std::max(pb, gb), f1 = std::min(pb + pl, gb + gl);
        if (f0 >= f1) return 0.0;  // official viou: no temporal overlap
        const double* gboxes = gt_traj(g, w);
        const std::vector<double>& pre = gt_prefix[w][g];
        const double bound = (pre[f1 - gb] - pre[f0 - gb]) / pre[gl] * (1.0 + 1e-9);
        if (bound < viou_threshold || bound <= ov_max) return -std::numeric_limits<double>::infinity();
        if (!pt[w]) {
          pt[w] = boxes.get(true, p, w);
          pv[w] = traj_volume(pt[w], pl);
        }
        return viou(pt[w], pb, pl, pv[w], gboxes, gb, gl, pre[gl]);
      };
      int64_t k_max = -1;
      for (auto it = lo; it != hi; ++it) {
        const int64_t g = it->second;
        if (detected[g]) continue;
        const double s_iou = member_viou(g, 0);
        // min(s, o) passes neither test when s fails them, so the object vIoU (and its boxes) is skipped.
        if (!(s_iou >= viou_threshold && s_iou > ov_max)) continue;
        const double o_iou = member_viou(g, 1);
        const double ov = std::min(s_iou, o_iou);
        if (ov >= viou_threshold && ov > ov_max) {
          ov_max = ov;
          k_max = g;
        }
      }
      if (k_max >= 0) {
        tp[k] = 1;
        detected[k_max] = 1;
      }
      if (out.match) out.match[p] = k_max;
    }
    boxes.video_done(g0, g0 + ng, p0, p0 + np_);  // the rest of the video needs no box
    // float32 cumsums and divisions, as np.cumsum(...).astype(np.float32) / np.maximum(n, float32 eps).
    rec.resize(np_);
    prec.resize(np_);
    int64_t cum = 0;
    for (int64_t k = 0; k < np_; ++k) {
      cum += tp[k];
      rec[k] = static_cast<float>(cum) / std::max(static_cast<float>(ng), eps32);
      prec[k] = static_cast<float>(cum) / static_cast<float>(k + 1);
    }
    out.ap[v] = voc_ap(rec.data(), prec.data(), np_);
    for (int64_t j = 0; j < n_det_k; ++j) {
      const int64_t cut = std::min(det_k[j], np_);
      int64_t hits = 0;
      for (int64_t k = 0; k < cut; ++k) hits += tp[k];
      out.det_hits[v * n_det_k + j] = hits;
    }

    // Tagging: distinct triplets in score order, a hit when the triplet occurs in the ground truth
    // (visual_relation_detection.py: eval_tagging_scores).
    seen.clear();
    tag_cum.clear();
    cum = 0;
    for (int64_t k = 0; k < np_; ++k) {
      const int64_t t = pred.triplet[order[k]];
      if (!seen.insert(t).second) continue;
      const auto [lo, hi] = group(t);
      cum += lo != hi;
      tag_cum.push_back(cum);
    }
    const int64_t nt = static_cast<int64_t>(tag_cum.size());
    out.n_tag[v] = nt;
    for (int64_t j = 0; j < n_tag_k; ++j) {
      const int64_t cut = std::min(tag_k[j], nt);
      out.tag_prec[v * n_tag_k + j] =
          cut > 0 ? static_cast<float>(tag_cum[cut - 1]) / static_cast<float>(cut) : 0.0f;
    }
  }
}

}  // namespace uasan
