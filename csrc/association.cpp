#include "association.h"

#include "common.h"

namespace uasan {}  // namespace uasan
