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

// GPU twin of the per-model Gram tables (docs/certify.md "Per-model tables"): of G = V Vᵀ
// (V [n, k] row-major, never materialised: tiles of `tile_rows` rows, 0 = automatic), the
// n_pairs largest / smallest entries with i <= j (pair_*_val [n_pairs], pair_*_idx
// [n_pairs, 2]) and per row the n_row largest / smallest off-diagonal entries (row_*_val,
// row_*_idx [n, n_row]); ties to the lower (i, j) / partner; padding -inf / +inf and -1.
// Row tables are sorted in shared memory, hence n_row <= kMaxGramRow; n_pairs <= kMaxGramPairs.
// Sets *nan_flag when an entry of G is NaN (float32 overflow).
constexpr int64_t kMaxGramRow = 4096;
constexpr int64_t kMaxGramPairs = int64_t{1} << 20;
void gram_extremes(const float* V, int64_t n, int64_t k, int64_t n_pairs, int64_t n_row,
                   int64_t tile_rows, double* pair_top_val, int64_t* pair_top_idx,
                   double* pair_bot_val, int64_t* pair_bot_idx, double* row_top_val,
                   int64_t* row_top_idx, double* row_bot_val, int64_t* row_bot_idx,
                   int* nan_flag, void* stream);

// GPU twin of the greedy flip search (docs/certify.md "Non-robust certificates", Alg. 1) over m
// rows: p [m, n], history CSR of positions (validated, any order), diag [n] = ‖v_j‖², V_P [n, k],
// sigma [m] (+1 maximise, -1 minimise), threshold [m]. Writes the picks into selected [m, q]
// (pre-filled with -1 by the caller), the delta reached (double) and whether the label flipped.
void fm_greedy(const float* p, int64_t m, int64_t n, const int64_t* hist_indptr,
               const int64_t* hist_indices, const float* diag, const float* V_P, int64_t k,
               const int8_t* sigma, const double* threshold, int64_t q, int64_t* selected,
               double* delta, uint8_t* flipped, void* stream);

// GPU twin of perturb_step_cpu (perturb/perturb.h): norm 0 = l2, 1 = linf, 2 = l2-step-linf-clip;
// rows (m entries, validated, no duplicates) or nullptr for all n_rows rows.
void perturb_step(float* delta, const float* grad, int64_t n_rows, int64_t dim,
                  const int64_t* rows, int64_t m, double alpha, double eps, int norm,
                  void* stream);

}  // namespace cuda
}  // namespace advrec
