// The extension module _C: the only PYBIND11_MODULE. Each op family registers its functions from its own
// csrc/<op>_bindings.cpp; they convert NumPy arrays (c_style | forcecast), check shapes, release the GIL around the
// op and return NumPy arrays. std::invalid_argument becomes ValueError.
#include <exception>
#include <stdexcept>

#include "bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "uasan C++ video-geometry ops (NumPy in, NumPy out)";
  pybind11::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  uasan_py::bind_boxes(m);
  uasan_py::bind_seq_nms(m);
  uasan_py::bind_association(m);
  uasan_py::bind_eval(m);
  uasan_py::bind_eval_dicts(m);
  uasan_py::bind_eval_files(m);
}
