// Bindings of csrc/eval.{h,cpp} for the official dict-of-lists-of-dicts input, read through the Python C API.
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "eval.h"
#include "eval_bindings.h"

namespace uasan_py {

namespace {

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

// Reads each trajectory from its Python box list at most once and keeps it while its video is matched; a bad box
// aborts with eval_recheck.
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
  void video_done(int64_t gt_begin, int64_t gt_end, int64_t pred_begin, int64_t pred_end) override {
    for (int w = 0; w < 2; ++w) {
      for (int64_t r = gt_begin; r < gt_end; ++r) std::vector<double>().swap(cache_[0][w][r]);
      for (int64_t r = pred_begin; r < pred_end; ++r) std::vector<double>().swap(cache_[1][w][r]);
    }
  }

 private:
  const EvalRelations* rels_[2];
  const std::vector<PyObject*>& videos_;
  std::vector<std::vector<double>> cache_[2][2];
};

// Appends video v's list of relation dicts `rels` (the prediction's when is_pred: with scores) to `out`, each row
// with its list index for messages (the caller closes the video's row range). Raises through eval_recheck.
void eval_read_video(PyObject* rels, PyObject* vid, int64_t v, bool is_pred, const EvalKeys& keys, PyObject* ids,
                     EvalRelations& out) {
  const char* arg = is_pred ? "prediction" : "groundtruth";
  if (!eval_seq(rels)) eval_recheck(arg, vid, -1);
  const py::ssize_t n = PySequence_Fast_GET_SIZE(rels);
  for (py::ssize_t i = 0; i < n; ++i) {
    if (!eval_read_relation(PySequence_Fast_ITEMS(rels)[i], is_pred, keys, ids, out)) eval_recheck(arg, vid, i);
    out.video.push_back(v);
    out.index.push_back(i);
  }
}

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
    if (PySequence_Fast_GET_SIZE(rels) == 0) continue;
    const int64_t v = static_cast<int64_t>(vid_objs.size());
    vid_objs.push_back(vid);
    videos.append(py::reinterpret_borrow<py::object>(vid));
    eval_read_video(rels, vid, v, false, keys, ids.ptr(), gt);
    gt.offsets.push_back(static_cast<int64_t>(gt.triplet.size()));
    PyObject* prels = PyDict_GetItemWithError(prediction.ptr(), vid);
    if (!prels && PyErr_Occurred()) throw py::error_already_set();
    if (prels) eval_read_video(prels, vid, v, true, keys, ids.ptr(), pred);
    pred.offsets.push_back(static_cast<int64_t>(pred.triplet.size()));
  }

  EvalPySource source(gt, pred, vid_objs);
  if (all_boxes) {
    // Check every box without keeping it: the matching reads (and caches) only the few it compares.
    std::vector<double> scratch;
    for (const bool is_pred : {false, true}) {
      const EvalRelations& rel = is_pred ? pred : gt;
      const int64_t n = static_cast<int64_t>(rel.triplet.size());
      for (int64_t r = 0; r < n; ++r) {
        scratch.resize(4 * rel.length[r]);
        for (int w = 0; w < 2; ++w) {
          if (!eval_read_boxes(rel.traj[w][r], scratch.data())) {
            eval_recheck(is_pred ? "prediction" : "groundtruth", vid_objs[rel.video[r]], rel.index[r]);
          }
        }
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

void bind_eval_dicts(py::module_& m) {
  m.def("eval_relations_dicts", &eval_relations_dicts_py, py::arg("groundtruth"), py::arg("prediction"),
        py::arg("viou_threshold"), py::arg("det_k"), py::arg("tag_k"), py::arg("all_boxes"),
        "Official relation detection / tagging of dict inputs -> (videos, ap, det_hits, tag_prec, n_tag, n_gt, "
        "n_pred); ValueError('uasan-eval-recheck', arg, video, index) for input it does not read.");
}

}  // namespace uasan_py
