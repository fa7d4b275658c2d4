"""Training loop and defenses."""
from .adversarial import AdversarialRegularizer, AMRLoss, train_amf, train_amr
from .cascade_effects import cascade_effects
from .checkpoint import load_checkpoint, save_checkpoint
from .eals import fit_eals
from .classifier import ClassifierHistory, ClassifierTrainer, accuracy, evaluate, predict
from .fm_robust import FMRobustLoss
from .gan import GANHistory, GANPlayers, GANTrainer
from .rfm import rfm2_loss, rfm_loss
from .sequential import SequenceTrainer
from .trainer import History, Trainer
from .trimmed import TrimmedExplicitMF, squared_residuals

__all__ = ["Trainer", "History", "save_checkpoint", "load_checkpoint", "ClassifierTrainer",
           "cascade_effects",
           "ClassifierHistory", "accuracy", "evaluate", "predict", "rfm_loss", "rfm2_loss", "FMRobustLoss",
           "AdversarialRegularizer", "AMRLoss", "train_amf", "train_amr", "fit_eals",
           "SequenceTrainer", "TrimmedExplicitMF", "squared_residuals", "GANTrainer", "GANHistory", "GANPlayers"]
