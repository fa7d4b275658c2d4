"""Models behind one Recommender protocol (see ``base.Recommender``)."""
from .base import Recommender
from .mf import MF
from .pop import Pop

MODELS = {"MF": MF, "Pop": Pop}

__all__ = ["Recommender", "MF", "Pop", "MODELS"]
