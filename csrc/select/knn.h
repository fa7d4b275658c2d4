// Neighbourhood (kNN) collaborative filtering over a sparse rating matrix: the k most similar
// rows of every row, rating prediction from the raters of an item, and ranking scores from
// neighbour lists. Rows are users for user-based kNN and items for item-based kNN (the caller
// passes the transpose). The similarity of two rows is accumulated only over the columns both
// rows hold (co-rated), through an inverted index, so no rows x rows matrix ever exists.
#pragma once
#include <cstdint>

namespace advrec {

// A CSR rating matrix [n_rows x n_cols]: the columns of row r are indices[indptr[r]:indptr[r+1]],
// strictly increasing, with their values (finite). The binding checks all of this.
struct KnnMatrix {
  const int64_t* indptr = nullptr;
  const int64_t* indices = nullptr;
  const double* values = nullptr;
  int64_t n_rows = 0;
  int64_t n_cols = 0;
};

// How two rows a, b are compared over their co-rated columns C (|C| >= min_overlap):
//   x_r = value - means[r] (means null: x_r = value)
//   sim = sum_C x_a x_b / sqrt(A * B)
// with A = sum_C x_a^2, B = sum_C x_b^2 (row_norms false: co-rated norms, as Surprise), or A, B
// the squared norms of the whole rows (row_norms true: the usual cosine of implicit data, where
// co-rated norms would make every overlapping pair similar 1). A pair with no co-rated column,
// fewer than min_overlap, or A * B == 0 has no similarity: it is never a neighbour.
// Similarities are computed in double and clamped to [-1, 1].
struct KnnSimilarity {
  const double* means = nullptr;  // [n_rows] or null
  bool row_norms = false;
  int64_t min_overlap = 1;
};

// Similarities are exact in scale: before any product each row's centred values are scaled by a
// power of two (exactly: the similarities are those of the unscaled values), so that its largest
// |value| or |mean| lies in [0.5, 1); no square or sum then overflows or underflows, whatever the
// magnitude of the row. What scaling cannot save is a row whose entries span more than 2^480: a
// nonzero centred value below 2^-480 of the row's largest would underflow when squared.
// knn_first_out_of_range returns the first such entry (its CSR position), or -1 when none.
int64_t knn_first_out_of_range(const KnnMatrix& m, const double* means);

// For every row: its k most similar other rows, most similar first, ties to the lower row index;
// out_idx / out_sim [n_rows x k], padded with -1 / -inf where fewer exist. OpenMP over rows.
void knn_neighbors_cpu(const KnnMatrix& m, const KnnSimilarity& s, int64_t k, int64_t* out_idx,
                       float* out_sim);

// Mean-centred prediction (Surprise's KNNWithMeans) of queries (q_rows[q], q_cols[q]):
//   pred = pred_means[r] + sum_N sim(r, v) (x_vc - pred_means[v]) / sum_N sim(r, v)
// over N, the k most similar rows v != r that hold column c and have sim(r, v) > 0 (ties to the
// lower index). When N is empty the prediction is pred_means[r]. out_used[q] = |N|. Where the sums
// overflow in double (deviations near +-2 DBL_MAX) the weighted mean is taken in scaled form: the
// prediction is inf only where its value is beyond float64.
// OpenMP over the distinct query rows, each row's similarities computed once.
void knn_predict_cpu(const KnnMatrix& m, const KnnSimilarity& s, const double* pred_means,
                     int64_t k, const int64_t* q_rows, const int64_t* q_cols, int64_t n_queries,
                     double* out_pred, int64_t* out_used);

// Rows of a sparse product, dense: out[t, :] = A[rows[t], :] @ B for t < n_out, with A
// [* x B.n_rows] and B [B.n_rows x B.n_cols] CSR (A's values may be any finite weights; the
// column order within a row does not matter here). out is float32 [n_out x B.n_cols]: products
// and sums in double, in the CSR's order, rounded to float32 once (products beyond float32's
// range may cancel).
void knn_scores_cpu(const KnnMatrix& a, const int64_t* rows, int64_t n_out, const KnnMatrix& b,
                    float* out);

}  // namespace advrec
