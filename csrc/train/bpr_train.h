// One epoch of BPR-MF training in the core (issue 18): for each mini-batch of the epoch's
// triples, the BPR loss and its gradient plus the per-batch L2 term, optionally APR's adversarial
// term (AMF: FGSM on the embeddings, held constant), then one optimiser step (SGD, Adagrad or
// Adam, torch's update rules) on every parameter. The torch path of advrec.training.Trainer
// (MF.regularized_loss, autograd, torch.optim) is the reference this reproduces:
//
//   loss_b = mean_k softplus(-x_k) + l2 * sum_k (|p_u|^2 + |q_i|^2 + |q_j|^2) / B
//            [+ lam * mean_k softplus(-x~_k)]   x_k = <p_u, q_i - q_j>, x~ on P + dP, Q + dQ
//   dP = eps * g_P / |g_P| per row (l2; linf: eps * sign(g_P)), g_P the clean loss's gradient
//
// Dense optimiser semantics, as torch's: every row is stepped every batch (Adam's moments decay
// and move rows the batch did not touch; weight decay reaches every row).
//
// Deterministic for any number of threads: per-triple values are independent; the gradient
// scatter splits the embedding columns between threads and every entry sums its terms in
// triple order; the optimiser is elementwise. The AVX2 and baseline compilations perform the
// same float operations in the same order (no FMA contraction), so they give the same bits.
#pragma once
#include <cstdint>

namespace advrec {

enum class BprOptimizer : int { kSgd = 0, kAdagrad = 1, kAdam = 2 };
enum class BprAdvNorm : int { kL2 = 0, kLinf = 1, kL2StepLinfClip = 2 };

struct BprOptimSpec {
  BprOptimizer kind = BprOptimizer::kAdam;
  double lr = 1e-3, weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // Adam; eps is Adagrad's too (torch: 1e-10)
  double lr_decay = 0.0;                           // Adagrad
};

struct BprAdvSpec {
  bool user = false, item = false;  // which tables FGSM perturbs; neither: plain BPR
  BprAdvNorm norm = BprAdvNorm::kL2;
  double eps = 0.0, lam = 1.0;
};

// Trains P [n_users, dim] and Q [n_items, dim] in place over the n triples (users, pos, neg), in
// batches of batch_size in the given order. Optimiser state (float32, the tables' shapes): Adam:
// sP1/sQ1 first moments, sP2/sQ2 second moments; Adagrad: sP1/sQ1 the squared-gradient sums
// (sP2/sQ2 unused); SGD: none. *step counts optimiser steps (torch's state["step"]) and is
// advanced by one per batch. Returns the epoch's loss: sum_b loss_b * B_b / n, as the torch
// path records it. The caller has validated shapes and index ranges; threads >= 1.
double mf_bpr_train_epoch(float* P, int64_t n_users, float* Q, int64_t n_items, int64_t dim,
                          const int64_t* users, const int64_t* pos, const int64_t* neg, int64_t n,
                          int64_t batch_size, double l2, const BprOptimSpec& opt,
                          const BprAdvSpec& adv, float* sP1, float* sP2, float* sQ1, float* sQ2,
                          int64_t* step, int threads, bool portable);

}  // namespace advrec
