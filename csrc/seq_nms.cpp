#include "seq_nms.h"

#include "common.h"

namespace uasan {}  // namespace uasan
