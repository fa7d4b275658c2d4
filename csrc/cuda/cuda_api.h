// Host-side entry points of the CUDA twins. Pointers are device pointers; `stream` is a
// cudaStream_t passed as void* so that this header needs no CUDA include.
#pragma once
#include <cstdint>
#include <string>

namespace advrec {
namespace cuda {

// Number of usable CUDA devices at run time (0 when the driver or a device is missing).
int device_count();

// GPU twin of topk_masked_cpu (same semantics, same tie rule); k <= kMaxTopK.
constexpr int64_t kMaxTopK = 1024;
void topk_masked(const float* scores, int64_t rows, int64_t n_items, int64_t k,
                 const int64_t* excl_indptr, const int64_t* excl_indices,
                 const int64_t* excl_rows, int64_t* out_idx, float* out_val, int* nan_flag,
                 void* stream);

}  // namespace cuda
}  // namespace advrec
