"""LightGCN (He et al., SIGIR 2020): BPR on embeddings smoothed over the user-item graph.

With ``A`` the binary user-item bipartite adjacency of the training log (``n_users + n_items``
nodes) and ``D`` its degrees, ``Â = D^-1/2 A D^-1/2``; from the layer-0 tables ``E0`` (the only
parameters), ``E(l+1) = Â E(l)`` and the final embeddings are the layer mean
``(E0 + ... + EL) / (L + 1)``; ``score(u, i) = e_u . e_i``. An isolated user or item (degree 0)
has no entries in ``Â``: its final embedding is ``E0 / (L + 1)``.

The adversary perturbs the layer-0 tables (``"user"``, ``"item"``) *before* propagation, so a
perturbed row also moves its neighbours' final embeddings: unlike MF, rows a batch does not touch
can still get a gradient (up to ``L`` hops away).
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import int_arg, positive_int
from .base import Batch, Delta, Recommender, check_users

if TYPE_CHECKING:
    from ..data.interactions import Interactions


class _SymmetricSpMM(torch.autograd.Function):
    """``Â @ x`` for a symmetric sparse ``Â``: the backward is ``Â @ grad`` again. torch's own
    backward of ``sparse.mm`` transposes the CSR matrix on every call, 4x slower end to end on
    ML-100K (65 ms against 15 ms per 3-layer forward and backward, one thread)."""

    @staticmethod
    def forward(ctx: Any, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[None, torch.Tensor]:
        return None, _SymmetricSpMM.apply(ctx.adjacency, grad)  # through apply: twice differentiable


def _edges(train: "Interactions", n_users: int, n_items: int) -> torch.Tensor:
    """The distinct (user, item) pairs of ``train`` as an int64 ``[2, n_edges]`` tensor, sorted.
    Repeated interactions count once: ``A`` is binary, as in the paper."""
    for name in ("user", "item", "n_users", "n_items"):
        if not hasattr(train, name):
            raise TypeError(f"train must be an advrec.data.Interactions (the log the graph is built from), "
                            f"got {type(train).__name__} without {name!r}")
    if (train.n_users, train.n_items) != (n_users, n_items):
        raise ValueError(f"train has {train.n_users} users x {train.n_items} items but the model is built for "
                         f"{n_users} x {n_items}")
    pairs = np.unique(np.asarray(train.user, np.int64) * n_items + np.asarray(train.item, np.int64))
    return torch.from_numpy(np.stack([pairs // n_items, pairs % n_items]))


def normalized_adjacency(edges: torch.Tensor, n_users: int, n_items: int,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph of ``edges`` (``[2, E]`` distinct user-item
    pairs) as a CSR tensor of ``n_users + n_items`` nodes (users first, then items)."""
    n = n_users + n_items
    u, i = edges[0].cpu().numpy(), edges[1].cpu().numpy()
    if len(u) and (u.min() < 0 or u.max() >= n_users or i.min() < 0 or i.max() >= n_items):
        raise ValueError(f"edges must pair users in [0, {n_users}) with items in [0, {n_items}), got users in "
                         f"[{u.min()}, {u.max()}] and items in [{i.min()}, {i.max()}]")
    i = i + n_users
    rows, cols = np.concatenate([u, i]), np.concatenate([i, u])
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    degree = np.bincount(rows, minlength=n)
    inv_sqrt = 1.0 / np.sqrt(np.maximum(degree, 1))  # degree 0: the node has no entries anyway
    values = torch.from_numpy(inv_sqrt[rows] * inv_sqrt[cols]).to(dtype)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(degree, out=indptr[1:])
    with warnings.catch_warnings():  # "CSR support is in beta": noise for the user of this model
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(indptr), torch.from_numpy(cols), values,
                                       (n, n), device=edges.device, check_invariants=False)


