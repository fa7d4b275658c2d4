// Cascade effects of the interactions in padded user sequences (issue 6; CAT, Tan et al.,
// Algorithm 1 / eq. 11): how much each (user, position) is felt by the rest of training, used to
// scale CAT's perturbation per position (1 / C: low-cascade positions are perturbed more).
//
// sequences [m, T] row-major, right-aligned: the most recent item in column T - 1, -1 only as
// padding before a row's first item. With s(c) = T - c (= 1 + T - t, t = c + 1) and
// D_v = sum of s(c) over every (row, column c) holding item v (every row, the user itself
// included, as Algorithm 1 lines 1-7 count it):
//   C[i, c] = s(c) + (b / m) * D_{v}      for the item v at (i, c); 0 at padding.
#pragma once
#include <cstdint>

namespace advrec {

enum class CascadeComponents : int {
  Sequence = 0,  // s(c) only (paper's adv_cas_1)
  Cross = 1,     // (b / m) D_v only (adv_cas_2)
  Both = 2,      // their sum (Algorithm 1)
};

enum class CascadeNormalize : int {
  None = 0,         // raw C
  MinMax = 1,       // (C - min) / (max - min) over the items; 1 when max == min
  InverseMean = 2,  // (1 / C) / mean(1 / C) over the items
};

// How item ids are mapped to their D accumulator.
enum class CascadeIdMap : int {
  Auto = 0,   // Dense when the largest id is small against the entries (cascade_dense_ok), else Hash
  Dense = 1,  // an array of max_id + 1 int64 counters indexed by the id
  Hash = 2,   // an open-addressing table keyed by the id (any ids, memory ~ distinct ids)
};

// Result of the validation scan: the first offending entry (row-major order) or row == -1.
struct CascadeScan {
  int64_t bad_row = -1;
  int64_t bad_col = -1;
  int64_t bad_value = 0;  // the id at (bad_row, bad_col)
  int bad_kind = 0;       // 1: id < -1; 2: padding (-1) after an item in the row
  int64_t max_id = -1;    // largest item id (-1: no items)
  int64_t n_items = 0;    // non-padding entries
};

// Reads every entry once (OpenMP over rows). The reported entry does not depend on the thread
// count: the smallest bad row wins, and that row is re-read sequentially.
CascadeScan cascade_scan(const int64_t* seq, int64_t m, int64_t T, int threads);

// Whether the dense id map is used under Auto: max_id < n_items + 65536, so its two tables (int64
// D and double X per id) take at most twice the int64 items plus 1 MiB. Ids numbered 0..n-1 over
// a catalogue always qualify.
bool cascade_dense_ok(const CascadeScan& scan);

// Fills out [m, T] (float32). `scan` is cascade_scan's result for these sequences and must be
// clean (bad_row == -1); batch_size >= 1; threads <= 0 means OpenMP's default (inputs of fewer
// than 32768 entries run on one thread). D is summed in int64 (exact, so in any order), every C
// is computed in double from it and rounded to float32 once; the min/max reductions are exact
// and the mean of 1 / C sums each row left to right, then the row sums in row order. So the
// output is bit-identical for any thread count.
// Returns the id map used (Auto resolved).
CascadeIdMap cascade_effects_cpu(const int64_t* seq, int64_t m, int64_t T, int64_t batch_size,
                                 CascadeComponents comp, CascadeNormalize norm,
                                 CascadeIdMap id_map, const CascadeScan& scan, int threads,
                                 float* out);

}  // namespace advrec
