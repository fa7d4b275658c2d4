// kNN collaborative filtering kernels (CPU, OpenMP over rows): co-rated similarity through an
// inverted index, neighbour selection, mean-centred prediction, ranking scores.
#include "select/knn.h"

#include "omp_guard.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
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

// The power of two row r is scaled by (knn.h): its largest |value| or |mean| becomes [0.5, 1).
int row_exponent(const KnnMatrix& m, const double* means, int64_t r) {
  double big = means ? std::fabs(means[r]) : 0.0;
  for (int64_t p = m.indptr[r]; p < m.indptr[r + 1]; ++p) big = std::max(big, std::fabs(m.values[p]));
  int e = 0;
  if (big > 0.0) std::frexp(big, &e);
  return e;
}

// The centred value of entry p of row r, scaled by 2^-e: (value - mean) 2^-e, rounded once (as the
// unscaled difference, but it cannot overflow).
inline double scaled_centred(const KnnMatrix& m, const double* means, int64_t r, int64_t p, int e) {
  return means ? std::ldexp(m.values[p], -e) - std::ldexp(means[r], -e) : std::ldexp(m.values[p], -e);
}

// Below this a centred, scaled value would lose bits when squared (knn.h).
constexpr double kSmallest = 0x1p-480;

// The matrix in column order (the inverted index: which rows hold column c), with the scaled
// centred values for the similarity and the raw values for prediction; rows ascend within a
// column. Only the columns someone holds are indexed: ids up to about nnz are used as they are,
// larger ones are renumbered through the sorted distinct ids, so memory is O(nnz + n_rows)
// whatever n_cols or the ids are.
struct Inverted {
  int64_t n_index = 0;         // indexed columns
  std::vector<int64_t> cols;   // the distinct held ids, sorted (renumbered only)
  std::vector<int64_t> col_of; // [nnz] each entry's indexed column (renumbered only)
  std::vector<int64_t> ptr;    // [n_index + 1]
  std::vector<int64_t> rows;   // [nnz]
  std::vector<double> x;       // [nnz] scaled centred values
  std::vector<double> raw;     // [nnz] raw values (only when asked)
  std::vector<double> row_sq;  // [n_rows] squared norm of each scaled centred row (only when asked)
  std::vector<int> row_exp;    // [n_rows] each row's scale exponent

  int64_t col(const KnnMatrix& m, int64_t p) const { return col_of.empty() ? m.indices[p] : col_of[p]; }
  // The indexed column of id c, or -1 when no row holds it.
  int64_t find(int64_t c) const {
    if (cols.empty()) return c < n_index ? c : -1;
    const auto it = std::lower_bound(cols.begin(), cols.end(), c);
    return it != cols.end() && *it == c ? static_cast<int64_t>(it - cols.begin()) : -1;
  }
  double centred(const KnnMatrix& m, const KnnSimilarity& s, int64_t r, int64_t p) const {
    return scaled_centred(m, s.means, r, p, row_exp[r]);
  }
};

Inverted invert(const KnnMatrix& m, const KnnSimilarity& s, bool with_raw) {
  Inverted inv;
  const int64_t nnz = m.indptr[m.n_rows];
  int64_t largest = -1;
  for (int64_t p = 0; p < nnz; ++p) largest = std::max(largest, m.indices[p]);
  if (largest < 2 * nnz + 1024) {
    inv.n_index = largest + 1;
  } else {  // sparse ids: renumber
    inv.cols.assign(m.indices, m.indices + nnz);
    std::sort(inv.cols.begin(), inv.cols.end());
    inv.cols.erase(std::unique(inv.cols.begin(), inv.cols.end()), inv.cols.end());
    inv.n_index = static_cast<int64_t>(inv.cols.size());
    inv.col_of.resize(static_cast<size_t>(nnz));
    for (int64_t p = 0; p < nnz; ++p) inv.col_of[p] = inv.find(m.indices[p]);
  }
  inv.row_exp.resize(static_cast<size_t>(m.n_rows));
  for (int64_t r = 0; r < m.n_rows; ++r) inv.row_exp[r] = row_exponent(m, s.means, r);
  inv.ptr.assign(static_cast<size_t>(inv.n_index + 1), 0);
  inv.rows.resize(static_cast<size_t>(nnz));
  inv.x.resize(static_cast<size_t>(nnz));
  if (with_raw) inv.raw.resize(static_cast<size_t>(nnz));
  // Count the entries of each column, then prefix-sum into column starts.
  for (int64_t p = 0; p < nnz; ++p) ++inv.ptr[inv.col(m, p) + 1];
  for (int64_t c = 0; c < inv.n_index; ++c) inv.ptr[c + 1] += inv.ptr[c];
  // Scatter each entry to the next free slot of its column (rows in ascending order).
  std::vector<int64_t> next(inv.ptr.begin(), inv.ptr.end() - 1);
  for (int64_t r = 0; r < m.n_rows; ++r) {
    for (int64_t p = m.indptr[r]; p < m.indptr[r + 1]; ++p) {
      const int64_t slot = next[inv.col(m, p)]++;
      inv.rows[slot] = r;
      inv.x[slot] = inv.centred(m, s, r, p);
      if (with_raw) inv.raw[slot] = m.values[p];
    }
  }
  if (s.row_norms) {
    inv.row_sq.assign(static_cast<size_t>(m.n_rows), 0.0);
    for (int64_t r = 0; r < m.n_rows; ++r)
      for (int64_t p = m.indptr[r]; p < m.indptr[r + 1]; ++p) {
        const double x = inv.centred(m, s, r, p);
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
    const int64_t c = inv.col(m, p);
    const double xa = inv.centred(m, s, u, p);
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
    if (A > 0.0 && B > 0.0) {
      // A, B >= 2^-960 (knn.h): A * B may underflow, their roots' product cannot.
      const double AB = A * B;
      const double norm = AB >= std::numeric_limits<double>::min() ? std::sqrt(AB) : std::sqrt(A) * std::sqrt(B);
      sim = std::min(1.0, std::max(-1.0, t.dot / norm));
    }
  }
  t = Acc{};
  return sim;
}

// The prediction where pred_means[r] + num / den overflowed in double or the similarities are so
// small that their products lose bits: weights relative to the largest similarity (cands[0]),
// deviations and means quartered, the result scaled back (inf only when it is beyond float64).
double robust_prediction(const std::vector<Cand>& cands, const double* pred_means, double mean_r) {
  const double top = cands.front().sim;
  double num = 0.0, den = 0.0;
  for (const Cand& nb : cands) {
    const double w = nb.sim / top;
    num += w * (0.25 * nb.value - 0.25 * pred_means[nb.idx]);
    den += w;
  }
  return 4.0 * (0.25 * mean_r + num / den);
}

}  // namespace

