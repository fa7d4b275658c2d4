"""The implicit-feedback victims of the poisoning experiment and how each (re)fit trains.

A poisoning experiment retrains every victim from scratch on every poisoned log (hundreds of
fits per run), so the baseline's BPR-MF recipe (``baseline.BPRSettings``: Adam lr 1e-3 for up to
300 epochs with early stopping on validation nDCG@20) is too slow here, and early stopping would
let the poison move the stopping epoch: a refit must differ from the clean fit only by its log.
Each victim is therefore trained by a fixed recipe (``TorchRecipe``): fixed epochs, no
validation, no early stopping, so every refit of a run trains identically. The recipes are a
compromise between accuracy and hundreds of refits, chosen from measured curves (below: test
nDCG@10 / HR@10 of seed 0's random 80/20 split of ML-100K, every rating a positive, full ranking
with training items excluded, against seconds of training on one thread of a shared 2-core
machine).

* ``fit_bpr_mf``: ``advrec.models.MF`` (dim 64, init_std 0.05) by ``Trainer``;
* ``fit_lightgcn``: ``advrec.models.LightGCN`` (dim 64, 3 layers, init_std 0.05) by ``Trainer``;
* ``fit_wrmf``: ``advrec.models.WRMF`` (exact ALS, its own defaults: a fixed number of
  iterations, no recipe needed).

Same seed and log, same model bit for bit (``Trainer`` runs one torch thread and seeds its
sampler and torch from the seed; the models draw their initial tables from it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._checks import seed_arg
from ..models.lightgcn import LightGCN
from ..models.mf import MF
from ..training.trainer import OPTIMIZERS, Trainer

if TYPE_CHECKING:
    from ..data.interactions import Interactions
    from ..models.wrmf import WRMF

__all__ = ["TorchRecipe", "BPR_RECIPE", "LIGHTGCN_RECIPE", "DIM", "INIT_STD", "N_LAYERS",
           "fit_bpr_mf", "fit_lightgcn", "fit_wrmf"]

#: embedding size of the gradient-trained victims (the baseline's)
DIM = 64
#: std of their initial tables (the baseline's BPR-MF)
INIT_STD = 0.05
#: LightGCN's propagation layers (the paper's ML-scale setting)
N_LAYERS = 3


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"TorchRecipe.{name} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class TorchRecipe:
    """How a gradient-trained victim is fitted: ``optimizer`` (a ``Trainer`` optimizer name) at
    learning rate ``lr``, ``epochs`` full passes over the training pairs (one BPR triple per
    distinct pair, uniform negatives) in batches of ``batch_size``, per-batch L2 ``l2`` on the
    rows a batch touches (``Trainer``'s ``l2``). Always exactly ``epochs`` epochs: no
    validation, no early stopping, so every refit trains identically."""

    lr: float
    batch_size: int
    epochs: int
    l2: float = 1e-4
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"TorchRecipe.lr must be a finite number > 0, got {lr!r}")
        _positive_int(self.batch_size, "batch_size")
        _positive_int(self.epochs, "epochs")
        l2 = self.l2
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not math.isfinite(l2) or l2 < 0:
            raise ValueError(f"TorchRecipe.l2 must be a finite number >= 0, got {l2!r}")
        if not isinstance(self.optimizer, str) or self.optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"TorchRecipe.optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")

    def trainer(self, seed: int) -> Trainer:
        """The ``Trainer`` of this recipe for ``seed``: one torch thread, no validation, no
        early stopping, no progress bar."""
        return Trainer(optimizer=self.optimizer, lr=float(self.lr), epochs=self.epochs, batch_size=self.batch_size,
                       l2=float(self.l2), patience=None, seed=seed, progress=False, threads=1)


# Measured curves (seed 0's 80/20 split of ML-100K as implicit, dim 64, init_std 0.05, Adam, l2 1e-4;
# points are (epochs, training seconds on one thread, test nDCG@10, test HR@10); the machine
# was shared, so seconds vary by about 20% from run to run; each run's first point includes
# a one-off ~2 s of loading the compiled sampler):
#   lr 1e-3, batch 2048: (10, 4.4, .311, .853) (20, 6.5, .350, .887) (30, 8.7, .367, .911)
#       (40, 10.7, .379, .924) (50, 12.8, .387, .922) (60, 14.9, .390, .919) (70, 17.0, .395, .926)
#       (80, 19.0, .398, .931) (90, 21.1, .395, .928) (100, 23.1, .394, .935)      <- plateau ~.395
#   lr 1e-3, batch 8192: (20, 3.4, .308, .852) (50, 8.2, .352, .894) (100, 16.0, .386, .916)
#   lr 5e-3, batch 2048: (10, 2.1, .367, .916) (20, 4.2, .363, .907) (50, 13.8, .321, .906)
#       (100, 27.3, .291, .874)                                                     <- overfits
#   lr 5e-3, batch 8192: (10, 2.6, .347, .883) (20, 5.0, .376, .913) (30, 7.3, .381, .918)
#       (50, 12.5, .367, .918) (100, 23.3, .328, .906)                              <- overfits
#   lr 1e-2, batch 2048: (10, 3.2, .341, .902) (50, 15.0, .277, .864) (100, 30.1, .257, .841)
#   lr 1e-2, batch 8192: (10, 2.3, .363, .910) (20, 4.4, .362, .910) (50, 11.5, .318, .905)
# The larger learning rates peak early and then lose accuracy fast: on a poisoned log (more
# users, more pairs per epoch) the peak moves, so a fixed epoch count near it is fragile. lr 1e-3
# (the baseline's) rises smoothly to a flat plateau; 50 epochs reach 97% of its best nDCG@10.
#: BPR-MF's recipe: nDCG@10 .387, HR@10 .922 in about 10.5-12.5 s (50 epochs x ~0.22 s; 10.6 s on
#: the 5% poisoned log)
BPR_RECIPE = TorchRecipe(lr=1e-3, batch_size=2048, epochs=50, l2=1e-4)

# LightGCN, same knobs and points (its per-batch propagation makes an epoch ~4x an MF epoch):
#   lr 1e-3, batch 8192: (10, 8.6, .206, .772) (50, 29.7, .246, .800) (100, 55.6, .314, .859)
#   lr 5e-3, batch 8192: (10, 5.2, .247, .794) (30, 14.0, .323, .864) (50, 24.0, .364, .908)
#       (100, 47.8, .401, .933)
#   lr 1e-2, batch 8192: (10, 3.7, .313, .864) (20, 9.1, .346, .886) (50, 40.4, .397, .927)
#       (90, 75.3, .422, .934) (100, 80.2, .417, .933)        (seconds inflated: a loaded machine)
#   lr 1e-3, batch 2048: (10, 15.8, .223, .771) (25, 33.5, .311, .870) (50, 61.8, .317, .854)
#   lr 5e-3, batch 2048: (10, 10.8, .321, .861) (25, 23.2, .373, .915) (50, 43.6, .407, .934)
#   lr 1e-2, batch 2048: (5, 4.0, .312, .857) (10, 8.0, .362, .899) (15, 11.9, .375, .915)
#       (20, 15.9, .391, .921) (25, 19.9, .404, .934) (30, 23.8, .411, .936) (35, 27.6, .414, .928)
#       (40, 31.6, .418, .936) (45, 35.7, .415, .935) (50, 39.5, .412, .927)    <- plateau ~.415
# Only lr 1e-2 with batch 2048 nears a plateau within ~25 s. 30 epochs (.411, 24.5 s here on the
# clean log) took 27 s on the 5% poisoned log (more pairs, more batches), so 25 epochs: 97% of
# its best nDCG@10, with room for the larger attacks' logs.
#: LightGCN's recipe: nDCG@10 .404, HR@10 .934 in about 20 s (25 epochs x ~0.8 s; 25.7-27.7 s
#: when other jobs shared the 2 cores, on the clean and the 5% poisoned log)
LIGHTGCN_RECIPE = TorchRecipe(lr=1e-2, batch_size=2048, epochs=25, l2=1e-4)


def _check_recipe(recipe: Any) -> TorchRecipe:
    if not isinstance(recipe, TorchRecipe):
        raise TypeError(f"recipe must be a TorchRecipe, got {type(recipe).__name__}")
    return recipe


def fit_bpr_mf(train: "Interactions", seed: int, recipe: TorchRecipe = BPR_RECIPE) -> MF:
    """BPR-MF (dim ``DIM``, init_std ``INIT_STD``) fitted on ``train`` (ratings ignored: every
    distinct pair a positive) by ``recipe`` with ``seed`` (initial tables, triple order and
    negatives); returned in eval mode. Same seed and log, same factors bit for bit."""
    recipe, seed = _check_recipe(recipe), seed_arg(seed)
    model = MF(train.n_users, train.n_items, dim=DIM, init_std=INIT_STD, seed=seed)
    recipe.trainer(seed).fit(model, train)
    return model.eval()


def fit_lightgcn(train: "Interactions", seed: int, recipe: TorchRecipe = LIGHTGCN_RECIPE) -> LightGCN:
    """LightGCN (dim ``DIM``, ``N_LAYERS`` layers, init_std ``INIT_STD``) over the graph of
    ``train``, fitted on it by ``recipe`` with ``seed``; returned in eval mode. Same seed and
    log, same tables bit for bit."""
    recipe, seed = _check_recipe(recipe), seed_arg(seed)
    model = LightGCN(train.n_users, train.n_items, dim=DIM, n_layers=N_LAYERS, train=train, init_std=INIT_STD,
                     seed=seed)
    recipe.trainer(seed).fit(model, train)
    return model.eval()


def fit_wrmf(train: "Interactions", seed: int) -> "WRMF":
    """WRMF with its own defaults (exact ALS, a fixed number of iterations) fitted on ``train``
    with ``seed`` (the initial item factors); returned in eval mode."""
    from ..models.wrmf import WRMF  # lazily: the module imports without it

    return WRMF(seed=seed_arg(seed)).fit(train, progress=False)
