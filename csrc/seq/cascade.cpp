// Cascade effects (cascade.h), linear time in the entries:
//   1. scan: validate, largest id, number of items (one read, OpenMP over rows);
//   2. D: sum s(c) = T - c per item id, in int64, into a dense array indexed by the id (ids not
//      much larger than the number of entries) or an open-addressing hash table (sparse ids up
//      to 2^63: memory follows the distinct ids, not the largest one). Threads sum their rows
//      into private counters that are then added (per-thread arrays when they are small,
//      per-thread hash tables merged in thread order), or with atomic adds into one large array;
//      integer sums, so the result is the same in any order;
//   3. X_v = (b / m) * D_v in double, once per id;
//   4. fill: C = s(c) (+) X_v in double per entry, normalised, rounded to float32 once.
#include "seq/cascade.h"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "common.h"
#include "omp_guard.h"

#ifdef ADVREC_OPENMP
#include <omp.h>
#endif

namespace advrec {

namespace {

// Below this many entries (or ids) one thread does the work: starting a team and its barriers
// costs more than the pass, above all on a loaded machine.
constexpr int64_t kMinParallel = 1 << 15;

int resolve_threads(int threads, int64_t work) {
  if (work < kMinParallel) return 1;
  return threads > 0 ? threads : openmp_max_threads();
}

int thread_num() {
#ifdef ADVREC_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int team_size() {
#ifdef ADVREC_OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Rows [lo, hi) of part p of n equal parts of m rows.
inline void split_rows(int64_t m, int p, int n, int64_t& lo, int64_t& hi) {
  lo = m / n * p + std::min<int64_t>(p, m % n);
  hi = lo + m / n + (p < m % n ? 1 : 0);
}

// First column holding an item (T when the row is all padding). Only for validated rows.
inline int64_t first_item(const int64_t* row, int64_t T) {
  int64_t c = 0;
  while (c < T && row[c] < 0) ++c;
  return c;
}

// Open addressing with linear probing, kept at most half full. Keys are item ids (>= 0), so -1
// marks an empty slot; values are int64 sums.
class IdTable {
 public:
  static constexpr int64_t kEmpty = -1;

  explicit IdTable(int64_t expected = 8) { rehash(capacity_for(expected)); }

  // Slot of `id`, inserted with value 0 when absent (may grow the table).
  int64_t insert(int64_t id) {
    if ((size_ + 1) * 2 > static_cast<int64_t>(keys_.size())) rehash(keys_.size() * 2);
    uint64_t h = mix(id) & mask_;
    while (true) {
      const int64_t k = keys_[h];
      if (k == id) return static_cast<int64_t>(h);
      if (k == kEmpty) {
        keys_[h] = id;
        ++size_;
        return static_cast<int64_t>(h);
      }
      h = (h + 1) & mask_;
    }
  }

  // Slot of `id`, or -1 when absent.
  int64_t find(int64_t id) const {
    uint64_t h = mix(id) & mask_;
    while (true) {
      const int64_t k = keys_[h];
      if (k == id) return static_cast<int64_t>(h);
      if (k == kEmpty) return -1;
      h = (h + 1) & mask_;
    }
  }

  int64_t size() const { return size_; }
  int64_t capacity() const { return static_cast<int64_t>(keys_.size()); }
  int64_t key(int64_t slot) const { return keys_[slot]; }
  int64_t& value(int64_t slot) { return vals_[slot]; }
  int64_t value(int64_t slot) const { return vals_[slot]; }

 private:
  // splitmix64's finaliser: sequential or strided ids spread over the table.
  static uint64_t mix(int64_t id) {
    uint64_t z = static_cast<uint64_t>(id);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  static size_t capacity_for(int64_t n) {
    size_t cap = 16;
    while (static_cast<int64_t>(cap) < 2 * n) cap *= 2;
    return cap;
  }

  void rehash(size_t cap) {
    std::vector<int64_t> old_keys(cap, kEmpty), old_vals(cap, 0);
    old_keys.swap(keys_);
    old_vals.swap(vals_);
    mask_ = cap - 1;
    size_ = 0;
    for (size_t s = 0; s < old_keys.size(); ++s)
      if (old_keys[s] != kEmpty) vals_[insert(old_keys[s])] = old_vals[s];
  }

  std::vector<int64_t> keys_, vals_;
  uint64_t mask_ = 0;
  int64_t size_ = 0;
};

// Pass 4 for a cross-term lookup `xof(id)` -> X_id (double); the components are a template
// argument so that the inner loops carry no branch (the sequence-only fill vectorises).
template <CascadeComponents kComp, class XOf>
void fill_as(const int64_t* seq, int64_t m, int64_t T, CascadeNormalize norm, int64_t n_items,
             int nt, const XOf& xof, float* out) {
  auto value = [&](int64_t c, int64_t id) -> double {
    if constexpr (kComp == CascadeComponents::Sequence) {
      (void)id;
      return static_cast<double>(T - c);
    } else if constexpr (kComp == CascadeComponents::Cross) {
      (void)c;
      return xof(id);
    } else {
      return static_cast<double>(T - c) + xof(id);
    }
  };
  // Writes every row: zeros over the padding, f(c, C) over the items.
  auto write = [&](auto f) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < m; ++i) {
      const int64_t* row = seq + i * T;
      float* o = out + i * T;
      const int64_t start = first_item(row, T);
      for (int64_t c = 0; c < start; ++c) o[c] = 0.0f;
      for (int64_t c = start; c < T; ++c) o[c] = static_cast<float>(f(value(c, row[c])));
    }
  };
  if (norm == CascadeNormalize::None || n_items == 0) {
    write([](double v) { return v; });  // n_items == 0: all padding, all zeros
    return;
  }
  if (norm == CascadeNormalize::MinMax) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(min : lo) reduction(max : hi)
    for (int64_t i = 0; i < m; ++i) {
      const int64_t* row = seq + i * T;
      for (int64_t c = first_item(row, T); c < T; ++c) {
        const double v = value(c, row[c]);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
    const double range = hi - lo;
    if (range > 0.0)
      write([lo, range](double v) { return (v - lo) / range; });
    else
      write([](double) { return 1.0; });
    return;
  }
  // InverseMean: row sums left to right, then the row sums in row order (fixed order).
  std::vector<double> row_sum(static_cast<size_t>(m), 0.0);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t i = 0; i < m; ++i) {
    const int64_t* row = seq + i * T;
    double s = 0.0;
    for (int64_t c = first_item(row, T); c < T; ++c) s += 1.0 / value(c, row[c]);
    row_sum[i] = s;
  }
  double total = 0.0;
  for (int64_t i = 0; i < m; ++i) total += row_sum[i];
  const double mean = total / static_cast<double>(n_items);
  write([mean](double v) { return (1.0 / v) / mean; });
}

template <class XOf>
void fill(const int64_t* seq, int64_t m, int64_t T, CascadeComponents comp, CascadeNormalize norm,
          int64_t n_items, int nt, const XOf& xof, float* out) {
  switch (comp) {
    case CascadeComponents::Sequence:
      return fill_as<CascadeComponents::Sequence>(seq, m, T, norm, n_items, nt, xof, out);
    case CascadeComponents::Cross:
      return fill_as<CascadeComponents::Cross>(seq, m, T, norm, n_items, nt, xof, out);
    default:
      return fill_as<CascadeComponents::Both>(seq, m, T, norm, n_items, nt, xof, out);
  }
}

// D per id in a dense array [n_ids] (ids < n_ids).
std::vector<int64_t> dense_counts(const int64_t* seq, int64_t m, int64_t T, int64_t n_ids,
                                  int64_t n_items, int nt) {
  std::vector<int64_t> D(static_cast<size_t>(n_ids), 0);
  if (nt <= 1) {
    for (int64_t i = 0; i < m; ++i) {
      const int64_t* row = seq + i * T;
      for (int64_t c = first_item(row, T); c < T; ++c) D[row[c]] += T - c;
    }
    return D;
  }
  if (n_ids * nt <= n_items + (int64_t{1} << 20)) {
    // Few ids against the entries (the usual catalogue): private counters per thread, no
    // contention; their total size is at most the input's plus 8 MiB.
    std::vector<int64_t> priv(static_cast<size_t>(n_ids) * nt, 0);
#pragma omp parallel num_threads(nt)
    {
      int64_t lo, hi;
      split_rows(m, thread_num(), team_size(), lo, hi);
      int64_t* d = priv.data() + static_cast<int64_t>(thread_num()) * n_ids;
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t* row = seq + i * T;
        for (int64_t c = first_item(row, T); c < T; ++c) d[row[c]] += T - c;
      }
    }
#pragma omp parallel for schedule(static) num_threads(nt) if (n_ids >= kMinParallel)
    for (int64_t v = 0; v < n_ids; ++v) {
      int64_t s = 0;
      for (int t = 0; t < nt; ++t) s += priv[static_cast<size_t>(t) * n_ids + v];
      D[v] = s;
    }
    return D;
  }
  // Many ids: collisions between threads are rare, atomic adds into the one array.
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t i = 0; i < m; ++i) {
    const int64_t* row = seq + i * T;
    for (int64_t c = first_item(row, T); c < T; ++c) {
      int64_t* slot = &D[row[c]];
      const int64_t add = T - c;
#pragma omp atomic
      *slot += add;
    }
  }
  return D;
}

