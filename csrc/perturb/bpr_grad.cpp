// BPR-MF loss gradient (bpr_grad.h) in two passes, deterministic for any number of threads:
//   1. per triple (parallel over fixed blocks of triples): x_k, the coefficient c_k and the
//      block's loss sum;
//   2. the scatter, with the threads splitting the embedding COLUMNS: each column slice is owned
//      by one thread, which walks every triple in order and accumulates its slice of gP and gQ
//      in double. No atomics, no per-thread copies of a table to reduce, and the order of every
//      sum is the triple order, whoever runs it.
// Measured (2 cores, dim 64) against a gather formulation, triples counting-sorted by user and
// by item on every call, then one pass over user rows fusing pass 1 and one over item rows (the
// same sums in the same order: identical gradients): 7.0 vs 9.0 ms on ML-100K's 98K training
// triples, 110 vs 130-190 ms on 1M triples over 10K x 10K; the sorts and the extra indirection
// cost more than the column split's repeated walks over the index arrays. Float accumulators
// would halve pass 2, at float precision; not taken. Slices are 16 doubles wide, so that a
// slice's accumulators for ML-100K's 2625 rows (336 KB) stay in L2.
//
// SIMD: the hot loops are compiled twice, for the baseline ISA and for AVX2 (chosen at run time
// on GCC/Clang x86). AVX2 without FMA: the same IEEE operations in the same order, so both paths
// give the same bits; AVX2 takes about 40% off (the float -> double conversions).
#include "perturb/bpr_grad.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "common.h"
#include "simd.h"

#ifdef ADVREC_OPENMP
#include <omp.h>
#endif


