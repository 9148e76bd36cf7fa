// seq_nms: see uasan/ops/seq_nms.py for the semantics and the reference implementation.
#pragma once

#include <cstdint>

namespace uasan {}  // namespace uasan
