// FM certification kernels (docs/certify.md): scores, the paper/joint/best bounds, greedy flip
// search (Alg. 1) and an exact branch and bound, one instance per OpenMP iteration.
//
// Everything is written "in the direction of the attack": with sigma = +1 for label -1 and
// sigma = -1 for label +1, the adversary maximises F(S) = sigma * delta(S) and flips the label
// once F reaches tau (= -f, resp. f). Oriented bounds are upper bounds on max F; the sound bound
// reported to the caller is sigma times the oriented one.
#include "certify/fm_certify.h"

#include "omp_guard.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#ifdef ADVREC_OPENMP
#include <omp.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace advrec {
namespace fmcert {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Golden-section steps of the square bound's search over beta (the bracket shrinks 0.618x each).
constexpr int kSquareIters = 14;
// The interval the square bound searches beta over.
constexpr double kSqLo = -0.99, kSqHi = 0.0;
constexpr double kUnit = 1.0 / 16777216.0;  // float32 unit roundoff, 2^-24
// Branch and bound caches sigma G among its candidates up to this many (8 MiB per thread).
constexpr int64_t kCacheMaxCandidates = 1024;

inline int thread_id() {
#ifdef ADVREC_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline int thread_count() {
#ifdef ADVREC_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline double pos_part(double z) { return z > 0.0 ? z : 0.0; }

// Largest of v[0..len) (-inf when empty; no NaN expected). Without -ffast-math compilers
// keep a max reduction scalar, so it is spelled out: SSE2 where available, else four chains.
inline double max_of(const double* v, int64_t len) {
  int64_t j = 0;
#if defined(__SSE2__)
  __m128d a0 = _mm_set1_pd(-kInf), a1 = a0, a2 = a0, a3 = a0;
  for (; j + 8 <= len; j += 8) {
    a0 = _mm_max_pd(a0, _mm_loadu_pd(v + j));
    a1 = _mm_max_pd(a1, _mm_loadu_pd(v + j + 2));
    a2 = _mm_max_pd(a2, _mm_loadu_pd(v + j + 4));
    a3 = _mm_max_pd(a3, _mm_loadu_pd(v + j + 6));
  }
  a0 = _mm_max_pd(_mm_max_pd(a0, a1), _mm_max_pd(a2, a3));
  double lanes[2];
  _mm_storeu_pd(lanes, a0);
  double m0 = std::max(lanes[0], lanes[1]), m1 = -kInf, m2 = -kInf, m3 = -kInf;
#else
  double m0 = -kInf, m1 = -kInf, m2 = -kInf, m3 = -kInf;
#endif
  for (; j + 4 <= len; j += 4) {
    m0 = v[j] > m0 ? v[j] : m0;
    m1 = v[j + 1] > m1 ? v[j + 1] : m1;
    m2 = v[j + 2] > m2 ? v[j + 2] : m2;
    m3 = v[j + 3] > m3 ? v[j + 3] : m3;
  }
  for (; j < len; ++j) m0 = v[j] > m0 ? v[j] : m0;
  return std::max(std::max(m0, m1), std::max(m2, m3));
}

// Four independent chains (fixed order, so results do not depend on the machine).
inline double dot(const double* a, const double* b, int64_t k) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t c = 0;
  for (; c + 4 <= k; c += 4) {
    s0 += a[c] * b[c];
    s1 += a[c + 1] * b[c + 1];
    s2 += a[c + 2] * b[c + 2];
    s3 += a[c + 3] * b[c + 3];
  }
  for (; c < k; ++c) s0 += a[c] * b[c];
  return (s0 + s1) + (s2 + s3);
}

// g = a + b, returning max(g).
inline double add_max(double* __restrict g, const double* __restrict a,
                      const double* __restrict b, int64_t len) {
  int64_t j = 0;
  double m = -kInf;
#if defined(__SSE2__)
  __m128d m0 = _mm_set1_pd(-kInf), m1 = m0;
  for (; j + 4 <= len; j += 4) {
    const __m128d x0 = _mm_add_pd(_mm_loadu_pd(a + j), _mm_loadu_pd(b + j));
    const __m128d x1 = _mm_add_pd(_mm_loadu_pd(a + j + 2), _mm_loadu_pd(b + j + 2));
    _mm_storeu_pd(g + j, x0);
    _mm_storeu_pd(g + j + 2, x1);
    m0 = _mm_max_pd(m0, x0);
    m1 = _mm_max_pd(m1, x1);
  }
  double lanes[2];
  _mm_storeu_pd(lanes, _mm_max_pd(m0, m1));
  m = std::max(lanes[0], lanes[1]);
#endif
  for (; j < len; ++j) {
    g[j] = a[j] + b[j];
    m = g[j] > m ? g[j] : m;
  }
  return m;
}

// g += row (or g -= row when negate), row in float32; returns max(g).
inline double add_row_max(double* __restrict g, const float* __restrict row, bool negate,
                          int64_t len) {
  int64_t j = 0;
  double m = -kInf;
#if defined(__SSE2__)
  const __m128d sg = _mm_set1_pd(negate ? -1.0 : 1.0);
  __m128d m0 = _mm_set1_pd(-kInf), m1 = m0;
  for (; j + 4 <= len; j += 4) {
    const __m128 r = _mm_loadu_ps(row + j);
    const __m128d x0 = _mm_add_pd(_mm_loadu_pd(g + j), _mm_mul_pd(sg, _mm_cvtps_pd(r)));
    const __m128d x1 =
        _mm_add_pd(_mm_loadu_pd(g + j + 2), _mm_mul_pd(sg, _mm_cvtps_pd(_mm_movehl_ps(r, r))));
    _mm_storeu_pd(g + j, x0);
    _mm_storeu_pd(g + j + 2, x1);
    m0 = _mm_max_pd(m0, x0);
    m1 = _mm_max_pd(m1, x1);
  }
  double lanes[2];
  _mm_storeu_pd(lanes, _mm_max_pd(m0, m1));
  m = std::max(lanes[0], lanes[1]);
#endif
  const double sgs = negate ? -1.0 : 1.0;
  for (; j < len; ++j) {
    g[j] += sgs * static_cast<double>(row[j]);
    m = g[j] > m ? g[j] : m;
  }
  return m;
}

// dst = sigma * src (float32 -> double); false when src holds NaN or inf.
inline bool load_scaled(double* __restrict dst, const float* __restrict src, double sigma,
                        int64_t len) {
  int64_t j = 0;
  uint32_t bad = 0;
#if defined(__SSE2__)
  const __m128d sg = _mm_set1_pd(sigma);
  const __m128i expo = _mm_set1_epi32(0x7f800000);
  __m128i acc = _mm_setzero_si128();
  for (; j + 4 <= len; j += 4) {
    const __m128 r = _mm_loadu_ps(src + j);
    acc = _mm_or_si128(acc, _mm_cmpeq_epi32(_mm_and_si128(_mm_castps_si128(r), expo), expo));
    _mm_storeu_pd(dst + j, _mm_mul_pd(sg, _mm_cvtps_pd(r)));
    _mm_storeu_pd(dst + j + 2, _mm_mul_pd(sg, _mm_cvtps_pd(_mm_movehl_ps(r, r))));
  }
  bad = static_cast<uint32_t>(_mm_movemask_epi8(acc));
#endif
  for (; j < len; ++j) {
    uint32_t bits;
    std::memcpy(&bits, src + j, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    dst[j] = sigma * static_cast<double>(src[j]);
  }
  return bad == 0;
}

// First j with v[j] == x (x must occur), testing blocks of 16 with one vectorisable test.
inline int64_t first_index_of(const double* v, int64_t len, double x) {
  constexpr int64_t kBlock = 16;
  int64_t j = 0;
  for (; j + kBlock <= len; j += kBlock) {
#if defined(__SSE2__)
    const __m128d xv = _mm_set1_pd(x);
    __m128d acc = _mm_cmpeq_pd(_mm_loadu_pd(v + j), xv);
    for (int64_t b = 2; b < kBlock; b += 2)
      acc = _mm_or_pd(acc, _mm_cmpeq_pd(_mm_loadu_pd(v + j + b), xv));
    if (_mm_movemask_pd(acc)) break;
#else
    bool any = false;
    for (int64_t b = 0; b < kBlock; ++b) any |= v[j + b] == x;
    if (any) break;
#endif
  }
  while (v[j] != x) ++j;
  return j;
}

// Sum of the q largest positive values pushed, in amortised O(1) per push: values above the
// running threshold go to a buffer of 2q + 16 that is cut back to its q best (nth_element) when
// full, raising the threshold to the q-th best. The threshold starts at 0 because only positive
// values can enter a sum of pos+ terms.
class TopSum {
 public:
  void reset(int64_t q) {
    q_ = q;
    cnt_ = 0;
    thr_ = q > 0 ? 0.0 : kInf;
    cap_ = 2 * q + 16;
    if (static_cast<int64_t>(buf_.size()) < cap_) buf_.resize(static_cast<size_t>(cap_));
  }
  inline void push(double v) {
    if (v > thr_) {
      buf_[cnt_++] = v;
      if (cnt_ == cap_) cut();
    }
  }
  // Pushes a[j] (+ b[j] when b is given) for j < len, skipping blocks of 16 that hold
  // nothing above the threshold with one vector test (NaN never passes v > thr).
  void push_all(const double* a, const double* b, int64_t len) {
    constexpr int64_t kBlock = 16;
    int64_t j = 0;
    for (; j + kBlock <= len; j += kBlock) {
      const double t = thr_;
#if defined(__SSE2__)
      const __m128d tv = _mm_set1_pd(t);
      __m128d acc = _mm_setzero_pd();
      if (b) {
        for (int64_t i = 0; i < kBlock; i += 2)
          acc = _mm_or_pd(acc, _mm_cmpgt_pd(_mm_add_pd(_mm_loadu_pd(a + j + i),
                                                       _mm_loadu_pd(b + j + i)), tv));
      } else {
        for (int64_t i = 0; i < kBlock; i += 2)
          acc = _mm_or_pd(acc, _mm_cmpgt_pd(_mm_loadu_pd(a + j + i), tv));
      }
      if (!_mm_movemask_pd(acc)) continue;
#else
      bool any = false;
      for (int64_t i = 0; i < kBlock; ++i) any |= (b ? a[j + i] + b[j + i] : a[j + i]) > t;
      if (!any) continue;
#endif
      for (int64_t i = 0; i < kBlock; ++i) push(b ? a[j + i] + b[j + i] : a[j + i]);
    }
    for (; j < len; ++j) push(b ? a[j] + b[j] : a[j]);
  }
  // Summed in descending order, so that sum() at q equals prefix()[q] of a wider selection.
  double sum() {
    if (cnt_ > q_) cut();
    std::sort(buf_.begin(), buf_.begin() + cnt_, std::greater<double>());
    double s = 0.0;
    for (int64_t i = 0; i < cnt_; ++i) s += buf_[i];
    return s;
  }
  // The q-th largest value pushed, 0 when fewer than q positive values were pushed.
  double kth() {
    if (cnt_ > q_) cut();
    if (cnt_ < q_) return 0.0;
    return *std::min_element(buf_.begin(), buf_.begin() + cnt_);
  }
  // out[i] = sum of the i largest kept values, i = 0..q.
  void prefix(double* out) {
    if (cnt_ > q_) cut();
    std::sort(buf_.begin(), buf_.begin() + cnt_, std::greater<double>());
    out[0] = 0.0;
    for (int64_t i = 1; i <= q_; ++i) out[i] = out[i - 1] + (i <= cnt_ ? buf_[i - 1] : 0.0);
  }

 private:
  void cut() {
    std::nth_element(buf_.begin(), buf_.begin() + (q_ - 1), buf_.begin() + cnt_,
                     std::greater<double>());
    cnt_ = q_;
    thr_ = buf_[q_ - 1];
  }
  std::vector<double> buf_;
  int64_t q_ = 0, cnt_ = 0, cap_ = 0;
  double thr_ = 0.0;
};

// The q <= kSmallTop largest positive values pushed, kept sorted (descending) by insertion:
// for the few values of the pre-filtered candidate lists, cheaper than TopSum's buffer and
// sort. Its sums are TopSum's bit for bit: the same values, added in the same (descending)
// order.
constexpr int64_t kSmallTop = 16;
class SmallTop {
 public:
  void reset(int64_t q) {
    q_ = q;
    cnt_ = 0;
  }
  inline void push(double x) {
    if (!(x > (cnt_ < q_ ? 0.0 : v_[q_ - 1]))) return;
    int64_t i = cnt_ < q_ ? cnt_++ : q_ - 1;
    while (i > 0 && v_[i - 1] < x) {
      v_[i] = v_[i - 1];
      --i;
    }
    v_[i] = x;
  }
  // push(a[j]) for j < len, skipping blocks of 16 that hold nothing above the current
  // threshold with one vector test: the threshold only rises, so a skipped value would have
  // been rejected by push() too, and the kept values are push()'s bit for bit.
  void push_all(const double* a, int64_t len) {
    constexpr int64_t kBlock = 16;
    int64_t j = 0;
    for (; j + kBlock <= len; j += kBlock) {
      const double t = cnt_ < q_ ? 0.0 : v_[q_ - 1];
#if defined(__SSE2__)
      const __m128d tv = _mm_set1_pd(t);
      __m128d acc = _mm_setzero_pd();
      for (int64_t i = 0; i < kBlock; i += 2)
        acc = _mm_or_pd(acc, _mm_cmpgt_pd(_mm_loadu_pd(a + j + i), tv));
      if (!_mm_movemask_pd(acc)) continue;
#else
      bool any = false;
      for (int64_t i = 0; i < kBlock; ++i) any |= a[j + i] > t;
      if (!any) continue;
#endif
      for (int64_t i = 0; i < kBlock; ++i) push(a[j + i]);
    }
    for (; j < len; ++j) push(a[j]);
  }
  double kth() const { return cnt_ < q_ ? 0.0 : v_[q_ - 1]; }
  double sum() const {
    double s = 0.0;
    for (int64_t i = 0; i < cnt_; ++i) s += v_[i];
    return s;
  }
  void prefix(double* out) const {
    out[0] = 0.0;
    for (int64_t i = 1; i <= q_; ++i) out[i] = out[i - 1] + (i <= cnt_ ? v_[i - 1] : 0.0);
  }

 private:
  double v_[kSmallTop];
  int64_t q_ = 0, cnt_ = 0;
};

// Per-call data, read-only inside the parallel region.
struct Shared {
  const Problem& pr;
  int64_t n, k;
  std::vector<int32_t> fpos;  // feature id -> position in P, or -1
  std::vector<double> e_feat;  // |v_i|^2 of every feature, double
  std::vector<double> VP;      // [n, k] rows of V over P, double
  std::vector<double> wP, eP;  // [n]
  double vmax = 0.0, wmax = 0.0;
  // Oriented table prefix sums (index 0: sigma = +1, 1: sigma = -1), built up to qcap:
  // pair_pre[s][q] = sum_{l < q(q+1)/2} pos+(sigma * pair[l]), q = 0..qcap;
  // row_pre[s][r * n + j] = sum_{l < r} pos+(sigma * row[j, l]), r = 0..qcap-1.
  int64_t qcap = 0;
  std::vector<double> pair_pre[2];
  std::vector<double> row_pre[2];
  // joint_add[s][r * n + j] = sigma e_j + row_pre[s][r * n + j] / 2: the joint bound's u_j
  // (oriented) is sigma p_j + joint_add at r = q - 1.
  std::vector<double> joint_add[2];
  std::vector<double> sig_e[2];  // sigma e_j
  // The square bound's first candidate cut (beta over [-0.99, 0]): the instance-free parts of
  // its terms at both ends, beta w_j - e_j / 2, and |w_j| + e_j of its margin, exactly as
  // narrow() and square_candidates() compute them per instance.
  std::vector<double> sq_end_lo, sq_end_hi, sq_mag_add;

  Shared(const Problem& p, int64_t q_tables) : pr(p), n(p.n), k(p.k) {
    fpos.assign(static_cast<size_t>(pr.d), -1);
    for (int64_t a = 0; a < n; ++a) fpos[pr.perturbable[a]] = static_cast<int32_t>(a);
    e_feat.resize(static_cast<size_t>(pr.d));
    for (int64_t i = 0; i < pr.d; ++i) {
      const float* v = pr.V + i * k;
      double acc = 0.0;
      for (int64_t c = 0; c < k; ++c) acc += static_cast<double>(v[c]) * v[c];
      e_feat[i] = acc;
    }
    VP.resize(static_cast<size_t>(n * k));
    wP.resize(static_cast<size_t>(n));
    eP.resize(static_cast<size_t>(n));
    for (int64_t a = 0; a < n; ++a) {
      const int64_t f = pr.perturbable[a];
      for (int64_t c = 0; c < k; ++c) VP[a * k + c] = pr.V[f * k + c];
      wP[a] = pr.w[f];
      eP[a] = e_feat[f];
      vmax = std::max(vmax, std::sqrt(eP[a]));
      wmax = std::max(wmax, std::fabs(wP[a]));
    }
    sq_end_lo.resize(static_cast<size_t>(n));
    sq_end_hi.resize(static_cast<size_t>(n));
    sq_mag_add.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      sq_end_lo[j] = kSqLo * wP[j] - 0.5 * eP[j];
      sq_end_hi[j] = kSqHi * wP[j] - 0.5 * eP[j];
      sq_mag_add[j] = std::fabs(wP[j]) + eP[j];
    }
    for (int s = 0; s < 2; ++s) {
      sig_e[s].resize(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) sig_e[s][j] = (s == 0 ? 1.0 : -1.0) * eP[j];
    }
    qcap = q_tables;
    if (qcap <= 0) return;
    const double* pair[2] = {pr.pair_top, pr.pair_bot};
    const double* row[2] = {pr.row_top, pr.row_bot};
    for (int s = 0; s < 2; ++s) {
      const double sg = s == 0 ? 1.0 : -1.0;
      pair_pre[s].assign(static_cast<size_t>(qcap + 1), 0.0);
      double acc = 0.0;
      int64_t l = 0;
      for (int64_t q = 1; q <= qcap; ++q) {
        for (; l < q * (q + 1) / 2; ++l) acc += pos_part(sg * pair[s][l]);
        pair_pre[s][q] = acc;
      }
      row_pre[s].assign(static_cast<size_t>(qcap * n), 0.0);
      for (int64_t r = 1; r < qcap; ++r)
        for (int64_t j = 0; j < n; ++j)
          row_pre[s][r * n + j] = row_pre[s][(r - 1) * n + j] + pos_part(sg * row[s][j * pr.t + r - 1]);
      joint_add[s].resize(static_cast<size_t>(qcap * n));
      for (int64_t r = 0; r < qcap; ++r)
        for (int64_t j = 0; j < n; ++j)
          joint_add[s][r * n + j] = sig_e[s][j] + 0.5 * row_pre[s][r * n + j];
    }
  }
};

enum class BnB { kUnknown = 0, kRobust = 1, kFlipped = 2 };

// One thread's scratch, reused across instances; holds the state of the current instance.
struct Worker {
  const Shared& sh;
  const Problem& pr;
  const int64_t n, k;
  // Current instance.
  int64_t row = 0;
  const int64_t* feats = nullptr;
  int64_t nf = 0;
  double lin = 0.0, ee = 0.0, f = 0.0, snorm = 0.0, sigma = 1.0, tau = 0.0;
  int sidx = 0;       // 0 for sigma = +1, 1 for sigma = -1
  int64_t nC = 0;     // |C|
  bool opx_ready = false;
  std::vector<double> s, sbuf;
  std::vector<uint8_t> inH;
  std::vector<int32_t> hpos;
  // Oriented p (sigma p_j on C, -inf on H): op from the caller's p when given (bounds and
  // greedy), opx always in double (branch and bound); greedy gains.
  std::vector<double> op, opx, og;
  std::vector<double> sq;  // square-bound terms
  std::vector<int64_t> S;  // positions of the flip set found
  // Shared across budgets: square-bound selections per beta tried (bit patterns of beta, then
  // prefix sums [entries, shared_qmax + 1]); greedy picks, running F and re-score results
  // (-1 not yet re-scored) per prefix.
  int64_t shared_qmax = 0;
  bool small_top = false;  // shared_qmax <= kSmallTop: the lists' selections use st
  SmallTop st;
  std::vector<uint64_t> memo_key;
  std::vector<double> memo_pre;
  // The square bound's candidates (square_candidates): their oriented p, w and e.
  bool sqc_ready = false;
  double sq_mag = 0.0;
  std::vector<double> sq_hi;
  // The joint bound's candidates (joint_candidates), positions.
  bool jc_ready = false;
  int64_t jc_n = 0;
  std::vector<int32_t> jc;
  std::vector<int64_t> gS;
  std::vector<double> gF;
  std::vector<int8_t> gFlip;
  double g_best = 0.0;
  bool g_started = false;
  TopSum ts;
  // Branch and bound.
  std::vector<int32_t> cpos, order;
  std::vector<double> ca, ckey, mlev, frameF, base, gcache;
  std::vector<uint8_t> gcached;
  std::vector<int64_t> frameNext, chosen;
  // Flip sets found by this thread, concatenated.
  std::vector<int64_t> flips;