// D per id in a hash table: per-thread tables over row blocks, merged in thread order.
IdTable hashed_counts(const int64_t* seq, int64_t m, int64_t T, int nt) {
  std::vector<IdTable> local(static_cast<size_t>(nt));
  int team = 1;
  OmpGuard guard;  // the tables grow inside the region: an exception is rethrown after it
#pragma omp parallel num_threads(nt)
  {
    const int t = thread_num();
    if (t == 0) team = team_size();
    int64_t lo, hi;
    split_rows(m, t, team_size(), lo, hi);
    guard.run([&] {
      IdTable tab;
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t* row = seq + i * T;
        for (int64_t c = first_item(row, T); c < T; ++c) tab.value(tab.insert(row[c])) += T - c;
      }
      local[t] = std::move(tab);
    });
  }
  guard.rethrow();
  if (team == 1) return std::move(local[0]);
  int64_t biggest = 0;
  for (int t = 0; t < team; ++t) biggest = std::max(biggest, local[t].size());
  IdTable all(biggest);
  for (int t = 0; t < team; ++t) {
    IdTable part = std::move(local[t]);  // freed after its merge
    for (int64_t s = 0; s < part.capacity(); ++s)
      if (part.key(s) != IdTable::kEmpty) all.value(all.insert(part.key(s))) += part.value(s);
  }
  return all;
}

}  // namespace

