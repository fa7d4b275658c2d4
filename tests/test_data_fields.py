"""FM field encoding: layout and offsets, history (training-only, own item excluded), labels,
ML-100K invariants, libFM files, and errors."""
import numpy as np
import pytest

from advrec.data import (Dataset, Field, FieldEncoder, FMData, FormatError, InstanceMatrix,
                         Interactions, Ragged, libfm_fm, load, ml100k_fm)
from advrec.data.fields import AGE_GROUPS, _split_rows, age_group
from advrec.data.movielens import ML100K_GENRES


def rows_of(X):
    return [X.indices[X.indptr[r]:X.indptr[r + 1]].tolist() for r in range(len(X))]


# ----------------------------------------------------------------------------- encoder

def tiny_encoder():
    enc = FieldEncoder()
    enc.add("gender", ["F", "M"])
    enc.add("genres", ["Action", "Comedy", "Drama"], multi_hot=True)
    enc.add("age", [10, 20, 30])
    return enc


def test_encoder_layout_offsets_one_hot_and_multi_hot():
    enc = tiny_encoder()
    assert [(f.name, f.offset, f.size, f.multi_hot) for f in enc.fields] == [
        ("gender", 0, 2, False), ("genres", 2, 3, True), ("age", 5, 3, False)]
    assert enc.n_features == 8
    X = enc.encode({"gender": ["M", "F", "F"],
                    "genres": [["Drama", "Action"], [], ["Comedy"]],
                    "age": [30, 10, 20]}, labels=[1, -1, 1], perturbable="genres")
    assert rows_of(X) == [[1, 2, 4, 7], [0, 5], [0, 3, 6]]
    assert X.labels.dtype == np.int8 and X.labels.tolist() == [1, -1, 1]
    assert X.indptr.dtype == np.int64 and X.indices.dtype == np.int64
    assert X.n_features == 8 and len(X) == 3 and X.nnz == 9
    assert X.feature_ids("genres").tolist() == [2, 3, 4] == X.perturbable.tolist()
    assert X.field("age") == Field("age", 5, 3, False)
    with pytest.raises(KeyError, match="nope"):
        X.field("nope")


def test_ragged_column_equals_lists_and_duplicates_are_merged(reports):
    enc = tiny_encoder()
    cols = {"gender": ["F", "M"], "age": [10, 10]}
    a = enc.encode({**cols, "genres": [["Comedy", "Action", "Comedy"], ["Drama"]]}, [1, 1])
    assert any("merged" in r and "genres" in r for r in reports)
    b = enc.encode({**cols, "genres": Ragged(np.array([0, 2, 3]),
                                             np.array(["Action", "Comedy", "Drama"]))}, [1, 1])
    assert rows_of(a) == rows_of(b) == [[0, 2, 3, 5], [1, 4, 5]]


def test_encoder_errors():
    enc = tiny_encoder()
    good = {"gender": ["F"], "genres": [["Drama"]], "age": [10]}
    with pytest.raises(ValueError, match="'gender'.*unknown.*'X'"):
        enc.encode({**good, "gender": ["X"]}, [1])
    with pytest.raises(ValueError, match="'genres'.*unknown"):
        enc.encode({**good, "genres": [["Horror"]]}, [1])
    with pytest.raises(ValueError, match="one-hot field 'gender'"):
        enc.encode({**good, "gender": [["F", "M"]]}, [1])
    with pytest.raises(ValueError, match="'genres'.*iterable"):
        enc.encode({**good, "genres": ["Drama"]}, [1])
    with pytest.raises(ValueError, match="missing \\['age'\\]"):
        enc.encode({"gender": ["F"], "genres": [[]]}, [1])
    with pytest.raises(ValueError, match="'age' has 2 values for 1"):
        enc.encode({**good, "age": [10, 20]}, [1])
    with pytest.raises(ValueError, match="labels"):
        enc.encode(good, [0])
    with pytest.raises(ValueError, match="already added"):
        enc.add("age", [1])
    with pytest.raises(ValueError, match="twice"):
        FieldEncoder().add("x", [1, 2, 1])


