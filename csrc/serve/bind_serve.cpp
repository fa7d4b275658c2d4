// Binding of the serving top-k merge (serve_topk.h). Every pointer the kernel reads is checked first,
// but only the exclusion rows of this tile's users (a tile of a 100K-user CSR costs its own
// entries): each row's bounds, its indices in [0, n_items) and strictly ascending.
#include <algorithm>
#include <cstdint>
#include <string>

#include "bind_util.h"
#include "serve/serve_topk.h"

namespace advrec {
namespace bind {

namespace {

std::string str(int64_t x) { return std::to_string(x); }

constexpr int kMaxThreads = 256;

void serve_topk_merge(const py::object& scores_obj, int64_t col0, int64_t n_items, int64_t k,
                      const py::object& users_obj, const py::object& indptr_obj,
                      const py::object& indices_obj, const py::object& best_idx_obj,
                      const py::object& best_val_obj, int threads) {
  F32 scores = as_array<float>(scores_obj, "scores", "float32");
  check_ndim(scores, 2, "scores");
  const int64_t rows = scores.shape(0), cols = scores.shape(1);
  if (k < 1) throw ArgError("k must be a positive int, got " + str(k));
  if (col0 < 0 || n_items < 0 || col0 + cols > n_items)
    throw ArgError("the block's items [" + str(col0) + ", " + str(col0 + cols) +
                   ") must lie in [0, n_items = " + str(n_items) + ")");
  if (threads < 0 || threads > kMaxThreads)
    throw ArgError("threads must be in [0, " + str(kMaxThreads) + "], got " + str(threads));
  I64 best_idx = as_array<int64_t>(best_idx_obj, "best_idx", "int64");
  F32 best_val = as_array<float>(best_val_obj, "best_val", "float32");
  for (const py::array* a : {static_cast<const py::array*>(&best_idx),
                             static_cast<const py::array*>(&best_val)}) {
    if (a->ndim() != 2 || a->shape(0) != rows || a->shape(1) != k)
      throw ArgError("best_idx and best_val must have shape [" + str(rows) + ", " + str(k) + "]");
    if (!a->writeable()) throw ArgError("best_idx and best_val must be writeable");
  }
  if (indptr_obj.is_none() != indices_obj.is_none())
    throw ArgError("exclude indptr and indices must be given together");
  const bool use_ex = !indptr_obj.is_none();
  I64 users, indptr, indices;
  const int64_t* u = nullptr;
  if (use_ex) {
    users = as_array<int64_t>(users_obj, "users", "int64");
    check_ndim(users, 1, "users");
    if (users.shape(0) != rows)
      throw ArgError("users must have one entry per score row (" + str(rows) + "), got " +
                     str(users.shape(0)));
    indptr = as_array<int64_t>(indptr_obj, "exclude indptr", "int64");
    indices = as_array<int64_t>(indices_obj, "exclude indices", "int64");
    check_ndim(indptr, 1, "exclude indptr");
    check_ndim(indices, 1, "exclude indices");
    const int64_t n_rows = indptr.shape(0) - 1, nnz = indices.shape(0);
    const int64_t* p = indptr.data();
    const int64_t* x = indices.data();
    u = users.data();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t e = u[r];
      if (e < 0 || e >= n_rows)
        throw IndexRangeError("users[" + str(r) + "] = " + str(e) + " is outside the exclusion's " +
                              str(std::max<int64_t>(n_rows, 0)) + " rows");
      if (p[e] < 0 || p[e] > p[e + 1] || p[e + 1] > nnz)
        throw ArgError("exclude indptr is not a CSR row pointer at row " + str(e) + " (" +
                       str(p[e]) + ", " + str(p[e + 1]) + " with " + str(nnz) + " indices)");
      for (int64_t q = p[e]; q < p[e + 1]; ++q) {
        if (x[q] < 0 || x[q] >= n_items)
          throw IndexRangeError("exclude indices[" + str(q) + "] = " + str(x[q]) +
                                " is outside [0, " + str(n_items) + ")");
        if (q > p[e] && x[q] <= x[q - 1])
          throw ArgError("exclude row " + str(e) +
                         " must be sorted ascending without duplicates (advrec.kernels."
                         "exclusion_csr prepares it)");
      }
    }
  }
  bool ok;
  {
    py::gil_scoped_release release;
    ok = advrec::serve_topk_merge_cpu(scores.data(), rows, cols, col0, k, u,
                                      use_ex ? indptr.data() : nullptr,
                                      use_ex ? indices.data() : nullptr, threads,
                                      best_idx.mutable_data(), best_val.mutable_data());
  }
  if (!ok) throw ArgError("scores contains NaN");
}

}  // namespace

void bind_serve(py::module_& m) {
  m.def("serve_topk_merge", &serve_topk_merge, py::arg("scores"), py::arg("col0"),
        py::arg("n_items"), py::arg("k"), py::arg("users"), py::arg("exclude_indptr"),
        py::arg("exclude_indices"), py::arg("best_idx"), py::arg("best_val"),
        py::arg("threads") = 1,
        "Merges a float32 score block (items col0..) into running top-k lists in place, with a "
        "sorted exclusion CSR indexed by users (internal; call advrec.kernels.serve_topk_merge).");
}

}  // namespace bind
}  // namespace advrec
