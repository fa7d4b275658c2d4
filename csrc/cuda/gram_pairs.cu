// CUDA twin of the per-model Gram tables (docs/certify.md "Per-model tables"): the M largest and
// smallest entries G_ij, i <= j, of G = V Vᵀ and, per row, the t largest and smallest
// off-diagonal entries, with the tie rules of the CPU kernel (lower (i, j), lower partner).
//
// G is never materialised. V is walked in tiles of TB rows; for each tile:
//   1. gram_tile_kernel   the TB x n block G[a:a+TB, :] (float32, k summed in order with fmaf,
//                         so G_ij and G_ji are bitwise equal);
//   2. gram_rows_kernel   one block per row i: the sorted row tables, and the row's min(M, n-i)
//                         best entries G_ij, j >= i, for each direction (unsorted, in j order);
//   3. gram_merge_kernel  one block per direction: the best M of (running best ++ the tile's row
//                         lists), kept in storage order.
// The per-row lists lose nothing: a pair in the global best M has fewer than M better pairs in
// its own row. Ties: every selection keeps the lowest storage positions among equal values, and
// storage order restricted to one value is (i, j) order (the running best holds rows < a; each
// row list is in j order), so "lower position" is "lower (i, j)" throughout. A final kernel sorts
// the running best by (value, position).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "cuda/block_select.cuh"
#include "cuda/cuda_api.h"

