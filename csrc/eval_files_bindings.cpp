// Bindings of csrc/eval_json.h: the evaluator's relation files and annotation files read into NumPy columns.
// Errors come back as ValueError(tag, ...) tuples that uasan/evaluation/files.py turns into messages naming the
// file: ("uasan-json-syntax", line, column, problem), ("uasan-json-relation", video or None, index, field,
// problem), ("uasan-json-annotation", problem), ("uasan-eval-box", is_pred, relation, which, problem).
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bindings.h"
#include "eval_json.h"
#include "json.h"

namespace uasan_py {

namespace {

template <typename T>
carray<T> to_array(const std::vector<T>& v) {
  carray<T> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

[[noreturn]] void raise(const py::tuple& args) {
  PyErr_SetObject(PyExc_ValueError, args.ptr());
  throw py::error_already_set();
}

[[noreturn]] void raise_syntax(const char* data, const uasan::json::SyntaxError& e) {
  int64_t line, col;
  uasan::json::line_col(data, e.offset, line, col);
  raise(py::make_tuple("uasan-json-syntax", line, col, e.what()));
}

py::str utf8(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<py::ssize_t>(s.size()), "strict");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

py::list triplet_list(const std::vector<uasan::TripletKey>& triplets) {
  py::list out;
  for (const uasan::TripletKey& t : triplets) {
    py::object parts[3];
    for (int i = 0; i < 3; ++i) {
      parts[i] = t.is_int[i] ? py::reinterpret_steal<py::object>(PyLong_FromString(t.part[i].c_str(), nullptr, 10))
                             : py::object(utf8(t.part[i]));
    }
    out.append(py::make_tuple(parts[0], parts[1], parts[2]));
  }
  return out;
}

// Bytes of a relation file -> (videos, offsets, triplets, triplet, begin, length, score, traj_pos (2, R), header
// {top-level string field: value} of a prediction file).
py::tuple read_relation_file_py(const py::buffer& buffer, bool predictions, bool release_pages) {
  const py::buffer_info info = buffer.request();
  const char* data = static_cast<const char*>(info.ptr);
  const int64_t size = static_cast<int64_t>(info.size * info.itemsize);
  uasan::JsonRelations rel;
  try {
    py::gil_scoped_release nogil;
    rel = uasan::read_relation_file(data, size, predictions, release_pages);
  } catch (const uasan::json::SyntaxError& e) {
    raise_syntax(data, e);
  } catch (const uasan::RelationFileError& e) {
    raise(py::make_tuple("uasan-json-relation", e.has_video ? py::object(utf8(e.video)) : py::none(), e.index,
                         e.field, e.what()));
  }
  py::list videos;
  for (const std::string& v : rel.videos) videos.append(utf8(v));
  const py::ssize_t r = static_cast<py::ssize_t>(rel.triplet.size());
  carray<int64_t> pos({py::ssize_t(2), r});
  std::copy(rel.traj_pos[0].begin(), rel.traj_pos[0].end(), pos.mutable_data());
  std::copy(rel.traj_pos[1].begin(), rel.traj_pos[1].end(), pos.mutable_data() + r);
  py::dict header;
  for (const auto& [key, value] : rel.header) header[utf8(key)] = utf8(value);  // a repeated key: the last counts
  return py::make_tuple(videos, to_array(rel.offsets), triplet_list(rel.triplets), to_array(rel.triplet),
                        to_array(rel.begin), to_array(rel.length), to_array(rel.score), pos, header);
}

// Every trajectory of a relation file, parsed: (R + 1,) box offsets and (rows, 4) boxes, relation r's subject boxes
// then its object boxes (the layout of uasan.evaluation.RelationColumns).
py::tuple relation_file_boxes_py(const py::buffer& buffer, carray<int64_t> traj_pos, carray<int64_t> length,
                                 bool release_pages) {
  require_shape("relation_file_boxes", "length", length, {-1}, "(R,)");
  const py::ssize_t r = length.shape(0);
  require_shape("relation_file_boxes", "traj_pos", traj_pos, {2, r}, "(2, R)");
  const py::buffer_info info = buffer.request();
  const char* data = static_cast<const char*>(info.ptr);
  const int64_t size = static_cast<int64_t>(info.size * info.itemsize);
  carray<int64_t> offsets(r + 1);
  int64_t* off = offsets.mutable_data();
  off[0] = 0;
  for (py::ssize_t i = 0; i < r; ++i) {
    if (length.data()[i] < 1) uasan::fail("relation_file_boxes", "expected length >= 1");
    off[i + 1] = off[i] + 2 * length.data()[i];
  }
  carray<double> boxes({static_cast<py::ssize_t>(off[r]), py::ssize_t(4)});
  int64_t bad = -1;
  int bad_which = 0;
  std::string problem;
  {
    py::gil_scoped_release nogil;
    double* dst = boxes.mutable_data();
    uasan::PageReleaser pages(data, size, release_pages);
    for (py::ssize_t i = 0; i < r && bad < 0; ++i) {
      pages.upto(std::min(traj_pos.data()[i], traj_pos.data()[r + i]));
      for (int w = 0; w < 2 && bad < 0; ++w) {
        try {
          uasan::parse_trajectory(data, size, traj_pos.data()[w * r + i], length.data()[i],
                                  dst + 4 * (off[i] + w * length.data()[i]));
        } catch (const std::invalid_argument& e) {
          bad = i;
          bad_which = w;
          problem = e.what();
        }
      }
    }
    pages.all();
  }
  if (bad >= 0) raise(py::make_tuple("uasan-eval-box", true, bad, bad_which, problem));
  return py::make_tuple(offsets, boxes);
}

// Bytes of one annotation file -> (video_id, triplets, triplet, begin, length, subject_tid, object_tid,
// box_offsets, boxes).
py::tuple read_annotation_file_py(const py::buffer& buffer) {
  const py::buffer_info info = buffer.request();
  const char* data = static_cast<const char*>(info.ptr);
  uasan::AnnotationRelations a;
  try {
    py::gil_scoped_release nogil;
    a = uasan::read_annotation_file(data, static_cast<int64_t>(info.size * info.itemsize));
  } catch (const uasan::json::SyntaxError& e) {
    raise_syntax(data, e);
  } catch (const std::invalid_argument& e) {
    raise(py::make_tuple("uasan-json-annotation", e.what()));
  }
  carray<double> boxes({static_cast<py::ssize_t>(a.boxes.size() / 4), py::ssize_t(4)});
  std::copy(a.boxes.begin(), a.boxes.end(), boxes.mutable_data());
  return py::make_tuple(utf8(a.video_id), triplet_list(a.triplets), to_array(a.triplet), to_array(a.begin),
                        to_array(a.length), to_array(a.subject_tid), to_array(a.object_tid),
                        to_array(a.box_offsets), boxes);
}

}  // namespace

void bind_eval_files(py::module_& m) {
  m.def("read_relation_file", &read_relation_file_py, py::arg("buffer"), py::arg("predictions"),
        py::arg("release_pages") = false,
        "Relation file bytes -> (videos, offsets, triplets, triplet, begin, length, score, traj_pos, header); boxes "
        "are checked for shape only. release_pages: buffer is a read-only file mapping whose pages may be dropped "
        "from the resident set once read (never for other memory: it would be lost).");
  m.def("relation_file_boxes", &relation_file_boxes_py, py::arg("buffer"), py::arg("traj_pos"), py::arg("length"),
        py::arg("release_pages") = false,
        "Parses every trajectory of a relation file -> (box_offsets, boxes); release_pages as read_relation_file.");
  m.def("read_annotation_file", &read_annotation_file_py, py::arg("buffer"),
        "VidVRD / VidOR annotation bytes -> (video_id, triplets, triplet, begin, length, subject_tid, object_tid, "
        "box_offsets, boxes) of its ground-truth relation instances.");
}

}  // namespace uasan_py
