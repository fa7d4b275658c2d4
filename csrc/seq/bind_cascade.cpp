// Binding of the cascade-effects kernel (cascade.h): checks the arguments and every entry of the
// sequences (ids >= -1, right-aligned) without the GIL before anything is computed or returned.
#include <cstdint>
#include <string>

#include "bind_util.h"
#include "seq/cascade.h"

namespace advrec {
namespace bind {

namespace {

std::string str(int64_t x) { return std::to_string(x); }

// More threads than this is a mistake, and asking the OpenMP runtime for them can abort.
constexpr int kMaxThreads = 256;

CascadeComponents parse_components(const std::string& s) {
  if (s == "sequence") return CascadeComponents::Sequence;
  if (s == "cross") return CascadeComponents::Cross;
  if (s == "both") return CascadeComponents::Both;
  throw ArgError("components must be one of 'sequence', 'cross', 'both', got '" + s + "'");
}

CascadeNormalize parse_normalize(const std::string& s) {
  if (s == "none") return CascadeNormalize::None;
  if (s == "minmax") return CascadeNormalize::MinMax;
  if (s == "inverse-mean") return CascadeNormalize::InverseMean;
  throw ArgError("normalize must be one of 'none', 'minmax', 'inverse-mean', got '" + s + "'");
}

CascadeIdMap parse_id_map(const std::string& s) {
  if (s == "auto") return CascadeIdMap::Auto;
  if (s == "dense") return CascadeIdMap::Dense;
  if (s == "hash") return CascadeIdMap::Hash;
  throw ArgError("id_map must be one of 'auto', 'dense', 'hash', got '" + s + "'");
}

const char* id_map_name(CascadeIdMap m) {
  return m == CascadeIdMap::Dense ? "dense" : (m == CascadeIdMap::Hash ? "hash" : "auto");
}

py::tuple cascade_effects(const py::object& seq_obj, int64_t batch_size,
                          const std::string& components, const std::string& normalize,
                          int threads, const std::string& id_map_name_in) {
  const CascadeComponents comp = parse_components(components);
  const CascadeNormalize norm = parse_normalize(normalize);
  const CascadeIdMap id_map = parse_id_map(id_map_name_in);
  if (batch_size < 1) throw ArgError("batch_size must be a positive int, got " + str(batch_size));
  if (threads < 0 || threads > kMaxThreads)
    throw ArgError("threads must be in [0, " + str(kMaxThreads) + "] (0: OpenMP's default), got " +
                   str(threads));
  I64 seq = as_array<int64_t>(seq_obj, "sequences", "int64");
  check_ndim(seq, 2, "sequences");
  const int64_t m = seq.shape(0), T = seq.shape(1);
  const int64_t* s = seq.data();
  CascadeScan scan;
  {
    py::gil_scoped_release release;
    scan = cascade_scan(s, m, T, threads);
  }
  if (scan.bad_kind == 1)
    throw ArgError("sequences[" + str(scan.bad_row) + ", " + str(scan.bad_col) + "] = " +
                   str(scan.bad_value) + ": item ids must be >= 0 (-1 pads)");
  if (scan.bad_kind == 2)
    throw ArgError("sequences row " + str(scan.bad_row) + " has padding (-1) at column " +
                   str(scan.bad_col) +
                   " after an item: rows must be right-aligned (padding only before the first item)");
  if (id_map == CascadeIdMap::Dense && !cascade_dense_ok(scan))
    throw ArgError("id_map='dense' needs max id < items + 65536 (" + str(scan.n_items + 65536) +
                   "), got max id " + str(scan.max_id) + "; use 'auto' or 'hash'");
  F32 out({m, T});
  float* o = out.mutable_data();
  CascadeIdMap used;
  {
    py::gil_scoped_release release;
    used = cascade_effects_cpu(s, m, T, batch_size, comp, norm, id_map, scan, threads, o);
  }
  return py::make_tuple(out, id_map_name(used));
}

}  // namespace

void bind_cascade(py::module_& m) {
  m.def("cascade_effects", &cascade_effects, py::arg("sequences"), py::arg("batch_size"),
        py::arg("components") = "both", py::arg("normalize") = "none", py::arg("threads") = 0,
        py::arg("id_map") = "auto",
        "Cascade effects of right-aligned padded int64 sequences -> (float32 [m, T], id map "
        "used) (internal; call advrec.kernels.cascade_effects).");
}

}  // namespace bind
}  // namespace advrec