  Worker(const Shared& shared)
      : sh(shared), pr(shared.pr), n(shared.n), k(shared.k),
        s(static_cast<size_t>(k)), sbuf(static_cast<size_t>(k)),
        inH(static_cast<size_t>(n), 0), op(static_cast<size_t>(n)), og(static_cast<size_t>(n)) {}

  // s, f, label and H of row r.
  void begin(int64_t r) {
    row = r;
    feats = pr.indices + pr.indptr[r];
    nf = pr.indptr[r + 1] - pr.indptr[r];
    std::fill(s.begin(), s.end(), 0.0);
    lin = pr.w0;
    ee = 0.0;
    hpos.clear();
    // s in double, four rows per pass over s (or the caller's, summed the same way).
    double* sd = s.data();
    int64_t t = pr.s ? nf : 0;
    if (pr.s) std::copy(pr.s + r * k, pr.s + (r + 1) * k, sd);
    for (; t + 4 <= nf; t += 4) {
      const float* v0 = pr.V + feats[t] * k;
      const float* v1 = pr.V + feats[t + 1] * k;
      const float* v2 = pr.V + feats[t + 2] * k;
      const float* v3 = pr.V + feats[t + 3] * k;
      for (int64_t c = 0; c < k; ++c)
        sd[c] += (static_cast<double>(v0[c]) + v1[c]) + (static_cast<double>(v2[c]) + v3[c]);
    }
    for (; t < nf; ++t) {
      const float* v = pr.V + feats[t] * k;
      for (int64_t c = 0; c < k; ++c) sd[c] += v[c];
    }
    for (t = 0; t < nf; ++t) {
      const int64_t i = feats[t];
      lin += pr.w[i];
      ee += sh.e_feat[i];
      const int32_t a = sh.fpos[i];
      if (a >= 0) {
        inH[a] = 1;
        hpos.push_back(a);
      }
    }
    const double ss = dot(s.data(), s.data(), k);
    snorm = std::sqrt(ss);
    f = lin + 0.5 * (ss + ee);
    sigma = f > 0.0 ? -1.0 : 1.0;  // f = 0 is label -1
    sidx = f > 0.0 ? 1 : 0;
    tau = f > 0.0 ? f : -f;
    nC = n - static_cast<int64_t>(hpos.size());
    opx_ready = false;
  }
  void end() {
    for (int32_t a : hpos) inH[a] = 0;
  }

