// Bindings of the CUDA certification twins (gram_pairs.cu, fm_greedy.cu). Compiled into every
// build by the source glob, so the body exists only in CUDA builds.
//
// The arguments are device pointers that advrec/kernels/pairs_cuda.py and certify_cuda.py have
// already validated (device, dtype, shape, contiguity, index ranges); the host entry points re-check what they rely on
// for memory safety (sizes, limits, null pointers) and throw std::invalid_argument (ValueError).
#ifdef ADVREC_WITH_CUDA
#include <cstdint>

#include "bind_util.h"
#include "cuda/cuda_api.h"

namespace advrec {
namespace bind {

namespace {

template <typename T>
T* dev(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

}  // namespace

void bind_certify_cuda(py::module_& m) {
  m.attr("GRAM_MAX_ROW_CUDA") = advrec::cuda::kMaxGramRow;
  m.attr("GRAM_MAX_PAIRS_CUDA") = advrec::cuda::kMaxGramPairs;
  m.def(
      "gram_extremes_cuda",
      [](uintptr_t V, int64_t n, int64_t k, int64_t n_pairs, int64_t n_row, int64_t tile_rows,
         uintptr_t pair_top_val, uintptr_t pair_top_idx, uintptr_t pair_bot_val,
         uintptr_t pair_bot_idx, uintptr_t row_top_val, uintptr_t row_top_idx,
         uintptr_t row_bot_val, uintptr_t row_bot_idx, uintptr_t nan_flag, uintptr_t stream) {
        py::gil_scoped_release release;
        advrec::cuda::gram_extremes(
            dev<const float>(V), n, k, n_pairs, n_row, tile_rows, dev<double>(pair_top_val),
            dev<int64_t>(pair_top_idx), dev<double>(pair_bot_val), dev<int64_t>(pair_bot_idx),
            dev<double>(row_top_val), dev<int64_t>(row_top_idx), dev<double>(row_bot_val),
            dev<int64_t>(row_bot_idx), dev<int>(nan_flag), dev<void>(stream));
      },
      py::arg("V"), py::arg("n"), py::arg("k"), py::arg("n_pairs"), py::arg("n_row"),
      py::arg("tile_rows"), py::arg("pair_top_val"), py::arg("pair_top_idx"),
      py::arg("pair_bot_val"), py::arg("pair_bot_idx"), py::arg("row_top_val"),
      py::arg("row_top_idx"), py::arg("row_bot_val"), py::arg("row_bot_idx"),
      py::arg("nan_flag"), py::arg("stream"),
      "GPU Gram extreme-entry tables on device pointers (internal; call "
      "advrec.kernels.gram_extremes with a CUDA tensor).");
  m.def(
      "fm_greedy_cuda",
      [](uintptr_t p, int64_t m_rows, int64_t n, uintptr_t hist_indptr, uintptr_t hist_indices,
         uintptr_t diag, uintptr_t V_P, int64_t k, uintptr_t sigma, uintptr_t threshold,
         int64_t q, uintptr_t selected, uintptr_t delta, uintptr_t flipped, uintptr_t stream) {
        py::gil_scoped_release release;
        advrec::cuda::fm_greedy(dev<const float>(p), m_rows, n, dev<const int64_t>(hist_indptr),
                                dev<const int64_t>(hist_indices), dev<const float>(diag),
                                dev<const float>(V_P), k, dev<const int8_t>(sigma),
                                dev<const double>(threshold), q, dev<int64_t>(selected),
                                dev<double>(delta), dev<uint8_t>(flipped), dev<void>(stream));
      },
      py::arg("p"), py::arg("m"), py::arg("n"), py::arg("hist_indptr"), py::arg("hist_indices"),
      py::arg("diag"), py::arg("V_P"), py::arg("k"), py::arg("sigma"), py::arg("threshold"),
      py::arg("q"), py::arg("selected"), py::arg("delta"), py::arg("flipped"),
      py::arg("stream"),
      "GPU greedy flip search on device pointers (internal; call "
      "advrec.kernels.certify_cuda.fm_greedy_cuda).");
}

}  // namespace bind
}  // namespace advrec
#endif  // ADVREC_WITH_CUDA
