"""Adversarial perturbations of embeddings: FGSM (APR), BIM and PGD (MSAP), random noise.

Every attack maps a batch to ``delta``, a dict from perturbable name to a tensor of that table's
shape, which ``model.loss``/``model.full_scores`` take; the model's parameters are never changed.
"""
from .embedding import BIM, FGSM, PGD, Attack, RandomNoise
from .step import NORMS, normalized_step, perturb_step, project, random_in_ball, random_on_sphere

__all__ = ["Attack", "FGSM", "BIM", "PGD", "RandomNoise", "NORMS", "perturb_step", "normalized_step",
           "project", "random_in_ball", "random_on_sphere"]
