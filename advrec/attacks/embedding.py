"""Adversarial perturbations of a model's perturbable tensors (APR's FGSM, MSAP's BIM and PGD).

The adversary maximises ``model.loss(batch, delta)`` over ``delta`` in a per-row ball of radius
``eps`` (see ``advrec.attacks.step`` for the norms). Gradients are taken with respect to
``delta`` only (``torch.autograd.grad``), so the model's parameters are never written and no
``.grad`` is left on them. Any ``Recommender`` that implements ``perturbable()`` and accepts
``delta`` in ``loss`` can be attacked; a model with the ``DeltaGradient`` capability
(``advrec.models.capabilities``) supplies the gradient itself where it can.

The budget ``eps`` is per row and per table: every row of every attacked table (``targets``)
gets its own ball of radius ``eps``. An interaction that reads one row of each of two tables
(MF's ``p_u`` and ``q_i``) is therefore moved by up to ``sqrt(2) * eps`` in total (L2), and a
row that a batch touches many times still moves by at most ``eps``. Rows the batch does not
touch have a zero gradient and stay zero (FGSM, BIM; PGD's random start is spread over every
row). See ``docs/models.md``.

To attack "the whole training set", as the papers do for evaluation, pass one batch holding
every training triple.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch

from ..models.base import Batch, Recommender
from ..models.capabilities import DeltaGradient
from .step import check_norm, perturb_step, random_in_ball, random_on_sphere

Delta = Dict[str, torch.Tensor]  # what an attack returns: a tensor for every target (never None)
Callback = Callable[[int, Delta], None]


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


class Attack:
    """Base of the attacks: validated arguments, the gradient of the loss w.r.t. ``delta``, and
    ``__call__``/``steps_iter`` on top of ``_steps``.

    ``targets`` names the perturbable tensors to attack; ``None`` means all of them (for MF,
    ``("user", "item")``). ``eps`` bounds each row of each target separately (with two tables
    attacked, a (user, item) pair moves by up to ``sqrt(2) * eps``).
    """

    def __init__(self, model: Recommender, eps: float, targets: Union[None, str, Sequence[str]] = None,
                 norm: str = "l2"):
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "perturbable"):
            raise ValueError(f"model must be a Recommender implementing perturbable(), got {type(model).__name__}")
        self.model = model
        self.eps = _check_eps(eps)
        self.norm = check_norm(norm)
        available = model.perturbable()
        if targets is None:
            targets = tuple(available)
        elif isinstance(targets, str):
            targets = (targets,)
        targets = tuple(targets)
        if not targets:
            raise ValueError(f"targets must name at least one of the model's perturbable tensors {sorted(available)}")
        unknown = [t for t in targets if t not in available]
        if unknown:
            raise ValueError(f"targets {unknown} are not perturbable in {type(model).__name__}; "
                             f"its perturbable tensors are {sorted(available)}")
        if len(set(targets)) != len(targets):
            raise ValueError(f"targets must not repeat a name, got {list(targets)}")
        self.targets = targets

    # -- helpers -------------------------------------------------------------------------------
    def _tables(self) -> Dict[str, torch.Tensor]:
        p = self.model.perturbable()
        return {name: p[name] for name in self.targets}

    def zeros(self) -> Delta:
        """A zero perturbation for every target (dtype and device of its table)."""
        return {n: torch.zeros(t.shape, dtype=t.dtype, device=t.device) for n, t in self._tables().items()}

    def gradient(self, batch: Batch, delta: Delta) -> Delta:
        """d loss(batch, delta) / d delta, per target; tables the loss does not use get zeros.

        A model with the ``DeltaGradient`` capability (``delta_gradient``, e.g. MF's fused BPR
        kernel) gives it where it applies (it returns ``None`` elsewhere); autograd below is the
        reference.
        """
        if isinstance(self.model, DeltaGradient):
            grads = self.model.delta_gradient(batch, delta, tuple(delta))
            if grads is not None:
                return grads
        return self.autograd_gradient(batch, delta)

    def autograd_gradient(self, batch: Batch, delta: Delta) -> Delta:
        """``gradient`` by torch autograd on ``model.loss(batch, delta)``: the reference path."""
        leaves = {n: d.detach().requires_grad_(True) for n, d in delta.items()}
        with torch.enable_grad():
            loss = self.model.loss(batch, leaves)
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        return {n: (torch.zeros_like(leaves[n]) if g is None else g.detach())
                for n, g in zip(leaves, grads)}

    def _steps(self, batch: Batch) -> Iterator[Delta]:
        raise NotImplementedError

    # -- public --------------------------------------------------------------------------------
    def steps_iter(self, batch: Batch) -> Iterator[Tuple[int, Delta]]:
        """Yield ``(step, delta)`` after every step (``step`` counts from 1).

        Each yielded dict holds fresh tensors that later steps do not modify, so a caller may
        evaluate or keep them (a curve over iterations costs one run).
        """
        for i, delta in enumerate(self._steps(batch), start=1):
            yield i, delta

    def __call__(self, batch: Batch, callback: Optional[Callback] = None) -> Delta:
        """The final perturbation; ``callback(step, delta)`` is called after every step."""
        delta: Optional[Delta] = None
        for i, delta in self.steps_iter(batch):
            if callback is not None:
                callback(i, delta)
        assert delta is not None
        return delta

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps}, targets={self.targets}, norm={self.norm!r})"


class FGSM(Attack):
    """One step of size ``eps`` from zero (He et al. 2018, APR): ``eps * g / ||g||`` per row
    (``"l2"``) or ``eps * sign(g)`` (``"linf"``). Rows the batch does not touch stay zero.
    ``eps`` is per row and per table: attacking ``("user", "item")`` moves a pair by up to
    ``sqrt(2) * eps``."""

    def __init__(self, model: Recommender, eps: float, targets: Union[None, str, Sequence[str]] = None,
                 norm: str = "l2"):
        super().__init__(model, eps, targets, norm)

    def _steps(self, batch: Batch) -> Iterator[Delta]:
        zero = self.zeros()
        grad = self.gradient(batch, zero)
        yield {n: perturb_step(zero[n], grad[n], self.eps, self.eps, self.norm) for n in zero}


class BIM(Attack):
    """Basic Iterative Method (Kurakin et al. 2017) as in MSAP: ``steps`` projected steps of size
    ``alpha`` (default ``eps / 4``) starting from zero, each row of each table projected onto its
    own ``eps`` ball (two attacked tables: up to ``sqrt(2) * eps`` per pair)."""

    def __init__(self, model: Recommender, eps: float, alpha: Optional[float] = None, steps: int = 10,
                 targets: Union[None, str, Sequence[str]] = None, norm: str = "l2"):
        super().__init__(model, eps, targets, norm)
        if alpha is None:
            alpha = self.eps / 4
        elif isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        self.alpha = float(alpha)
        self.steps = steps

    def _start(self) -> Delta:
        return self.zeros()

    def _steps(self, batch: Batch) -> Iterator[Delta]:
        delta = self._start()
        for _ in range(self.steps):
            grad = self.gradient(batch, delta)
            delta = {n: perturb_step(delta[n], grad[n], self.alpha, self.eps, self.norm) for n in delta}
            yield delta

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(eps={self.eps}, alpha={self.alpha}, steps={self.steps}, "
                f"targets={self.targets}, norm={self.norm!r})")


class PGD(BIM):
    """Projected Gradient Descent (Madry et al. 2018) as in MSAP: BIM from a random start uniform in
    the feasible set (``random_start=True``: every row of every table in its own ``eps`` ball),
    drawn from a ``torch.Generator`` seeded with ``seed``.

    The generator lives in the attack: successive calls draw fresh starts, and two attacks built
    with the same seed give the same sequence of perturbations.
    """

    def __init__(self, model: Recommender, eps: float, alpha: Optional[float] = None, steps: int = 10,
                 random_start: bool = True, seed: int = 0,
                 targets: Union[None, str, Sequence[str]] = None, norm: str = "l2"):
        super().__init__(model, eps, alpha, steps, targets, norm)
        self.random_start = bool(random_start)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def start(self) -> Delta:
        """The next starting point (advances the generator when ``random_start``)."""
        if not self.random_start:
            return self.zeros()
        return {n: random_in_ball(t.shape, self.eps, self.norm, self.generator, t.dtype, t.device)
                for n, t in self._tables().items()}

    def _start(self) -> Delta:
        return self.start()


class RandomNoise(Attack):
    """Random perturbation of the norm FGSM's has (APR's adversarial-vs-random comparison): rows of
    L2 norm ``eps`` in a uniform direction (``"l2"``, ``"l2-step-linf-clip"``) or ``eps`` times
    random signs (``"linf"``), per row of each target table.

    ``only_touched=True`` restricts the noise to the rows the batch's gradient touches, i.e. the
    rows FGSM would perturb; by default every row is perturbed, as APR's random baseline does.
    """

    def __init__(self, model: Recommender, eps: float, targets: Union[None, str, Sequence[str]] = None,
                 norm: str = "l2", seed: int = 0, only_touched: bool = False):
        super().__init__(model, eps, targets, norm)
        self.seed = seed
        self.only_touched = bool(only_touched)
        self.generator = torch.Generator().manual_seed(seed)

    def _steps(self, batch: Batch) -> Iterator[Delta]:
        tables = self._tables()
        noise = {n: random_on_sphere(t.shape, self.eps, self.norm, self.generator, t.dtype, t.device)
                 for n, t in tables.items()}
        if self.only_touched:
            grad = self.gradient(batch, self.zeros())
            for n, g in grad.items():
                rows = g.reshape(g.shape[0], -1).ne(0).any(dim=1) if g.dim() else g.ne(0).reshape(1)
                noise[n] = noise[n] * rows.reshape((-1,) + (1,) * max(g.dim() - 1, 0)).to(noise[n].dtype)
        yield noise
