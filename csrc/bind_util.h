// Argument checks shared by the binding files (bindings.cpp, */bind_*.cpp): the only headers
// besides those files that include pybind11. Every check names the argument it rejects.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "common.h"

namespace advrec {
namespace bind {

namespace py = pybind11;

using advrec::ArgError;
using advrec::IndexRangeError;
using F64 = py::array_t<double, py::array::c_style>;
using I32 = py::array_t<int32_t, py::array::c_style>;

// Each kernel family binds its functions from its own file; bindings.cpp calls these.
void bind_pairs(py::module_& m);         // csrc/select/bind_pairs.cpp
void bind_certify(py::module_& m);       // csrc/certify/bind_certify.cpp
void bind_certify_cuda(py::module_& m);  // csrc/certify/bind_certify_cuda.cpp (CUDA builds only)
void bind_perturb(py::module_& m);  // csrc/perturb/bind_perturb.cpp
void bind_bpr_grad(py::module_& m);  // csrc/perturb/bind_bpr_grad.cpp
void bind_bpr_train(py::module_& m);  // csrc/train/bind_bpr_train.cpp
void bind_cascade(py::module_& m);  // csrc/seq/bind_cascade.cpp
void bind_serve(py::module_& m);  // csrc/serve/bind_serve.cpp

using F32 = py::array_t<float, py::array::c_style>;
using I64 = py::array_t<int64_t, py::array::c_style>;

// Strict conversion: the Python wrappers cast; here a wrong dtype or layout is an error, never
// a silent copy.
template <typename T>
py::array_t<T, py::array::c_style> as_array(const py::handle& obj, const char* name,
                                            const char* dtype_name) {
  if (!py::isinstance<py::array>(obj))
    throw ArgError(std::string(name) + " must be a numpy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  // Equivalence (PyArray_EquivTypes), not identity: numba and others hand out equal dtypes
  // that are distinct descriptor objects.
  if (!py::isinstance<py::array_t<T>>(arr))
    throw ArgError(std::string(name) + " must have dtype " + dtype_name + ", got " +
                   std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style))
    throw ArgError(std::string(name) + " must be C-contiguous");
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(arr);
}

inline void check_ndim(const py::array& a, int ndim, const char* name) {
  if (a.ndim() != ndim)
    throw ArgError(std::string(name) + " must be " + std::to_string(ndim) + "-D, got " +
                   std::to_string(a.ndim()) + "-D");
}

// The structure of a CSR (indptr, indices) over `n_rows` rows (-1: any number of rows).
inline void check_csr_structure(const I64& indptr, const I64& indices, int64_t n_rows, const char* name) {
  check_ndim(indptr, 1, (std::string(name) + " indptr").c_str());
  check_ndim(indices, 1, (std::string(name) + " indices").c_str());
  if (n_rows >= 0 && indptr.shape(0) != n_rows + 1)
    throw ArgError(std::string(name) + " indptr must have length " + std::to_string(n_rows + 1) +
                   ", got " + std::to_string(indptr.shape(0)));
  if (indptr.shape(0) < 1) throw ArgError(std::string(name) + " indptr must not be empty");
  const int64_t* p = indptr.data();
  const int64_t n = indptr.shape(0);
  if (p[0] != 0) throw ArgError(std::string(name) + " indptr must start at 0");
  for (int64_t i = 1; i < n; ++i)
    if (p[i] < p[i - 1]) throw ArgError(std::string(name) + " indptr must be non-decreasing");
  if (p[n - 1] != indices.shape(0))
    throw ArgError(std::string(name) + " indptr[-1] (" + std::to_string(p[n - 1]) +
                   ") must equal len(indices) (" + std::to_string(indices.shape(0)) + ")");
}

// A float32 [rows, cols] table and an int64 id vector, strictly (as_array).
inline F32 float_table(const py::object& obj, const char* name) {
  F32 t = as_array<float>(obj, name, "float32");
  check_ndim(t, 2, name);
  return t;
}

inline I64 id_vector(const py::object& obj, const char* name) {
  I64 a = as_array<int64_t>(obj, name, "int64");
  check_ndim(a, 1, name);
  return a;
}

// First k with ids[k] outside [0, limit), or -1. The branch-free scan vectorises; the position
// is searched only when something is out of range.
inline int64_t first_out_of_range(const int64_t* ids, int64_t n, int64_t limit) {
  const uint64_t lim = static_cast<uint64_t>(limit);
  uint64_t any = 0;
  for (int64_t k = 0; k < n; ++k) any |= static_cast<uint64_t>(static_cast<uint64_t>(ids[k]) >= lim);
  if (!any) return -1;
  for (int64_t k = 0; k < n; ++k)
    if (static_cast<uint64_t>(ids[k]) >= lim) return k;
  return -1;
}

// BPR triples (users, pos, neg): three int64 vectors of one length, checked, and then their
// ranges against the tables (scanned without the GIL); the messages name the argument.
struct Triples {
  I64 users, pos, neg;
  int64_t n;
};

inline Triples bpr_triples(const py::object& users_obj, const py::object& pos_obj,
                           const py::object& neg_obj) {
  Triples t{id_vector(users_obj, "users"), id_vector(pos_obj, "pos"), id_vector(neg_obj, "neg"), 0};
  t.n = t.users.shape(0);
  if (t.pos.shape(0) != t.n || t.neg.shape(0) != t.n)
    throw ArgError("users, pos and neg must have the same length, got " + std::to_string(t.n) +
                   ", " + std::to_string(t.pos.shape(0)) + " and " + std::to_string(t.neg.shape(0)));
  return t;
}

inline void check_triple_ranges(const Triples& t, int64_t n_users, int64_t n_items) {
  const int64_t *u = t.users.data(), *i = t.pos.data(), *j = t.neg.data();
  int64_t bad_u, bad_i = -1, bad_j = -1;
  {
    py::gil_scoped_release release;
    bad_u = first_out_of_range(u, t.n, n_users);
    if (bad_u < 0) bad_i = first_out_of_range(i, t.n, n_items);
    if (bad_u < 0 && bad_i < 0) bad_j = first_out_of_range(j, t.n, n_items);
  }
  auto fail = [](const char* name, int64_t k, int64_t v, const char* limit, int64_t n) {
    throw IndexRangeError(std::string(name) + "[" + std::to_string(k) + "] = " + std::to_string(v) +
                          " is outside [0, " + limit + " = " + std::to_string(n) + ")");
  };
  if (bad_u >= 0) fail("users", bad_u, u[bad_u], "n_users", n_users);
  if (bad_i >= 0) fail("pos", bad_i, i[bad_i], "n_items", n_items);
  if (bad_j >= 0) fail("neg", bad_j, j[bad_j], "n_items", n_items);
}

// Two embedding tables P [n_users, dim] and Q [n_items, dim] with the same dim.
inline void check_same_dim(const F32& P, const F32& Q) {
  if (Q.shape(1) != P.shape(1))
    throw ArgError("P and Q must have the same number of columns (the embedding dim), got " +
                   std::to_string(P.shape(1)) + " and " + std::to_string(Q.shape(1)));
}

// Range check of the indices of CSR row `row`: only rows a kernel reads are checked, so a
// tile of a large exclusion CSR costs the tile's entries, not the whole matrix.
inline void check_csr_row(const int64_t* indptr, const int64_t* indices, int64_t row, int64_t n_cols,
                   const char* name) {
  for (int64_t i = indptr[row]; i < indptr[row + 1]; ++i)
    if (indices[i] < 0 || indices[i] >= n_cols)
      throw IndexRangeError(std::string(name) + " indices[" + std::to_string(i) + "] = " +
                            std::to_string(indices[i]) + " is outside [0, " +
                            std::to_string(n_cols) + ")");
}

inline void check_csr(const I64& indptr, const I64& indices, int64_t n_rows, int64_t n_cols,
               const char* name) {
  check_csr_structure(indptr, indices, n_rows, name);
  for (int64_t r = 0; r + 1 < indptr.shape(0); ++r)
    check_csr_row(indptr.data(), indices.data(), r, n_cols, name);
}

}  // namespace bind
}  // namespace advrec
