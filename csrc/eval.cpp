#include "eval.h"

#include "common.h"

namespace uasan {}  // namespace uasan