def test_instance_matrix_checks_and_subset():
    X = InstanceMatrix(np.array([0, 2, 3, 3]), np.array([0, 4, 2]), np.array([1, -1, 1]),
                       [Field("a", 0, 2, False), Field("b", 2, 3, True)], 5,
                       users=[0, 1, 2], items=[5, 6, 7])
    sub = X.subset([2, 0])
    assert rows_of(sub) == [[], [0, 4]] and sub.labels.tolist() == [1, 1]
    assert sub.users.tolist() == [2, 0] and sub.items.tolist() == [7, 5]
    assert rows_of(X.subset(np.array([False, True, False]))) == [[2]]
    assert len(X.subset([])) == 0
    with pytest.raises(IndexError):
        X.subset([3])
    with pytest.raises(ValueError, match="strictly increasing"):
        InstanceMatrix(np.array([0, 2]), np.array([3, 1]), np.array([1]), [], 5)
    with pytest.raises(ValueError, match="strictly increasing"):
        InstanceMatrix(np.array([0, 2]), np.array([3, 3]), np.array([1]), [], 5)
    with pytest.raises(IndexError, match="indices"):
        InstanceMatrix(np.array([0, 1]), np.array([5]), np.array([1]), [], 5)
    with pytest.raises(ValueError, match="labels"):
        InstanceMatrix(np.array([0, 1]), np.array([1]), np.array([0]), [], 5)
    with pytest.raises(ValueError, match="indptr"):
        InstanceMatrix(np.array([0, 2, 1]), np.array([1]), np.array([1, 1]), [], 5)
    with pytest.raises(ValueError, match="overlap"):
        InstanceMatrix(np.array([0]), np.array([], np.int64), np.array([], np.int8),
                       [Field("a", 0, 3, False), Field("b", 2, 2, False)], 5)
    with pytest.raises(ValueError, match="users"):
        InstanceMatrix(np.array([0, 1]), np.array([1]), np.array([1]), [], 5, users=[1, 2])


def test_age_groups_follow_ml1m_buckets():
    ages = [1, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 90]
    want = ["<18", "<18", "18-24", "18-24", "25-34", "25-34", "35-44", "35-44", "45-49",
            "45-49", "50-55", "50-55", "56+", "56+"]
    assert age_group(ages).tolist() == want and len(AGE_GROUPS) == 7
    with pytest.raises(ValueError, match="age"):
        age_group([-1])


# ----------------------------------------------------------------------------- tiny ML table

def tiny_movielens():
    """3 users, 4 items, 10 ratings, with the ML-100K feature tables."""
    user = np.array([10, 10, 10, 10, 20, 20, 20, 30, 30, 30])
    item = np.array([1, 2, 3, 4, 1, 2, 4, 2, 3, 4])
    rating = np.array([5, 3, 4, 1, 2, 4, 5, 3, 5, 1], dtype=np.float32)
    inter = Interactions.from_raw(user, item, rating, np.arange(10))
    obj = np.empty(4, dtype=object)
    obj[:] = [("Action",), ("Comedy", "Drama"), (), ("Drama", "Action")]
    users = {"age": np.array([17, 30, 60]), "gender": np.array(["F", "M", "M"]),
             "occupation": np.array(["artist", "writer", "artist"])}
    return Dataset("tiny", inter, users, {"genres": obj})