namespace advrec {
namespace cuda {
namespace {

using blocksel::kThreads;

constexpr int kTile = 16;                                  // GEMM tile edge (16 x 16 threads)
constexpr size_t kScratchBudgetBytes = size_t{256} << 20;  // tile + row lists, auto tile size
constexpr int64_t kMaxTileRows = 4096;
constexpr int64_t kMaxListSlots = int64_t{1} << 30;  // TB * list length: positions stay < 2^31
constexpr unsigned kNoSkip = 0xffffffffu;
constexpr size_t kAlign = 256;

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();
  throw std::runtime_error(std::string("advrec CUDA gram_extremes: ") + what + " failed: " +
                           cudaGetErrorString(err));
}

__device__ __forceinline__ double inf_d() { return __longlong_as_double(0x7ff0000000000000LL); }

// tile[r, c] = <V[row0 + r], V[c]> for r < rows, c < n. Each output sums its k products in
// order with fmaf; the padded tail adds exact zeros.
__global__ void __launch_bounds__(kTile* kTile)
    gram_tile_kernel(const float* __restrict__ V, int64_t n, int64_t k, int64_t row0,
                     int64_t rows, float* __restrict__ tile) {
  __shared__ float As[kTile][kTile + 1];
  __shared__ float Bs[kTile][kTile + 1];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kTile;  // first tile row of the block
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kTile;  // first column of the block
  const int64_t a_row = r0 + ty;                                // rows loaded by this thread
  const int64_t b_row = c0 + ty;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < k; k0 += kTile) {
    const int64_t kk = k0 + tx;
    As[ty][tx] = (a_row < rows && kk < k) ? V[(row0 + a_row) * k + kk] : 0.0f;
    Bs[ty][tx] = (b_row < n && kk < k) ? V[b_row * k + kk] : 0.0f;
    __syncthreads();
#pragma unroll
    for (int x = 0; x < kTile; ++x) acc = fmaf(As[ty][x], Bs[tx][x], acc);
    __syncthreads();
  }
  const int64_t r = r0 + ty, c = c0 + tx;
  if (r < rows && c < n) tile[r * n + c] = acc;
}

// Columns [begin, n) of one Gram row as a selection source; `skip` (kNoSkip: none) is left out.
struct RowSrc {
  const float* row;
  unsigned begin, skip;
  bool smallest;
  __device__ bool load(unsigned pos, unsigned& key, bool& is_nan) const {
    is_nan = false;
    const unsigned col = begin + pos;
    if (col == skip) return false;
    const float v = row[col];
    if (v != v) {
      is_nan = true;
      return false;
    }
    key = blocksel::direction_key(v, smallest);
    return true;
  }
};

// A list of pairs in device memory; a slot with i < 0 is empty.
struct PairList {
  float* val;
  int* i;
  int* j;
};

// The running best (m slots) followed by the tile's row lists, as one selection source.
struct PairSrc {
  PairList run, cand;
  unsigned m;
  bool smallest;
  __device__ bool load(unsigned pos, unsigned& key, bool& is_nan) const {
    is_nan = false;
    const bool in_run = pos < m;
    const unsigned s = in_run ? pos : pos - m;
    const int i = in_run ? run.i[s] : cand.i[s];
    if (i < 0) return false;
    const float v = in_run ? run.val[s] : cand.val[s];
    if (v != v) {  // cannot happen (the row pass drops NaN), kept for safety
      is_nan = true;
      return false;
    }
    key = blocksel::direction_key(v, smallest);
    return true;
  }
  __device__ void copy_to(unsigned pos, const PairList& out, unsigned slot) const {
    const bool in_run = pos < m;
    const PairList& from = in_run ? run : cand;
    const unsigned s = in_run ? pos : pos - m;
    out.val[slot] = from.val[s];
    out.i[slot] = from.i[s];
    out.j[slot] = from.j[s];
  }
};

struct RowArgs {
  const float* tile;
  unsigned row0, n;
  unsigned t_eff;     // entries to select per row table: min(n_row, n - 1)
  int64_t t_out;      // n_row: width of the row tables (padded beyond t_eff)
  double* row_val[2];  // [0]: row_top, [1]: row_bot
  int64_t* row_idx[2];
  unsigned lp;  // slots per row list (0: no pair tables)
  PairList cand[2];
  int* nan_flag;
};

// One block per tile row. Dynamic shared memory: keys for sorting t_eff entries.
__global__ void __launch_bounds__(kThreads) gram_rows_kernel(RowArgs a) {
  extern __shared__ unsigned long long keys[];
  __shared__ blocksel::Shared sh;
  const int64_t r = blockIdx.x;
  const unsigned i = a.row0 + static_cast<unsigned>(r);
  const float* row = a.tile + r * static_cast<int64_t>(a.n);
  for (int dir = 0; dir < 2; ++dir) {
    if (a.t_out > 0) {
      unsigned n_sel = 0;
      if (a.t_eff > 0)
        n_sel = blocksel::select_sorted(RowSrc{row, 0u, i, dir == 1}, a.n, a.t_eff, keys, sh,
                                        a.nan_flag);
      // Constant indices only: a kernel parameter indexed by a variable goes to local memory.
      const int64_t off = static_cast<int64_t>(i) * a.t_out;
      double* out_v = (dir == 0 ? a.row_val[0] : a.row_val[1]) + off;
      int64_t* out_i = (dir == 0 ? a.row_idx[0] : a.row_idx[1]) + off;
      const double pad = dir == 0 ? -inf_d() : inf_d();
      for (int64_t s = threadIdx.x; s < a.t_out; s += blockDim.x) {
        if (s < static_cast<int64_t>(n_sel)) {
          const unsigned col = blocksel::composite_pos(keys[s]);
          out_v[s] = static_cast<double>(row[col]);
          out_i[s] = static_cast<int64_t>(col);
        } else {
          out_v[s] = pad;
          out_i[s] = -1;
        }
      }
      __syncthreads();  // keys are rewritten by the next selection
    }
    if (a.lp > 0) {
      const unsigned len = a.n - i;  // columns j >= i; at least 1
      const RowSrc src{row, i, kNoSkip, dir == 1};
      const blocksel::Plan p = blocksel::radix_select(src, len, min(a.lp, len), sh, a.nan_flag);
      const PairList out = dir == 0 ? a.cand[0] : a.cand[1];
      const int64_t base = r * static_cast<int64_t>(a.lp);
      blocksel::gather(src, len, p, sh, [&](unsigned slot, unsigned pos, unsigned) {
        out.val[base + slot] = row[i + pos];
        out.i[base + slot] = static_cast<int>(i);
        out.j[base + slot] = static_cast<int>(i + pos);
      });
      for (unsigned s = p.n_sel() + threadIdx.x; s < a.lp; s += blockDim.x) out.i[base + s] = -1;
      __syncthreads();  // sh is reused by the next selection
    }
  }
}

struct MergeArgs {
  PairList run_in[2], run_out[2], cand[2];
  unsigned m, n_cand;  // running-best slots, row-list slots of this tile
  int* nan_flag;
};

// Block 0 merges the largest entries, block 1 the smallest.
__global__ void __launch_bounds__(kThreads) gram_merge_kernel(MergeArgs a) {
  __shared__ blocksel::Shared sh;
  const int dir = static_cast<int>(blockIdx.x);
  const PairSrc src{dir == 0 ? a.run_in[0] : a.run_in[1], dir == 0 ? a.cand[0] : a.cand[1], a.m,
                    dir == 1};
  const PairList out = dir == 0 ? a.run_out[0] : a.run_out[1];
  const unsigned len = a.m + a.n_cand;
  const blocksel::Plan p = blocksel::radix_select(src, len, a.m, sh, a.nan_flag);
  blocksel::gather(src, len, p, sh,
                   [&](unsigned slot, unsigned pos, unsigned) { src.copy_to(pos, out, slot); });
  for (unsigned s = p.n_sel() + threadIdx.x; s < a.m; s += blockDim.x) out.i[s] = -1;
}

struct FinalArgs {
  PairList run[2];
  unsigned m;       // running-best slots (M clipped to n(n+1)/2; may be 0)
  int64_t m_out;    // n_pairs
  double* val[2];   // pair_top_val, pair_bot_val
  int64_t* idx[2];  // [m_out, 2]
  unsigned long long* keys;  // 2 x keys_stride, global scratch
  size_t keys_stride;
};

// Block 0 sorts and writes pair_top, block 1 pair_bot; padding -inf / +inf and (-1, -1).
__global__ void __launch_bounds__(kThreads) gram_final_kernel(FinalArgs a) {
  __shared__ blocksel::Shared sh;
  const int dir = static_cast<int>(blockIdx.x);
  unsigned long long* keys = a.keys + static_cast<size_t>(dir) * a.keys_stride;
  const PairList run = dir == 0 ? a.run[0] : a.run[1];
  const PairSrc src{run, run, a.m, dir == 1};  // positions < m only: never reads `cand`
  unsigned n_sel = 0;
  if (a.m > 0) n_sel = blocksel::select_sorted(src, a.m, a.m, keys, sh, nullptr);
  double* out_v = dir == 0 ? a.val[0] : a.val[1];
  int64_t* out_i = dir == 0 ? a.idx[0] : a.idx[1];
  const double pad = dir == 0 ? -inf_d() : inf_d();
  for (int64_t s = threadIdx.x; s < a.m_out; s += blockDim.x) {
    if (s < static_cast<int64_t>(n_sel)) {
      const unsigned pos = blocksel::composite_pos(keys[s]);
      out_v[s] = static_cast<double>(run.val[pos]);
      out_i[2 * s] = run.i[pos];
      out_i[2 * s + 1] = run.j[pos];
    } else {
      out_v[s] = pad;
      out_i[2 * s] = -1;
      out_i[2 * s + 1] = -1;
    }
  }
}

size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

unsigned next_pow2(unsigned v) {
  unsigned p = 1u;
  while (p < v) p <<= 1;
  return p;
}

// Carves typed sub-buffers out of one allocation.
struct Carver {
  char* base;
  size_t off = 0;
  template <typename T>
  T* take(size_t count) {
    T* p = reinterpret_cast<T*>(base + off);
    off += aligned(count * sizeof(T));
    return p;
  }
};

// Stream-ordered scratch, freed (after the kernels) on every exit path.
struct Scratch {
  void* ptr = nullptr;
  cudaStream_t st;
  explicit Scratch(cudaStream_t s) : st(s) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (ptr != nullptr) (void)cudaFreeAsync(ptr, st);
  }
};

}  // namespace