namespace advrec {

namespace {

constexpr int64_t kLossBlock = 4096;  // triples per loss partial sum: fixes the summation order
constexpr int kLanes = 8;             // partial sums of a dot product, combined in a fixed tree

// x = <p, a - b> in double over kLanes lanes (lane l takes columns l, l + 8, ...).
ADVREC_INLINE double dot_diff(const float* p, const float* a, const float* b, int64_t dim) {
  double s[kLanes] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  int64_t d = 0;
  for (; d + kLanes <= dim; d += kLanes)
#pragma omp simd
    for (int l = 0; l < kLanes; ++l)
      s[l] += static_cast<double>(p[d + l]) *
              (static_cast<double>(a[d + l]) - static_cast<double>(b[d + l]));
  for (int l = 0; d < dim; ++d, ++l)
    s[l] += static_cast<double>(p[d]) * (static_cast<double>(a[d]) - static_cast<double>(b[d]));
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

// Pass 1 over triples [k0, k1): coef[k] = -sigmoid(-x_k) / n; returns sum softplus(-x_k).
// With e = exp(-|x|): softplus(-x) = max(-x, 0) + log1p(e), sigmoid(-x) = e/(1+e) (x >= 0) or
// 1/(1+e) (x < 0): stable for any x, one exp per triple.
ADVREC_INLINE double coef_block_body(const float* P, const float* Q, int64_t dim,
                                     const int64_t* users, const int64_t* pos,
                                     const int64_t* neg, int64_t k0, int64_t k1, int64_t n,
                                     double* coef) {
  const double dn = static_cast<double>(n);
  double loss = 0.0;
  for (int64_t k = k0; k < k1; ++k) {
    const double x = dot_diff(P + users[k] * dim, Q + pos[k] * dim, Q + neg[k] * dim, dim);
    const double e = std::exp(-std::fabs(x));
    loss += (x < 0.0 ? -x : 0.0) + std::log1p(e);
    coef[k] = -(x >= 0.0 ? e / (1.0 + e) : 1.0 / (1.0 + e)) / dn;
  }
  return loss;
}

// Pass 2 for columns [c0, c0 + w) (w <= W): accumulators accP [n_users, W], accQ [n_items, W]
// (either null: not wanted), zeroed here, then rounded into gP/gQ.
template <int W>
ADVREC_INLINE void scatter_slice_body(const float* P, int64_t n_users, const float* Q,
                                      int64_t n_items, int64_t dim, const int64_t* users,
                                      const int64_t* pos, const int64_t* neg, int64_t n,
                                      const double* coef, int64_t c0, int64_t w, double* accP,
                                      double* accQ, float* gP, float* gQ) {
  if (accP) std::fill(accP, accP + n_users * W, 0.0);
  if (accQ) std::fill(accQ, accQ + n_items * W, 0.0);
  const float* Ps = P + c0;
  const float* Qs = Q + c0;
  for (int64_t k = 0; k < n; ++k) {
    const double c = coef[k];
    const int64_t u = users[k], i = pos[k], j = neg[k];
    if (accP) {
      const float* a = Qs + i * dim;
      const float* b = Qs + j * dim;
      double* g = accP + u * W;
      if (w == W) {
#pragma omp simd
        for (int d = 0; d < W; ++d)
          g[d] += c * (static_cast<double>(a[d]) - static_cast<double>(b[d]));
      } else {
#pragma omp simd
        for (int64_t d = 0; d < w; ++d)
          g[d] += c * (static_cast<double>(a[d]) - static_cast<double>(b[d]));
      }
    }
    if (accQ && i != j) {
      const float* p = Ps + u * dim;
      double* gi = accQ + i * W;
      double* gj = accQ + j * W;
      if (w == W) {
#pragma omp simd  // i != j: the two rows are distinct
        for (int d = 0; d < W; ++d) {
          const double t = c * static_cast<double>(p[d]);
          gi[d] += t;
          gj[d] -= t;
        }
      } else {
#pragma omp simd
        for (int64_t d = 0; d < w; ++d) {
          const double t = c * static_cast<double>(p[d]);
          gi[d] += t;
          gj[d] -= t;
        }
      }
    }
  }
  if (accP)
    for (int64_t r = 0; r < n_users; ++r)
      for (int64_t d = 0; d < w; ++d) gP[r * dim + c0 + d] = static_cast<float>(accP[r * W + d]);
  if (accQ)
    for (int64_t r = 0; r < n_items; ++r)
      for (int64_t d = 0; d < w; ++d) gQ[r * dim + c0 + d] = static_cast<float>(accQ[r * W + d]);
}

// The two compilations of each hot loop. OpenMP regions stay outside them (an outlined region
// would not inherit the target attribute).
#define ADVREC_COEF_ARGS                                                                 \
  const float *P, const float *Q, int64_t dim, const int64_t *users, const int64_t *pos, \
      const int64_t *neg, int64_t k0, int64_t k1, int64_t n, double *coef
#define ADVREC_SCATTER_ARGS                                                                      \
  const float *P, int64_t n_users, const float *Q, int64_t n_items, int64_t dim,                \
      const int64_t *users, const int64_t *pos, const int64_t *neg, int64_t n,                  \
      const double *coef, int64_t c0, int64_t w, double *accP, double *accQ, float *gP, \
      float *gQ
#define ADVREC_SCATTER_PASS P, n_users, Q, n_items, dim, users, pos, neg, n, coef, c0, w, accP, accQ, gP, gQ

double coef_block(ADVREC_COEF_ARGS) {
  return coef_block_body(P, Q, dim, users, pos, neg, k0, k1, n, coef);
}
template <int W>
void scatter_slice(ADVREC_SCATTER_ARGS) {
  scatter_slice_body<W>(ADVREC_SCATTER_PASS);
}

#ifdef ADVREC_X86_DISPATCH
ADVREC_TARGET_AVX2 double coef_block_avx2(ADVREC_COEF_ARGS) {
  return coef_block_body(P, Q, dim, users, pos, neg, k0, k1, n, coef);
}
template <int W>
ADVREC_TARGET_AVX2 void scatter_slice_avx2(ADVREC_SCATTER_ARGS) {
  scatter_slice_body<W>(ADVREC_SCATTER_PASS);
}

#endif

using CoefFn = double (*)(ADVREC_COEF_ARGS);
using ScatterFn = void (*)(ADVREC_SCATTER_ARGS);

template <int W>
ScatterFn pick_scatter(bool avx2) {
#ifdef ADVREC_X86_DISPATCH
  if (avx2) return &scatter_slice_avx2<W>;
#else
  (void)avx2;
#endif
  return &scatter_slice<W>;
}

}  // namespace

const char* mf_bpr_gradient_simd() { return cpu_has_avx2() ? "avx2" : "baseline"; }

double mf_bpr_gradient_cpu(const float* P, int64_t n_users, const float* Q, int64_t n_items,
                           int64_t dim, const int64_t* users, const int64_t* pos,
                           const int64_t* neg, int64_t n, float* gP, float* gQ, bool portable) {
  const bool avx2 = !portable && cpu_has_avx2();
  CoefFn coef_fn = &coef_block;
#ifdef ADVREC_X86_DISPATCH
  if (avx2) coef_fn = &coef_block_avx2;
#endif

  // Pass 1: coefficients and per-block loss sums.
  std::vector<double> coef(static_cast<size_t>(n));
  const int64_t n_blocks = (n + kLossBlock - 1) / kLossBlock;
  std::vector<double> partial(static_cast<size_t>(n_blocks));
  double* cf = coef.data();
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n_blocks; ++b)
    partial[b] = coef_fn(P, Q, dim, users, pos, neg, b * kLossBlock,
                         std::min(n, (b + 1) * kLossBlock), n, cf);
  double loss = 0.0;
  for (int64_t b = 0; b < n_blocks; ++b) loss += partial[b];
  loss /= static_cast<double>(n);
  if ((!gP && !gQ) || dim == 0) return loss;

  // Pass 2: column slices of 16 (8 when that leaves threads idle); the width changes who sums
  // a column, never the order of its sum.
  const int threads = openmp_max_threads();
  const int64_t width = (dim + 15) / 16 >= threads ? 16 : 8;
  const int64_t n_slices = (dim + width - 1) / width;
  const int team = static_cast<int>(std::min<int64_t>(threads, n_slices));
  const ScatterFn scatter = width == 16 ? pick_scatter<16>(avx2) : pick_scatter<8>(avx2);
  // Scratch allocated here (a failure is a MemoryError, not a crash inside the region); each
  // thread zeroes its own part, so its pages land near it.
  const int64_t per_p = gP ? n_users * width : 0, per_q = gQ ? n_items * width : 0;
  std::unique_ptr<double[]> scratch(new double[static_cast<size_t>(team) * (per_p + per_q)]);
#pragma omp parallel num_threads(team)
  {
#ifdef ADVREC_OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    double* accP = gP ? scratch.get() + static_cast<int64_t>(tid) * (per_p + per_q) : nullptr;
    double* accQ = gQ ? scratch.get() + static_cast<int64_t>(tid) * (per_p + per_q) + per_p : nullptr;
#pragma omp for schedule(static)
    for (int64_t s = 0; s < n_slices; ++s) {
      const int64_t c0 = s * width;
      scatter(P, n_users, Q, n_items, dim, users, pos, neg, n, cf, c0,
              std::min(width, dim - c0), accP, accQ, gP, gQ);
    }
  }
  return loss;
}

}  // namespace advrec
