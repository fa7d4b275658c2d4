// kNN collaborative filtering kernels (CPU, OpenMP over rows): co-rated similarity through an
// inverted index, neighbour selection, mean-centred prediction, ranking scores.
#include "select/knn.h"

#include "omp_guard.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace advrec {

namespace {

// Co-rated sums of one candidate row against the current row.
struct Acc {
  double dot = 0.0;  // sum x_a x_b
  double aa = 0.0;   // sum x_a^2
  double bb = 0.0;   // sum x_b^2
  int64_t n = 0;     // co-rated columns
};

struct Cand {
  double sim;
  int64_t idx;
  double value;  // the neighbour's raw value at the query column (prediction only)
};

// "a ranks before b": more similar first, then the lower row index.
inline bool ranks_before(const Cand& a, const Cand& b) {
  return a.sim > b.sim || (a.sim == b.sim && a.idx < b.idx);
}

// Keeps the k best candidates of `c`, best first.
inline void keep_best(std::vector<Cand>& c, int64_t k) {
  if (static_cast<int64_t>(c.size()) > k) {
    std::nth_element(c.begin(), c.begin() + k, c.end(), ranks_before);
    c.resize(static_cast<size_t>(k));
  }
  std::sort(c.begin(), c.end(), ranks_before);
}

// The matrix in column order (the inverted index: which rows hold column c), with the values
// centred for the similarity and the raw values for prediction; rows ascend within a column.
struct Inverted {
  int64_t n_index = 0;        // columns indexed: largest column held + 1 (<= n_cols)
  std::vector<int64_t> ptr;   // [n_index + 1]
  std::vector<int64_t> rows;  // [nnz]
  std::vector<double> x;      // [nnz] centred values
  std::vector<double> raw;    // [nnz] raw values (only when asked)
  std::vector<double> row_sq; // [n_rows] squared norm of each centred row (only when asked)
};

inline double centred(const KnnMatrix& m, const KnnSimilarity& s, int64_t r, int64_t p) {
  return s.means ? m.values[p] - s.means[r] : m.values[p];
}

Inverted invert(const KnnMatrix& m, const KnnSimilarity& s, bool with_raw) {
  Inverted inv;
  const int64_t nnz = m.indptr[m.n_rows];
  // Only columns someone holds are indexed: an n_cols far above them costs no memory.
  for (int64_t p = 0; p < nnz; ++p) inv.n_index = std::max(inv.n_index, m.indices[p] + 1);
  inv.ptr.assign(static_cast<size_t>(inv.n_index + 1), 0);
  inv.rows.resize(static_cast<size_t>(nnz));
  inv.x.resize(static_cast<size_t>(nnz));
  if (with_raw) inv.raw.resize(static_cast<size_t>(nnz));
  // Count the entries of each column, then prefix-sum into column starts.
  for (int64_t p = 0; p < nnz; ++p) ++inv.ptr[m.indices[p] + 1];
  for (int64_t c = 0; c < inv.n_index; ++c) inv.ptr[c + 1] += inv.ptr[c];
  // Scatter each entry to the next free slot of its column (rows in ascending order).
  std::vector<int64_t> next(inv.ptr.begin(), inv.ptr.end() - 1);
  for (int64_t r = 0; r < m.n_rows; ++r) {
    for (int64_t p = m.indptr[r]; p < m.indptr[r + 1]; ++p) {
      const int64_t slot = next[m.indices[p]]++;
      inv.rows[slot] = r;
      inv.x[slot] = centred(m, s, r, p);
      if (with_raw) inv.raw[slot] = m.values[p];
    }
  }
  if (s.row_norms) {
    inv.row_sq.assign(static_cast<size_t>(m.n_rows), 0.0);
    for (int64_t r = 0; r < m.n_rows; ++r)
      for (int64_t p = m.indptr[r]; p < m.indptr[r + 1]; ++p) {
        const double x = centred(m, s, r, p);
        inv.row_sq[r] += x * x;
      }
  }
  return inv;
}

// Per-thread scratch, allocated once per thread before its loop.
struct Scratch {
  std::vector<Acc> acc;          // [n_rows], all zero between rows
  std::vector<int64_t> touched;  // rows with a co-rated column, capacity n_rows
  std::vector<Cand> cands;       // capacity n_rows
  std::vector<double> sim_row;   // [n_rows] (prediction only), all zero between rows
  void init(int64_t n_rows, bool with_sim_row) {
    acc.assign(static_cast<size_t>(n_rows), Acc{});
    touched.reserve(static_cast<size_t>(n_rows));
    cands.reserve(static_cast<size_t>(n_rows));
    if (with_sim_row) sim_row.assign(static_cast<size_t>(n_rows), 0.0);
  }
};

// Accumulates the co-rated sums of row u against every other row sharing a column with it.
void accumulate(const KnnMatrix& m, const KnnSimilarity& s, const Inverted& inv, int64_t u,
                Scratch& w) {
  w.touched.clear();
  // For each column c of row u ...
  for (int64_t p = m.indptr[u]; p < m.indptr[u + 1]; ++p) {
    const int64_t c = m.indices[p];
    const double xa = centred(m, s, u, p);
    // ... add its product with every other row v holding c.
    for (int64_t q = inv.ptr[c]; q < inv.ptr[c + 1]; ++q) {
      const int64_t v = inv.rows[q];
      if (v == u) continue;
      const double xb = inv.x[q];
      Acc& t = w.acc[v];
      if (t.n == 0) w.touched.push_back(v);
      t.n += 1;
      t.dot += xa * xb;
      t.aa += xa * xa;
      t.bb += xb * xb;
    }
  }
}

// The similarity of row u to touched row v from the sums (NaN: no similarity), and resets them.
inline double take_similarity(const KnnSimilarity& s, const Inverted& inv, int64_t u, int64_t v,
                              Acc& t) {
  double sim = std::numeric_limits<double>::quiet_NaN();
  if (t.n >= s.min_overlap) {
    const double A = s.row_norms ? inv.row_sq[u] : t.aa;
    const double B = s.row_norms ? inv.row_sq[v] : t.bb;
    if (A > 0.0 && B > 0.0) sim = std::min(1.0, std::max(-1.0, t.dot / std::sqrt(A * B)));
  }
  t = Acc{};
  return sim;
}

}  // namespace

