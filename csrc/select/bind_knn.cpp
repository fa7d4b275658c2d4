// Bindings of the kNN kernels (knn.h): check every argument (CSR structure, sorted rows, index
// ranges, finite values), release the GIL, call the kernel.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "bind_util.h"
#include "select/knn.h"

namespace advrec {
namespace bind {

namespace {

std::string str(int64_t x) { return std::to_string(x); }

std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

// A rating matrix with its checks: `sorted` also requires strictly increasing columns per row
// (a repeated column would count twice as co-rated).
struct Matrix {
  I64 indptr, indices;
  F64 values;
  KnnMatrix m;
};

// `bound` names what n_cols is in the messages ("n_cols", "the rows of ratings").
Matrix check_matrix(const py::object& indptr_obj, const py::object& indices_obj,
                    const py::object& values_obj, int64_t n_cols, const std::string& name,
                    bool sorted, const std::string& bound = "n_cols") {
  Matrix x;
  x.indptr = as_array<int64_t>(indptr_obj, (name + " indptr").c_str(), "int64");
  x.indices = as_array<int64_t>(indices_obj, (name + " indices").c_str(), "int64");
  check_csr_structure(x.indptr, x.indices, -1, name.c_str());
  if (n_cols < 0) throw ArgError("n_cols must be >= 0, got " + str(n_cols));
  const int64_t n_rows = x.indptr.shape(0) - 1, nnz = x.indices.shape(0);
  const int64_t* p = x.indptr.data();
  const int64_t* ix = x.indices.data();
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t i = p[r]; i < p[r + 1]; ++i)
      if (ix[i] < 0 || ix[i] >= n_cols)
        throw IndexRangeError(name + " indices[" + str(i) + "] = " + str(ix[i]) + " is outside [0, " +
                              str(n_cols) + "), " + bound + " = " + str(n_cols));
    if (sorted)
      for (int64_t i = p[r] + 1; i < p[r + 1]; ++i)
        if (ix[i] <= ix[i - 1])
          throw ArgError(name + " indices must be strictly increasing within each row; row " +
                         str(r) + " holds " + str(ix[i - 1]) + " then " + str(ix[i]));
  }
  x.values = as_array<double>(values_obj, (name + " values").c_str(), "float64");
  check_ndim(x.values, 1, (name + " values").c_str());
  if (x.values.shape(0) != nnz)
    throw ArgError(name + " values must have one entry per index (" + str(nnz) + "), got " +
                   str(x.values.shape(0)));
  const double* v = x.values.data();
  for (int64_t i = 0; i < nnz; ++i)
    if (!std::isfinite(v[i]))
      throw ArgError(name + " values[" + str(i) + "] is not finite (" + std::to_string(v[i]) + ")");
  x.m = KnnMatrix{p, ix, v, n_rows, n_cols};
  return x;
}

// An optional per-row vector of finite float64 (None: null pointer).
const double* check_row_vector(const py::object& obj, F64& keep, int64_t n_rows, const char* name) {
  if (obj.is_none()) return nullptr;
  keep = as_array<double>(obj, name, "float64");
  check_ndim(keep, 1, name);
  if (keep.shape(0) != n_rows)
    throw ArgError(std::string(name) + " must have one entry per row (" + str(n_rows) + "), got " +
                   str(keep.shape(0)));
  for (int64_t i = 0; i < n_rows; ++i)
    if (!std::isfinite(keep.data()[i]))
      throw ArgError(std::string(name) + "[" + str(i) + "] is not finite");
  return keep.data();
}

KnnSimilarity check_similarity(const Matrix& x, const py::object& means, F64& keep, int64_t min_overlap,
                               bool row_norms) {
  if (min_overlap < 1) throw ArgError("min_overlap must be >= 1, got " + str(min_overlap));
  KnnSimilarity s;
  s.means = check_row_vector(means, keep, x.m.n_rows, "means");
  s.row_norms = row_norms;
  s.min_overlap = min_overlap;
  // Magnitudes no scaling can keep exact (knn.h): a row spanning more than 2^480.
  const int64_t p = knn_first_out_of_range(x.m, s.means);
  if (p >= 0) {
    const int64_t r = std::upper_bound(x.m.indptr, x.m.indptr + x.m.n_rows + 1, p) - x.m.indptr - 1;
    double big = s.means ? std::fabs(s.means[r]) : 0.0;
    for (int64_t i = x.m.indptr[r]; i < x.m.indptr[r + 1]; ++i) big = std::max(big, std::fabs(x.m.values[i]));
    throw ArgError("ratings values[" + str(p) + "] = " + num(x.m.values[p]) +
                   (s.means ? " minus its row's mean " + num(s.means[r]) : std::string()) +
                   " is nonzero but below 2^-480 of row " + str(r) + "'s largest magnitude (" + num(big) +
                   "): its square would underflow; the values of a row (and its mean) must lie within "
                   "a factor 2^480 of each other (rescale them)");
  }
  return s;
}

// k >= 0, and no absurd padding: at most n_rows - 1 neighbours exist, so refuse a k whose padding
// alone would take over 1 GiB (n_rows * k may overflow int64: computed in double).
void check_k(int64_t k, int64_t n_rows) {
  if (k < 0) throw ArgError("k must be >= 0, got " + str(k));
  const double pad = static_cast<double>(std::max<int64_t>(n_rows, 1)) *
                     static_cast<double>(std::max<int64_t>(k - n_rows, 0)) * 12.0;
  if (pad > static_cast<double>(int64_t{1} << 30))
    throw ArgError("k (" + str(k) + ") exceeds the " + str(n_rows) +
                   " rows so far that its padding alone would take over 1 GiB; pass k <= " +
                   str(n_rows));
}

py::tuple knn_neighbors(const py::object& indptr, const py::object& indices,
                        const py::object& values, int64_t n_cols, int64_t k, int64_t min_overlap,
                        const py::object& means, bool row_norms) {
  Matrix x = check_matrix(indptr, indices, values, n_cols, "ratings", true);
  const int64_t n_rows = x.m.n_rows;
  F64 keep_means;
  const KnnSimilarity s = check_similarity(x, means, keep_means, min_overlap, row_norms);
  check_k(k, n_rows);
  I64 out_idx({n_rows, k});
  F32 out_sim({n_rows, k});
  {
    py::gil_scoped_release release;
    knn_neighbors_cpu(x.m, s, k, out_idx.mutable_data(), out_sim.mutable_data());
  }
  return py::make_tuple(out_idx, out_sim);
}

py::tuple knn_predict(const py::object& indptr, const py::object& indices, const py::object& values,
                      int64_t n_cols, int64_t k, int64_t min_overlap, const py::object& means,
                      bool row_norms, const py::object& pred_means_obj, const py::object& rows_obj,
                      const py::object& cols_obj) {
  Matrix x = check_matrix(indptr, indices, values, n_cols, "ratings", true);
  const int64_t n_rows = x.m.n_rows;
  F64 keep_means, keep_pred;
  const KnnSimilarity s = check_similarity(x, means, keep_means, min_overlap, row_norms);
  if (k < 0) throw ArgError("k must be >= 0, got " + str(k));
  if (pred_means_obj.is_none()) throw ArgError("pred_means must be given");
  const double* pred_means = check_row_vector(pred_means_obj, keep_pred, n_rows, "pred_means");
  I64 rows = as_array<int64_t>(rows_obj, "rows", "int64");
  I64 cols = as_array<int64_t>(cols_obj, "cols", "int64");
  check_ndim(rows, 1, "rows");
  check_ndim(cols, 1, "cols");
  const int64_t n_q = rows.shape(0);
  if (cols.shape(0) != n_q)
    throw ArgError("cols must have one entry per query row (" + str(n_q) + "), got " +
                   str(cols.shape(0)));
  for (int64_t q = 0; q < n_q; ++q) {
    if (rows.data()[q] < 0 || rows.data()[q] >= n_rows)
      throw IndexRangeError("rows[" + str(q) + "] = " + str(rows.data()[q]) + " is outside [0, " +
                            str(n_rows) + ")");
    if (cols.data()[q] < 0 || cols.data()[q] >= n_cols)
      throw IndexRangeError("cols[" + str(q) + "] = " + str(cols.data()[q]) + " is outside [0, " +
                            str(n_cols) + ")");
  }
  F64 out_pred(n_q);
  I64 out_used(n_q);
  {
    py::gil_scoped_release release;
    knn_predict_cpu(x.m, s, pred_means, k, rows.data(), cols.data(), n_q, out_pred.mutable_data(),
                    out_used.mutable_data());
  }
  return py::make_tuple(out_pred, out_used);
}

F32 knn_scores(const py::object& a_indptr, const py::object& a_indices, const py::object& a_values,
               const py::object& rows_obj, const py::object& b_indptr, const py::object& b_indices,
               const py::object& b_values, int64_t n_cols) {
  // B (the ratings) first: A's (the weights') columns index B's rows.
  Matrix b = check_matrix(b_indptr, b_indices, b_values, n_cols, "ratings", false);
  Matrix a = check_matrix(a_indptr, a_indices, a_values, b.m.n_rows, "weights", false,
                          "the number of rows of ratings");
  I64 rows = as_array<int64_t>(rows_obj, "rows", "int64");
  check_ndim(rows, 1, "rows");
  const int64_t n_out = rows.shape(0);
  for (int64_t t = 0; t < n_out; ++t)
    if (rows.data()[t] < 0 || rows.data()[t] >= a.m.n_rows)
      throw IndexRangeError("rows[" + str(t) + "] = " + str(rows.data()[t]) + " is outside [0, " +
                            str(a.m.n_rows) + ")");
  // (NumPy refuses a shape whose size in bytes overflows, an empty one included.)
  if (static_cast<double>(std::max<int64_t>(n_out, 1)) * static_cast<double>(n_cols) * 4.0 > 0x1p62)
    throw ArgError("the output of len(rows) = " + str(n_out) + " x n_cols = " + str(n_cols) +
                   " float32 scores is too large; pass fewer rows or columns");
  F32 out({n_out, n_cols});
  {
    py::gil_scoped_release release;
    knn_scores_cpu(a.m, rows.data(), n_out, b.m, out.mutable_data());
  }
  return out;
}

}  // namespace

void bind_knn(py::module_& m) {
  m.def("knn_neighbors", &knn_neighbors, py::arg("indptr"), py::arg("indices"), py::arg("values"),
        py::arg("n_cols"), py::arg("k"), py::arg("min_overlap"), py::arg("means") = py::none(),
        py::arg("row_norms") = false,
        "k most similar rows of every row of a CSR rating matrix (use advrec.kernels.knn_neighbors).");
  m.def("knn_predict", &knn_predict, py::arg("indptr"), py::arg("indices"), py::arg("values"),
        py::arg("n_cols"), py::arg("k"), py::arg("min_overlap"), py::arg("means"),
        py::arg("row_norms"), py::arg("pred_means"), py::arg("rows"), py::arg("cols"),
        "Mean-centred kNN predictions (use advrec.kernels.knn_predict).");
  m.def("knn_scores", &knn_scores, py::arg("a_indptr"), py::arg("a_indices"), py::arg("a_values"),
        py::arg("rows"), py::arg("b_indptr"), py::arg("b_indices"), py::arg("b_values"),
        py::arg("n_cols"), "Dense rows of a sparse product (use advrec.kernels.knn_scores).");
}

}  // namespace bind
}  // namespace advrec
