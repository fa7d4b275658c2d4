"""advrec: attack, defend, certify and measure recommender systems.

The public API lives in the subpackages (``advrec.data``, ``advrec.models``, ``advrec.training``,
``advrec.evaluation``, ``advrec.metrics``, ``advrec.attacks``, ``advrec.certify``, ``advrec.kernels``); the names used most are
re-exported here.
"""
from ._version import __version__

from . import attacks, certify, data, evaluation, kernels, metrics, models, training  # noqa: E402
from .certify import CertResult, FMCertifier  # noqa: E402
from .data import Interactions, leave_one_out, load  # noqa: E402
from .evaluation import EvalResult, evaluate  # noqa: E402
from .models import FM, MF, Pop, Recommender, register_model  # noqa: E402
from .training import Trainer, load_checkpoint, save_checkpoint  # noqa: E402

__all__ = [
    "__version__", "attacks", "certify", "data", "evaluation", "kernels", "metrics", "models", "training",
    "FMCertifier", "CertResult", "FM",
    "Interactions", "load", "leave_one_out", "EvalResult", "evaluate", "MF", "Pop", "Recommender", "register_model",
    "Trainer", "save_checkpoint", "load_checkpoint",
]