  double tol(int64_t q) const {
    const double c = 2.0 * static_cast<double>(k + 2) * kUnit;
    const double eps_p = c * (sh.vmax * snorm + sh.wmax);
    const double eps_g = c * sh.vmax * sh.vmax;
    const double qd = static_cast<double>(q);
    return qd * eps_p + qd * qd * eps_g;
  }

  // sigma p_j = sigma (w_j + <v_j, s>) in double on C, -inf on H.
  void exact_op(std::vector<double>& dst) {
    if (dst.size() < static_cast<size_t>(n)) dst.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j)
      dst[j] = inH[j] ? -kInf : sigma * (sh.wP[j] + dot(&sh.VP[j * k], s.data(), k));
  }
  // op from the caller's float32 p row when given (false when it holds NaN/inf), else exact.
  bool load_p() {
    if (!pr.p) {
      exact_op(op);
      return true;
    }
    const bool ok = load_scaled(op.data(), pr.p + row * n, sigma, n);
    for (int32_t a : hpos) op[a] = -kInf;
    return ok;
  }
  // Oriented p in double for the branch and bound (computed once per instance when p was given).
  const double* op_double() {
    if (!pr.p) return op.data();
    if (!opx_ready) exact_op(opx);
    opx_ready = true;
    return opx.data();
  }

