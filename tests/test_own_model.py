"""Bring your own model (issue 14): a plain PyTorch two-tower model, wrapped for advrec by an
adapter of under 30 lines, trained with ``Trainer``, attacked with FGSM/PGD, trained with
``train_amf``, checkpointed and loaded in a fresh process; the registry, the contract's error
messages and the declared capabilities of the built-in models.

This module is also the "user's module" of the fresh-process test: ``load_checkpoint`` imports it
by the name pytest gave it, which re-runs ``@register_model``. Keep its top level free of work.
"""
import copy
import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advrec
from advrec.attacks import FGSM, PGD
from advrec.data import Interactions, leave_one_out
from advrec.data.sampling import BPRSampler
from advrec.evaluation import evaluate
from advrec.models import (BATCH_KEYS, CAPABILITIES, DUIF, GRU4Rec, MF, MODELS, NEG_KEY, POS_KEY, SEQ_KEY,
                           USER_KEY, VBPR, Batch, BPRTables, ClosedFormAMR, DeltaGradient, Delta, FromConfig, L2Penalty,
                           Pop, Random, Recommender, SASRec, SequenceEncoder, check_users, register_model,
                           seeded)
from advrec.training import Trainer, load_checkpoint, save_checkpoint, train_amf

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- the user's own model: plain PyTorch, knows nothing about advrec ---------------------------
class TwoTower(nn.Module):
    """Embeddings, then a small MLP tower per side; the score is the towers' dot product."""

    def __init__(self, n_users: int, n_items: int, dim: int = 16, hidden: int = 32):
        super().__init__()
        self.user_emb, self.item_emb = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)
        self.user_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.item_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_tower(self.user_emb(users)) * self.item_tower(self.item_emb(items))).sum(-1)


# ---- the adapter: everything advrec needs (its length is asserted below) -----------------------
@register_model
class TwoTowerRec(TwoTower, Recommender):
    """TwoTower behind the Recommender protocol; both embedding tables are perturbable."""
    def __init__(self, n_users: int, n_items: int, dim: int = 16, hidden: int = 32, seed: int = 0):
        with seeded(seed):  # our own layers' initial weights from our seed (the caller's RNG kept)
            super().__init__(n_users, n_items, dim, hidden)
        self.n_users, self.n_items, self.dim, self.hidden, self.seed = n_users, n_items, dim, hidden, seed

    def config(self) -> dict:  # the constructor's keyword arguments, JSON-serialisable
        return {k: getattr(self, k) for k in ("n_users", "n_items", "dim", "hidden", "seed")}

    def perturbable(self) -> Dict[str, torch.Tensor]:
        return {"user": self.user_emb.weight, "item": self.item_emb.weight}

    def _towers(self, users: torch.Tensor, items, delta: Delta):
        d = self.check_delta(delta)
        U, I = self.user_emb.weight + d.get("user", 0), self.item_emb.weight + d.get("item", 0)
        return self.user_tower(U[check_users(users, self.n_users)]), self.item_tower(I[items])

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        u, i = self._towers(users, check_users(items, self.n_items, "items"), delta)
        return ((u.unsqueeze(-2) if i.dim() > u.dim() else u) * i).sum(-1)  # items [b] or [b, m]

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        u, i = self._towers(users, slice(None), delta)
        return u @ i.t()

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:  # BPR: softplus(s_neg - s_pos)
        return F.softplus(self.score_batch(batch, delta).diff(dim=-1)).mean()
# ---- end of the adapter ------------------------------------------------------------------------


ADAPTER_LINES = len(inspect.getsource(TwoTowerRec).splitlines())


@pytest.mark.checkout
def test_the_adapter_is_under_30_lines_and_is_the_one_docs_show():
    assert ADAPTER_LINES < 30, ADAPTER_LINES
    docs = Path(__file__).resolve().parents[1] / "docs" / "models.md"
    assert inspect.getsource(TwoTowerRec) in docs.read_text()  # docs/models.md's worked example
    assert f"({ADAPTER_LINES} lines" in docs.read_text()


