// Block-level selection of the k best entries of a "virtual" array, used by the Gram tables
// (gram_pairs.cu). The same method as topk_block.cuh, generalised over where the values come
// from and over the direction (largest or smallest first):
//
//   radix_select  8-bit-per-pass radix select of the k-th best 32-bit order key;
//   gather        hands every selected position to a callback, with a slot in [0, k): the
//                 entries strictly better than the k-th key in position order, then the
//                 lowest-positioned entries equal to it, in position order;
//   sort_desc     bitonic sort of composite (key, ~position) keys, so ties keep the lower
//                 position first.
//
// "Better" is a larger key; ties go to the lower position. A source provides
//   __device__ bool load(unsigned pos, unsigned& key, bool& is_nan) const
// (true: pos is a candidate with that key; NaN is never a candidate and is reported). Lengths are
// below 2^31, so unsigned positions and `base + blockDim.x` never overflow.
//
// Every function is called by all threads of a 256-thread block with uniform arguments.
#pragma once
#include <cstdint>

namespace advrec {
namespace cuda {
namespace blocksel {

constexpr int kThreads = 256;  // a multiple of 32 with at least one thread per histogram bin
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr unsigned kNoDigit = 0x100u;  // "not counted" digit for __match_any_sync

struct Shared {
  unsigned hist[256];
  unsigned warp_counts[2][kWarps][2];  // double-buffered per-warp (greater, equal) counts
  unsigned sel_bin, sel_above, sel_count, total;
};

// Maps a float to a uint32 whose unsigned order is the float order (-0.0 and +0.0 share a key).
__device__ __forceinline__ unsigned order_key(float v) {
  unsigned b = __float_as_uint(v);
  if ((b & 0x7fffffffu) == 0u) b = 0u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Larger key = selected first: the value itself for "largest", its complement for "smallest".
__device__ __forceinline__ unsigned direction_key(float v, bool smallest) {
  const unsigned k = order_key(v);
  return smallest ? ~k : k;
}

// Higher composite ranks first: higher key, then the lower position. Never 0 for len < 2^32.
__device__ __forceinline__ unsigned long long compose(unsigned key, unsigned pos) {
  return (static_cast<unsigned long long>(key) << 32) | static_cast<unsigned long long>(~pos);
}

__device__ __forceinline__ unsigned composite_pos(unsigned long long c) {
  return ~static_cast<unsigned>(c & 0xffffffffull);
}

// Outcome of radix_select: the selection is every candidate with (key & mask) > prefix
// (n_greater of them) plus the `want` lowest-positioned ones with (key & mask) == prefix.
struct Plan {
  unsigned prefix, mask, want, n_greater;
  __device__ unsigned n_sel() const { return n_greater + want; }
};

// One radix pass: histogram of the digit at `shift` over candidates matching `prefix` on `mask`,
// then warp 0 finds the bin holding the `want`-th best key, counting down from bin 255. Writes
// sh.total and, when total >= want, sh.sel_*.
template <class Src>
__device__ void radix_pass(const Src& src, unsigned len, unsigned shift, unsigned mask,
                           unsigned prefix, unsigned want, Shared& sh, int* nan_flag) {
  const unsigned tid = threadIdx.x, lane = tid & 31u;
  for (unsigned b = tid; b < 256u; b += blockDim.x) sh.hist[b] = 0u;
  __syncthreads();
  bool saw_nan = false;
  for (unsigned base = 0; base < len; base += blockDim.x) {  // uniform trip count
    const unsigned pos = base + tid;
    unsigned key = 0;
    bool is_nan = false;
    const bool c = pos < len && src.load(pos, key, is_nan);
    saw_nan = saw_nan || is_nan;
    const bool in = c && (key & mask) == prefix;
    const unsigned digit = in ? ((key >> shift) & 0xffu) : kNoDigit;
    const unsigned peers = __match_any_sync(kFullMask, digit);
    if (in && lane == static_cast<unsigned>(__ffs(peers) - 1))
      atomicAdd(&sh.hist[digit], static_cast<unsigned>(__popc(peers)));
  }
  if (saw_nan && nan_flag != nullptr) atomicOr(nan_flag, 1);
  __syncthreads();
  if (tid < 32u) {
    // Lane l owns bins 255-8l down to 248-8l; a warp scan finds the lane where `want` falls.
    unsigned local[8];
    unsigned sum = 0;
    for (int i = 0; i < 8; ++i) {
      local[i] = sh.hist[255u - 8u * lane - static_cast<unsigned>(i)];
      sum += local[i];
    }
    unsigned incl = sum;
    for (unsigned off = 1; off < 32u; off <<= 1) {
      const unsigned t = __shfl_up_sync(kFullMask, incl, off);
      if (lane >= off) incl += t;
    }
    const unsigned total = __shfl_sync(kFullMask, incl, 31);
    if (lane == 0) sh.total = total;
    const unsigned excl = incl - sum;
    if (excl < want && want <= incl) {
      unsigned above = excl;
      for (int i = 0; i < 8; ++i) {
        if (above + local[i] >= want) {
          sh.sel_bin = 255u - 8u * lane - static_cast<unsigned>(i);
          sh.sel_above = above;
          sh.sel_count = local[i];
          break;
        }
        above += local[i];
      }
    }
  }
  __syncthreads();
}

// Finds the k (>= 1) best candidates of positions [0, len); fewer when there are fewer.
template <class Src>
__device__ Plan radix_select(const Src& src, unsigned len, unsigned k, Shared& sh,
                             int* nan_flag) {
  unsigned prefix = 0u, mask = 0u, want = k;
  for (int pass = 0; pass < 4; ++pass) {
    const unsigned shift = 24u - 8u * static_cast<unsigned>(pass);
    radix_pass(src, len, shift, mask, prefix, want, sh, nan_flag);
    if (pass == 0 && sh.total <= k) {  // at most k candidates: take them all
      want = sh.total;
      break;
    }
    const unsigned bin = sh.sel_bin, above = sh.sel_above, count = sh.sel_count;
    prefix |= bin << shift;
    mask |= 0xffu << shift;
    want -= above;
    if (count == want) break;  // the whole bin is taken: no need to split it further
  }
  Plan p;
  p.prefix = prefix;
  p.mask = mask;
  p.want = want;
  p.n_greater = (mask == 0u) ? 0u : k - want;
  return p;
}

// Calls emit(slot, pos, key) once per selected position (slots 0 .. n_sel-1, see the top of the
// file). Ballots give every thread its slot, so kept ties are the lowest-positioned ones. The
// caller synchronises before reading what emit wrote.
template <class Src, class Emit>
__device__ void gather(const Src& src, unsigned len, const Plan& p, Shared& sh, Emit emit) {
  const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
  const unsigned nwarps = blockDim.x >> 5;
  const unsigned lane_lt = (1u << lane) - 1u;
  unsigned seen_greater = 0u, seen_equal = 0u;
  int buf = 0;
  for (unsigned base = 0; base < len; base += blockDim.x) {
    if (seen_greater >= p.n_greater && seen_equal >= p.want) break;  // uniform
    const unsigned pos = base + tid;
    unsigned key = 0;
    bool is_nan = false;
    const bool c = pos < len && src.load(pos, key, is_nan);
    const bool gt = c && (key & p.mask) > p.prefix;
    const bool eq = c && (key & p.mask) == p.prefix;
    const unsigned bg = __ballot_sync(kFullMask, gt), be = __ballot_sync(kFullMask, eq);
    if (lane == 0) {
      sh.warp_counts[buf][warp][0] = static_cast<unsigned>(__popc(bg));
      sh.warp_counts[buf][warp][1] = static_cast<unsigned>(__popc(be));
    }
    __syncthreads();
    unsigned pre_g = 0, pre_e = 0, tot_g = 0, tot_e = 0;
    for (unsigned w = 0; w < nwarps; ++w) {
      const unsigned a = sh.warp_counts[buf][w][0], b = sh.warp_counts[buf][w][1];
      if (w < warp) {
        pre_g += a;
        pre_e += b;
      }
      tot_g += a;
      tot_e += b;
    }
    if (gt) {
      const unsigned slot = seen_greater + pre_g + static_cast<unsigned>(__popc(bg & lane_lt));
      if (slot < p.n_greater) emit(slot, pos, key);
    }
    if (eq) {
      const unsigned r = seen_equal + pre_e + static_cast<unsigned>(__popc(be & lane_lt));
      if (r < p.want) emit(p.n_greater + r, pos, key);
    }
    seen_greater += tot_g;
    seen_equal += tot_e;
    buf ^= 1;
  }
}

// Sorts keys[0, n) descending; `keys` (shared or global memory of this block) holds at least
// the power of two >= n entries. Padding entries are 0, below every composite. Ends synchronised.
__device__ inline void sort_desc(unsigned long long* keys, unsigned n) {
  const unsigned tid = threadIdx.x;
  unsigned sort_n = 1u;
  while (sort_n < n) sort_n <<= 1;
  for (unsigned i = n + tid; i < sort_n; i += blockDim.x) keys[i] = 0ull;
  __syncthreads();
  if (n <= 1u) return;
  for (unsigned size = 2; size <= sort_n; size <<= 1) {
    for (unsigned stride = size >> 1; stride > 0; stride >>= 1) {
      for (unsigned t = tid; t < sort_n / 2u; t += blockDim.x) {
        const unsigned lo = 2u * t - (t & (stride - 1u));
        const unsigned hi = lo + stride;
        const bool descending = (lo & size) == 0u;
        const unsigned long long a = keys[lo], b = keys[hi];
        if (descending ? (a < b) : (a > b)) {
          keys[lo] = b;
          keys[hi] = a;
        }
      }
      __syncthreads();
    }
  }
}

// Selects the k (>= 1) best candidates and leaves them, best first, as composites in keys[0, n)
// where n (returned) = min(k, candidates).
template <class Src>
__device__ unsigned select_sorted(const Src& src, unsigned len, unsigned k,
                                  unsigned long long* keys, Shared& sh, int* nan_flag) {
  const Plan p = radix_select(src, len, k, sh, nan_flag);
  gather(src, len, p, sh,
         [keys](unsigned slot, unsigned pos, unsigned key) { keys[slot] = compose(key, pos); });
  const unsigned n = p.n_sel();
  sort_desc(keys, n);  // its first barrier orders the gather's writes before the sort
  return n;
}

}  // namespace blocksel
}  // namespace cuda
}  // namespace advrec