  // Oriented paper bound: q largest pos+(sigma p_j) over C plus the pair-table prefix.
  double paper_bound(int64_t q) {
    ts.reset(q);
    ts.push_all(op.data(), nullptr, n);
    return ts.sum() + sh.pair_pre[sidx][q];
  }
  // Oriented joint bound: q largest pos+(sigma (p_j + e_j) + R_j(q - 1) / 2) over C.
  double joint_bound(int64_t q) {
    ts.reset(q);
    ts.push_all(op.data(), &sh.joint_add[sidx][(q - 1) * n], n);
    return ts.sum();
  }
  // Oriented square bound, label +1 only (docs/certify.md): for every beta,
  // -delta(S) <= sum_S [beta w_j - e_j / 2 + (1 + beta) sigma p_j] + beta^2 |s|^2 / 2, from
  // |u_S - beta s|^2 >= 0 with u_S = sum_S v_j. Convex in beta, so a golden-section search over
  // [-0.99, 0] finds its minimum; every beta tried is sound, the smallest value is returned.
  double square_bound(int64_t q) {
    if (sidx != 1) return kInf;
    return golden_min([&](double beta, double, double) {
      square_terms(beta);
      ts.reset(q);
      ts.push_all(sq.data(), nullptr, n);  // H holds -inf in op, so -inf here: never selected
      return ts.sum() + 0.5 * beta * beta * snorm * snorm;
    });
  }
  // sq[j] = (1 + beta) sigma p_j + beta w_j - e_j / 2, the square bound's terms at beta.
  void square_terms(double beta) {
    if (sq.size() < static_cast<size_t>(n)) sq.resize(static_cast<size_t>(n));
    const double a = 1.0 + beta;
    for (int64_t j = 0; j < n; ++j) sq[j] = a * op[j] + (beta * sh.wP[j] - 0.5 * sh.eP[j]);
  }
  // Golden-section search of at(beta, lo, hi) over [-0.99, 0] (at(0) included), [lo, hi] the
  // bracket beta lies in; the smallest value seen.
  template <typename At>
  static double golden_min(At at) {
    constexpr double kGolden = 0.6180339887498949;
    double lo = kSqLo, hi = kSqHi;
    double x1 = hi - kGolden * (hi - lo), x2 = lo + kGolden * (hi - lo);
    double f1 = at(x1, lo, hi), f2 = at(x2, lo, hi);
    double best = std::min({at(0.0, lo, hi), f1, f2});
    for (int it = 0; it < kSquareIters; ++it) {
      if (f1 <= f2) {
        hi = x2; x2 = x1; f2 = f1;
        x1 = hi - kGolden * (hi - lo);
        f1 = at(x1, lo, hi);
        best = std::min(best, f1);
      } else {
        lo = x1; x1 = x2; f1 = f2;
        x2 = lo + kGolden * (hi - lo);
        f2 = at(x2, lo, hi);
        best = std::min(best, f2);
      }
    }
    return best;
  }

  // ---- Several budgets of one instance (certify_budgets, max_q): the work that does not
  // depend on q is done once and each budget reads it, giving bit for bit what the per-q
  // functions above return.

