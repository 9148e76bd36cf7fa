// Shared by the binding files (csrc/*_bindings.cpp): NumPy array conversion and shape checks. Only the binding
// files and bindings.cpp (the one PYBIND11_MODULE, _C) include pybind11; op files stay pybind-free.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "common.h"

namespace uasan_py {

namespace py = pybind11;

template <typename T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// dims: -1 matches any size. Raises ValueError "op: expected arg of shape ..., but got ...".
inline void require_shape(const char* op, const char* arg, const py::array& a, std::initializer_list<py::ssize_t> dims,
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

// One registration function per op family, each in its own csrc/<op>_bindings.cpp.
void bind_boxes(py::module_& m);
void bind_seq_nms(py::module_& m);
void bind_association(py::module_& m);
void bind_eval(py::module_& m);
void bind_eval_dicts(py::module_& m);
void bind_eval_files(py::module_& m);

}  // namespace uasan_py
