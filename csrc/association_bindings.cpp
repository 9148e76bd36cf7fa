// Bindings of csrc/association.{h,cpp} and the fast reader of nested box lists.
#include <pybind11/stl.h>

#include <cmath>
#include <vector>

#include "association.h"
#include "bindings.h"

namespace uasan_py {

namespace {

// Reads trajectories (a list of lists/tuples of [x1, y1, x2, y2] lists/tuples of Python floats or ints) into one
// (total, 4) float64 array, much faster than np.asarray on a list of small lists. Returns None at the first thing
// it does not expect (another container or number type, a count that differs from total, a box that is not finite
// with x2 >= x1 and y2 >= y1): the caller then takes the general np.asarray path, which names the problem.
py::object association_read_boxes(py::handle trajs, py::ssize_t total) {
  if (!PyList_Check(trajs.ptr()) || total < 0) return py::none();
  carray<double> out({total, py::ssize_t(4)});
  double* dst = out.mutable_data();
  py::ssize_t filled = 0;
  const py::ssize_t num_trajs = PyList_GET_SIZE(trajs.ptr());
  for (py::ssize_t t = 0; t < num_trajs; ++t) {
    PyObject* traj = PyList_GET_ITEM(trajs.ptr(), t);
    if (!PyList_Check(traj) && !PyTuple_Check(traj)) return py::none();
    const py::ssize_t num_boxes = PySequence_Fast_GET_SIZE(traj);
    if (num_boxes > total - filled) return py::none();
    PyObject** boxes = PySequence_Fast_ITEMS(traj);
    for (py::ssize_t b = 0; b < num_boxes; ++b, ++filled) {
      PyObject* box = boxes[b];
      if ((!PyList_Check(box) && !PyTuple_Check(box)) || PySequence_Fast_GET_SIZE(box) != 4) return py::none();
      PyObject** coords = PySequence_Fast_ITEMS(box);
      double* d = dst + 4 * filled;
      for (int k = 0; k < 4; ++k) {
        PyObject* c = coords[k];
        if (PyFloat_CheckExact(c)) {
          d[k] = PyFloat_AS_DOUBLE(c);
        } else if (PyLong_CheckExact(c)) {
          d[k] = PyLong_AsDouble(c);
          if (d[k] == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return py::none();
          }
        } else {
          return py::none();
        }
        if (!std::isfinite(d[k])) return py::none();
      }
      if (d[2] < d[0] || d[3] < d[1]) return py::none();
    }
  }
  if (filled != total) return py::none();
  return std::move(out);
}

template <typename T>
carray<T> association_array(const std::vector<T>& v, std::initializer_list<py::ssize_t> shape) {
  carray<T> a{std::vector<py::ssize_t>(shape)};
  T* out = a.mutable_data();
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[i];
  return a;
}

py::tuple greedy_relation_association_py(carray<int64_t> segment_offsets, carray<int64_t> triplets,
                                         carray<double> scores, carray<int64_t> spans, carray<int64_t> box_offsets,
                                         carray<double> boxes, double linkage_threshold, double linkage_threshold_f32,
                                         double temporal_tolerance, int64_t association_topk, double nms,
                                         bool compensated_sum) {
  const char* op = "greedy_relation_association";
  require_shape(op, "segment_offsets", segment_offsets, {-1}, "(num_segments + 1,)");
  if (segment_offsets.shape(0) < 1) {
    uasan::fail(op, "expected segment_offsets of shape (num_segments + 1,), but got (0,)");
  }
  require_shape(op, "triplets", triplets, {-1}, "(R,)");
  const py::ssize_t r = triplets.shape(0);
  require_shape(op, "scores", scores, {r}, "(R,) matching triplets");
  require_shape(op, "spans", spans, {r, 4}, "(R, 4) matching triplets");
  require_shape(op, "box_offsets", box_offsets, {r + 1}, "(R + 1,) matching triplets");
  require_shape(op, "boxes", boxes, {-1, 4}, "(num_boxes, 4)");
  const uasan::AssociationInput in{segment_offsets.shape(0) - 1, segment_offsets.data(), r, triplets.data(),
                                   scores.data(), spans.data(), box_offsets.data(), boxes.data(), boxes.shape(0)};
  const uasan::AssociationParams params{linkage_threshold, linkage_threshold_f32, temporal_tolerance,
                                        association_topk, nms, compensated_sum};
  uasan::AssociationOutput out;
  {
    py::gil_scoped_release nogil;
    out = uasan::greedy_relation_association(in, params);
  }
  const py::ssize_t n = static_cast<py::ssize_t>(out.score.size());
  const py::ssize_t m = static_cast<py::ssize_t>(out.offsets.back());
  return py::make_tuple(association_array(out.origin, {n}), association_array(out.score, {n}),
                        association_array(out.duration, {n, 2}), association_array(out.offsets, {n + 1}),
                        association_array(out.sub_boxes, {m, 4}), association_array(out.obj_boxes, {m, 4}));
}

}  // namespace

void bind_association(py::module_& m) {
  m.def("association_read_boxes", &association_read_boxes, py::arg("trajs"), py::arg("total"),
        "Trajectories (list of lists of [x1, y1, x2, y2]) as one checked (total, 4) float64 array, or None.");
  m.def("greedy_relation_association", &greedy_relation_association_py, py::arg("segment_offsets"),
        py::arg("triplets"), py::arg("scores"), py::arg("spans"), py::arg("box_offsets"), py::arg("boxes"),
        py::arg("linkage_threshold"), py::arg("linkage_threshold_f32"), py::arg("temporal_tolerance"),
        py::arg("association_topk"), py::arg("nms"), py::arg("compensated_sum"),
        "Greedy relational association over flat segment relations; returns (origin, score, duration, offsets, "
        "sub_boxes, obj_boxes) of the video relations.");
}

}  // namespace uasan_py
