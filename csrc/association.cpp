#include "association.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"

// Parity with the NumPy reference is bit-exact, so a * b + c must stay two roundings: never let GCC fuse it
// into an FMA (its default -ffp-contract=fast does so wherever the target has FMA instructions).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace uasan {
namespace {

constexpr const char* kOp = "greedy_relation_association";

// Frames [start, end) with boxes[4 * (f - start) ...] the box at frame f.
struct TrajView {
  int64_t start, end;
  const double* boxes;
  const double* at(int64_t f) const { return boxes + 4 * (f - start); }
};

struct Traj {
  int64_t start = 0, end = 0;
  std::vector<double> boxes;

  Traj() = default;
  explicit Traj(const TrajView& v) : start(v.start), end(v.end), boxes(v.boxes, v.boxes + 4 * (v.end - v.start)) {}
  TrajView view() const { return {start, end, boxes.data()}; }
};

// NumPy's pairwise summation of float64 (numpy/_core/src/umath/loops_utils.h: pairwise_sum), which np.sum uses
// along a reduced axis; term(i) gives the i-th summand.
template <typename Term>
double pairwise_sum(const Term& term, int64_t lo, int64_t n) {
  if (n < 8) {
    double res = 0.0;
    for (int64_t i = 0; i < n; ++i) res += term(lo + i);
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = term(lo + j);
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += term(lo + i + j);
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += term(lo + i);
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(term, lo, n2) + pairwise_sum(term, lo + n2, n - n2);
}

// Inclusive-pixel volume of n consecutive boxes, as VidVRD-II's _union: np.sum((x2 - x1 + 1) * (y2 - y1 + 1)).
double volume(const double* b, int64_t n) {
  auto term = [b](int64_t i) {
    const double* p = b + 4 * i;
    const double w = (p[2] - p[0]) + 1.0;
    const double h = (p[3] - p[1]) + 1.0;
    return w * h;
  };
  return 0.0 + pairwise_sum(term, 0, n);
}

// Intersection volume of two aligned runs of n boxes, as VidVRD-II's _intersect: coordinates rounded to float32,
// per-frame areas in float32, accumulated frame by frame in float32.
float intersection(const double* a, const double* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const double* p = a + 4 * i;
    const double* q = b + 4 * i;
    float w = static_cast<float>(std::min(p[2], q[2])) + 1.0f;
    w = w - static_cast<float>(std::max(p[0], q[0]));
    if (w < 0.0f) w = 0.0f;
    float h = static_cast<float>(std::min(p[3], q[3])) + 1.0f;
    h = h - static_cast<float>(std::max(p[1], q[1]));
    if (h < 0.0f) h = 0.0f;
    const float area = w * h;
    acc += area;
  }
  return acc;
}

// Trajectory.cubic_intersection(other, temporal_tolerance) followed by `> threshold`: cubic IoU over the common
// frames, or of the boundary boxes across a gap shorter than the tolerance; the ratio is stored as float32.
bool cubic_iou_above(const TrajView& a, const TrajView& b, const AssociationParams& prm) {
  const int64_t lo = std::max(a.start, b.start), hi = std::min(a.end, b.end);
  const double *pa, *pb;
  int64_t n;
  if (lo < hi) {
    pa = a.at(lo);
    pb = b.at(lo);
    n = hi - lo;
  } else if (static_cast<double>(lo - hi) < prm.temporal_tolerance) {
    if (a.end <= b.start) {
      pa = a.at(a.end - 1);
      pb = b.at(b.start);
    } else {
      pa = a.at(a.start);
      pb = b.at(b.end - 1);
    }
    n = 1;
  } else {
    return 0.0 > prm.linkage_threshold;  // the Python float 0.0
  }
  const float inter = intersection(pa, pb, n);
  const double uni = volume(pa, n) + volume(pb, n);
  const double den = std::max(uni - static_cast<double>(inter), 1e-8);
  const float iou = static_cast<float>(static_cast<double>(inter) / den);
  return static_cast<double>(iou) > prm.linkage_threshold_f32;
}

// Trajectory.cubic_enclose: intersection volume over the common frames divided by b's whole volume (float64).
double cubic_enclose(const TrajView& a, const TrajView& b) {
  const int64_t lo = std::max(a.start, b.start), hi = std::min(a.end, b.end);
  if (lo >= hi) return 0.0;
  const float inter = intersection(a.at(lo), b.at(lo), hi - lo);
  const double vol = volume(b.boxes, b.end - b.start);
  return static_cast<double>(inter) / std::max(vol, 1e-8);
}

// np.interp(x, [x0, x1], [y0, y1]) for x0 < x < x1 (numpy/_core/src/multiarray/compiled_base.c: arr_interp).
double interp(double x, double x0, double y0, double x1, double y1) {
  const double slope = (y1 - y0) / (x1 - x0);
  const double t = slope * (x - x0);
  double r = t + y0;
  if (std::isnan(r)) {
    const double u = slope * (x - x1);
    r = u + y1;
    if (std::isnan(r) && y0 == y1) r = y0;
  }
  return r;
}

void interp_box(double* out, int64_t p, int64_t x0, const double* b0, int64_t x1, const double* b1) {
  for (int c = 0; c < 4; ++c) {
    out[c] = interp(static_cast<double>(p), static_cast<double>(x0), b0[c], static_cast<double>(x1), b1[c]);
  }
}

void average_box(double* out, const double* a, const double* b) {
  for (int c = 0; c < 4; ++c) out[c] = (a[c] + b[c]) / 2.0;
}

// Trajectory.join: the union of the frames; the mean box where both exist, linear interpolation across a gap.
void join(Traj& self, const TrajView& other) {
  const int64_t ms = std::min(self.start, other.start), me = std::max(self.end, other.end);
  if (other.start >= self.start) {
    // Frames before other.start are self's alone and stay; work in place from there on.
    const int64_t old_end = self.end;
    self.boxes.resize(static_cast<size_t>(4 * (me - ms)));
    double* out = self.boxes.data();
    auto row = [out, ms](int64_t f) { return out + 4 * (f - ms); };
    const int64_t both_end = std::min(old_end, other.end);
    for (int64_t p = other.start; p < both_end; ++p) average_box(row(p), row(p), other.at(p));
    for (int64_t p = old_end; p < other.start; ++p) {
      interp_box(row(p), p, old_end - 1, row(old_end - 1), other.start, other.at(other.start));
    }
    for (int64_t p = std::max(old_end, other.start); p < other.end; ++p) std::copy_n(other.at(p), 4, row(p));
    self.end = me;
    return;
  }
  const TrajView s = self.view();
  std::vector<double> boxes(static_cast<size_t>(4 * (me - ms)));
  for (int64_t p = ms; p < me; ++p) {
    double* out = boxes.data() + 4 * (p - ms);
    const bool in_s = s.start <= p && p < s.end, in_o = other.start <= p && p < other.end;
    if (in_s && in_o) {
      average_box(out, s.at(p), other.at(p));
    } else if (in_s) {
      std::copy_n(s.at(p), 4, out);
    } else if (in_o) {
      std::copy_n(other.at(p), 4, out);
    } else if (s.end < other.start) {
      interp_box(out, p, s.end - 1, s.at(s.end - 1), other.start, other.at(other.start));
    } else {
      interp_box(out, p, other.end - 1, other.at(other.end - 1), s.start, s.at(s.start));
    }
  }
  self.boxes.swap(boxes);
  self.start = ms;
  self.end = me;
}

// Python's sum() of the confidences: left to right, or Neumaier-compensated as in CPython >= 3.12.
struct ScoreSum {
  double f = 0.0, c = 0.0;
  void add(double x, bool compensated) {
    if (!compensated) {
      f += x;
      return;
    }
    const double t = f + x;
    if (std::fabs(f) >= std::fabs(x)) {
      c += (f - t) + x;
    } else {
      c += (x - t) + f;
    }
    f = t;
  }
  double value(bool compensated) const { return (compensated && c != 0.0 && std::isfinite(c)) ? f + c : f; }
};

struct VideoRelation {
  int64_t triplet, origin;
  Traj sub, obj;
  ScoreSum sum;
  double score;
};

void check_input(const AssociationInput& in, const AssociationParams& prm) {
  if (in.num_segments < 0 || in.num_relations < 0 || in.num_boxes < 0) fail(kOp, "expected non-negative sizes");
  if (in.segment_offsets[0] != 0) fail(kOp, "expected segment_offsets to start at 0, but got ", in.segment_offsets[0]);
  for (int64_t s = 0; s < in.num_segments; ++s) {
    if (in.segment_offsets[s + 1] < in.segment_offsets[s]) {
      fail(kOp, "expected segment_offsets to be non-decreasing, but segment ", s, " ends before it starts");
    }
  }
  if (in.segment_offsets[in.num_segments] != in.num_relations) {
    fail(kOp, "expected segment_offsets to end at the number of relations ", in.num_relations, ", but got ",
         in.segment_offsets[in.num_segments]);
  }
  if (in.box_offsets[0] != 0) fail(kOp, "expected box_offsets to start at 0, but got ", in.box_offsets[0]);
  for (int64_t i = 0; i < in.num_relations; ++i) {
    const int64_t* sp = in.spans + 4 * i;
    for (int k = 0; k < 4; k += 2) {
      if (sp[k] < 0 || sp[k + 1] <= sp[k]) {
        fail(kOp, "expected spans with 0 <= start < end, but relation ", i, " has [", sp[k], ", ", sp[k + 1], ")");
      }
    }
    const int64_t len = (sp[1] - sp[0]) + (sp[3] - sp[2]);
    if (in.box_offsets[i + 1] - in.box_offsets[i] != len) {
      fail(kOp, "expected relation ", i, " to own ", len, " boxes, but box_offsets give it ",
           in.box_offsets[i + 1] - in.box_offsets[i]);
    }
  }
  if (in.box_offsets[in.num_relations] != in.num_boxes) {
    fail(kOp, "expected box_offsets to end at the number of boxes ", in.num_boxes, ", but got ",
         in.box_offsets[in.num_relations]);
  }
  check_boxes(kOp, "boxes", in.boxes, in.num_boxes);
  if (prm.association_topk <= 0) fail(kOp, "expected association_topk > 0, but got ", prm.association_topk);
}

}  // namespace