  // Square bound at q, every beta's selection kept for all budgets up to shared_qmax: the
  // terms at beta do not depend on q, and the sum of the q smallest is the q-th prefix of the
  // widest selection (TopSum sums in order), so budgets whose searches try the same beta (all
  // share the first three) select once. Each selection runs over the few candidates that can
  // enter a top-shared_qmax for some beta in [-0.99, 0] (square_candidates). Call
  // shared_reset(q_max) per instance first.
  double square_bound_shared(int64_t q) {
    if (sidx != 1) return kInf;
    if (!sqc_ready) square_candidates();
    const size_t width = static_cast<size_t>(shared_qmax + 1);
    // This search's candidates: the instance's list for [-0.99, 0], narrowed (into the other
    // buffer) whenever the bracket has shrunk to half the interval the list was cut for.
    const SqList* cur = &sqc;
    double cur_lo = kSqLo, cur_hi = kSqHi;
    int next = 0;
    return golden_min([&](double beta, double lo, double hi) {
      uint64_t key;
      std::memcpy(&key, &beta, sizeof key);
      size_t e = 0;
      while (e < memo_key.size() && memo_key[e] != key) ++e;
      if (e == memo_key.size()) {
        if (hi - lo < 0.5 * (cur_hi - cur_lo)) {
          narrow(*cur, lo, hi, sqn[next]);
          cur = &sqn[next];
          next ^= 1;
          cur_lo = lo;
          cur_hi = hi;
        }
        const int64_t nc = cur->size;
        const double a = 1.0 + beta;  // the terms exactly as square_terms() computes them
        for (int64_t i = 0; i < nc; ++i)
          sq[i] = a * cur->op[i] + (beta * cur->w[i] - 0.5 * cur->e[i]);
        memo_key.push_back(key);
        memo_pre.resize(memo_key.size() * width);
        if (small_top) {
          st.reset(shared_qmax);
          st.push_all(sq.data(), nc);
          st.prefix(&memo_pre[e * width]);
        } else {
          ts.reset(shared_qmax);
          ts.push_all(sq.data(), nullptr, nc);
          ts.prefix(&memo_pre[e * width]);
        }
      }
      return memo_pre[e * width + q] + 0.5 * beta * beta * snorm * snorm;
    });
  }
  // Square-bound candidates: oriented p, w and e of each (the first `size` entries).
  struct SqList {
    std::vector<double> op, w, e;
    int64_t size = 0;
  };
  // The instance's candidates for [-0.99, 0], and two buffers a search narrows into.
  SqList sqc, sqn[2];
  // The candidates j whose square term c_j(beta) can be among the shared_qmax largest positive
  // ones for some beta in [lo, hi], out of the nf given. c_j is linear in beta, so over the
  // interval its values lie between those at the ends, lo_j <= c_j <= hi_j. With theta the
  // shared_qmax-th largest lo_j (0 when fewer are positive), a j with hi_j < theta is below
  // shared_qmax others at every beta there and never selected; the margin (1e-9 of the largest
  // term magnitude, far above the few roundings of each term) keeps the cut exact in floating
  // point. Values are computed as square_terms() does (-inf on H, never kept).
  // With end_lo/end_hi (the first cut over all of C), the instance-free parts of the terms
  // come from the per-model tables: the same products, so the same values.
  void narrow(const double* op_, const double* w_, const double* e_, int64_t nf, double lo,
              double hi, SqList& to, const double* end_lo = nullptr,
              const double* end_hi = nullptr) {
    const double alo = 1.0 + lo, ahi = 1.0 + hi;
    double* __restrict vlo = sq.data();
    double* __restrict vhi = sq_hi.data();
    if (end_lo) {
      for (int64_t i = 0; i < nf; ++i) {
        const double v0 = alo * op_[i] + end_lo[i];
        const double v1 = ahi * op_[i] + end_hi[i];
        vlo[i] = v0 < v1 ? v0 : v1;
        vhi[i] = v0 < v1 ? v1 : v0;
      }
    } else {
      for (int64_t i = 0; i < nf; ++i) {
        const double v0 = alo * op_[i] + (lo * w_[i] - 0.5 * e_[i]);
        const double v1 = ahi * op_[i] + (hi * w_[i] - 0.5 * e_[i]);
        vlo[i] = v0 < v1 ? v0 : v1;
        vhi[i] = v0 < v1 ? v1 : v0;
      }
    }
    double theta;
    if (small_top && nf < n) {  // (the first cut, over all of C, skips blocks in TopSum)
      st.reset(shared_qmax);
      st.push_all(vlo, nf);
      theta = st.kth();
    } else {
      ts.reset(shared_qmax);
      ts.push_all(vlo, nullptr, nf);
      theta = ts.kth();
    }
    const double cut = theta - 2e-9 * sq_mag;
    if (static_cast<int64_t>(to.op.size()) < nf) {
      to.op.resize(static_cast<size_t>(nf));
      to.w.resize(static_cast<size_t>(nf));
      to.e.resize(static_cast<size_t>(nf));
    }
    int64_t cnt = 0;
    for (int64_t i = 0; i < nf; ++i) {  // branch-free compaction
      to.op[cnt] = op_[i];
      to.w[cnt] = w_[i];
      to.e[cnt] = e_[i];
      cnt += vhi[i] >= cut;
    }
    to.size = cnt;
  }
  void narrow(const SqList& from, double lo, double hi, SqList& to) {
    narrow(from.op.data(), from.w.data(), from.e.data(), from.size, lo, hi, to);
  }
  // The instance's candidates for the whole interval [-0.99, 0].
  void square_candidates() {
    if (sq_hi.size() < static_cast<size_t>(n)) sq_hi.resize(static_cast<size_t>(n));
    if (sq.size() < static_cast<size_t>(n)) sq.resize(static_cast<size_t>(n));
    double mag = 0.0;
    const double* madd = sh.sq_mag_add.data();
    for (int64_t j = 0; j < n; ++j) {
      const double t = std::fabs(op[j]) + madd[j];  // inf on H
      mag = t != kInf && t > mag ? t : mag;
    }
    sq_mag = mag;
    narrow(op.data(), sh.wP.data(), sh.eP.data(), n, kSqLo, kSqHi, sqc, sh.sq_end_lo.data(),
           sh.sq_end_hi.data());
    sqc_ready = true;
  }
  // Joint bound at q over the candidates that can be among the shared_qmax largest u_j(q) for
  // some q <= shared_qmax (joint_candidates): the same values, so the same sum as joint_bound.
  double joint_bound_shared(int64_t q) {
    if (!jc_ready) joint_candidates();
    const double* add = &sh.joint_add[sidx][(q - 1) * n];
    if (small_top) {
      st.reset(q);
      for (int64_t i = 0; i < jc_n; ++i) st.push(op[jc[i]] + add[jc[i]]);
      return st.sum();
    }
    ts.reset(q);
    for (int64_t i = 0; i < jc_n; ++i) ts.push(op[jc[i]] + add[jc[i]]);
    return ts.sum();
  }
  // u_j(q) = sigma p_j + sigma e_j + R_j(q - 1) / 2 never decreases with q (R_j sums
  // non-negative terms; rounding is monotone), and u_j(1) is sigma (p_j + e_j). With theta the
  // shared_qmax-th largest u_j(1), a j with u_j(q_max) < theta is below shared_qmax others at
  // every q <= q_max, and one with u_j(q_max) <= 0 is never selected: both are dropped.
  void joint_candidates() {
    ts.reset(shared_qmax);
    ts.push_all(op.data(), sh.sig_e[sidx].data(), n);
    const double theta = ts.kth();
    const double* add = &sh.joint_add[sidx][(shared_qmax - 1) * n];
    const double cut = theta > 0.0 ? theta : std::numeric_limits<double>::denorm_min();  // v > 0, v >= theta
    if (jc.size() < static_cast<size_t>(n)) jc.resize(static_cast<size_t>(n));
    int64_t cnt = 0;
    for (int64_t j = 0; j < n; ++j) {  // branch-free compaction
      jc[cnt] = static_cast<int32_t>(j);
      cnt += op[j] + add[j] >= cut;
    }
    jc_n = cnt;
    jc_ready = true;
  }
  void shared_reset(int64_t q_max) {
    shared_qmax = q_max;
    small_top = q_max <= kSmallTop;
    memo_key.clear();
    sqc_ready = false;
    jc_ready = false;
    gS.clear();
    gF.clear();
    gFlip.clear();
    g_started = false;
  }
  // greedy(q, tl) without repeating the search: the picks do not depend on q, only the stop
  // test does (tol grows with q), so steps are taken as budgets ask for them and each prefix's
  // double re-score is kept. Returns the length of the flip set greedy(q, tl) finds (its first
  // entries of gS), 0 when it finds none.
  int64_t greedy_shared(int64_t q, double tl) {
    const int64_t steps = std::min(q, nC);
    for (int64_t t = 0; t < steps; ++t) {
      if (t == static_cast<int64_t>(gS.size())) greedy_step();
      if (gF[t] >= tau - tl) {
        if (gFlip[t] < 0)
          gFlip[t] = rescore_flips(t + 1, [&](int64_t u) { return gS[u]; }) ? 1 : 0;
        if (gFlip[t]) return t + 1;
      }
    }
    return 0;
  }
  // One step of greedy(): the gain update for the previous pick (greedy() applies it at the
  // end of a step; here when the next step is asked for), then the pick.
  void greedy_step() {
    double* g = og.data();
    if (!g_started) {
      g_best = add_max(g, op.data(), sh.sig_e[sidx].data(), n);  // -inf stays on H
      g_started = true;
    } else {
      const int64_t js = gS.back();
      if (pr.gram) {
        g_best = add_row_max(g, pr.gram + js * n, sidx == 1, n);
      } else {
        const double* vj = &sh.VP[js * k];
        for (int64_t j = 0; j < n; ++j)
          if (g[j] != -kInf) g[j] += sigma * dot(&sh.VP[j * k], vj, k);
        g_best = max_of(g, n);
      }
    }
    const int64_t js = first_index_of(g, n, g_best);  // lowest position among ties
    gS.push_back(js);
    gF.push_back((gF.empty() ? 0.0 : gF.back()) + g_best);
    gFlip.push_back(-1);
    g[js] = -kInf;
  }

