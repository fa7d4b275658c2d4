"""advrec.serving: recommend and score from a trained model or checkpoint, with a certified
robustness radius attached to each MF list (``docs/serving.md``)."""
from .scorer import Scorer, ServeStats

__all__ = ["Scorer", "ServeStats"]