AssociationOutput greedy_relation_association(const AssociationInput& in, const AssociationParams& prm) {
  check_input(in, prm);
  const bool comp = prm.compensated_sum;

  std::vector<VideoRelation> rels;  // video_relation_list, in creation order
  std::vector<int64_t> last, cur;   // relations extended or created by the previous / current segment
  // Python's list.sort(key=score, reverse=True) is stable: equal scores keep their order.
  const auto by_score = [&rels](int64_t a, int64_t b) { return rels[a].score > rels[b].score; };
  for (int64_t s = 0; s < in.num_segments; ++s) {
    std::stable_sort(last.begin(), last.end(), by_score);
    cur.clear();
    for (int64_t i = in.segment_offsets[s]; i < in.segment_offsets[s + 1]; ++i) {
      const int64_t* sp = in.spans + 4 * i;
      const double* b = in.boxes + 4 * in.box_offsets[i];
      const TrajView sub{sp[0], sp[1], b}, obj{sp[2], sp[3], b + 4 * (sp[1] - sp[0])};
      const int64_t trip = in.triplets[i];
      size_t k = 0;
      for (; k < last.size(); ++k) {
        const VideoRelation& r = rels[last[k]];
        if (r.triplet == trip && cubic_iou_above(r.sub.view(), sub, prm) &&
            cubic_iou_above(r.obj.view(), obj, prm)) {
          break;  // the first linked relation, in score order, takes it
        }
      }
      if (k < last.size()) {
        const int64_t idx = last[k];
        VideoRelation& r = rels[idx];
        join(r.sub, sub);
        join(r.obj, obj);
        r.sum.add(0.0 + in.scores[i], comp);  // confs_list.append(other.score()), other.score() == 0 + conf
        r.score = r.sum.value(comp);
        cur.push_back(idx);
        last.erase(last.begin() + static_cast<std::ptrdiff_t>(k));
      } else {
        VideoRelation r{trip, i, Traj(sub), Traj(obj), ScoreSum{}, 0.0};
        r.sum.add(in.scores[i], comp);
        r.score = r.sum.value(comp);
        cur.push_back(static_cast<int64_t>(rels.size()));
        rels.push_back(std::move(r));
      }
    }
    last.swap(cur);
  }

  // Serialise over the common span of subject and object; a span of <= 1 frame is not a valid relation.
  std::vector<int64_t> order;
  for (size_t k = 0; k < rels.size(); ++k) {
    const VideoRelation& r = rels[k];
    const int64_t span = std::min(r.sub.end, r.obj.end) - std::max(r.sub.start, r.obj.start);
    if (span > 1) order.push_back(static_cast<int64_t>(k));
  }
  std::stable_sort(order.begin(), order.end(), by_score);
  if (static_cast<int64_t>(order.size()) > prm.association_topk) {
    order.resize(static_cast<size_t>(prm.association_topk));
  }

  if (prm.nms < 1.0) {
    std::vector<int64_t> keep;
    std::vector<char> gone(order.size(), 0);
    for (size_t i = 0; i < order.size(); ++i) {
      if (gone[i]) continue;
      const VideoRelation& r = rels[order[i]];
      keep.push_back(order[i]);
      for (size_t j = i + 1; j < order.size(); ++j) {
        if (gone[j]) continue;
        const VideoRelation& o = rels[order[j]];
        if (r.triplet == o.triplet && cubic_enclose(r.sub.view(), o.sub.view()) > prm.nms &&
            cubic_enclose(r.obj.view(), o.obj.view()) > prm.nms) {
          gone[j] = 1;
        }
      }
    }
    order.swap(keep);
  }

  AssociationOutput out;
  const size_t n = order.size();
  out.origin.reserve(n);
  out.score.reserve(n);
  out.duration.reserve(2 * n);
  out.offsets.reserve(n + 1);
  out.offsets.push_back(0);
  size_t total = 0;
  for (const int64_t k : order) {
    const VideoRelation& r = rels[k];
    total += static_cast<size_t>(std::min(r.sub.end, r.obj.end) - std::max(r.sub.start, r.obj.start));
  }
  out.sub_boxes.reserve(4 * total);
  out.obj_boxes.reserve(4 * total);
  for (const int64_t k : order) {
    const VideoRelation& r = rels[k];
    const int64_t ps = std::max(r.sub.start, r.obj.start), pe = std::min(r.sub.end, r.obj.end);
    out.origin.push_back(r.origin);
    out.score.push_back(r.score);
    out.duration.push_back(ps);
    out.duration.push_back(pe);
    out.offsets.push_back(out.offsets.back() + (pe - ps));
    const TrajView sv = r.sub.view(), ov = r.obj.view();
    out.sub_boxes.insert(out.sub_boxes.end(), sv.at(ps), sv.at(pe));
    out.obj_boxes.insert(out.obj_boxes.end(), ov.at(ps), ov.at(pe));
  }
  return out;
}

}  // namespace uasan
