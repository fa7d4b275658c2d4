// Serving top-k (serve_topk.h). Per row and block: a starting threshold (the row's running k-th
// best; for a row's first block, the k-th largest maximum of its 64-item chunks that hold no
// excluded item, a lower bound of the k-th best candidate: those chunks each hold a distinct
// candidate at least that high), then one vector scan that stops only at scores reaching the
// threshold; those are checked against the row's sorted exclusion list and kept in a buffer of
// 2k + 8 entries that is cut back to k (nth_element) when full, raising the threshold. A row
// whose block yields no candidate is not touched. The vector loops are compiled for the
// baseline ISA, AVX2 and AVX-512F and chosen once at run time; the tile is read once or twice,
// straight after the GEMM wrote it.
#include "serve/serve_topk.h"

#include "omp_guard.h"
#include "simd.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#ifdef ADVREC_OPENMP
#include <omp.h>
#endif

namespace advrec {

namespace {

struct Cand {
  float val;
  int64_t idx;
};

inline bool before(const Cand& a, const Cand& b) {
  return a.val > b.val || (a.val == b.val && a.idx < b.idx);
}

constexpr int64_t kChunk = 64;  // warm-up chunk (items)

inline int lowest_bit(uint32_t bits) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctz(bits);
#else
  int b = 0;
  while (!(bits & 1u)) bits >>= 1, ++b;
  return b;
#endif
}

// next_reaching: the first j in [from, n) with s[j] >= thr or NaN (a NaN must reach the NaN
// check), or n. chunk_maxima: the maximum of each full 64-item chunk of s[0, n), NaN ignored.
// Plain versions first (any CPU), then the x86 vector versions.
int64_t next_reaching_plain(const float* s, int64_t from, int64_t n, float thr) {
  for (int64_t j = from; j < n; ++j)
    if (!(s[j] < thr)) return j;
  return n;
}

#define ADVREC_CHUNK_MAXIMA_BODY                                             \
  const int64_t n_chunks = n / kChunk;                                       \
  for (int64_t c = 0; c < n_chunks; ++c) {                                   \
    const float* v = s + c * kChunk;                                         \
    float lane[16];                                                          \
    for (int l = 0; l < 16; ++l) lane[l] = v[l] > v[l + 16] ? v[l] : v[l + 16]; \
    for (int l = 0; l < 16; ++l) lane[l] = v[l + 32] > lane[l] ? v[l + 32] : lane[l]; \
    for (int l = 0; l < 16; ++l) lane[l] = v[l + 48] > lane[l] ? v[l + 48] : lane[l]; \
    float m = -std::numeric_limits<float>::infinity();                       \
    for (int l = 0; l < 16; ++l) m = lane[l] > m ? lane[l] : m;              \
    out[c] = m;                                                              \
  }

// A NaN may win a lane (a > b is false against it) but never `m` (lane > m is false), so each
// chunk maximum is the score of one of the chunk's items or -inf; the NaN itself is found by
// the scan (its compare is unordered, so it reaches any threshold).
void chunk_maxima_plain(const float* s, int64_t n, float* out) { ADVREC_CHUNK_MAXIMA_BODY }

#ifdef ADVREC_X86_DISPATCH
__attribute__((target("avx2"))) void chunk_maxima_avx2(const float* s, int64_t n, float* out) {
  ADVREC_CHUNK_MAXIMA_BODY
}
__attribute__((target("avx512f"))) void chunk_maxima_avx512(const float* s, int64_t n, float* out) {
  ADVREC_CHUNK_MAXIMA_BODY
}

int64_t next_reaching_sse(const float* s, int64_t from, int64_t n, float thr) {
  int64_t j = from;
  const __m128 t = _mm_set1_ps(thr);
  for (; j + 16 <= n; j += 16) {
    const int bits = _mm_movemask_ps(_mm_cmpnlt_ps(_mm_loadu_ps(s + j), t)) |
                     (_mm_movemask_ps(_mm_cmpnlt_ps(_mm_loadu_ps(s + j + 4), t)) << 4) |
                     (_mm_movemask_ps(_mm_cmpnlt_ps(_mm_loadu_ps(s + j + 8), t)) << 8) |
                     (_mm_movemask_ps(_mm_cmpnlt_ps(_mm_loadu_ps(s + j + 12), t)) << 12);
    if (bits) return j + lowest_bit(static_cast<uint32_t>(bits));
  }
  return next_reaching_plain(s, j, n, thr);
}

#define ADVREC_NLT(v) _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(v), t, _CMP_NLT_UQ))
__attribute__((target("avx2"))) int64_t next_reaching_avx2(const float* s, int64_t from, int64_t n,
                                                            float thr) {
  int64_t j = from;
  const __m256 t = _mm256_set1_ps(thr);
  for (; j + 32 <= n; j += 32) {
    const uint32_t bits = static_cast<uint32_t>(ADVREC_NLT(s + j)) |
                          (static_cast<uint32_t>(ADVREC_NLT(s + j + 8)) << 8) |
                          (static_cast<uint32_t>(ADVREC_NLT(s + j + 16)) << 16) |
                          (static_cast<uint32_t>(ADVREC_NLT(s + j + 24)) << 24);
    if (bits) return j + lowest_bit(bits);
  }
  return next_reaching_plain(s, j, n, thr);
}
#undef ADVREC_NLT

#define ADVREC_NLT16(v) static_cast<uint32_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(v), t, _CMP_NLT_UQ))
__attribute__((target("avx512f"))) int64_t next_reaching_avx512(const float* s, int64_t from,
                                                                 int64_t n, float thr) {
  int64_t j = from;
  const __m512 t = _mm512_set1_ps(thr);
  for (; j + 64 <= n; j += 64) {
    const uint32_t lo = ADVREC_NLT16(s + j) | (ADVREC_NLT16(s + j + 16) << 16);
    const uint32_t hi = ADVREC_NLT16(s + j + 32) | (ADVREC_NLT16(s + j + 48) << 16);
    if (lo) return j + lowest_bit(lo);
    if (hi) return j + 32 + lowest_bit(hi);
  }
  return next_reaching_plain(s, j, n, thr);
}
#undef ADVREC_NLT16
#endif
#undef ADVREC_CHUNK_MAXIMA_BODY

struct Isa {
  int64_t (*next_reaching)(const float*, int64_t, int64_t, float);
  void (*chunk_maxima)(const float*, int64_t, float*);
};

Isa pick_isa() {
#ifdef ADVREC_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return {next_reaching_avx512, chunk_maxima_avx512};
  if (__builtin_cpu_supports("avx2")) return {next_reaching_avx2, chunk_maxima_avx2};
  return {next_reaching_sse, chunk_maxima_plain};
#else
  return {next_reaching_plain, chunk_maxima_plain};
#endif
}

const Isa& isa() {
  static const Isa chosen = pick_isa();
  return chosen;
}

// Whether item j is in the sorted list [lo, hi).
inline bool excluded(const int64_t* lo, const int64_t* hi, int64_t j) {
  return lo != hi && std::binary_search(lo, hi, j);
}

// The k-th largest maximum of the 64-item chunks of s[0, n) (items col0 + ...) that hold no
// excluded item, or -inf when fewer than k such chunks (or fewer than 2k chunks: no gain).
float warm_threshold(const float* s, int64_t n, int64_t col0, int64_t k, const int64_t* ex_lo,
                     const int64_t* ex_hi, std::vector<float>& maxima) {
  const float lowest = -std::numeric_limits<float>::infinity();
  const int64_t n_chunks = n / kChunk;
  if (n_chunks < 2 * k) return lowest;
  maxima.resize(static_cast<size_t>(n_chunks));
  isa().chunk_maxima(s, n, maxima.data());
  for (const int64_t* e = std::lower_bound(ex_lo, ex_hi, col0); e != ex_hi; ++e) {
    const int64_t c = (*e - col0) / kChunk;
    if (c >= n_chunks) break;
    maxima[static_cast<size_t>(c)] = lowest;
  }
  std::nth_element(maxima.begin(), maxima.begin() + (k - 1), maxima.end(), std::greater<float>());
  return maxima[static_cast<size_t>(k - 1)];  // -inf when fewer than k clean chunks
}

bool merge_row(const float* s, int64_t cols, int64_t col0, int64_t k_out, const int64_t* ex_lo,
               const int64_t* ex_hi, std::vector<Cand>& buf, std::vector<float>& maxima,
               int64_t* best_idx, float* best_val) {
  const int64_t k = std::min(k_out, col0 + cols);  // items seen so far bound the list
  const size_t cap = static_cast<size_t>(2 * k + 8);
  bool finite = true;
  buf.clear();
  for (int64_t t = 0; t < k_out && best_idx[t] >= 0; ++t) buf.push_back(Cand{best_val[t], best_idx[t]});
  const size_t held = buf.size();
  float thr;
  if (static_cast<int64_t>(held) >= k) thr = best_val[k - 1];
  else if (held == 0) thr = warm_threshold(s, cols, col0, k, ex_lo, ex_hi, maxima);
  else thr = -std::numeric_limits<float>::infinity();
  bool changed = false;
  auto cut = [&]() {
    std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end(), before);
    buf.resize(static_cast<size_t>(k));
    thr = buf[0].val;
    for (int64_t t = 1; t < k; ++t) thr = std::min(thr, buf[t].val);
  };
  const auto next_reaching = isa().next_reaching;
  int64_t j = 0;
  while ((j = next_reaching(s, j, cols, thr)) < cols) {
    const float v = s[j];
    const int64_t item = col0 + j++;
    if (excluded(ex_lo, ex_hi, item)) continue;
    if (v != v) {
      finite = false;
      continue;
    }
    buf.push_back(Cand{v, item});
    changed = true;
    if (buf.size() >= cap) cut();
  }
  if (!changed) return finite;
  if (static_cast<int64_t>(buf.size()) > k) cut();
  std::sort(buf.begin(), buf.end(), before);
  const int64_t m = static_cast<int64_t>(buf.size());
  for (int64_t t = 0; t < k_out; ++t) {
    best_idx[t] = t < m ? buf[t].idx : -1;
    best_val[t] = t < m ? buf[t].val : -std::numeric_limits<float>::infinity();
  }
  return finite;
}

}  // namespace

