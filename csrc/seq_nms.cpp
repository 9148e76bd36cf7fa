#include "seq_nms.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common.h"

namespace uasan {
namespace {

constexpr const char* kOp = "seq_nms";
constexpr double kInf = std::numeric_limits<double>::infinity();

inline double box_area(const double* b, double off) { return (b[2] - b[0] + off) * (b[3] - b[1] + off); }

// Both IoU functions must give bit-identical results to the NumPy reference: GCC must not contract
// (area_a + area_b) - iw * ih into an FMA (possible with -march flags that enable FMA), and it if-converts (and so
// vectorises) the selects of overlap_row only without -ftrapping-math. Neither option changes a computed value.
#if defined(__GNUC__) && !defined(__clang__)
#define UASAN_SEQ_NMS_EXACT_FP __attribute__((optimize("no-trapping-math", "fp-contract=off")))
#else
#define UASAN_SEQ_NMS_EXACT_FP
#endif

// IoU with the arithmetic of VidVRD-II compute_overlap.pyx: 0 unless the intersection has strictly positive width
// and height; union = (area_a + area_b) - intersection.
UASAN_SEQ_NMS_EXACT_FP double overlap(const double* a, double area_a, const double* b, double area_b, double off) {
  const double iw = std::min(a[2], b[2]) - std::max(a[0], b[0]) + off;
  if (!(iw > 0)) return 0.0;
  const double ih = std::min(a[3], b[3]) - std::max(a[1], b[1]) + off;
  if (!(ih > 0)) return 0.0;
  const double inter = iw * ih;
  const double uni = (area_a + area_b) - inter;
  return inter / uni;
}

// out[j] = overlap(a, b_j) for the m boxes b given as columns, branch-free; same arithmetic step for step as
// overlap() (std::min(p, q) is q < p ? q : p), so the results are bit-identical.
UASAN_SEQ_NMS_EXACT_FP void overlap_row(const double* a, double area_a, const double* __restrict x1,
                                        const double* __restrict y1, const double* __restrict x2,
                                        const double* __restrict y2, const double* __restrict areas, int64_t m,
                                        double off, double* __restrict out) {
  const double ax1 = a[0], ay1 = a[1], ax2 = a[2], ay2 = a[3];
  for (int64_t j = 0; j < m; ++j) {
    const double bx1 = x1[j], by1 = y1[j], bx2 = x2[j], by2 = y2[j];
    const double iw = (bx2 < ax2 ? bx2 : ax2) - (ax1 < bx1 ? bx1 : ax1) + off;
    const double ih = (by2 < ay2 ? by2 : ay2) - (ay1 < by1 ? by1 : ay1) + off;
    const double inter = iw * ih;
    const double v = inter / ((area_a + areas[j]) - inter);
    out[j] = (iw > 0) & (ih > 0) ? v : 0.0;
  }
}

void check_threshold(const char* name, double value) {
  if (!(value >= 0.0 && value <= 1.0)) fail(kOp, "expected ", name, " in [0, 1], but got ", value);
}

void check_inputs(const double* boxes, const double* scores, int64_t frames, int64_t num_boxes) {
  const int64_t n = frames * num_boxes;
  for (int64_t i = 0; i < n; ++i) {
    const double s = scores[i];
    if (std::isnan(s)) {
      fail(kOp, "expected scores without NaN, but got NaN at frame ", i / num_boxes, ", box ", i % num_boxes);
    }
    if (s == kInf) {
      fail(kOp, "expected finite scores (-inf marks an absent box), but got inf at frame ", i / num_boxes, ", box ",
           i % num_boxes);
    }
    if (s == -kInf) continue;  // absent: coordinates are ignored
    const double* b = boxes + 4 * i;
    for (int c = 0; c < 4; ++c) {
      if (!std::isfinite(b[c])) {
        fail(kOp, "expected boxes to hold finite coordinates, but the box at frame ", i / num_boxes, ", box ",
             i % num_boxes, " has ", b[c]);
      }
    }
    if (b[2] < b[0] || b[3] < b[1]) {
      fail(kOp, "expected boxes with x2 >= x1 and y2 >= y1, but the box at frame ", i / num_boxes, ", box ",
           i % num_boxes, " is [", b[0], ", ", b[1], ", ", b[2], ", ", b[3], "]");
    }
  }
}

}  // namespace

SeqNmsRescore parse_seq_nms_rescore(const std::string& name) {
  if (name == "none") return SeqNmsRescore::kNone;
  if (name == "avg") return SeqNmsRescore::kAvg;
  if (name == "max") return SeqNmsRescore::kMax;
  fail(kOp, "expected rescore to be one of 'none', 'avg', 'max', but got '", name, "'");
}

SeqNmsSuppress parse_seq_nms_suppress(const std::string& name) {
  if (name == "zero") return SeqNmsSuppress::kZero;
  if (name == "remove") return SeqNmsSuppress::kRemove;
  fail(kOp, "expected suppress to be one of 'zero', 'remove', but got '", name, "'");
}

SeqNmsTracks seq_nms(const double* boxes, const double* scores, const int64_t* labels, int64_t frames,
                     int64_t num_boxes, double link_iou, double suppress_iou, SeqNmsRescore rescore,
                     SeqNmsSuppress suppress, bool plus_one) {
  if (frames < 0 || num_boxes < 0) {
    fail(kOp, "expected non-negative frames and num_boxes, but got ", frames, " and ", num_boxes);
  }
  if (num_boxes > std::numeric_limits<int32_t>::max()) {
    fail(kOp, "expected at most ", std::numeric_limits<int32_t>::max(), " boxes per frame, but got ", num_boxes);
  }
  check_threshold("link_iou", link_iou);
  check_threshold("suppress_iou", suppress_iou);
  check_inputs(boxes, scores, frames, num_boxes);

  SeqNmsTracks out;
  const int64_t F = frames, B = num_boxes, n = F * B;
  if (F < 2 || B == 0) return out;  // no path can be longer than one box
  const double off = plus_one ? 1.0 : 0.0;

  // Per-box state. `alive`: present and not removed; `cur`: the current (possibly suppressed) score.
  std::vector<uint8_t> alive(n);
  std::vector<double> area(n, 0.0), cur(scores, scores + n);
  for (int64_t i = 0; i < n; ++i) {
    alive[i] = scores[i] != -kInf;
    if (alive[i]) area[i] = box_area(boxes + 4 * i, off);
  }

  // Links frame f -> f + 1 as CSR over the source boxes of frames 0 .. F-2 (targets ascending), built once.
  // indeg[box] counts the links into a box from alive boxes of the previous frame: a box is a root (a path may
  // start there) iff it is alive and in frame 0 or has indeg 0.
  std::vector<int64_t> edge_off((F - 1) * B + 1, 0);
  std::vector<int32_t> edge_dst;
  std::vector<int32_t> indeg(n, 0);
  {
    // The next frame's boxes as columns, so that the IoU of one box against all of them is a branch-free loop the
    // compiler vectorises; its arithmetic is that of overlap() step for step (bit-identical results).
    std::vector<double> x1(B), y1(B), x2(B), y2(B), ar(B), iou(B);
    for (int64_t f = 0; f + 1 < F; ++f) {
      const int64_t nb = (f + 1) * B;
      for (int64_t j = 0; j < B; ++j) {
        const double* b = boxes + 4 * (nb + j);
        x1[j] = b[0];
        y1[j] = b[1];
        x2[j] = b[2];
        y2[j] = b[3];
        ar[j] = area[nb + j];
      }
      for (int64_t i = 0; i < B; ++i) {
        const int64_t src = f * B + i;
        edge_off[src] = static_cast<int64_t>(edge_dst.size());
        if (!alive[src]) continue;
        const double* a = boxes + 4 * src;
        overlap_row(a, area[src], x1.data(), y1.data(), x2.data(), y2.data(), ar.data(), B, off, iou.data());
        for (int64_t j = 0; j < B; ++j) {
          const int64_t dst = nb + j;
          if (!(iou[j] >= link_iou) || !alive[dst] || (labels != nullptr && labels[src] != labels[dst])) continue;
          edge_dst.push_back(static_cast<int32_t>(j));
          ++indeg[dst];
        }
      }
    }
  }
  edge_off[(F - 1) * B] = static_cast<int64_t>(edge_dst.size());

  // The same links reversed: pred_src[pred_off[box] .. pred_off[box + 1]) are the boxes of the previous frame that
  // link to `box` (for boxes of frames 1 .. F-1), used to propagate a change back to the boxes it can affect.
  std::vector<int64_t> pred_off(n + 1, 0);
  std::vector<int32_t> pred_src(edge_dst.size());
  for (int64_t idx = B; idx < n; ++idx) pred_off[idx + 1] = pred_off[idx] + indeg[idx];
  {
    std::vector<int64_t> fill(pred_off.begin(), pred_off.end() - 1);
    for (int64_t src = 0; src < (F - 1) * B; ++src) {
      const int64_t next_frame = (src / B + 1) * B;
      for (int64_t e = edge_off[src]; e < edge_off[src + 1]; ++e) {
        pred_src[fill[next_frame + edge_dst[e]]++] = static_cast<int32_t>(src % B);
      }
    }
  }

  // best[box]: the maximum summed score of a path starting at the box (-inf when not alive); next[box]: the box
  // that path takes in the following frame (-1: it ends here).
  std::vector<double> best(n, -kInf);
  std::vector<int32_t> next(n, -1);
  auto solve = [&](int64_t idx) {  // best / next of one box from those of the following frame
    if (!alive[idx]) {
      best[idx] = -kInf;
      next[idx] = -1;
      return;
    }
    int32_t arg = -1;
    double m = 0.0;
    if (idx < (F - 1) * B) {
      const int64_t nb = (idx / B + 1) * B;
      for (int64_t e = edge_off[idx], e_end = edge_off[idx + 1]; e < e_end; ++e) {
        const int32_t j = edge_dst[e];
        if (!alive[nb + j]) continue;
        if (arg < 0 || best[nb + j] > m) {  // first maximum wins ties (np.argmax)
          arg = j;
          m = best[nb + j];
        }
      }
    }
    best[idx] = arg < 0 ? cur[idx] : cur[idx] + m;
    next[idx] = arg;
  };
  for (int64_t idx = n - 1; idx >= 0; --idx) solve(idx);

  // The best root of each frame (first maximum), rescanned only for frames whose roots may have changed.
  std::vector<double> frame_best(F, -kInf);
  std::vector<int32_t> frame_arg(F, -1);
  std::vector<uint8_t> frame_dirty(F, 1);
  // Boxes to re-solve, per frame, after a suppression; `mark` dedups them (stamp = iteration).
  std::vector<std::vector<int32_t>> todo(F);
  std::vector<uint32_t> mark(n, 0);
  uint32_t stamp = 0;
  std::vector<int32_t> path;
  path.reserve(F);

  while (true) {
    for (int64_t f = 0; f < F; ++f) {
      if (!frame_dirty[f]) continue;
      frame_dirty[f] = 0;
      int32_t arg = -1;
      double m = -kInf;
      for (int64_t i = 0, idx = f * B; i < B; ++i, ++idx) {
        if (!alive[idx] || (f > 0 && indeg[idx] > 0)) continue;
        if (arg < 0 || best[idx] > m) {
          arg = static_cast<int32_t>(i);
          m = best[idx];
        }
      }
      frame_arg[f] = arg;
      frame_best[f] = m;
    }

    // The best root: strictly above 0 and above every earlier frame's best (earlier frames win ties).
    int64_t f0 = -1;
    double best_score = 0.0;
    for (int64_t f = 0; f < F; ++f) {
      if (frame_arg[f] >= 0 && frame_best[f] > best_score) {
        best_score = frame_best[f];
        f0 = f;
      }
    }
    if (f0 < 0) break;
    path.clear();
    for (int32_t i = frame_arg[f0]; i >= 0; i = next[(f0 + static_cast<int64_t>(path.size()) - 1) * B + i]) {
      path.push_back(i);
    }
    const int64_t len = static_cast<int64_t>(path.size());
    if (len <= 1) break;

    double score = best_score;
    if (rescore == SeqNmsRescore::kAvg) {
      double sum = 0.0;
      for (int64_t t = 0; t < len; ++t) sum += scores[(f0 + t) * B + path[t]];
      score = sum / static_cast<double>(len);
    } else if (rescore == SeqNmsRescore::kMax) {
      score = scores[f0 * B + path[0]];
      for (int64_t t = 1; t < len; ++t) score = std::max(score, scores[(f0 + t) * B + path[t]]);
    }
    out.starts.push_back(f0);
    out.lengths.push_back(len);
    out.indices.insert(out.indices.end(), path.begin(), path.end());
    out.scores.push_back(score);

    // Suppress, frame by frame, every alive box with IoU >= suppress_iou to the path box. The path box itself is
    // always suppressed (its IoU with itself is 1 unless its area is 0 or overflows): this guarantees termination.
    ++stamp;
    for (int64_t t = 0; t < len; ++t) {
      const int64_t f = f0 + t, base = f * B, p = base + path[t];
      const double* pb = boxes + 4 * p;
      for (int64_t k = 0; k < B; ++k) {
        const int64_t idx = base + k;
        if (!alive[idx]) continue;
        if (idx != p && !(overlap(pb, area[p], boxes + 4 * idx, area[idx], off) >= suppress_iou)) continue;
        if (suppress == SeqNmsSuppress::kZero) {
          if (cur[idx] == 0.0) continue;  // nothing changes
          cur[idx] = 0.0;
        } else {
          alive[idx] = 0;
          if (f + 1 < F) {
            for (int64_t e = edge_off[idx]; e < edge_off[idx + 1]; ++e) --indeg[base + B + edge_dst[e]];
            frame_dirty[f + 1] = 1;  // boxes there may have become roots
          }
        }
        mark[idx] = stamp;
        todo[f].push_back(static_cast<int32_t>(k));
      }
    }

    // Re-solve the changed boxes, then every box that links to a box whose best value or presence changed,
    // frame by frame backwards. Everything else keeps the value a full DP would give it.
    for (int64_t f = f0 + len - 1; f >= 0; --f) {
      for (const int32_t i : todo[f]) {
        const int64_t idx = f * B + i;
        const double old = best[idx];
        solve(idx);
        // A removed box always propagates: its predecessors lose a link even when its value was already -inf.
        if (best[idx] == old && alive[idx]) continue;
        frame_dirty[f] = 1;
        if (f == 0) continue;
        for (int64_t e = pred_off[idx]; e < pred_off[idx + 1]; ++e) {
          const int64_t q = idx - B - i + pred_src[e];
          if (alive[q] && mark[q] != stamp) {
            mark[q] = stamp;
            todo[f - 1].push_back(pred_src[e]);
          }
        }
      }
      todo[f].clear();
    }
  }
  return out;
}

}  // namespace uasan
