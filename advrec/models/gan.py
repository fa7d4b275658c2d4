"""GAN-based recommenders: IRGAN (Wang et al., SIGIR 2017) and CFGAN (Chae et al., CIKM 2018).

Both are ``Recommender``s (full ranking, ``perturbable()`` for the embedding attacks,
checkpoints) and both implement the ``GANPlayers`` capability that ``advrec.training.GANTrainer``
drives: the trainer owns the minimax loop (d-steps, g-steps, optimisers, seeds, early stopping),
the model owns what one discriminator or generator epoch of its game is.

IRGAN: two MF players with an item bias (``s(u, i) = <p_u, q_i> + b_i``). The discriminator
learns to tell the user's training items (label 1) from items the generator samples for the
user (label 0); the generator ``p(i | u) = softmax_i(s_G(u, i))`` is moved by REINFORCE with
the reward ``2 (sigmoid(s_D(u, i)) - 1/2)``, sampling from ``(1 - λ) p + λ uniform(positives)``
with importance weights ``p / p_n`` (the published code's sampler), or, as an option, by the
Gumbel-softmax relaxation of the sample, through which the gradient of ``log(1 - D)`` flows.

CFGAN: vector-wise. The generator maps a purchase vector (the condition ``c``: a user's row of
the training matrix, or an item's column in the item-based mode the authors ship for ML-100K)
to a real-valued vector of the same length; only its entries at the purchased positions (and,
with partial masking, PM, at sampled unpurchased ones) reach the discriminator, which tells
``[c, x]`` from ``[c, G(c) * mask]``. Zero reconstruction (ZR) pulls ``G(c)`` towards 0 at
other sampled unpurchased positions. Scores are the generator's outputs.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Delta, Recommender, check_users

__all__ = ["IRGAN", "CFGAN", "MFPlayer", "importance_sample", "gumbel_softmax", "sample_unobserved",
           "reinforce_loss"]


# --------------------------------------------------------------------------------------------
# Samplers and the policy-gradient loss (pure functions: tested against hand computations)
# --------------------------------------------------------------------------------------------

def importance_sample(prob: torch.Tensor, positives: torch.Tensor, mix: float, n_samples: int,
                      generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n_samples`` items per row from ``p_n = (1 - mix) * prob + mix * uniform(positives)``
    (with replacement) and return ``(samples [b, n_samples], weights prob / p_n at them)``.

    ``prob`` [b, n_items] rows summing to 1; ``positives`` [b, n_items] 0/1 (a row without
    positives samples from ``prob``). IRGAN's published sampler: it puts mass on the observed
    items so the rewards see them, and the weights keep the REINFORCE estimate unbiased for
    ``prob``.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    count = positives.sum(1, keepdim=True)
    uniform = torch.where(count > 0, positives / count.clamp(min=1), prob)
    pn = (1.0 - mix) * prob + mix * uniform
    samples = torch.multinomial(pn, n_samples, replacement=True, generator=generator)
    weights = prob.gather(1, samples) / pn.gather(1, samples)
    return samples, weights


def reinforce_loss(log_prob: torch.Tensor, samples: torch.Tensor, reward: torch.Tensor,
                   mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``-mean_u mean_k log p(i_uk | u) * reward_uk`` over the valid samples (``mask``), the
    policy-gradient surrogate whose gradient is IRGAN's REINFORCE estimate
    ``(1/K) sum_k grad log p(i_k | u) * reward_k``. ``log_prob`` [b, n_items]; ``samples``,
    ``reward`` (already importance-weighted, no gradient), ``mask`` [b, K]."""
    picked = log_prob.gather(1, samples) * reward.detach()
    if mask is None:
        return -picked.mean(1).mean()
    per_row = (picked * mask).sum(1) / mask.sum(1).clamp(min=1)
    return -per_row.mean()


