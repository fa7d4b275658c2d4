// Module definition and the selection bindings: check arguments, release the GIL, call the kernel.
// Other kernel families bind from their own bind_*.cpp files (see bind_util.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "bind_util.h"
#include "common.h"
#include "select/topk.h"
#ifdef ADVREC_WITH_CUDA
#include "cuda/cuda_api.h"
#endif

namespace py = pybind11;
namespace advrec::bind {
void bind_knn(py::module_& m);  // csrc/select/bind_knn.cpp
}
using advrec::ArgError;
using advrec::IndexRangeError;

namespace {

using namespace advrec::bind;

struct Exclusion {
  const int64_t* indptr = nullptr;
  const int64_t* indices = nullptr;
  const int64_t* rows = nullptr;
  I64 keep_indptr, keep_indices, keep_rows;
};

// Validates the optional exclusion CSR and the tile-row -> CSR-row map.
Exclusion check_exclusion(const py::object& indptr, const py::object& indices,
                          const py::object& rows, int64_t n_tile_rows, int64_t n_items) {
  Exclusion ex;
  if (indptr.is_none() != indices.is_none())
    throw ArgError("exclude_indptr and exclude_indices must be given together");
  if (indptr.is_none()) {
    if (!rows.is_none()) throw ArgError("rows is only meaningful with an exclusion CSR");
    return ex;
  }
  ex.keep_indptr = as_array<int64_t>(indptr, "exclude_indptr", "int64");
  ex.keep_indices = as_array<int64_t>(indices, "exclude_indices", "int64");
  check_csr_structure(ex.keep_indptr, ex.keep_indices, -1, "exclude");
  const int64_t n_excl_rows = ex.keep_indptr.shape(0) - 1;
  ex.indptr = ex.keep_indptr.data();
  ex.indices = ex.keep_indices.data();
  if (rows.is_none()) {
    if (n_excl_rows != n_tile_rows)
      throw ArgError("without rows, the exclusion CSR must have one row per score row (" +
                     std::to_string(n_tile_rows) + "), got " + std::to_string(n_excl_rows));
  } else {
    ex.keep_rows = as_array<int64_t>(rows, "rows", "int64");
    check_ndim(ex.keep_rows, 1, "rows");
    if (ex.keep_rows.shape(0) != n_tile_rows)
      throw ArgError("rows must have one entry per score row (" + std::to_string(n_tile_rows) +
                     "), got " + std::to_string(ex.keep_rows.shape(0)));
    const int64_t* r = ex.keep_rows.data();
    for (int64_t i = 0; i < n_tile_rows; ++i)
      if (r[i] < 0 || r[i] >= n_excl_rows)
        throw IndexRangeError("rows[" + std::to_string(i) + "] = " + std::to_string(r[i]) +
                              " is outside the exclusion CSR's " + std::to_string(n_excl_rows) +
                              " rows");
    ex.rows = r;
  }
  for (int64_t i = 0; i < n_tile_rows; ++i)
    check_csr_row(ex.indptr, ex.indices, ex.rows ? ex.rows[i] : i, n_items, "exclude");
  return ex;
}

// float64 score tiles are selected in double (no tie is invented by rounding); every other
// dtype must already be float32 (the Python wrapper casts the lossless ones).
bool is_float64(const py::object& obj) {
  return py::isinstance<py::array>(obj) && py::isinstance<py::array_t<double>>(obj);
}

template <typename T>
py::tuple topk_masked_t(const py::object& scores_obj, int64_t k, const py::object& excl_indptr,
                        const py::object& excl_indices, const py::object& rows) {
  using Arr = py::array_t<T, py::array::c_style>;
  Arr scores = as_array<T>(scores_obj, "scores", "float32 or float64");
  check_ndim(scores, 2, "scores");
  if (k < 0) throw ArgError("k must be >= 0, got " + std::to_string(k));
  const int64_t n_rows = scores.shape(0), n_items = scores.shape(1);
  // Columns past n_items can only hold padding: refuse a k whose padding alone would take over
  // 1 GiB instead of trying to allocate it (in double: n_rows * k may overflow int64). Zero
  // rows count as one: an empty [0, k] result of an absurd k is refused too (numpy cannot even
  // describe a [0, 2^62] int64 array).
  constexpr double kEntryBytes = static_cast<double>(sizeof(int64_t) + sizeof(T));
  if (k > n_items && static_cast<double>(std::max<int64_t>(n_rows, 1)) *
                             static_cast<double>(k - n_items) * kEntryBytes >
                         static_cast<double>(int64_t{1} << 30))
    throw ArgError("k (" + std::to_string(k) + ") exceeds the " + std::to_string(n_items) +
                   " items of scores so far that its padding alone would take over 1 GiB for " +
                   std::to_string(std::max<int64_t>(n_rows, 1)) + " rows; pass k <= " +
                   std::to_string(n_items));
  Exclusion ex = check_exclusion(excl_indptr, excl_indices, rows, n_rows, n_items);
  I64 out_idx({n_rows, k});
  Arr out_val({n_rows, k});
  bool ok;
  {
    py::gil_scoped_release release;
    ok = advrec::topk_masked_cpu<T>(scores.data(), n_rows, n_items, k, ex.indptr, ex.indices,
                                    ex.rows, out_idx.mutable_data(), out_val.mutable_data());
  }
  if (!ok) throw ArgError("scores contains NaN");
  return py::make_tuple(out_idx, out_val);
}

py::tuple topk_masked(const py::object& scores_obj, int64_t k, const py::object& excl_indptr,
                      const py::object& excl_indices, const py::object& rows) {
  if (is_float64(scores_obj))
    return topk_masked_t<double>(scores_obj, k, excl_indptr, excl_indices, rows);
  return topk_masked_t<float>(scores_obj, k, excl_indptr, excl_indices, rows);
}

template <typename T>
py::tuple rank_targets_t(const py::object& scores_obj, const py::object& tgt_indptr_obj,
                         const py::object& tgt_indices_obj, const py::object& excl_indptr,
                         const py::object& excl_indices, const py::object& rows) {
  auto scores = as_array<T>(scores_obj, "scores", "float32 or float64");
  check_ndim(scores, 2, "scores");
  const int64_t n_rows = scores.shape(0), n_items = scores.shape(1);
  I64 tgt_indptr = as_array<int64_t>(tgt_indptr_obj, "target_indptr", "int64");
  I64 tgt_indices = as_array<int64_t>(tgt_indices_obj, "target_indices", "int64");
  check_csr(tgt_indptr, tgt_indices, n_rows, n_items, "targets");
  Exclusion ex = check_exclusion(excl_indptr, excl_indices, rows, n_rows, n_items);
  const int64_t nnz = tgt_indices.shape(0);
  I64 greater(nnz), equal(nnz), n_neg(n_rows);
  bool ok;
  {
    py::gil_scoped_release release;
    ok = advrec::rank_targets_cpu<T>(scores.data(), n_rows, n_items, tgt_indptr.data(),
                                     tgt_indices.data(), ex.indptr, ex.indices, ex.rows,
                                     greater.mutable_data(), equal.mutable_data(),
                                     n_neg.mutable_data());
  }
  if (!ok) throw ArgError("scores contains NaN");
  return py::make_tuple(greater, equal, n_neg);
}

py::tuple rank_targets(const py::object& scores_obj, const py::object& tgt_indptr_obj,
                       const py::object& tgt_indices_obj, const py::object& excl_indptr,
                       const py::object& excl_indices, const py::object& rows) {
  if (is_float64(scores_obj))
    return rank_targets_t<double>(scores_obj, tgt_indptr_obj, tgt_indices_obj, excl_indptr,
                                  excl_indices, rows);
  return rank_targets_t<float>(scores_obj, tgt_indptr_obj, tgt_indices_obj, excl_indptr,
                               excl_indices, rows);
}

py::dict build_info() {
  py::dict d;
  d["version"] = ADVREC_VERSION_INFO;
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
  d["compiler"] = std::string("msvc ") + std::to_string(_MSC_VER);
#else
  d["compiler"] = "unknown";
#endif
#ifdef ADVREC_OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["openmp_threads"] = advrec::openmp_max_threads();
#ifdef ADVREC_WITH_CUDA
  d["cuda_built"] = true;
  d["cuda_archs"] = ADVREC_CUDA_ARCHS;
#else
  d["cuda_built"] = false;
  d["cuda_archs"] = "";
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "advrec compiled core (C++17, optional CUDA); use advrec.kernels, not this module.";
  advrec::bind::bind_pairs(m);
  advrec::bind::bind_certify(m);
  advrec::bind::bind_perturb(m);
  advrec::bind::bind_bpr_grad(m);
  advrec::bind::bind_bpr_train(m);
  advrec::bind::bind_cascade(m);
  advrec::bind::bind_knn(m);
  advrec::bind::bind_serve(m);
  m.def("build_info", &build_info, "How the core was built: compiler, OpenMP, CUDA archs.");
  m.def("cuda_device_count", []() {
#ifdef ADVREC_WITH_CUDA
    return advrec::cuda::device_count();
#else
    return 0;
#endif
  });
  m.def("topk_masked", &topk_masked, py::arg("scores"), py::arg("k"),
        py::arg("exclude_indptr") = py::none(), py::arg("exclude_indices") = py::none(),
        py::arg("rows") = py::none());
  m.def("rank_targets", &rank_targets, py::arg("scores"), py::arg("target_indptr"),
        py::arg("target_indices"), py::arg("exclude_indptr") = py::none(),
        py::arg("exclude_indices") = py::none(), py::arg("rows") = py::none());
#ifdef ADVREC_WITH_CUDA
  m.def(
      "topk_masked_cuda",
      [](uintptr_t scores, int64_t rows, int64_t n_items, int64_t k, uintptr_t excl_indptr,
         uintptr_t excl_indices, uintptr_t excl_rows, uintptr_t out_idx, uintptr_t out_val,
         uintptr_t nan_flag, uintptr_t stream) {
        // Device pointers were validated (shape, dtype, device, ranges) by advrec.kernels.
        if (k < 0 || k > advrec::cuda::kMaxTopK)
          throw ArgError("k must be in [0, " + std::to_string(advrec::cuda::kMaxTopK) +
                         "] on CUDA, got " + std::to_string(k));
        py::gil_scoped_release release;
        advrec::cuda::topk_masked(
            reinterpret_cast<const float*>(scores), rows, n_items, k,
            reinterpret_cast<const int64_t*>(excl_indptr),
            reinterpret_cast<const int64_t*>(excl_indices),
            reinterpret_cast<const int64_t*>(excl_rows), reinterpret_cast<int64_t*>(out_idx),
            reinterpret_cast<float*>(out_val), reinterpret_cast<int*>(nan_flag),
            reinterpret_cast<void*>(stream));
      },
      "GPU masked top-k on device pointers (internal; call advrec.kernels.topk_scores).");
  advrec::bind::bind_certify_cuda(m);
#endif
}
