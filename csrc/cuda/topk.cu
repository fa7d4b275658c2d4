// CUDA twin of topk_masked_cpu: launch configuration and host entry points.
//
// One 256-thread block per row (grid-stride over rows); the per-row algorithm lives in
// topk_block.cuh. The exclusion bitmap sits in shared memory for catalogues up to 256K items
// and otherwise in a stream-ordered global scratch, one slice per resident block.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "cuda/cuda_api.h"
#include "cuda/topk_block.cuh"

namespace advrec {
namespace cuda {
namespace {

constexpr size_t kSharedBitmapBytes = 32 * 1024;  // with <= 8 KiB of keys, under the 48 KiB default
constexpr size_t kScratchBudgetBytes = size_t{256} << 20;
constexpr int64_t kMaxGrid = int64_t{1} << 20;  // rows beyond this are strided

// Throws with the CUDA error string; the error is cleared first so later calls start clean.
void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();
  throw std::runtime_error(std::string("advrec CUDA top-k: ") + what + " failed: " +
                           cudaGetErrorString(err));
}

__global__ void __launch_bounds__(detail::kThreads)
    topk_kernel(detail::TopkArgs a, unsigned keys_cap, int bitmap_in_shared,
                unsigned* global_bitmap, unsigned words) {
  extern __shared__ unsigned long long dyn_smem[];
  __shared__ detail::BlockShared sh;
  unsigned* bitmap = nullptr;
  if (a.excl_indptr != nullptr) {
    if (bitmap_in_shared) {
      bitmap = reinterpret_cast<unsigned*>(dyn_smem + keys_cap);
      for (unsigned w = threadIdx.x; w < words; w += blockDim.x) bitmap[w] = 0u;
      __syncthreads();
    } else {
      bitmap = global_bitmap + static_cast<size_t>(blockIdx.x) * words;  // zeroed by the host
    }
  }
  detail::process_rows(a, blockIdx.x, gridDim.x, bitmap, dyn_smem, sh);
}

unsigned next_pow2(unsigned v) {
  unsigned p = 1u;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device is not an error for the caller
    return 0;
  }
  return n;
}

void topk_masked(const float* scores, int64_t rows, int64_t n_items, int64_t k,
                 const int64_t* excl_indptr, const int64_t* excl_indices,
                 const int64_t* excl_rows, int64_t* out_idx, float* out_val, int* nan_flag,
                 void* stream) {
  if (rows < 0 || n_items < 0)
    throw std::invalid_argument("topk_masked: rows and n_items must be >= 0");
  if (k < 0 || k > kMaxTopK)
    throw std::invalid_argument("k must be in [0, " + std::to_string(kMaxTopK) +
                                "] on CUDA, got " + std::to_string(k));
  // Item indices travel as 32-bit inside the sort keys.
  if (n_items > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("n_items must be < 2^31 on CUDA, got " + std::to_string(n_items));
  if (rows == 0 || k == 0) return;  // like the CPU kernel: nothing to write, nothing checked
  if (out_idx == nullptr || out_val == nullptr || nan_flag == nullptr ||
      (n_items > 0 && scores == nullptr) || (excl_indptr != nullptr && excl_indices == nullptr))
    throw std::invalid_argument("topk_masked: null device pointer");

  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const unsigned n = static_cast<unsigned>(n_items);
  const unsigned kk = static_cast<unsigned>(k);
  const unsigned keys_cap = next_pow2(std::max(1u, std::min(kk, n)));
  const bool masked = excl_indptr != nullptr;
  const unsigned words = (n + 31u) / 32u;
  const size_t bitmap_bytes = size_t{words} * sizeof(unsigned);
  const bool in_shared = masked && bitmap_bytes <= kSharedBitmapBytes;
  const size_t smem = keys_cap * sizeof(unsigned long long) + (in_shared ? bitmap_bytes : 0);

  detail::TopkArgs a{scores,       rows,      n,       kk,      excl_indptr,
                     excl_indices, excl_rows, out_idx, out_val, nan_flag};
  int64_t blocks = std::min(rows, kMaxGrid);

  if (!masked || in_shared) {
    topk_kernel<<<static_cast<unsigned>(blocks), detail::kThreads, smem, st>>>(a, keys_cap,
                                                                          1, nullptr, words);
    check(cudaGetLastError(), "kernel launch");
    return;
  }

  // Large catalogue with exclusion: a global bitmap slice per block, as many blocks as fit
  // resident (and the scratch budget allows); each block strides over the rows.
  int dev = 0, sms = 1;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
        "cudaDeviceGetAttribute");
  const int64_t budget_blocks =
      std::max<int64_t>(1, static_cast<int64_t>(kScratchBudgetBytes / bitmap_bytes));
  blocks = std::min({blocks, budget_blocks, int64_t{8} * sms});
  const size_t scratch_bytes = static_cast<size_t>(blocks) * bitmap_bytes;
  void* scratch = nullptr;
  check(cudaMallocAsync(&scratch, scratch_bytes, st), "cudaMallocAsync");
  cudaError_t err = cudaMemsetAsync(scratch, 0, scratch_bytes, st);
  if (err == cudaSuccess) {
    topk_kernel<<<static_cast<unsigned>(blocks), detail::kThreads, smem, st>>>(
        a, keys_cap, 0, static_cast<unsigned*>(scratch), words);
    err = cudaGetLastError();
  }
  const cudaError_t free_err = cudaFreeAsync(scratch, st);  // stream-ordered: after the kernel
  check(err, "kernel launch");
  check(free_err, "cudaFreeAsync");
}

}  // namespace cuda
}  // namespace advrec