# ---- data: a small, real-looking log ---------------------------------------------------------
def _log(seed: int = 0, n_users: int = 60, n_items: int = 40, per_user: int = 10) -> Interactions:
    """Two taste clusters with popular items and noise; raw string ids, as a file would have."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    pop = np.linspace(2.0, 0.5, n_items // 2)
    for u in range(n_users):
        side = 0 if u < n_users // 2 else n_items // 2
        chosen = set((side + rng.choice(n_items // 2, per_user - 1, replace=False, p=pop / pop.sum())).tolist())
        chosen.add(int(rng.integers(n_items)))
        for i in sorted(chosen):
            users.append(f"u{u:03d}")
            items.append(f"i{i:03d}")
    return Interactions.from_raw(np.array(users), np.array(items))


def _triples(train: Interactions, seed: int = 0) -> dict:
    indptr, indices = train.to_csr()
    u, i, j = BPRSampler(indptr, indices, train.n_items, seed=seed).epoch()
    return {USER_KEY: torch.from_numpy(u), POS_KEY: torch.from_numpy(i), NEG_KEY: torch.from_numpy(j)}


@pytest.fixture(scope="module")
def split():
    return leave_one_out(_log(), order="random", validation=False, seed=0)


@pytest.fixture(scope="module")
def trained(split):
    """The worked example's first step: Trainer with l2=0 needs only ``loss`` from the model."""
    model = TwoTowerRec(split.train.n_users, split.train.n_items, seed=1)
    start = copy.deepcopy(model.state_dict())
    history = Trainer(lr=0.01, epochs=30, batch_size=64, patience=None, progress=False, seed=0).fit(model, split.train)
    return model, history, start


# ---- the worked example ----------------------------------------------------------------------
def test_user_forward_is_not_shadowed_and_library_calls_score_batch():
    model = TwoTowerRec(5, 7, seed=0)
    users, pos, neg = torch.tensor([0, 1, 4]), torch.tensor([2, 6, 0]), torch.tensor([5, 5, 1])
    with torch.no_grad():
        own = model(users, pos)  # the user's own forward(users, items)
        torch.testing.assert_close(own, TwoTower.forward(model, users, pos))
        s = model.score_batch({USER_KEY: users, POS_KEY: pos, NEG_KEY: neg})
        torch.testing.assert_close(s, torch.stack([own, model(users, neg)], -1))

    class RecommenderFirst(Recommender, TwoTower):  # the protocol first in the bases: still the user's forward
        pass

    assert RecommenderFirst.forward is TwoTower.forward
    m = MF(3, 4, dim=2)
    batch = {USER_KEY: torch.tensor([0, 2]), POS_KEY: torch.tensor([1, 3]), NEG_KEY: torch.tensor([0, 0])}
    torch.testing.assert_close(m(batch), m.score_batch(batch))  # built-ins keep forward = score_batch


def test_the_user_model_seeds_its_own_initialisation():
    state = torch.random.get_rng_state()
    a, b, c = TwoTowerRec(6, 5, seed=3), TwoTowerRec(6, 5, seed=3), TwoTowerRec(6, 5, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is untouched
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.user_emb.weight, c.user_emb.weight)


def test_trainer_fits_the_user_model_with_only_loss(trained, split):
    model, history, start = trained
    assert history.epochs == 30 and all(math.isfinite(x) for x in history.loss)
    assert history.loss[-1] < 0.8 * history.loss[0]
    assert not torch.equal(model.user_emb.weight, start["user_emb.weight"])
    result = evaluate(model, split.test, exclude=split.train, k=10).summary()
    rand = evaluate(Random(model.n_users, model.n_items), split.test, exclude=split.train, k=10).summary()
    assert result["nDCG@10"] > rand["nDCG@10"]


@pytest.mark.parametrize("attack", [lambda m: FGSM(m, eps=1.0), lambda m: PGD(m, eps=1.0, steps=3, seed=0)],
                         ids=["FGSM", "PGD"])
