// BPR-MF training epoch (bpr_train.h). Per mini-batch: (1) per-triple margins, loss terms and
// gradient coefficients, parallel over blocks of triples; (2) the gradient scatter into dense
// float tables, the threads splitting the embedding columns (each entry sums its terms in triple
// order, whoever runs it); for AMF, (1)-(2) run twice around the FGSM perturbation of the
// touched rows; (3) the optimiser step, elementwise over every parameter, which also clears the
// gradient for the next batch. All scratch is allocated before the first parallel region.
//
// Precision: float32 throughout, as the torch reference (margins in 8 fixed float lanes, combined
// in a fixed tree); softplus and sigmoid of each margin, and the loss sums, in double.
#include "train/bpr_train.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"
#include "simd.h"

namespace advrec {

namespace {

constexpr int kLanes = 16;  // two AVX2 registers per sum: half the add chain of one

// Sum of 16 lanes in a fixed tree.
ADVREC_INLINE float lanes_sum(const float* s) {
  return (((s[0] + s[8]) + (s[4] + s[12])) + ((s[2] + s[10]) + (s[6] + s[14]))) +
         (((s[1] + s[9]) + (s[5] + s[13])) + ((s[3] + s[11]) + (s[7] + s[15])));
}

// <p, a - b> over 16 float lanes (lane l takes columns l, l + 16, ...), combined in a fixed tree.
ADVREC_INLINE float dot_diff(const float* p, const float* a, const float* b, int64_t dim) {
  float s[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= dim; d += kLanes)
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) s[l] += p[d + l] * (a[d + l] - b[d + l]);
  for (int l = 0; d < dim; ++d, ++l) s[l] += p[d] * (a[d] - b[d]);
  return lanes_sum(s);
}

// <p, a - b> and |p|^2 + |a|^2 + |b|^2 in one pass over the three rows (the norms only feed
// the reported loss's L2 term), 16 float lanes each, combined in fixed trees.
ADVREC_INLINE float dot_diff_norms(const float* p, const float* a, const float* b, int64_t dim,
                                   float* norms) {
  float s[kLanes] = {};
  float q[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= dim; d += kLanes)
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const float x = p[d + l], y = a[d + l], z = b[d + l];
      s[l] += x * (y - z);
      q[l] += (x * x + y * y) + z * z;
    }
  for (int l = 0; d < dim; ++d, ++l) {
    const float x = p[d], y = a[d], z = b[d];
    s[l] += x * (y - z);
    q[l] += (x * x + y * y) + z * z;
  }
  *norms = lanes_sum(q);
  return lanes_sum(s);
}

// exp(-a) for a >= 0, about 1 ulp: Cody-Waite reduction by ln 2 and a degree-7 polynomial, in
// float operations that vectorise (glibc's expf is a call per value). a > 87 gives exp(-87)
// (the loss and coefficient are then exact to float anyway); NaN stays NaN.
ADVREC_INLINE float exp_neg(float a) {
  const float y = -std::min(a == a ? a : 0.f, 87.f);  // NaN: any finite y, replaced below
  const float n = (y * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round to nearest
  const float r = (y - n * 0.693145751953125f) - n * 1.428606820309417232e-6f;
  float p = 1.f / 5040;
  p = p * r + 1.f / 720;
  p = p * r + 1.f / 120;
  p = p * r + 1.f / 24;
  p = p * r + 1.f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) * (1 << 23);  // 2^n, n in [-126, 0]
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  const float out = p * two_n;
  return a == a ? out : a;
}

// log(1 + e) for e in [0, 1]: 2 atanh(s), s = e / (2 + e) <= 1/3, by its series to s^15
// (truncation below 1e-9 relative, under float's rounding); a few float operations where
// glibc's log1pf took a fifth of a BPR epoch.
ADVREC_INLINE float log1p_unit(float e) {
  const float s = e / (2.f + e);
  const float z = s * s;
  const float p =
      1.f / 3 + z * (1.f / 5 + z * (1.f / 7 + z * (1.f / 9 + z * (1.f / 11 + z * (1.f / 13 + z * (1.f / 15))))));
  return 2.f * s + 2.f * s * (z * p);
}

