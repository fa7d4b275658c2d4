"""Models behind one Recommender protocol (see ``base.Recommender`` and ``docs/models.md``).

Bring your own model: subclass ``Recommender`` (required: ``score``, ``full_scores``, ``loss``,
``config``), optionally implement capabilities (``capabilities``: ``L2Penalty``,
``DeltaGradient``, ``ClosedFormAMR``, ``SequenceEncoder``, ``FromConfig``), and decorate the
class with ``register_model`` so checkpoints can name it.
"""
from .als import ExplicitMF
from .base import BATCH_KEYS, NEG_KEY, POS_KEY, SEQ_KEY, USER_KEY, Batch, Delta, Recommender, check_users, seeded
from .capabilities import (CAPABILITIES, BPRTables, ClosedFormAMR, DeltaGradient, FromConfig, L2Penalty,
                           SequenceEncoder)
from .fm import FM
from .gan import CFGAN, IRGAN
from .knn import ItemKNN, UserKNN
from .lightgcn import LightGCN
from .mf import MF
from .pop import Pop
from .random import Random
from .gru4rec import GRU4Rec
from .registry import MODELS, ModelRegistry, _register_builtin, find_model, qualified_name, register_model
from .sasrec import SASRec
from .sequential import SequentialRecommender
from .vbpr import DUIF, VBPR
from .wrmf import WRMF

for _cls in (MF, Pop, FM, Random, VBPR, DUIF, SASRec, GRU4Rec, ExplicitMF, LightGCN, WRMF, IRGAN, CFGAN):
    _register_builtin(_cls)
del _cls, _register_builtin

__all__ = ["Recommender", "MF", "Pop", "FM", "Random", "VBPR", "DUIF", "SASRec", "GRU4Rec",
           "ExplicitMF", "UserKNN", "ItemKNN", "LightGCN", "WRMF", "IRGAN", "CFGAN",
           "SequentialRecommender", "MODELS", "ModelRegistry", "register_model", "find_model",
           "qualified_name", "check_users", "seeded", "Batch", "Delta", "USER_KEY", "POS_KEY", "NEG_KEY", "SEQ_KEY",
           "BATCH_KEYS", "CAPABILITIES", "L2Penalty", "BPRTables", "DeltaGradient", "ClosedFormAMR", "SequenceEncoder",
           "FromConfig"]
