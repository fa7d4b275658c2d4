// Bindings of the Gram-matrix extreme-entry selection (filled in by the certify work).
#include "bind_util.h"

namespace advrec {
namespace bind {

void bind_pairs(py::module_& m) { (void)m; }

}  // namespace bind
}  // namespace advrec
