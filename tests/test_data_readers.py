"""Readers on tiny hand-written fixtures: values, dtypes, and line-numbered errors."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from advrec.data import (FormatError, LibFMData, load_file, read_amazon, read_csv, read_lastfm,
                         read_libfm, read_ml1m, read_ml100k)

FIX = Path(__file__).parent / "fixtures"


def raw(inter, k):
    return inter.user_ids[inter.user[k]], inter.item_ids[inter.item[k]]


# ----------------------------------------------------------------------------- MovieLens

def test_ml1m_values_and_features(reports):
    ds = read_ml1m(FIX / "ml1m")
    inter = ds.interactions
    assert ds.name == "ml-1m"
    assert (len(inter), inter.n_users, inter.n_items) == (5, 3, 3)
    assert raw(inter, 0) == (1, 10) and inter.rating[0] == 5 and inter.timestamp[0] == 978300760
    assert inter.rating.dtype == np.float32 and inter.timestamp.dtype == np.int64
    assert list(inter.item_ids) == [10, 20, 30]
    uf, itf = ds.user_features, ds.item_features
    assert uf["gender"].tolist() == ["F", "M", "M"]
    assert uf["age"].tolist() == [1, 56, 25] and uf["age"].dtype == np.int64
    assert uf["occupation"].tolist() == [10, 16, 15]
    assert uf["zip"].tolist() == ["48067", "70072", "55117"]
    assert itf["title"][2] == "Café Noir (1994)"  # latin-1 decoded
    assert itf["year"].tolist() == [1995, 1996, 1994]
    assert itf["genres"][0] == ("Animation", "Children's", "Comedy")
    # user 4 and movie 40 have no ratings: reported, not indexed
    assert any("users.dat: 1 of 4" in m for m in reports)
    assert any("movies.dat: 1 of 4" in m for m in reports)


def test_ml1m_accepts_ratings_file_and_reports_missing_side_files(tmp_path, reports):
    shutil.copy(FIX / "ml1m" / "ratings.dat", tmp_path / "ratings.dat")
    ds = read_ml1m(tmp_path / "ratings.dat")
    assert len(ds.interactions) == 5 and ds.user_features == {} and ds.item_features == {}
    assert any("no users.dat" in m for m in reports)
    assert any("no movies.dat" in m for m in reports)


def test_ml1m_wrong_field_count_names_line():
    with pytest.raises(FormatError) as e:
        read_ml1m(FIX / "ml1m_bad" / "ratings.dat")
    assert str(e.value).startswith(
        "ratings.dat line 3: expected 'UserID::MovieID::Rating::Timestamp' "
        "(4 fields separated by '::'), got 3 fields")


def test_ml1m_bad_value_names_line_and_field():
    with pytest.raises(FormatError, match=r"ratings_badvalue\.dat line 2: rating .* 'three'"):
        read_ml1m(FIX / "ml1m_bad" / "ratings_badvalue.dat")


def test_ml100k_both_layouts_agree():
    a, b = read_ml100k(FIX / "ml100k_grouplens"), read_ml100k(FIX / "ml100k_recbole")
    for x in (a, b):
        inter = x.interactions
        assert (len(inter), inter.n_users, inter.n_items) == (4, 3, 3)
        assert raw(inter, 0) == (3, 7) and inter.rating[0] == 4
        assert inter.timestamp[0] == 881250949
    for name in ("user", "item", "rating", "timestamp", "user_ids", "item_ids"):
        assert np.array_equal(getattr(a.interactions, name), getattr(b.interactions, name))
    for fa, fb in ((a.user_features, b.user_features), (a.item_features, b.item_features)):
        assert sorted(fa) == sorted(fb)
        for key in fa:
            assert list(fa[key]) == list(fb[key]), key
    itf = a.item_features
    assert itf["title"].tolist() == ["Toy Soldiers (1995)", "unknown",
                                     "Land of Time II (1995) (V)"]
    assert itf["year"].tolist() == [1995, -1, 1995]
    assert itf["genres"].tolist() == [("Animation", "Children's", "Comedy"), ("unknown",),
                                      ("Animation", "Children's")]
    assert a.user_features["zip"][2] == "T8H1N"


def test_ml100k_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="u.data"):
        read_ml100k(tmp_path)


def test_ml100k_recbole_bad_header(tmp_path):
    for f in ("ml-100k.inter", "ml-100k.user", "ml-100k.item"):
        shutil.copy(FIX / "ml100k_recbole" / f, tmp_path / f)
    text = (tmp_path / "ml-100k.inter").read_text().splitlines()
    (tmp_path / "ml-100k.inter").write_text("\n".join(["user\titem\trating\tts"] + text[1:]))
    with pytest.raises(FormatError, match=r"ml-100k.inter line 1: expected header"):
        read_ml100k(tmp_path)


# ----------------------------------------------------------------------------- Last.fm

def test_lastfm_values():
    for path in (FIX / "lastfm", FIX / "lastfm" / "user_artists.dat"):
        inter = read_lastfm(path)
        assert (len(inter), inter.n_users, inter.n_items) == (4, 3, 3)
        assert inter.timestamp is None
        assert raw(inter, 0) == (2, 51) and inter.rating[0] == 13883
        assert inter.rating.dtype == np.float32


def test_lastfm_errors():
    with pytest.raises(FormatError, match=r"lastfm_bad_header\.dat line 1: expected header"):
        read_lastfm(FIX / "lastfm_bad_header.dat")
    with pytest.raises(FormatError, match=r"lastfm_bad_row\.dat line 3: .* got 2 fields"):
        read_lastfm(FIX / "lastfm_bad_row.dat")


# ----------------------------------------------------------------------------- libFM

def test_libfm_values():
    d = read_libfm(FIX / "frappe.libfm")
    assert isinstance(d, LibFMData) and len(d) == 4
    assert d.labels.tolist() == [1, -1, 1, -1] and d.labels.dtype == np.float32
    assert d.indptr.tolist() == [0, 3, 6, 9, 11] and d.indptr.dtype == np.int64
    assert d.indices[:3].tolist() == [0, 5, 9] and d.indices.dtype == np.int64
    assert d.values.dtype == np.float32 and np.all(d.values == 1)
    assert d.n_features == 10
    assert read_libfm(FIX / "frappe.libfm", n_features=12).n_features == 12


def test_libfm_errors(tmp_path):
    with pytest.raises(FormatError, match=r"frappe_bad_token\.libfm line 2: bad feature '5'"):
        read_libfm(FIX / "frappe_bad_token.libfm")
    with pytest.raises(FormatError, match=r"frappe_bad_label\.libfm line 2: label .* 'yes'"):
        read_libfm(FIX / "frappe_bad_label.libfm")
    with pytest.raises(FormatError, match=r"frappe\.libfm line 1: feature index 9 >= "
                                          r"n_features=8"):
        read_libfm(FIX / "frappe.libfm", n_features=8)
    (tmp_path / "test.libfm").write_text("1 0:1\n1 3:1 4:1\n-1 8:1 2:1\n")
    with pytest.raises(FormatError, match=r"test\.libfm line 3: feature index 8 >= n_features=5"):
        read_libfm(tmp_path / "test.libfm", n_features=5)


# ----------------------------------------------------------------------------- Amazon

def test_amazon_values_keep_string_ids():
    inter = read_amazon(FIX / "amazon_5core.json")
    assert (len(inter), inter.n_users, inter.n_items) == (3, 2, 2)
    assert list(inter.item_ids) == ["0000013714", "B00000JBLH"]  # leading zeros kept
    assert raw(inter, 0) == ("A2SUAM1J3GNN3B", "0000013714")
    assert inter.rating.tolist() == [5, 4, 3] and inter.timestamp[1] == 1372118400


def test_amazon_gzip(tmp_path):
    gz = tmp_path / "reviews_Test_5.json.gz"
    with gzip.open(gz, "wb") as f:
        f.write((FIX / "amazon_5core.json").read_bytes())
    assert len(load_file(gz)) == 3


def test_amazon_errors():
    with pytest.raises(FormatError, match=r"amazon_missing_field\.json line 2: missing 'overall'"):
        read_amazon(FIX / "amazon_missing_field.json")
    with pytest.raises(FormatError, match=r"amazon_bad_json\.json line 3: invalid JSON"):
        read_amazon(FIX / "amazon_bad_json.json")


# ----------------------------------------------------------------------------- CSV

def test_csv_with_header(reports):
    inter = read_csv(FIX / "ratings.csv")
    assert list(inter.user_ids) == [2, 10] and inter.user_ids.dtype == np.int64
    assert raw(inter, 0) == (10, 100) and inter.rating[0] == 4.5
    assert inter.timestamp.tolist() == [1112486027, 1112484676, 1112484819]
    assert any("taken as a header" in m for m in reports)


def test_tsv_without_header_by_position():
    inter = read_csv(FIX / "ratings_noheader.tsv")
    assert len(inter) == 3 and inter.timestamp is None
    assert inter.rating.tolist() == [4.5, 3, 1]
    same = read_csv(FIX / "ratings_noheader.tsv", sep="\t", header=False,
                    columns=["user", "item", None])
    assert same.rating is None and np.array_equal(same.user, inter.user)


def test_csv_string_ids_keep_leading_zeros():
    inter = read_csv(FIX / "ratings_strids.csv")
    assert list(inter.item_ids) == ["007", "7"] and list(inter.user_ids) == ["u07", "u1"]


def test_csv_errors():
    with pytest.raises(FormatError, match=r"ratings_ragged\.csv line 3: expected 3 fields"):
        read_csv(FIX / "ratings_ragged.csv")
    with pytest.raises(FormatError, match=r"ratings_badrating\.csv line 3: rating .* 'good'"):
        read_csv(FIX / "ratings_badrating.csv")
    with pytest.raises(ValueError, match="columns"):
        read_csv(FIX / "ratings.csv", columns=["user", "item"])
    with pytest.raises(FormatError, match="no item column"):
        read_csv(FIX / "ratings.csv", header=True, columns=["user", None, "rating", None])


def test_non_finite_rating_names_line(tmp_path):
    (tmp_path / "r.csv").write_text("1,2,3\n1,3,nan\n")
    with pytest.raises(FormatError, match=r"r\.csv line 2: rating must be a finite number"):
        read_csv(tmp_path / "r.csv")


def test_crlf_and_unicode_line_breaks(tmp_path):
    p = tmp_path / "movies.dat"
    p.write_bytes(b"10::Odd\x85Title (1995)::Drama\r\n")  # latin-1 0x85 is U+0085 (NEL)
    (tmp_path / "ratings.dat").write_bytes(b"1::10::5::978300760\r\n")
    ds = read_ml1m(tmp_path)
    assert ds.item_features["title"][0] == "Odd\x85Title (1995)"
    assert ds.item_features["genres"][0] == ("Drama",)


def test_empty_file_is_a_clear_error():
    for reader in (read_csv, read_ml1m, read_lastfm, read_libfm, read_amazon):
        with pytest.raises(FormatError, match=r"empty\.dat: file is empty"):
            reader(FIX / "empty.dat")


def test_blank_line_inside_data(tmp_path):
    p = tmp_path / "ratings.dat"
    p.write_text("1::2::3::4\n\n1::3::3::5\n\n\n")  # trailing blank lines are fine
    with pytest.raises(FormatError, match=r"ratings.dat line 2: empty line"):
        read_ml1m(p)


# ----------------------------------------------------------------------------- load_file

@pytest.mark.parametrize("path, fmt, n", [
    ("ml1m", None, 5), ("ml1m/ratings.dat", None, 5), ("lastfm", None, 4),
    ("lastfm/user_artists.dat", None, 4), ("frappe.libfm", None, 4),
    ("amazon_5core.json", None, 3), ("ratings.csv", None, 3),
    ("ratings_noheader.tsv", "tsv", 3), ("ml100k_grouplens", None, 4),
    ("ml100k_recbole", "ml-100k", 4),
])
def test_load_file_routes(path, fmt, n):
    out = load_file(FIX / path, format=fmt)
    inter = getattr(out, "interactions", out)
    assert len(inter) == n


def test_load_file_unknown_format():
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        load_file(FIX / "ratings.csv", format="xml")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_file(FIX / "empty.dat")


def test_csv_quoted_fields(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text('user,item,rating\n"a, b",x,1\nc,"y",2\nc,z\n')
    with pytest.raises(FormatError, match=r"q\.csv line 4: expected 3 fields"):
        read_csv(p)
    p.write_text('user,item,rating\n"a, b",x,1\nc,"y",2\n')
    inter = read_csv(p)
    assert list(inter.user_ids) == ["a, b", "c"] and list(inter.item_ids) == ["x", "y"]


def test_ml1m_rating_for_unknown_movie_gets_placeholder(tmp_path, reports):
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n1::99::3::978300761\n")
    (tmp_path / "movies.dat").write_text("10::Toy Soldiers (1995)::Comedy\n")
    ds = read_ml1m(tmp_path)
    assert ds.item_features["title"].tolist() == ["Toy Soldiers (1995)", ""]
    assert ds.item_features["year"].tolist() == [1995, -1]
    assert ds.item_features["genres"].tolist() == [("Comedy",), ()]
    assert any("movies.dat: 1 indexed ids have no entry" in m for m in reports)
    (tmp_path / "movies.dat").write_text("10::A (1995)::Comedy\n10::B (1996)::Drama\n")
    with pytest.raises(FormatError, match="movies.dat: id 10 appears on more than one line"):
        read_ml1m(tmp_path)