def test_attacks_leave_the_parameters_alone_and_change_the_evaluation(trained, split, attack):
    model, _, _ = trained
    batch = _triples(split.train)
    model.zero_grad(set_to_none=True)  # the trainer's last step left its gradients
    before = {k: v.clone() for k, v in model.state_dict().items()}
    delta = attack(model)(batch)
    assert set(delta) == {"user", "item"}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    norms = delta["user"].norm(dim=1)
    assert float(norms.max()) <= 1.0 + 1e-5  # eps per row of each table
    with torch.no_grad():
        assert float(model.loss(batch, delta)) > float(model.loss(batch))
        ordered = [float((s[:, 0] > s[:, 1]).double().mean()) for s in (model.score_batch(batch),
                                                                         model.score_batch(batch, delta))]
    assert ordered[1] < ordered[0]  # fewer training pairs ranked right under attack
    clean = evaluate(model, split.test, exclude=split.train, k=10).summary()
    attacked = evaluate(model, split.test, exclude=split.train, k=10, delta=delta).summary()
    assert attacked["nDCG@10"] != clean["nDCG@10"] and attacked["AUC"] != clean["AUC"]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_train_amf_trains_the_user_model(trained, split):
    model = copy.deepcopy(trained[0])
    before = copy.deepcopy(model.state_dict())
    history = train_amf(model, split.train, eps=0.5, lam=1.0, epochs=3, lr=0.01, batch_size=64, seed=0,
                        patience=None, progress=False)
    assert history.epochs == 3 and all(math.isfinite(x) for x in history.loss)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


_FRESH = """
import importlib, json, sys
import torch
from advrec.training import load_checkpoint
assert not any(m.endswith("test_own_model") for m in sys.modules)  # nothing imported it yet
model = load_checkpoint(sys.argv[1])          # imports the user's module: @register_model runs
module = importlib.import_module(type(model).__module__)
assert type(model) is module.TwoTowerRec
with torch.no_grad():
    scores = model.full_scores(torch.arange(model.n_users))
print(json.dumps({"model": json.load(open(sys.argv[1] + ".json"))["model"], "scores": scores.tolist()}))
"""


def test_checkpoint_loads_in_a_fresh_process_with_identical_scores(trained, tmp_path):
    model, _, _ = trained
    save_checkpoint(model, tmp_path / "two_tower", extra={"note": "issue 14"})
    meta = json.loads((tmp_path / "two_tower.json").read_text())
    assert meta["model"] == f"{TwoTowerRec.__module__}.TwoTowerRec" and meta["config"] == model.config()
    assert meta["advrec_version"] == advrec.__version__
    root = Path(__file__).resolve().parents[len(__name__.split(".")) - 1]  # where the module is importable
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _FRESH, str(tmp_path / "two_tower")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["model"] == meta["model"]
    with torch.no_grad():
        want = model.full_scores(torch.arange(model.n_users))
    assert torch.equal(torch.tensor(got["scores"], dtype=want.dtype), want)
    same = load_checkpoint(tmp_path / "two_tower")  # and in this process: the registered class
    assert type(same) is TwoTowerRec


# ---- the registry -----------------------------------------------------------------------------
def _twin(second: bool):
    """Two different class objects with one qualified name (``_twin.<locals>.Twin``)."""
    if second:
        class Twin(TwoTowerRec):
            pass
    else:
        class Twin(TwoTowerRec):
            pass
    return Twin


def test_register_model_is_a_decorator_keyed_by_qualified_name():
    first = _twin(False)
    assert register_model(first) is first and register_model(first) is first  # idempotent
    name = f"{__name__}._twin.<locals>.Twin"
    assert MODELS[name] is first and MODELS.name_of(first) == name
    assert MODELS[f"{__name__}.TwoTowerRec"] is TwoTowerRec
    with pytest.raises(ValueError, match=r"(?s)cannot register .*Twin \(class object at .* already belongs to "
                                         r".*Twin \(class object at "):
        register_model(_twin(True))
    assert MODELS[name] is first
    with pytest.raises(TypeError, match="register_model"):
        MODELS["Mine"] = TwoTowerRec
    with pytest.raises(TypeError, match="model class"):
        register_model(lambda: None)


def test_two_user_classes_of_one_bare_name_do_not_collide():
    """MF in another module is not advrec's MF: qualified names keep them apart."""
    import types

    mod = types.ModuleType("user_models_for_test")
    mod.MF = type("MF", (TwoTowerRec,), {"__module__": mod.__name__})
    register_model(mod.MF)
    assert MODELS["user_models_for_test.MF"] is mod.MF and MODELS["MF"] is MF


def test_saving_an_unregistered_class_names_register_model(tmp_path):
    class Unregistered(TwoTowerRec):  # a subclass of a registered class is not registered
        pass

    with pytest.raises(ValueError, match=r"advrec\.models\.register_model"):
        save_checkpoint(Unregistered(3, 4), tmp_path / "x")
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("name, why", [("no_such_module_for_advrec.Model", "no module"),
                                       ("json.JSONDecoder", "did not register"),
                                       ("AdvNeuMF", "neither a built-in")])
