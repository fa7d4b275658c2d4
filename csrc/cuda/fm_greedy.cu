// CUDA twin of the greedy flip search (docs/certify.md "Non-robust certificates", Alg. 1).
//
// One 256-thread block per instance row (grid-stride over rows). The block keeps the row's gains
// g_j (float) and an "excluded" byte per position (history or already selected) in shared
// memory, or for n > kSharedMaxN in a global scratch slice per resident block. Each step:
//   1. argmax of sigma * g_j over candidates: per-thread scan in position order, then a warp
//      shuffle and a cross-warp reduction under one total order (value, then lower position),
//      so the result does not depend on the reduction tree;
//   2. thread 0 records j*, adds g_{j*} to delta in double and tests the flip;
//   3. unless done, g_j += <v_j, v_{j*}> for the remaining candidates, one warp per candidate
//      (coalesced reads of v_j, lanes over k, shuffle sum; lane 0 writes).
// The CPU re-scores every claimed flip set exactly, so float gains are enough here.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "cuda/cuda_api.h"

namespace advrec {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int64_t kSharedMaxN = 8192;  // 5 bytes per position: 40 KiB of shared memory
constexpr size_t kScratchBudgetBytes = size_t{256} << 20;
constexpr int64_t kMaxGrid = int64_t{1} << 20;  // rows beyond this are strided

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();
  throw std::runtime_error(std::string("advrec CUDA fm_greedy: ") + what + " failed: " +
                           cudaGetErrorString(err));
}

struct GreedyArgs {
  const float* p;  // [m, n]
  int64_t m;
  int n;
  const int64_t* indptr;   // [m + 1]
  const int64_t* indices;  // positions in [0, n)
  const float* diag;       // [n]
  const float* V;          // [n, k]
  int k;
  const int8_t* sigma;      // [m], +1 or -1
  const double* threshold;  // [m]
  int64_t q;
  int64_t* selected;  // [m, q], pre-filled with -1
  double* delta;      // [m]
  uint8_t* flipped;   // [m]
};

// (a_val, a_pos) ranks before (b_val, b_pos): larger value, then lower position; pos < 0 = none.
__device__ __forceinline__ bool better(float a_val, int a_pos, float b_val, int b_pos) {
  if (a_pos < 0) return false;
  if (b_pos < 0) return true;
  return a_val > b_val || (a_val == b_val && a_pos < b_pos);
}

// Min. 4 blocks per SM: lets ptxas use 64 registers (it spilled at its own choice of 32 on sm_80).
__global__ void __launch_bounds__(kThreads, 4)
    greedy_kernel(GreedyArgs a, int in_shared, float* g_global, uint8_t* ex_global) {
  extern __shared__ float dyn_smem[];
  __shared__ float red_val[kWarps];
  __shared__ int red_pos[kWarps];
  __shared__ int s_best;
  __shared__ int s_done;
  __shared__ int s_flip;
  __shared__ double s_delta;

  const int n = a.n;
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int nwarps = static_cast<int>(blockDim.x) >> 5;
  float* g;
  uint8_t* ex;
  if (in_shared) {
    g = dyn_smem;
    ex = reinterpret_cast<uint8_t*>(dyn_smem + n);
  } else {
    g = g_global + static_cast<size_t>(blockIdx.x) * static_cast<size_t>(n);
    ex = ex_global + static_cast<size_t>(blockIdx.x) * static_cast<size_t>(n);
  }

  for (int64_t row = blockIdx.x; row < a.m; row += gridDim.x) {
    const float* prow = a.p + row * static_cast<int64_t>(n);
    const float sg = a.sigma[row] > 0 ? 1.0f : -1.0f;
    const double thr = a.threshold[row];
    for (int j = tid; j < n; j += static_cast<int>(blockDim.x)) {
      g[j] = prow[j] + a.diag[j];
      ex[j] = 0;
    }
    if (tid == 0) {
      s_delta = 0.0;
      s_done = 0;
      s_flip = 0;
    }
    __syncthreads();
    const int64_t h0 = a.indptr[row], h1 = a.indptr[row + 1];
    for (int64_t h = h0 + tid; h < h1; h += blockDim.x) ex[a.indices[h]] = 1;  // duplicates fine
    __syncthreads();

    for (int64_t step = 0; step < a.q; ++step) {
      // 1. argmax of sigma * g over the candidates.
      float bv = 0.0f;
      int bp = -1;
      for (int j = tid; j < n; j += static_cast<int>(blockDim.x)) {
        if (ex[j]) continue;
        const float v = sg * g[j];
        if (bp < 0 || v > bv) {  // ascending j: the first of equal values stays
          bv = v;
          bp = j;
        }
      }
      for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_down_sync(kFullMask, bv, off);
        const int op = __shfl_down_sync(kFullMask, bp, off);
        if (better(ov, op, bv, bp)) {
          bv = ov;
          bp = op;
        }
      }
      if (lane == 0) {
        red_val[warp] = bv;
        red_pos[warp] = bp;
      }
      __syncthreads();
      if (warp == 0) {
        bv = lane < nwarps ? red_val[lane] : 0.0f;
        bp = lane < nwarps ? red_pos[lane] : -1;
        for (int off = 16; off > 0; off >>= 1) {
          const float ov = __shfl_down_sync(kFullMask, bv, off);
          const int op = __shfl_down_sync(kFullMask, bp, off);
          if (better(ov, op, bv, bp)) {
            bv = ov;
            bp = op;
          }
        }
        // 2. Thread 0 (lane 0 of warp 0) takes the pick.
        if (lane == 0) {
          if (bp < 0) {
            s_done = 1;  // no candidate left
          } else {
            a.selected[row * a.q + step] = bp;
            const double d = s_delta + static_cast<double>(g[bp]);
            s_delta = d;
            ex[bp] = 1;
            const bool flip = sg > 0.0f ? (d > thr) : (d <= thr);
            if (flip) {
              s_flip = 1;
              s_done = 1;
            }
          }
          s_best = bp;
        }
      }
      __syncthreads();
      if (s_done || step + 1 >= a.q) break;  // uniform: shared values read after a barrier

      // 3. g_j += <v_j, v_{j*}> for the remaining candidates.
      const float* vs = a.V + static_cast<int64_t>(s_best) * a.k;
      for (int j = warp; j < n; j += nwarps) {
        if (ex[j]) continue;  // uniform within the warp
        const float* vj = a.V + static_cast<int64_t>(j) * a.k;
        float acc = 0.0f;
        for (int c = lane; c < a.k; c += 32) acc = fmaf(__ldg(vj + c), __ldg(vs + c), acc);
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(kFullMask, acc, off);
        if (lane == 0) g[j] += acc;
      }
      __syncthreads();
    }
    if (tid == 0) {
      a.delta[row] = s_delta;
      a.flipped[row] = static_cast<uint8_t>(s_flip);
    }
    __syncthreads();  // g, ex and the shared scalars are reset for the next row
  }
}

}  // namespace

