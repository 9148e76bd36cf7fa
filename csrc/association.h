// association: see uasan/ops/association.py for the semantics and the reference implementation.
#pragma once

#include <cstdint>

namespace uasan {}  // namespace uasan
