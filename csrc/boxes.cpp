#include "boxes.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"

namespace uasan {
namespace {

struct Box {
  double x1, y1, x2, y2;
};

template <typename T>
inline Box load(const T* p) {
  return {static_cast<double>(p[0]), static_cast<double>(p[1]), static_cast<double>(p[2]),
          static_cast<double>(p[3])};
}

inline double area(const Box& b, double off) { return (b.x2 - b.x1 + off) * (b.y2 - b.y1 + off); }

inline double inter(const Box& a, const Box& b, double off) {
  const double w = std::min(a.x2, b.x2) - std::max(a.x1, b.x1) + off;
  const double h = std::min(a.y2, b.y2) - std::max(a.y1, b.y1) + off;
  return (w > 0 && h > 0) ? w * h : 0.0;
}

inline double iou(const Box& a, const Box& b, double off) {
  const double i = inter(a, b, off);
  const double u = area(a, off) + area(b, off) - i;
  return u > 0 ? i / u : 0.0;
}

inline double giou(const Box& a, const Box& b, double off) {
  const double i = inter(a, b, off);
  const double u = area(a, off) + area(b, off) - i;
  const double v = u > 0 ? i / u : 0.0;
  const double cw = std::max(a.x2, b.x2) - std::min(a.x1, b.x1) + off;
  const double ch = std::max(a.y2, b.y2) - std::min(a.y1, b.y1) + off;
  const double c = cw * ch;
  return c > 0 ? v - (c - u) / c : v;
}

// First and last valid frame of every trajectory; -1 where it never exists.
void first_last(const uint8_t* valid, int64_t n, int64_t t, std::vector<int64_t>& first, std::vector<int64_t>& last) {
  first.assign(n, -1);
  last.assign(n, -1);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* v = valid + i * t;
    for (int64_t f = 0; f < t; ++f) {
      if (v[f]) {
        if (first[i] < 0) first[i] = f;
        last[i] = f;
      }
    }
  }
}

void check_pairs(const char* op, const int64_t* pairs, int64_t p, int64_t n) {
  for (int64_t k = 0; k < 2 * p; ++k) {
    if (pairs[k] < 0 || pairs[k] >= n) {
      fail(op, "expected pairs to index trajectories in [0, ", n, "), but pairs[", k / 2, "] holds ", pairs[k]);
    }
  }
}

template <typename T>
void check_valid_boxes(const char* op, const T* boxes, const uint8_t* valid, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (valid[i]) check_boxes(op, "boxes", boxes + 4 * i, 1);
  }
}

}  // namespace

namespace {

// Shared loop of box_iou / box_giou: F of every box of a against every box of b.
template <double (*F)(const Box&, const Box&, double), typename T>
void box_pair_matrix(const char* op, const T* a, int64_t n, const T* b, int64_t m, bool plus_one, T* out) {
  check_boxes(op, "a", a, n);
  check_boxes(op, "b", b, m);
  const double off = plus_one ? 1.0 : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const Box bi = load(a + 4 * i);
    for (int64_t j = 0; j < m; ++j) out[i * m + j] = static_cast<T>(F(bi, load(b + 4 * j), off));
  }
}

}  // namespace

template <typename T>
void box_iou(const T* a, int64_t n, const T* b, int64_t m, bool plus_one, T* out) {
  box_pair_matrix<iou>("box_iou", a, n, b, m, plus_one, out);
}

template <typename T>
void box_giou(const T* a, int64_t n, const T* b, int64_t m, bool plus_one, T* out) {
  box_pair_matrix<giou>("box_giou", a, n, b, m, plus_one, out);
}

