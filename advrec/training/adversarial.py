"""Adversarial training of embedding recommenders: APR's adversarial regulariser, AMF and AMR.

APR (He et al., SIGIR 2018, eq. 5-6) minimises ``L(theta) + lam * L(theta + delta*)`` where
``delta*`` is the worst perturbation of the embeddings within radius ``eps``, recomputed for every
mini-batch at the current parameters and then held constant: the outer minimisation takes no
gradient through the inner maximisation (the attack). AMF is BPR-MF trained further with this
loss, starting from a pretrained BPR-MF (the APR and MSAP protocol).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Union

import torch

from ..attacks import BIM, FGSM, PGD, Attack
from ..models.base import Batch, Recommender
from ..models.capabilities import ClosedFormAMR
from .trainer import History, Trainer, Validator

if TYPE_CHECKING:
    from ..data.interactions import Interactions

ATTACKS = {"fgsm": FGSM, "bim": BIM, "pgd": PGD}


class AdversarialRegularizer:
    """``loss_fn(model, batch)`` for ``Trainer``: ``model.loss(batch) + lam * model.loss(batch, delta*)``.

    ``delta* = attack(batch)`` is recomputed on every call (every mini-batch) and detached, so it
    acts as a constant, as in APR. ``attack`` may be single-step (``FGSM``, APR/AMF) or
    multi-step (``BIM``/``PGD``); it must be bound to the model being trained, because it takes
    its gradients from ``attack.model``. With ``lam == 0`` no attack is run and the loss is the
    plain loss. The Trainer adds its ``l2`` penalty on top (on the unperturbed parameters).
    """

    def __init__(self, attack: Attack, lam: float = 1.0):
        if not isinstance(attack, Attack):
            raise ValueError(f"attack must be an advrec.attacks.Attack (FGSM, BIM, PGD, ...), "
                             f"got {type(attack).__name__}")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
        self.attack = attack
        self.lam = float(lam)

    @property
    def model(self) -> Recommender:
        return self.attack.model

    def perturbation(self, batch: Batch) -> Dict[str, torch.Tensor]:
        """``delta*`` for ``batch`` at the current parameters, detached from any graph."""
        return {n: d.detach() for n, d in self.attack(batch).items()}

    def __call__(self, model: Recommender, batch: Batch) -> torch.Tensor:
        if model is not self.attack.model:
            raise ValueError(f"the attack is bound to a different model ({type(self.attack.model).__name__} "
                             f"at {id(self.attack.model):#x}) than the one being trained "
                             f"({type(model).__name__} at {id(model):#x}); build the attack on the trained model")
        clean = model.loss(batch)
        if self.lam == 0:
            return clean
        return clean + self.lam * model.loss(batch, self.perturbation(batch))

    def compiled_adversary(self, model: Recommender) -> Optional[Dict[str, Any]]:
        """This loss for ``Trainer``'s compiled engine (``bpr_engine.CompiledAdversary``): the
        FGSM step's tables, norm, ``eps`` and ``lam`` when the attack is a plain ``FGSM`` bound to
        ``model`` over its ``"user"``/``"item"`` tables; ``None`` otherwise (multi-step attacks,
        subclasses, other tables: the torch path)."""
        attack = self.attack
        if type(attack) is not FGSM or attack.model is not model or not set(attack.targets) <= {"user", "item"}:
            return None
        on = self.lam != 0
        return {"user": on and "user" in attack.targets, "item": on and "item" in attack.targets,
                "norm": attack.norm, "eps": attack.eps, "lam": self.lam}

    def __repr__(self) -> str:
        return f"AdversarialRegularizer({self.attack!r}, lam={self.lam})"


class AMRLoss:
    """``loss_fn(model, batch)`` for ``Trainer``: AMR's loss ``model.loss(batch) + lam *
    model.loss(batch, Delta)`` with ``Delta`` the FGSM L2 step of size ``eps`` on the content
    features (``"feature"``), every item row of the batch, held constant.

    Equal (value and parameter gradients, to float tolerance) to ``AdversarialRegularizer(FGSM(
    model, eps, targets="feature", norm="l2"), lam)``, which stays the reference: a model with
    the closed form (the ``ClosedFormAMR`` capability, ``model.amr_loss``: VBPR and DUIF)
    computes it in one forward, sharing the clean margins between the loss and the adversary's
    gradient; any other model with a perturbable ``"feature"`` goes through the reference.
    """

    def __init__(self, model: Recommender, eps: float, lam: float = 1.0):
        if "feature" not in model.perturbable():
            raise ValueError(f"AMR perturbs content features; {type(model).__name__} has no perturbable 'feature' "
                             f"(its perturbable tensors are {sorted(model.perturbable())})")
        self.reference = AdversarialRegularizer(FGSM(model, eps, targets="feature", norm="l2"), lam)
        self.eps, self.lam = self.reference.attack.eps, self.reference.lam

    @property
    def model(self) -> Recommender:
        return self.reference.model

    def __call__(self, model: Recommender, batch: Batch) -> torch.Tensor:
        if model is self.model and isinstance(model, ClosedFormAMR):
            loss = model.amr_loss(batch, self.eps, self.lam)
            if loss is not None:
                return loss
        return self.reference(model, batch)  # also raises for a model other than the bound one

    def __repr__(self) -> str:
        return f"AMRLoss(eps={self.eps}, lam={self.lam})"


def train_amf(model: Recommender, train: "Interactions", *, eps: float = 0.5, lam: float = 1.0, epochs: int = 1000,
              attack: Union[str, Attack] = "fgsm", norm: str = "l2",
              attack_kwargs: Optional[Mapping[str, Any]] = None, validator: Optional[Validator] = None,
              **trainer_kwargs) -> History:
    """Train ``model`` in place with the adversarial regulariser (AMF when ``model`` is a BPR-MF).

    The caller pretrains: pass a BPR-MF already fitted (or loaded from its checkpoint), as APR
    and MSAP do (MSAP: BPR-MF's parameters at epoch 1000 are AMF's start, then AMF is trained
    further; ``epochs=1000`` mirrors that). Defaults ``eps=0.5, lam=1`` are APR's.

    ``attack`` is ``"fgsm"`` (APR), ``"bim"`` or ``"pgd"`` (built on ``model`` with ``eps``,
    ``norm`` and ``attack_kwargs``, e.g. ``{"steps": 5}``), or a ready ``Attack`` bound to
    ``model`` (its own ``eps`` and ``norm`` are used; ``attack_kwargs`` must then be empty).
    Remaining keyword arguments go to ``Trainer`` (``lr``, ``batch_size``, ``l2``, ``seed``, ...);
    ``validator`` to ``Trainer.fit``.
    """
    if "loss_fn" in trainer_kwargs:
        raise ValueError("train_amf builds the loss_fn itself; use Trainer(loss_fn=AdversarialRegularizer(...)) "
                         "for a custom one")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(attack, Attack):
        if attack.model is not model:
            raise ValueError("attack must be bound to the model being trained (attack.model is not model)")
        if attack_kwargs:
            raise ValueError("attack_kwargs applies only when attack is given by name")
        adversary = attack
    elif isinstance(attack, str) and attack.lower() in ATTACKS:
        adversary = ATTACKS[attack.lower()](model, eps, norm=norm, **dict(attack_kwargs or {}))
    else:
        raise ValueError(f"attack must be one of {sorted(ATTACKS)} or an Attack instance, got {attack!r}")
    trainer = Trainer(epochs=epochs, loss_fn=AdversarialRegularizer(adversary, lam), **trainer_kwargs)
    return trainer.fit(model, train, validator)


def train_amr(model: Recommender, train: "Interactions", *, eps: float = 0.1, lam: float = 1.0, epochs: int = 100,
              optimizer: str = "adagrad", batch_size: int = 512, validator: Optional[Validator] = None,
              **trainer_kwargs) -> History:
    """AMR (Tang et al. 2020): train a pretrained VBPR further with the adversarial regulariser on
    its content features (``"feature"``): FGSM with each item row's gradient L2-normalised to
    ``eps``, recomputed for every mini-batch; the positive and the negative item's features are
    both perturbed, since both appear in the BPR loss. Defaults follow the paper (Adagrad,
    mini-batches of 512); ``eps`` and ``lam`` are the ones to tune. Remaining keyword arguments go
    to ``Trainer`` (``lr``, ``l2``, ``seed``, ``patience``, ...). The loss is ``AMRLoss``: VBPR's
    one-forward closed form, the same numbers as ``AdversarialRegularizer`` with that FGSM.
    """
    loss_fn = AMRLoss(model, eps, lam)  # validates the model, eps and lam first
    if "loss_fn" in trainer_kwargs:
        raise ValueError("train_amr builds the loss_fn itself; use Trainer(loss_fn=AMRLoss(...)) for a custom one")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    trainer = Trainer(epochs=epochs, loss_fn=loss_fn, optimizer=optimizer, batch_size=batch_size, **trainer_kwargs)
    return trainer.fit(model, train, validator)