void fm_greedy(const float* p, int64_t m, int64_t n, const int64_t* hist_indptr,
               const int64_t* hist_indices, const float* diag, const float* V_P, int64_t k,
               const int8_t* sigma, const double* threshold, int64_t q, int64_t* selected,
               double* delta, uint8_t* flipped, void* stream) {
  if (m < 0 || n < 0 || k < 0) throw std::invalid_argument("fm_greedy: negative dimension");
  if (n > std::numeric_limits<int32_t>::max() || k > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("p and V_P must have < 2^31 columns on CUDA");
  if (q < 0) throw std::invalid_argument("q must be >= 0, got " + std::to_string(q));
  if (m == 0) return;
  if (hist_indptr == nullptr || sigma == nullptr || threshold == nullptr || delta == nullptr ||
      flipped == nullptr || (q > 0 && selected == nullptr) ||
      (n > 0 && (p == nullptr || diag == nullptr)) || (n > 0 && k > 0 && V_P == nullptr))
    throw std::invalid_argument("fm_greedy: null device pointer");

  cudaStream_t st = static_cast<cudaStream_t>(stream);
  GreedyArgs a{p,     m,       static_cast<int>(n), hist_indptr, hist_indices,
               diag,  V_P,     static_cast<int>(k), sigma,       threshold,
               q,     selected, delta,              flipped};
  int64_t blocks = std::min(m, kMaxGrid);

  if (n <= kSharedMaxN) {
    const size_t smem = static_cast<size_t>(n) * (sizeof(float) + sizeof(uint8_t));
    greedy_kernel<<<static_cast<unsigned>(blocks), kThreads, smem, st>>>(a, 1, nullptr,
                                                                         nullptr);
    check(cudaGetLastError(), "kernel launch");
    return;
  }

  // Large n: a global slice of gains and flags per block, as many blocks as keep the GPU busy
  // (and the scratch budget allows); each block strides over the rows.
  int dev = 0, sms = 1;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
        "cudaDeviceGetAttribute");
  const size_t per_block = static_cast<size_t>(n) * (sizeof(float) + sizeof(uint8_t));
  const int64_t budget_blocks =
      std::max<int64_t>(1, static_cast<int64_t>(kScratchBudgetBytes / per_block));
  blocks = std::min({blocks, budget_blocks, int64_t{8} * sms});
  const size_t g_bytes = static_cast<size_t>(blocks) * static_cast<size_t>(n) * sizeof(float);
  void* scratch = nullptr;
  check(cudaMallocAsync(&scratch, static_cast<size_t>(blocks) * per_block, st),
        "cudaMallocAsync");
  greedy_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, st>>>(
      a, 0, static_cast<float*>(scratch), static_cast<uint8_t*>(scratch) + g_bytes);
  const cudaError_t err = cudaGetLastError();
  const cudaError_t free_err = cudaFreeAsync(scratch, st);  // stream-ordered: after the kernel
  check(err, "kernel launch");
  check(free_err, "cudaFreeAsync");
}

}  // namespace cuda
}  // namespace advrec
