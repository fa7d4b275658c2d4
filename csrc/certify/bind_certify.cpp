// Bindings of the FM certification kernels: strict checks (dtype, layout, shapes, CSR structure,
// ranges, finiteness) before any pointer is read, then the kernel without the GIL.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "bind_util.h"
#include "certify/fm_certify.h"

namespace advrec {
namespace bind {

namespace {

using advrec::fmcert::Method;
using advrec::fmcert::Problem;

std::string str(int64_t v) { return std::to_string(v); }

Method parse_method(const std::string& name) {
  if (name == "greedy") return Method::kGreedy;
  if (name == "paper") return Method::kPaper;
  if (name == "joint") return Method::kJoint;
  if (name == "best") return Method::kBest;
  if (name == "exact") return Method::kExact;
  throw ArgError("method must be one of 'greedy', 'paper', 'joint', 'best', 'exact', got '" +
                 name + "'");
}

// float32 NaN/inf have all exponent bits set: one vectorisable pass, then locate the culprit.
void check_finite(const float* a, int64_t size, const char* name) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < size; ++i) {
    uint32_t bits;
    std::memcpy(&bits, a + i, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (!bad) return;
  for (int64_t i = 0; i < size; ++i)
    if (!std::isfinite(a[i]))
      throw ArgError(std::string(name) + " contains NaN or inf (flat index " + str(i) + ")");
}

void check_finite(const double* a, int64_t size, const char* name) {
  for (int64_t i = 0; i < size; ++i)
    if (!std::isfinite(a[i]))
      throw ArgError(std::string(name) + " contains NaN or inf (flat index " + str(i) + ")");
}

// Keeps the validated arrays alive and the Problem that points into them.
struct Args {
  I64 indptr, indices, perturbable;
  F32 w, V, p, gram;
  F64 pair_top, pair_bot, row_top, row_bot, s;
  Problem pr;
};

void check_instances(Args& a, const py::object& indptr, const py::object& indices) {
  a.indptr = as_array<int64_t>(indptr, "indptr", "int64");
  a.indices = as_array<int64_t>(indices, "indices", "int64");
  check_ndim(a.indptr, 1, "indptr");
  check_ndim(a.indices, 1, "indices");
  const int64_t len = a.indptr.shape(0);
  if (len < 1) throw ArgError("indptr must have at least one entry (rows + 1)");
  const int64_t* ip = a.indptr.data();
  if (ip[0] != 0) throw ArgError("indptr must start at 0, got " + str(ip[0]));
  for (int64_t r = 1; r < len; ++r)
    if (ip[r] < ip[r - 1])
      throw ArgError("indptr must be non-decreasing: indptr[" + str(r) + "] = " + str(ip[r]) +
                     " < indptr[" + str(r - 1) + "] = " + str(ip[r - 1]));
  if (ip[len - 1] != a.indices.shape(0))
    throw ArgError("indptr[-1] (" + str(ip[len - 1]) + ") must equal len(indices) (" +
                   str(a.indices.shape(0)) + ")");
  const int64_t d = a.pr.d;
  const int64_t* ix = a.indices.data();
  for (int64_t r = 0; r + 1 < len; ++r)
    for (int64_t i = ip[r]; i < ip[r + 1]; ++i) {
      if (ix[i] < 0 || ix[i] >= d)
        throw IndexRangeError("indices[" + str(i) + "] = " + str(ix[i]) + " is outside [0, " +
                              str(d) + ") (d = len(w))");
      if (i > ip[r] && ix[i] <= ix[i - 1])
        throw ArgError("indices of row " + str(r) + " must be strictly increasing (" +
                       str(ix[i - 1]) + " then " + str(ix[i]) + ")");
    }
  a.pr.indptr = ip;
  a.pr.indices = ix;
  a.pr.m = len - 1;
}

void check_model(Args& a, double w0, const py::object& w, const py::object& V) {
  if (!std::isfinite(w0)) throw ArgError("w0 must be finite, got " + std::to_string(w0));
  a.w = as_array<float>(w, "w", "float32");
  a.V = as_array<float>(V, "V", "float32");
  check_ndim(a.w, 1, "w");
  check_ndim(a.V, 2, "V");
  const int64_t d = a.w.shape(0);
  if (a.V.shape(0) != d)
    throw ArgError("V must have one row per feature (len(w) = " + str(d) + "), got " +
                   str(a.V.shape(0)));
  check_finite(a.w.data(), d, "w");
  check_finite(a.V.data(), d * a.V.shape(1), "V");
  a.pr.w0 = w0;
  a.pr.w = a.w.data();
  a.pr.V = a.V.data();
  a.pr.d = d;
  a.pr.k = a.V.shape(1);
}

void check_perturbable(Args& a, const py::object& perturbable) {
  a.perturbable = as_array<int64_t>(perturbable, "perturbable", "int64");
  check_ndim(a.perturbable, 1, "perturbable");
  const int64_t n = a.perturbable.shape(0);
  const int64_t* P = a.perturbable.data();
  for (int64_t i = 0; i < n; ++i) {
    if (P[i] < 0 || P[i] >= a.pr.d)
      throw IndexRangeError("perturbable[" + str(i) + "] = " + str(P[i]) + " is outside [0, " +
                            str(a.pr.d) + ") (d = len(w))");
    if (i > 0 && P[i] <= P[i - 1])
      throw ArgError("perturbable must be sorted and unique (" + str(P[i - 1]) + " then " +
                     str(P[i]) + ")");
  }
  a.pr.perturbable = P;
  a.pr.n = n;
}

// Tables: shapes always; sizes against the budget when the method reads them.
void check_tables(Args& a, const py::object& pair_top, const py::object& pair_bot,
                  const py::object& row_top, const py::object& row_bot, int64_t q,
                  bool needed) {
  a.pair_top = as_array<double>(pair_top, "pair_top", "float64");
  a.pair_bot = as_array<double>(pair_bot, "pair_bot", "float64");
  a.row_top = as_array<double>(row_top, "row_top", "float64");
  a.row_bot = as_array<double>(row_bot, "row_bot", "float64");
  check_ndim(a.pair_top, 1, "pair_top");
  check_ndim(a.pair_bot, 1, "pair_bot");
  check_ndim(a.row_top, 2, "row_top");
  check_ndim(a.row_bot, 2, "row_bot");
  const int64_t M = a.pair_top.shape(0), n = a.pr.n;
  if (a.pair_bot.shape(0) != M)
    throw ArgError("pair_bot must have as many entries as pair_top (" + str(M) + "), got " +
                   str(a.pair_bot.shape(0)));
  if (a.row_top.shape(0) != n)
    throw ArgError("row_top must have one row per perturbable feature (" + str(n) + "), got " +
                   str(a.row_top.shape(0)));
  const int64_t t = a.row_top.shape(1);
  if (a.row_bot.shape(0) != n || a.row_bot.shape(1) != t)
    throw ArgError("row_bot must have the shape of row_top (" + str(n) + ", " + str(t) +
                   "), got (" + str(a.row_bot.shape(0)) + ", " + str(a.row_bot.shape(1)) + ")");
  if (needed) {
    const int64_t need_pairs = q * (q + 1) / 2;
    if (M < need_pairs)
      throw ArgError("pair_top/pair_bot have " + str(M) + " entries, q = " + str(q) +
                     " needs at least q(q+1)/2 = " + str(need_pairs));
    if (t < q - 1)
      throw ArgError("row_top/row_bot have " + str(t) + " columns, q = " + str(q) +
                     " needs at least q - 1 = " + str(q - 1));
  }
  const std::pair<const double*, const char*> all[4] = {{a.pair_top.data(), "pair_top"},
                                                       {a.pair_bot.data(), "pair_bot"},
                                                       {a.row_top.data(), "row_top"},
                                                       {a.row_bot.data(), "row_bot"}};
  for (int s = 0; s < 4; ++s) {
    const int64_t size = s < 2 ? M : n * t;
    for (int64_t i = 0; i < size; ++i)
      if (std::isnan(all[s].first[i]))
        throw ArgError(std::string(all[s].second) + " contains NaN (flat index " + str(i) + ")");
  }
  // The bounds sum prefixes of the tables as the largest (smallest) entries: an unsorted table
  // (say pair_bot passed as pair_top) would give a silently wrong bound.
  auto check_sorted = [](const double* v, int64_t len, bool descending, const std::string& what) {
    for (int64_t i = 1; i < len; ++i)
      if (descending ? v[i] > v[i - 1] : v[i] < v[i - 1])
        throw ArgError(what + " must be " + (descending ? "descending" : "ascending") +
                       ": entry " + str(i) + " (" + std::to_string(v[i]) + ") follows " +
                       std::to_string(v[i - 1]));
  };
  check_sorted(a.pair_top.data(), M, true, "pair_top");
  check_sorted(a.pair_bot.data(), M, false, "pair_bot");
  for (int64_t j = 0; j < n; ++j) {
    check_sorted(a.row_top.data() + j * t, t, true, "row_top row " + str(j));
    check_sorted(a.row_bot.data() + j * t, t, false, "row_bot row " + str(j));
  }
  a.pr.pair_top = a.pair_top.data();
  a.pr.pair_bot = a.pair_bot.data();
  a.pr.M = M;
  a.pr.row_top = a.row_top.data();
  a.pr.row_bot = a.row_bot.data();
  a.pr.t = t;
}

void check_optional(Args& a, const py::object& p, const py::object& gram, const py::object& s) {
  const int64_t m = a.pr.m, n = a.pr.n;
  if (!s.is_none()) {  // the rows' sums from fm_scores_sums(..., double_sums=True)
    const int64_t k = a.pr.k;
    a.s = as_array<double>(s, "s", "float64");
    check_ndim(a.s, 2, "s");
    if (a.s.shape(0) != m || a.s.shape(1) != k)
      throw ArgError("s must have shape (rows, k) = (" + str(m) + ", " + str(k) + "), got (" +
                     str(a.s.shape(0)) + ", " + str(a.s.shape(1)) + ")");
    check_finite(a.s.data(), m * k, "s");
    a.pr.s = a.s.data();
  }
  if (!p.is_none()) {
    a.p = as_array<float>(p, "p", "float32");
    check_ndim(a.p, 2, "p");
    if (a.p.shape(0) != m || a.p.shape(1) != n)
      throw ArgError("p must have shape (rows, len(perturbable)) = (" + str(m) + ", " + str(n) +
                     "), got (" + str(a.p.shape(0)) + ", " + str(a.p.shape(1)) + ")");
    a.pr.p = a.p.data();  // finiteness: checked row by row as the kernel reads it
  }
  if (!gram.is_none()) {
    a.gram = as_array<float>(gram, "gram", "float32");
    check_ndim(a.gram, 2, "gram");
    if (a.gram.shape(0) != n || a.gram.shape(1) != n)
      throw ArgError("gram must have shape (len(perturbable), len(perturbable)) = (" + str(n) +
                     ", " + str(n) + "), got (" + str(a.gram.shape(0)) + ", " +
                     str(a.gram.shape(1)) + ")");
    check_finite(a.gram.data(), n * n, "gram");
    a.pr.gram = a.gram.data();
  }
}

constexpr int64_t kMaxQ = 1 << 30;

void check_budget(const char* name, int64_t q, int64_t node_budget) {
  if (q < 0) throw ArgError(std::string(name) + " must be >= 0, got " + str(q));
  if (q > kMaxQ) throw ArgError(std::string(name) + " is too large: " + str(q));
  if (node_budget < 1) throw ArgError("node_budget must be >= 1, got " + str(node_budget));
}

Args check_all(const py::object& indptr, const py::object& indices, double w0,
               const py::object& w, const py::object& V, const py::object& perturbable,
               const py::object& pair_top, const py::object& pair_bot,
               const py::object& row_top, const py::object& row_bot, int64_t q, Method method,
               const py::object& p, const py::object& gram,
               const py::object& s = py::none()) {
  Args a;
  check_model(a, w0, w, V);
  check_instances(a, indptr, indices);
  check_perturbable(a, perturbable);
  check_tables(a, pair_top, pair_bot, row_top, row_bot, q, method != Method::kGreedy);
  check_optional(a, p, gram, s);
  return a;
}

void raise_bad_p(int64_t row) {
  throw ArgError("p contains NaN or inf in row " + str(row));
}

py::tuple fm_certify_batch(const py::object& indptr, const py::object& indices, double w0,
                           const py::object& w, const py::object& V,
                           const py::object& perturbable, const py::object& pair_top,
                           const py::object& pair_bot, const py::object& row_top,
                           const py::object& row_bot, int64_t q, const std::string& method_name,
                           const py::object& p, const py::object& gram, int64_t node_budget) {
  const Method method = parse_method(method_name);
  check_budget("q", q, node_budget);
  Args a = check_all(indptr, indices, w0, w, V, perturbable, pair_top, pair_bot, row_top,
                     row_bot, q, method, p, gram);
  const int64_t m = a.pr.m;
  py::array_t<int8_t> status(m);
  F64 score(m), bound(m);
  I64 nodes(m), flips_indptr(m + 1);
  advrec::fmcert::CertifyOut out;
  out.status = status.mutable_data();
  out.score = score.mutable_data();
  out.bound = bound.mutable_data();
  out.nodes = nodes.mutable_data();
  out.flips_indptr = flips_indptr.mutable_data();
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = advrec::fmcert::certify(a.pr, q, method, node_budget, out);
  }
  if (bad >= 0) raise_bad_p(bad);
  I64 flips_indices(static_cast<py::ssize_t>(out.flips_indices.size()));
  if (!out.flips_indices.empty())
    std::memcpy(flips_indices.mutable_data(), out.flips_indices.data(),
                out.flips_indices.size() * sizeof(int64_t));
  return py::make_tuple(status, score, bound, flips_indptr, flips_indices, nodes);
}

// Budgets for certify_budgets: 1-D int64, strictly increasing, each in [0, kMaxQ].
std::vector<int64_t> check_budgets(const py::object& qs_obj, int64_t node_budget) {
  I64 qs = as_array<int64_t>(qs_obj, "qs", "int64");
  check_ndim(qs, 1, "qs");
  const int64_t* q = qs.data();
  const int64_t nq = qs.shape(0);
  for (int64_t b = 0; b < nq; ++b) {
    check_budget(("qs[" + str(b) + "]").c_str(), q[b], node_budget);
    if (b > 0 && q[b] <= q[b - 1])
      throw ArgError("qs must be strictly increasing (qs[" + str(b - 1) + "] = " + str(q[b - 1]) +
                     ", qs[" + str(b) + "] = " + str(q[b]) + ")");
  }
  check_budget("qs", 0, node_budget);  // node_budget even when qs is empty
  return std::vector<int64_t>(q, q + nq);
}

py::list fm_certify_budgets_batch(const py::object& indptr, const py::object& indices,
                                  double w0, const py::object& w, const py::object& V,
                                  const py::object& perturbable, const py::object& pair_top,
                                  const py::object& pair_bot, const py::object& row_top,
                                  const py::object& row_bot, const py::object& qs_obj,
                                  const std::string& method_name, const py::object& p,
                                  const py::object& gram, int64_t node_budget,
                                  const py::object& s) {
  const Method method = parse_method(method_name);
  const std::vector<int64_t> qs = check_budgets(qs_obj, node_budget);
  const int64_t q_max = qs.empty() ? 0 : qs.back();
  Args a = check_all(indptr, indices, w0, w, V, perturbable, pair_top, pair_bot, row_top,
                     row_bot, q_max, method, p, gram, s);
  const int64_t m = a.pr.m;
  const size_t nq = qs.size();
  std::vector<py::array_t<int8_t>> status;
  std::vector<F64> score, bound;
  std::vector<I64> nodes, flips_indptr;
  std::vector<advrec::fmcert::CertifyOut> outs(nq);
  for (size_t b = 0; b < nq; ++b) {
    status.emplace_back(m);
    score.emplace_back(m);
    bound.emplace_back(m);
    nodes.emplace_back(m);
    flips_indptr.emplace_back(m + 1);
    outs[b].status = status[b].mutable_data();
    outs[b].score = score[b].mutable_data();
    outs[b].bound = bound[b].mutable_data();
    outs[b].nodes = nodes[b].mutable_data();
    outs[b].flips_indptr = flips_indptr[b].mutable_data();
  }
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = advrec::fmcert::certify_budgets(a.pr, qs, method, node_budget, outs);
  }
  if (bad >= 0) raise_bad_p(bad);
  py::list result;
  for (size_t b = 0; b < nq; ++b) {
    const std::vector<int64_t>& fi = outs[b].flips_indices;
    I64 flips_indices(static_cast<py::ssize_t>(fi.size()));
    if (!fi.empty())
      std::memcpy(flips_indices.mutable_data(), fi.data(), fi.size() * sizeof(int64_t));
    result.append(py::make_tuple(status[b], score[b], bound[b], flips_indptr[b], flips_indices,
                                 nodes[b]));
  }
  return result;
}

I32 fm_max_q_batch(const py::object& indptr, const py::object& indices, double w0,
                   const py::object& w, const py::object& V, const py::object& perturbable,
                   const py::object& pair_top, const py::object& pair_bot,
                   const py::object& row_top, const py::object& row_bot, int64_t q_max,
                   const std::string& method_name, const py::object& p, const py::object& gram,
                   int64_t node_budget, const py::object& s) {
  const Method method = parse_method(method_name);
  if (method == Method::kGreedy)
    throw ArgError("method 'greedy' never certifies robustness, so it has no max_q; use "
                   "'paper', 'joint', 'best' or 'exact'");
  check_budget("q_max", q_max, node_budget);
  Args a = check_all(indptr, indices, w0, w, V, perturbable, pair_top, pair_bot, row_top,
                     row_bot, q_max, method, p, gram, s);
  I32 out(a.pr.m);
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = advrec::fmcert::max_q(a.pr, q_max, method, node_budget, out.mutable_data());
  }
  if (bad >= 0) raise_bad_p(bad);
  return out;
}

