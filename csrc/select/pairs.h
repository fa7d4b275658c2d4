// Extreme entries of a Gram matrix G = V Vᵀ, merged tile by tile (docs/certify.md, "Per-model
// tables"). BLAS computes the tiles; this kernel folds each one into a running selection so the
// n x n matrix never exists.
#pragma once
#include <cstdint>

namespace advrec {

// Running selection, updated in place by gram_extremes_update_cpu. Every list is sorted best
// first and padded at its tail with partner/index -1 (value -inf for top lists, +inf for bottom
// lists). Order: top lists by value descending, bottom lists ascending; equal values by the lower
// (i, j) (pairs) or the lower partner (rows).
struct GramState {
  int64_t n = 0;  // size of G
  int64_t m = 0;  // pairs kept per pair list
  int64_t t = 0;  // partners kept per row
  double* pair_top_val = nullptr;  // [m]
  int64_t* pair_top_idx = nullptr;  // [m, 2], i <= j
  double* pair_bot_val = nullptr;
  int64_t* pair_bot_idx = nullptr;
  double* row_top_val = nullptr;  // [n, t], off-diagonal partners only
  int64_t* row_top_idx = nullptr;
  double* row_bot_val = nullptr;
  int64_t* row_bot_idx = nullptr;
};

// Merges `tile` [r x c] (row-major float32) = G[row0:row0+r, col0:col0+c] into `s`. Entries with
// global column < global row are ignored, so each unordered pair i <= j must be covered by exactly
// one call. A diagonal entry (i, i) is a pair candidate only; an off-diagonal one (i < j) is a
// pair candidate and a row candidate for row i (partner j) and for row j (partner i).
// Requires 0 <= row0, row0 + r <= n, 0 <= col0, col0 + c <= n and a well-formed state (the
// binding checks both). Returns false, leaving `s` untouched, when the tile contains a NaN.
// The result does not depend on the number of threads.
bool gram_extremes_update_cpu(const float* tile, int64_t r, int64_t c, int64_t row0, int64_t col0,
                              const GramState& s);

}  // namespace advrec
