"""Models follow the Recommender protocol; delta perturbs without touching parameters."""
import numpy as np
import pytest
import torch

from advrec.data import Interactions
from advrec.models import MF, Pop


def test_mf_scores_are_dot_products_and_consistent():
    m = MF(5, 7, dim=3, seed=1)
    users = torch.tensor([0, 4, 2])
    full = m.full_scores(users)
    expect = m.user_factors[users] @ m.item_factors.t()
    torch.testing.assert_close(full, expect)
    items = torch.tensor([[1, 2], [6, 0], [3, 3]])
    torch.testing.assert_close(m.score(users, items), torch.gather(full, 1, items))
    torch.testing.assert_close(m.score(users, items[:, 0]), full[torch.arange(3), items[:, 0]])


def test_mf_delta_is_additive_and_leaves_parameters_alone():
    m = MF(4, 6, dim=2, seed=0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    d_user = torch.randn(4, 2)
    d_item = torch.randn(6, 2)
    users = torch.arange(4)
    got = m.full_scores(users, delta={"user": d_user, "item": d_item})
    expect = (m.user_factors + d_user) @ (m.item_factors + d_item).t()
    torch.testing.assert_close(got, expect)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


def test_mf_loss_is_bpr_and_gradients_reach_delta():
    m = MF(3, 4, dim=2, seed=0)
    batch = {"user": torch.tensor([0, 1]), "pos": torch.tensor([1, 2]), "neg": torch.tensor([3, 0])}
    s = m.score_batch(batch)
    expect = -torch.nn.functional.logsigmoid(s[:, 0] - s[:, 1]).mean()
    torch.testing.assert_close(m.loss(batch), expect)
    delta = {"item": torch.zeros(4, 2, requires_grad=True)}
    m.loss(batch, delta).backward()
    assert delta["item"].grad is not None and delta["item"].grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="dim"):
        MF(3, 4, dim=0)
    m = MF(3, 4, dim=2)
    with pytest.raises(IndexError, match="users"):
        m.full_scores(torch.tensor([3]))
    with pytest.raises(IndexError, match="items"):
        m.score(torch.tensor([0]), torch.tensor([4]))
    with pytest.raises(ValueError, match="perturbable"):
        m.full_scores(torch.tensor([0]), delta={"feature": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="shape"):
        m.full_scores(torch.tensor([0]), delta={"user": torch.zeros(2, 2)})


def test_pop_ranks_by_training_count():
    train = Interactions.from_raw(np.array([1, 2, 3, 1]), np.array([10, 10, 10, 20]))
    pop = Pop.fit(train)
    s = pop.full_scores(torch.tensor([0, 2]))
    assert s.shape == (2, 2)
    assert s[0].tolist() == [3.0, 1.0]
    with pytest.raises(TypeError, match="counting"):
        pop.loss({})


def test_random_scores_are_uniform_fixed_and_tile_independent():
    from advrec.models import Random

    model = Random(50, 400, seed=7)
    full = model.full_scores(torch.arange(50))
    assert full.shape == (50, 400) and full.dtype == torch.float32
    assert 0 <= float(full.min()) and float(full.max()) < 1
    assert abs(float(full.mean()) - 0.5) < 0.02  # 20K uniform draws
    # the same (user, item) always scores the same, whatever else is scored with it
    assert torch.equal(model.full_scores(torch.tensor([49, 3])), full[[49, 3]])
    pairs = model.score(torch.tensor([1, 2]), torch.tensor([[5, 6], [7, 8]]))
    assert torch.equal(pairs, torch.stack([full[1, 5:7], full[2, 7:9]]))
    assert torch.equal(model.score(torch.tensor([4]), torch.tensor([9])), full[4, 9:10])
    # different users get different rankings; another seed gives other scores
    assert not torch.equal(full[0].argsort(), full[1].argsort())
    assert not torch.equal(Random(50, 400, seed=8).full_scores(torch.arange(2)), full[:2])
    # top-1 items spread over the catalogue (no structure from the hash)
    assert len(set(full.argmax(1).tolist())) > 40
    with pytest.raises(IndexError, match="users"):
        model.full_scores(torch.tensor([50]))
    with pytest.raises(ValueError, match="n_items"):
        Random(3, 0)
    with pytest.raises(TypeError):
        model.loss({})
