"""Checkpoints survive interrupted saves, keep dotted names apart, detect a .pt that does not
belong to its sidecar, and refuse a forged sidecar before allocating anything (issue 15, defect 2).
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from advrec.models import (DUIF, FM, GRU4Rec, MF, VBPR, FromConfig, Pop, Random, Recommender, SASRec,
                           register_model, seeded)
from advrec.training import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HUGE = 10 ** 8


@register_model
class Tiny(Recommender):
    """A user model: an embedding table and a linear layer from the global generator."""

    def __init__(self, n_users: int, n_items: int, dim: int = 3, seed: int = 0):
        super().__init__()
        with seeded(seed):
            self.emb = nn.Embedding(n_users + n_items, dim)
            self.head = nn.Linear(dim, 1)
        self.n_users, self.n_items, self.dim, self.seed = n_users, n_items, dim, seed

    def config(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "dim": self.dim, "seed": self.seed}

    def score(self, users, items, delta=None):  # pragma: no cover - not exercised here
        raise NotImplementedError

    def full_scores(self, users, delta=None):  # pragma: no cover
        raise NotImplementedError

    def loss(self, batch, delta=None):  # pragma: no cover
        raise NotImplementedError


def _features(n_items=5, d=3):
    return np.arange(n_items * d, dtype=np.float32).reshape(n_items, d) + 1


MAKERS = {
    "MF": lambda: MF(4, 5, dim=3, seed=2),
    "Pop": lambda: Pop(4, 5),
    "Random": lambda: Random(4, 5, seed=1),
    "VBPR": lambda: VBPR(4, 5, _features(), dim=2, variant="full", biases=True),
    "DUIF": lambda: DUIF(4, 5, _features(), dim=2),
    "SASRec": lambda: SASRec(3, 6, dim=4, max_len=5, n_blocks=1, dropout=0.0),
    "GRU4Rec": lambda: GRU4Rec(3, 6, dim=4, max_len=5, dropout=0.0),
    "FM": lambda: FM(7, 3, seed=1),
    "Tiny": lambda: Tiny(4, 5, seed=3),
}


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _files(d: Path) -> set:
    return {p.name for p in d.iterdir()}


def _perturbed(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return model


class Interrupted(BaseException):
    """What a Ctrl-C or a kill looks like to the writer: not an Exception."""


def _partial_save(obj, f, *args, **kwargs):
    """torch.save that writes some bytes, then is interrupted."""
    if hasattr(f, "write"):
        f.write(b"PK\x03\x04 half a zip")
    else:
        Path(f).write_bytes(b"PK\x03\x04 half a zip")
    raise Interrupted()


# ---- interrupted and failed saves ----------------------------------------------------------------
def test_an_interrupted_resave_leaves_the_previous_checkpoint_loadable_and_identical(tmp_path, monkeypatch):
    old = MF(4, 5, dim=3, seed=1)
    save_checkpoint(old, tmp_path / "ck")
    before = {n: (tmp_path / n).read_bytes() for n in ("ck.pt", "ck.json")}
    monkeypatch.setattr(torch, "save", _partial_save)
    with pytest.raises(Interrupted):
        save_checkpoint(_perturbed(MF(4, 5, dim=3, seed=7)), tmp_path / "ck")
    monkeypatch.undo()
    assert {n: (tmp_path / n).read_bytes() for n in ("ck.pt", "ck.json")} == before
    assert _same(load_checkpoint(tmp_path / "ck"), old)
    assert _files(tmp_path) == {"ck.pt", "ck.json"}  # no temporary file left behind


@pytest.mark.parametrize("fail_at", [1, 2], ids=["first-rename", "second-rename"])
def test_a_failed_save_removes_its_temporary_files(tmp_path, monkeypatch, fail_at):
    old = MF(4, 5, dim=3, seed=1)
    save_checkpoint(old, tmp_path / "ck")
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == fail_at:
            raise OSError("disk went away")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk went away"):
        save_checkpoint(_perturbed(MF(4, 5, dim=3, seed=7)), tmp_path / "ck")
    monkeypatch.undo()
    assert _files(tmp_path) == {"ck.pt", "ck.json"}
    if fail_at == 1:  # nothing renamed yet: the old checkpoint, whole
        assert _same(load_checkpoint(tmp_path / "ck"), old)
    else:  # the new sidecar beside the old weights: refused, naming both files
        with pytest.raises(ValueError, match=r"(?s)do not belong together.*ck\.json.*ck\.pt.*interrupted"):
            load_checkpoint(tmp_path / "ck")


def test_a_first_save_that_fails_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _partial_save)
    with pytest.raises(Interrupted):
        save_checkpoint(MF(4, 5, dim=3), tmp_path / "new")
    assert _files(tmp_path) == set()


def test_the_sidecar_records_the_weights_it_belongs_to(tmp_path):
    import hashlib
    pt = save_checkpoint(MF(4, 5, dim=3), tmp_path / "ck")
    meta = json.loads((tmp_path / "ck.json").read_text())
    data = pt.read_bytes()
    assert meta["pt_size"] == len(data) and meta["pt_sha256"] == hashlib.sha256(data).hexdigest()


# ---- a .pt that does not belong to its sidecar --------------------------------------------------
def test_a_weights_file_swapped_under_a_sidecar_is_detected(tmp_path):
    save_checkpoint(MF(4, 5, dim=3, seed=1), tmp_path / "a")
    save_checkpoint(MF(4, 5, dim=3, seed=2), tmp_path / "b")  # same shapes, other weights
    (tmp_path / "a.pt").write_bytes((tmp_path / "b.pt").read_bytes())
    with pytest.raises(ValueError, match=r"(?s)do not belong together.*a\.json.*a\.pt"):
        load_checkpoint(tmp_path / "a")


def test_the_pair_may_be_renamed_together(tmp_path):
    m = MF(4, 5, dim=3, seed=1)
    save_checkpoint(m, tmp_path / "a")
    for s in (".pt", ".json"):
        (tmp_path / f"a{s}").rename(tmp_path / f"moved{s}")
    assert _same(load_checkpoint(tmp_path / "moved"), m)


@pytest.mark.parametrize("name", ["MF", "VBPR", "SASRec", "Pop", "GRU4Rec", "Tiny"])
def test_old_checkpoints_without_a_hash_still_load(tmp_path, name):
    """Regression guard (passes before and after the fix): sidecars written before the hash."""
    model = MAKERS[name]()
    torch.save(model.state_dict(), tmp_path / "old.pt")
    reg = {"Tiny": f"{Tiny.__module__}.Tiny"}.get(name, name)
    (tmp_path / "old.json").write_text(json.dumps({"model": reg, "config": model.config(),
                                                   "advrec_version": "0.1.0", "extra": {}}))
    back = load_checkpoint(tmp_path / "old")
    assert type(back) is type(model) and _same(back, model)


# ---- names with dots ----------------------------------------------------------------------------
def test_dotted_names_do_not_collide(tmp_path):
    a, b = MF(4, 5, dim=3, seed=1), MF(4, 5, dim=3, seed=2)
    save_checkpoint(a, tmp_path / "run.epoch1")
    save_checkpoint(b, tmp_path / "run.epoch2")
    assert _files(tmp_path) == {"run.epoch1.pt", "run.epoch1.json", "run.epoch2.pt", "run.epoch2.json"}
    for name in ("run.epoch1", "run.epoch1.pt", "run.epoch1.json"):
        assert _same(load_checkpoint(tmp_path / name), a)
    assert _same(load_checkpoint(str(tmp_path / "run.epoch2")), b)


@pytest.mark.parametrize("given", ["x", "x.pt", "x.json"])
def test_plain_names_load_as_before(tmp_path, given):
    m = MF(4, 5, dim=3, seed=1)
    assert save_checkpoint(m, tmp_path / given) == tmp_path / "x.pt"
    assert _files(tmp_path) == {"x.pt", "x.json"}
    for name in ("x", "x.pt", "x.json"):
        assert _same(load_checkpoint(tmp_path / name), m)


def test_a_dotted_name_saved_by_an_old_version_is_not_loaded_silently(tmp_path):
    """The old writer put "run.epoch1" at run.pt: loading "run.epoch3" must not return it."""
    m = MF(4, 5, dim=3, seed=1)
    save_checkpoint(m, tmp_path / "run")
    with pytest.raises(FileNotFoundError, match=r"(?s)run\.epoch3\.pt does not exist.*run\.pt"):
        load_checkpoint(tmp_path / "run.epoch3")


# ---- forged sidecars ----------------------------------------------------------------------------
def _forge(js: Path, **config) -> None:
    meta = json.loads(js.read_text())
    meta["config"].update(config)
    js.write_text(json.dumps(meta))


@pytest.fixture
def built_on(monkeypatch):
    """Patch classes' __init__ to record the default device of every construction, and to fail
    (instead of allocating) when one with a HUGE config value is built for real."""
    devices = []

    def guard(cls, key):
        init = cls.__init__

        def recording(self, *args, **kwargs):
            device = torch.empty(0).device.type
            devices.append(device)
            if device != "meta" and kwargs.get(key, 0) >= HUGE:
                raise AssertionError(f"{cls.__name__} built for real with {key}={kwargs[key]}")
            init(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", recording)
        return devices

    return guard


@pytest.mark.parametrize("make, key, param, real_shape", [
    (lambda: MF(4, 5, dim=3), "n_users", "user_factors", (4, 3)),
    (lambda: Tiny(4, 5), "n_items", "emb.weight", (9, 3)),
    (lambda: SASRec(3, 6, dim=4, max_len=5, n_blocks=1), "max_len", "position", (5, 4)),
    (lambda: GRU4Rec(3, 6, dim=4, max_len=5), "n_users", "histories", (3, 5)),
    (lambda: FM(7, 3, seed=1), "n_features", "V", (7, 3)),
], ids=["MF", "Tiny", "SASRec", "GRU4Rec", "FM"])
def test_a_forged_sidecar_is_refused_before_anything_is_allocated(tmp_path, built_on, make, key, param,
                                                                   real_shape):
    model = make()
    save_checkpoint(model, tmp_path / "ck")
    _forge(tmp_path / "ck.json", **{key: HUGE})
    devices = built_on(type(model), key)
    with pytest.raises(ValueError) as e:
        load_checkpoint(tmp_path / "ck")
    msg = str(e.value)
    assert param in msg and str(real_shape) in msg and str(HUGE) in msg
    assert "ck.json" in msg and "ck.pt" in msg
    assert devices == ["meta"]  # built on the meta device only, never for real


@pytest.mark.parametrize("cls", [VBPR, DUIF])
def test_a_forged_sidecar_of_a_from_config_model_is_refused_before_from_config(tmp_path, monkeypatch, cls):
    """VBPR/DUIF rebuild through from_config (numpy work, not meta-buildable): their declared
    sizes are checked against the state dict before from_config runs."""
    save_checkpoint(cls(4, 5, _features(), dim=2), tmp_path / "ck")
    _forge(tmp_path / "ck.json", n_items=HUGE)
    calls = []
    monkeypatch.setattr(cls, "from_config", classmethod(lambda c, config: calls.append(config)))
    with pytest.raises(ValueError, match=rf"(?s)ck\.json.*ck\.pt.*n_items: {HUGE} in the config.*largest is 5"):
        load_checkpoint(tmp_path / "ck")
    assert calls == []


def test_missing_and_unexpected_weights_are_named_in_one_error(tmp_path):
    save_checkpoint(MF(4, 5, dim=3), tmp_path / "ck")
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    state["extra_table"] = state.pop("item_factors")
    torch.save(state, tmp_path / "ck.pt")
    meta = json.loads((tmp_path / "ck.json").read_text())
    for k in ("pt_sha256", "pt_size"):  # an old-format sidecar, so the pair check does not fire first
        meta.pop(k, None)
    (tmp_path / "ck.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"(?s)missing from the weights: item_factors.*not in the model: extra_table"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.parametrize("name", list(MAKERS))
def test_every_built_in_loads_through_the_meta_check(tmp_path, built_on, name):
    """Each model is built once on meta and once for real (the FromConfig ones, not meta-buildable,
    once for real through from_config); the round trip is exact."""
    model = MAKERS[name]()
    save_checkpoint(model, tmp_path / "ck")
    devices = built_on(type(model), "n_users")
    back = load_checkpoint(tmp_path / "ck")
    assert type(back) is type(model) and _same(back, model)
    assert devices == (["cpu"] if isinstance(type(model), FromConfig) else ["meta", "cpu"])
    if not isinstance(type(model), FromConfig):  # the meta build works on its own, too
        with torch.device("meta"):
            probe = type(model)(**model.config())
        assert all(v.is_meta for v in probe.state_dict().values())


# ---- configs that are not configs ---------------------------------------------------------------
@pytest.mark.parametrize("config, match", [
    ([4, 5, 3], "must be a JSON object"),
    ("n_users=4", "must be a JSON object"),
    (None, "must be a JSON object"),
])
def test_a_config_that_is_not_a_dict_is_refused(tmp_path, config, match):
    save_checkpoint(MF(4, 5, dim=3), tmp_path / "ck")
    meta = json.loads((tmp_path / "ck.json").read_text())
    (tmp_path / "ck.json").write_text(json.dumps(dict(meta, config=config)))
    with pytest.raises(ValueError, match=rf"ck\.json.*{match}"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.parametrize("text", ['NaN', 'Infinity', '-Infinity', '1e999'])
def test_a_non_finite_config_is_refused(tmp_path, text):
    save_checkpoint(MF(4, 5, dim=3), tmp_path / "ck")
    raw = (tmp_path / "ck.json").read_text()
    raw = raw.replace('"init_std": 0.1', f'"init_std": {text}')
    assert text in raw
    (tmp_path / "ck.json").write_text(raw)
    with pytest.raises(ValueError, match=r"ck\.json.*non-finite.*init_std"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.parametrize("text", ['[1, 2]', '"MF"', '{"model": "MF"'])
def test_a_sidecar_that_is_not_a_json_object_is_refused(tmp_path, text):
    save_checkpoint(MF(4, 5, dim=3), tmp_path / "ck")
    (tmp_path / "ck.json").write_text(text)
    with pytest.raises(ValueError, match=r"ck\.json is not a checkpoint sidecar"):
        load_checkpoint(tmp_path / "ck")


def test_saving_a_non_finite_config_is_refused_before_writing(tmp_path, monkeypatch):
    m = MF(4, 5, dim=3)
    monkeypatch.setattr(MF, "config", lambda self: {"n_users": 4, "n_items": 5, "dim": 3,
                                                    "init_std": float("nan"), "seed": 0})
    with pytest.raises(ValueError, match="non-finite.*init_std"):
        save_checkpoint(m, tmp_path / "ck")
    assert _files(tmp_path) == set()


@pytest.mark.parametrize("cls", [VBPR, DUIF, Tiny])
def test_a_large_seed_is_not_mistaken_for_a_forged_size(tmp_path, cls):
    """The declared-size check (VBPR, DUIF) leaves seed entries alone; the meta check has no
    such rule to get wrong (Tiny)."""
    model = cls(4, 5, _features(), dim=2, seed=2 ** 40) if cls is not Tiny else Tiny(4, 5, seed=2 ** 40)
    save_checkpoint(model, tmp_path / "ck")
    assert _same(load_checkpoint(tmp_path / "ck"), model)
