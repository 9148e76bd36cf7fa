// Shared by the evaluator's binding files (eval_bindings.cpp: arrays and relation files; eval_pyobj_bindings.cpp:
// the official dict-of-lists input read through the C API): the per-video output arrays.
#pragma once

#include "bindings.h"
#include "eval.h"

namespace uasan_py {

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

}  // namespace uasan_py