template <typename T>
void pair_union_boxes(const T* boxes, const uint8_t* valid, int64_t n, int64_t t, const int64_t* pairs, int64_t p,
                      T* out_union, uint8_t* out_valid) {
  check_pairs("pair_union_boxes", pairs, p, n);
  check_valid_boxes("pair_union_boxes", boxes, valid, n * t);
  for (int64_t k = 0; k < p; ++k) {
    const int64_t s = pairs[2 * k], o = pairs[2 * k + 1];
    const T* bs = boxes + s * t * 4;
    const T* bo = boxes + o * t * 4;
    const uint8_t* vs = valid + s * t;
    const uint8_t* vo = valid + o * t;
    T* u = out_union + k * t * 4;
    uint8_t* uv = out_valid + k * t;
    for (int64_t f = 0; f < t; ++f) {
      const bool both = vs[f] && vo[f];
      uv[f] = both;
      if (both) {
        u[4 * f + 0] = std::min(bs[4 * f + 0], bo[4 * f + 0]);
        u[4 * f + 1] = std::min(bs[4 * f + 1], bo[4 * f + 1]);
        u[4 * f + 2] = std::max(bs[4 * f + 2], bo[4 * f + 2]);
        u[4 * f + 3] = std::max(bs[4 * f + 3], bo[4 * f + 3]);
      } else {
        u[4 * f + 0] = u[4 * f + 1] = u[4 * f + 2] = u[4 * f + 3] = T(0);
      }
    }
  }
}

template <typename T>
void pair_motion_features(const T* boxes, const uint8_t* valid, int64_t n, int64_t t, const int64_t* pairs, int64_t p,
                          double min_size, T* out) {
  check_pairs("pair_motion_features", pairs, p, n);
  check_valid_boxes("pair_motion_features", boxes, valid, n * t);
  if (!(min_size > 0) || !std::isfinite(min_size)) fail("pair_motion_features", "expected min_size > 0, but got ", min_size);
  std::vector<int64_t> first, last;
  first_last(valid, n, t, first, last);
  // Per trajectory and end (0 first, 1 last): centre x, y, w, h, log w, log h, time (start or exclusive end).
  constexpr int G = 7;
  std::vector<double> geo(static_cast<size_t>(n) * 2 * G, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    if (first[i] < 0) continue;
    for (int e = 0; e < 2; ++e) {
      const int64_t f = e == 0 ? first[i] : last[i];
      const Box b = load(boxes + (i * t + f) * 4);
      double* g = &geo[(i * 2 + e) * G];
      g[0] = 0.5 * (b.x1 + b.x2);
      g[1] = 0.5 * (b.y1 + b.y2);
      g[2] = std::max(b.x2 - b.x1, min_size);
      g[3] = std::max(b.y2 - b.y1, min_size);
      g[4] = std::log(g[2]);
      g[5] = std::log(g[3]);
      g[6] = static_cast<double>(e == 0 ? f : f + 1);
    }
  }
  for (int64_t k = 0; k < p; ++k) {
    const int64_t s = pairs[2 * k], o = pairs[2 * k + 1];
    T* r = out + k * 12;
    if (first[s] < 0 || first[o] < 0) {
      std::fill(r, r + 12, T(0));
      continue;
    }
    for (int e = 0; e < 2; ++e) {
      const double* gs = &geo[(s * 2 + e) * G];
      const double* go = &geo[(o * 2 + e) * G];
      r[0 + e] = static_cast<T>((gs[0] - go[0]) / go[2]);
      r[2 + e] = static_cast<T>((gs[1] - go[1]) / go[3]);
      r[4 + e] = static_cast<T>(gs[4] - go[4]);
      r[6 + e] = static_cast<T>(gs[5] - go[5]);
      r[8 + e] = static_cast<T>((gs[4] + gs[5]) - (go[4] + go[5]));
      r[10 + e] = static_cast<T>((gs[6] - go[6]) / 30.0);
    }
  }
}

template <typename T>
void pair_giou_start_end(const T* boxes, const uint8_t* valid, int64_t n, int64_t t, const int64_t* pairs, int64_t p,
                         bool plus_one, T* out) {
  check_pairs("pair_giou_start_end", pairs, p, n);
  check_valid_boxes("pair_giou_start_end", boxes, valid, n * t);
  std::vector<int64_t> first, last;
  first_last(valid, n, t, first, last);
  const double off = plus_one ? 1.0 : 0.0;
  for (int64_t k = 0; k < p; ++k) {
    const int64_t s = pairs[2 * k], o = pairs[2 * k + 1];
    if (first[s] < 0 || first[o] < 0) {
      out[2 * k] = out[2 * k + 1] = T(0);
      continue;
    }
    out[2 * k] = static_cast<T>(giou(load(boxes + (s * t + first[s]) * 4), load(boxes + (o * t + first[o]) * 4), off) + 1.0);
    out[2 * k + 1] = static_cast<T>(giou(load(boxes + (s * t + last[s]) * 4), load(boxes + (o * t + last[o]) * 4), off) + 1.0);
  }
}