def test_ml100k_encoding_on_a_tiny_table():
    ds = tiny_movielens()
    inter = ds.interactions
    data = ml100k_fm(ds, seed=1, split=(0.6, 0.2, 0.2))
    assert isinstance(data, FMData) and [len(p) for p in data.parts().values()] == [6, 2, 2]
    n_u, n_i = 3, 4
    names = ["user", "item", "genres", "age", "gender", "occupation", "history"]
    sizes = [n_u, n_i, 19, 7, 2, 2, n_i]
    assert [f.name for f in data.fields] == names and [f.size for f in data.fields] == sizes
    assert [f.offset for f in data.fields] == list(np.cumsum([0] + sizes[:-1]))
    assert data.n_features == sum(sizes)
    hist = data.train.field("history")
    assert data.perturbable.tolist() == hist.ids().tolist()
    # which (user, item) pairs are in train: recover from the parts
    train_pairs = set(zip(data.train.users.tolist(), data.train.items.tolist()))
    rating_of = {(u, i): r for u, i, r in zip(inter.user, inter.item, inter.rating)}
    off = {f.name: f.offset for f in data.fields}
    for part in data.parts().values():
        for r in range(len(part)):
            u, i = int(part.users[r]), int(part.items[r])
            row = part.row(r)
            assert part.labels[r] == (1 if rating_of[(u, i)] >= 4 else -1)
            want_hist = sorted(j for (uu, j) in train_pairs if uu == u and j != i)
            assert [j - hist.offset for j in row if j >= hist.offset] == want_hist
            genre_ids = [off["genres"] + ML100K_GENRES.index(g)
                         for g in ds.item_features["genres"][i]]
            age = AGE_GROUPS.index(age_group([ds.user_features["age"][u]])[0])
            want = sorted([off["user"] + u, off["item"] + i, off["age"] + age] + genre_ids
                          + [off["gender"] + ["F", "M"].index(ds.user_features["gender"][u]),
                             off["occupation"] + ["artist", "writer"].index(
                                 ds.user_features["occupation"][u])]
                          + [hist.offset + j for j in want_hist])
            assert row.tolist() == want


def test_split_argument_is_checked():
    for bad in [(0.8, 0.2), (0.5, 0.3, 0.3), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)]:
        with pytest.raises(ValueError, match="split"):
            ml100k_fm(tiny_movielens(), split=bad)


# ----------------------------------------------------------------------------- ML-100K itself

@pytest.fixture(scope="module")
def ml100k():
    return load("ml-100k")


@pytest.fixture(scope="module")
def ml100k_data(ml100k):
    return ml100k_fm(ml100k, seed=0)


def test_ml100k_counts_fields_and_split(ml100k_data):
    d = ml100k_data
    sizes = [len(d.train), len(d.valid), len(d.test)]
    assert sum(sizes) == 100_000
    for got, want in zip(sizes, (80_000, 10_000, 10_000)):
        assert abs(got - want) <= 1
    assert d.n_features == 943 + 1682 + 19 + 7 + 2 + 21 + 1682 == 4356
    assert [f.name for f in d.fields] == ["user", "item", "genres", "age", "gender",
                                          "occupation", "history"]
    # every instance appears once across the parts
    pairs = np.concatenate([p.users * 2000 + p.items for p in d.parts().values()])
    assert len(np.unique(pairs)) == 100_000
    assert 0.55 < np.mean(np.concatenate([p.labels for p in d.parts().values()]) == 1) < 0.56
    assert "55.38%" in d.describe()


def test_ml100k_rows_and_history(ml100k_data, ml100k):
    d = ml100k_data
    hist = d.train.field("history")
    assert d.perturbable.tolist() == hist.ids().tolist()
    train_items = {}
    for u, i in zip(d.train.users, d.train.items):
        train_items.setdefault(int(u), set()).add(int(i))
    rng = np.random.default_rng(0)
    for part in d.parts().values():
        steps = np.diff(part.indices)
        starts = part.indptr[1:-1]
        inside = np.ones(len(steps), dtype=bool)
        inside[starts[starts > 0] - 1] = False
        assert np.all(steps[inside] > 0)          # rows strictly increasing
        row_of = np.repeat(np.arange(len(part)), np.diff(part.indptr))
        for f in part.fields:                      # one-hot fields: exactly one per row
            n = np.bincount(row_of[(part.indices >= f.offset) & (part.indices < f.stop)],
                            minlength=len(part))
            if not f.multi_hot:
                assert np.all(n == 1), f.name
        for r in rng.choice(len(part), size=150, replace=False):
            row = part.row(r)
            u, i = int(part.users[r]), int(part.items[r])
            h = row[row >= hist.offset] - hist.offset
            assert np.all(h < hist.size)
            assert set(h.tolist()) == train_items.get(u, set()) - {i}


