// Bindings of csrc/boxes.{h,cpp}: box IoU / GIoU, pair geometry, vIoU / vPoI matrices.
#include <pybind11/stl.h>

#include <string>

#include "boxes.h"
#include "bindings.h"

namespace uasan_py {

namespace {

// box_iou / box_giou share their signature: boxes a (N, 4) against b (M, 4) -> (N, M).
template <typename T>
carray<T> box_matrix_py(const char* op, void (*f)(const T*, int64_t, const T*, int64_t, bool, T*), carray<T> a,
                        carray<T> b, bool plus_one) {
  require_shape(op, "a", a, {-1, 4}, "(N, 4)");
  require_shape(op, "b", b, {-1, 4}, "(M, 4)");
  carray<T> out({a.shape(0), b.shape(0)});
  {
    py::gil_scoped_release nogil;
    f(a.data(), a.shape(0), b.data(), b.shape(0), plus_one, out.mutable_data());
  }
  return out;
}

template <typename T>
carray<T> box_iou_py(carray<T> a, carray<T> b, bool plus_one) {
  return box_matrix_py<T>("box_iou", &uasan::box_iou<T>, a, b, plus_one);
}

template <typename T>
carray<T> box_giou_py(carray<T> a, carray<T> b, bool plus_one) {
  return box_matrix_py<T>("box_giou", &uasan::box_giou<T>, a, b, plus_one);
}

void require_pair_inputs(const char* op, const py::array& boxes, const py::array& valid, const py::array& pairs) {
  require_shape(op, "boxes", boxes, {-1, -1, 4}, "(N, T, 4)");
  require_shape(op, "valid", valid, {boxes.shape(0), boxes.shape(1)}, "(N, T) matching boxes");
  require_shape(op, "pairs", pairs, {-1, 2}, "(P, 2)");
}

template <typename T>
py::tuple pair_union_boxes_py(carray<T> boxes, carray<bool> valid, carray<int64_t> pairs) {
  require_pair_inputs("pair_union_boxes", boxes, valid, pairs);
  const py::ssize_t n = boxes.shape(0), t = boxes.shape(1), p = pairs.shape(0);
  carray<T> out({p, t, py::ssize_t(4)});
  carray<bool> out_valid({p, t});
  {
    py::gil_scoped_release nogil;
    uasan::pair_union_boxes<T>(boxes.data(), reinterpret_cast<const uint8_t*>(valid.data()), n, t, pairs.data(), p,
                               out.mutable_data(), reinterpret_cast<uint8_t*>(out_valid.mutable_data()));
  }
  return py::make_tuple(out, out_valid);
}

// pair_motion_features / pair_giou_start_end share their signature: one row of `width` values per pair, from the
// window's boxes (N, T, 4), valid (N, T) and pairs (P, 2), and one scalar option.
template <typename T, typename Option>
carray<T> pair_rows_py(const char* op, py::ssize_t width,
                       void (*f)(const T*, const uint8_t*, int64_t, int64_t, const int64_t*, int64_t, Option, T*),
                       carray<T> boxes, carray<bool> valid, carray<int64_t> pairs, Option option) {
  require_pair_inputs(op, boxes, valid, pairs);
  const py::ssize_t n = boxes.shape(0), t = boxes.shape(1), p = pairs.shape(0);
  carray<T> out({p, width});
  {
    py::gil_scoped_release nogil;
    f(boxes.data(), reinterpret_cast<const uint8_t*>(valid.data()), n, t, pairs.data(), p, option, out.mutable_data());
  }
  return out;
}

template <typename T>
carray<T> pair_motion_features_py(carray<T> boxes, carray<bool> valid, carray<int64_t> pairs, double min_size) {
  return pair_rows_py<T, double>("pair_motion_features", 12, &uasan::pair_motion_features<T>, boxes, valid, pairs,
                                 min_size);
}

template <typename T>
carray<T> pair_giou_start_end_py(carray<T> boxes, carray<bool> valid, carray<int64_t> pairs, bool plus_one) {
  return pair_rows_py<T, bool>("pair_giou_start_end", 2, &uasan::pair_giou_start_end<T>, boxes, valid, pairs,
                               plus_one);
}

uasan::TrajSet traj_set(const char* op, const char* arg, const carray<double>& boxes, const carray<int64_t>& starts,
                        const carray<int64_t>& offsets) {
  require_shape(op, arg, boxes, {-1, 4}, "(sum T, 4) boxes");
  require_shape(op, arg, starts, {-1}, "(count,) starts");
  require_shape(op, arg, offsets, {starts.shape(0) + 1}, "(count + 1,) offsets");
  if (offsets.data()[starts.shape(0)] != boxes.shape(0)) {
    uasan::fail(op, "expected ", arg, " offsets to end at the number of boxes ", boxes.shape(0), ", but got ",
                offsets.data()[starts.shape(0)]);
  }
  return {boxes.data(), starts.data(), offsets.data(), starts.shape(0)};
}

// viou_matrix / vpoi_matrix share their signature: CSR trajectories a and b -> (A, B) float64.
template <void (*F)(const uasan::TrajSet&, const uasan::TrajSet&, bool, double*)>
carray<double> traj_matrix_py(const char* op, carray<double> boxes_a, carray<int64_t> starts_a,
                              carray<int64_t> offsets_a, carray<double> boxes_b, carray<int64_t> starts_b,
                              carray<int64_t> offsets_b, bool plus_one) {
  const uasan::TrajSet a = traj_set(op, "trajs_a", boxes_a, starts_a, offsets_a);
  const uasan::TrajSet b = traj_set(op, "trajs_b", boxes_b, starts_b, offsets_b);
  carray<double> out({a.count, b.count});
  {
    py::gil_scoped_release nogil;
    F(a, b, plus_one, out.mutable_data());
  }
  return out;
}

// Registers the float64 overload first so that pybind11's conversion pass (anything not already float32 or
// float64 and contiguous) lands on float64.
template <typename F64, typename F32, typename... Extra>
void def_float(py::module_& m, const char* name, F64 f64, F32 f32, const Extra&... extra) {
  m.def(name, f64, extra...);
  m.def(name, f32, extra...);
}

}  // namespace

void bind_boxes(py::module_& m) {
  def_float(m, "box_iou", &box_iou_py<double>, &box_iou_py<float>, py::arg("a"), py::arg("b"), py::arg("plus_one"));
  def_float(m, "box_giou", &box_giou_py<double>, &box_giou_py<float>, py::arg("a"), py::arg("b"),
            py::arg("plus_one"));
  def_float(m, "pair_union_boxes", &pair_union_boxes_py<double>, &pair_union_boxes_py<float>, py::arg("boxes"),
            py::arg("valid"), py::arg("pairs"));
  def_float(m, "pair_motion_features", &pair_motion_features_py<double>, &pair_motion_features_py<float>,
            py::arg("boxes"), py::arg("valid"), py::arg("pairs"), py::arg("min_size"));
  def_float(m, "pair_giou_start_end", &pair_giou_start_end_py<double>, &pair_giou_start_end_py<float>,
            py::arg("boxes"), py::arg("valid"), py::arg("pairs"), py::arg("plus_one"));
  for (const char* op : {"viou_matrix", "vpoi_matrix"}) {
    auto fn = std::string(op) == "viou_matrix" ? &traj_matrix_py<uasan::viou_matrix>
                                               : &traj_matrix_py<uasan::vpoi_matrix>;
    m.def(
        op,
        [fn, op](carray<double> ba, carray<int64_t> sa, carray<int64_t> oa, carray<double> bb, carray<int64_t> sb,
                 carray<int64_t> ob, bool plus_one) { return fn(op, ba, sa, oa, bb, sb, ob, plus_one); },
        py::arg("boxes_a"), py::arg("starts_a"), py::arg("offsets_a"), py::arg("boxes_b"), py::arg("starts_b"),
        py::arg("offsets_b"), py::arg("plus_one"));
  }
}

}  // namespace uasan_py
