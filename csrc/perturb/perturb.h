// Fused step of an iterative embedding attack (issue 4): normalise each gradient row, scale,
// add to the perturbation, project back into the budget, in one pass over the rows instead of
// the four or five full-table passes of the unfused torch ops.
#pragma once
#include <cstdint>

namespace advrec {

enum class PerturbNorm : int {
  L2 = 0,              // delta_r += alpha g_r / ‖g_r‖₂ (rows with g_r = 0: no step); L2 ball
  Linf = 1,            // delta += alpha sign(g) (sign(0) = 0); clip to [-eps, eps]
  L2StepLinfClip = 2,  // the L2 step, then clip to [-eps, eps] (the published MSAP code)
};

// Largest step: float32's max, so that ‖delta + step‖² stays finite in double.
constexpr double kMaxAlpha = 3.4028234663852886e38;

// In place on delta [n_rows, dim] (row-major). rows: the m rows to update (nullptr: all rows);
// validated (in range, no duplicates) by the caller, as are eps >= 0 finite, 0 <= alpha <=
// kMaxAlpha, and grad and delta finite in the rows updated (a non-finite delta has no
// projection: inf * 0 is NaN). Each new row is computed in double (norms too) and rounded to
// float32 once, after the projection or clip; so no float32 overflow can occur before the
// projection. Every updated row is projected, including rows with a zero gradient: projection
// is idempotent for rows already inside the budget.
void perturb_step_cpu(float* delta, const float* grad, int64_t n_rows, int64_t dim,
                      const int64_t* rows, int64_t m, double alpha, double eps, PerturbNorm norm);

// Flat index of a non-finite entry of a [n_rows, dim] in the given rows (nullptr: all rows), or
// -1 when they are all finite. Called before any write, so a bad gradient changes nothing.
int64_t find_nonfinite(const float* a, int64_t n_rows, int64_t dim, const int64_t* rows, int64_t m);

}  // namespace advrec
