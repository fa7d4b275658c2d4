// Masked top-k selection over rows of a score tile (the fused part of ranking evaluation).
#pragma once
#include <cstdint>

namespace advrec {

// For each row r of `scores` [rows x n_items] (row-major; T is float or double, compared in T:
// float64 scores are never rounded to float32, so no tie is invented), writes the k highest scoring
// items that are not excluded, best first, ties broken by the lower item index. The excluded
// items of row r are excl_indices[excl_indptr[e] : excl_indptr[e+1]] with e = excl_rows[r]
// (no exclusion when excl_indptr is null). Rows with fewer than k candidates are padded with
// index -1 and value -inf. Returns false when a score is NaN (the binding raises).
template <typename T>
bool topk_masked_cpu(const T* scores, int64_t rows, int64_t n_items, int64_t k,
                     const int64_t* excl_indptr, const int64_t* excl_indices,
                     const int64_t* excl_rows, int64_t* out_idx, T* out_val);

// For each target item t of row r (targets CSR aligned with the rows of `scores`), counts the
// candidate negatives (not excluded, not a target of the row) scoring strictly higher and equal,
// and writes the number of candidate negatives of the row. Used for ranks and AUC.
// Returns false when a score is NaN. T: float or double, as for topk_masked_cpu.
template <typename T>
bool rank_targets_cpu(const T* scores, int64_t rows, int64_t n_items,
                      const int64_t* tgt_indptr, const int64_t* tgt_indices,
                      const int64_t* excl_indptr, const int64_t* excl_indices,
                      const int64_t* excl_rows, int64_t* out_greater, int64_t* out_equal,
                      int64_t* out_n_neg);

}  // namespace advrec
