"""Models behind one Recommender protocol (see ``base.Recommender``)."""
from .base import Recommender
from .fm import FM
from .mf import MF
from .pop import Pop

MODELS = {"MF": MF, "Pop": Pop, "FM": FM}

__all__ = ["Recommender", "MF", "Pop", "FM", "MODELS"]
