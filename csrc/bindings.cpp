// The only translation unit that knows about Python: converts NumPy arrays (c_style | forcecast), checks
// shapes, releases the GIL around the op and returns NumPy arrays. std::invalid_argument becomes ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "association.h"
#include "boxes.h"
#include "common.h"
#include "eval.h"
#include "seq_nms.h"

namespace py = pybind11;

namespace {

template <typename T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// dims: -1 matches any size. Raises ValueError "op: expected arg of shape ..., but got ...".
void require_shape(const char* op, const char* arg, const py::array& a, std::initializer_list<py::ssize_t> dims,
                   const char* expected) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
  if (ok) {
    py::ssize_t i = 0;
    for (auto d : dims) {
      ok = ok && (d < 0 || a.shape(i) == d);
      ++i;
    }
  }
  if (!ok) uasan::fail(op, "expected ", arg, " of shape ", expected, ", but got ", shape_str(a));
}

template <typename T>
carray<T> box_iou_py(carray<T> a, carray<T> b, bool plus_one) {
  require_shape("box_iou", "a", a, {-1, 4}, "(N, 4)");
  require_shape("box_iou", "b", b, {-1, 4}, "(M, 4)");
  carray<T> out({a.shape(0), b.shape(0)});
  {
    py::gil_scoped_release nogil;
    uasan::box_iou<T>(a.data(), a.shape(0), b.data(), b.shape(0), plus_one, out.mutable_data());
  }
  return out;
}

template <typename T>
carray<T> box_giou_py(carray<T> a, carray<T> b, bool plus_one) {
  require_shape("box_giou", "a", a, {-1, 4}, "(N, 4)");
  require_shape("box_giou", "b", b, {-1, 4}, "(M, 4)");
  carray<T> out({a.shape(0), b.shape(0)});
  {
    py::gil_scoped_release nogil;
    uasan::box_giou<T>(a.data(), a.shape(0), b.data(), b.shape(0), plus_one, out.mutable_data());
  }
  return out;
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

template <typename T>
carray<T> pair_motion_features_py(carray<T> boxes, carray<bool> valid, carray<int64_t> pairs, double min_size) {
  require_pair_inputs("pair_motion_features", boxes, valid, pairs);
  const py::ssize_t n = boxes.shape(0), t = boxes.shape(1), p = pairs.shape(0);
  carray<T> out({p, py::ssize_t(12)});
  {
    py::gil_scoped_release nogil;
    uasan::pair_motion_features<T>(boxes.data(), reinterpret_cast<const uint8_t*>(valid.data()), n, t, pairs.data(),
                                   p, min_size, out.mutable_data());
  }
  return out;
}

template <typename T>
carray<T> pair_giou_start_end_py(carray<T> boxes, carray<bool> valid, carray<int64_t> pairs, bool plus_one) {
  require_pair_inputs("pair_giou_start_end", boxes, valid, pairs);
  const py::ssize_t n = boxes.shape(0), t = boxes.shape(1), p = pairs.shape(0);
  carray<T> out({p, py::ssize_t(2)});
  {
    py::gil_scoped_release nogil;
    uasan::pair_giou_start_end<T>(boxes.data(), reinterpret_cast<const uint8_t*>(valid.data()), n, t, pairs.data(),
                                  p, plus_one, out.mutable_data());
  }
  return out;
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

// seq_nms bindings
template <typename T>
carray<T> seq_nms_array(const std::vector<T>& v) {
  carray<T> a(static_cast<py::ssize_t>(v.size()));
  T* out = a.mutable_data();
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[i];
  return a;
}

py::tuple seq_nms_py(carray<double> boxes, carray<double> scores, std::optional<carray<int64_t>> labels,
                     double link_iou, double suppress_iou, const std::string& rescore, const std::string& suppress,
                     bool plus_one) {
  require_shape("seq_nms", "boxes", boxes, {-1, -1, 4}, "(F, B, 4)");
  require_shape("seq_nms", "scores", scores, {boxes.shape(0), boxes.shape(1)}, "(F, B) matching boxes");
  if (labels) require_shape("seq_nms", "labels", *labels, {boxes.shape(0), boxes.shape(1)}, "(F, B) matching boxes");
  const uasan::SeqNmsRescore rescore_mode = uasan::parse_seq_nms_rescore(rescore);
  const uasan::SeqNmsSuppress suppress_mode = uasan::parse_seq_nms_suppress(suppress);
  const int64_t* label_data = labels ? labels->data() : nullptr;
  uasan::SeqNmsTracks tracks;
  {
    py::gil_scoped_release nogil;
    tracks = uasan::seq_nms(boxes.data(), scores.data(), label_data, boxes.shape(0), boxes.shape(1), link_iou,
                            suppress_iou, rescore_mode, suppress_mode, plus_one);
  }
  return py::make_tuple(seq_nms_array(tracks.starts), seq_nms_array(tracks.lengths), seq_nms_array(tracks.indices),
                        seq_nms_array(tracks.scores));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "uasan C++ video-geometry ops (NumPy in, NumPy out)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  // --- boxes ---
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

  // --- seq_nms ---  (bindings for csrc/seq_nms.{h,cpp}; owned by the seq_nms op)
  m.def("seq_nms", &seq_nms_py, py::arg("boxes"), py::arg("scores"), py::arg("labels"), py::arg("link_iou"),
        py::arg("suppress_iou"), py::arg("rescore"), py::arg("suppress"), py::arg("plus_one"),
        "Seq-NMS over padded (F, B) detections; returns (starts, lengths, indices, scores) of the tracks.");

  // --- association ---  (bindings for csrc/association.{h,cpp}; owned by the association op)

  // --- eval ---  (bindings for csrc/eval.{h,cpp}; owned by uasan.evaluation)
}
