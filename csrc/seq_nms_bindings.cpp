// Bindings of csrc/seq_nms.{h,cpp}.
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "seq_nms.h"
#include "bindings.h"

namespace uasan_py {

namespace {

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

void bind_seq_nms(py::module_& m) {
  m.def("seq_nms", &seq_nms_py, py::arg("boxes"), py::arg("scores"), py::arg("labels"), py::arg("link_iou"),
        py::arg("suppress_iou"), py::arg("rescore"), py::arg("suppress"), py::arg("plus_one"),
        "Seq-NMS over padded (F, B) detections; returns (starts, lengths, indices, scores) of the tracks.");
}

}  // namespace uasan_py
