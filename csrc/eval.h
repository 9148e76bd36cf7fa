// eval: relation-detection matching for uasan.evaluation (see uasan/evaluation for the semantics).
#pragma once

#include <cstdint>

namespace uasan {}  // namespace uasan