  double oriented_bound(int64_t q, Method method) {
    switch (method) {
      case Method::kPaper: return paper_bound(q);
      case Method::kJoint: return joint_bound(q);
      default: return std::min(paper_bound(q), joint_bound(q));
    }
  }
  // Certified robust: f + bound <= -tol (label -1) or f + bound > tol (label +1).
  bool clears(double ob, double tl) const { return sidx == 0 ? ob <= tau - tl : ob < tau - tl; }

  // f(x u T) from scratch in double, T given as positions.
  template <typename PosAt>
  bool rescore_flips(int64_t cnt, PosAt pos_at) {
    std::copy(s.begin(), s.end(), sbuf.begin());
    double l2 = lin, e2 = ee;
    for (int64_t t = 0; t < cnt; ++t) {
      const int64_t a = pos_at(t);
      const double* v = &sh.VP[a * k];
      for (int64_t c = 0; c < k; ++c) sbuf[c] += v[c];
      l2 += sh.wP[a];
      e2 += sh.eP[a];
    }
    const double f2 = l2 + 0.5 * (dot(sbuf.data(), sbuf.data(), k) + e2);
    return sidx == 0 ? f2 > 0.0 : f2 <= 0.0;
  }

  // Alg. 1: up to q times add the candidate of largest oriented gain (ties: lowest position).
  // The running F decides when to re-score; only the double re-score claims a flip.
  bool greedy(int64_t q, double tl) {
    S.clear();
    double* g = og.data();
    double best = add_max(g, op.data(), sh.sig_e[sidx].data(), n);  // -inf stays on H
    const int64_t steps = std::min(q, nC);
    double F = 0.0;
    for (int64_t step = 0; step < steps; ++step) {
      const int64_t js = first_index_of(g, n, best);  // lowest position among ties
      S.push_back(js);
      F += best;
      g[js] = -kInf;
      if (F >= tau - tl && rescore_flips(static_cast<int64_t>(S.size()),
                                         [&](int64_t t) { return S[t]; }))
        return true;
      if (step + 1 == steps) break;
      if (pr.gram) {
        best = add_row_max(g, pr.gram + js * n, sidx == 1, n);
      } else {
        const double* vj = &sh.VP[js * k];
        for (int64_t j = 0; j < n; ++j)
          if (g[j] != -kInf) g[j] += sigma * dot(&sh.VP[j * k], vj, k);
        best = max_of(g, n);
      }
    }
    return false;
  }

  // Exact search over |S| <= q (docs/certify.md), depth first with an explicit stack.
  // Uses p in double. On kFlipped, S holds the flip set.
  BnB branch_and_bound(int64_t q, double tl, int64_t budget, int64_t& nodes) {
    const double* opd = op_double();
    const std::vector<double>& Rall = sh.row_pre[sidx];
    const double* Rq = &Rall[(q - 1) * n];
    // Candidate filter (with the tolerance as margin, so float32 tables never drop a
    // candidate that could matter) and order by a_j + R_j(q-1)/2, descending.
    order.clear();
    ckey.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      if (inH[j]) continue;
      const double a = opd[j] + sigma * sh.eP[j];
      if (a + Rq[j] + tl <= 0.0) continue;
      ckey[j] = a + 0.5 * Rq[j];
      order.push_back(static_cast<int32_t>(j));
    }
    std::sort(order.begin(), order.end(), [&](int32_t x, int32_t y) {
      return ckey[x] > ckey[y] || (ckey[x] == ckey[y] && x < y);
    });
    const int64_t c = static_cast<int64_t>(order.size());
    cpos.assign(order.begin(), order.end());
    ca.resize(static_cast<size_t>(c));
    for (int64_t i = 0; i < c; ++i) ca[i] = opd[cpos[i]] + sigma * sh.eP[cpos[i]];
    const int64_t depth = std::min(q, c);
    mlev.assign(static_cast<size_t>((depth + 1) * c), 0.0);
    frameF.resize(static_cast<size_t>(depth + 1));
    frameNext.resize(static_cast<size_t>(depth + 1));
    chosen.resize(static_cast<size_t>(depth + 1));
    // base[L * c + i] = a_i + R_i(r - 1) / 2 at depth L (r = q - L), in candidate order, so a
    // node's bound is one contiguous pass over base + m.
    base.resize(static_cast<size_t>(depth * c));
    for (int64_t L = 0; L < depth; ++L) {
      const double* Rr = &Rall[(q - 1 - L) * n];
      for (int64_t i = 0; i < c; ++i) base[L * c + i] = ca[i] + 0.5 * Rr[cpos[i]];
    }
    // sigma G between candidates, in candidate order, one row at a time as the search needs
    // it (each row from its diagonal on); only while c x c doubles stay small.
    const bool cache = c <= kCacheMaxCandidates;
    if (cache) {
      gcache.resize(static_cast<size_t>(c * c));
      gcached.assign(static_cast<size_t>(c), 0);
    }
    auto g_row = [&](int64_t i) -> const double* {
      double* row = &gcache[i * c];
      if (gcached[i]) return row;
      const int64_t pi = cpos[i];
      if (pr.gram) {
        const float* g = pr.gram + pi * n;
        for (int64_t l = i + 1; l < c; ++l) row[l] = sigma * static_cast<double>(g[cpos[l]]);
      } else {
        const double* vi = &sh.VP[pi * k];
        for (int64_t l = i + 1; l < c; ++l) row[l] = sigma * dot(&sh.VP[cpos[l] * k], vi, k);
      }
      gcached[i] = 1;
      return row;
    };

    // Opens node S (|S| = L, children from s0); false when it is a leaf or pruned.
    auto open = [&](int64_t L, int64_t s0, double F, bool& out_of_budget) -> bool {
      const int64_t r = q - L;
      if (r <= 0 || s0 >= c) return false;
      if (nodes >= budget) {
        out_of_budget = true;
        return false;
      }
      ++nodes;
      ts.reset(r);
      ts.push_all(&base[L * c + s0], &mlev[L * c + s0], c - s0);
      if (F + ts.sum() + tl < tau) return false;
      frameF[L] = F;
      frameNext[L] = s0;
      return true;
    };