void gram_extremes(const float* V, int64_t n, int64_t k, int64_t n_pairs, int64_t n_row,
                   int64_t tile_rows, double* pair_top_val, int64_t* pair_top_idx,
                   double* pair_bot_val, int64_t* pair_bot_idx, double* row_top_val,
                   int64_t* row_top_idx, double* row_bot_val, int64_t* row_bot_idx,
                   int* nan_flag, void* stream) {
  if (n < 0 || k < 0) throw std::invalid_argument("V must have non-negative dimensions");
  if (n > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("V must have < 2^31 rows on CUDA, got " + std::to_string(n));
  if (n_pairs < 0 || n_pairs > kMaxGramPairs)
    throw std::invalid_argument("n_pairs must be in [0, " + std::to_string(kMaxGramPairs) +
                                "] on CUDA, got " + std::to_string(n_pairs));
  if (n_row < 0 || n_row > kMaxGramRow)
    throw std::invalid_argument("n_row must be in [0, " + std::to_string(kMaxGramRow) +
                                "] on CUDA, got " + std::to_string(n_row));
  if (tile_rows < 0)
    throw std::invalid_argument("tile_rows must be >= 0, got " + std::to_string(tile_rows));
  if (n_pairs == 0 && n_row == 0) return;
  if ((n_pairs > 0 && (pair_top_val == nullptr || pair_top_idx == nullptr ||
                       pair_bot_val == nullptr || pair_bot_idx == nullptr)) ||
      (n_row > 0 && n > 0 &&
       (row_top_val == nullptr || row_top_idx == nullptr || row_bot_val == nullptr ||
        row_bot_idx == nullptr)) ||
      (n > 0 && k > 0 && V == nullptr) || nan_flag == nullptr)
    throw std::invalid_argument("gram_extremes: null device pointer");

  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const int64_t m_eff = std::min(n_pairs, n * (n + 1) / 2);  // n < 2^31: no overflow
  const int64_t t_eff = n > 0 ? std::min(n_row, n - 1) : 0;
  const int64_t lp = std::min(m_eff, n);  // slots of a row list

  int64_t tb = 0;  // rows per tile
  if (n > 0) {
    const int64_t per_row = 4 * n + 2 * lp * 12;
    tb = tile_rows > 0 ? tile_rows
                       : std::max<int64_t>(1, static_cast<int64_t>(kScratchBudgetBytes) / per_row);
    tb = std::min({tb, n, kMaxTileRows});
    if (lp > 0) tb = std::max<int64_t>(1, std::min(tb, kMaxListSlots / lp));
  }
  const size_t n_list = static_cast<size_t>(tb) * static_cast<size_t>(lp);
  const size_t m_slots = static_cast<size_t>(m_eff);
  const unsigned keys_stride = next_pow2(static_cast<unsigned>(std::max<int64_t>(m_eff, 1)));

  const size_t tile_bytes = aligned(static_cast<size_t>(tb) * static_cast<size_t>(n) * 4);
  const size_t list_bytes = aligned(n_list * 4) * 3;
  const size_t run_bytes = aligned(m_slots * 4) * 3;
  const size_t keys_bytes = aligned(size_t{keys_stride} * 8);
  const size_t total = tile_bytes + 2 * list_bytes + 4 * run_bytes + 2 * keys_bytes;

  Scratch scratch(st);
  check(cudaMallocAsync(&scratch.ptr, total, st), "cudaMallocAsync");
  Carver carve{static_cast<char*>(scratch.ptr)};
  float* tile = carve.take<float>(static_cast<size_t>(tb) * static_cast<size_t>(n));
  PairList cand[2], run[2][2];
  for (auto& c : cand) c = PairList{carve.take<float>(n_list), carve.take<int>(n_list),
                                    carve.take<int>(n_list)};
  char* run_begin = static_cast<char*>(scratch.ptr) + carve.off;
  for (auto& dir : run)
    for (auto& b : dir)
      b = PairList{carve.take<float>(m_slots), carve.take<int>(m_slots), carve.take<int>(m_slots)};
  // All bytes 0xff: every running slot starts empty (i = -1).
  check(cudaMemsetAsync(run_begin, 0xff, 4 * run_bytes, st), "cudaMemsetAsync");
  unsigned long long* keys = carve.take<unsigned long long>(2 * size_t{keys_stride});

  RowArgs ra{};
  ra.tile = tile;
  ra.n = static_cast<unsigned>(n);
  ra.t_eff = static_cast<unsigned>(t_eff);
  ra.t_out = n_row;
  ra.row_val[0] = row_top_val;
  ra.row_val[1] = row_bot_val;
  ra.row_idx[0] = row_top_idx;
  ra.row_idx[1] = row_bot_idx;
  ra.lp = static_cast<unsigned>(lp);
  ra.cand[0] = cand[0];
  ra.cand[1] = cand[1];
  ra.nan_flag = nan_flag;
  const size_t row_smem = size_t{next_pow2(static_cast<unsigned>(std::max<int64_t>(t_eff, 1)))} *
                          sizeof(unsigned long long);  // <= 32 KiB (kMaxGramRow = 4096)

  int cur = 0;  // run[.][cur] holds the running best
  for (int64_t a0 = 0; a0 < n; a0 += tb) {
    const int64_t rows = std::min(tb, n - a0);
    const dim3 grid(static_cast<unsigned>((n + kTile - 1) / kTile),
                    static_cast<unsigned>((rows + kTile - 1) / kTile));
    gram_tile_kernel<<<grid, dim3(kTile, kTile), 0, st>>>(V, n, k, a0, rows, tile);
    check(cudaGetLastError(), "tile kernel launch");
    ra.row0 = static_cast<unsigned>(a0);
    gram_rows_kernel<<<static_cast<unsigned>(rows), kThreads, row_smem, st>>>(ra);
    check(cudaGetLastError(), "row kernel launch");
    if (m_eff > 0) {
      MergeArgs ma{};
      for (int d = 0; d < 2; ++d) {
        ma.run_in[d] = run[d][cur];
        ma.run_out[d] = run[d][1 - cur];
        ma.cand[d] = cand[d];
      }
      ma.m = static_cast<unsigned>(m_eff);
      ma.n_cand = static_cast<unsigned>(rows * lp);
      ma.nan_flag = nan_flag;
      gram_merge_kernel<<<2, kThreads, 0, st>>>(ma);
      check(cudaGetLastError(), "merge kernel launch");
      cur = 1 - cur;
    }
  }

  if (n_pairs > 0) {
    FinalArgs fa{};
    fa.run[0] = run[0][cur];
    fa.run[1] = run[1][cur];
    fa.m = static_cast<unsigned>(m_eff);
    fa.m_out = n_pairs;
    fa.val[0] = pair_top_val;
    fa.val[1] = pair_bot_val;
    fa.idx[0] = pair_top_idx;
    fa.idx[1] = pair_bot_idx;
    fa.keys = keys;
    fa.keys_stride = keys_stride;
    gram_final_kernel<<<2, kThreads, 0, st>>>(fa);
    check(cudaGetLastError(), "final kernel launch");
  }
}

}  // namespace cuda
}  // namespace advrec
