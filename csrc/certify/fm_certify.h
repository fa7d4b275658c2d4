// Per-instance certification of factorization machines against flipping at most q history
// features 0 -> 1 (docs/certify.md is the specification; the names below follow it).
#pragma once
#include <cstdint>
#include <vector>

namespace advrec {
namespace fmcert {

enum class Method : int { kGreedy = 0, kPaper = 1, kJoint = 2, kBest = 3, kExact = 4 };

// Everything one call reads. The binding has validated shapes, ranges, CSR structure and
// finiteness (except p, whose rows the kernel checks as it reads them).
struct Problem {
  // Instances: CSR over d features, each row strictly increasing.
  const int64_t* indptr = nullptr;
  const int64_t* indices = nullptr;
  int64_t m = 0;
  // Model: f(x) = w0 + sum w_i + 1/2 (|s|^2 + sum |v_i|^2), s = sum v_i.
  double w0 = 0.0;
  const float* w = nullptr;  // [d]
  const float* V = nullptr;  // [d, k]
  int64_t d = 0, k = 0;
  const int64_t* perturbable = nullptr;  // [n], sorted unique
  int64_t n = 0;
  // Per-model tables of G = V_P V_P^T (values only).
  const double* pair_top = nullptr;  // [M], descending
  const double* pair_bot = nullptr;  // [M], ascending
  int64_t M = 0;
  const double* row_top = nullptr;  // [n, t], descending per row
  const double* row_bot = nullptr;  // [n, t], ascending per row
  int64_t t = 0;
  // Optional inputs computed by BLAS in float32 (nullptr: computed here in double).
  const float* p = nullptr;     // [m, n]: w_P + s V_P^T
  const float* gram = nullptr;  // [n, n]: V_P V_P^T
  // Optional: each row's s = sum of its v_i in double [m, k], as scores() sums it (the caller
  // already has it for p; nullptr: summed here).
  const double* s = nullptr;
};

// Outputs of certify(); the per-row arrays are allocated by the caller (length m, m + 1).
struct CertifyOut {
  int8_t* status = nullptr;
  double* score = nullptr;
  double* bound = nullptr;
  int64_t* nodes = nullptr;
  int64_t* flips_indptr = nullptr;
  std::vector<int64_t> flips_indices;
};

// f(x) per row, accumulated in double; with `sums`, also s = sum of the row's v_i (summed in
// double, stored as float32 [m, k]) for the caller's BLAS product p = w_P + s V_P^T; with
// `sums64`, s as summed (double [m, k]), which Problem::s takes back.
void scores(const Problem& pr, double* out, float* sums = nullptr, double* sums64 = nullptr);

// Certifies every row at budget q. Returns -1, or the first row of p holding a non-finite
// value (the outputs are then incomplete and the caller raises).
int64_t certify(const Problem& pr, int64_t q, Method method, int64_t node_budget,
                CertifyOut& out);

// certify() at every budget qs[b] (strictly increasing, >= 0) in one pass per row: the score,
// p, the paper bound's selection, the square bound's selections and the greedy search are done
// once and read by every budget; each outs[b] equals, field for field, certify() at qs[b].
// Same return convention as certify().
int64_t certify_budgets(const Problem& pr, const std::vector<int64_t>& qs, Method method,
                        int64_t node_budget, std::vector<CertifyOut>& outs);

// Largest q <= q_max such that the row is certified robust at every budget 1..q. Same return
// convention as certify().
int64_t max_q(const Problem& pr, int64_t q_max, Method method, int64_t node_budget,
              int32_t* out);

}  // namespace fmcert
}  // namespace advrec