def test_loading_an_unknown_name_names_register_model(tmp_path, name, why):
    save_checkpoint(MF(3, 4, dim=2), tmp_path / "ck")
    meta = json.loads((tmp_path / "ck.json").read_text())
    (tmp_path / "ck.json").write_text(json.dumps(dict(meta, model=name)))
    with pytest.raises(ValueError, match=rf"(?s)unknown model.*{why}.*advrec\.models\.register_model"):
        load_checkpoint(tmp_path / "ck")


def _old_checkpoint(model, path: Path, name: str) -> None:
    """A checkpoint as the version before the registry wrote it: bare class name, no module."""
    torch.save(model.state_dict(), path.with_suffix(".pt"))
    path.with_suffix(".json").write_text(json.dumps({"model": name, "config": model.config(),
                                                     "advrec_version": "0.1.0", "extra": {}}))


@pytest.mark.parametrize("make", [lambda: MF(4, 5, dim=3, seed=2),
                                  lambda: VBPR(4, 5, np.arange(15, dtype=np.float32).reshape(5, 3), dim=2),
                                  lambda: SASRec(3, 6, dim=4, max_len=5, n_blocks=1, dropout=0.0)],
                         ids=["MF", "VBPR", "SASRec"])
def test_old_bare_name_checkpoints_still_load(tmp_path, make):
    model = make()
    name = type(model).__name__
    _old_checkpoint(model, tmp_path / "old", name)
    back = load_checkpoint(tmp_path / "old")
    assert type(back) is type(model)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())
    save_checkpoint(model, tmp_path / "new")  # built-ins still write their bare name
    assert json.loads((tmp_path / "new.json").read_text())["model"] == name
    assert MODELS[f"{type(model).__module__}.{name}"] is type(model)  # qualified alias


# ---- the contract's messages -------------------------------------------------------------------
def test_a_missing_config_says_what_to_return_and_why(tmp_path):
    @register_model
    class NoConfig(Recommender):
        n_users, n_items = 2, 2

    with pytest.raises(NotImplementedError, match=r"(?s)config\(\).*keyword arguments.*JSON-serialisable.*"
                                                  r"save_checkpoint.*load_checkpoint"):
        NoConfig().config()
    with pytest.raises(NotImplementedError, match="keyword arguments"):
        save_checkpoint(NoConfig(), tmp_path / "nc")


def test_l2_without_l2_penalty_names_the_method_and_the_alternative(split):
    model = TwoTowerRec(split.train.n_users, split.train.n_items)
    before = copy.deepcopy(model.state_dict())
    assert not isinstance(model, L2Penalty)
    for loss_fn in (None, lambda m, b: m.loss(b)):
        with pytest.raises(TypeError, match=r"(?s)l2_penalty\(batch\).*weight_decay"):
            Trainer(l2=1e-3, epochs=1, progress=False, loss_fn=loss_fn).fit(model, split.train)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # refused before training
    with pytest.raises(TypeError, match="l2_penalty"):
        model.regularized_loss(_triples(split.train), 0.1)
    h = Trainer(weight_decay=1e-3, epochs=1, progress=False).fit(model, split.train)  # the alternative
    assert math.isfinite(h.loss[0])


def test_batch_keys_and_check_users_are_public():
    assert BATCH_KEYS == ("user", "pos", "neg") and SEQ_KEY == "seq"
    assert torch.equal(check_users(torch.tensor([0, 2], dtype=torch.int32), 3), torch.tensor([0, 2]))
    with pytest.raises(IndexError, match="items must lie in"):
        check_users(torch.tensor([3]), 3, "items")
    assert advrec.register_model is register_model
    from advrec._version import __version__
    assert advrec.__version__ == __version__


