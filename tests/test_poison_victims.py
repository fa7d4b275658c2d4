"""The poisoning experiment's implicit victims (``advrec.experiments.poison_victims``): each fitter
is deterministic in its seed, returns an eval-mode model shaped as the log, and recipes are checked."""
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from advrec.data import Interactions
from advrec.experiments.poison_victims import (BPR_RECIPE, LIGHTGCN_RECIPE, TorchRecipe, fit_bpr_mf, fit_lightgcn,
                                               fit_wrmf)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = TorchRecipe(lr=1e-2, batch_size=16, epochs=2)


def implicit_log(seed=0, n_users=12, n_items=9, n=70):
    """Random pairs (ratings carried but ignored); the last user and item have no rows, one row repeats."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users - 1, n)
    item = rng.integers(0, n_items - 1, n)
    user, item = np.r_[user, user[0]], np.r_[item, item[0]]
    rating = rng.integers(1, 6, len(user)).astype(np.float32)
    return Interactions(user, item, rating, None, n_users, n_items, np.arange(n_users), np.arange(n_items))


def _has_wrmf():
    return importlib.util.find_spec("advrec.models.wrmf") is not None


FITTERS = {
    "bpr_mf": lambda log, seed: fit_bpr_mf(log, seed, TINY),
    "lightgcn": lambda log, seed: fit_lightgcn(log, seed, TINY),
    "wrmf": fit_wrmf,
}


def _tables(model):
    return [t.detach().clone() for t in model.state_dict().values() if t.is_floating_point()]


@pytest.fixture(params=sorted(FITTERS))
def fitter(request):
    if request.param == "wrmf" and not _has_wrmf():
        pytest.skip("advrec.models.wrmf does not exist yet")
    return FITTERS[request.param]


def test_same_seed_same_model_bit_for_bit(fitter):
    log = implicit_log()
    a, b = _tables(fitter(log, 3)), _tables(fitter(log, 3))
    assert a and len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_different_seed_different_model(fitter):
    log = implicit_log()
    a, b = _tables(fitter(log, 3)), _tables(fitter(log, 4))
    assert any(not torch.equal(x, y) for x, y in zip(a, b))


def test_model_in_eval_mode_shaped_as_the_log(fitter):
    log = implicit_log(n_users=14, n_items=11)
    model = fitter(log, 0)
    assert not model.training
    assert (model.n_users, model.n_items) == (14, 11)
    scores = model.full_scores(torch.arange(14))
    assert scores.shape == (14, 11) and torch.isfinite(scores).all()


def test_trains_exactly_the_recipe():
    """The recipe is followed: more epochs move the tables (no early stop, no validation)."""
    log = implicit_log()
    two = _tables(fit_bpr_mf(log, 0, TINY))
    three = _tables(fit_bpr_mf(log, 0, TorchRecipe(lr=1e-2, batch_size=16, epochs=3)))
    assert any(not torch.equal(x, y) for x, y in zip(two, three))


def test_recipes_picked_are_valid_and_frozen():
    for recipe in (BPR_RECIPE, LIGHTGCN_RECIPE):
        assert recipe.optimizer == "adam" and recipe.epochs >= 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        BPR_RECIPE.epochs = 1


@pytest.mark.parametrize("kwargs, field", [
    (dict(lr=0.0), "lr"), (dict(lr=-1e-3), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(epochs=0), "epochs"), (dict(epochs=1.5), "epochs"), (dict(epochs=True), "epochs"),
    (dict(batch_size=0), "batch_size"), (dict(batch_size=-8), "batch_size"),
    (dict(l2=-1.0), "l2"), (dict(optimizer="lbfgs"), "optimizer"),
])
def test_bad_recipe_names_the_field(kwargs, field):
    base = dict(lr=1e-3, batch_size=8, epochs=1)
    base.update(kwargs)
    with pytest.raises(ValueError, match=rf"TorchRecipe\.{field}\b"):
        TorchRecipe(**base)


def test_bad_seed_and_recipe_type_refused():
    log = implicit_log()
    with pytest.raises(ValueError, match="seed"):
        fit_bpr_mf(log, -1, TINY)
    with pytest.raises(TypeError, match="TorchRecipe"):
        fit_lightgcn(log, 0, dict(lr=1e-3, batch_size=8, epochs=1))