void knn_neighbors_cpu(const KnnMatrix& m, const KnnSimilarity& s, int64_t k, int64_t* out_idx,
                       float* out_sim) {
  if (m.n_rows == 0 || k == 0) return;
  const Inverted inv = invert(m, s, false);
  OmpGuard guard;
#pragma omp parallel
  {
    Scratch w;
    bool ready = false;
    guard.run([&] {
      w.init(m.n_rows, false);
      ready = true;
    });
#pragma omp for schedule(dynamic, 16)
    for (int64_t u = 0; u < m.n_rows; ++u) {
      if (!ready || guard.failed()) continue;
      guard.run([&] {
        accumulate(m, s, inv, u, w);
        // Similarities of the touched rows; rows without one are no candidates.
        w.cands.clear();
        for (const int64_t v : w.touched) {
          const double sim = take_similarity(s, inv, u, v, w.acc[v]);
          if (sim == sim) w.cands.push_back(Cand{sim, v, 0.0});
        }
        keep_best(w.cands, k);
        // Write the k best, then the padding.
        const int64_t got = static_cast<int64_t>(w.cands.size());
        for (int64_t t = 0; t < k; ++t) {
          out_idx[u * k + t] = t < got ? w.cands[t].idx : -1;
          out_sim[u * k + t] = t < got ? static_cast<float>(w.cands[t].sim)
                                       : -std::numeric_limits<float>::infinity();
        }
      });
    }
  }
  guard.rethrow();
}

