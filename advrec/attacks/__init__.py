"""Attacks on recommenders.

Evasion: adversarial perturbations of embeddings: FGSM (APR), BIM and PGD (MSAP), random noise;
item substitution in sequences (``substitution``, real items, not embedding noise). Every
embedding attack maps a batch to ``delta``, a dict from perturbable name to a tensor of that
table's shape, which ``model.loss``/``model.full_scores`` take; the model's parameters are never
changed. The budget ``eps`` is per row and per table: each row of each attacked table stays in its
own ball of radius ``eps``, so attacking MF's two tables moves a (user, item) pair by up to
``sqrt(2) * eps`` (``docs/models.md``).

Poisoning: hand-crafted shilling attacks (``shilling``) build fake user profiles from the training
log; optimised attacks (``poisoning``: PGA and SGLD, Li et al. 2016) fit them to a white-box
``ExplicitMF`` by differentiating its ALS training; ``revadv``: RevAdv, Tang et al. 2020, on a
white-box implicit ``WRMF``); ``advrec.data.inject`` appends them
(``docs/poisoning.md``).
"""
from .embedding import BIM, FGSM, PGD, Attack, RandomNoise
from .poisoning import OptimisedAttack, PGAAttack, PoisonRun, SGLDAttack, UnrolledALS
from .revadv import RevAdvAttack, RevAdvRun
from .shilling import (AverageAttack, BandwagonAttack, LoveHateAttack, RandomAttack, ReverseBandwagonAttack,
                       SegmentAttack, ShillingAttack)
from .step import NORMS, normalized_step, perturb_step, project, random_in_ball, random_on_sphere
from .substitution import POSITIONS, Substitution, item_pools, substitute_items, substitution_columns, target_items

__all__ = ["Attack", "FGSM", "BIM", "PGD", "RandomNoise", "NORMS", "perturb_step", "normalized_step",
           "project", "random_in_ball", "random_on_sphere",
           "POSITIONS", "Substitution", "substitution_columns", "substitute_items", "item_pools", "target_items",
           "ShillingAttack", "RandomAttack", "AverageAttack", "BandwagonAttack", "SegmentAttack", "LoveHateAttack",
           "ReverseBandwagonAttack", "OptimisedAttack", "PGAAttack", "SGLDAttack", "PoisonRun", "UnrolledALS",
           "RevAdvAttack", "RevAdvRun"]
