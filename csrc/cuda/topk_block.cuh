// Device side of the CUDA masked top-k: one thread block selects the k best items of one row.
//
// Kept apart from topk.cu (launch and host code) so that the block algorithm can be read, and
// exercised, on its own. Only these CUDA features are used: threadIdx/blockDim, __syncthreads,
// the *_sync warp intrinsics with a full mask, shared-memory atomics, __ldg.
//
// Per row: (1) mark the row's excluded items in a bitmap; (2) radix-select, 8 bits at a time,
// the k-th largest order-preserving key of the candidate scores; (3) gather, in item order, the
// items above that key and the lowest-indexed items equal to it (the tie rule); (4) bitonic-sort
// the gathered (key, ~index) pairs in shared memory; (5) write, padding with -1 / -inf.
#pragma once
#include <cstdint>

namespace advrec {
namespace cuda {
namespace detail {

constexpr int kThreads = 256;  // threads per block (a multiple of 32, at least 256 hist bins)
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr unsigned kNoDigit = 0x100u;  // "not counted" digit for __match_any_sync

// Per-block scratch that is not sized by k or n_items.
struct BlockShared {
  unsigned hist[256];
  unsigned warp_counts[2][kWarps][2];  // double-buffered per-warp (greater, equal) counts
  unsigned sel_bin, sel_above, sel_count, total;
};

// Maps a float to a uint32 whose unsigned order is the float order; -0.0 and +0.0 share one key
// because the CPU kernel compares them as equal (and then breaks the tie by item index).
__device__ __forceinline__ unsigned order_key(float v) {
  unsigned b = __float_as_uint(v);
  if ((b & 0x7fffffffu) == 0u) b = 0u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Higher composite = ranks first: higher score, then the lower item index.
__device__ __forceinline__ unsigned long long compose(unsigned key, unsigned item) {
  return (static_cast<unsigned long long>(key) << 32) | static_cast<unsigned long long>(~item);
}

__device__ __forceinline__ bool is_excluded(const unsigned* bitmap, unsigned j) {
  return bitmap != nullptr && ((bitmap[j >> 5] >> (j & 31u)) & 1u) != 0u;
}

// Loads item j of the row and says whether it is a candidate (in range, not excluded, not NaN).
__device__ __forceinline__ bool load_candidate(const float* row, const unsigned* bitmap,
                                               unsigned n, unsigned j, unsigned& key,
                                               bool& is_nan) {
  is_nan = false;
  if (j >= n || is_excluded(bitmap, j)) return false;
  const float v = __ldg(row + j);
  if (v != v) {
    is_nan = true;
    return false;
  }
  key = order_key(v);
  return true;
}

// Sets (or clears) the bits of the row's excluded items; duplicates and any order are fine.
__device__ __forceinline__ void mark_excluded(unsigned* bitmap, const int64_t* indices,
                                              int64_t p0, int64_t p1, bool set) {
  for (int64_t p = p0 + threadIdx.x; p < p1; p += blockDim.x) {
    const unsigned e = static_cast<unsigned>(indices[p]);
    const unsigned bit = 1u << (e & 31u);
    if (set) atomicOr(bitmap + (e >> 5), bit);
    else atomicAnd(bitmap + (e >> 5), ~bit);
  }
}

// One radix pass: histogram of the 8-bit digit at `shift` over candidates whose key matches
// `prefix` on `mask`; then warp 0 finds the bin holding the `want`-th largest key, counting down
// from bin 255. Writes sh.total (candidates counted) and, when total >= want, sh.sel_*.
__device__ void radix_pass(const float* row, const unsigned* bitmap, unsigned n, unsigned shift,
                           unsigned mask, unsigned prefix, unsigned want, BlockShared& sh,
                           int* nan_flag) {
  const unsigned tid = threadIdx.x, lane = tid & 31u;
  for (unsigned b = tid; b < 256u; b += blockDim.x) sh.hist[b] = 0u;
  __syncthreads();
  bool saw_nan = false;
  for (unsigned base = 0; base < n; base += blockDim.x) {  // uniform trip count
    unsigned key = 0;
    bool is_nan = false;
    const bool c = load_candidate(row, bitmap, n, base + tid, key, is_nan);
    saw_nan = saw_nan || is_nan;
    const bool in = c && (key & mask) == prefix;
    const unsigned digit = in ? ((key >> shift) & 0xffu) : kNoDigit;
    const unsigned peers = __match_any_sync(kFullMask, digit);
    if (in && lane == static_cast<unsigned>(__ffs(peers) - 1))
      atomicAdd(&sh.hist[digit], static_cast<unsigned>(__popc(peers)));
  }
  if (saw_nan) atomicOr(nan_flag, 1);
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

// Selects and writes the top-k of one row. `keys` holds at least the power of two >= min(k,
// candidates) entries; `bitmap` (null: no exclusion) is all-zero on entry and on exit.
__device__ void select_row(const float* row, unsigned n, unsigned k, unsigned* bitmap,
                           const int64_t* excl_indices, int64_t p0, int64_t p1,
                           unsigned long long* keys, BlockShared& sh, int64_t* out_idx,
                           float* out_val, int* nan_flag) {
  const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
  const unsigned nwarps = blockDim.x >> 5;
  if (bitmap != nullptr) {
    mark_excluded(bitmap, excl_indices, p0, p1, true);
    __syncthreads();
  }

  // Radix select. Afterwards the selection is: candidates with (key & mask) > prefix (there are
  // k - want of them) plus the `want` lowest-indexed ones with (key & mask) == prefix.
  unsigned prefix = 0u, mask = 0u, want = k;
  for (int pass = 0; pass < 4; ++pass) {
    const unsigned shift = 24u - 8u * static_cast<unsigned>(pass);
    radix_pass(row, bitmap, n, shift, mask, prefix, want, sh, nan_flag);
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
  const unsigned n_greater = (mask == 0u) ? 0u : k - want;
  const unsigned n_sel = n_greater + want;

  // Gather in item order: ballots give every thread its slot, so the `want` ties kept are the
  // lowest-indexed ones. Stops once everything has been found.
  const unsigned lane_lt = (1u << lane) - 1u;
  unsigned seen_greater = 0u, seen_equal = 0u;
  int buf = 0;
  for (unsigned base = 0; base < n; base += blockDim.x) {
    if (seen_greater >= n_greater && seen_equal >= want) break;  // uniform
    const unsigned j = base + tid;
    unsigned key = 0;
    bool is_nan = false;
    const bool c = load_candidate(row, bitmap, n, j, key, is_nan);
    const bool gt = c && (key & mask) > prefix;
    const bool eq = c && (key & mask) == prefix;
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
      if (slot < n_greater) keys[slot] = compose(key, j);
    }
    if (eq) {
      const unsigned r = seen_equal + pre_e + static_cast<unsigned>(__popc(be & lane_lt));
      if (r < want) keys[n_greater + r] = compose(key, j);
    }
    seen_greater += tot_g;
    seen_equal += tot_e;
    buf ^= 1;
  }
  // Sort the smallest power of two >= n_sel; padding entries sort last since no
  // candidate has composite key 0 (NaN is never a candidate).
  unsigned sort_n = 1u;
  while (sort_n < n_sel) sort_n <<= 1;
  for (unsigned i = n_sel + tid; i < sort_n; i += blockDim.x) keys[i] = 0ull;
  __syncthreads();  // also orders every read of the bitmap before it is cleared below

  // Bitonic sort, descending.
  if (n_sel > 1u) {
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

  for (unsigned t = tid; t < k; t += blockDim.x) {
    if (t < n_sel) {
      const unsigned j = ~static_cast<unsigned>(keys[t] & 0xffffffffull);
      out_idx[t] = static_cast<int64_t>(j);
      out_val[t] = __ldg(row + j);
    } else {
      out_idx[t] = -1;
      out_val[t] = -__int_as_float(0x7f800000);
    }
  }
  if (bitmap != nullptr) mark_excluded(bitmap, excl_indices, p0, p1, false);
  __syncthreads();  // keys, bitmap and sh are reused by the block's next row
}

// What one launch needs; pointers are device pointers (excl_indptr null: no exclusion,
// excl_rows null: tile row r uses CSR row r).
struct TopkArgs {
  const float* scores;
  int64_t rows;
  unsigned n_items, k;
  const int64_t* excl_indptr;
  const int64_t* excl_indices;
  const int64_t* excl_rows;
  int64_t* out_idx;
  float* out_val;
  int* nan_flag;
};

// The rows first, first + step, ... of the tile, one after another, by this block. `bitmap`
// (n_items bits, all zero) is used only when there is an exclusion CSR.
__device__ void process_rows(const TopkArgs& a, int64_t first, int64_t step, unsigned* bitmap,
                             unsigned long long* keys, BlockShared& sh) {
  const bool masked = a.excl_indptr != nullptr;
  for (int64_t r = first; r < a.rows; r += step) {
    int64_t p0 = 0, p1 = 0;
    if (masked) {
      const int64_t er = a.excl_rows != nullptr ? a.excl_rows[r] : r;
      p0 = a.excl_indptr[er];
      p1 = a.excl_indptr[er + 1];
    }
    select_row(a.scores + r * static_cast<int64_t>(a.n_items), a.n_items, a.k,
               masked ? bitmap : nullptr, a.excl_indices, p0, p1, keys, sh,
               a.out_idx + r * static_cast<int64_t>(a.k),
               a.out_val + r * static_cast<int64_t>(a.k), a.nan_flag);
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace advrec