// Triple (uk, ik, jk)'s terms of the gradient, columns [c0, c0 + w): through its margin on
// (P, Q) with coefficient c, plus r * (unperturbed row, from P0/Q0) for the L2 term
// (r = 2 l2 / B; r == 0: no term).
ADVREC_INLINE void scatter_one(const float* P, const float* Q, const float* P0, const float* Q0,
                               int64_t dim, int64_t uk, int64_t ik, int64_t jk, float c, float r,
                               int64_t c0, int64_t w, float* gP, float* gQ) {
  float* gu = gP + uk * dim + c0;
  float* gi = gQ + ik * dim + c0;
  float* gj = gQ + jk * dim + c0;
  const float* a = Q + ik * dim + c0;
  const float* b = Q + jk * dim + c0;
  const float* p = P + uk * dim + c0;
  const float* p0 = P0 + uk * dim + c0;
  const float* a0 = Q0 + ik * dim + c0;
  const float* b0 = Q0 + jk * dim + c0;
  if (r != 0.f) {
#pragma omp simd
    for (int64_t d = 0; d < w; ++d) gu[d] += c * (a[d] - b[d]) + r * p0[d];
  } else {
#pragma omp simd
    for (int64_t d = 0; d < w; ++d) gu[d] += c * (a[d] - b[d]);
  }
  if (ik != jk) {
    if (r != 0.f) {
#pragma omp simd  // ik != jk: distinct rows
      for (int64_t d = 0; d < w; ++d) {
        gi[d] += c * p[d] + r * a0[d];
        gj[d] += r * b0[d] - c * p[d];
      }
    } else {
#pragma omp simd
      for (int64_t d = 0; d < w; ++d) {
        gi[d] += c * p[d];
        gj[d] -= c * p[d];
      }
    }
  } else if (r != 0.f) {  // the margin's two terms cancel; the L2 term counts the row twice
    for (int64_t d = 0; d < w; ++d) gi[d] = (gi[d] + r * a0[d]) + r * b0[d];
  }
}

// Pass 1a over triples [k0, k1) (threads split the triples): the margins x[k] on (P, Q), and
// pen[k] the squared norms where pen is not null (then P, Q are the unperturbed tables).
ADVREC_INLINE void margins_body(const float* P, const float* Q, int64_t dim, const int64_t* u,
                                const int64_t* i, const int64_t* j, int64_t k0, int64_t k1,
                                float* x, float* pen) {
  for (int64_t k = k0; k < k1; ++k) {
    const float *p = P + u[k] * dim, *a = Q + i[k] * dim, *b = Q + j[k] * dim;
    x[k] = pen ? dot_diff_norms(p, a, b, dim, pen + k) : dot_diff(p, a, b, dim);
  }
}

// Pass 1b, vectorised over triples: loss[k] = softplus(-x) and coef[k] = -scale * sigmoid(-x)
// (scale = lam / B), both from e = exp(-|x|), stable for any x, in float as torch computes them.
ADVREC_INLINE void coefs_body(const float* x, int64_t k0, int64_t k1, float scale, float* coef,
                              float* loss) {
#pragma omp simd
  for (int64_t k = k0; k < k1; ++k) {
    const float xk = x[k];
    const float e = exp_neg(std::fabs(xk));
    const float inv = 1.f / (1.f + e);
    const float relu = xk < 0.f ? -xk : 0.f;  // selects, not branches: the loop vectorises
    const float sig = xk >= 0.f ? e * inv : inv;
    loss[k] = relu + log1p_unit(e);
    coef[k] = -scale * sig;
  }
}

