"""Optional model capabilities, declared once, tested with ``isinstance``.

A ``Recommender`` must implement ``score``, ``full_scores``, ``loss`` and ``config`` (see
``advrec.models.base`` and ``docs/models.md``). Everything below is optional: a model that has
the method gets a faster or extra code path, a model without it gets the reference path or a
clear error. Each capability is a ``typing.Protocol`` marked ``@runtime_checkable``, so library
code asks ``isinstance(model, DeltaGradient)`` instead of probing with ``getattr``, and a user
model gains a capability just by defining the method (no base class to add)::

    from advrec.models import DeltaGradient, L2Penalty
    isinstance(MF(3, 4), DeltaGradient)   # True: attacks take MF's compiled gradient
    isinstance(Pop(3, 4), L2Penalty)      # False: Trainer(l2>0) refuses it with a clear error

``isinstance`` on a runtime-checkable protocol checks that the methods exist, not their
signatures: the signatures below are the contract.

Capabilities (method: who uses it; without it):

- ``L2Penalty``, ``l2_penalty(batch)``: ``Trainer(l2>0)`` and ``regularized_loss``; ``l2`` must
  be 0 (regularise with ``weight_decay``).
- ``DeltaGradient``, ``delta_gradient(batch, delta, targets)``: the embedding attacks
  (``Attack.gradient``); autograd on ``loss(batch, delta)``.
- ``ClosedFormAMR``, ``amr_loss(batch, eps, lam)``: ``AMRLoss`` / ``train_amr``; the reference
  ``AdversarialRegularizer(FGSM(model, eps, targets="feature"), lam)``.
- ``SequenceEncoder``, ``encode``, ``sequence_embeddings``, ``item_table``, ``position_loss``:
  ``CascadeAdversarialLoss`` (CAT); CAT refuses the model.
- ``FromConfig``, classmethod ``from_config(config)``: ``load_checkpoint``; ``cls(**config)``.
- ``BPRTables``, ``bpr_tables()``: ``Trainer``'s compiled BPR-MF engine (``engine="auto"``);
  the torch path.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

import torch

from .batch import Batch, Delta

__all__ = ["L2Penalty", "DeltaGradient", "ClosedFormAMR", "SequenceEncoder", "FromConfig", "BPRTables",
           "CAPABILITIES", "require_l2_penalty"]


@runtime_checkable
class L2Penalty(Protocol):
    """Per-batch L2 regularisation (classic BPR): ``Trainer(l2=λ)`` adds ``λ * l2_penalty(batch)``.

    ``l2_penalty(batch)`` returns a scalar tensor: the squared norm of the (unperturbed)
    parameters the batch touches, divided by the batch size (MF: ``(‖p_u‖² + ‖q_i‖² + ‖q_j‖²)``
    summed over the triples, over ``len(batch["user"])``). Built-ins: ``MF``, ``VBPR``, ``DUIF``
    (and ``FM`` for ``ClassifierTrainer``). Without it, train with ``l2=0`` and, if you want
    regularisation, the optimizer's ``weight_decay``.
    """

    def l2_penalty(self, batch: Batch) -> torch.Tensor: ...


@runtime_checkable
class DeltaGradient(Protocol):
    """A fast gradient of the loss with respect to the perturbation, for the embedding attacks.

    ``delta_gradient(batch, delta, targets)`` returns ``{t: d loss(batch, delta) / d delta[t]}``
    for each name ``t`` in ``targets`` (tensors of the perturbable table's shape, detached), or
    ``None`` where it does not apply: the attack then takes autograd on ``loss(batch, delta)``,
    which is the reference, so the answer must equal autograd's to float tolerance. ``delta`` may
    omit a target (unperturbed). Built-ins: ``MF`` (compiled BPR kernel), ``VBPR`` / ``DUIF``
    (closed form on ``"feature"``).
    """

    def delta_gradient(self, batch: Batch, delta: Delta,
                       targets: Sequence[str]) -> Optional[Dict[str, torch.Tensor]]: ...


@runtime_checkable
class ClosedFormAMR(Protocol):
    """AMR's mini-batch loss in one forward, for ``AMRLoss`` / ``train_amr``.

    ``amr_loss(batch, eps, lam)`` returns ``loss(batch) + lam * loss(batch, Δ)`` with ``Δ`` the
    FGSM L2 step of size ``eps`` on every item row of ``"feature"`` the batch touches (held
    constant), or ``None`` where it does not apply: ``AMRLoss`` then runs the reference,
    ``AdversarialRegularizer(FGSM(model, eps, targets="feature", norm="l2"), lam)``, whose value
    and parameter gradients it must match. Built-ins: ``VBPR``, ``DUIF``.
    """

    def amr_loss(self, batch: Batch, eps: float, lam: float) -> Optional[torch.Tensor]: ...


@runtime_checkable
class SequenceEncoder(Protocol):
    """The two levels of a sequential recommender (Tan et al. eq. 3-4), for CAT.

    - ``item_table(delta=None)``: the (perturbed) item table E ``[n_items, dim]``;
    - ``sequence_embeddings(seq, delta=None)``: S_i, the embeddings of ``seq`` ``[b, T]``
      (right-aligned, padding ``-1``) as ``[b, T, dim]``, zero at padding;
    - ``encode(seq, delta=None, seq_delta=None, embeddings=None)``: f at every position,
      ``[b, T, dim]``; ``seq_delta`` is added to S_i (CAT's first-level perturbation),
      ``embeddings`` replaces S_i (callers differentiate with respect to it);
    - ``position_loss(states, pos, neg, table)``: the training loss from given states.

    Built-ins: ``SASRec``, ``GRU4Rec`` (through ``SequentialRecommender``, which a new sequential
    model subclasses to implement only ``_encode``).
    """

    def item_table(self, delta: Delta = None) -> torch.Tensor: ...

    def sequence_embeddings(self, seq: torch.Tensor, delta: Delta = None) -> torch.Tensor: ...

    def encode(self, seq: torch.Tensor, delta: Delta = None, seq_delta: Optional[torch.Tensor] = None,
               embeddings: Optional[torch.Tensor] = None) -> torch.Tensor: ...

    def position_loss(self, states: torch.Tensor, pos: torch.Tensor, neg: Optional[torch.Tensor],
                      table: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class FromConfig(Protocol):
    """A class (not an instance) that rebuilds itself from its ``config()``, for ``load_checkpoint``.

    ``from_config(config)`` (a classmethod) returns an instance shaped as ``config`` describes,
    whose ``load_state_dict`` the checkpoint's weights then fill. Needed when the constructor
    takes data that lives in the state dict rather than in the JSON config (``VBPR``'s feature
    matrix); otherwise ``load_checkpoint`` calls ``cls(**config)``. Test the class:
    ``isinstance(VBPR, FromConfig)``.
    """

    def from_config(self, config: Mapping[str, object]) -> object: ...


@runtime_checkable
class BPRTables(Protocol):
    """The model is BPR-MF over two embedding tables, for ``Trainer``'s compiled engine.

    ``bpr_tables()`` returns ``(P, Q)``, the user and item tables (``nn.Parameter``s, ``[n_users,
    dim]`` and ``[n_items, dim]``), when ``score(u, i) = <P[u], Q[i]>``, ``loss`` is the mean BPR
    loss over the batch's triples, ``l2_penalty`` is ``(|p_u|² + |q_i|² + |q_j|²)`` summed over
    the triples over the batch size, the perturbable tensors ``"user"`` and ``"item"`` are added
    to ``P`` and ``Q``, and ``P``, ``Q`` are the only trainable parameters; ``None`` where any of
    that does not hold (e.g. a subclass that redefines the loss): the Trainer then takes the
    torch path, which is the reference the compiled engine must match. Built-in: ``MF``.
    """

    def bpr_tables(self) -> Optional[Tuple[torch.Tensor, torch.Tensor]]: ...


CAPABILITIES = (L2Penalty, DeltaGradient, ClosedFormAMR, SequenceEncoder, FromConfig, BPRTables)


def require_l2_penalty(model: object, needed_by: str) -> L2Penalty:
    """``model`` if it has ``l2_penalty``; otherwise a ``TypeError`` naming the method, who needs
    it and the alternative."""
    if isinstance(model, L2Penalty):
        return model
    raise TypeError(
        f"{needed_by} adds l2 * model.l2_penalty(batch), but {type(model).__name__} defines no "
        f"l2_penalty(batch) (the L2Penalty capability, advrec.models.capabilities): either define "
        f"l2_penalty(batch) -> scalar tensor (the squared norm of the parameters the batch touches, "
        f"divided by the batch size), or train with l2=0 and regularise through the optimizer's "
        f"weight_decay (Trainer(weight_decay=...)) instead")
