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

// association bindings
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

// eval bindings
// table (5, count) int64 rows: triplet, begin, length, sub_row, obj_row (see uasan::RelationTable and
// uasan::ArrayTrajSource).
uasan::RelationTable eval_table(const char* arg, const carray<int64_t>& table, const carray<int64_t>& offsets,
                                py::ssize_t videos, const double* score) {
  require_shape("eval_relations", arg, table, {5, -1}, "(5, count)");
  require_shape("eval_relations", arg, offsets, {videos + 1}, "(videos + 1,) offsets");
  const int64_t* t = table.data();
  const int64_t c = table.shape(1);
  return {t, t + c, t + 2 * c, score, c};
}

struct EvalOutputs {
  carray<double> ap;
  carray<int64_t> det_hits;
  carray<float> tag_prec;
  carray<int64_t> n_tag;
  EvalOutputs(py::ssize_t videos, py::ssize_t n_det, py::ssize_t n_tag_k)
      : ap(videos), det_hits({videos, n_det}), tag_prec({videos, n_tag_k}), n_tag(videos) {}
  uasan::RelationEvalOutput view() {
    return {ap.mutable_data(), det_hits.mutable_data(), tag_prec.mutable_data(), n_tag.mutable_data()};
  }
};

// Array interface of uasan::eval_relations -> (ap, det_hits, tag_prec, n_tag).
py::tuple eval_relations_py(carray<double> boxes, carray<int64_t> gt, carray<int64_t> gt_offsets,
                            carray<int64_t> pred, carray<double> pred_score, carray<int64_t> pred_offsets,
                            double viou_threshold, carray<int64_t> det_k, carray<int64_t> tag_k) {
  require_shape("eval_relations", "boxes", boxes, {-1, 4}, "(rows, 4)");
  require_shape("eval_relations", "gt_offsets", gt_offsets, {-1}, "(videos + 1,)");
  if (gt_offsets.shape(0) < 1) uasan::fail("eval_relations", "expected gt_offsets of shape (videos + 1,), got (0,)");
  const py::ssize_t videos = gt_offsets.shape(0) - 1;
  require_shape("eval_relations", "pred_score", pred_score, {pred.ndim() == 2 ? pred.shape(1) : -1}, "(count,)");
  require_shape("eval_relations", "det_k", det_k, {-1}, "(K,)");
  require_shape("eval_relations", "tag_k", tag_k, {-1}, "(K,)");
  const uasan::RelationTable g = eval_table("groundtruth", gt, gt_offsets, videos, nullptr);
  const uasan::RelationTable p = eval_table("prediction", pred, pred_offsets, videos, pred_score.data());
  uasan::ArrayTrajSource source(boxes.data(), boxes.shape(0), gt.data() + 3 * g.count, gt.data() + 4 * g.count,
                                pred.data() + 3 * p.count, pred.data() + 4 * p.count);
  EvalOutputs out(videos, det_k.shape(0), tag_k.shape(0));
  {
    py::gil_scoped_release nogil;
    source.check(g, p);
    uasan::eval_relations(source, g, gt_offsets.data(), p, pred_offsets.data(), videos, viou_threshold, det_k.data(),
                          det_k.shape(0), tag_k.data(), tag_k.shape(0), out.view());
  }
  return py::make_tuple(out.ap, out.det_hits, out.tag_prec, out.n_tag);
}

// Reading the official dict-of-lists-of-dicts input straight through the C API. Building flat arrays in Python
// (field lookups, np.asarray on nested box lists) costs more than the official evaluator's own loops, and reading
// the boxes is memory-bound, so boxes are read lazily: only the trajectories the matching compares (unless
// all_boxes). Only the plain JSON types (dict, list/tuple, exact int/float) are taken; on anything else this raises
// ValueError("uasan-eval-recheck", arg, video, index) and the Python side re-checks that relation for a precise
// message, or normalises exotic but valid input and calls again.
[[noreturn]] void eval_recheck(const char* arg, PyObject* vid, py::ssize_t index) {
  PyErr_SetObject(PyExc_ValueError,
                  py::make_tuple("uasan-eval-recheck", arg, py::reinterpret_borrow<py::object>(vid), index).ptr());
  throw py::error_already_set();
}

