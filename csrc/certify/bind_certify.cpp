// Bindings of the FM certification kernels (filled in by the certify work).
#include "bind_util.h"

namespace advrec {
namespace bind {

void bind_certify(py::module_& m) { (void)m; }

}  // namespace bind
}  // namespace advrec