class LightGCN(Recommender):
    """LightGCN over the graph of ``train``; the layer-0 tables are perturbable ("user", "item").

    ``train`` (an ``advrec.data.Interactions`` of ``n_users`` x ``n_items``) only gives the
    graph, kept as the ``edges`` buffer (its distinct pairs), so a checkpoint carries its graph
    and building on a poisoned log costs one ``np.unique``; ``Â`` is built on first use. The
    model trains like MF (``Trainer``; ``l2`` penalises the batch's layer-0 rows, as the paper
    does). In eval mode without gradients and without ``delta`` the propagated embeddings are
    computed once and reused until ``train()`` or an in-place change of the tables or the graph,
    so scoring every user in tiles propagates once.
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 64, n_layers: int = 3, *, train: "Interactions",
                 init_std: float = 0.1, seed: int = 0):
        super().__init__()
        self.n_users, self.n_items = positive_int(n_users, "n_users"), positive_int(n_items, "n_items")
        self.dim, self.n_layers = positive_int(dim, "dim"), int_arg(n_layers, "n_layers")
        if not (isinstance(init_std, (int, float)) and init_std > 0):
            raise ValueError(f"init_std must be > 0, got {init_std!r}")
        self.init_std, self.seed = float(init_std), int_arg(seed, "seed")
        g = torch.Generator().manual_seed(self.seed)
        self.user_embeddings = nn.Parameter(torch.randn(self.n_users, self.dim, generator=g) * self.init_std)
        self.item_embeddings = nn.Parameter(torch.randn(self.n_items, self.dim, generator=g) * self.init_std)
        self.register_buffer("edges", _edges(train, self.n_users, self.n_items))
        self._graph: Optional[Tuple[tuple, torch.Tensor]] = None  # (key of edges, Â)
        self._cache: Optional[Tuple[tuple, Tuple[torch.Tensor, torch.Tensor]]] = None  # (key, final U, I)

    def config(self) -> dict:
        """The constructor's arguments but ``train``, whose graph the state dict carries
        (``edges``), plus its size ``n_edges`` for ``from_config``."""
        return {"n_users": self.n_users, "n_items": self.n_items, "dim": self.dim, "n_layers": self.n_layers,
                "init_std": self.init_std, "seed": self.seed, "n_edges": int(self.edges.shape[1])}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "LightGCN":
        """A model shaped as ``config`` describes, with a placeholder graph of ``n_edges`` edges,
        for a checkpoint's ``load_state_dict`` to fill (tables and edges; ``Â`` follows)."""
        config = dict(config)
        n_edges = int_arg(config.pop("n_edges", None), "config's n_edges")
        empty = _Log(np.zeros(0, np.int64), np.zeros(0, np.int64), config.get("n_users"), config.get("n_items"))
        model = cls(train=empty, **config)
        model.edges = torch.zeros(2, n_edges, dtype=torch.int64)
        return model

    def perturbable(self) -> Dict[str, torch.Tensor]:
        return {"user": self.user_embeddings, "item": self.item_embeddings}

    def train(self, mode: bool = True) -> "LightGCN":
        """Switch mode and drop the cached embeddings: training is about to change the tables."""
        self._cache = None
        return super().train(mode)

    def __getstate__(self) -> dict:
        """Copies and pickles rebuild ``Â`` and the cache instead of carrying them."""
        state = dict(self.__dict__)
        state["_graph"] = state["_cache"] = None
        return state

    def adjacency(self) -> torch.Tensor:
        """``Â`` (CSR, the tables' dtype), rebuilt when the ``edges`` buffer was replaced or written."""
        dtype = self.user_embeddings.dtype
        key = (self.edges.data_ptr(), self.edges._version, self.edges.device, tuple(self.edges.shape), dtype)
        if self._graph is None or self._graph[0] != key:
            self._graph = (key, normalized_adjacency(self.edges, self.n_users, self.n_items, dtype))
        return self._graph[1]

    def embeddings(self, delta: Delta = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Final user and item embeddings: the mean of layers 0..L, with ``delta`` added to
        layer 0. Cached in eval mode without gradients and ``delta`` (see the class)."""
        d = self.check_delta(delta)
        U, I = self.user_embeddings, self.item_embeddings
        cacheable = not d and not self.training and not torch.is_grad_enabled()
        if cacheable:
            key = tuple((t.data_ptr(), t._version, t.device) for t in (U, I, self.edges))
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        x = torch.cat([U + d["user"] if "user" in d else U, I + d["item"] if "item" in d else I])
        total = x
        if self.n_layers:
            adjacency = self.adjacency()
            for _ in range(self.n_layers):
                x = _SymmetricSpMM.apply(adjacency, x)
                total = total + x
        users, items = (total / (self.n_layers + 1)).split([self.n_users, self.n_items])
        if cacheable:
            self._cache = (key, (users, items))
        return users, items

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        items = check_users(items, self.n_items, "items")
        U, I = self.embeddings(delta)
        eu, ei = U[users], I[items]
        if ei.dim() == eu.dim() + 1:  # items [b, m]
            return torch.einsum("bd,bmd->bm", eu, ei)
        return (eu * ei).sum(-1)

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        U, I = self.embeddings(delta)
        return U[users] @ I.t()

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """BPR loss: mean of -log sigma(s(u, i) - s(u, j)), one propagation for the batch."""
        users = check_users(batch["user"], self.n_users)
        pos = check_users(batch["pos"], self.n_items, "pos")
        neg = check_users(batch["neg"], self.n_items, "neg")
        U, I = self.embeddings(delta)
        eu = U[users]
        return F.softplus(-(eu * (I[pos] - I[neg])).sum(-1)).mean()

    def l2_penalty(self, batch: Batch) -> torch.Tensor:
        """``sum(|e0_u|² + |e0_i|² + |e0_j|²) / b`` on the unperturbed layer-0 rows (the paper's
        eq. 15, per batch; its official code halves it)."""
        u, i, j = batch["user"], batch["pos"], batch["neg"]
        return (self.user_embeddings[u].pow(2).sum() + self.item_embeddings[i].pow(2).sum()
                + self.item_embeddings[j].pow(2).sum()) / u.shape[0]


class _Log:
    """The fields of an ``Interactions`` the constructor reads (``from_config``'s empty graph)."""

    def __init__(self, user: np.ndarray, item: np.ndarray, n_users: Any, n_items: Any):
        self.user, self.item, self.n_users, self.n_items = user, item, n_users, n_items
