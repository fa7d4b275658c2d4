"""The one door to the compiled core ``advrec._core``.

Each module mirrors a kernel family of ``csrc/`` and holds its typed wrappers: numpy arrays and
torch tensors in, the contiguous buffers the core takes, checks of what the core cannot know,
and the dispatch to the family's CUDA twin (``*_cuda.py``) when the data lives on a GPU.

| module | kernels | C++ | CUDA twin |
|---|---|---|---|
| ``select`` | ``topk_scores``, ``rank_targets``, ``topk_dot`` | ``csrc/select/topk`` | ``select_cuda`` (``csrc/cuda/topk.cu``) |
| ``pairs`` | ``gram_extremes`` | ``csrc/select/pairs`` | ``pairs_cuda`` (``csrc/cuda/gram_pairs.cu``) |
| ``certify`` | ``fm_scores``, ``fm_scores_sums``, ``fm_certify_batch``, ``fm_certify_budgets_batch``, ``fm_max_q_batch``, ``fm_greedy_batch`` | ``csrc/certify/fm_certify`` | ``certify_cuda`` (``csrc/cuda/fm_greedy.cu``) |
| ``perturb`` | ``perturb_step`` | ``csrc/perturb/perturb`` | ``perturb_cuda`` (``csrc/cuda/perturb.cu``) |
| ``bpr`` | ``mf_bpr_gradient`` | ``csrc/perturb/bpr_grad`` | none |
| ``bpr_train`` | ``mf_bpr_train_epoch`` | ``csrc/train/bpr_train`` | none |
| ``seq`` | ``cascade_effects`` | ``csrc/seq/cascade`` | none |
| ``knn`` | ``knn_neighbors``, ``knn_predict``, ``knn_scores`` | ``csrc/select/knn`` | none |
| ``serve`` | ``exclusion_csr``, ``serve_topk_merge``, ``topk_dot_blocked`` | ``csrc/serve/serve_topk`` | none |

``_args`` is the Python twin of ``csrc/bind_util.h``; ``_native`` loads the core. No module
outside this package imports ``_core`` or a CUDA twin (``tests/test_architecture.py``).
"""
from __future__ import annotations

from ._args import as_csr
from ._native import _core
from .bpr import mf_bpr_gradient
from .bpr_train import mf_bpr_train_epoch
from .certify import (METHODS, FMCertBatch, fm_certify_batch, fm_certify_budgets_batch,
                      fm_greedy_batch, fm_max_q_batch, fm_scores, fm_scores_sums)
from .knn import KNN_NORMS, SIMILARITIES, knn_neighbors, knn_predict, knn_row_means, knn_scores
from .pairs import GramExtremes, gram_extremes
from .perturb import PERTURB_NORMS, perturb_step
from .select import rank_targets, topk_dot, topk_scores
from .serve import exclusion_csr, serve_topk_merge, single_threaded_blas, topk_dot_blocked
from .seq import CASCADE_COMPONENTS, CASCADE_NORMALIZATIONS, cascade_effects

__all__ = [
    "has_cuda", "info", "as_csr",
    "topk_scores", "rank_targets", "topk_dot",
    "GramExtremes", "gram_extremes",
    "METHODS", "FMCertBatch", "fm_scores", "fm_scores_sums", "fm_certify_batch",
    "fm_certify_budgets_batch", "fm_max_q_batch", "fm_greedy_batch",
    "PERTURB_NORMS", "perturb_step",
    "mf_bpr_gradient", "mf_bpr_train_epoch",
    "CASCADE_COMPONENTS", "CASCADE_NORMALIZATIONS", "cascade_effects",
    "exclusion_csr", "serve_topk_merge", "topk_dot_blocked", "single_threaded_blas",
    "SIMILARITIES", "KNN_NORMS", "knn_neighbors", "knn_predict", "knn_scores", "knn_row_means",
]


def has_cuda() -> bool:
    """True when the core was built with CUDA and a CUDA device is usable now."""
    return bool(_core.build_info()["cuda_built"]) and _core.cuda_device_count() > 0


def info() -> dict:
    """What this installation has: compiler, OpenMP threads, CUDA archs built, devices seen."""
    d = dict(_core.build_info())
    d["cuda_devices"] = int(_core.cuda_device_count())
    return d