// Pass 2 over every triple, columns [c0, c0 + w) (threads split the columns).
ADVREC_INLINE void scatter_body(const float* P, const float* Q, const float* P0, const float* Q0,
                                int64_t dim, const int64_t* u, const int64_t* i, const int64_t* j,
                                int64_t B, const float* coef, float r, int64_t c0, int64_t w,
                                float* gP, float* gQ) {
  for (int64_t k = 0; k < B; ++k)
    scatter_one(P, Q, P0, Q0, dim, u[k], i[k], j[k], coef[k], r, c0, w, gP, gQ);
}

// Optimiser steps over elements [e0, e1) of one table, each clearing the gradient it read.
struct StepScalars {
  float lr, wd, b1c, beta2, b2c, step_size, inv_bc2_sqrt, eps;
};

// WD: weight decay on (torch adds wd * p to the gradient); a template argument, not a branch
// in the loop, so that the loops vectorise.
template <bool WD>
ADVREC_INLINE void adam_loop(float* p, float* g, float* m, float* v, int64_t e0, int64_t e1,
                             const StepScalars& s) {
#pragma omp simd
  for (int64_t e = e0; e < e1; ++e) {
    const float gr = WD ? g[e] + s.wd * p[e] : g[e];
    // torch's update, but for one product by 1 / sqrt(1 - beta2^t) where torch divides
    const float me = m[e] + s.b1c * (gr - m[e]);  // torch's lerp(m, g, 1 - beta1)
    const float ve = v[e] * s.beta2 + s.b2c * gr * gr;
    m[e] = me;
    v[e] = ve;
    const float den = std::sqrt(ve) * s.inv_bc2_sqrt + s.eps;
    p[e] = p[e] + -s.step_size * (me / den);
    g[e] = 0.f;
  }
}

template <bool WD>
ADVREC_INLINE void adagrad_loop(float* p, float* g, float* sum, int64_t e0, int64_t e1,
                                const StepScalars& s) {
#pragma omp simd
  for (int64_t e = e0; e < e1; ++e) {
    const float gr = WD ? g[e] + s.wd * p[e] : g[e];
    const float se = sum[e] + gr * gr;
    sum[e] = se;
    p[e] = p[e] + -s.lr * (gr / (std::sqrt(se) + s.eps));
    g[e] = 0.f;
  }
}

template <bool WD>
ADVREC_INLINE void sgd_loop(float* p, float* g, int64_t e0, int64_t e1, const StepScalars& s) {
#pragma omp simd
  for (int64_t e = e0; e < e1; ++e) {
    const float gr = WD ? g[e] + s.wd * p[e] : g[e];
    p[e] = p[e] + -s.lr * gr;
    g[e] = 0.f;
  }
}

// The FGSM perturbation of table T's rows (rows[0, n_rows), or every row 0..n_rows-1 when rows
// is null; G the clean gradient): Tp[r] = T[r] + delta_r, delta_r = eps * G[r] / |G[r]| (l2;
// the norm over 16 float lanes; a zero row takes no step), eps * sign(G[r]) (linf), or the l2
// step clipped to [-eps, eps] (l2-step-linf-clip); rows with count[r] == 0 (the batch does not
// touch them) are skipped. Then, where l2_unit != 0, the row's L2 term:
// G[r] += (l2_unit * count[r]) T[r] (l2_unit = 2 l2 / B), read while the row is at hand.
ADVREC_INLINE void perturb_rows_body(const float* T, float* G, float* Tp, int64_t dim,
                                     const int64_t* rows, int64_t n_rows, int norm, float eps,
                                     const int64_t* count, double l2_unit) {
  for (int64_t k = 0; k < n_rows; ++k) {
    const int64_t r = rows ? rows[k] : k;
    if (count[r] == 0) continue;  // not in this batch: its perturbed row is never read
    const float* t = T + r * dim;
    float* g = G + r * dim;
    float* out = Tp + r * dim;
    if (norm == static_cast<int>(BprAdvNorm::kLinf)) {
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d)
        out[d] = t[d] + (g[d] > 0.f ? eps : (g[d] < 0.f ? -eps : 0.f));
    } else {
      float s[kLanes] = {};
      int64_t d = 0;
      for (; d + kLanes <= dim; d += kLanes)
#pragma omp simd
        for (int l = 0; l < kLanes; ++l) s[l] += g[d + l] * g[d + l];
      for (int l = 0; d < dim; ++d, ++l) s[l] += g[d] * g[d];
      const float n2 = lanes_sum(s);
      const float scale = n2 > 0.f ? eps / std::sqrt(n2) : 0.f;
      if (norm == static_cast<int>(BprAdvNorm::kL2StepLinfClip)) {
        for (d = 0; d < dim; ++d) out[d] = t[d] + std::min(eps, std::max(-eps, g[d] * scale));
      } else {
#pragma omp simd
        for (d = 0; d < dim; ++d) out[d] = t[d] + g[d] * scale;
      }
    }
    if (l2_unit != 0.0) {
      const float c = static_cast<float>(l2_unit * static_cast<double>(count[r]));
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) g[d] += c * t[d];
    }
  }
}

