"""Training loop and defenses."""
from .checkpoint import load_checkpoint, save_checkpoint
from .trainer import History, Trainer

__all__ = ["Trainer", "History", "save_checkpoint", "load_checkpoint"]