void check_traj_set(const char* op, const char* arg, const TrajSet& s) {
  if (s.offsets[0] != 0) fail(op, "expected ", arg, " offsets to start at 0, but got ", s.offsets[0]);
  for (int64_t i = 0; i < s.count; ++i) {
    if (s.starts[i] < 0) fail(op, "expected ", arg, " start frames >= 0, but trajectory ", i, " starts at ", s.starts[i]);
    if (s.offsets[i + 1] < s.offsets[i]) fail(op, "expected ", arg, " offsets to be non-decreasing at trajectory ", i);
  }
  check_boxes(op, arg, s.boxes, s.offsets[s.count]);
}

namespace {

// Shared pair loop of viou_matrix / vpoi_matrix: intersection volume over the common frames, divided by the
// union of the whole volumes (vIoU) or by a's volume within the common frames (vPoI).
template <bool kPoI>
void traj_overlap_matrix(const char* op, const TrajSet& a, const TrajSet& b, bool plus_one, double* out) {
  check_traj_set(op, "trajs_a", a);
  check_traj_set(op, "trajs_b", b);
  const double off = plus_one ? 1.0 : 0.0;
  auto volumes = [off](const TrajSet& s) {
    std::vector<double> v(s.count, 0.0);
    for (int64_t i = 0; i < s.count; ++i) {
      for (int64_t r = s.offsets[i]; r < s.offsets[i + 1]; ++r) v[i] += area(load(s.boxes + 4 * r), off);
    }
    return v;
  };
  const std::vector<double> va = volumes(a), vb = volumes(b);
  for (int64_t i = 0; i < a.count; ++i) {
    const int64_t sa = a.starts[i], ea = sa + (a.offsets[i + 1] - a.offsets[i]);
    const double* ba = a.boxes + 4 * a.offsets[i];
    for (int64_t j = 0; j < b.count; ++j) {
      const int64_t sb = b.starts[j], eb = sb + (b.offsets[j + 1] - b.offsets[j]);
      const int64_t lo = std::max(sa, sb), hi = std::min(ea, eb);
      double v = 0.0;
      if (lo < hi) {
        const double* bb = b.boxes + 4 * b.offsets[j];
        double ov = 0.0, den = 0.0;
        for (int64_t f = lo; f < hi; ++f) {
          const Box x = load(ba + 4 * (f - sa));
          ov += inter(x, load(bb + 4 * (f - sb)), off);
          if (kPoI) den += area(x, off);
        }
        if (!kPoI) den = va[i] + vb[j] - ov;
        v = den > 0 ? ov / den : 0.0;
      }
      out[i * b.count + j] = v;
    }
  }
}

}  // namespace

void viou_matrix(const TrajSet& a, const TrajSet& b, bool plus_one, double* out) {
  traj_overlap_matrix<false>("viou_matrix", a, b, plus_one, out);
}

void vpoi_matrix(const TrajSet& a, const TrajSet& b, bool plus_one, double* out) {
  traj_overlap_matrix<true>("vpoi_matrix", a, b, plus_one, out);
}

#define UASAN_INSTANTIATE(T)                                                                                       \
  template void box_iou<T>(const T*, int64_t, const T*, int64_t, bool, T*);                                        \
  template void box_giou<T>(const T*, int64_t, const T*, int64_t, bool, T*);                                       \
  template void pair_union_boxes<T>(const T*, const uint8_t*, int64_t, int64_t, const int64_t*, int64_t, T*,      \
                                    uint8_t*);                                                                     \
  template void pair_motion_features<T>(const T*, const uint8_t*, int64_t, int64_t, const int64_t*, int64_t,      \
                                        double, T*);                                                               \
  template void pair_giou_start_end<T>(const T*, const uint8_t*, int64_t, int64_t, const int64_t*, int64_t, bool, \
                                       T*);
UASAN_INSTANTIATE(float)
UASAN_INSTANTIATE(double)
#undef UASAN_INSTANTIATE

}  // namespace uasan
