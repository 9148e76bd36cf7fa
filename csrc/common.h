// Small helpers shared by the op files: argument checks that raise std::invalid_argument with a
// torchvision-style message ("<op>: expected <arg> to ..., but got ...").
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace uasan {

template <typename... Args>
[[noreturn]] inline void fail(const char* op, Args&&... parts) {
  std::ostringstream os;
  os << op << ": ";
  (os << ... << parts);
  throw std::invalid_argument(os.str());
}

// Checks n boxes laid out as [x1, y1, x2, y2]: finite coordinates with x2 >= x1 and y2 >= y1.
template <typename T>
inline void check_boxes(const char* op, const char* arg, const T* boxes, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T* b = boxes + 4 * i;
    for (int c = 0; c < 4; ++c) {
      if (!std::isfinite(b[c])) fail(op, "expected ", arg, " to hold finite coordinates, but box ", i, " has ", b[c]);
    }
    if (b[2] < b[0] || b[3] < b[1]) {
      fail(op, "expected ", arg, " boxes with x2 >= x1 and y2 >= y1, but box ", i, " is [", b[0], ", ", b[1], ", ",
           b[2], ", ", b[3], "]");
    }
  }
}

}  // namespace uasan