def test_ml100k_same_seed_same_arrays(ml100k, ml100k_data):
    again = ml100k_fm(ml100k, seed=0)
    for a, b in zip(ml100k_data.parts().values(), again.parts().values()):
        for k in ("indptr", "indices", "labels", "users", "items"):
            assert np.array_equal(getattr(a, k), getattr(b, k))
    a, b = _split_rows(1000, (0.8, 0.1, 0.1), 0, "t"), _split_rows(1000, (0.8, 0.1, 0.1), 1, "t")
    assert not np.array_equal(a[2], b[2])


# ----------------------------------------------------------------------------- libFM

def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_libfm_with_history(tmp_path):
    # users 0-2, items 3-5, a context 6-7
    train = write(tmp_path / "train.libfm", [
        "1 0:1 3:1 6:1", "1 0:1 4:1 7:1", "-1 0:1 5:1 6:1", "1 1:1 5:1 6:1", "-1 1:1 3:1 7:1",
        "1 0:1 3:1 7:1"])
    test = write(tmp_path / "test.libfm", ["1 6:1 0:1 5:1", "-1 2:1 4:1 6:1"])
    d = libfm_fm(train, test_path=test, history=((0, 3), (3, 6)))
    assert d.valid is None and len(d.train) == 6 and len(d.test) == 2
    assert d.n_features == 8 + 3 and d.perturbable.tolist() == [8, 9, 10]
    assert [f.name for f in d.fields] == ["user", "item", "history"]
    # user 0 likes items 3 and 4 (item 5 was a negative); user 1 likes item 5
    assert rows_of(d.train) == [[0, 3, 6, 9], [0, 4, 7, 8], [0, 5, 6, 8, 9], [1, 5, 6],
                                [1, 3, 7, 10], [0, 3, 7, 9]]
    assert rows_of(d.test) == [[0, 5, 6, 8, 9], [2, 4, 6]]
    assert d.test.labels.tolist() == [1, -1] and d.test.users.tolist() == [0, 2]


def test_libfm_labels_perturbable_and_errors(tmp_path):
    f = write(tmp_path / "a.libfm", ["1 0:1 2:1", "0 1:1 2:1"])
    d = libfm_fm(f, perturbable=[2, 1])
    assert d.train.labels.tolist() == [1, -1] and d.perturbable.tolist() == [1, 2]
    assert d.fields == [] and d.test is None
    g = write(tmp_path / "b.libfm", ["1 0:1 5:1"])
    d = libfm_fm(f, g)                                  # one feature space for all files
    assert d.train.n_features == d.valid.n_features == 6
    with pytest.raises(FormatError, match="line 2.*value 0.5"):
        libfm_fm(write(tmp_path / "c.libfm", ["1 0:1", "1 1:0.5"]))
    with pytest.raises(FormatError, match="labels"):
        libfm_fm(write(tmp_path / "d.libfm", ["2 0:1", "1 1:1"]))
    with pytest.raises(FormatError, match="line 1.*twice"):
        libfm_fm(write(tmp_path / "e.libfm", ["1 0:1 0:1"]))
    with pytest.raises(ValueError, match="exactly one user"):
        libfm_fm(write(tmp_path / "h.libfm", ["1 0:1 1:1 3:1", "1 2:1 4:1"]),
                 history=((0, 3), (3, 5)))
    with pytest.raises(ValueError, match="not both"):
        libfm_fm(f, history=((0, 1), (1, 3)), perturbable=[1])
    with pytest.raises(ValueError, match="disjoint"):
        libfm_fm(f, history=((0, 2), (1, 3)))
    with pytest.raises(ValueError, match="n_features"):
        libfm_fm(f, n_features=2)