void knn_predict_cpu(const KnnMatrix& m, const KnnSimilarity& s, const double* pred_means,
                     int64_t k, const int64_t* q_rows, const int64_t* q_cols, int64_t n_queries,
                     double* out_pred, int64_t* out_used) {
  if (n_queries == 0) return;
  const Inverted inv = invert(m, s, true);
  // Group the queries by row (counting sort): the queries of row r are order[qptr[r]:qptr[r+1]].
  std::vector<int64_t> qptr(static_cast<size_t>(m.n_rows + 1), 0), order(static_cast<size_t>(n_queries));
  for (int64_t q = 0; q < n_queries; ++q) ++qptr[q_rows[q] + 1];
  for (int64_t r = 0; r < m.n_rows; ++r) qptr[r + 1] += qptr[r];
  {
    std::vector<int64_t> next(qptr.begin(), qptr.end() - 1);
    for (int64_t q = 0; q < n_queries; ++q) order[next[q_rows[q]]++] = q;
  }
  std::vector<int64_t> active;  // rows with at least one query
  for (int64_t r = 0; r < m.n_rows; ++r)
    if (qptr[r + 1] > qptr[r]) active.push_back(r);
  const int64_t n_active = static_cast<int64_t>(active.size());
  OmpGuard guard;
#pragma omp parallel
  {
    Scratch w;
    bool ready = false;
    guard.run([&] {
      w.init(m.n_rows, true);
      ready = true;
    });
#pragma omp for schedule(dynamic, 4)
    for (int64_t a = 0; a < n_active; ++a) {
      if (!ready || guard.failed()) continue;
      guard.run([&] {
        const int64_t r = active[a];
        // The similarity row of r: positive similarities only (the others never vote).
        accumulate(m, s, inv, r, w);
        for (const int64_t v : w.touched) {
          const double sim = take_similarity(s, inv, r, v, w.acc[v]);
          if (sim > 0.0) w.sim_row[v] = sim;
        }
        // Each query (r, c): the k most similar rows among those holding column c.
        for (int64_t i = qptr[r]; i < qptr[r + 1]; ++i) {
          const int64_t q = order[i], c = q_cols[q];
          w.cands.clear();
          const int64_t p0 = c < inv.n_index ? inv.ptr[c] : 0, p1 = c < inv.n_index ? inv.ptr[c + 1] : 0;
          for (int64_t p = p0; p < p1; ++p) {
            const int64_t v = inv.rows[p];
            if (w.sim_row[v] > 0.0 && v != r) w.cands.push_back(Cand{w.sim_row[v], v, inv.raw[p]});
          }
          keep_best(w.cands, k);
          double num = 0.0, den = 0.0;
          for (const Cand& nb : w.cands) {
            num += nb.sim * (nb.value - pred_means[nb.idx]);
            den += nb.sim;
          }
          out_pred[q] = w.cands.empty() ? pred_means[r] : pred_means[r] + num / den;
          out_used[q] = static_cast<int64_t>(w.cands.size());
        }
        // Clear the similarity row for the next row of this thread.
        for (const int64_t v : w.touched) w.sim_row[v] = 0.0;
      });
    }
  }
  guard.rethrow();
}

void knn_scores_cpu(const KnnMatrix& a, const int64_t* rows, int64_t n_out, const KnnMatrix& b,
                    float* out) {
  const int64_t n_cols = b.n_cols;
  // One output row per iteration: out[t] = sum over the entries (j, w) of A's row of w * B[j].
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t t = 0; t < n_out; ++t) {
    float* o = out + t * n_cols;
    std::fill(o, o + n_cols, 0.0f);
    const int64_t r = rows[t];
    for (int64_t p = a.indptr[r]; p < a.indptr[r + 1]; ++p) {
      const int64_t j = a.indices[p];
      const double wgt = a.values[p];
      for (int64_t q = b.indptr[j]; q < b.indptr[j + 1]; ++q)
        o[b.indices[q]] += static_cast<float>(wgt * b.values[q]);
    }
  }
}

}  // namespace advrec
