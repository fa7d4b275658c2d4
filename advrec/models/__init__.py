"""Models behind one Recommender protocol (see ``base.Recommender``)."""
from .base import Recommender
from .fm import FM
from .mf import MF
from .pop import Pop
from .random import Random
from .vbpr import DUIF, VBPR

MODELS = {"MF": MF, "Pop": Pop, "FM": FM, "Random": Random, "VBPR": VBPR, "DUIF": DUIF}

__all__ = ["Recommender", "MF", "Pop", "FM", "Random", "VBPR", "DUIF", "MODELS"]
