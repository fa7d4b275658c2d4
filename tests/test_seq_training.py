"""SequenceTrainer: determinism, learning a strongly sequential toy data set, early stopping with
best-weight restore, the loss_fn hook's batches, negatives, and argument errors."""
import copy

import numpy as np
import pytest
import torch

from advrec.data import PAD, Interactions, leave_one_out, training_sequences, user_sequences
from advrec.evaluation import evaluate, validator
from advrec.models import MF, GRU4Rec, SASRec
from advrec.training import SequenceTrainer

N_USERS, N_ITEMS, LENGTH, T = 80, 50, 10, 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def walks(n_users=N_USERS, n_items=N_ITEMS, length=LENGTH, seed=0):
    """User u walks items s, s+1, s+2, ... (mod n_items) from a random start s, in time order."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, n_users)
    users = np.repeat(np.arange(n_users), length)
    items = (starts[:, None] + np.arange(length)[None, :]).reshape(-1) % n_items
    ts = np.tile(np.arange(length) * 10, n_users)
    perm = rng.permutation(len(users))  # input order must not matter, time does
    return Interactions(users[perm], items[perm], None, ts[perm], n_users, n_items,
                        np.arange(n_users), np.arange(n_items))


@pytest.fixture(scope="module")
def split():
    return leave_one_out(walks(), order="time")


def sasrec(seed=0, dropout=0.0, n_users=N_USERS, n_items=N_ITEMS):
    return SASRec(n_users, n_items, dim=16, max_len=T, n_blocks=1, dropout=dropout, seed=seed)


def gru(seed=0, dropout=0.0):
    return GRU4Rec(N_USERS, N_ITEMS, dim=16, max_len=T, dropout=dropout, seed=seed)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- determinism ----------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [sasrec, gru], ids=["sasrec", "gru4rec"])
def test_same_seed_same_losses_and_weights(split, build):
    runs = []
    for run, trainer_seed in enumerate((3, 3, 4)):
        model = build(seed=1, dropout=0.3)
        torch.manual_seed(100 + run)  # the trainer's seed, not the global RNG state, decides dropout
        h = SequenceTrainer(epochs=2, batch_size=32, lr=5e-3, seed=trainer_seed, progress=False).fit(model, split.train)
        runs.append((h.loss, state(model)))
    assert runs[0][0] == runs[1][0] and same_state(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0] and not same_state(runs[0][1], runs[2][1])


# --- learning -------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [sasrec, gru], ids=["sasrec", "gru4rec"])
def test_learns_the_next_item_of_a_walk(split, build):
    model = build(seed=0)
    model.set_histories(user_sequences(split.train, T, split.valid))
    before = evaluate(model, split.test, exclude=(split.train, split.valid), k=(10,), auc=False)
    h = SequenceTrainer(epochs=30, batch_size=16, lr=1e-2, l2=0.0, seed=0, progress=False).fit(model, split.train)
    assert len(h.loss) == 30 and not model.training
    assert h.loss[-1] < 0.5 * h.loss[0]
    assert all(b <= a * 1.2 for a, b in zip(h.loss[:5], h.loss[1:6]))  # no early blow-up
    # training never reads the histories: the ones set before fit are still there
    np.testing.assert_array_equal(model.histories.numpy(), user_sequences(split.train, T, split.valid))
    after = evaluate(model, split.test, exclude=(split.train, split.valid), k=(10,), auc=False)
    # random ranks the target among 50 - 9 candidates: nDCG@10 about 0.1
    assert before.summary()["nDCG@10"] < 0.35
    assert after.summary()["nDCG@10"] > 0.7
    assert after.summary()["HR@10"] > 0.9


# --- validation, early stopping, best weights -----------------------------------------------------

def test_patience_stops_early_and_restores_the_best_epoch(split):
    script = [0.1, 0.5, 0.3, 0.2, 0.9, 0.9, 0.9, 0.9]
    snapshots = []

    def scripted(model):
        assert not model.training and not torch.is_grad_enabled()
        snapshots.append(state(model))
        return script[len(snapshots) - 1]

    model = sasrec(seed=2)
    h = SequenceTrainer(epochs=8, batch_size=32, lr=1e-2, patience=2, eval_every=1, seed=0,
                        progress=False).fit(model, split.train, validator=scripted)
    assert h.stopped_early and len(h.loss) == 4 and len(snapshots) == 4
    assert h.best_epoch == 1 and h.best_metric == 0.5 and h.metric == script[:4]
    assert same_state(state(model), snapshots[1])
    assert not same_state(state(model), snapshots[3])
    assert not model.training


def test_eval_every_skips_epochs_and_patience_counts_epochs(split):
    calls = []

    def scripted(model):
        calls.append(1)
        return [0.4, 0.3, 0.2][len(calls) - 1]

    h = SequenceTrainer(epochs=9, batch_size=64, lr=1e-2, patience=4, eval_every=2, seed=0,
                        progress=False).fit(sasrec(), split.train, validator=scripted)
    # validated after epochs 1, 3, 5; 4 epochs without improvement after epoch 5 -> stop
    assert len(h.loss) == 6 and len(calls) == 3 and h.stopped_early and h.best_epoch == 1
    assert np.isnan(h.metric[0]) and h.metric[1] == 0.4 and np.isnan(h.metric[4])


def test_restored_weights_reproduce_the_best_validation_metric(split):
    model = sasrec(seed=3)
    model.set_histories(user_sequences(split.train, T))
    val = validator(split.valid, exclude=split.train, metric="nDCG@10")
    h = SequenceTrainer(epochs=10, batch_size=16, lr=3e-2, patience=2, eval_every=1, seed=1,
                        progress=False).fit(model, split.train, validator=val)
    assert h.best_metric == np.nanmax(h.metric)
    # with these settings the metric peaks before the last epoch run, so restoring is not a no-op
    assert h.stopped_early and h.best_epoch < len(h.metric) - 1 and h.metric[-1] != h.best_metric
    assert val(model) == h.best_metric


def test_without_validator_the_last_epoch_is_kept(split):
    model = sasrec()
    h = SequenceTrainer(epochs=3, batch_size=64, progress=False).fit(model, split.train)
    assert h.best_epoch == 2 and not h.stopped_early and all(np.isnan(h.metric))


# --- the loss_fn hook and negatives ---------------------------------------------------------------

def test_loss_fn_receives_the_training_batches(split):
    # add a user with a single train item: nothing to predict, so never in a batch
    tr = split.train
    extra = Interactions(np.r_[tr.user, N_USERS], np.r_[tr.item, 7], None, np.r_[tr.timestamp, 0],
                         N_USERS + 1, N_ITEMS, np.arange(N_USERS + 1), np.arange(N_ITEMS))
    seqs = training_sequences(extra, T)
    indptr, indices = extra.to_csr()
    batches = []

    def hook(model, batch):
        batches.append({k: v.clone() for k, v in batch.items()})
        assert model.training
        return model.loss(batch)

    model = sasrec(n_users=N_USERS + 1)
    SequenceTrainer(epochs=2, batch_size=24, seed=0, loss_fn=hook, progress=False).fit(model, extra)
    assert len(batches) == 2 * 4  # ceil(80 / 24) steps per epoch
    for epoch in (batches[:4], batches[4:]):
        users = torch.cat([b["user"] for b in epoch]).numpy()
        assert sorted(users) == list(range(N_USERS))  # each user with a target once; not the new one
    for b in batches:
        n = len(b["user"])
        assert 1 <= n <= 24 and b["user"].shape == (n,)
        for key in ("seq", "pos", "neg"):
            assert b[key].shape == (n, T) and b[key].dtype == torch.long
        u = b["user"].numpy()
        np.testing.assert_array_equal(b["seq"].numpy(), seqs.inputs[u])
        np.testing.assert_array_equal(b["pos"].numpy(), seqs.targets[u])
        np.testing.assert_array_equal(b["neg"].numpy() == PAD, seqs.targets[u] == PAD)
        for r, user in enumerate(u):
            own = indices[indptr[user]:indptr[user + 1]]
            neg = b["neg"][r][b["neg"][r] != PAD].numpy()
            assert len(neg) and not np.isin(neg, own).any()


def test_negatives_avoid_train_items_and_pad_where_targets_pad():
    rng = np.random.default_rng(0)
    n_users, n_items = 12, 9
    users = rng.integers(0, n_users, 80)
    items = rng.integers(0, n_items, 80)
    keep = ~((users == 11) & (items == 8))
    users, items = np.r_[users[keep], [11] * 8], np.r_[items[keep], range(8)]  # user 11: all items but 8
    train = Interactions(users, items, None, np.arange(len(users)), n_users, n_items,
                         np.arange(n_users), np.arange(n_items))
    targets = training_sequences(train, 6).targets
    indptr, indices = train.to_csr()
    order = rng.permutation(n_users)
    neg = SequenceTrainer._negatives(order, targets, indptr, indices, n_items, np.random.default_rng(5))
    assert isinstance(neg, torch.Tensor) and neg.dtype == torch.long and neg.shape == (n_users, 6)
    neg = neg.numpy()
    np.testing.assert_array_equal(neg == PAD, targets[order] == PAD)
    for r, u in enumerate(order):
        drawn = neg[r][neg[r] != PAD]
        assert ((drawn >= 0) & (drawn < n_items)).all()
        assert not np.isin(drawn, indices[indptr[u]:indptr[u + 1]]).any()
        if u == 11:
            assert len(drawn) and (drawn == 8).all()
    again = SequenceTrainer._negatives(order, targets, indptr, indices, n_items, np.random.default_rng(5))
    np.testing.assert_array_equal(again.numpy(), neg)
    other = SequenceTrainer._negatives(order, targets, indptr, indices, n_items, np.random.default_rng(6))
    assert not np.array_equal(other.numpy(), neg)


# --- errors ---------------------------------------------------------------------------------------

def test_fit_errors(split):
    trainer = SequenceTrainer(epochs=1, progress=False)
    with pytest.raises(ValueError, match="SequentialRecommender"):
        trainer.fit(MF(N_USERS, N_ITEMS), split.train)
    with pytest.raises(ValueError, match="users"):
        trainer.fit(sasrec(n_users=N_USERS + 1), split.train)
    with pytest.raises(ValueError, match="items"):
        trainer.fit(sasrec(n_items=N_ITEMS + 1), split.train)
    singles = Interactions(np.arange(5), np.arange(5), None, np.zeros(5, dtype=np.int64), 5, 6,
                           np.arange(5), np.arange(6))
    with pytest.raises(ValueError, match="two or more"):
        trainer.fit(SASRec(5, 6, dim=4, max_len=3), singles)
    empty = singles.subset(np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="two or more"):
        trainer.fit(SASRec(5, 6, dim=4, max_len=3), empty)
    # a user with every item has no negative: an error, not an endless rejection loop
    everything = Interactions(np.r_[[0] * 6, 1, 1], np.r_[np.arange(6), 0, 1], None, np.arange(8), 2, 6,
                              np.arange(2), np.arange(6))
    with pytest.raises(ValueError, match="every item"):
        trainer.fit(SASRec(2, 6, dim=4, max_len=3), everything)


@pytest.mark.parametrize("name, bad", [
    ("epochs", 0), ("epochs", -1), ("epochs", 2.0), ("epochs", True),
    ("batch_size", 0), ("batch_size", 1.5), ("batch_size", None),
    ("lr", 0), ("lr", -1e-3), ("lr", True), ("lr", "0.1"),
    ("l2", -1e-5), ("l2", True), ("l2", "0"),
    ("patience", 0), ("eval_every", 0), ("threads", 0),
])
def test_constructor_errors_name_the_argument(name, bad):
    with pytest.raises(ValueError, match=name):
        SequenceTrainer(**{name: bad})


def test_valid_constructor_values_are_kept():
    t = SequenceTrainer(epochs=3, batch_size=7, lr=1, l2=0, patience=5, eval_every=2, threads=1)
    assert (t.epochs, t.batch_size, t.lr, t.l2, t.patience, t.eval_every, t.threads) == (3, 7, 1.0, 0.0, 5, 2, 1)
    assert isinstance(t.lr, float)


def test_threads_setting_is_restored(split):
    before = torch.get_num_threads()
    seen = []

    def hook(model, batch):
        seen.append(torch.get_num_threads())
        return model.loss(batch)

    model = SASRec(N_USERS, N_ITEMS, dim=4, max_len=3, n_blocks=1)
    SequenceTrainer(epochs=1, batch_size=N_USERS, threads=before + 1, loss_fn=hook, progress=False).fit(
        model, split.train)
    assert seen and set(seen) == {before + 1}
    assert torch.get_num_threads() == before


def test_loss_blow_up_is_reported(split):
    def nan_loss(model, batch):
        return model.loss(batch) * float("nan")

    with pytest.raises(FloatingPointError, match="epoch 0"):
        SequenceTrainer(epochs=2, batch_size=64, loss_fn=nan_loss, progress=False).fit(sasrec(), split.train)


def test_model_copy_is_independent(split):
    """fit trains in place: a deep copy taken before is untouched."""
    model = sasrec()
    kept = copy.deepcopy(model)
    SequenceTrainer(epochs=1, batch_size=64, progress=False).fit(model, split.train)
    assert not same_state(state(model), state(kept))
