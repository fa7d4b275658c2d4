"""Models behind one Recommender protocol (see ``base.Recommender``)."""
from .base import Recommender
from .fm import FM
from .mf import MF
from .pop import Pop
from .random import Random
from .gru4rec import GRU4Rec
from .sasrec import SASRec
from .sequential import SequentialRecommender
from .vbpr import DUIF, VBPR

MODELS = {"MF": MF, "Pop": Pop, "FM": FM, "Random": Random, "VBPR": VBPR, "DUIF": DUIF,
          "SASRec": SASRec, "GRU4Rec": GRU4Rec}

__all__ = ["Recommender", "MF", "Pop", "FM", "Random", "VBPR", "DUIF", "SASRec", "GRU4Rec",
           "SequentialRecommender", "MODELS"]