// Each hot loop compiled for the baseline ISA and for AVX2 (simd.h).
#define ADVREC_MARGINS_ARGS                                                                    \
  const float *P, const float *Q, int64_t dim, const int64_t *u, const int64_t *i,            \
      const int64_t *j, int64_t k0, int64_t k1, float *x, float *pen
#define ADVREC_MARGINS_PASS P, Q, dim, u, i, j, k0, k1, x, pen
#define ADVREC_COEFS_ARGS const float *x, int64_t k0, int64_t k1, float scale, float *coef, float *loss
#define ADVREC_COEFS_PASS x, k0, k1, scale, coef, loss
#define ADVREC_SCATTER_ARGS                                                                    \
  const float *P, const float *Q, const float *P0, const float *Q0, int64_t dim,              \
      const int64_t *u, const int64_t *i, const int64_t *j, int64_t B, const float *coef,     \
      float r, int64_t c0, int64_t w, float *gP, float *gQ
#define ADVREC_SCATTER_PASS P, Q, P0, Q0, dim, u, i, j, B, coef, r, c0, w, gP, gQ
#define ADVREC_STEP_ARGS \
  int kind, float *p, float *g, float *s1, float *s2, int64_t e0, int64_t e1, const StepScalars &s

ADVREC_INLINE void step_body(ADVREC_STEP_ARGS) {
  const bool wd = s.wd != 0.f;
  if (kind == static_cast<int>(BprOptimizer::kAdam))
    wd ? adam_loop<true>(p, g, s1, s2, e0, e1, s) : adam_loop<false>(p, g, s1, s2, e0, e1, s);
  else if (kind == static_cast<int>(BprOptimizer::kAdagrad))
    wd ? adagrad_loop<true>(p, g, s1, e0, e1, s) : adagrad_loop<false>(p, g, s1, e0, e1, s);
  else
    wd ? sgd_loop<true>(p, g, e0, e1, s) : sgd_loop<false>(p, g, e0, e1, s);
}

void margins_base(ADVREC_MARGINS_ARGS) { margins_body(ADVREC_MARGINS_PASS); }
void scatter_base(ADVREC_SCATTER_ARGS) { scatter_body(ADVREC_SCATTER_PASS); }
void coefs_base(ADVREC_COEFS_ARGS) { coefs_body(ADVREC_COEFS_PASS); }
void step_base(ADVREC_STEP_ARGS) { step_body(kind, p, g, s1, s2, e0, e1, s); }
#ifdef ADVREC_X86_DISPATCH
ADVREC_TARGET_AVX2 void margins_avx2(ADVREC_MARGINS_ARGS) { margins_body(ADVREC_MARGINS_PASS); }
ADVREC_TARGET_AVX2 void scatter_avx2(ADVREC_SCATTER_ARGS) { scatter_body(ADVREC_SCATTER_PASS); }
ADVREC_TARGET_AVX2 void coefs_avx2(ADVREC_COEFS_ARGS) { coefs_body(ADVREC_COEFS_PASS); }
ADVREC_TARGET_AVX2 void step_avx2(ADVREC_STEP_ARGS) { step_body(kind, p, g, s1, s2, e0, e1, s); }
#endif

