// Fused attack step (perturb.h). One row of `dim` floats stays in L1 between the norm of the
// gradient, the update and the projection, so the table is read and written once. The new row
// is computed in double and rounded to float32 once, after the projection or clip. The row
// loops are compiled for the baseline ISA and for AVX2 (simd.h): the float -> double conversions
// dominate, and AVX2 converts four at a time.
#include "perturb/perturb.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "simd.h"

namespace advrec {

namespace {

ADVREC_INLINE double sumsq(const float* x, int64_t dim) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < dim; ++j) s += static_cast<double>(x[j]) * static_cast<double>(x[j]);
  return s;
}

// ‖d + scale g‖₂² with the row kept in double (nothing is rounded before the projection).
ADVREC_INLINE double step_sumsq(const float* d, const float* g, int64_t dim, double scale) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < dim; ++j) {
    const double v = static_cast<double>(d[j]) + scale * static_cast<double>(g[j]);
    s += v * v;
  }
  return s;
}

ADVREC_INLINE void step_row(float* d, const float* g, int64_t dim, double alpha, double eps, PerturbNorm norm) {
  if (norm == PerturbNorm::Linf) {
    // In float32 (twice the SIMD width of double): one rounding of d + a, exact clip.
    const float a = static_cast<float>(alpha), e = static_cast<float>(eps);
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j) {
      const float v = d[j] + (g[j] > 0.0f ? a : (g[j] < 0.0f ? -a : 0.0f));
      d[j] = v < -e ? -e : (v > e ? e : v);
    }
    return;
  }
  const double gn = std::sqrt(sumsq(g, dim));
  const double scale = gn > 0.0 ? alpha / gn : 0.0;
  if (norm == PerturbNorm::L2) {
    // Scale factor onto the ball, from the unrounded new row; one rounding per entry.
    const double dn = std::sqrt(gn > 0.0 ? step_sumsq(d, g, dim, scale) : sumsq(d, dim));
    const double f = dn > eps ? eps / dn : 1.0;
    if (gn == 0.0 && f == 1.0) return;
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j)
      d[j] = static_cast<float>(
          (static_cast<double>(d[j]) + scale * static_cast<double>(g[j])) * f);
    return;
  }
#pragma omp simd
  for (int64_t j = 0; j < dim; ++j) {
    double v = static_cast<double>(d[j]) + scale * static_cast<double>(g[j]);
    v = v < -eps ? -eps : v;  // two selects, not a nested ternary: gcc vectorises these
    v = v > eps ? eps : v;
    d[j] = static_cast<float>(v);
  }
}

#define ADVREC_STEP_ARGS                                                                     \
  float *delta, const float *grad, int64_t dim, const int64_t *rows, int64_t i0, int64_t i1, \
      double alpha, double eps, PerturbNorm norm
#define ADVREC_STEP_BODY                                               \
  for (int64_t i = i0; i < i1; ++i) {                                  \
    const int64_t r = rows ? rows[i] : i;                              \
    step_row(delta + r * dim, grad + r * dim, dim, alpha, eps, norm); \
  }

void step_rows(ADVREC_STEP_ARGS) { ADVREC_STEP_BODY }
#ifdef ADVREC_X86_DISPATCH
ADVREC_TARGET_AVX2 void step_rows_avx2(ADVREC_STEP_ARGS) { ADVREC_STEP_BODY }
#endif

}  // namespace

void perturb_step_cpu(float* delta, const float* grad, int64_t n_rows, int64_t dim,
                      const int64_t* rows, int64_t m, double alpha, double eps, PerturbNorm norm) {
  const int64_t count = rows ? m : n_rows;
  void (*step)(ADVREC_STEP_ARGS) = &step_rows;
#ifdef ADVREC_X86_DISPATCH
  if (cpu_has_avx2()) step = &step_rows_avx2;
#endif
  constexpr int64_t kChunk = 1024;  // rows per task: enough work to hide the call
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < (count + kChunk - 1) / kChunk; ++c)
    step(delta, grad, dim, rows, c * kChunk, std::min(count, (c + 1) * kChunk), alpha, eps, norm);
}

int64_t find_nonfinite(const float* a, int64_t n_rows, int64_t dim, const int64_t* rows, int64_t m) {
  const int64_t count = rows ? m : n_rows;
  int64_t bad = -1;
#pragma omp parallel for schedule(static) reduction(max : bad)
  for (int64_t i = 0; i < count; ++i) {
    const int64_t r = rows ? rows[i] : i;
    const float* x = a + r * dim;
    // Exponent bits all set <=> NaN or inf; integer ops, so the loop vectorises.
    uint32_t any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t j = 0; j < dim; ++j) {
      uint32_t u;
      std::memcpy(&u, x + j, sizeof u);
      any |= static_cast<uint32_t>((u & 0x7f800000u) == 0x7f800000u);
    }
    if (any)
      for (int64_t j = 0; j < dim; ++j)
        if (!std::isfinite(x[j])) {
          bad = std::max(bad, r * dim + j);
          break;
        }
  }
  return bad;
}

}  // namespace advrec
