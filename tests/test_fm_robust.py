"""FM-RT (eq. 13): the differentiable bound equals the certifier's paper bound, and gradients flow."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from advrec.certify import FMCertifier
from advrec.models import FM
from advrec.training.fm_robust import FMRobustLoss
from test_certify_api import random_instances


def make_model(seed: int, d: int = 40, k: int = 6) -> FM:
    model = FM(d, k, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # larger weights than the init, so both labels and both signs occur
        model.w.copy_(torch.randn(d, generator=g) * 0.4)
        model.V.copy_(torch.randn(d, k, generator=g) * 0.4)
        model.w0.fill_(0.1)
    return model


@pytest.mark.parametrize("q", [1, 2, 3])
def test_bound_is_the_paper_bound_toward_the_true_label(q):
    model = make_model(q)
    d = model.w.shape[0]
    P = np.arange(d - 14, d, dtype=np.int64)
    indptr, indices = random_instances(7, d, P, 50)
    cert = FMCertifier.from_model(model, P)
    res = cert.certify(indptr, indices, q, "paper")
    # With y = the predicted label, b is exactly the paper's bound toward the other label.
    y = torch.from_numpy(np.where(res.score > 0, 1, -1))
    ip, ix = torch.from_numpy(indptr), torch.from_numpy(indices)
    loss = FMRobustLoss(P, q)
    with torch.no_grad():
        b = loss.bound(model, ip, ix, y, model.instance_sums(ip, ix)).numpy()
    np.testing.assert_allclose(b, res.bound, rtol=1e-4, atol=1e-4)
    # A bound toward flipping label l pushes against l: b <= 0 for l = +1, b >= 0 for l = -1.
    with torch.no_grad():
        b_flip = loss.bound(model, ip, ix, -y, model.instance_sums(ip, ix)).numpy()
    assert np.all(b_flip * y.numpy() >= 0)
    assert np.all(b * y.numpy() <= 0)


def test_loss_is_at_least_the_plain_loss_and_differentiable():
    model = make_model(0)
    d = model.w.shape[0]
    P = np.arange(d - 14, d, dtype=np.int64)
    indptr, indices = random_instances(3, d, P, 64)
    labels = torch.from_numpy(np.where(np.arange(64) % 3 == 0, 1, -1))
    batch = {"indptr": torch.from_numpy(indptr), "indices": torch.from_numpy(indices), "labels": labels,
             "rows": torch.arange(64)}
    robust = FMRobustLoss(P, 2)(model, batch)
    plain = model.loss(batch)
    assert robust.item() >= plain.item() - 1e-6
    robust.backward()
    # The selected history embeddings receive gradient through the bound.
    assert model.V.grad[P].abs().sum() > 0
    assert torch.isfinite(model.V.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="q"):
        FMRobustLoss(np.arange(3), 0)
    with pytest.raises(ValueError, match="sorted"):
        FMRobustLoss(np.array([3, 1]), 1)
    with pytest.raises(ValueError, match="perturbable"):
        FMRobustLoss(np.array([], dtype=np.int64), 1)
