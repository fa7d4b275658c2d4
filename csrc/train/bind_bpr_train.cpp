// Binding of the BPR-MF training epoch (bpr_train.h): strict checks (dtype, layout, shapes,
// writability, no aliasing between the arrays written, index ranges, hyper-parameters) before
// the kernel writes anything, then the kernel without the GIL.
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bind_util.h"
#include "train/bpr_train.h"

namespace advrec {
namespace bind {

namespace {

constexpr int kMaxThreads = 256;

std::string str(int64_t x) { return std::to_string(x); }

F32 writable_table(const py::object& obj, const char* name, int64_t rows, int64_t cols) {
  F32 t = float_table(obj, name);
  if (!t.writeable()) throw ArgError(std::string(name) + " must be writable (it is updated in place)");
  if (rows >= 0 && (t.shape(0) != rows || t.shape(1) != cols))
    throw ArgError(std::string(name) + " must have shape (" + str(rows) + ", " + str(cols) +
                   "), got (" + str(t.shape(0)) + ", " + str(t.shape(1)) + ")");
  return t;
}

void check_finite(double v, const char* name, bool positive) {
  if (!std::isfinite(v) || v < 0.0 || (positive && v == 0.0))
    throw ArgError(std::string(name) + " must be a finite number " + (positive ? "> 0" : ">= 0") +
                   ", got " + std::to_string(v));
}

py::tuple mf_bpr_train_epoch(const py::object& P_obj, const py::object& Q_obj,
                             const py::object& users_obj, const py::object& pos_obj,
                             const py::object& neg_obj, int64_t batch_size, double l2,
                             const std::string& optimizer, double lr, double weight_decay,
                             double beta1, double beta2, double eps, double lr_decay,
                             const py::list& state, int64_t step, bool adv_user, bool adv_item,
                             const std::string& adv_norm, double adv_eps, double adv_lam,
                             int threads, bool portable) {
  F32 P = writable_table(P_obj, "P", -1, -1);
  F32 Q = writable_table(Q_obj, "Q", -1, -1);
  check_same_dim(P, Q);
  const int64_t n_users = P.shape(0), n_items = Q.shape(0), dim = P.shape(1);
  const Triples t = bpr_triples(users_obj, pos_obj, neg_obj);
  const int64_t n = t.n;
  if (n == 0) throw ArgError("users must not be empty: an epoch needs at least one triple");
  if (batch_size < 1) throw ArgError("batch_size must be >= 1, got " + str(batch_size));
  if (threads < 1 || threads > kMaxThreads)
    throw ArgError("threads must be in [1, " + str(kMaxThreads) + "], got " + str(threads));
  // one optimiser step per batch: the counter must not overflow over the epoch
  const int64_t n_batches = n / batch_size + (n % batch_size != 0);
  if (step < 0 || step > INT64_MAX - n_batches)
    throw ArgError("step must be in [0, " + str(INT64_MAX - n_batches) + "] (one optimiser step per batch of " +
                   str(n_batches) + "), got " + str(step));
  check_finite(l2, "l2", false);
  check_finite(lr, "lr", true);
  check_finite(weight_decay, "weight_decay", false);
  check_finite(eps, "eps", false);
  check_finite(lr_decay, "lr_decay", false);

  BprOptimSpec opt;
  opt.lr = lr;
  opt.weight_decay = weight_decay;
  opt.eps = eps;
  opt.lr_decay = lr_decay;
  size_t n_state = 0;
  if (optimizer == "adam") {
    opt.kind = BprOptimizer::kAdam;
    if (!(beta1 >= 0.0 && beta1 < 1.0)) throw ArgError("beta1 must be in [0, 1), got " + std::to_string(beta1));
    if (!(beta2 >= 0.0 && beta2 < 1.0)) throw ArgError("beta2 must be in [0, 1), got " + std::to_string(beta2));
    opt.beta1 = beta1;
    opt.beta2 = beta2;
    n_state = 4;
  } else if (optimizer == "adagrad") {
    opt.kind = BprOptimizer::kAdagrad;
    n_state = 2;
  } else if (optimizer == "sgd") {
    opt.kind = BprOptimizer::kSgd;
  } else {
    throw ArgError("optimizer must be 'adam', 'adagrad' or 'sgd', got '" + optimizer + "'");
  }
  if (static_cast<size_t>(py::len(state)) != n_state)
    throw ArgError("state must hold " + str(static_cast<int64_t>(n_state)) + " arrays for " +
                   optimizer + ", got " + str(static_cast<int64_t>(py::len(state))));
  // Adam: [m_P, v_P, m_Q, v_Q]; Adagrad: [sum_P, sum_Q].
  std::vector<F32> st;
  static const char* kNames[4] = {"state[0]", "state[1]", "state[2]", "state[3]"};
  for (size_t k = 0; k < n_state; ++k) {
    const bool user_table = n_state == 4 ? k < 2 : k == 0;
    st.push_back(writable_table(state[k], kNames[k], user_table ? n_users : n_items, dim));
  }
  // The kernel writes P, Q and every state array: no two may share memory.
  std::vector<std::pair<const char*, py::array>> written = {{"P", P}, {"Q", Q}};
  for (size_t k = 0; k < n_state; ++k) written.push_back({kNames[k], st[k]});
  for (size_t a = 0; a < written.size(); ++a)
    for (size_t b = a + 1; b < written.size(); ++b) {
      const char* pa = static_cast<const char*>(written[a].second.data());
      const char* pb = static_cast<const char*>(written[b].second.data());
      const char* ea = pa + written[a].second.nbytes();
      const char* eb = pb + written[b].second.nbytes();
      if (pa < eb && pb < ea)
        throw ArgError(std::string(written[a].first) + " and " + written[b].first +
                       " must not share memory");
    }

  BprAdvSpec adv;
  adv.user = adv_user;
  adv.item = adv_item;
  if (adv_user || adv_item) {
    check_finite(adv_eps, "adv_eps", false);
    check_finite(adv_lam, "adv_lam", false);
    if (adv_norm == "l2")
      adv.norm = BprAdvNorm::kL2;
    else if (adv_norm == "linf")
      adv.norm = BprAdvNorm::kLinf;
    else if (adv_norm == "l2-step-linf-clip")
      adv.norm = BprAdvNorm::kL2StepLinfClip;
    else
      throw ArgError("adv_norm must be 'l2', 'linf' or 'l2-step-linf-clip', got '" + adv_norm + "'");
    adv.eps = adv_eps;
    adv.lam = adv_lam;
  }

  float* s[4] = {nullptr, nullptr, nullptr, nullptr};
  if (n_state == 4)
    for (int k = 0; k < 4; ++k) s[k] = st[k].mutable_data();
  if (n_state == 2) {
    s[0] = st[0].mutable_data();
    s[2] = st[1].mutable_data();
  }
  check_triple_ranges(t, n_users, n_items);
  double loss = 0.0;
  {
    py::gil_scoped_release release;
    loss = advrec::mf_bpr_train_epoch(P.mutable_data(), n_users, Q.mutable_data(), n_items, dim,
                                      t.users.data(), t.pos.data(), t.neg.data(), n, batch_size, l2,
                                      opt, adv, s[0], s[1], s[2], s[3], &step, threads, portable);
  }
  return py::make_tuple(loss, step);
}

}  // namespace

void bind_bpr_train(py::module_& m) {
  m.def("mf_bpr_train_epoch", &mf_bpr_train_epoch, py::arg("P"), py::arg("Q"), py::arg("users"),
        py::arg("pos"), py::arg("neg"), py::arg("batch_size"), py::arg("l2"),
        py::arg("optimizer"), py::arg("lr"), py::arg("weight_decay"), py::arg("beta1"),
        py::arg("beta2"), py::arg("eps"), py::arg("lr_decay"), py::arg("state"),
        py::arg("step"), py::arg("adv_user") = false, py::arg("adv_item") = false,
        py::arg("adv_norm") = "l2", py::arg("adv_eps") = 0.0, py::arg("adv_lam") = 1.0,
        py::arg("threads") = 1, py::arg("portable") = false,
        "One BPR-MF training epoch in place; returns (epoch loss, optimiser step) (internal; "
        "call advrec.kernels.mf_bpr_train_epoch).");
}

}  // namespace bind
}  // namespace advrec