def gumbel_softmax(logits: torch.Tensor, tau: float, generator: Optional[torch.Generator] = None,
                   noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A relaxed one-hot sample ``softmax((log softmax(logits) + g) / tau)`` over the last axis,
    ``g`` i.i.d. Gumbel(0, 1) = ``-log(-log U)`` (or the given ``noise``, for tests): the
    differentiable bridge from the generator's distribution to the discriminator."""
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if noise is None:
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp_(1e-10, 1.0 - 1e-7)
        noise = -torch.log(-torch.log(u))
    return torch.softmax((torch.log_softmax(logits, -1) + noise) / tau, -1)


def sample_unobserved(observed: torch.Tensor, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """0/1 mask [rows, cols]: per row, ``floor(ratio * #unobserved)`` of its unobserved entries
    drawn uniformly without replacement (CFGAN's ZR and PM samples; ratio in [0, 1])."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    keys = torch.rand(observed.shape, generator=generator)
    keys = keys.masked_fill(observed > 0, 2.0)          # observed entries sort last
    n_pick = torch.floor((observed.shape[1] - (observed > 0).sum(1)).double() * ratio).long()
    order = keys.argsort(1)
    picked = (torch.arange(observed.shape[1])[None, :] < n_pick[:, None]).to(observed.dtype)
    return torch.zeros_like(observed).scatter_(1, order, picked)


# --------------------------------------------------------------------------------------------
# IRGAN
# --------------------------------------------------------------------------------------------

class MFPlayer(nn.Module):
    """One IRGAN player: ``s(u, i) = <p_u, q_i> + b_i``, factors U(-init, init), bias 0 (as the
    published code)."""

    def __init__(self, n_users: int, n_items: int, dim: int, init: float, generator: torch.Generator):
        super().__init__()
        self.user_factors = nn.Parameter((torch.rand(n_users, dim, generator=generator) * 2 - 1) * init)
        self.item_factors = nn.Parameter((torch.rand(n_items, dim, generator=generator) * 2 - 1) * init)
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def tables(self, delta: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        P, Q = self.user_factors, self.item_factors
        if "user" in delta:
            P = P + delta["user"]
        if "item" in delta:
            Q = Q + delta["item"]
        return P, Q

    def logits(self, users: torch.Tensor, items: torch.Tensor, delta: Optional[Dict[str, torch.Tensor]] = None
               ) -> torch.Tensor:
        P, Q = self.tables(delta or {})
        pu = P[users]
        if items.dim() == users.dim() + 1:
            return torch.einsum("bd,bmd->bm", pu, Q[items]) + self.item_bias[items]
        return (pu * Q[items]).sum(-1) + self.item_bias[items]

    def all_logits(self, users: torch.Tensor, delta: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        P, Q = self.tables(delta or {})
        return P[users] @ Q.t() + self.item_bias

    def l2(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``sum(|p_u|^2 + |q_i|^2 + b_i^2) / 2`` over the pairs (TensorFlow's ``l2_loss``)."""
        return 0.5 * (self.user_factors[users].pow(2).sum() + self.item_factors[items].pow(2).sum()
                      + self.item_bias[items].pow(2).sum())


class IRGAN(Recommender):
    """IRGAN for item recommendation: generator and discriminator MF players (``MFPlayer``).

    ``rank_with``: which player ranks (``"generator"``, the IRGAN paper's reported model, or
    ``"discriminator"``); its tables are the perturbable ``"user"`` / ``"item"`` and its BPR
    loss is ``loss(batch)`` (what the embedding attacks maximise and what pre-trains it).
    ``sampler``: ``"reinforce"`` (policy gradient with importance sampling, ``mix`` the share of
    the sampling mass on the user's positives, ``2 |positives|`` samples per user) or
    ``"gumbel"`` (``n_gumbel`` relaxed samples per user at temperature ``tau``).
    ``d_temperature``: the generator's softmax temperature when it samples the
    discriminator's negatives (0.2 in the published code). ``d_l2``, ``g_l2``: per-pair L2 weights
    (TensorFlow's ``l2_loss``).
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 64, init: float = 0.05,
                 rank_with: str = "generator", sampler: str = "reinforce", mix: float = 0.2,
                 tau: float = 0.2, n_gumbel: int = 16, d_temperature: float = 0.2,
                 d_l2: float = 0.1 / 16, g_l2: float = 0.0, seed: int = 0):
        super().__init__()
        for name, v in (("n_users", n_users), ("n_items", n_items), ("dim", dim), ("n_gumbel", n_gumbel)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if rank_with not in ("generator", "discriminator"):
            raise ValueError(f"rank_with must be 'generator' or 'discriminator', got {rank_with!r}")
        if sampler not in ("reinforce", "gumbel"):
            raise ValueError(f"sampler must be 'reinforce' or 'gumbel', got {sampler!r}")
        for name, v in (("init", init), ("tau", tau), ("d_temperature", d_temperature)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name, v in (("d_l2", d_l2), ("g_l2", g_l2)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (isinstance(mix, (int, float)) and 0.0 <= mix <= 1.0):
            raise ValueError(f"mix must be in [0, 1], got {mix!r}")
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self._config = dict(n_users=n_users, n_items=n_items, dim=dim, init=init, rank_with=rank_with,
                            sampler=sampler, mix=mix, tau=tau, n_gumbel=n_gumbel, d_temperature=d_temperature,
                            d_l2=d_l2, g_l2=g_l2, seed=seed)
        self.rank_with, self.sampler, self.mix, self.tau, self.n_gumbel = rank_with, sampler, mix, tau, n_gumbel
        self.d_temperature, self.d_l2, self.g_l2 = d_temperature, d_l2, g_l2
        g = torch.Generator().manual_seed(seed)
        self.generator = MFPlayer(n_users, n_items, dim, init, g)
        self.discriminator = MFPlayer(n_users, n_items, dim, init, g)
        self._positives: Optional[torch.Tensor] = None   # set by gan_setup (not a parameter)

    def config(self) -> dict:
        return dict(self._config)

    @property
    def ranker(self) -> MFPlayer:
        return self.generator if self.rank_with == "generator" else self.discriminator

    def perturbable(self) -> Dict[str, torch.Tensor]:
        return {"user": self.ranker.user_factors, "item": self.ranker.item_factors}

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        items = check_users(items, self.n_items, "items")
        return self.ranker.logits(users, items, self.check_delta(delta))

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        return self.ranker.all_logits(users, self.check_delta(delta))

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """The ranking player's BPR loss (pre-training; the attacks' objective)."""
        users = check_users(batch["user"], self.n_users)
        pos = check_users(batch["pos"], self.n_items, "pos")
        neg = check_users(batch["neg"], self.n_items, "neg")
        d = self.check_delta(delta)
        return F.softplus(-(self.ranker.logits(users, pos, d) - self.ranker.logits(users, neg, d))).mean()

    def l2_penalty(self, batch: Batch) -> torch.Tensor:
        """The ranking player's ``(|p_u|^2 + |q_i|^2 + |q_j|^2)`` summed over the triples, over the
        batch size (as MF's: ``Trainer(l2=...)`` pre-trains with it)."""
        P, Q = self.ranker.user_factors, self.ranker.item_factors
        u, i, j = batch["user"], batch["pos"], batch["neg"]
        return (P[u].pow(2).sum() + Q[i].pow(2).sum() + Q[j].pow(2).sum()) / u.shape[0]

    # -- the game (GANPlayers) ---------------------------------------------------------------
    def gan_parameters(self) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
        return list(self.generator.parameters()), list(self.discriminator.parameters())

    def gan_setup(self, train: Any) -> None:
        """Keep the training positives (a dense 0/1 [n_users, n_items]) for the epochs."""
        pos = torch.zeros(self.n_users, self.n_items)
        pos[torch.as_tensor(train.user), torch.as_tensor(train.item)] = 1.0
        self._positives = pos

    def _need_setup(self) -> torch.Tensor:
        if self._positives is None:
            raise RuntimeError("IRGAN: call gan_setup(train) (GANTrainer.fit does) before a game epoch")
        return self._positives

    def gan_begin_epoch(self, generator: torch.Generator) -> None:
        """Nothing is resampled per outer epoch (the discriminator's negatives are per d-epoch)."""

    def discriminator_loss(self, users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy of the discriminator's logits against ``labels`` plus
        ``d_l2`` times the pairs' ``l2_loss``, per pair."""
        logits = self.discriminator.logits(users, items)
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
        return (bce + self.d_l2 * self.discriminator.l2(users, items)) / max(1, users.numel())

    def discriminator_epoch(self, optimizer: torch.optim.Optimizer, batch_size: int,
                            generator: torch.Generator) -> float:
        """One pass over (user, positive, 1) and (user, generated item, 0) pairs: for each
        training positive, one item drawn from the generator's ``softmax(s_G / d_temperature)``."""
        positives = self._need_setup()
        users, items = positives.nonzero(as_tuple=True)       # grouped by user, ascending
        counts = positives.sum(1).long()
        with torch.no_grad():
            probs = torch.softmax(self.generator.all_logits(torch.arange(self.n_users)) / self.d_temperature, 1)
            # |positives_u| draws per user: one multinomial per user row, not one per pair
            drawn = torch.multinomial(probs, max(1, int(counts.max())), replacement=True, generator=generator)
            rank = torch.arange(len(users)) - (torch.cumsum(counts, 0) - counts)[users]
            fake = drawn[users, rank]
        u = torch.cat([users, users])
        i = torch.cat([items, fake])
        y = torch.cat([torch.ones(len(users)), torch.zeros(len(users))])
        order = torch.randperm(len(u), generator=generator)
        return _minibatches(optimizer, batch_size, order,
                            lambda idx: self.discriminator_loss(u[idx], i[idx], y[idx]))

    def reward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``2 (sigmoid(s_D(u, i)) - 1/2)``: the published code's reward (no gradient)."""
        with torch.no_grad():
            return 2.0 * (torch.sigmoid(self.discriminator.logits(users, items)) - 0.5)

    def generator_reinforce_loss(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """REINFORCE on a batch of users: ``2 |positives_u|`` importance samples each."""
        positives = self._need_setup()[users]
        logits = self.generator.all_logits(users)
        log_prob = torch.log_softmax(logits, 1)
        n_pos = positives.sum(1)
        k = int(max(1, 2 * int(n_pos.max().item())))
        with torch.no_grad():
            samples, weights = importance_sample(log_prob.exp(), positives, self.mix, k, generator)
            mask = (torch.arange(k)[None, :] < (2 * n_pos).clamp(min=1)[:, None]).float()
            reward = self.reward(users[:, None].expand_as(samples), samples) * weights
        loss = reinforce_loss(log_prob, samples, reward, mask)
        if self.g_l2 > 0:
            loss = loss + self.g_l2 * self.generator.l2(users[:, None].expand_as(samples)[mask > 0],
                                                        samples[mask > 0]) / users.numel()
        return loss

    def generator_gumbel_loss(self, users: torch.Tensor, generator: torch.Generator,
                              noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Gumbel-softmax: ``n_gumbel`` relaxed samples ``v`` per user; the generator minimises
        ``mean log(1 - D(u, v))``, ``D(u, v) = sigmoid(<p_u^D, v Q^D> + v . b^D)``."""
        logits = self.generator.all_logits(users)
        expanded = logits[:, None, :].expand(-1, self.n_gumbel, -1)
        v = gumbel_softmax(expanded, self.tau, generator, noise)        # [b, K, n_items]
        D = self.discriminator
        d_logit = torch.einsum("bd,bkd->bk", D.user_factors[users], v @ D.item_factors) + v @ D.item_bias
        loss = -F.softplus(d_logit).mean()   # log(1 - sigmoid(x)) = -softplus(x)
        if self.g_l2 > 0:
            loss = loss + self.g_l2 * 0.5 * self.generator.user_factors[users].pow(2).sum() / users.numel()
        return loss

    def generator_epoch(self, optimizer: torch.optim.Optimizer, batch_size: int,
                        generator: torch.Generator) -> float:
        """One pass over the users with training positives, in shuffled mini-batches."""
        positives = self._need_setup()
        users = torch.nonzero(positives.sum(1) > 0).squeeze(1)
        order = users[torch.randperm(len(users), generator=generator)]
        step = self.generator_reinforce_loss if self.sampler == "reinforce" else self.generator_gumbel_loss
        return _minibatches(optimizer, batch_size, torch.arange(len(order)),
                            lambda idx: step(order[idx], generator))

    def discriminator_pretrain_epoch(self, optimizer: torch.optim.Optimizer, batch_size: int,
                                     generator: torch.Generator) -> float:
        """Pre-training of the discriminator: positives against uniformly drawn items."""
        positives = self._need_setup()
        users, items = positives.nonzero(as_tuple=True)
        fake = torch.randint(0, self.n_items, (len(users),), generator=generator)
        u, i = torch.cat([users, users]), torch.cat([items, fake])
        y = torch.cat([torch.ones(len(users)), torch.zeros(len(users))])
        order = torch.randperm(len(u), generator=generator)
        return _minibatches(optimizer, batch_size, order,
                            lambda idx: self.discriminator_loss(u[idx], i[idx], y[idx]))


def _minibatches(optimizer: torch.optim.Optimizer, batch_size: int, order: torch.Tensor, loss_of) -> float:
    """Optimiser steps on ``loss_of(order[s:s + batch_size])``; the mean loss, weighted by size."""
    total, n = 0.0, len(order)
    for s in range(0, n, batch_size):
        idx = order[s:s + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(idx)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total / max(1, n)


# --------------------------------------------------------------------------------------------
# CFGAN
# --------------------------------------------------------------------------------------------

def _xavier(fan_in: int, fan_out: int, g: torch.Generator) -> nn.Parameter:
    scale = math.sqrt(6.0 / (fan_in + fan_out))
    return nn.Parameter((torch.rand(fan_out, fan_in, generator=g) * 2 - 1) * scale)


def _bias(n: int, g: torch.Generator) -> nn.Parameter:
    return nn.Parameter((torch.rand(n, generator=g) * 2 - 1) * 0.01)


class _MLP(nn.Module):
    """Sigmoid hidden layers and a linear output, Xavier-uniform weights and U(-0.01, 0.01)
    biases (the published code's initialisation). ``weights[k]`` is ``[out, in]``."""

    def __init__(self, sizes: Sequence[int], g: torch.Generator):
        super().__init__()
        self.weights = nn.ParameterList([_xavier(a, b, g) for a, b in zip(sizes[:-1], sizes[1:])])
        self.biases = nn.ParameterList([_bias(b, g) for b in sizes[1:]])

    def forward(self, x: torch.Tensor, first: Optional[torch.Tensor] = None,
                last: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``first`` / ``last`` replace the first / last weight (a perturbed copy)."""
        n = len(self.weights)
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            if k == 0 and first is not None:
                w = first
            if k == n - 1 and last is not None:
                w = last
            x = F.linear(x, w, b)
            if k < n - 1:
                x = torch.sigmoid(x)
        return x

    def l2(self) -> torch.Tensor:
        return 0.5 * sum(p.pow(2).sum() for p in self.parameters())


class CFGAN(Recommender):
    """CFGAN: generator and discriminator MLPs over purchase vectors (``docs/models.md``).

    ``mode``: ``"item"`` (the generator completes each item's vector over the users, the
    authors' setting for ML-100K) or ``"user"`` (each user's vector over the items, the paper's
    description). ``scheme``: ``"ZR"``, ``"PM"`` or ``"ZP"`` (both); ``zr_ratio`` / ``pm_ratio``
    the share of each vector's unobserved entries sampled every outer epoch, ``zr_coef`` the ZR
    term's weight. ``g_hidden``/``d_hidden`` units in each of ``g_layers``/``d_layers`` sigmoid
    hidden layers; ``g_l2``/``d_l2`` weights on TensorFlow's ``l2_loss`` of every parameter.

    The training matrix is a buffer (``purchases``): the generator's condition at scoring time.
    Perturbable: ``"input"``, the first layer's weights as rows per vector entry ``[length, h]``
    (in item mode, one row per user: the users' input-side embeddings) and ``"output"``, the last
    layer's ``[length, h]`` (one row per entry of the generated vector).
    """

    def __init__(self, n_users: int, n_items: int, mode: str = "item", g_hidden: int = 400,
                 d_hidden: int = 125, g_layers: int = 1, d_layers: int = 1, scheme: str = "ZP",
                 zr_ratio: float = 0.7, pm_ratio: float = 0.7, zr_coef: float = 0.03,
                 g_l2: float = 0.001, d_l2: float = 0.0, seed: int = 0):
        super().__init__()
        for name, v in (("n_users", n_users), ("n_items", n_items), ("g_hidden", g_hidden),
                        ("d_hidden", d_hidden), ("g_layers", g_layers), ("d_layers", d_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if mode not in ("item", "user"):
            raise ValueError(f"mode must be 'item' or 'user', got {mode!r}")
        if scheme not in ("ZR", "PM", "ZP"):
            raise ValueError(f"scheme must be 'ZR', 'PM' or 'ZP', got {scheme!r}")
        for name, v in (("zr_ratio", zr_ratio), ("pm_ratio", pm_ratio)):
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        for name, v in (("zr_coef", zr_coef), ("g_l2", g_l2), ("d_l2", d_l2)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        self.n_users, self.n_items, self.mode, self.scheme = n_users, n_items, mode, scheme
        self.zr_ratio, self.pm_ratio, self.zr_coef, self.g_l2, self.d_l2 = zr_ratio, pm_ratio, zr_coef, g_l2, d_l2
        self._config = dict(n_users=n_users, n_items=n_items, mode=mode, g_hidden=g_hidden, d_hidden=d_hidden,
                            g_layers=g_layers, d_layers=d_layers, scheme=scheme, zr_ratio=zr_ratio,
                            pm_ratio=pm_ratio, zr_coef=zr_coef, g_l2=g_l2, d_l2=d_l2, seed=seed)
        self.length = n_users if mode == "item" else n_items     # entries of one purchase vector
        rows = n_items if mode == "item" else n_users
        g = torch.Generator().manual_seed(seed)
        self.gen = _MLP([self.length] + [g_hidden] * g_layers + [self.length], g)
        self.dis = _MLP([2 * self.length] + [d_hidden] * d_layers + [1], g)
        self.register_buffer("purchases", torch.zeros(rows, self.length))
        self._zr: Optional[torch.Tensor] = None
        self._pm: Optional[torch.Tensor] = None

    def config(self) -> dict:
        return dict(self._config)

    def set_purchases(self, train: Any) -> None:
        """The training matrix as the generator's conditions (rows: items in item mode)."""
        if train.n_users != self.n_users or train.n_items != self.n_items:
            raise ValueError(f"train has {train.n_users} users x {train.n_items} items, the model "
                             f"{self.n_users} x {self.n_items}")
        m = torch.zeros_like(self.purchases)
        u, i = torch.as_tensor(train.user), torch.as_tensor(train.item)
        if self.mode == "item":
            m[i, u] = 1.0
        else:
            m[u, i] = 1.0
        self.purchases.copy_(m)

    def perturbable(self) -> Dict[str, torch.Tensor]:
        return {"input": self.gen.weights[0].t(), "output": self.gen.weights[-1]}

    def generate(self, rows: Optional[torch.Tensor] = None, delta: Delta = None) -> torch.Tensor:
        """The generator's vectors for ``rows`` of the purchase matrix (all rows when None)."""
        d = self.check_delta(delta)
        cond = self.purchases if rows is None else self.purchases[rows]
        first = self.gen.weights[0] + d["input"].t() if "input" in d else None
        last = self.gen.weights[-1] + d["output"] if "output" in d else None
        return self.gen(cond, first, last)

    def _user_item_scores(self, delta: Delta) -> torch.Tensor:
        out = self.generate(None, delta)
        return out.t() if self.mode == "item" else out

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        items = check_users(items, self.n_items, "items")
        s = self._user_item_scores(delta)
        if items.dim() == users.dim() + 1:
            return s[users[:, None], items]
        return s[users, items]

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        if self.mode == "user":
            return self.generate(users, delta)
        return self._user_item_scores(delta)[users]

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """BPR loss on the generator's scores (the embedding attacks' objective)."""
        users = check_users(batch["user"], self.n_users)
        pos = check_users(batch["pos"], self.n_items, "pos")
        neg = check_users(batch["neg"], self.n_items, "neg")
        s = self._user_item_scores(delta)
        return F.softplus(-(s[users, pos] - s[users, neg])).mean()

    # -- the game (GANPlayers) ---------------------------------------------------------------
    def gan_parameters(self) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
        return list(self.gen.parameters()), list(self.dis.parameters())

    def gan_setup(self, train: Any) -> None:
        self.set_purchases(train)

    def gan_begin_epoch(self, generator: torch.Generator) -> None:
        """Draw this outer epoch's ZR and PM samples of unobserved entries (as the authors do:
        once per epoch, shared by its d- and g-steps)."""
        x = self.purchases
        self._zr = sample_unobserved(x, self.zr_ratio, generator) if self.scheme in ("ZR", "ZP") else None
        self._pm = sample_unobserved(x, self.pm_ratio, generator) if self.scheme in ("PM", "ZP") else None

    def _mask(self, rows: torch.Tensor) -> torch.Tensor:
        x = self.purchases[rows]
        return x if self._pm is None else torch.clamp(x + self._pm[rows], max=1.0)

    def discriminator_loss(self, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``BCE(D([c, x]), 1) + BCE(D([c, G(c) * mask]), 0) + d_l2 * l2_loss(D)`` (means over
        the rows; the generator's output is held fixed)."""
        x = self.purchases[rows]
        with torch.no_grad():
            fake = self.gen(x) * mask
        real_logit = self.dis(torch.cat([x, x], 1)).squeeze(1)
        fake_logit = self.dis(torch.cat([x, fake], 1)).squeeze(1)
        loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        return loss + self.d_l2 * self.dis.l2() if self.d_l2 > 0 else loss

    def generator_loss(self, rows: torch.Tensor, mask: torch.Tensor,
                       zr: Optional[torch.Tensor]) -> torch.Tensor:
        """``BCE(D([c, G(c) * mask]), 1) + g_l2 * l2_loss(G) + zr_coef * mean_rows sum_ZR G(c)^2``."""
        x = self.purchases[rows]
        out = self.gen(x)
        logit = self.dis(torch.cat([x, out * mask], 1)).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        if self.g_l2 > 0:
            loss = loss + self.g_l2 * self.gen.l2()
        if zr is not None and self.zr_coef > 0:
            loss = loss + self.zr_coef * (out.pow(2) * zr).sum(1).mean()
        return loss

    def _rows_epoch(self, optimizer, batch_size, generator, loss_of) -> float:
        if (self.scheme in ("ZR", "ZP")) != (self._zr is not None) or (self.scheme in ("PM", "ZP")) != (self._pm is not None):
            raise RuntimeError("CFGAN: call gan_begin_epoch(generator) (GANTrainer does, every outer epoch) "
                               "before a game epoch, to draw its ZR/PM samples")
        order = torch.randperm(self.purchases.shape[0], generator=generator)
        return _minibatches(optimizer, batch_size, order, loss_of)

    def discriminator_epoch(self, optimizer: torch.optim.Optimizer, batch_size: int,
                            generator: torch.Generator) -> float:
        return self._rows_epoch(optimizer, batch_size, generator,
                                lambda rows: self.discriminator_loss(rows, self._mask(rows)))

    def generator_epoch(self, optimizer: torch.optim.Optimizer, batch_size: int,
                        generator: torch.Generator) -> float:
        return self._rows_epoch(optimizer, batch_size, generator,
                                lambda rows: self.generator_loss(rows, self._mask(rows),
                                                                 None if self._zr is None else self._zr[rows]))