CascadeScan cascade_scan(const int64_t* seq, int64_t m, int64_t T, int threads) {
  const int nt = resolve_threads(threads, m * T);
  CascadeScan r;
  int64_t bad = std::numeric_limits<int64_t>::max(), max_id = -1, n_items = 0;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(min : bad) \
    reduction(max : max_id) reduction(+ : n_items)
  for (int64_t i = 0; i < m; ++i) {
    const int64_t* row = seq + i * T;
    int64_t c = 0;
    while (c < T && row[c] == -1) ++c;
    // After the leading padding every entry must be an id >= 0: one vectorisable pass.
    int64_t neg = 0, mx = -1;
    for (int64_t j = c; j < T; ++j) {
      const int64_t v = row[j];
      neg |= static_cast<int64_t>(v < 0);
      mx = v > mx ? v : mx;
    }
    if (neg) {
      bad = std::min(bad, i);
    } else {
      max_id = std::max(max_id, mx);
      n_items += T - c;
    }
  }
  if (bad != std::numeric_limits<int64_t>::max()) {
    const int64_t* row = seq + bad * T;
    bool item_seen = false;
    for (int64_t c = 0; c < T; ++c) {
      const int64_t v = row[c];
      if (v < -1 || (v == -1 && item_seen)) {
        r.bad_row = bad;
        r.bad_col = c;
        r.bad_value = v;
        r.bad_kind = v < -1 ? 1 : 2;
        break;
      }
      item_seen = item_seen || v >= 0;
    }
    return r;
  }
  r.max_id = max_id;
  r.n_items = n_items;
  return r;
}

bool cascade_dense_ok(const CascadeScan& scan) {
  return scan.max_id < scan.n_items + 65536;
}

CascadeIdMap cascade_effects_cpu(const int64_t* seq, int64_t m, int64_t T, int64_t batch_size,
                                 CascadeComponents comp, CascadeNormalize norm,
                                 CascadeIdMap id_map, const CascadeScan& scan, int threads,
                                 float* out) {
  const int nt = resolve_threads(threads, m * T);
  if (id_map == CascadeIdMap::Auto)
    id_map = cascade_dense_ok(scan) ? CascadeIdMap::Dense : CascadeIdMap::Hash;
  if (m == 0 || T == 0) return id_map;
  // b / m rounded once, as Algorithm 1 line 11 writes it.
  const double ratio = static_cast<double>(batch_size) / static_cast<double>(m);
  if (comp == CascadeComponents::Sequence || scan.n_items == 0) {
    fill(seq, m, T, comp, norm, scan.n_items, nt, [](int64_t) { return 0.0; }, out);
    return id_map;
  }
  if (id_map == CascadeIdMap::Dense) {
    const int64_t n_ids = scan.max_id + 1;
    std::vector<double> X(static_cast<size_t>(n_ids));
    {
      const std::vector<int64_t> D = dense_counts(seq, m, T, n_ids, scan.n_items, nt);
#pragma omp parallel for schedule(static) num_threads(nt) if (n_ids >= kMinParallel)
      for (int64_t v = 0; v < n_ids; ++v) X[v] = ratio * static_cast<double>(D[v]);
    }
    const double* x = X.data();
    fill(seq, m, T, comp, norm, scan.n_items, nt, [x](int64_t id) { return x[id]; }, out);
    return id_map;
  }
  const IdTable tab = hashed_counts(seq, m, T, nt);
  std::vector<double> X(static_cast<size_t>(tab.capacity()), 0.0);
  for (int64_t s = 0; s < tab.capacity(); ++s)
    if (tab.key(s) != IdTable::kEmpty) X[s] = ratio * static_cast<double>(tab.value(s));
  const double* x = X.data();
  fill(seq, m, T, comp, norm, scan.n_items, nt,
       [x, &tab](int64_t id) { return x[tab.find(id)]; }, out);
  return id_map;
}

}  // namespace advrec