struct EvalRelations {
  std::vector<int64_t> triplet, begin, length, offsets{0};
  std::vector<double> score;
  std::vector<PyObject*> traj[2];  // subject, object box lists, borrowed from the caller (the GIL stays held)
  std::vector<int64_t> video, index;
  uasan::RelationTable table(bool is_pred) const {
    return {triplet.data(), begin.data(), length.data(), is_pred ? score.data() : nullptr,
            static_cast<int64_t>(triplet.size())};
  }
};

inline bool eval_seq(PyObject* o) { return PyList_CheckExact(o) || PyTuple_CheckExact(o); }

inline bool eval_int(PyObject* o, int64_t& out) {
  if (!PyLong_CheckExact(o)) return false;
  int overflow = 0;
  out = PyLong_AsLongLongAndOverflow(o, &overflow);
  if (out == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  return overflow == 0;
}

inline bool eval_real(PyObject* o, double& out) {
  if (PyFloat_CheckExact(o)) {
    out = PyFloat_AS_DOUBLE(o);
    return true;
  }
  if (!PyLong_CheckExact(o)) return false;
  out = PyLong_AsDouble(o);
  if (out == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  return true;
}

struct EvalKeys {
  py::object triplet = py::str("triplet"), duration = py::str("duration"), sub = py::str("sub_traj"),
             obj = py::str("obj_traj"), score = py::str("score");
};

// One relation dict -> the columns of `out` (triplets interned through `ids`); false where it is not taken.
bool eval_read_relation(PyObject* rel, bool with_score, const EvalKeys& keys, PyObject* ids, EvalRelations& out) {
  if (!PyDict_CheckExact(rel)) return false;
  PyObject* trip = PyDict_GetItemWithError(rel, keys.triplet.ptr());
  PyObject* dur = PyDict_GetItemWithError(rel, keys.duration.ptr());
  PyObject* sub = PyDict_GetItemWithError(rel, keys.sub.ptr());
  PyObject* obj = PyDict_GetItemWithError(rel, keys.obj.ptr());
  PyObject* score = with_score ? PyDict_GetItemWithError(rel, keys.score.ptr()) : Py_None;
  if (!trip || !dur || !sub || !obj || !score) {
    PyErr_Clear();
    return false;
  }
  if (!eval_seq(trip) || PySequence_Fast_GET_SIZE(trip) != 3) return false;
  py::object key =
      py::reinterpret_steal<py::object>(PyTuple_CheckExact(trip) ? Py_NewRef(trip) : PyList_AsTuple(trip));
  PyObject* id = PyDict_GetItemWithError(ids, key.ptr());  // hashing fails for unhashable categories
  int64_t tid;
  if (id) {
    tid = PyLong_AsLongLong(id);
  } else {
    if (PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
    tid = PyDict_GET_SIZE(ids);
    py::object value = py::int_(tid);
    if (PyDict_SetItem(ids, key.ptr(), value.ptr()) != 0) throw py::error_already_set();
  }
  int64_t b, e;
  if (!eval_seq(dur) || PySequence_Fast_GET_SIZE(dur) != 2 || !eval_int(PySequence_Fast_ITEMS(dur)[0], b) ||
      !eval_int(PySequence_Fast_ITEMS(dur)[1], e) || b < 0 || e <= b) {
    return false;
  }
  if (!eval_seq(sub) || !eval_seq(obj) || PySequence_Fast_GET_SIZE(sub) != e - b ||
      PySequence_Fast_GET_SIZE(obj) != e - b) {
    return false;
  }
  double s = 0.0;
  if (with_score && (!eval_real(score, s) || !std::isfinite(s))) return false;
  out.triplet.push_back(tid);
  out.begin.push_back(b);
  out.length.push_back(e - b);
  out.score.push_back(s);
  out.traj[0].push_back(sub);
  out.traj[1].push_back(obj);
  return true;
}

// Copies a box list into dst (T, 4); false for a box that is not 4 finite plain numbers, x2 >= x1, y2 >= y1.
bool eval_read_boxes(PyObject* traj, double* dst) {
  const py::ssize_t t = PySequence_Fast_GET_SIZE(traj);
  PyObject** items = PySequence_Fast_ITEMS(traj);
  for (py::ssize_t j = 0; j < t; ++j, dst += 4) {
    PyObject* b = items[j];
    if (!eval_seq(b) || PySequence_Fast_GET_SIZE(b) != 4) return false;
    PyObject** c = PySequence_Fast_ITEMS(b);
    if (!eval_real(c[0], dst[0]) || !eval_real(c[1], dst[1]) || !eval_real(c[2], dst[2]) ||
        !eval_real(c[3], dst[3])) {
      return false;
    }
    if (!(std::isfinite(dst[0]) && std::isfinite(dst[1]) && std::isfinite(dst[2]) && std::isfinite(dst[3])) ||
        dst[2] < dst[0] || dst[3] < dst[1]) {
      return false;
    }
  }
  return true;
}

// Reads each trajectory from its Python box list at most once; a bad box aborts with eval_recheck.
class EvalPySource : public uasan::TrajSource {
 public:
  EvalPySource(const EvalRelations& gt, const EvalRelations& pred, const std::vector<PyObject*>& videos)
      : rels_{&gt, &pred}, videos_(videos) {
    for (int t = 0; t < 2; ++t) {
      for (int w = 0; w < 2; ++w) cache_[t][w].resize(rels_[t]->triplet.size());
    }
  }
  const double* get(bool is_pred, int64_t r, int which) override {
    std::vector<double>& c = cache_[is_pred][which][r];
    if (c.empty()) {
      const EvalRelations& rel = *rels_[is_pred];
      c.resize(4 * rel.length[r]);
      if (!eval_read_boxes(rel.traj[which][r], c.data())) {
        eval_recheck(is_pred ? "prediction" : "groundtruth", videos_[rel.video[r]], rel.index[r]);
      }
    }
    return c.data();
  }

 private:
  const EvalRelations* rels_[2];
  const std::vector<PyObject*>& videos_;
  std::vector<std::vector<double>> cache_[2][2];
};

// groundtruth, prediction: dicts video -> list of relation dicts (the official format). Evaluates the videos with
// ground truth -> (videos, ap, det_hits, tag_prec, n_tag, n_gt, n_pred). all_boxes=false reads only the boxes the
// matching compares; true reads and checks every box of every evaluated relation first.
py::tuple eval_relations_dicts_py(py::dict groundtruth, py::dict prediction, double viou_threshold,
                                  carray<int64_t> det_k, carray<int64_t> tag_k, bool all_boxes) {
  require_shape("eval_relations", "det_k", det_k, {-1}, "(K,)");
  require_shape("eval_relations", "tag_k", tag_k, {-1}, "(K,)");
  const EvalKeys keys;
  py::dict ids;
  py::list videos;
  std::vector<PyObject*> vid_objs;
  EvalRelations gt, pred;
  PyObject *vid, *rels;
  py::ssize_t pos = 0;
  while (PyDict_Next(groundtruth.ptr(), &pos, &vid, &rels)) {
    if (!eval_seq(rels)) eval_recheck("groundtruth", vid, -1);
    const py::ssize_t n = PySequence_Fast_GET_SIZE(rels);
    if (n == 0) continue;
    const int64_t v = static_cast<int64_t>(vid_objs.size());
    vid_objs.push_back(vid);
    videos.append(py::reinterpret_borrow<py::object>(vid));
    for (py::ssize_t i = 0; i < n; ++i) {
      if (!eval_read_relation(PySequence_Fast_ITEMS(rels)[i], false, keys, ids.ptr(), gt)) {
        eval_recheck("groundtruth", vid, i);
      }
      gt.video.push_back(v);
      gt.index.push_back(i);
    }
    gt.offsets.push_back(static_cast<int64_t>(gt.triplet.size()));
    PyObject* prels = PyDict_GetItemWithError(prediction.ptr(), vid);
    if (!prels && PyErr_Occurred()) throw py::error_already_set();
    if (prels) {
      if (!eval_seq(prels)) eval_recheck("prediction", vid, -1);
      const py::ssize_t m = PySequence_Fast_GET_SIZE(prels);
      for (py::ssize_t i = 0; i < m; ++i) {
        if (!eval_read_relation(PySequence_Fast_ITEMS(prels)[i], true, keys, ids.ptr(), pred)) {
          eval_recheck("prediction", vid, i);
        }
        pred.video.push_back(v);
        pred.index.push_back(i);
      }
    }
    pred.offsets.push_back(static_cast<int64_t>(pred.triplet.size()));
  }

  EvalPySource source(gt, pred, vid_objs);
  if (all_boxes) {
    for (const bool is_pred : {false, true}) {
      const int64_t n = static_cast<int64_t>((is_pred ? pred : gt).triplet.size());
      for (int64_t r = 0; r < n; ++r) {
        source.get(is_pred, r, 0);
        source.get(is_pred, r, 1);
      }
    }
  }
  const py::ssize_t nv = static_cast<py::ssize_t>(vid_objs.size());
  EvalOutputs out(nv, det_k.shape(0), tag_k.shape(0));
  // The GIL stays held: the source reads Python objects during the matching.
  uasan::eval_relations(source, gt.table(false), gt.offsets.data(), pred.table(true), pred.offsets.data(), nv,
                        viou_threshold, det_k.data(), det_k.shape(0), tag_k.data(), tag_k.shape(0), out.view());
  return py::make_tuple(videos, out.ap, out.det_hits, out.tag_prec, out.n_tag, gt.triplet.size(),
                        pred.triplet.size());
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
  m.def("association_read_boxes", &association_read_boxes, py::arg("trajs"), py::arg("total"),
        "Trajectories (list of lists of [x1, y1, x2, y2]) as one checked (total, 4) float64 array, or None.");
  m.def("greedy_relation_association", &greedy_relation_association_py, py::arg("segment_offsets"),
        py::arg("triplets"), py::arg("scores"), py::arg("spans"), py::arg("box_offsets"), py::arg("boxes"),
        py::arg("linkage_threshold"), py::arg("linkage_threshold_f32"), py::arg("temporal_tolerance"),
        py::arg("association_topk"), py::arg("nms"), py::arg("compensated_sum"),
        "Greedy relational association over flat segment relations; returns (origin, score, duration, offsets, "
        "sub_boxes, obj_boxes) of the video relations.");

  // --- eval ---  (bindings for csrc/eval.{h,cpp}; owned by uasan.evaluation)
  m.def("eval_relations", &eval_relations_py, py::arg("boxes"), py::arg("gt"), py::arg("gt_offsets"), py::arg("pred"),
        py::arg("pred_score"), py::arg("pred_offsets"), py::arg("viou_threshold"), py::arg("det_k"), py::arg("tag_k"),
        "Official relation detection / tagging per video on flat arrays -> (ap, det_hits, tag_prec, n_tag).");
  m.def("eval_relations_dicts", &eval_relations_dicts_py, py::arg("groundtruth"), py::arg("prediction"),
        py::arg("viou_threshold"), py::arg("det_k"), py::arg("tag_k"), py::arg("all_boxes"),
        "Official relation detection / tagging of dict inputs -> (videos, ap, det_hits, tag_prec, n_tag, n_gt, "
        "n_pred); ValueError('uasan-eval-recheck', arg, video, index) for input it does not read.");
}