bool serve_topk_merge_cpu(const float* scores, int64_t rows, int64_t cols, int64_t col0, int64_t k,
                          const int64_t* users, const int64_t* excl_indptr,
                          const int64_t* excl_indices, int threads, int64_t* best_idx,
                          float* best_val) {
  if (rows == 0 || k == 0 || cols == 0) return true;
  bool ok = true;
  OmpGuard guard;
  const int nt = threads > 1 ? threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(&& : ok)
  {
    std::vector<Cand> buf;
    std::vector<float> maxima;
    bool ready = false;
    guard.run([&] {
      buf.reserve(static_cast<size_t>(2 * k + 8 + k));
      maxima.reserve(static_cast<size_t>(cols / kChunk + 1));
      ready = true;
    });
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      if (!ready || guard.failed()) continue;
      guard.run([&] {
        const int64_t* lo = nullptr;
        const int64_t* hi = nullptr;
        if (excl_indptr) {
          const int64_t u = users[r];
          lo = excl_indices + excl_indptr[u];
          hi = excl_indices + excl_indptr[u + 1];
        }
        ok = merge_row(scores + r * cols, cols, col0, k, lo, hi, buf, maxima, best_idx + r * k,
                       best_val + r * k) && ok;
      });
    }
  }
  guard.rethrow();
  return ok;
}

}  // namespace advrec
