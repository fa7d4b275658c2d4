// Extreme entries of a Gram matrix, merged tile by tile (CPU, OpenMP).
//
// Almost every entry of a tile fails a cheap float threshold test, so the scans are blocks of
// vectorisable comparisons; only entries that reach a threshold do exact (double, tie-aware)
// work. Two passes over the tile, each parallel and write-disjoint:
//   1. over tile rows i: pair candidates into thread-local buffers, row i's lists (partner j),
//      and the NaN check of the whole tile (a NaN puts back the rows written and stops);
//   2. over chunks of tile columns j: row j's lists (partner i). Rows of pass 1 and columns of
//      pass 2 may name the same row of G, hence the barrier between them.
// Thread-local pair buffers are merged at the end under a total order, so the result is the same
// for any number of threads.
#include "select/pairs.h"

#include "omp_guard.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.h"

#ifdef ADVREC_OPENMP
#include <omp.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

namespace advrec {

namespace {

constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr int kBlock = 32;  // entries per vectorised threshold test (bits of a uint32 mask)
constexpr int64_t kColChunk = 256;     // tile columns per task of pass 2
constexpr int64_t kRowKthMin = 64;     // shorter rows skip the pre-pass of pass 1
constexpr int64_t kParallelMin = 1 << 15;  // smaller tiles run on one thread

int thread_count() {
#ifdef ADVREC_OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

int thread_id() {
#ifdef ADVREC_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Largest float <= d and smallest float >= d: a float filter built from a double threshold must
// never reject an entry the exact test would accept.
inline float float_below(double d) {
  float f = static_cast<float>(d);
  if (static_cast<double>(f) > d) f = std::nextafter(f, -kInfF);
  return f;
}
inline float float_above(double d) {
  float f = static_cast<float>(d);
  if (static_cast<double>(f) < d) f = std::nextafter(f, kInfF);
  return f;
}

// Candidate (v, p) ranks before list slot (w, q) of a top (Top) or bottom list; a padding slot
// (q < 0) ranks after everything.
template <bool Top>
inline bool row_before(double v, int64_t p, double w, int64_t q) {
  if (q < 0) return true;
  if (v != w) return Top ? v > w : v < w;
  return p < q;
}

// Inserts (v, p) into a sorted list of t slots when it ranks before the last one.
template <bool Top>
inline bool row_insert(double* val, int64_t* idx, int64_t t, double v, int64_t p) {
  int64_t s = t;
  while (s > 0 && row_before<Top>(v, p, val[s - 1], idx[s - 1])) --s;
  if (s == t) return false;
  for (int64_t q = t - 1; q > s; --q) {
    val[q] = val[q - 1];
    idx[q] = idx[q - 1];
  }
  val[s] = v;
  idx[s] = p;
  return true;
}

// Float filter of a row list: a top list admits only v >= the threshold, a bottom list only
// v <= it. An empty list (t = 0) admits nothing but infinities, which the exact test rejects.
template <bool Top>
inline float row_threshold(const double* val, const int64_t* idx, int64_t t) {
  if (t == 0) return Top ? kInfF : -kInfF;
  if (idx[t - 1] < 0) return Top ? -kInfF : kInfF;
  return Top ? float_below(val[t - 1]) : float_above(val[t - 1]);
}

struct PairCand {
  double val;
  int64_t i, j;
};

template <bool Top>
inline bool pair_before(const PairCand& a, const PairCand& b) {
  if (a.val != b.val) return Top ? a.val > b.val : a.val < b.val;
  return a.i < b.i || (a.i == b.i && a.j < b.j);
}

// A thread's pair candidates: a buffer of about 2m entries that, when full, is cut back to its
// m best (nth_element) while the threshold rises to the m-th best value. Amortised O(1) per kept
// entry even on adversarial orders; ties at the threshold are kept and settled by the merge.
template <bool Top>
struct PairSelect {
  int64_t m = 0;
  size_t cap = 0;
  float thr = Top ? kInfF : -kInfF;
  std::vector<PairCand> buf;

  void init(int64_t m_, const double* val, const int64_t* idx) {
    m = m_;
    cap = static_cast<size_t>(2 * m + 16);
    buf.clear();
    if (m == 0) return;  // thr stays +-inf: only infinities pass the filter, and offer drops them
    buf.reserve(cap);
    thr = idx[2 * (m - 1)] < 0 ? (Top ? -kInfF : kInfF)
                               : (Top ? float_below(val[m - 1]) : float_above(val[m - 1]));
  }
  inline bool admits(float v) const { return Top ? v >= thr : v <= thr; }
  void offer(float v, int64_t i, int64_t j) {
    if (m == 0 || !admits(v)) return;
    buf.push_back(PairCand{v, i, j});
    if (buf.size() == cap) {
      std::nth_element(buf.begin(), buf.begin() + (m - 1), buf.end(), pair_before<Top>);
      buf.resize(static_cast<size_t>(m));
      thr = static_cast<float>(buf[m - 1].val);  // exact: candidates are tile floats
    }
  }
};

// Merges the state's list with every thread's candidates and writes the m best back, padded.
// The state is already in order: only the candidates are sorted, then the two runs are merged.
template <bool Top>
void merge_pairs(double* val, int64_t* idx, int64_t m, const std::vector<PairSelect<Top>>& sel) {
  std::vector<PairCand> cand;
  for (const auto& ps : sel) cand.insert(cand.end(), ps.buf.begin(), ps.buf.end());
  if (cand.empty()) return;
  if (static_cast<int64_t>(cand.size()) > m) {
    std::nth_element(cand.begin(), cand.begin() + (m - 1), cand.end(), pair_before<Top>);
    cand.resize(static_cast<size_t>(m));
  }
  std::sort(cand.begin(), cand.end(), pair_before<Top>);
  std::vector<PairCand> old;
  for (int64_t s = 0; s < m && idx[2 * s] >= 0; ++s)
    old.push_back(PairCand{val[s], idx[2 * s], idx[2 * s + 1]});
  std::vector<PairCand> all(old.size() + cand.size());
  std::merge(old.begin(), old.end(), cand.begin(), cand.end(), all.begin(), pair_before<Top>);
  const double pad = Top ? -std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::infinity();
  for (int64_t s = 0; s < m; ++s) {
    const bool real = s < static_cast<int64_t>(all.size());
    val[s] = real ? all[s].val : pad;
    idx[2 * s] = real ? all[s].i : -1;
    idx[2 * s + 1] = real ? all[s].j : -1;
  }
}

// Bit b of the mask is set when x[b] reaches a filter (x[b] >= up or x[b] <= dn) or is NaN (the
// tests are !(x < up) and !(x > dn), so a NaN is seen by the scan that reads it anyway). Most
// blocks set no bit: they cost one vectorised OR of comparisons; only the others build the
// mask, which is then walked bit by bit, so an entry that fails both filters never reaches
// scalar code.
inline uint32_t block_mask(const float* x, float up, float dn) {
  uint32_t mask = 0;
#if defined(__SSE2__)
  const __m128 u = _mm_set1_ps(up), d = _mm_set1_ps(dn);
  __m128 hit[kBlock / 4];
  __m128 any = _mm_setzero_ps();
  for (int b = 0; b < kBlock / 4; ++b) {
    const __m128 v = _mm_loadu_ps(x + 4 * b);
    hit[b] = _mm_or_ps(_mm_cmpnlt_ps(v, u), _mm_cmpngt_ps(v, d));
    any = _mm_or_ps(any, hit[b]);
  }
  if (_mm_movemask_ps(any) == 0) return 0;
  for (int b = 0; b < kBlock / 4; ++b)
    mask |= static_cast<uint32_t>(_mm_movemask_ps(hit[b])) << (4 * b);
#else
  for (int b = 0; b < kBlock; ++b)
    mask |= static_cast<uint32_t>(!(x[b] < up) | !(x[b] > dn)) << b;
#endif
  return mask;
}
// The same with one filter per entry (pass 2: each column is its own row of G).
inline uint32_t block_mask(const float* x, const float* up, const float* dn) {
  uint32_t mask = 0;
#if defined(__SSE2__)
  __m128 hit[kBlock / 4];
  __m128 any = _mm_setzero_ps();
  for (int b = 0; b < kBlock / 4; ++b) {
    const __m128 v = _mm_loadu_ps(x + 4 * b);
    hit[b] = _mm_or_ps(_mm_cmpnlt_ps(v, _mm_loadu_ps(up + 4 * b)),
                       _mm_cmpngt_ps(v, _mm_loadu_ps(dn + 4 * b)));
    any = _mm_or_ps(any, hit[b]);
  }
  if (_mm_movemask_ps(any) == 0) return 0;
  for (int b = 0; b < kBlock / 4; ++b)
    mask |= static_cast<uint32_t>(_mm_movemask_ps(hit[b])) << (4 * b);
#else
  for (int b = 0; b < kBlock; ++b)
    mask |= static_cast<uint32_t>(!(x[b] < up[b]) | !(x[b] > dn[b])) << b;
#endif
  return mask;
}

inline int lowest_bit(uint32_t x) {
#if defined(_MSC_VER) && !defined(__clang__)
  unsigned long i;
  _BitScanForward(&i, x);
  return static_cast<int>(i);
#else
  return __builtin_ctz(x);
#endif
}

#if defined(__SSE2__)
// Writes a lower bound on the t-th largest and an upper bound on the t-th smallest value of
// x[0, len) (repeats counted; t <= 4D <= len). Each of 4 lanes keeps its D largest and D smallest
// with a branchless max/min insertion network. The lanes' 4D largest are values of the row, so
// their t-th largest is <= the row's (equal when D >= t: the row's t largest are among them).
// Knowing that bound up front, the scan of pass 1 hands about t entries per list to the exact
// code instead of the t (1 + ln(len / t)) records of a running selection.
template <int D>
void row_kth(const float* x, int64_t len, int64_t t, float& kth_top, float& kth_bot) {
  __m128 hi[D], lo[D];
  for (int k = 0; k < D; ++k) {
    hi[k] = _mm_set1_ps(-kInfF);
    lo[k] = _mm_set1_ps(kInfF);
  }
  int64_t q = 0;
  for (; q + 4 <= len; q += 4) {
    __m128 v = _mm_loadu_ps(x + q), w = v;
    for (int k = 0; k < D; ++k) {
      const __m128 h = _mm_max_ps(hi[k], v), l = _mm_min_ps(lo[k], w);
      v = _mm_min_ps(hi[k], v);
      w = _mm_max_ps(lo[k], w);
      hi[k] = h;
      lo[k] = l;
    }
  }
  float top[4 * D + 4], bot[4 * D + 4];  // lane candidates, then the tail (< 4 entries)
  for (int k = 0; k < D; ++k) {
    _mm_storeu_ps(top + 4 * k, hi[k]);
    _mm_storeu_ps(bot + 4 * k, lo[k]);
  }
  int64_t n_cand = 4 * D;
  for (; q < len; ++q, ++n_cand) top[n_cand] = bot[n_cand] = x[q];
  std::nth_element(top, top + (t - 1), top + n_cand, [](float a, float b) { return a > b; });
  std::nth_element(bot, bot + (t - 1), bot + n_cand);
  kth_top = top[t - 1];
  kth_bot = bot[t - 1];
}

// Depth min(t, 4) covers t <= 16; false for longer lists (they use the running selection alone).
bool row_kth(const float* x, int64_t len, int64_t t, float& kth_top, float& kth_bot) {
  switch (t) {
    case 1: row_kth<1>(x, len, t, kth_top, kth_bot); return true;
    case 2: row_kth<2>(x, len, t, kth_top, kth_bot); return true;
    case 3: row_kth<3>(x, len, t, kth_top, kth_bot); return true;
    default:
      if (t > 16) return false;
      row_kth<4>(x, len, t, kth_top, kth_bot);
      return true;
  }
}
#else
bool row_kth(const float*, int64_t, int64_t, float&, float&) { return false; }
#endif

// Calls visit(x), in increasing x, for every x in [x0, w) whose block mask bit is set (visit
// re-tests the filters, which may have tightened since the mask was built). mask_at(base) is the
// mask of [base, base + kBlock) and is only asked for 0 <= base <= w - kBlock: a ragged end is
// scanned as the last whole block with the entries already seen masked off.
template <class MaskAt, class Visit>
inline void scan_range(int64_t x0, int64_t w, MaskAt mask_at, Visit visit) {
  int64_t x = x0;
  for (; x + kBlock <= w; x += kBlock)
    for (uint32_t mask = mask_at(x); mask != 0; mask &= mask - 1) visit(x + lowest_bit(mask));
  if (x >= w) return;
  if (w >= kBlock) {
    const int64_t base = w - kBlock;  // base < x < w, so the shift is in [1, kBlock)
    for (uint32_t mask = mask_at(base) & (~0u << (x - base)); mask != 0; mask &= mask - 1)
      visit(base + lowest_bit(mask));
  } else {
    for (; x < w; ++x) visit(x);
  }
}

bool has_nan(const float* p, int64_t len) {
  int64_t q = 0;
#if defined(__SSE2__)
  __m128 acc0 = _mm_setzero_ps(), acc1 = _mm_setzero_ps();
  for (; q + 8 <= len; q += 8) {
    const __m128 v0 = _mm_loadu_ps(p + q), v1 = _mm_loadu_ps(p + q + 4);
    acc0 = _mm_or_ps(acc0, _mm_cmpunord_ps(v0, v0));
    acc1 = _mm_or_ps(acc1, _mm_cmpunord_ps(v1, v1));
  }
  int bad = _mm_movemask_ps(_mm_or_ps(acc0, acc1));
#else
  int bad = 0;
#endif
  for (; q < len; ++q) bad |= (p[q] != p[q]);
  return bad != 0;
}

bool tile_has_nan(const float* tile, int64_t r, int64_t c, bool parallel) {
  int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static) if (parallel)
  for (int64_t a = 0; a < r; ++a) bad |= has_nan(tile + a * c, c) ? 1 : 0;
  return bad != 0;
}

}  // namespace

bool gram_extremes_update_cpu(const float* tile, int64_t r, int64_t c, int64_t row0, int64_t col0,
                              const GramState& s) {
  if (r <= 0 || c <= 0) return true;
  const bool parallel = r * c >= kParallelMin;
  const int64_t m = s.m, t = s.t;
  if (m == 0 && t == 0) return !tile_has_nan(tile, r, c, parallel);

  // Pass 1 finds NaNs as it reads the tile, but writes the lists of the tile's rows before it
  // has seen all of it: keep those rows to put back. Pair lists and pass 2 wait for its verdict.
  const int64_t n_rows1 = std::max<int64_t>(0, std::min(r, col0 + c - row0));  // rows with j >= i
  const size_t n_keep = static_cast<size_t>(n_rows1 * t);
  double* const keep_dst_val[2] = {s.row_top_val + row0 * t, s.row_bot_val + row0 * t};
  int64_t* const keep_dst_idx[2] = {s.row_top_idx + row0 * t, s.row_bot_idx + row0 * t};
  std::vector<double> keep_val[2];
  std::vector<int64_t> keep_idx[2];
  for (int l = 0; l < 2; ++l) {
    keep_val[l].assign(keep_dst_val[l], keep_dst_val[l] + n_keep);
    keep_idx[l].assign(keep_dst_idx[l], keep_dst_idx[l] + n_keep);
  }
  int nan_found = 0;

  std::vector<PairSelect<true>> tops;  // one per thread, merged after the parallel region
  std::vector<PairSelect<false>> bots;
  // Rows of a tile hold different numbers of upper-triangle entries: hand out a few at a time.
  const int64_t row_chunk = std::max<int64_t>(1, 4096 / c);
  // Pass 2 covers tile columns j that have some tile row i < j.
  const int64_t jb0 = std::max<int64_t>(row0 + 1 - col0, 0);
  const int64_t n_col_chunks = (t > 0 && jb0 < c) ? (c - jb0 + kColChunk - 1) / kColChunk : 0;

  OmpGuard guard;  // allocations inside the region: an exception is rethrown after it
#pragma omp parallel if (parallel)
  {
#pragma omp single
    guard.run([&] {
      tops.resize(static_cast<size_t>(thread_count()));
      bots.resize(tops.size());
    });  // implicit barrier: the vectors are sized before any thread takes its slot
    PairSelect<true>* top_slot = nullptr;
    PairSelect<false>* bot_slot = nullptr;
    if (!guard.failed())
      guard.run([&] {
        top_slot = &tops[static_cast<size_t>(thread_id())];
        bot_slot = &bots[static_cast<size_t>(thread_id())];
        top_slot->init(m, s.pair_top_val, s.pair_top_idx);
        bot_slot->init(m, s.pair_bot_val, s.pair_bot_idx);
      });
    const bool ready = top_slot && bot_slot && !guard.failed();

    // Pass 1: tile row a is G row i; entries j >= i. The ignored entries j < i are only checked
    // for NaN; the others are checked by the scan.
    bool my_nan = false;
#pragma omp for schedule(dynamic, row_chunk) nowait
    for (int64_t a = 0; a < r; ++a) {
      if (!ready || guard.failed()) continue;
      guard.run([&] {
        PairSelect<true>& ptop = *top_slot;
        PairSelect<false>& pbot = *bot_slot;
        const int64_t i = row0 + a;
        const float* tr = tile + a * c;
        int64_t q = std::max<int64_t>(i - col0, 0);
        if (has_nan(tr, std::min(q, c))) my_nan = true;
        if (q >= c || my_nan) return;
        if (col0 + q == i) {  // the diagonal entry: a pair (i, i), not a row partner
          if (tr[q] != tr[q]) {
            my_nan = true;
            return;
          }
          ptop.offer(tr[q], i, i);
          pbot.offer(tr[q], i, i);
          ++q;
        }
        double* rtv = s.row_top_val + i * t;
        int64_t* rti = s.row_top_idx + i * t;
        double* rbv = s.row_bot_val + i * t;
        int64_t* rbi = s.row_bot_idx + i * t;
        float rup = row_threshold<true>(rtv, rti, t), rdn = row_threshold<false>(rbv, rbi, t);
        // The row's t-th extremes within this tile bound what its final lists can hold.
        float kth_top = -kInfF, kth_bot = kInfF;
        if (t > 0 && c - q >= kRowKthMin && row_kth(tr + q, c - q, t, kth_top, kth_bot)) {
          rup = std::max(rup, kth_top);
          rdn = std::min(rdn, kth_bot);
        }
        float up = std::min(rup, ptop.thr), dn = std::max(rdn, pbot.thr);
        auto exact = [&](int64_t qq) {
          const float v = tr[qq];
          const int64_t j = col0 + qq;
          ptop.offer(v, i, j);
          pbot.offer(v, i, j);
          if (t > 0) {
            if (v >= rup && row_insert<true>(rtv, rti, t, v, j))
              rup = std::max(row_threshold<true>(rtv, rti, t), kth_top);
            if (v <= rdn && row_insert<false>(rbv, rbi, t, v, j))
              rdn = std::min(row_threshold<false>(rbv, rbi, t), kth_bot);
          }
          up = std::min(rup, ptop.thr);
          dn = std::max(rdn, pbot.thr);
        };
        scan_range(
            q, c, [&](int64_t base) { return block_mask(tr + base, up, dn); },
            [&](int64_t qq) {
              if (tr[qq] >= up || tr[qq] <= dn) exact(qq);  // the filters may have tightened
              else if (tr[qq] != tr[qq]) my_nan = true;
            });
      });
    }
    if (my_nan) {
#pragma omp atomic write
      nan_found = 1;
    }
#pragma omp barrier
    // Pass 2 may write rows that pass 1 wrote, hence the barrier; it is skipped after a NaN.
    int skip_pass2;
#pragma omp atomic read
    skip_pass2 = nan_found;

    // Pass 2: tile column q is G row j; partners are the tile rows i < j. up/dn hold the float
    // filters of the chunk's rows, indexed by q - lo.
    std::vector<float> up, dn;
    bool ready2 = false;
    guard.run([&] {
      up.resize(kColChunk);
      dn.resize(kColChunk);
      ready2 = true;
    });
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < (skip_pass2 ? 0 : n_col_chunks); ++ch) {
      if (!ready2 || guard.failed()) continue;
      guard.run([&] {
        const int64_t lo = jb0 + ch * kColChunk, hi = std::min(lo + kColChunk, c);
        for (int64_t q = lo; q < hi; ++q) {
          const int64_t j = col0 + q;
          up[q - lo] = row_threshold<true>(s.row_top_val + j * t, s.row_top_idx + j * t, t);
          dn[q - lo] = row_threshold<false>(s.row_bot_val + j * t, s.row_bot_idx + j * t, t);
        }
        const float* u = up.data();
        const float* d = dn.data();
        const int64_t a_end = std::min(r, col0 + hi - 1 - row0);  // rows i < the chunk's last j
        for (int64_t a = 0; a < a_end; ++a) {
          const int64_t i = row0 + a;
          const float* tr = tile + a * c + lo;  // tr[x] is tile column lo + x
          const int64_t w = hi - lo;
          auto exact = [&](int64_t x) {
            const float v = tr[x];
            const int64_t j = col0 + lo + x;
            double* tv = s.row_top_val + j * t;
            int64_t* ti = s.row_top_idx + j * t;
            double* bv = s.row_bot_val + j * t;
            int64_t* bi = s.row_bot_idx + j * t;
            if (v >= up[x] && row_insert<true>(tv, ti, t, v, i)) up[x] = row_threshold<true>(tv, ti, t);
            if (v <= dn[x] && row_insert<false>(bv, bi, t, v, i)) dn[x] = row_threshold<false>(bv, bi, t);
          };
          scan_range(
              std::max<int64_t>(0, i + 1 - col0 - lo), w,
              [&](int64_t base) { return block_mask(tr + base, u + base, d + base); },
              [&](int64_t x) {
                if (tr[x] >= u[x] || tr[x] <= d[x]) exact(x);
              });
        }
      });
    }
  }
  guard.rethrow();

  if (nan_found) {
    for (int l = 0; l < 2; ++l) {
      std::copy(keep_val[l].begin(), keep_val[l].end(), keep_dst_val[l]);
      std::copy(keep_idx[l].begin(), keep_idx[l].end(), keep_dst_idx[l]);
    }
    return false;
  }
  if (m > 0) {
    merge_pairs<true>(s.pair_top_val, s.pair_top_idx, m, tops);
    merge_pairs<false>(s.pair_bot_val, s.pair_bot_idx, m, bots);
  }
  return true;
}

}  // namespace advrec
