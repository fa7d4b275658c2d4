"""Trainer: learns, stops early on a validator, reproduces with a seed; checkpoints round-trip."""
import json

import numpy as np
import pytest
import torch

from advrec.data import Interactions
from advrec.models import MF
from advrec.training import Trainer, load_checkpoint, save_checkpoint


def _toy_interactions(seed=0, n_users=60, n_items=30):
    """Two taste clusters: users in the first half like the first half of the items."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        half = (u < n_users // 2)
        pool = np.arange(0, n_items // 2) if half else np.arange(n_items // 2, n_items)
        for i in rng.choice(pool, size=6, replace=False):
            users.append(u)
            items.append(i)
    return Interactions.from_raw(np.array(users), np.array(items))


def test_training_lowers_loss_and_learns_clusters():
    train = _toy_interactions()
    m = MF(train.n_users, train.n_items, dim=8, seed=0)
    h = Trainer(lr=0.05, epochs=30, batch_size=64, patience=None, progress=False).fit(m, train)
    assert h.epochs == 30 and h.loss[-1] < 0.5 * h.loss[0]
    s = m.full_scores(torch.arange(train.n_users)).detach().numpy()
    own = np.where(np.arange(train.n_users)[:, None] < 30, 1, 0) == (np.arange(train.n_items)[None, :] < 15)
    assert s[own].mean() > s[~own].mean() + 1.0


def test_same_seed_same_model():
    train = _toy_interactions()
    states = []
    for _ in range(2):
        m = MF(train.n_users, train.n_items, dim=4, seed=2)
        Trainer(lr=0.01, epochs=3, batch_size=32, l2=1e-3, patience=None, seed=5, progress=False).fit(m, train)
        states.append(m.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k])


def test_early_stopping_restores_best_epoch():
    train = _toy_interactions()
    m = MF(train.n_users, train.n_items, dim=4, seed=0)
    values = iter([0.1, 0.5, 0.3, 0.2, 0.1, 0.0, 0.0])
    snapshots = []

    def validator(model):
        snapshots.append(model.user_factors.detach().clone())
        return next(values)

    h = Trainer(lr=0.01, epochs=7, batch_size=32, patience=3, progress=False).fit(m, train, validator)
    assert h.stopped_early and h.best_epoch == 1 and h.epochs == 5
    assert torch.equal(m.user_factors.detach(), snapshots[1])


def test_threads_option_is_restored_after_fit():
    train = _toy_interactions()
    before = torch.get_num_threads()
    Trainer(epochs=1, patience=None, threads=1, progress=False).fit(MF(train.n_users, train.n_items, dim=2), train)
    assert torch.get_num_threads() == before


def test_trainer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr"):
        Trainer(lr=0)
    with pytest.raises(ValueError, match="epochs"):
        Trainer(epochs=0)
    with pytest.raises(ValueError, match="patience"):
        Trainer(patience=0)
    with pytest.raises(ValueError, match="threads"):
        Trainer(threads=0)
    train = _toy_interactions()
    with pytest.raises(ValueError, match="built for"):
        Trainer(progress=False).fit(MF(3, 3, dim=2), train)


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_every_optimizer_runs(optimizer):
    train = _toy_interactions()
    m = MF(train.n_users, train.n_items, dim=4)
    h = Trainer(optimizer=optimizer, lr=0.05, epochs=2, patience=None, progress=False).fit(m, train)
    assert np.isfinite(h.loss).all()


def test_checkpoint_round_trip(tmp_path):
    m = MF(5, 6, dim=3, seed=4)
    pt = save_checkpoint(m, tmp_path / "ckpt", extra={"note": "x"})
    meta = json.loads((tmp_path / "ckpt.json").read_text())
    assert meta["model"] == "MF" and meta["config"]["dim"] == 3 and meta["extra"] == {"note": "x"}
    loaded = load_checkpoint(pt)
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(TypeError):
        save_checkpoint(m, tmp_path / "bad", extra={"x": object()})


def test_a_budget_that_is_not_a_multiple_of_eval_every_still_ends_validated():
    """Issue 15: 3 epochs with eval_every=5 used to finish with no validation at all (the CAT demo
    reported "best valid nDCG@10 nan"); the last epoch is now always validated."""
    train = _toy_interactions()
    calls = []

    def validator(model):
        calls.append(1)
        return 0.5

    m = MF(train.n_users, train.n_items, dim=4, seed=0)
    h = Trainer(lr=0.05, epochs=3, eval_every=5, batch_size=64, patience=None, progress=False).fit(m, train, validator)
    assert len(calls) == 1 and h.best_metric == 0.5 and h.best_epoch == 2
    assert np.isnan(h.metric[:2]).all() and h.metric[2] == 0.5
    calls.clear()
    h = Trainer(lr=0.05, epochs=7, eval_every=5, batch_size=64, patience=None, progress=False).fit(m, train, validator)
    assert len(calls) == 2 and not np.isnan(h.metric[4]) and not np.isnan(h.metric[6])