F64 fm_scores(const py::object& indptr, const py::object& indices, double w0,
              const py::object& w, const py::object& V) {
  Args a;
  check_model(a, w0, w, V);
  check_instances(a, indptr, indices);
  F64 out(a.pr.m);
  {
    py::gil_scoped_release release;
    advrec::fmcert::scores(a.pr, out.mutable_data());
  }
  return out;
}

py::tuple fm_scores_sums(const py::object& indptr, const py::object& indices, double w0,
                         const py::object& w, const py::object& V, bool double_sums) {
  Args a;
  check_model(a, w0, w, V);
  check_instances(a, indptr, indices);
  F64 out(a.pr.m);
  if (double_sums) {
    F64 sums({a.pr.m, a.pr.k});
    {
      py::gil_scoped_release release;
      advrec::fmcert::scores(a.pr, out.mutable_data(), nullptr, sums.mutable_data());
    }
    return py::make_tuple(out, sums);
  }
  F32 sums({a.pr.m, a.pr.k});
  {
    py::gil_scoped_release release;
    advrec::fmcert::scores(a.pr, out.mutable_data(), sums.mutable_data());
  }
  return py::make_tuple(out, sums);
}

}  // namespace

void bind_certify(py::module_& m) {
  m.def("fm_scores_sums", &fm_scores_sums, py::arg("indptr"), py::arg("indices"), py::arg("w0"),
        py::arg("w"), py::arg("V"), py::arg("double_sums") = false,
        "FM scores f(x) (double) and instance sums s (summed in double; float32 [m, k], or "
        "float64 with double_sums).");
  m.def("fm_scores", &fm_scores, py::arg("indptr"), py::arg("indices"), py::arg("w0"),
        py::arg("w"), py::arg("V"), "FM scores f(x) of CSR rows, accumulated in double.");
  m.def("fm_certify_batch", &fm_certify_batch, py::arg("indptr"), py::arg("indices"),
        py::arg("w0"), py::arg("w"), py::arg("V"), py::arg("perturbable"), py::arg("pair_top"),
        py::arg("pair_bot"), py::arg("row_top"), py::arg("row_bot"), py::arg("q"),
        py::arg("method"), py::arg("p"), py::arg("gram"), py::arg("node_budget"),
        "Certify FM instances at budget q: (status, score, bound, flips_indptr, flips_indices, "
        "nodes). Internal; call advrec.kernels.fm_certify_batch.");
  m.def("fm_certify_budgets_batch", &fm_certify_budgets_batch, py::arg("indptr"),
        py::arg("indices"), py::arg("w0"), py::arg("w"), py::arg("V"), py::arg("perturbable"),
        py::arg("pair_top"), py::arg("pair_bot"), py::arg("row_top"), py::arg("row_bot"),
        py::arg("qs"), py::arg("method"), py::arg("p"), py::arg("gram"), py::arg("node_budget"),
        py::arg("s") = py::none(),
        "fm_certify_batch at every budget of qs (strictly increasing) in one pass: a list of "
        "its tuples. Internal; call advrec.kernels.fm_certify_budgets_batch.");
  m.def("fm_max_q_batch", &fm_max_q_batch, py::arg("indptr"), py::arg("indices"),
        py::arg("w0"), py::arg("w"), py::arg("V"), py::arg("perturbable"), py::arg("pair_top"),
        py::arg("pair_bot"), py::arg("row_top"), py::arg("row_bot"), py::arg("q_max"),
        py::arg("method"), py::arg("p"), py::arg("gram"), py::arg("node_budget"),
        py::arg("s") = py::none(),
        "Largest certified budget per FM instance. Internal; call "
        "advrec.kernels.fm_max_q_batch.");
}

}  // namespace bind
}  // namespace advrec