int64_t knn_first_out_of_range(const KnnMatrix& m, const double* means) {
  for (int64_t r = 0; r < m.n_rows; ++r) {
    const int e = row_exponent(m, means, r);
    for (int64_t p = m.indptr[r]; p < m.indptr[r + 1]; ++p) {
      // (value != mean: a nonzero difference, even one that scaled to 0)
      const bool nonzero = means ? m.values[p] != means[r] : m.values[p] != 0.0;
      if (nonzero && std::fabs(scaled_centred(m, means, r, p, e)) < kSmallest) return p;
    }
  }
  return -1;
}

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
          const int64_t ci = inv.find(c);
          const int64_t p0 = ci >= 0 ? inv.ptr[ci] : 0, p1 = ci >= 0 ? inv.ptr[ci + 1] : 0;
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
          double pred = pred_means[r];
          if (!w.cands.empty()) {
            pred += num / den;
            if (!std::isfinite(pred) || den < 0x1p-900) pred = robust_prediction(w.cands, pred_means, pred_means[r]);
          }
          out_pred[q] = pred;
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
  // Up to this many columns each thread sums into a dense double row; beyond, it gathers the
  // row's products and sorts them by column (stable: the same order of summation), so memory is
  // the row's products, not n_cols.
  constexpr int64_t kDenseCols = int64_t{1} << 22;
  const bool dense = n_cols <= kDenseCols;
  OmpGuard guard;
#pragma omp parallel
  {
    std::vector<double> acc;
    std::vector<std::pair<int64_t, double>> terms;
    // One output row per iteration: out[t] = sum over the entries (j, w) of A's row of w * B[j].
#pragma omp for schedule(dynamic, 16)
    for (int64_t t = 0; t < n_out; ++t) {
      if (guard.failed()) continue;
      guard.run([&] {
        float* o = out + t * n_cols;
        const int64_t r = rows[t];
        if (dense) {
          if (acc.empty()) acc.assign(static_cast<size_t>(n_cols), 0.0);
          for (int64_t p = a.indptr[r]; p < a.indptr[r + 1]; ++p) {
            const int64_t j = a.indices[p];
            const double wgt = a.values[p];
            for (int64_t q = b.indptr[j]; q < b.indptr[j + 1]; ++q) acc[b.indices[q]] += wgt * b.values[q];
          }
          for (int64_t c = 0; c < n_cols; ++c) {
            o[c] = static_cast<float>(acc[c]);
            acc[c] = 0.0;
          }
          return;
        }
        std::fill(o, o + n_cols, 0.0f);
        terms.clear();
        for (int64_t p = a.indptr[r]; p < a.indptr[r + 1]; ++p) {
          const int64_t j = a.indices[p];
          const double wgt = a.values[p];
          for (int64_t q = b.indptr[j]; q < b.indptr[j + 1]; ++q) terms.emplace_back(b.indices[q], wgt * b.values[q]);
        }
        std::stable_sort(terms.begin(), terms.end(),
                         [](const std::pair<int64_t, double>& x, const std::pair<int64_t, double>& y) {
                           return x.first < y.first;
                         });
        for (size_t i = 0; i < terms.size();) {
          const int64_t c = terms[i].first;
          double sum = 0.0;
          for (; i < terms.size() && terms[i].first == c; ++i) sum += terms[i].second;
          o[c] = static_cast<float>(sum);
        }
      });
    }
  }
  guard.rethrow();
}

}  // namespace advrec
