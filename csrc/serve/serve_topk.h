// Serving top-k: a running top-k per user merged block by block from score tiles that a BLAS
// GEMM has just written (still in the core's cache), exclusion fused, for advrec.serving.
#pragma once
#include <cstdint>

namespace advrec {

// Merges one score block into each row's running top-k. `scores` [rows x cols] (row-major
// float32) holds the scores of items col0 .. col0 + cols - 1 for the rows' users. `best_idx` /
// `best_val` [rows x k] are the running lists, best first, ties to the lower item index,
// padded with index -1 and value -inf (start from all padding); they are updated in place. The
// excluded items of row r are excl_indices[excl_indptr[u] : excl_indptr[u+1]] with u = users[r],
// sorted ascending and unique (binary search; the binding checks it); no exclusion when
// excl_indptr is null. After every block of a row's items has been merged, the lists equal
// a stable top-k of the full row. threads <= 1: the calling thread only.
// Returns false when a candidate's score is NaN.
bool serve_topk_merge_cpu(const float* scores, int64_t rows, int64_t cols, int64_t col0, int64_t k,
                          const int64_t* users, const int64_t* excl_indptr,
                          const int64_t* excl_indices, int threads, int64_t* best_idx,
                          float* best_val);

}  // namespace advrec
