"""advrec.certify: certified robustness of factorization machines to injected interactions, and
the certified radius of an MF top-k list under embedding perturbations."""
from .certifier import METHODS, CertResult, FMCertifier
from .radius import mf_topk_radius, pair_radius

__all__ = ["FMCertifier", "CertResult", "METHODS", "mf_topk_radius", "pair_radius"]