    bool oob = false;
    if (!open(0, 0, 0.0, oob)) return oob ? BnB::kUnknown : BnB::kRobust;
    int64_t L = 0;
    while (L >= 0) {
      const int64_t i = frameNext[L];
      if (i >= c) {
        --L;
        continue;
      }
      frameNext[L] = i + 1;
      const double* mL = &mlev[L * c];
      const double F2 = frameF[L] + ca[i] + mL[i];
      chosen[L] = i;
      if (F2 >= tau - tl &&
          rescore_flips(L + 1, [&](int64_t t) { return static_cast<int64_t>(cpos[chosen[t]]); })) {
        S.clear();
        for (int64_t t = 0; t <= L; ++t) S.push_back(cpos[chosen[t]]);
        return BnB::kFlipped;
      }
      if (q - L > 1 && i + 1 < c) {
        double* __restrict mN = &mlev[(L + 1) * c];
        const double* __restrict mP = mL;
        if (cache) {
          const double* __restrict row = g_row(i);
          for (int64_t l = i + 1; l < c; ++l) mN[l] = mP[l] + row[l];
        } else if (pr.gram) {
          const float* g = pr.gram + cpos[i] * n;
          for (int64_t l = i + 1; l < c; ++l) mN[l] = mP[l] + sigma * static_cast<double>(g[cpos[l]]);
        } else {
          const double* vi = &sh.VP[cpos[i] * k];
          for (int64_t l = i + 1; l < c; ++l) mN[l] = mP[l] + sigma * dot(&sh.VP[cpos[l] * k], vi, k);
        }
        if (open(L + 1, i + 1, F2, oob)) ++L;
        else if (oob) return BnB::kUnknown;
      }
    }
    return BnB::kRobust;
  }

  void record_flip(int64_t& off, int64_t& len) { record_flip(off, len, flips); }
  // S's feature ids, ascending, appended to dst at off.
  void record_flip(int64_t& off, int64_t& len, std::vector<int64_t>& dst) {
    std::sort(S.begin(), S.end());
    off = static_cast<int64_t>(dst.size());
    len = static_cast<int64_t>(S.size());
    for (int64_t a : S) dst.push_back(pr.perturbable[a]);
  }
};

bool uses_tables(Method m) { return m != Method::kGreedy; }

// Keeps the first row whose p held NaN/inf (rows finish in any order under OpenMP).
void note_bad_row(int64_t& bad_row, int64_t r) {
#ifdef ADVREC_OPENMP
#pragma omp critical(advrec_fmcert_bad)
#endif
  if (bad_row < 0 || r < bad_row) bad_row = r;
}

}  // namespace

void scores(const Problem& pr, double* out, float* sums, double* sums64) {
  Shared sh(pr, 0);
  OmpGuard guard;
#ifdef ADVREC_OPENMP
#pragma omp parallel
#endif
  {
    std::unique_ptr<Worker> wkp;
    guard.run([&] { wkp.reset(new Worker(sh)); });
#ifdef ADVREC_OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t r = 0; r < pr.m; ++r) {
      if (!wkp || guard.failed()) continue;
      guard.run([&] {
        Worker& wk = *wkp;
        wk.begin(r);
        out[r] = wk.f;
        if (sums)
          for (int64_t c = 0; c < pr.k; ++c) sums[r * pr.k + c] = static_cast<float>(wk.s[c]);
        if (sums64) std::copy(wk.s.begin(), wk.s.end(), sums64 + r * pr.k);
        wk.end();
      });
    }
  }
  guard.rethrow();
}

int64_t certify(const Problem& pr, int64_t q, Method method, int64_t node_budget,
                CertifyOut& out) {
  const Shared sh(pr, q > 0 && uses_tables(method) ? q : 0);
  const int64_t m = pr.m;
  std::vector<int32_t> ftid(static_cast<size_t>(m), 0);
  std::vector<int64_t> foff(static_cast<size_t>(m), 0), flen(static_cast<size_t>(m), 0);
  std::vector<std::vector<int64_t>> thread_flips(static_cast<size_t>(thread_count()));
  int64_t bad_row = -1;
  const double nan = std::numeric_limits<double>::quiet_NaN();

  OmpGuard guard;
#ifdef ADVREC_OPENMP
#pragma omp parallel
#endif
  {
    std::unique_ptr<Worker> wkp;
    guard.run([&] { wkp.reset(new Worker(sh)); });
    const int tid = thread_id();
#ifdef ADVREC_OPENMP
#pragma omp for schedule(dynamic, 8)
#endif
    for (int64_t r = 0; r < m; ++r) {
      if (!wkp || guard.failed()) continue;
      guard.run([&] {
        Worker& wk = *wkp;
        wk.begin(r);
        out.score[r] = wk.f;
        out.nodes[r] = 0;
        out.status[r] = 0;
        out.bound[r] = method == Method::kGreedy ? nan : 0.0;
        if (q == 0) {  // only the empty set is allowed
          out.status[r] = 1;
          out.bound[r] = 0.0;
          wk.end();
          return;
        }
        if (!wk.load_p()) {
          note_bad_row(bad_row, r);
          wk.end();
          return;
        }
        const double tl = wk.tol(q);
        if (method != Method::kGreedy) {
          double ob = wk.oriented_bound(q, method);
          if ((method == Method::kBest || method == Method::kExact) && !wk.clears(ob, tl))
            ob = std::min(ob, wk.square_bound(q));  // only where the cheaper bounds fall short
          out.bound[r] = wk.sigma * ob;
          if (wk.clears(ob, tl)) {
            out.status[r] = 1;
            wk.end();
            return;
          }
        }
        bool flipped = wk.greedy(q, tl);
        if (!flipped && method == Method::kExact) {
          int64_t nodes = 0;
          const BnB res = wk.branch_and_bound(q, tl, node_budget, nodes);
          out.nodes[r] = nodes;
          if (res == BnB::kRobust) out.status[r] = 1;
          flipped = res == BnB::kFlipped;
        }
        if (flipped) {
          out.status[r] = -1;
          ftid[r] = tid;
          wk.record_flip(foff[r], flen[r]);
        }
        wk.end();
      });
    }
    if (wkp) thread_flips[tid].swap(wkp->flips);
  }
  guard.rethrow();
  if (bad_row >= 0) return bad_row;
  out.flips_indptr[0] = 0;
  for (int64_t r = 0; r < m; ++r) out.flips_indptr[r + 1] = out.flips_indptr[r] + flen[r];
  out.flips_indices.resize(static_cast<size_t>(out.flips_indptr[m]));
  for (int64_t r = 0; r < m; ++r) {
    const std::vector<int64_t>& src = thread_flips[ftid[r]];
    std::copy(src.begin() + foff[r], src.begin() + foff[r] + flen[r],
              out.flips_indices.begin() + out.flips_indptr[r]);
  }
  return -1;
}

