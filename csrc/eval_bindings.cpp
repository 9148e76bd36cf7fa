// Bindings of csrc/eval.{h,cpp}: the array interface (boxes as arrays or relation-file bytes). The official
// dict-of-lists input has its own reader: eval_pyobj_bindings.cpp.
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "eval.h"
#include "eval_bindings.h"
#include "eval_json.h"

namespace uasan_py {

namespace {

// table (5, count) int64 rows: triplet, begin, length, sub, obj (first box row, or byte offset in a relation file;
// see uasan::RelationTable and uasan::MixedTrajSource).
uasan::RelationTable eval_table(const char* arg, const carray<int64_t>& table, const carray<int64_t>& offsets,
                                py::ssize_t videos, const double* score) {
  require_shape("eval_relations", arg, table, {5, -1}, "(5, count)");
  require_shape("eval_relations", arg, offsets, {videos + 1}, "(videos + 1,) offsets");
  const int64_t* t = table.data();
  const int64_t c = table.shape(1);
  return {t, t + c, t + 2 * c, score, c};
}


// One side's boxes: a (rows, 4) float64 array (table rows 3, 4 = first box row of sub / obj) or the bytes of a
// relation file (table rows 3, 4 = byte offsets of the trajectories, see uasan::read_relation_file).
struct BoxSource {
  std::optional<carray<double>> array;
  std::optional<py::buffer_info> json;
  BoxSource(const char* arg, const py::object& src) {
    if (py::isinstance<py::array>(src)) {
      array = src.cast<carray<double>>();
      require_shape("eval_relations", arg, *array, {-1, 4}, "(rows, 4) boxes");
    } else {
      json = src.cast<py::buffer>().request();
    }
  }
  uasan::MixedTrajSource::Side side(const uasan::RelationTable& t, const carray<int64_t>& table,
                                    bool release_pages) const {
    uasan::MixedTrajSource::Side s;
    if (array) {
      s.boxes = array->data();
      s.rows = array->shape(0);
    } else {
      s.json = static_cast<const char*>(json->ptr);
      s.json_size = static_cast<int64_t>(json->size * json->itemsize);
      s.release_pages = release_pages;
    }
    s.where[0] = table.data() + 3 * t.count;
    s.where[1] = table.data() + 4 * t.count;
    s.length = t.length;
    s.count = t.count;
    return s;
  }
};

// Array interface of uasan::eval_relations -> (ap, det_hits, tag_prec, n_tag, match or None). A bad box of a
// relation file raises ValueError("uasan-eval-box", is_pred, relation, which, problem) for the caller to locate.
py::tuple eval_relations_py(const py::object& gt_boxes, carray<int64_t> gt, carray<int64_t> gt_offsets,
                            const py::object& pred_boxes, carray<int64_t> pred, carray<double> pred_score,
                            carray<int64_t> pred_offsets, double viou_threshold, carray<int64_t> det_k,
                            carray<int64_t> tag_k, bool all_boxes, bool with_match, bool gt_release_pages,
                            bool pred_release_pages) {
  require_shape("eval_relations", "gt_offsets", gt_offsets, {-1}, "(videos + 1,)");
  if (gt_offsets.shape(0) < 1) uasan::fail("eval_relations", "expected gt_offsets of shape (videos + 1,), got (0,)");
  const py::ssize_t videos = gt_offsets.shape(0) - 1;
  require_shape("eval_relations", "pred_score", pred_score, {pred.ndim() == 2 ? pred.shape(1) : -1}, "(count,)");
  require_shape("eval_relations", "det_k", det_k, {-1}, "(K,)");
  require_shape("eval_relations", "tag_k", tag_k, {-1}, "(K,)");
  const uasan::RelationTable g = eval_table("groundtruth", gt, gt_offsets, videos, nullptr);
  const uasan::RelationTable p = eval_table("prediction", pred, pred_offsets, videos, pred_score.data());
  const BoxSource gsrc("gt_boxes", gt_boxes), psrc("pred_boxes", pred_boxes);
  uasan::MixedTrajSource source(gsrc.side(g, gt, gt_release_pages), psrc.side(p, pred, pred_release_pages));
  EvalOutputs out(videos, det_k.shape(0), tag_k.shape(0));
  carray<int64_t> match(with_match ? p.count : 0);
  uasan::RelationEvalOutput view = out.view();
  if (with_match) view.match = match.mutable_data();
  std::string bad_box;
  {
    py::gil_scoped_release nogil;
    try {
      source.check(all_boxes);
      uasan::eval_relations(source, g, gt_offsets.data(), p, pred_offsets.data(), videos, viou_threshold,
                            det_k.data(), det_k.shape(0), tag_k.data(), tag_k.shape(0), view);
    } catch (const std::invalid_argument& e) {
      if (source.bad_relation < 0) throw;
      bad_box = e.what();
    }
  }
  if (source.bad_relation >= 0) {
    PyErr_SetObject(PyExc_ValueError, py::make_tuple("uasan-eval-box", source.bad_is_pred, source.bad_relation,
                                                     source.bad_which, bad_box)
                                          .ptr());
    throw py::error_already_set();
  }
  return py::make_tuple(out.ap, out.det_hits, out.tag_prec, out.n_tag, with_match ? py::object(match) : py::none());
}

}  // namespace

void bind_eval(py::module_& m) {
  m.def("eval_relations", &eval_relations_py, py::arg("gt_boxes"), py::arg("gt"), py::arg("gt_offsets"),
        py::arg("pred_boxes"), py::arg("pred"), py::arg("pred_score"), py::arg("pred_offsets"),
        py::arg("viou_threshold"), py::arg("det_k"), py::arg("tag_k"), py::arg("all_boxes"), py::arg("with_match"),
        py::arg("gt_release_pages") = false, py::arg("pred_release_pages") = false,
        "Official relation detection / tagging per video on flat tables whose boxes are arrays or relation-file "
        "bytes -> (ap, det_hits, tag_prec, n_tag, match or None). *_release_pages: that side's bytes are a "
        "read-only file mapping whose pages may be dropped from the resident set after use (see "
        "read_relation_file).");
}

}  // namespace uasan_py