#define ADVREC_PERTURB_ARGS \
  const float *T, float *G, float *Tp, int64_t dim, const int64_t *rows, int64_t n_rows, \
      int norm, float eps, const int64_t *count, double l2_unit
#define ADVREC_PERTURB_PASS T, G, Tp, dim, rows, n_rows, norm, eps, count, l2_unit
void perturb_base(ADVREC_PERTURB_ARGS) { perturb_rows_body(ADVREC_PERTURB_PASS); }
#ifdef ADVREC_X86_DISPATCH
ADVREC_TARGET_AVX2 void perturb_avx2(ADVREC_PERTURB_ARGS) { perturb_rows_body(ADVREC_PERTURB_PASS); }
#endif

struct Kernels {
  void (*perturb)(ADVREC_PERTURB_ARGS);
  void (*margins)(ADVREC_MARGINS_ARGS);
  void (*scatter)(ADVREC_SCATTER_ARGS);
  void (*coefs)(ADVREC_COEFS_ARGS);
  void (*step)(ADVREC_STEP_ARGS);
};

Kernels pick_kernels(bool avx2) {
#ifdef ADVREC_X86_DISPATCH
  if (avx2) return {&perturb_avx2, &margins_avx2, &scatter_avx2, &coefs_avx2, &step_avx2};
#else
  (void)avx2;
#endif
  return {&perturb_base, &margins_base, &scatter_base, &coefs_base, &step_base};
}

// [begin, end) of part t of `parts` equal contiguous parts of [0, n), boundaries on multiples
// of `align` (the partition changes who computes an entry, never how).
inline void part_range(int64_t n, int parts, int t, int64_t align, int64_t* begin, int64_t* end) {
  const int64_t units = (n + align - 1) / align;
  const int64_t b = units * t / parts * align, e = units * (t + 1) / parts * align;
  *begin = std::min(b, n);
  *end = std::min(e, n);
}

// The rows a batch touches, and how often, for AMF's per-row work. Small tables (rows <= the
// batch's 3B row reads) take every row (no lists; an untouched row has a zero gradient and
// count, so its step and L2 term are zero); larger ones list the distinct rows in
// first-appearance order, stamp[] marking rows already listed for batch `tag`.
struct Touched {
  std::vector<int64_t> stamp, count, rows;
  bool dense = false;
  void reset(int64_t n_rows, bool all) {
    dense = all;
    count.assign(static_cast<size_t>(n_rows), 0);
    if (!all) stamp.assign(static_cast<size_t>(n_rows), -1);
  }
  void add(const int64_t* ids, int64_t n, int64_t tag) {
    for (int64_t k = 0; k < n; ++k) {
      const int64_t r = ids[k];
      if (!dense && stamp[r] != tag) {
        stamp[r] = tag;
        rows.push_back(r);
      }
      ++count[r];
    }
  }
  const int64_t* list() const { return dense ? nullptr : rows.data(); }
  int64_t size() const { return dense ? static_cast<int64_t>(count.size()) : static_cast<int64_t>(rows.size()); }
  void clear() {
    if (dense) {
      std::fill(count.begin(), count.end(), 0);
    } else {
      for (const int64_t r : rows) count[r] = 0;
      rows.clear();
    }
  }
};