int64_t certify_budgets(const Problem& pr, const std::vector<int64_t>& qs, Method method,
                        int64_t node_budget, std::vector<CertifyOut>& outs) {
  const int64_t nq = static_cast<int64_t>(qs.size());
  const int64_t q_max = nq ? qs.back() : 0;
  const Shared sh(pr, q_max > 0 && uses_tables(method) ? q_max : 0);
  const int64_t m = pr.m;
  const bool use_paper = method == Method::kPaper || method == Method::kBest || method == Method::kExact;
  const bool use_joint = method == Method::kJoint || method == Method::kBest || method == Method::kExact;
  const bool use_square = method == Method::kBest || method == Method::kExact;
  // Flip sets: per budget b and row r, the thread that found it and where ([b * m + r]).
  const size_t slots = static_cast<size_t>(nq * m);
  std::vector<int32_t> ftid(slots, 0);
  std::vector<int64_t> foff(slots, 0), flen(slots, 0);
  const int nt = thread_count();
  std::vector<std::vector<int64_t>> thread_flips(static_cast<size_t>(nq * nt));
  int64_t bad_row = -1;
  const double nan = std::numeric_limits<double>::quiet_NaN();

  OmpGuard guard;
#ifdef ADVREC_OPENMP
#pragma omp parallel
#endif
  {
    std::unique_ptr<Worker> wkp;
    std::vector<double> paper_pre;
    std::vector<std::vector<int64_t>> my_flips;
    guard.run([&] {
      wkp.reset(new Worker(sh));
      paper_pre.assign(static_cast<size_t>(use_paper ? q_max + 1 : 0), 0.0);
      my_flips.resize(static_cast<size_t>(nq));
    });
    const int tid = thread_id();
#ifdef ADVREC_OPENMP
#pragma omp for schedule(dynamic, 8)
#endif
    for (int64_t r = 0; r < m; ++r) {
      if (!wkp || guard.failed()) continue;
      guard.run([&] {
        Worker& wk = *wkp;
        wk.begin(r);
        for (int64_t b = 0; b < nq; ++b) {
          CertifyOut& o = outs[b];
          o.score[r] = wk.f;
          o.nodes[r] = 0;
          o.status[r] = 0;
          o.bound[r] = method == Method::kGreedy ? nan : 0.0;
          if (qs[b] == 0) {  // only the empty set is allowed
            o.status[r] = 1;
            o.bound[r] = 0.0;
          }
        }
        if (q_max == 0) {
          wk.end();
          return;
        }
        if (!wk.load_p()) {
          note_bad_row(bad_row, r);
          wk.end();
          return;
        }
        wk.shared_reset(q_max);
        if (use_paper) {  // one selection serves every budget
          wk.ts.reset(q_max);
          wk.ts.push_all(wk.op.data(), nullptr, wk.n);
          wk.ts.prefix(paper_pre.data());
        }
        for (int64_t b = 0; b < nq; ++b) {
          const int64_t q = qs[b];
          if (q == 0) continue;
          CertifyOut& o = outs[b];
          const double tl = wk.tol(q);
          if (method != Method::kGreedy) {
            double ob = kInf;
            if (use_paper) ob = paper_pre[q] + sh.pair_pre[wk.sidx][q];
            if (use_joint) ob = std::min(ob, wk.joint_bound_shared(q));
            if (use_square && !wk.clears(ob, tl)) ob = std::min(ob, wk.square_bound_shared(q));
            o.bound[r] = wk.sigma * ob;
            if (wk.clears(ob, tl)) {
              o.status[r] = 1;
              continue;
            }
          }
          const int64_t len = wk.greedy_shared(q, tl);
          bool flipped = len > 0;
          if (flipped) {
            wk.S.assign(wk.gS.begin(), wk.gS.begin() + len);
          } else if (method == Method::kExact) {
            int64_t nodes = 0;
            const BnB res = wk.branch_and_bound(q, tl, node_budget, nodes);
            o.nodes[r] = nodes;
            if (res == BnB::kRobust) o.status[r] = 1;
            flipped = res == BnB::kFlipped;
          }
          if (flipped) {
            o.status[r] = -1;
            const size_t at = static_cast<size_t>(b * m + r);
            ftid[at] = tid;
            wk.record_flip(foff[at], flen[at], my_flips[b]);
          }
        }
        wk.end();
      });
    }
    for (int64_t b = 0; b < static_cast<int64_t>(my_flips.size()); ++b)
      thread_flips[b * nt + tid].swap(my_flips[b]);
  }
  guard.rethrow();
  if (bad_row >= 0) return bad_row;
  for (int64_t b = 0; b < nq; ++b) {
    CertifyOut& o = outs[b];
    const int64_t* len = &flen[b * m];
    o.flips_indptr[0] = 0;
    for (int64_t r = 0; r < m; ++r) o.flips_indptr[r + 1] = o.flips_indptr[r] + len[r];
    o.flips_indices.resize(static_cast<size_t>(o.flips_indptr[m]));
    for (int64_t r = 0; r < m; ++r) {
      const std::vector<int64_t>& src = thread_flips[b * nt + ftid[b * m + r]];
      const int64_t off = foff[b * m + r];
      std::copy(src.begin() + off, src.begin() + off + len[r],
                o.flips_indices.begin() + o.flips_indptr[r]);
    }
  }
  return -1;
}

int64_t max_q(const Problem& pr, int64_t q_max, Method method, int64_t node_budget,
              int32_t* out) {
  const Shared sh(pr, q_max);
  int64_t bad_row = -1;
  const bool use_paper = method == Method::kPaper || method == Method::kBest || method == Method::kExact;
  const bool use_joint = method == Method::kJoint || method == Method::kBest || method == Method::kExact;
  const bool use_square = method == Method::kBest || method == Method::kExact;

  OmpGuard guard;
#ifdef ADVREC_OPENMP
#pragma omp parallel
#endif
  {
    std::unique_ptr<Worker> wkp;
    std::vector<double> paper_pre;
    guard.run([&] {
      wkp.reset(new Worker(sh));
      paper_pre.assign(static_cast<size_t>(q_max + 1), 0.0);
    });
#ifdef ADVREC_OPENMP
#pragma omp for schedule(dynamic, 8)
#endif
    for (int64_t r = 0; r < pr.m; ++r) {
      if (!wkp || guard.failed()) continue;
      guard.run([&] {
        Worker& wk = *wkp;
        out[r] = 0;
        wk.begin(r);
        if (q_max == 0) {
          wk.end();
          return;
        }
        if (!wk.load_p()) {
          note_bad_row(bad_row, r);
          wk.end();
          return;
        }
        wk.shared_reset(q_max);
        if (use_paper) {  // one selection serves every q
          wk.ts.reset(q_max);
          wk.ts.push_all(wk.op.data(), nullptr, wk.n);
          wk.ts.prefix(paper_pre.data());
        }
        int64_t best_q = 0;
        for (int64_t q = 1; q <= q_max; ++q) {
          const double tl = wk.tol(q);
          double ob = kInf;
          if (use_paper) ob = paper_pre[q] + sh.pair_pre[wk.sidx][q];
          if (use_joint) ob = std::min(ob, wk.joint_bound_shared(q));
          if (use_square && !wk.clears(ob, tl)) ob = std::min(ob, wk.square_bound_shared(q));
          if (!wk.clears(ob, tl)) {
            if (method != Method::kExact || wk.greedy_shared(q, tl) > 0) break;
            int64_t nodes = 0;
            if (wk.branch_and_bound(q, tl, node_budget, nodes) != BnB::kRobust) break;
          }
          best_q = q;
        }
        out[r] = static_cast<int32_t>(best_q);
        wk.end();
      });
    }
  }
  guard.rethrow();
  return bad_row;
}

}  // namespace fmcert
}  // namespace advrec
