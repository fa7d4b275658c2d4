"""sampled_cases / case_ranks: the candidates and ranks evaluate(protocol="sampled") uses, drawn once."""
import numpy as np
import pytest
import torch

from advrec.data import Interactions
from advrec.evaluation import case_ranks, evaluate, sampled_cases


def inter(users, items, n_users, n_items):
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    return Interactions(users, items, None, None, n_users, n_items, np.arange(n_users), np.arange(n_items))


class TableModel(torch.nn.Module):
    """Scores from a fixed matrix with many ties (integers), the protocol's hard case."""

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.as_tensor(scores, dtype=torch.float32)
        self.n_users, self.n_items = self.scores.shape

    def score(self, users, items, delta=None):
        return self.scores[users.unsqueeze(-1).expand_as(items), items] if items.dim() == 2 else self.scores[users, items]


def random_case(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 30, 40
    pairs = {(u, i) for u, i in zip(rng.integers(0, n_users, 500), rng.integers(0, n_items, 500))}
    pairs = np.array(sorted(pairs))
    is_test = rng.random(len(pairs)) < 0.15
    train = inter(pairs[~is_test, 0], pairs[~is_test, 1], n_users, n_items)
    test = inter(pairs[is_test, 0], pairs[is_test, 1], n_users, n_items)
    scores = rng.integers(0, 6, size=(n_users, n_items))
    return train, test, TableModel(scores), scores


@pytest.mark.parametrize("seed", range(5))
def test_cases_never_hold_seen_items_and_match_evaluate(seed):
    train, test, model, scores = random_case(seed)
    cases = sampled_cases(test, exclude=train, n_negatives=7, seed=seed)
    train_csr, test_csr = train.to_csr(), test.to_csr()
    assert len(cases) == len(test)
    for c in range(len(cases)):
        u, n = cases.user[c], cases.n_neg[c]
        negs = cases.items[c, 1:1 + n]
        own = set(train_csr[1][train_csr[0][u]:train_csr[0][u + 1]]) | set(test_csr[1][test_csr[0][u]:test_csr[0][u + 1]])
        assert not own & set(negs.tolist())           # never a user's interacted item
        assert len(set(negs.tolist())) == n           # drawn without replacement
        assert (cases.items[c, 1 + n:] == cases.items[c, 0]).all()  # padding repeats the target
    greater, equal = case_ranks(model, cases, batch_size=4)
    # brute force: counts of negatives above / tied with the target
    for c in range(len(cases)):
        row = scores[cases.user[c], cases.items[c, :1 + cases.n_neg[c]]]
        assert greater[c] == (row[1:] > row[0]).sum() and equal[c] == (row[1:] == row[0]).sum()
    # evaluate draws the very same negatives (same seed) in its tiles: HR@k from these ranks agrees
    res = evaluate(model, test, exclude=train, k=(3,), protocol="sampled", n_negatives=7, seed=seed, batch_size=5,
                   progress=False)
    hr_case = (np.minimum(greater + equal + 1, 3) - np.minimum(greater, 3)) / (equal + 1.0)
    per_user = np.array([hr_case[cases.user == u].mean() for u in res.users])
    np.testing.assert_allclose(res.per_user["HR@3"], per_user)


def test_sampled_cases_rejects_bad_arguments():
    train, test, _, _ = random_case(0)
    with pytest.raises(ValueError, match="n_negatives"):
        sampled_cases(test, exclude=train, n_negatives=0)
    other = inter([0], [0], 3, 4)
    with pytest.raises(ValueError, match="exclude"):
        sampled_cases(test, exclude=other)
