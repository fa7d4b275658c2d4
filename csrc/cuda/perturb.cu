// CUDA twin of the fused attack step (perturb/perturb.h): one warp per row; the lanes stride
// over the row, the two norms are warp sums in double. Same arithmetic as the CPU kernel (the new
// row in double, rounded once after the projection or clip), so results agree up to the
// summation order of the norms.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/cuda_api.h"

namespace advrec {
namespace cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();
  throw std::runtime_error(std::string("advrec CUDA perturb_step: ") + what + " failed: " +
                           cudaGetErrorString(err));
}

__device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__global__ void __launch_bounds__(kWarp* kWarpsPerBlock)
    perturb_kernel(float* __restrict__ delta, const float* __restrict__ grad, int64_t count,
                   int64_t dim, const int64_t* __restrict__ rows, double alpha, double eps,
                   int norm) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (i >= count) return;  // whole warps leave together
  const int64_t r = rows ? rows[i] : i;
  float* d = delta + r * dim;
  const float* g = grad + r * dim;
  if (norm == 1) {  // linf
    const float a = static_cast<float>(alpha), e = static_cast<float>(eps);  // as on the CPU
    for (int64_t j = lane; j < dim; j += kWarp) {
      const float v = d[j] + (g[j] > 0.0f ? a : (g[j] < 0.0f ? -a : 0.0f));
      d[j] = v < -e ? -e : (v > e ? e : v);
    }
    return;
  }
  double gs = 0.0;
  for (int64_t j = lane; j < dim; j += kWarp) gs += static_cast<double>(g[j]) * g[j];
  const double gn = sqrt(warp_sum(gs));
  const double scale = gn > 0.0 ? alpha / gn : 0.0;
  if (norm == 0) {  // l2: the factor onto the ball from the unrounded new row
    double ds = 0.0;
    for (int64_t j = lane; j < dim; j += kWarp) {
      const double v = static_cast<double>(d[j]) + scale * g[j];
      ds += v * v;
    }
    const double dn = sqrt(warp_sum(ds));
    const double f = dn > eps ? eps / dn : 1.0;
    if (gn == 0.0 && f == 1.0) return;
    for (int64_t j = lane; j < dim; j += kWarp)
      d[j] = static_cast<float>((static_cast<double>(d[j]) + scale * g[j]) * f);
    return;
  }
  for (int64_t j = lane; j < dim; j += kWarp) {  // l2-step-linf-clip
    const double v = static_cast<double>(d[j]) + scale * g[j];
    d[j] = static_cast<float>(fmin(fmax(v, -eps), eps));
  }
}

}  // namespace

void perturb_step(float* delta, const float* grad, int64_t n_rows, int64_t dim,
                  const int64_t* rows, int64_t m, double alpha, double eps, int norm,
                  void* stream) {
  if (n_rows < 0 || dim < 0 || m < 0) throw std::invalid_argument("perturb_step: negative size");
  if (norm < 0 || norm > 2) throw std::invalid_argument("perturb_step: norm must be 0, 1 or 2");
  const int64_t count = rows ? m : n_rows;
  if (count == 0 || dim == 0) return;
  if (!delta || !grad) throw std::invalid_argument("perturb_step: null device pointer");
  const int64_t blocks = (count + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > 0x7fffffffLL) throw std::invalid_argument("perturb_step: too many rows");
  perturb_kernel<<<static_cast<unsigned>(blocks), kWarp * kWarpsPerBlock, 0,
                   static_cast<cudaStream_t>(stream)>>>(delta, grad, count, dim, rows, alpha,
                                                        eps, norm);
  check(cudaGetLastError(), "kernel launch");
}

}  // namespace cuda
}  // namespace advrec
