// Bindings of the Gram-matrix extreme-entry selection: check every argument (the running state
// included, for the rows a call touches), release the GIL, merge the tile in place.
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bind_util.h"
#include "select/pairs.h"

namespace advrec {
namespace bind {

namespace {

std::string pair_str(int64_t i, int64_t j) {
  return "(" + std::to_string(i) + ", " + std::to_string(j) + ")";
}

// "a strictly ranks before b" in a top (Top) or bottom list; keys are compared lexicographically.
template <bool Top>
bool ranks_before(double va, int64_t ka0, int64_t ka1, double vb, int64_t kb0, int64_t kb1) {
  if (va != vb) return Top ? va > vb : va < vb;
  return ka0 < kb0 || (ka0 == kb0 && ka1 < kb1);
}

// A pair list of the running state: real pairs 0 <= i <= j < n in rank order, then padding -1.
template <bool Top>
void check_pair_list(const double* val, const int64_t* idx, int64_t m, int64_t n,
                     const std::string& name) {
  bool padded = false;
  for (int64_t s = 0; s < m; ++s) {
    const int64_t i = idx[2 * s], j = idx[2 * s + 1];
    // Messages are built only on failure: this loop runs for every call.
    auto at = [&] { return name + "_idx[" + std::to_string(s) + "] = " + pair_str(i, j); };
    if (i == -1 && j == -1) {
      padded = true;
      continue;
    }
    if (i < 0 || j < 0 || i > j || j >= n)
      throw IndexRangeError(at() + " is neither padding (-1, -1) nor a pair 0 <= i <= j < " +
                            std::to_string(n));
    if (padded) throw ArgError(at() + " follows padding: padding must be at the tail");
    if (std::isnan(val[s])) throw ArgError(name + "_val[" + std::to_string(s) + "] is NaN");
    if (s > 0 && !ranks_before<Top>(val[s - 1], idx[2 * s - 2], idx[2 * s - 1], val[s], i, j))
      throw ArgError(name + " entries " + std::to_string(s - 1) + " and " + std::to_string(s) +
                     " are not in " + (Top ? "descending" : "ascending") +
                     " order (ties: lower (i, j) first)");
  }
}

// Row `row` of a row list: partners in [0, n) other than the row itself in rank order, then -1.
template <bool Top>
void check_row_list(const double* val, const int64_t* idx, int64_t t, int64_t n, int64_t row,
                    const std::string& name) {
  bool padded = false;
  for (int64_t s = 0; s < t; ++s) {
    const int64_t p = idx[s];
    auto at = [&] {
      return name + "_idx[" + std::to_string(row) + ", " + std::to_string(s) + "] = " +
             std::to_string(p);
    };
    if (p == -1) {
      padded = true;
      continue;
    }
    if (p < 0 || p >= n || p == row)
      throw IndexRangeError(at() + " is neither padding (-1) nor a partner in [0, " +
                            std::to_string(n) + ") other than the row itself");
    if (padded) throw ArgError(at() + " follows padding: padding must be at the tail");
    if (std::isnan(val[s]))
      throw ArgError(name + "_val[" + std::to_string(row) + ", " + std::to_string(s) + "] is NaN");
    if (s > 0 && !ranks_before<Top>(val[s - 1], idx[s - 1], 0, val[s], p, 0))
      throw ArgError(name + " row " + std::to_string(row) + " entries " + std::to_string(s - 1) +
                     " and " + std::to_string(s) + " are not in " +
                     (Top ? "descending" : "ascending") + " order (ties: lower partner first)");
  }
}

void check_writeable(const py::array& a, const char* name) {
  if (!a.writeable()) throw ArgError(std::string(name) + " must be writeable (it is updated in place)");
}

void check_shape(const py::array& a, std::vector<int64_t> shape, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t d = 0; ok && d < shape.size(); ++d) ok = a.shape(d) == shape[d];
  if (ok) return;
  auto fmt = [](const std::vector<int64_t>& s) {
    std::string out = "(";
    for (size_t d = 0; d < s.size(); ++d) out += (d ? ", " : "") + std::to_string(s[d]);
    return out + (s.size() == 1 ? ",)" : ")");
  };
  std::vector<int64_t> got(a.shape(), a.shape() + a.ndim());
  throw ArgError(std::string(name) + " must have shape " + fmt(shape) + ", got " + fmt(got));
}

void gram_extremes_update(const py::object& tile_obj, int64_t row0, int64_t col0,
                          const py::object& ptv_obj, const py::object& pti_obj,
                          const py::object& pbv_obj, const py::object& pbi_obj,
                          const py::object& rtv_obj, const py::object& rti_obj,
                          const py::object& rbv_obj, const py::object& rbi_obj) {
  F32 tile = as_array<float>(tile_obj, "tile", "float32");
  F64 ptv = as_array<double>(ptv_obj, "pair_top_val", "float64");
  I64 pti = as_array<int64_t>(pti_obj, "pair_top_idx", "int64");
  F64 pbv = as_array<double>(pbv_obj, "pair_bot_val", "float64");
  I64 pbi = as_array<int64_t>(pbi_obj, "pair_bot_idx", "int64");
  F64 rtv = as_array<double>(rtv_obj, "row_top_val", "float64");
  I64 rti = as_array<int64_t>(rti_obj, "row_top_idx", "int64");
  F64 rbv = as_array<double>(rbv_obj, "row_bot_val", "float64");
  I64 rbi = as_array<int64_t>(rbi_obj, "row_bot_idx", "int64");

  check_ndim(tile, 2, "tile");
  check_ndim(ptv, 1, "pair_top_val");
  check_ndim(rtv, 2, "row_top_val");
  const int64_t m = ptv.shape(0), n = rtv.shape(0), t = rtv.shape(1);
  check_shape(pti, {m, 2}, "pair_top_idx");
  check_shape(pbv, {m}, "pair_bot_val");
  check_shape(pbi, {m, 2}, "pair_bot_idx");
  check_shape(rti, {n, t}, "row_top_idx");
  check_shape(rbv, {n, t}, "row_bot_val");
  check_shape(rbi, {n, t}, "row_bot_idx");

  // In-place outputs: writeable, and no two of them (nor the tile) share memory.
  const std::vector<std::pair<const py::array*, const char*>> state = {
      {&ptv, "pair_top_val"}, {&pti, "pair_top_idx"}, {&pbv, "pair_bot_val"},
      {&pbi, "pair_bot_idx"}, {&rtv, "row_top_val"},  {&rti, "row_top_idx"},
      {&rbv, "row_bot_val"},  {&rbi, "row_bot_idx"}};
  for (const auto& [a, name] : state) check_writeable(*a, name);
  std::vector<std::pair<const py::array*, const char*>> all = state;
  all.emplace_back(&tile, "tile");
  for (size_t x = 0; x < all.size(); ++x)
    for (size_t y = x + 1; y < all.size(); ++y) {
      const py::array &a = *all[x].first, &b = *all[y].first;
      if (a.nbytes() == 0 || b.nbytes() == 0) continue;
      const char* a0 = static_cast<const char*>(a.data());
      const char* b0 = static_cast<const char*>(b.data());
      if (a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes())
        throw ArgError(std::string(all[x].second) + " and " + all[y].second + " share memory");
    }

  const int64_t r = tile.shape(0), c = tile.shape(1);
  if (row0 < 0 || row0 > n || r > n - row0)
    throw IndexRangeError("tile rows [row0, row0 + " + std::to_string(r) + ") = [" +
                          std::to_string(row0) + ", " + std::to_string(row0 + r) +
                          ") are outside [0, n = " + std::to_string(n) + ")");
  if (col0 < 0 || col0 > n || c > n - col0)
    throw IndexRangeError("tile columns [col0, col0 + " + std::to_string(c) + ") = [" +
                          std::to_string(col0) + ", " + std::to_string(col0 + c) +
                          ") are outside [0, n = " + std::to_string(n) + ")");

  // The state must be what this kernel writes: pair lists whole, row lists for the rows the
  // tile touches (a call costs its own rows, not all n).
  check_pair_list<true>(ptv.data(), pti.data(), m, n, "pair_top");
  check_pair_list<false>(pbv.data(), pbi.data(), m, n, "pair_bot");
  if (t > 0) {
    auto check_rows = [&](int64_t lo, int64_t hi) {
      for (int64_t j = lo; j < hi; ++j) {
        check_row_list<true>(rtv.data() + j * t, rti.data() + j * t, t, n, j, "row_top");
        check_row_list<false>(rbv.data() + j * t, rbi.data() + j * t, t, n, j, "row_bot");
      }
    };
    if (r > 0 && c > 0) {
      check_rows(row0, row0 + r);
      check_rows(std::max(col0, row0 + r), col0 + c);  // columns not already checked as rows
      check_rows(col0, std::min(col0 + c, row0));
    }
  }

  advrec::GramState s;
  s.n = n;
  s.m = m;
  s.t = t;
  s.pair_top_val = ptv.mutable_data();
  s.pair_top_idx = pti.mutable_data();
  s.pair_bot_val = pbv.mutable_data();
  s.pair_bot_idx = pbi.mutable_data();
  s.row_top_val = rtv.mutable_data();
  s.row_top_idx = rti.mutable_data();
  s.row_bot_val = rbv.mutable_data();
  s.row_bot_idx = rbi.mutable_data();
  bool ok;
  {
    py::gil_scoped_release release;
    ok = advrec::gram_extremes_update_cpu(tile.data(), r, c, row0, col0, s);
  }
  if (!ok) throw ArgError("tile contains NaN");
}

}  // namespace

void bind_pairs(py::module_& m) {
  m.def("gram_extremes_update", &gram_extremes_update, py::arg("tile"), py::arg("row0"),
        py::arg("col0"), py::arg("pair_top_val"), py::arg("pair_top_idx"),
        py::arg("pair_bot_val"), py::arg("pair_bot_idx"), py::arg("row_top_val"),
        py::arg("row_top_idx"), py::arg("row_bot_val"), py::arg("row_bot_idx"),
        "Merge the Gram tile G[row0:row0+r, col0:col0+c] (entries with column < row ignored) "
        "into the running extreme-entry state, in place (internal; use "
        "advrec.kernels.gram_extremes).");
}

}  // namespace bind
}  // namespace advrec