// The L2 term of a table FGSM does not perturb: G[r] += (l2_unit * count[r]) T[r].
void l2_rows(const float* T, float* G, int64_t dim, const Touched& touched, double l2_unit) {
  const int64_t* rows = touched.list();
  for (int64_t k = 0, n = touched.size(); k < n; ++k) {
    const int64_t r = rows ? rows[k] : k;
    if (touched.count[r] == 0) continue;
    const float c = static_cast<float>(l2_unit * static_cast<double>(touched.count[r]));
    const float* t = T + r * dim;
    float* g = G + r * dim;
    for (int64_t d = 0; d < dim; ++d) g[d] += c * t[d];
  }
}

}  // namespace

double mf_bpr_train_epoch(float* P, int64_t n_users, float* Q, int64_t n_items, int64_t dim,
                          const int64_t* users, const int64_t* pos, const int64_t* neg, int64_t n,
                          int64_t batch_size, double l2, const BprOptimSpec& opt,
                          const BprAdvSpec& adv, float* sP1, float* sP2, float* sQ1, float* sQ2,
                          int64_t* step, int threads, bool portable) {
  const Kernels kern = pick_kernels(!portable && cpu_has_avx2());
  const int T = std::max(1, threads);
  const bool adversarial = (adv.user || adv.item) && adv.lam != 0.0;
  const int64_t Bmax = std::min(batch_size, n);
  const int norm = static_cast<int>(adv.norm);
  const float eps = static_cast<float>(adv.eps);

  std::vector<float> gP(static_cast<size_t>(n_users * dim), 0.f);
  std::vector<float> gQ(static_cast<size_t>(n_items * dim), 0.f);
  std::vector<float> coef(static_cast<size_t>(Bmax)), margin(static_cast<size_t>(Bmax));
  std::vector<float> loss_terms(static_cast<size_t>(Bmax)), pen(static_cast<size_t>(Bmax));
  std::vector<float> Pt, Qt;  // perturbed rows (AMF), written only where a batch touches them
  Touched touchedU, touchedI;
  if (adversarial) {
    if (adv.user) Pt.resize(static_cast<size_t>(n_users * dim));
    if (adv.item) Qt.resize(static_cast<size_t>(n_items * dim));
    const bool dense = n_users + n_items <= 3 * Bmax;
    touchedU.reset(n_users, dense);
    touchedI.reset(n_items, dense);
  }
  // Column slices of the scatter: as many as threads, at least 8 columns each.
  const int col_parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(T, (dim + 7) / 8)));

  // The batch's loss terms (loss_terms, pen) and gradient terms (into gP, gQ) through the
  // margins on (Pm, Qm): margins and coefficients split by triples, the scatter by columns
  // (on one thread, each in one call; the partition never changes an operation).
  auto gradient = [&](const float* Pm, const float* Qm, const int64_t* u, const int64_t* i,
                      const int64_t* j, int64_t B, float scale, bool want_pen, float r) {
    float* pn = want_pen ? pen.data() : nullptr;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int t = 0; t < T; ++t) {
      int64_t k0, k1;
      part_range(B, T, t, 64, &k0, &k1);
      if (k0 < k1) {
        kern.margins(Pm, Qm, dim, u, i, j, k0, k1, margin.data(), pn);
        kern.coefs(margin.data(), k0, k1, scale, coef.data(), loss_terms.data());
      }
    }
