"""advrec.certify: certified robustness of factorization machines to injected interactions."""
from .certifier import METHODS, CertResult, FMCertifier

__all__ = ["FMCertifier", "CertResult", "METHODS"]
