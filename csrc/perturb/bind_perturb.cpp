// Binding of the fused attack step (perturb.h): strict checks (dtype, layout, shapes, rows,
// finite grad and delta, alpha/eps) before anything is written, then the kernel without the GIL.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bind_util.h"
#include "perturb/perturb.h"
#ifdef ADVREC_WITH_CUDA
#include "cuda/cuda_api.h"
#endif

namespace advrec {
namespace bind {

namespace {

std::string str(int64_t x) { return std::to_string(x); }

PerturbNorm parse_norm(const std::string& norm) {
  if (norm == "l2") return PerturbNorm::L2;
  if (norm == "linf") return PerturbNorm::Linf;
  if (norm == "l2-step-linf-clip") return PerturbNorm::L2StepLinfClip;
  throw ArgError("norm must be one of 'l2', 'linf', 'l2-step-linf-clip', got '" + norm + "'");
}

void check_scalars(double alpha, double eps) {
  if (!(alpha >= 0.0 && alpha <= kMaxAlpha))
    throw ArgError("alpha must be in [0, float32 max], got " + std::to_string(alpha));
  if (!std::isfinite(eps) || eps < 0.0)
    throw ArgError("eps must be finite and >= 0, got " + std::to_string(eps));
}

py::object perturb_step(const py::object& delta_obj, const py::object& grad_obj, double alpha,
                        double eps, const std::string& norm_name, const py::object& rows_obj) {
  const PerturbNorm norm = parse_norm(norm_name);
  check_scalars(alpha, eps);
  F32 delta = as_array<float>(delta_obj, "delta", "float32");
  F32 grad = as_array<float>(grad_obj, "grad", "float32");
  check_ndim(delta, 2, "delta");
  check_ndim(grad, 2, "grad");
  if (!delta.writeable()) throw ArgError("delta must be writeable");
  const int64_t n_rows = delta.shape(0), dim = delta.shape(1);
  if (grad.shape(0) != n_rows || grad.shape(1) != dim)
    throw ArgError("grad must have the shape of delta (" + str(n_rows) + ", " + str(dim) +
                   "), got (" + str(grad.shape(0)) + ", " + str(grad.shape(1)) + ")");
  I64 rows;
  const int64_t* rp = nullptr;
  int64_t m = 0;
  if (!rows_obj.is_none()) {
    rows = as_array<int64_t>(rows_obj, "rows", "int64");
    check_ndim(rows, 1, "rows");
    m = rows.shape(0);
    rp = rows.data();
    std::vector<uint8_t> seen(static_cast<size_t>(n_rows), 0);
    for (int64_t i = 0; i < m; ++i) {
      if (rp[i] < 0 || rp[i] >= n_rows)
        throw IndexRangeError("rows[" + str(i) + "] = " + str(rp[i]) + " is outside [0, " +
                              str(n_rows) + ")");
      if (seen[rp[i]]) throw ArgError("rows must not repeat a row: " + str(rp[i]) + " appears twice");
      seen[rp[i]] = 1;
    }
    if (m == 0) return delta_obj;  // nothing to update (a null rows pointer means "all rows")
  }
  float* d = delta.mutable_data();
  const float* g = grad.data();
  int64_t bad_g, bad_d = -1;
  {
    py::gil_scoped_release release;
    bad_g = find_nonfinite(g, n_rows, dim, rp, m);
    // A non-finite delta has no projection onto the ball (inf * 0 is NaN): refused like grad.
    if (bad_g < 0) bad_d = find_nonfinite(d, n_rows, dim, rp, m);
    if (bad_g < 0 && bad_d < 0) perturb_step_cpu(d, g, n_rows, dim, rp, m, alpha, eps, norm);
  }
  if (bad_g >= 0)
    throw ArgError("grad contains NaN or inf (row " + str(bad_g / dim) + ", column " +
                   str(bad_g % dim) + ")");
  if (bad_d >= 0)
    throw ArgError("delta contains NaN or inf (row " + str(bad_d / dim) + ", column " +
                   str(bad_d % dim) + "): a perturbation must be finite to be stepped and "
                   "projected");
  return delta_obj;
}

}  // namespace

void bind_perturb(py::module_& m) {
  m.def("perturb_step", &perturb_step, py::arg("delta"), py::arg("grad"), py::arg("alpha"),
        py::arg("eps"), py::arg("norm") = "l2", py::arg("rows") = py::none(),
        "Fused attack step in place on delta (internal; call advrec.kernels.perturb_step).");
#ifdef ADVREC_WITH_CUDA
  m.def(
      "perturb_step_cuda",
      [](uintptr_t delta, uintptr_t grad, int64_t n_rows, int64_t dim, uintptr_t rows, int64_t m,
         double alpha, double eps, const std::string& norm_name, uintptr_t stream) {
        // Device pointers were validated (device, dtype, shape, rows, finite grad) in Python.
        const PerturbNorm norm = parse_norm(norm_name);
        check_scalars(alpha, eps);
        py::gil_scoped_release release;
        advrec::cuda::perturb_step(reinterpret_cast<float*>(delta),
                                   reinterpret_cast<const float*>(grad), n_rows, dim,
                                   reinterpret_cast<const int64_t*>(rows), m, alpha, eps,
                                   static_cast<int>(norm), reinterpret_cast<void*>(stream));
      },
      py::arg("delta"), py::arg("grad"), py::arg("n_rows"), py::arg("dim"), py::arg("rows"),
      py::arg("m"), py::arg("alpha"), py::arg("eps"), py::arg("norm"), py::arg("stream"),
      "GPU fused attack step on device pointers (internal; call advrec.kernels.perturb_step).");
#endif
}

}  // namespace bind
}  // namespace advrec