#pragma omp parallel for schedule(static) num_threads(col_parts) if (col_parts > 1)
    for (int t = 0; t < col_parts; ++t) {
      int64_t c0, c1;
      part_range(dim, col_parts, t, 8, &c0, &c1);
      if (c0 < c1)
        kern.scatter(Pm, Qm, P, Q, dim, u, i, j, B, coef.data(), r, c0, c1 - c0, gP.data(),
                     gQ.data());
    }
  };
  auto sum = [](const std::vector<float>& v, int64_t B) {  // in double, in triple order
    double s = 0.0;
    for (int64_t k = 0; k < B; ++k) s += v[k];
    return s;
  };

  double total = 0.0;
  for (int64_t s0 = 0, batch = 0; s0 < n; s0 += batch_size, ++batch) {
    const int64_t B = std::min(batch_size, n - s0);
    const int64_t *u = users + s0, *i = pos + s0, *j = neg + s0;
    const double dB = static_cast<double>(B);
    const float r = static_cast<float>(2.0 * l2 / dB);

    // Plain: the loss and L2 terms in one pass. AMF: the clean loss's gradient first (FGSM's
    // direction, and part of the step), then the adversarial term, then the L2 term per row.
    gradient(P, Q, u, i, j, B, static_cast<float>(1.0 / dB), l2 > 0.0, adversarial ? 0.f : r);
    double loss = sum(loss_terms, B) / dB;
    if (l2 > 0.0) loss += l2 * sum(pen, B) / dB;
    if (adversarial) {
      touchedU.add(u, B, batch);
      touchedI.add(i, B, batch);
      touchedI.add(j, B, batch);
      const double l2_unit = 2.0 * l2 / dB;
      const float* Pa = P;
      const float* Qa = Q;
      // FGSM from the clean gradient, then each row's L2 term while the row is at hand.
      if (adv.user) {
        kern.perturb(P, gP.data(), Pt.data(), dim, touchedU.list(), touchedU.size(), norm, eps,
                     touchedU.count.data(), l2 > 0.0 ? l2_unit : 0.0);
        Pa = Pt.data();
      } else if (l2 > 0.0) {
        l2_rows(P, gP.data(), dim, touchedU, l2_unit);
      }
      if (adv.item) {
        kern.perturb(Q, gQ.data(), Qt.data(), dim, touchedI.list(), touchedI.size(), norm, eps,
                     touchedI.count.data(), l2 > 0.0 ? l2_unit : 0.0);
        Qa = Qt.data();
      } else if (l2 > 0.0) {
        l2_rows(Q, gQ.data(), dim, touchedI, l2_unit);
      }
      gradient(Pa, Qa, u, i, j, B, static_cast<float>(adv.lam / dB), false, 0.f);
      loss += adv.lam * sum(loss_terms, B) / dB;
      touchedU.clear();
      touchedI.clear();
    }
    total += loss * dB;

    // The optimiser step (torch's scalars: computed in double, applied in float).
    const int64_t t_step = ++*step;
    StepScalars sc{};
    sc.wd = static_cast<float>(opt.weight_decay);
    sc.eps = static_cast<float>(opt.eps);
    if (opt.kind == BprOptimizer::kAdam) {
      const double bc1 = 1.0 - std::pow(opt.beta1, static_cast<double>(t_step));
      const double bc2 = 1.0 - std::pow(opt.beta2, static_cast<double>(t_step));
      sc.b1c = static_cast<float>(1.0 - opt.beta1);
      sc.beta2 = static_cast<float>(opt.beta2);
      sc.b2c = static_cast<float>(1.0 - opt.beta2);
      sc.step_size = static_cast<float>(opt.lr / bc1);
      sc.inv_bc2_sqrt = static_cast<float>(1.0 / std::sqrt(bc2));
    } else if (opt.kind == BprOptimizer::kAdagrad) {
      sc.lr = static_cast<float>(opt.lr / (1.0 + static_cast<double>(t_step - 1) * opt.lr_decay));
    } else {
      sc.lr = static_cast<float>(opt.lr);
    }
    const int kind = static_cast<int>(opt.kind);
    const int64_t nP = n_users * dim, nQ = n_items * dim;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int t = 0; t < T; ++t) {
      int64_t e0, e1;
      part_range(nP, T, t, 16, &e0, &e1);
      if (e0 < e1) kern.step(kind, P, gP.data(), sP1, sP2, e0, e1, sc);
      part_range(nQ, T, t, 16, &e0, &e1);
      if (e0 < e1) kern.step(kind, Q, gQ.data(), sQ1, sQ2, e0, e1, sc);
    }
  }
  return total / static_cast<double>(n);
}

}  // namespace advrec
