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

py::tuple mf_bpr_gradient(const py::object& P_obj, const py::object& Q_obj,
                          const py::object& users_obj, const py::object& pos_obj,
                          const py::object& neg_obj, bool user_grad, bool item_grad,
                          bool portable) {
  F32 P = float_table(P_obj, "P");
  F32 Q = float_table(Q_obj, "Q");
  check_same_dim(P, Q);
  const int64_t n_users = P.shape(0), n_items = Q.shape(0), dim = P.shape(1);
  const Triples t = bpr_triples(users_obj, pos_obj, neg_obj);
  if (t.n == 0) throw ArgError("users must not be empty: the loss is a mean over the triples");
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
  check_triple_ranges(t, n_users, n_items);
  double loss = 0.0;
  {
    py::gil_scoped_release release;
    loss = mf_bpr_gradient_cpu(P.data(), n_users, Q.data(), n_items, dim, t.users.data(),
                               t.pos.data(), t.neg.data(), t.n, gp, gq, portable);
  }
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