# ---- capabilities --------------------------------------------------------------------------------
_FEATURES = np.ones((5, 3), np.float32)
EXPECTED = {  # model -> (L2Penalty, DeltaGradient, ClosedFormAMR, SequenceEncoder, FromConfig on the class,
    # BPRTables)
    "MF": (lambda: MF(3, 5, dim=2), (True, True, False, False, False, True)),
    "VBPR": (lambda: VBPR(3, 5, _FEATURES, dim=2), (True, True, True, False, True, False)),
    "DUIF": (lambda: DUIF(3, 5, _FEATURES, dim=2), (True, True, True, False, True, False)),
    "SASRec": (lambda: SASRec(3, 5, dim=4, max_len=4, n_blocks=1), (False, False, False, True, False, False)),
    "GRU4Rec": (lambda: GRU4Rec(3, 5, dim=4, max_len=4), (False, False, False, True, False, False)),
    "Pop": (lambda: Pop(3, 5), (False, False, False, False, False, False)),
    "Random": (lambda: Random(3, 5), (False, False, False, False, False, False)),
    "TwoTowerRec": (lambda: TwoTowerRec(3, 5), (False, False, False, False, False, False)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capabilities_of_the_models(name):
    make, want = EXPECTED[name]
    model = make()
    got = (isinstance(model, L2Penalty), isinstance(model, DeltaGradient), isinstance(model, ClosedFormAMR),
           isinstance(model, SequenceEncoder), isinstance(type(model), FromConfig), isinstance(model, BPRTables))
    assert got == want
    assert CAPABILITIES == (L2Penalty, DeltaGradient, ClosedFormAMR, SequenceEncoder, FromConfig, BPRTables)


def test_a_user_model_gains_a_capability_by_defining_the_method():
    """The attack takes the model's own delta_gradient once it has one (checked by isinstance)."""
    calls = []

    class WithGradient(TwoTowerRec):
        def delta_gradient(self, batch, delta, targets):
            calls.append(tuple(targets))
            return {t: torch.full_like(self.perturbable()[t], 1.0) for t in targets}

    model = WithGradient(4, 6)
    assert isinstance(model, DeltaGradient) and not isinstance(TwoTowerRec(4, 6), DeltaGradient)
    batch = {USER_KEY: torch.tensor([0, 1]), POS_KEY: torch.tensor([2, 3]), NEG_KEY: torch.tensor([4, 5])}
    delta = FGSM(model, 0.5)(batch)
    assert calls == [("user", "item")]
    torch.testing.assert_close(delta["item"].norm(dim=1), torch.full((6,), 0.5))  # every row: grad was all ones


def test_cat_refuses_a_model_without_the_sequence_encoder():
    from advrec.training.cat import CascadeAdversarialLoss

    batch = {USER_KEY: torch.tensor([0]), SEQ_KEY: torch.tensor([[0, 1]]), POS_KEY: torch.tensor([[1, 2]]),
             NEG_KEY: torch.tensor([[3, 3]])}
    with pytest.raises(TypeError, match="SequenceEncoder"):
        CascadeAdversarialLoss("adv_global")(TwoTowerRec(2, 4), batch)


def test_sequential_score_batch_scores_every_position():
    from advrec.models.sequential import bce_pairs

    model = SASRec(3, 6, dim=4, max_len=4, n_blocks=1, dropout=0.0).eval()
    seq = torch.tensor([[-1, 0, 1, 2], [3, 4, 5, 0]])
    batch = {USER_KEY: torch.tensor([0, 1]), SEQ_KEY: seq, POS_KEY: torch.tensor([[-1, 1, 2, 3], [4, 5, 0, 1]]),
             NEG_KEY: torch.tensor([[-1, 5, 5, 5], [1, 1, 2, 2]])}
    with torch.no_grad():
        s = model.score_batch(batch)
        assert s.shape == (2, 4, 2)
        torch.testing.assert_close(bce_pairs(s[..., 0], s[..., 1], batch[POS_KEY] != -1), model.loss(batch))
        assert torch.equal(model(batch), model.encode(seq))  # forward kept: the states, as before


def test_a_missing_dependency_of_the_users_module_is_not_hidden(tmp_path, monkeypatch):
    """load_checkpoint imports the user's module; an ImportError inside it propagates as is."""
    (tmp_path / "user_module_with_missing_dep.py").write_text("import no_such_dependency_for_advrec\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    save_checkpoint(MF(3, 4, dim=2), tmp_path / "ck")
    meta = json.loads((tmp_path / "ck.json").read_text())
    (tmp_path / "ck.json").write_text(json.dumps(dict(meta, model="user_module_with_missing_dep.Model")))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_for_advrec"):
        load_checkpoint(tmp_path / "ck")
