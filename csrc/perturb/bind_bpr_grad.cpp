// Binding of the BPR-MF loss gradient (bpr_grad.h): strict checks (dtype, layout, shapes, equal
// dims, non-empty batch, index ranges) before the kernel reads a row, then the kernel without
// the GIL.
#include <cstdint>
#include <string>

#include "bind_util.h"
#include "perturb/bpr_grad.h"

namespace advrec {
namespace bind {

namespace {

std::string str(int64_t x) { return std::to_string(x); }

F32 table(const py::object& obj, const char* name) {
  F32 t = as_array<float>(obj, name, "float32");
  check_ndim(t, 2, name);
  return t;
}

I64 ids(const py::object& obj, const char* name) {
  I64 a = as_array<int64_t>(obj, name, "int64");
  check_ndim(a, 1, name);
  return a;
}

// First k with ids[k] outside [0, limit), or -1. The branch-free scan vectorises; the position
// is searched only when something is out of range.
int64_t first_out_of_range(const int64_t* ids, int64_t n, int64_t limit) {
  const uint64_t lim = static_cast<uint64_t>(limit);
  uint64_t any = 0;
  for (int64_t k = 0; k < n; ++k) any |= static_cast<uint64_t>(static_cast<uint64_t>(ids[k]) >= lim);
  if (!any) return -1;
  for (int64_t k = 0; k < n; ++k)
    if (static_cast<uint64_t>(ids[k]) >= lim) return k;
  return -1;
}

py::tuple mf_bpr_gradient(const py::object& P_obj, const py::object& Q_obj,
                          const py::object& users_obj, const py::object& pos_obj,
                          const py::object& neg_obj, bool user_grad, bool item_grad,
                          bool portable) {
  F32 P = table(P_obj, "P");
  F32 Q = table(Q_obj, "Q");
  const int64_t n_users = P.shape(0), n_items = Q.shape(0), dim = P.shape(1);
  if (Q.shape(1) != dim)
    throw ArgError("P and Q must have the same number of columns (the embedding dim), got " +
                   str(dim) + " and " + str(Q.shape(1)));
  I64 users = ids(users_obj, "users");
  I64 pos = ids(pos_obj, "pos");
  I64 neg = ids(neg_obj, "neg");
  const int64_t n = users.shape(0);
  if (pos.shape(0) != n || neg.shape(0) != n)
    throw ArgError("users, pos and neg must have the same length, got " + str(n) + ", " +
                   str(pos.shape(0)) + " and " + str(neg.shape(0)));
  if (n == 0) throw ArgError("users must not be empty: the loss is a mean over the triples");
  py::object gP = py::none(), gQ = py::none();
  F32 gP_arr, gQ_arr;
  float* gp = nullptr;
  float* gq = nullptr;
  if (user_grad) {
    gP_arr = F32({n_users, dim});
    gp = gP_arr.mutable_data();
    gP = gP_arr;
  }
  if (item_grad) {
    gQ_arr = F32({n_items, dim});
    gq = gQ_arr.mutable_data();
    gQ = gQ_arr;
  }
  const int64_t *u = users.data(), *i = pos.data(), *j = neg.data();
  int64_t bad_u, bad_i = -1, bad_j = -1;
  double loss = 0.0;
  {
    py::gil_scoped_release release;
    bad_u = first_out_of_range(u, n, n_users);
    if (bad_u < 0) bad_i = first_out_of_range(i, n, n_items);
    if (bad_u < 0 && bad_i < 0) bad_j = first_out_of_range(j, n, n_items);
    if (bad_u < 0 && bad_i < 0 && bad_j < 0)
      loss = mf_bpr_gradient_cpu(P.data(), n_users, Q.data(), n_items, dim, u, i, j, n, gp, gq,
                                 portable);
  }
  if (bad_u >= 0)
    throw IndexRangeError("users[" + str(bad_u) + "] = " + str(u[bad_u]) +
                          " is outside [0, n_users = " + str(n_users) + ")");
  if (bad_i >= 0)
    throw IndexRangeError("pos[" + str(bad_i) + "] = " + str(i[bad_i]) +
                          " is outside [0, n_items = " + str(n_items) + ")");
  if (bad_j >= 0)
    throw IndexRangeError("neg[" + str(bad_j) + "] = " + str(j[bad_j]) +
                          " is outside [0, n_items = " + str(n_items) + ")");
  return py::make_tuple(loss, gP, gQ);
}

}  // namespace

void bind_bpr_grad(py::module_& m) {
  m.def("mf_bpr_gradient", &mf_bpr_gradient, py::arg("P"), py::arg("Q"), py::arg("users"),
        py::arg("pos"), py::arg("neg"), py::arg("user_grad") = true, py::arg("item_grad") = true,
        py::arg("portable") = false,
        "BPR-MF loss and its gradient w.r.t. P and Q (internal; call "
        "advrec.kernels.mf_bpr_gradient).");
  m.def("mf_bpr_gradient_simd", []() { return std::string(mf_bpr_gradient_simd()); },
        "The SIMD path of mf_bpr_gradient on this CPU: 'avx2' or 'baseline'.");
}

}  // namespace bind
}  // namespace advrec
