// Gradient of the BPR-MF loss with respect to the embedding tables (issue 4: the embedding
// attacks take d loss / d delta on every step over all training triples; autograd's gathers and
// index backward cost tens of times more than one fused pass over the triples).
//
//   loss = mean_k softplus(-x_k),  x_k = <P[u_k], Q[i_k] - Q[j_k]>,  c_k = -sigmoid(-x_k) / N
//   gP[u] = sum_{k: u_k = u} c_k (Q[i_k] - Q[j_k])
//   gQ[i] = sum_{k: i_k = i} c_k P[u_k] - sum_{k: j_k = i} c_k P[u_k]
//
// P and Q are the effective (perturbed) tables, so the gradient w.r.t. an additive perturbation
// of a table equals the gradient w.r.t. the table.
#pragma once
#include <cstdint>

namespace advrec {

// Returns the loss; writes gP [n_users, dim] and gQ [n_items, dim] (row-major float32), each
// skipped when its pointer is null. The caller has validated shapes, n >= 1 and the index ranges.
//
// Precision: every product, dot, coefficient and sum is in double (float32 products are exact in
// double); each gradient entry is rounded to float32 once, at the end. The dot x_k sums 8 fixed
// lanes in a fixed tree; each gradient entry sums its terms in triple order; the loss sums fixed
// blocks of triples in block order. So the results do not depend on the number of OpenMP threads
// or on the SIMD path (AVX2 or baseline: the same operations in the same order, and no FMA
// contraction on either under the project's flags, which set no -march), bit for bit.
//
// A triple with i_k == j_k adds nothing to gQ (its two terms cancel exactly; they are skipped,
// also when P[u_k] is not finite). Otherwise NaN/inf in the tables propagate as the formulas
// say: a non-finite x_k gives the limits of softplus and sigmoid (x = +inf: loss term 0,
// c = -0; x = -inf: loss term inf, c = -1/N), NaN stays NaN.
//
// portable: take the baseline path even where AVX2 is available (tests compare the two).
double mf_bpr_gradient_cpu(const float* P, int64_t n_users, const float* Q, int64_t n_items,
                           int64_t dim, const int64_t* users, const int64_t* pos,
                           const int64_t* neg, int64_t n, float* gP, float* gQ, bool portable);

// The SIMD path mf_bpr_gradient_cpu takes on this CPU: "avx2" or "baseline".
const char* mf_bpr_gradient_simd();

}  // namespace advrec
